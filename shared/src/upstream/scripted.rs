//! A scripted [`UpstreamApi`]: answers per task id from a queue (the last answer repeats),
//! and counts the questions.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::{UpstreamApi, UpstreamError, UpstreamRecord};
use crate::domain::task_id::TaskId;

#[derive(Debug, Default)]
pub struct ScriptedUpstream {
    answers: Mutex<HashMap<TaskId, VecDeque<UpstreamRecord>>>,
    asked: Mutex<Vec<TaskId>>,
}

impl ScriptedUpstream {
    /// `task_id` answers these records, in order (the last one from then on).
    pub fn answer(&self, task_id: &TaskId, records: impl IntoIterator<Item = UpstreamRecord>) {
        self.answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(task_id.clone(), records.into_iter().collect());
    }

    /// Every task id asked about, in order.
    pub fn asked(&self) -> Vec<TaskId> {
        self.asked.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl UpstreamApi for ScriptedUpstream {
    async fn record_info(&self, task_id: &TaskId) -> Result<UpstreamRecord, UpstreamError> {
        self.asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task_id.clone());
        let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        let queue = answers.get_mut(task_id).ok_or(UpstreamError::NotFound)?;
        let record = if queue.len() > 1 {
            queue.pop_front()
        } else {
            queue.front().cloned()
        };
        record.ok_or(UpstreamError::NotFound)
    }
}

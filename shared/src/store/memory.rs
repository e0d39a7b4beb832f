//! An in-memory [`TaskStore`] with the same conditional semantics as DynamoDB (it applies
//! [`Task::apply`], the reference semantics). For handler unit tests; integration tests
//! run against the real DynamoDB protocol.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::{Applied, Created, StoreError, TaskStore};
use crate::clock::Timestamp;
use crate::task::{DEFAULT_TASK_TTL, Task, Update};
use crate::task_id::TaskId;

#[derive(Debug)]
pub struct MemoryTaskStore {
    tasks: Mutex<HashMap<TaskId, Task>>,
    ttl: Duration,
    /// When set, every call fails as if the service were down.
    unavailable: Mutex<bool>,
}

impl Default for MemoryTaskStore {
    fn default() -> Self {
        Self {
            tasks: Mutex::default(),
            ttl: DEFAULT_TASK_TTL,
            unavailable: Mutex::new(false),
        }
    }
}

impl MemoryTaskStore {
    pub fn snapshot(&self, task_id: &TaskId) -> Option<Task> {
        self.lock().get(task_id).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub fn set_unavailable(&self, down: bool) {
        *self.unavailable.lock().unwrap_or_else(|p| p.into_inner()) = down;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, Task>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_up(&self) -> Result<(), StoreError> {
        if *self.unavailable.lock().unwrap_or_else(|p| p.into_inner()) {
            Err(StoreError::Unavailable("memory store switched off".into()))
        } else {
            Ok(())
        }
    }
}

impl TaskStore for MemoryTaskStore {
    async fn create(&self, task: &Task) -> Result<Created, StoreError> {
        self.check_up()?;
        let mut tasks = self.lock();
        if let Some(existing) = tasks.get(&task.task_id) {
            return Ok(Created::Exists(Box::new(existing.clone())));
        }
        tasks.insert(task.task_id.clone(), task.clone());
        Ok(Created::New)
    }

    async fn count_callback(&self, task_id: &TaskId, at: Timestamp) -> Result<u32, StoreError> {
        self.check_up()?;
        let mut tasks = self.lock();
        let task = tasks
            .get_mut(task_id)
            .ok_or_else(|| StoreError::Vanished(task_id.clone()))?;
        task.callback_count += 1;
        task.last_callback_at = at;
        task.updated_at = at;
        Ok(task.callback_count)
    }

    async fn apply(&self, task_id: &TaskId, update: &Update) -> Result<Applied, StoreError> {
        self.check_up()?;
        let mut tasks = self.lock();
        let Some(current) = tasks.get(task_id) else {
            return Ok(Applied::Conflict(None));
        };
        match current.apply(update, self.ttl) {
            Some(next) => {
                tasks.insert(task_id.clone(), next.clone());
                Ok(Applied::Done(Box::new(next)))
            }
            None => Ok(Applied::Conflict(Some(Box::new(current.clone())))),
        }
    }

    async fn get(&self, task_id: &TaskId) -> Result<Option<Task>, StoreError> {
        self.check_up()?;
        Ok(self.lock().get(task_id).cloned())
    }
}

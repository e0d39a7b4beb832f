//! An in-memory [`TaskStore`]: items kept as the domain's attribute maps, patches applied
//! with [`Patch::apply_to`], the same conditional semantics as DynamoDB (a property test
//! compares the two). For unit tests; integration tests run against the DynamoDB protocol.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{
    Applied, Created, Cursor, Listed, OpenPage, StatusQuery, StoreError, TaskIndex, TaskStore,
};
use crate::domain::clock::Timestamp;
use crate::domain::task::{Item, Patch, Task, TaskStatus, attr};
use crate::domain::task_id::TaskId;

#[derive(Debug, Default)]
pub struct MemoryTaskStore {
    items: Mutex<HashMap<TaskId, Item>>,
    /// When set, every call fails as if the service were down.
    unavailable: Mutex<bool>,
    /// Every call takes this long first (a throttled or stalled service).
    delay: Mutex<std::time::Duration>,
    /// The next writes of patches that set this attribute fail (that many times).
    failing_patches: Mutex<Option<(&'static str, u32)>>,
}

impl MemoryTaskStore {
    /// The task as stored, if any.
    pub fn snapshot(&self, task_id: &TaskId) -> Option<Task> {
        self.item(task_id).and_then(|i| Task::from_item(i).ok())
    }

    /// The raw item as stored, if any.
    pub fn item(&self, task_id: &TaskId) -> Option<Item> {
        self.lock().get(task_id).cloned()
    }

    /// Stores `item` as it is, bypassing every condition (to seed odd records).
    pub fn put_item(&self, task_id: &TaskId, item: Item) {
        self.lock().insert(task_id.clone(), item);
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// How many items are stored.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn set_unavailable(&self, down: bool) {
        *self.unavailable.lock().unwrap_or_else(|p| p.into_inner()) = down;
    }

    /// Every call waits `delay` before it answers.
    pub fn delay_calls(&self, delay: std::time::Duration) {
        *self.delay.lock().unwrap_or_else(|p| p.into_inner()) = delay;
    }

    /// The next `n` patches that set `attribute` fail (e.g. `video`: the outcome write
    /// of a stored video), other writes go through.
    pub fn fail_patches_setting(&self, attribute: &'static str, n: u32) {
        *self
            .failing_patches
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((attribute, n));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, Item>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn check_up(&self) -> Result<(), StoreError> {
        let delay = *self.delay.lock().unwrap_or_else(|p| p.into_inner());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if *self.unavailable.lock().unwrap_or_else(|p| p.into_inner()) {
            Err(StoreError::Unavailable("memory store switched off".into()))
        } else {
            Ok(())
        }
    }
}

impl TaskStore for MemoryTaskStore {
    async fn create(&self, task: &Task) -> Result<Created, StoreError> {
        self.check_up().await?;
        let item = task.to_item()?;
        let mut items = self.lock();
        if let Some(existing) = items.get(&task.task_id) {
            return Ok(Created::Exists(Box::new(Task::from_item(
                existing.clone(),
            )?)));
        }
        items.insert(task.task_id.clone(), item);
        Ok(Created::New)
    }

    async fn apply(&self, task_id: &TaskId, patch: &Patch) -> Result<Applied, StoreError> {
        self.check_up().await?;
        {
            let mut failing = self
                .failing_patches
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some((attribute, n)) = failing.as_mut()
                && *n > 0
                && patch.set.iter().any(|(name, _)| name == attribute)
            {
                *n -= 1;
                return Err(StoreError::Unavailable("injected write failure".into()));
            }
        }
        let mut items = self.lock();
        let current = items.get(task_id);
        match patch.apply_to(current) {
            Some(next) => {
                let task = Task::from_item(next.clone())?;
                items.insert(task_id.clone(), next);
                Ok(Applied::Done(Box::new(task)))
            }
            None => Ok(Applied::Conflict(
                current
                    .map(|i| Task::from_item(i.clone()).map(Box::new))
                    .transpose()?,
            )),
        }
    }

    async fn list_open(
        &self,
        status: TaskStatus,
        changed_before: Timestamp,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<OpenPage, StoreError> {
        self.check_up().await?;
        let text = |item: &Item, name: &str| {
            item.get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let before = changed_before.to_rfc3339();
        let after = cursor.map(|c| (c.0[0].1.clone(), c.0[1].1.clone()));
        // The index: items with the key, sorted by (updated_at, task_id).
        let mut open: Vec<(String, String, Item)> = self
            .lock()
            .values()
            .filter(|i| text(i, attr::OPEN_STATUS).as_deref() == Some(status.as_str()))
            .filter_map(|i| {
                let updated = text(i, attr::UPDATED_AT)?;
                let id = text(i, attr::TASK_ID)?;
                (updated < before).then(|| (updated, id, i.clone()))
            })
            .filter(|(u, id, _)| after.as_ref().is_none_or(|a| (u, id) > (&a.0, &a.1)))
            .collect();
        open.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let more = open.len() > limit;
        open.truncate(limit);
        let next = more.then(|| {
            open.last().map(|(u, id, _)| {
                Cursor(vec![
                    (attr::UPDATED_AT.into(), u.clone()),
                    (attr::TASK_ID.into(), id.clone()),
                ])
            })
        });
        let tasks = open
            .into_iter()
            .filter_map(|(_, id, item)| listed(&id, item))
            .collect();
        Ok(OpenPage {
            tasks,
            next: next.flatten(),
        })
    }

    async fn get(&self, task_id: &TaskId) -> Result<Option<Task>, StoreError> {
        self.check_up().await?;
        Ok(self.item(task_id).map(Task::from_item).transpose()?)
    }
}

/// The `by-status` index: items with the status, `updated_at` in range, newest first by
/// (`updated_at`, `task_id`), as DynamoDB orders a descending query.
impl TaskIndex for MemoryTaskStore {
    async fn list_by_status(
        &self,
        query: &StatusQuery,
        cursor: Option<&Cursor>,
    ) -> Result<OpenPage, StoreError> {
        self.check_up().await?;
        let text = |item: &Item, name: &str| {
            item.get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let since = query.since.map(|t| t.to_rfc3339());
        let until = query.until.map(|t| t.to_rfc3339());
        let after = cursor.and_then(|c| {
            Some((
                c.value(attr::UPDATED_AT)?.to_owned(),
                c.value(attr::TASK_ID)?.to_owned(),
            ))
        });
        let mut found: Vec<(String, String, Item)> = self
            .lock()
            .values()
            .filter(|i| text(i, attr::STATUS).as_deref() == Some(query.status.as_str()))
            .filter_map(|i| {
                Some((
                    text(i, attr::UPDATED_AT)?,
                    text(i, attr::TASK_ID)?,
                    i.clone(),
                ))
            })
            .filter(|(u, _, _)| since.as_ref().is_none_or(|s| u >= s))
            .filter(|(u, _, _)| until.as_ref().is_none_or(|s| u <= s))
            .filter(|(u, id, _)| after.as_ref().is_none_or(|a| (u, id) < (&a.0, &a.1)))
            .collect();
        found.sort_by(|a, b| (&b.0, &b.1).cmp(&(&a.0, &a.1)));
        let more = found.len() > query.limit;
        found.truncate(query.limit);
        let next = match more {
            true => found.last().map(|(u, id, _)| {
                Cursor(vec![
                    (attr::STATUS.into(), query.status.as_str().into()),
                    (attr::UPDATED_AT.into(), u.clone()),
                    (attr::TASK_ID.into(), id.clone()),
                ])
            }),
            false => None,
        };
        let tasks = found
            .into_iter()
            .filter_map(|(_, id, item)| listed(&id, item))
            .collect();
        Ok(OpenPage { tasks, next })
    }
}

/// A listed item: the task, or what is needed to fail it. An item whose very key is not
/// a task id cannot be addressed through this port (only a hand-written one can be).
fn listed(id: &str, item: Item) -> Option<Listed> {
    match Task::from_item(item.clone()) {
        Ok(task) => Some(Listed::Task(Box::new(task))),
        Err(e) => Some(Listed::Unreadable {
            task_id: TaskId::parse(id).ok()?,
            raw: item,
            detail: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::envelope::{CallbackEnvelope, Outcome};
    use crate::domain::task::DEFAULT_TASK_TTL;

    fn failed(id: &str, at_secs: i64) -> Task {
        let envelope = CallbackEnvelope {
            task_id: TaskId::parse(id).unwrap(),
            msg: "m".into(),
            outcome: Outcome::Failed { code: 500 },
        };
        Task::from_callback(&envelope, Timestamp::from_secs(at_secs), DEFAULT_TASK_TTL)
    }

    #[tokio::test]
    async fn lists_one_status_newest_first_in_pages_within_the_window() {
        let store = MemoryTaskStore::default();
        for (i, id) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            let at = 1_795_000_000 + i64::try_from(i).unwrap() * 60;
            assert_eq!(store.create(&failed(id, at)).await.unwrap(), Created::New);
        }
        let mut query = StatusQuery {
            status: TaskStatus::Failed,
            since: Some(Timestamp::from_secs(1_795_000_060)),
            until: None,
            limit: 2,
        };
        let ids = |page: &OpenPage| -> Vec<String> {
            page.tasks
                .iter()
                .filter_map(|l| match l {
                    Listed::Task(t) => Some(t.task_id.to_string()),
                    Listed::Unreadable { .. } => None,
                })
                .collect()
        };
        let first = store.list_by_status(&query, None).await.unwrap();
        assert_eq!(ids(&first), ["e", "d"]);
        let cursor = first.next.clone().unwrap();
        let cursor = Cursor::from_token(&cursor.to_token()).unwrap();
        let second = store.list_by_status(&query, Some(&cursor)).await.unwrap();
        assert_eq!(ids(&second), ["c", "b"]);
        assert_eq!(second.next, None, "the last page");

        query.until = Some(Timestamp::from_secs(1_795_000_120));
        query.limit = 10;
        let window = store.list_by_status(&query, None).await.unwrap();
        assert_eq!(
            (ids(&window), window.next),
            (vec!["c".to_owned(), "b".to_owned()], None)
        );
        query.status = TaskStatus::Stored;
        let none = store.list_by_status(&query, None).await.unwrap();
        assert!(none.tasks.is_empty());
    }
}

//! An in-memory [`TaskStore`]: items kept as the domain's attribute maps, patches applied
//! with [`Patch::apply_to`], the same conditional semantics as DynamoDB (a property test
//! compares the two). For unit tests; integration tests run against the DynamoDB protocol.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Applied, Created, StoreError, TaskStore};
use crate::domain::task::{Item, Patch, Task};
use crate::domain::task_id::TaskId;

#[derive(Debug, Default)]
pub struct MemoryTaskStore {
    items: Mutex<HashMap<TaskId, Item>>,
    /// When set, every call fails as if the service were down.
    unavailable: Mutex<bool>,
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

    pub fn set_unavailable(&self, down: bool) {
        *self.unavailable.lock().unwrap_or_else(|p| p.into_inner()) = down;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, Item>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
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
        self.check_up()?;
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

    async fn get(&self, task_id: &TaskId) -> Result<Option<Task>, StoreError> {
        self.check_up()?;
        Ok(self.item(task_id).map(Task::from_item).transpose()?)
    }
}

//! The task store port: three narrow operations on one record per `task_id`. Every write
//! is conditional, and a failed condition is a domain outcome ([`Created::Exists`],
//! [`Applied::Conflict`]), never an error. What a write changes is decided by the domain
//! (a [`Patch`]); a store only applies it.

use std::future::Future;

use crate::domain::clock::Timestamp;
use crate::domain::task::{MalformedItem, Patch, Task, TaskStatus};
use crate::domain::task_id::TaskId;

#[cfg(feature = "dynamodb")]
pub mod dynamodb;
#[cfg(feature = "stream-image")]
pub mod image;
#[cfg(any(test, feature = "test-support"))]
pub mod memory;

/// Result of recording a new task.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// The item was written.
    New,
    /// A task with this id exists already; this is how it looks.
    Exists(Box<Task>),
}

/// Result of a conditional update.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// Written; the record as it is now.
    Done(Box<Task>),
    /// The condition did not hold. The record as it is (None if it does not exist).
    Conflict(Option<Box<Task>>),
}

/// A task read from the open-tasks index.
#[derive(Debug, Clone, PartialEq)]
pub enum Listed {
    Task(Box<Task>),
    /// An item that does not decode: the raw item, to fail it with the reason.
    Unreadable {
        task_id: TaskId,
        raw: crate::domain::task::Item,
        detail: String,
    },
}

/// Where the next page starts (opaque to callers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub(crate) Vec<(String, String)>);

/// One page of open tasks, oldest change first.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenPage {
    pub tasks: Vec<Listed>,
    /// `None` on the last page.
    pub next: Option<Cursor>,
}

/// Why the store could not answer. Conditional-check failures are not errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The service failed, timed out, throttled or was unreachable: retry later.
    #[error("task store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored item does not decode into a [`Task`].
    #[error("stored task is malformed: {0}")]
    Malformed(String),
    /// The record disappeared between two steps (TTL expiry racing a callback).
    #[error("task {0} vanished while being updated")]
    Vanished(TaskId),
    /// Concurrent writers kept winning; the caller should retry later.
    #[error("task {0} is contended by concurrent writers")]
    Contended(TaskId),
}

impl From<MalformedItem> for StoreError {
    fn from(e: MalformedItem) -> Self {
        Self::Malformed(e.to_string())
    }
}

/// Persistence of task records.
pub trait TaskStore: Send + Sync {
    /// Writes `task` if no task with its id exists (one conditional put).
    fn create(&self, task: &Task) -> impl Future<Output = Result<Created, StoreError>> + Send;

    /// Applies `patch` if its condition holds (one conditional update).
    fn apply(
        &self,
        task_id: &TaskId,
        patch: &Patch,
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send;

    /// Open tasks in `status` last changed before `changed_before`, oldest first, at most
    /// `limit` per page: a query of the sparse `open-tasks` index, never a scan.
    fn list_open(
        &self,
        status: TaskStatus,
        changed_before: Timestamp,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> impl Future<Output = Result<OpenPage, StoreError>> + Send;

    /// Reads a task (strongly consistent).
    fn get(
        &self,
        task_id: &TaskId,
    ) -> impl Future<Output = Result<Option<Task>, StoreError>> + Send;
}

/// A shared store is a store (the functions share one behind an `Arc`).
impl<T: TaskStore> TaskStore for std::sync::Arc<T> {
    async fn create(&self, task: &Task) -> Result<Created, StoreError> {
        (**self).create(task).await
    }

    async fn apply(&self, task_id: &TaskId, patch: &Patch) -> Result<Applied, StoreError> {
        (**self).apply(task_id, patch).await
    }

    async fn list_open(
        &self,
        status: TaskStatus,
        changed_before: Timestamp,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<OpenPage, StoreError> {
        (**self)
            .list_open(status, changed_before, limit, cursor)
            .await
    }

    async fn get(&self, task_id: &TaskId) -> Result<Option<Task>, StoreError> {
        (**self).get(task_id).await
    }
}

//! The task store port: four narrow operations on one record per `task_id`. Every write
//! is conditional, and a failed condition is a domain outcome ([`Created::Exists`],
//! [`Applied::Conflict`]), never an error.

use std::future::Future;

use crate::clock::Timestamp;
use crate::task::{Task, Update};
use crate::task_id::TaskId;

#[cfg(feature = "dynamodb")]
pub mod dynamodb;
#[cfg(any(test, feature = "memory-store"))]
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
    /// The guard did not hold. The record as it is (None if it no longer exists).
    Conflict(Option<Box<Task>>),
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

/// Persistence of task records.
pub trait TaskStore: Send + Sync {
    /// Writes `task` if no task with its id exists (one conditional put).
    fn create(&self, task: &Task) -> impl Future<Output = Result<Created, StoreError>> + Send;

    /// Counts a duplicate callback: `callback_count + 1`, `last_callback_at = at`.
    /// Returns the new count.
    fn count_callback(
        &self,
        task_id: &TaskId,
        at: Timestamp,
    ) -> impl Future<Output = Result<u32, StoreError>> + Send;

    /// Applies `update` if its guard holds.
    fn apply(
        &self,
        task_id: &TaskId,
        update: &Update,
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send;

    /// Reads a task (strongly consistent).
    fn get(
        &self,
        task_id: &TaskId,
    ) -> impl Future<Output = Result<Option<Task>, StoreError>> + Send;
}

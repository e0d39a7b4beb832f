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

/// One page of tasks: open tasks oldest change first ([`TaskStore::list_open`]), or one
/// status newest first ([`TaskIndex::list_by_status`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenPage {
    pub tasks: Vec<Listed>,
    /// `None` on the last page.
    pub next: Option<Cursor>,
}

impl Cursor {
    /// The attributes a cursor may name: the table's key and the indexes' keys.
    const NAMES: [&'static str; 4] = [
        crate::domain::task::attr::TASK_ID,
        crate::domain::task::attr::STATUS,
        crate::domain::task::attr::UPDATED_AT,
        crate::domain::task::attr::OPEN_STATUS,
    ];

    /// The cursor as an opaque URL-safe token (what an API hands its callers).
    pub fn to_token(&self) -> String {
        use base64::Engine as _;
        let pairs: Vec<[&str; 2]> = self
            .0
            .iter()
            .map(|(k, v)| [k.as_str(), v.as_str()])
            .collect();
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&pairs).unwrap_or_default())
    }

    /// A token from [`Cursor::to_token`], or `None` if it is not one: only key attributes,
    /// each once, at most four (never an arbitrary start key).
    pub fn from_token(token: &str) -> Option<Self> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()?;
        let pairs: Vec<(String, String)> = serde_json::from_slice(&bytes).ok()?;
        let mut seen = Vec::new();
        for (name, _) in &pairs {
            if !Self::NAMES.contains(&name.as_str()) || seen.contains(name) {
                return None;
            }
            seen.push(name.clone());
        }
        (!pairs.is_empty()).then_some(Self(pairs))
    }

    /// The value the cursor holds for `name` (the memory store reads its cursors by name).
    #[cfg(any(test, feature = "test-support"))]
    pub(crate) fn value(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Tasks in one status whose last change falls in `[since, until]` (either end open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusQuery {
    pub status: TaskStatus,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// The most tasks one page holds.
    pub limit: usize,
}

/// Every task by status and last change, newest first: the operator's listing. A query of
/// the `by-status` index, never a scan. A port of its own (narrower than [`TaskStore`]):
/// only the status function lists tasks this way.
pub trait TaskIndex: Send + Sync {
    /// One page of `query`, newest change first, starting after `cursor`.
    fn list_by_status(
        &self,
        query: &StatusQuery,
        cursor: Option<&Cursor>,
    ) -> impl Future<Output = Result<OpenPage, StoreError>> + Send;
}

impl<T: TaskIndex> TaskIndex for std::sync::Arc<T> {
    async fn list_by_status(
        &self,
        query: &StatusQuery,
        cursor: Option<&Cursor>,
    ) -> Result<OpenPage, StoreError> {
        (**self).list_by_status(query, cursor).await
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_tokens_round_trip_and_refuse_anything_but_key_attributes() {
        let cursor = Cursor(vec![
            ("status".into(), "stored".into()),
            ("updated_at".into(), "2026-12-01T10:00:00.000Z".into()),
            ("task_id".into(), "t-1".into()),
        ]);
        let token = cursor.to_token();
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(Cursor::from_token(&token), Some(cursor));
        use base64::Engine as _;
        let encode = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        for bad in [
            "".to_owned(),
            "not base64!".to_owned(),
            encode(serde_json::json!([])),
            encode(serde_json::json!([["video_url", "x"]])),
            encode(serde_json::json!([["task_id", "a"], ["task_id", "b"]])),
            encode(serde_json::json!({"task_id": "a"})),
        ] {
            assert_eq!(Cursor::from_token(&bad), None, "{bad}");
        }
    }
}

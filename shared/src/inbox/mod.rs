//! The inbox port: verified callbacks the task store could not take (DynamoDB throttled,
//! timed out or failed), kept durably so the receiver can still answer 200, and replayed
//! by the reconciler through the same record path, oldest first. The S3 adapter keeps
//! them under `inbox/` in the videos bucket; `memory` (feature `test-support`) is the fake.

#[cfg(any(test, feature = "test-support"))]
pub mod memory;
#[cfg(feature = "s3")]
pub mod s3;

use std::future::Future;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::domain::clock::Timestamp;
use crate::domain::task_id::TaskId;

/// Where spilled callbacks live in the bucket (the receiver may write only here).
pub const INBOX_PREFIX: &str = "inbox/";

/// A verified callback as it arrived: the raw body (replayed through the same parser),
/// how it was verified, and when. No credential is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spilled {
    pub task_id: TaskId,
    pub received_at: Timestamp,
    /// The verification scheme that accepted it (`token`, `upstream-hmac`, …).
    pub scheme: String,
    pub body: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    version: u32,
    task_id: TaskId,
    received_at: Timestamp,
    scheme: String,
    body_base64: String,
}

impl Spilled {
    /// The object key: time first, so listing replays oldest first; a random suffix, so
    /// two copies of one callback are two objects (both replay; the second is a duplicate).
    pub fn key(&self) -> String {
        format!(
            "{INBOX_PREFIX}{}-{}-{:016x}.json",
            self.received_at.to_rfc3339(),
            self.task_id,
            fastrand::u64(..)
        )
    }

    pub fn to_json(&self) -> Vec<u8> {
        let stored = Stored {
            version: 1,
            task_id: self.task_id.clone(),
            received_at: self.received_at,
            scheme: self.scheme.clone(),
            body_base64: BASE64.encode(&self.body),
        };
        serde_json::to_vec(&stored).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, InboxError> {
        let stored: Stored =
            serde_json::from_slice(bytes).map_err(|e| InboxError::Malformed(e.to_string()))?;
        let body = BASE64
            .decode(stored.body_base64)
            .map_err(|e| InboxError::Malformed(e.to_string()))?;
        Ok(Self {
            task_id: stored.task_id,
            received_at: stored.received_at,
            scheme: stored.scheme,
            body,
        })
    }
}

/// One page of inbox keys, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InboxPage {
    pub keys: Vec<String>,
    /// `None` on the last page.
    pub next: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("inbox unavailable ({operation}): {source}")]
    Unavailable {
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("inbox object is malformed: {0}")]
    Malformed(String),
}

/// No inbox configured: every put fails, so the receiver answers 503 as it would
/// without one.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoInbox;

impl Inbox for NoInbox {
    async fn put(&self, _: &Spilled) -> Result<String, InboxError> {
        Err(InboxError::Unavailable {
            operation: "put",
            source: "no inbox is configured (BUCKET_NAME)".into(),
        })
    }

    async fn list(&self, _: usize, _: Option<&str>) -> Result<InboxPage, InboxError> {
        Ok(InboxPage::default())
    }

    async fn get(&self, _: &str) -> Result<Option<Spilled>, InboxError> {
        Ok(None)
    }

    async fn delete(&self, _: &str) -> Result<(), InboxError> {
        Ok(())
    }
}

impl<I: Inbox> Inbox for Option<I> {
    async fn put(&self, spilled: &Spilled) -> Result<String, InboxError> {
        match self {
            Some(inbox) => inbox.put(spilled).await,
            None => NoInbox.put(spilled).await,
        }
    }

    async fn list(&self, limit: usize, after: Option<&str>) -> Result<InboxPage, InboxError> {
        match self {
            Some(inbox) => inbox.list(limit, after).await,
            None => NoInbox.list(limit, after).await,
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Spilled>, InboxError> {
        match self {
            Some(inbox) => inbox.get(key).await,
            None => NoInbox.get(key).await,
        }
    }

    async fn delete(&self, key: &str) -> Result<(), InboxError> {
        match self {
            Some(inbox) => inbox.delete(key).await,
            None => NoInbox.delete(key).await,
        }
    }
}

/// Durable keeping of spilled callbacks.
pub trait Inbox: Send + Sync {
    /// Keeps `spilled`; `Ok` only once it is durable. Returns its key.
    fn put(&self, spilled: &Spilled) -> impl Future<Output = Result<String, InboxError>> + Send;

    /// Keys, oldest first, at most `limit`, from `after` (a previous page's `next`).
    fn list(
        &self,
        limit: usize,
        after: Option<&str>,
    ) -> impl Future<Output = Result<InboxPage, InboxError>> + Send;

    /// The spilled callback under `key` (`None` if it is gone).
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Spilled>, InboxError>> + Send;

    /// Removes `key` once its callback is recorded.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), InboxError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_raw_body_and_keys_sort_by_time() {
        let spilled = Spilled {
            task_id: TaskId::parse("t-1").unwrap(),
            received_at: Timestamp::from_millis(1_795_000_000_123),
            scheme: "token".into(),
            body: b"{\"code\":200}\xff".to_vec(),
        };
        assert_eq!(Spilled::from_json(&spilled.to_json()).unwrap(), spilled);
        let key = spilled.key();
        assert!(
            key.starts_with("inbox/2026-11-18T11:06:40.123Z-t-1-"),
            "{key}"
        );
        let later = Spilled {
            received_at: Timestamp::from_millis(1_795_000_000_124),
            ..spilled.clone()
        };
        assert!(later.key() > key);
        assert!(Spilled::from_json(b"{}").is_err());
    }
}

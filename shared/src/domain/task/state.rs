//! A typed view of a stored task, so callers match on the state instead of re-checking
//! optional fields, and the [`Lease`] that every write of a running download goes through.

use std::time::Duration;

use super::patch::{Condition, Patch, TaskChange, build};
use super::{FailureReason, StoredVideo, Task, TaskStatus};
use crate::domain::clock::Timestamp;
use crate::domain::envelope::VideoUrl;

/// Who may write a downloading task, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The invocation (its request id) that claimed the task.
    pub owner: String,
    pub until: Timestamp,
}

impl Lease {
    pub fn new(owner: impl Into<String>, until: Timestamp) -> Self {
        Self {
            owner: owner.into(),
            until,
        }
    }

    /// Download progress, renewing the lease until `until` (the caller keeps leases short
    /// and never past its invocation's deadline).
    pub fn renew(&self, bytes_received: u64, until: Timestamp, at: Timestamp) -> Patch {
        let change = TaskChange::Renew {
            bytes_received,
            lease_until: until,
        };
        self.patch(&change, at, Duration::ZERO)
    }

    /// The upstream handed out a fresh URL for an expired one.
    pub fn refresh_url(&self, video_url: VideoUrl, at: Timestamp) -> Patch {
        self.patch(&TaskChange::RefreshUrl { video_url }, at, Duration::ZERO)
    }

    /// The video is stored: downloading → stored, the record lives `ttl` from now.
    pub fn store(&self, video: StoredVideo, at: Timestamp, ttl: Duration) -> Patch {
        self.patch(&TaskChange::Store { video }, at, ttl)
    }

    /// A permanent failure: downloading → failed.
    pub fn fail(
        &self,
        reason: FailureReason,
        detail: impl Into<String>,
        at: Timestamp,
        ttl: Duration,
    ) -> Patch {
        let change = TaskChange::Fail {
            reason,
            detail: detail.into(),
        };
        self.patch(&change, at, ttl)
    }

    /// A transient failure: the lease ends now, so the retry can take over at once.
    pub fn release(&self, at: Timestamp) -> Patch {
        self.patch(&TaskChange::Release, at, Duration::ZERO)
    }

    fn patch(&self, change: &TaskChange, at: Timestamp, ttl: Duration) -> Patch {
        let condition = Condition::LeaseHeldBy(self.owner.clone());
        // The condition pins the status to downloading, where the table allows every lease
        // change (tested); an empty patch under the same condition is the unreachable rest.
        build(TaskStatus::Downloading, change, condition.clone(), at, ttl)
            .unwrap_or_else(|| Patch::empty(condition))
    }
}

/// Where a task stands, with exactly the data that state has.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskState<'a> {
    /// Registered, waiting for its callback (or for polling to find its outcome).
    Expected {
        registered_at: Timestamp,
        next_poll_at: Option<Timestamp>,
    },
    /// Waiting for ingest.
    Received { video_url: &'a VideoUrl },
    /// An invocation holds the lease and is copying the video.
    Downloading {
        video_url: &'a VideoUrl,
        lease: Lease,
        bytes_received: u64,
    },
    /// The video is in the bucket. Final.
    Stored { video: &'a StoredVideo },
    /// The upstream or ingest gave up; a later success callback revives it.
    Failed {
        reason: FailureReason,
        detail: Option<&'a str>,
    },
}

/// A stored record whose fields contradict its status (only a hand-edited item can).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task is {status} but has no {missing}")]
pub struct Inconsistent {
    pub status: &'static str,
    pub missing: &'static str,
}

impl Task {
    /// The typed view of this record.
    pub fn state(&self) -> Result<TaskState<'_>, Inconsistent> {
        let missing = |missing| Inconsistent {
            status: self.status.as_str(),
            missing,
        };
        Ok(match self.status {
            TaskStatus::Expected => TaskState::Expected {
                registered_at: self.registered_at.unwrap_or(self.received_at),
                next_poll_at: self.next_poll_at.map(Timestamp::from_millis),
            },
            TaskStatus::Received => TaskState::Received {
                video_url: self
                    .video_url
                    .as_ref()
                    .ok_or_else(|| missing("video_url"))?,
            },
            TaskStatus::Downloading => TaskState::Downloading {
                video_url: self
                    .video_url
                    .as_ref()
                    .ok_or_else(|| missing("video_url"))?,
                lease: Lease::new(
                    self.lease_owner
                        .clone()
                        .ok_or_else(|| missing("lease_owner"))?,
                    Timestamp::from_millis(self.lease_until.ok_or_else(|| missing("lease_until"))?),
                ),
                bytes_received: self.bytes_received.unwrap_or(0),
            },
            TaskStatus::Stored => TaskState::Stored {
                video: self.video.as_ref().ok_or_else(|| missing("video"))?,
            },
            TaskStatus::Failed => TaskState::Failed {
                reason: self
                    .failure_reason
                    .ok_or_else(|| missing("failure_reason"))?,
                detail: self.failure_detail.as_deref(),
            },
        })
    }
}

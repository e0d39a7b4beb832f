//! Every change to a stored task as data: a [`Patch`] names the attributes it sets, adds
//! to and removes, and the [`Condition`] it is written under, with the new expiry and the
//! revision bump already decided. The stores apply this one value (the memory store
//! directly, the DynamoDB adapter by rendering it into one conditional `UpdateItem`), so
//! each transition is spelled out exactly once: in [`build`].

use std::time::Duration;

use serde_json::Value;

use super::transition::{TaskEvent, Transition, transition};
use super::{FailureReason, RecordSource, StoredVideo, TaskStatus, expiry};
use crate::domain::clock::Timestamp;
use crate::domain::envelope::VideoUrl;

/// A task as attributes: the shape every store keeps (JSON values; the DynamoDB adapter
/// converts them one to one into attribute values).
pub type Item = serde_json::Map<String, Value>;

/// Attribute names: the serialised names of [`super::Task`]'s fields, plus the derived key
/// of the sparse `open-tasks` index.
pub mod attr {
    pub const TASK_ID: &str = "task_id";
    pub const STATUS: &str = "status";
    /// Present only while the task is open: the partition key of the sparse `open-tasks`
    /// index (template.yaml), which the reconciler reads.
    pub const OPEN_STATUS: &str = "open_status";
    pub const VIDEO_URL: &str = "video_url";
    pub const UPSTREAM_CODE: &str = "upstream_code";
    pub const UPSTREAM_MSG: &str = "upstream_msg";
    pub const RECEIVED_AT: &str = "received_at";
    pub const UPDATED_AT: &str = "updated_at";
    pub const LAST_CALLBACK_AT: &str = "last_callback_at";
    pub const CALLBACK_COUNT: &str = "callback_count";
    pub const EXPIRES_AT: &str = "expires_at";
    pub const REVISION: &str = "revision";
    pub const ATTEMPTS: &str = "attempts";
    pub const LEASE_OWNER: &str = "lease_owner";
    pub const LEASE_UNTIL: &str = "lease_until";
    pub const FAILURE_REASON: &str = "failure_reason";
    pub const FAILURE_DETAIL: &str = "failure_detail";
    pub const BYTES_RECEIVED: &str = "bytes_received";
    pub const VIDEO: &str = "video";
    pub const SOURCE: &str = "source";
    pub const REGISTERED_AT: &str = "registered_at";
    pub const NEXT_POLL_AT: &str = "next_poll_at";
    pub const POLLS: &str = "polls";
    /// Toggled by every re-drive of a `received` task: its presence changes between the
    /// old and the new image, which is what the stream filter can see (it cannot compare
    /// values), while duplicate callbacks leave it alone.
    pub const REDRIVE_MARK: &str = "redrive_mark";
    pub const REDRIVES: &str = "redrives";
    /// The raw item a record was salvaged from (see `Patch::replace_unreadable`).
    pub const UNREADABLE_ITEM: &str = "unreadable_item";

    const ALL: [&str; 26] = [
        TASK_ID,
        STATUS,
        OPEN_STATUS,
        VIDEO_URL,
        UPSTREAM_CODE,
        UPSTREAM_MSG,
        UPDATED_AT,
        LAST_CALLBACK_AT,
        CALLBACK_COUNT,
        EXPIRES_AT,
        REVISION,
        ATTEMPTS,
        LEASE_OWNER,
        LEASE_UNTIL,
        FAILURE_REASON,
        FAILURE_DETAIL,
        BYTES_RECEIVED,
        VIDEO,
        SOURCE,
        REGISTERED_AT,
        NEXT_POLL_AT,
        POLLS,
        REDRIVE_MARK,
        REDRIVES,
        UNREADABLE_ITEM,
        RECEIVED_AT,
    ];

    /// The attribute's static name, if it is one of a task's. (An item's other
    /// attributes are not ours to touch.)
    pub fn known(name: &str) -> Option<&'static str> {
        ALL.iter().copied().find(|a| *a == name)
    }
}

/// Longest stored `upstream_msg` and `failure_detail`, in bytes: whatever the body limit,
/// an item stays far below DynamoDB's 400 KB.
pub const MAX_STORED_TEXT: usize = 1024;

/// `text` cut to at most [`MAX_STORED_TEXT`] bytes on a character boundary.
pub fn stored_text(text: &str) -> &str {
    crate::domain::text::cut_bytes(text, MAX_STORED_TEXT)
}

/// What must hold for a patch to be written. A failed condition is a domain outcome
/// (someone else got there first), never an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The task exists, whatever its state.
    Exists,
    /// The record is still the one the decision was made on.
    Revision(u64),
    /// The writer still holds the lease of a downloading task.
    LeaseHeldBy(String),
}

impl Condition {
    /// Whether the condition holds for `item` (`None`: no such task).
    pub fn holds(&self, item: Option<&Item>) -> bool {
        let Some(item) = item else {
            return false;
        };
        match self {
            Self::Exists => true,
            Self::Revision(r) => item.get(attr::REVISION).and_then(Value::as_u64) == Some(*r),
            Self::LeaseHeldBy(owner) => {
                item.get(attr::STATUS).and_then(Value::as_str)
                    == Some(TaskStatus::Downloading.as_str())
                    && item.get(attr::LEASE_OWNER).and_then(Value::as_str) == Some(owner)
            }
        }
    }
}

/// One conditional change to one task. No attribute appears in two of `set`, `add` and
/// `remove` (DynamoDB refuses overlapping paths; `build` never produces them).
#[derive(Debug, Clone, PartialEq)]
pub struct Patch {
    pub set: Vec<(&'static str, Value)>,
    /// Counters: added to (a missing attribute counts as 0).
    pub add: Vec<(&'static str, i64)>,
    pub remove: Vec<&'static str>,
    pub condition: Condition,
}

impl Patch {
    /// Changes nothing, under `condition`.
    pub fn empty(condition: Condition) -> Self {
        Self {
            set: Vec::new(),
            add: Vec::new(),
            remove: Vec::new(),
            condition,
        }
    }

    /// The item after this patch, or `None` if its condition does not hold. This is what
    /// the memory store does and what the DynamoDB rendering must match.
    pub fn apply_to(&self, item: Option<&Item>) -> Option<Item> {
        if !self.condition.holds(item) {
            return None;
        }
        let mut next = item.cloned().unwrap_or_default();
        for name in &self.remove {
            next.remove(*name);
        }
        for (name, value) in &self.set {
            next.insert((*name).to_owned(), value.clone());
        }
        for (name, by) in &self.add {
            let current = next.get(*name).and_then(Value::as_i64).unwrap_or(0);
            next.insert((*name).to_owned(), Value::from(current.saturating_add(*by)));
        }
        Some(next)
    }

    /// Every attribute this patch touches, in the order it names them.
    pub fn attributes(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.set
            .iter()
            .map(|(n, _)| *n)
            .chain(self.add.iter().map(|(n, _)| *n))
            .chain(self.remove.iter().copied())
    }

    /// A duplicate callback: counted, nothing else changes.
    pub fn count_callback(at: Timestamp) -> Self {
        let mut b = Builder::new(Condition::Exists);
        b.set(attr::LAST_CALLBACK_AT, at.to_rfc3339())
            .set(attr::UPDATED_AT, at.to_rfc3339())
            .add(attr::CALLBACK_COUNT, 1);
        b.patch
    }

    /// A record nothing can read (its status or a field does not decode) becomes `failed`
    /// with the reason, never silently skipped: `salvaged` (see [`super::Task::salvage`])
    /// replaces it attribute for attribute, every attribute it lacks is removed, and the
    /// raw item stays in `unreadable_item` (capped) for an operator. Written under the
    /// revision the raw item shows, or, when even that is unreadable, under existence.
    /// The one patch that does not go through the transition table: there is no status
    /// to look it up by.
    pub fn replace_unreadable(raw: &Item, salvaged: &Item) -> Self {
        let condition = raw
            .get(attr::REVISION)
            .and_then(Value::as_u64)
            .map_or(Condition::Exists, Condition::Revision);
        let mut b = Builder::new(condition);
        for (name, value) in salvaged {
            if let Some(name) = attr::known(name).filter(|n| *n != attr::TASK_ID) {
                b.set(name, value.clone());
            }
        }
        let dump = serde_json::to_string(raw).unwrap_or_default();
        b.set(attr::UNREADABLE_ITEM, stored_dump(&dump));
        for name in raw.keys() {
            if let Some(name) = attr::known(name).filter(|n| {
                *n != attr::TASK_ID && *n != attr::UNREADABLE_ITEM && !salvaged.contains_key(*n)
            }) {
                b.remove(&[name]);
            }
        }
        b.patch
    }
}

/// The raw dump of an unreadable item, cut on a character boundary.
fn stored_dump(text: &str) -> &str {
    crate::domain::text::cut_bytes(text, 8 * MAX_STORED_TEXT)
}

/// The attributes that mirror the status: itself, and the sparse index key while open.
pub(super) fn status_attributes(status: TaskStatus) -> (Value, Option<Value>) {
    let value = Value::from(status.as_str());
    let open = status.is_open().then(|| value.clone());
    (value, open)
}

/// A change to a task, with the data it needs. [`build`] turns it into a patch.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum TaskChange {
    /// failed (or expected) → received with the new URL; attempts start over.
    Revive {
        video_url: VideoUrl,
        upstream_code: u16,
        upstream_msg: String,
        source: RecordSource,
    },
    /// expected → failed: the first outcome of a registered task is a failure.
    FailedUpstream {
        upstream_code: u16,
        upstream_msg: String,
        source: RecordSource,
    },
    /// received (or downloading with an expired lease) → downloading; attempts + 1.
    Claim {
        owner: String,
        lease_until: Timestamp,
    },
    /// Download progress, and the lease renewed until `lease_until`; status unchanged.
    Renew {
        bytes_received: u64,
        lease_until: Timestamp,
    },
    /// The source URL expired and the upstream handed out a fresh one; status unchanged.
    RefreshUrl { video_url: VideoUrl },
    /// downloading → stored.
    Store { video: StoredVideo },
    /// downloading → failed.
    Fail {
        reason: FailureReason,
        detail: String,
    },
    /// Transient failure: the lease ends now so the retry can take over at once.
    Release,
    /// The reconciler hands the task to ingest again; `mark` is the new presence of the
    /// re-drive mark (flipped on each re-drive).
    Redrive { mark: bool },
    /// An expected task is polled again no earlier than `next_poll_at`.
    SchedulePoll { next_poll_at: Timestamp },
    /// expected → failed: no outcome ever came.
    Expire { detail: String },
}

impl TaskChange {
    /// The table's event this change is, if it is one (heartbeats and the like are not).
    pub(super) fn event(&self) -> Option<TaskEvent> {
        match self {
            Self::Revive { .. } => Some(TaskEvent::SuccessCallback),
            Self::FailedUpstream { .. } => Some(TaskEvent::FailureCallback),
            Self::Claim { .. } => Some(TaskEvent::Claim),
            Self::Store { .. } => Some(TaskEvent::Store),
            Self::Fail { .. } => Some(TaskEvent::Fail),
            Self::Release => Some(TaskEvent::Release),
            Self::Redrive { .. } => Some(TaskEvent::Redrive),
            Self::Expire { .. } => Some(TaskEvent::Expire),
            Self::Renew { .. } | Self::RefreshUrl { .. } | Self::SchedulePoll { .. } => None,
        }
    }
}

const LEASE_ATTRIBUTES: [&str; 3] = [attr::LEASE_OWNER, attr::LEASE_UNTIL, attr::BYTES_RECEIVED];

/// The patch for `change` to a task in `from`, written under `condition` at `at`; records
/// that reach a new status live `ttl` from now. `None` when the state machine refuses the
/// change in `from`. The only place a transition's attributes are written down.
pub(super) fn build(
    from: TaskStatus,
    change: &TaskChange,
    condition: Condition,
    at: Timestamp,
    ttl: Duration,
) -> Option<Patch> {
    let to = match change.event().map(|e| transition(from, e)) {
        None | Some(Transition::Stay) => None,
        Some(Transition::To(status)) => Some(status),
        Some(Transition::Refused) => return None,
    };
    let mut b = Builder::new(condition);
    b.set(attr::UPDATED_AT, at.to_rfc3339());
    if let Some(status) = to {
        let (value, open) = status_attributes(status);
        b.set(attr::STATUS, value);
        match open {
            Some(open) => b.set(attr::OPEN_STATUS, open),
            None => b.remove(&[attr::OPEN_STATUS]),
        };
        // Every status change bumps the revision that optimistic writers compare.
        b.add(attr::REVISION, 1);
    }
    match change {
        TaskChange::Revive {
            video_url,
            upstream_code,
            upstream_msg,
            source,
        } => {
            b.set(attr::VIDEO_URL, video_url.as_str())
                .set(attr::UPSTREAM_CODE, *upstream_code)
                .set(attr::UPSTREAM_MSG, stored_text(upstream_msg))
                .set(attr::SOURCE, source.as_str())
                .set(attr::ATTEMPTS, 0)
                .set(attr::LAST_CALLBACK_AT, at.to_rfc3339())
                .set(attr::EXPIRES_AT, expiry(at, ttl))
                .add(attr::CALLBACK_COUNT, 1)
                .remove(&[
                    attr::FAILURE_REASON,
                    attr::FAILURE_DETAIL,
                    attr::NEXT_POLL_AT,
                ])
                .remove(&LEASE_ATTRIBUTES);
        }
        TaskChange::FailedUpstream {
            upstream_code,
            upstream_msg,
            source,
        } => {
            b.set(attr::UPSTREAM_CODE, *upstream_code)
                .set(attr::UPSTREAM_MSG, stored_text(upstream_msg))
                .set(attr::SOURCE, source.as_str())
                .set(attr::FAILURE_REASON, FailureReason::UpstreamFailed.as_str())
                .set(attr::LAST_CALLBACK_AT, at.to_rfc3339())
                .set(attr::EXPIRES_AT, expiry(at, ttl))
                .add(attr::CALLBACK_COUNT, 1)
                .remove(&[attr::NEXT_POLL_AT]);
        }
        TaskChange::Claim { owner, lease_until } => {
            b.set(attr::LEASE_OWNER, owner.as_str())
                .set(attr::LEASE_UNTIL, lease_until.as_millis())
                .set(attr::BYTES_RECEIVED, 0)
                .add(attr::ATTEMPTS, 1);
        }
        TaskChange::Renew {
            bytes_received,
            lease_until,
        } => {
            b.set(attr::BYTES_RECEIVED, *bytes_received)
                .set(attr::LEASE_UNTIL, lease_until.as_millis());
        }
        TaskChange::RefreshUrl { video_url } => {
            b.set(attr::VIDEO_URL, video_url.as_str());
        }
        TaskChange::Redrive { mark } => {
            if *mark {
                b.set(attr::REDRIVE_MARK, at.to_rfc3339());
            } else {
                b.remove(&[attr::REDRIVE_MARK]);
            }
            b.add(attr::REDRIVES, 1).remove(&LEASE_ATTRIBUTES);
        }
        TaskChange::SchedulePoll { next_poll_at } => {
            b.set(attr::NEXT_POLL_AT, next_poll_at.as_millis())
                .add(attr::POLLS, 1);
        }
        TaskChange::Expire { detail } => {
            b.set(attr::FAILURE_REASON, FailureReason::NeverCompleted.as_str())
                .set(attr::FAILURE_DETAIL, stored_text(detail))
                .set(attr::EXPIRES_AT, expiry(at, ttl))
                .remove(&[attr::NEXT_POLL_AT]);
        }
        TaskChange::Store { video } => {
            // A struct of strings and integers always serialises.
            let video = serde_json::to_value(video).unwrap_or(Value::Null);
            b.set(attr::VIDEO, video)
                .set(attr::EXPIRES_AT, expiry(at, ttl))
                .remove(&LEASE_ATTRIBUTES);
        }
        TaskChange::Fail { reason, detail } => {
            b.set(attr::FAILURE_REASON, reason.as_str())
                .set(attr::FAILURE_DETAIL, stored_text(detail))
                .set(attr::EXPIRES_AT, expiry(at, ttl))
                .remove(&LEASE_ATTRIBUTES);
        }
        TaskChange::Release => {
            b.set(attr::LEASE_UNTIL, at.as_millis());
        }
    }
    Some(b.patch)
}

struct Builder {
    patch: Patch,
}

impl Builder {
    fn new(condition: Condition) -> Self {
        Self {
            patch: Patch::empty(condition),
        }
    }

    fn set(&mut self, name: &'static str, value: impl Into<Value>) -> &mut Self {
        self.patch.set.push((name, value.into()));
        self
    }

    fn add(&mut self, name: &'static str, by: i64) -> &mut Self {
        self.patch.add.push((name, by));
        self
    }

    fn remove(&mut self, names: &[&'static str]) -> &mut Self {
        self.patch.remove.extend_from_slice(names);
        self
    }
}

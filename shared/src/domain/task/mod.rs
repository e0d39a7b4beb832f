//! The task record, its state machine and every change it can go through.
//!
//! Every decision is a pure function of the current record, the event and the clock, and
//! its result is data: a [`Patch`] (what to set, add and remove, under which
//! [`Condition`]) that a store applies as one conditional write, so concurrent writers
//! cannot interleave. Whoever decides a change decides its expiry (TTL). Nothing ever
//! leaves `stored`.

mod patch;
#[cfg(test)]
mod properties;
mod state;
mod transition;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use patch::{Condition, Item, MAX_STORED_TEXT, Patch, attr, stored_text};
pub use state::{Inconsistent, Lease, TaskState};
pub use transition::{TaskEvent, Transition, transition};

use crate::domain::backoff::Backoff;
use crate::domain::clock::Timestamp;
use crate::domain::envelope::{CallbackEnvelope, Outcome, SUCCESS_CODE, VideoUrl};
use crate::domain::task_id::TaskId;
use patch::{TaskChange, build, status_attributes};

/// Default time a task record lives after its last change (DynamoDB TTL).
pub const DEFAULT_TASK_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Registered by an operator before its callback (`POST /tasks`); polled upstream if
    /// the callback does not come.
    Expected,
    /// Recorded from a success callback; waiting for ingest.
    Received,
    /// An ingest invocation holds the lease and is copying the video.
    Downloading,
    /// The video is in S3. Final.
    Stored,
    /// The upstream reported a failure, or ingest gave up. A later success callback
    /// revives the task.
    Failed,
}

impl TaskStatus {
    pub const ALL: [Self; 5] = [
        Self::Received,
        Self::Downloading,
        Self::Stored,
        Self::Failed,
        Self::Expected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expected => "expected",
            Self::Received => "received",
            Self::Downloading => "downloading",
            Self::Stored => "stored",
            Self::Failed => "failed",
        }
    }

    /// Open tasks still need work; only they appear in the sparse `open-tasks` index.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Expected | Self::Received | Self::Downloading)
    }
}

/// A status name that is none of [`TaskStatus::ALL`]; its message lists the valid ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("status {0:?} is not one of expected, received, downloading, stored, failed")]
pub struct UnknownStatus(pub String);

impl std::str::FromStr for TaskStatus {
    type Err = UnknownStatus;

    /// The API's spelling, exactly as [`TaskStatus::as_str`] writes it.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| UnknownStatus(raw.to_owned()))
    }
}

/// Where a task's outcome came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordSource {
    /// The upstream called us back.
    Callback,
    /// The reconciler asked the upstream's API (the callback never came).
    Poll,
}

impl RecordSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Callback => "callback",
            Self::Poll => "poll",
        }
    }
}

/// Why a task failed. The string form is stable (API and log field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The upstream's callback reported a failure (see `upstream_code`).
    UpstreamFailed,
    /// The source answered 404.
    SourceNotFound,
    /// The source answered 401/403/410: typically the signed URL expired.
    SourceExpired,
    /// Another 4xx from the source that retrying will not fix.
    SourceRejected,
    /// The bytes are not an ISO-BMFF (MP4) file.
    NotMp4,
    /// Larger than the configured maximum.
    TooLarge,
    /// The SSRF guard refused the URL or one of its redirects.
    BlockedUrl,
    /// Redirected more than the allowed number of times.
    TooManyRedirects,
    /// Transient errors on every attempt up to the configured maximum.
    MaxAttemptsExceeded,
    /// The source's length could not be confirmed (no Content-Length, no Content-Range
    /// total, no `416 bytes */N` answer to a final range probe): never stored unconfirmed.
    LengthUnconfirmed,
    /// An expected task's callback never came and polling found no outcome in time.
    NeverCompleted,
    /// The stored record could not be read (hand-edited or corrupted).
    UnreadableRecord,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpstreamFailed => "upstream_failed",
            Self::SourceNotFound => "source_not_found",
            Self::SourceExpired => "source_expired",
            Self::SourceRejected => "source_rejected",
            Self::NotMp4 => "not_mp4",
            Self::TooLarge => "too_large",
            Self::BlockedUrl => "blocked_url",
            Self::TooManyRedirects => "too_many_redirects",
            Self::MaxAttemptsExceeded => "max_attempts_exceeded",
            Self::LengthUnconfirmed => "length_unconfirmed",
            Self::NeverCompleted => "never_completed",
            Self::UnreadableRecord => "unreadable_record",
        }
    }
}

/// Where a stored video is and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredVideo {
    pub bucket: String,
    pub key: String,
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the whole object.
    pub sha256: String,
    pub content_type: String,
}

/// A task as stored: one item per `task_id`. The fields are the item's attributes
/// ([`attr`]); [`Task::state`] is the typed view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub task_id: TaskId,
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_url: Option<VideoUrl>,
    pub upstream_code: u16,
    #[serde(default)]
    pub upstream_msg: String,
    pub received_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_callback_at: Timestamp,
    pub callback_count: u32,
    /// TTL, in Unix seconds (DynamoDB's TTL format).
    pub expires_at: i64,
    /// Bumped by every status change; conditional writes compare it (optimistic locking).
    pub revision: u64,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_owner: Option<String>,
    /// Lease end in Unix milliseconds (a number, so conditions can compare it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<FailureReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_detail: Option<String>,
    /// Download progress while `downloading`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_received: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<StoredVideo>,
    /// Where the outcome came from (absent on records written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<RecordSource>,
    /// When an operator registered the task as expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<Timestamp>,
    /// An expected task is polled no earlier than this (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_poll_at: Option<i64>,
    /// Polls of the upstream's API so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub polls: u32,
    /// Present or absent, flipped by each re-drive of a received task (see
    /// [`attr::REDRIVE_MARK`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive_mark: Option<String>,
    /// Times the reconciler handed the task to ingest again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub redrives: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One field of a raw item, if it decodes as `T`.
fn field<T: serde::de::DeserializeOwned>(raw: &Item, name: &str) -> Option<T> {
    raw.get(name)
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
}

/// When the reconciler acts, and how the expected tasks are polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcilePolicy {
    /// A `received` task untouched this long lost its stream record: re-drive it.
    pub received_after: Duration,
    /// Claims of one task before it fails as `max_attempts_exceeded`.
    pub max_attempts: u32,
    /// An expected task is first polled this long after it was registered.
    pub poll_grace: Duration,
    /// Shortest time between two polls of one task; it doubles with each poll…
    pub poll_min_interval: Duration,
    /// …up to this.
    pub poll_max_interval: Duration,
    /// An expected task still without an outcome this long after registration fails as
    /// `never_completed`.
    pub expected_max_age: Duration,
    /// Records the reconciler changes live this long.
    pub ttl: Duration,
}

/// What the reconciler does with one open task.
#[derive(Debug, Clone, PartialEq)]
pub enum Reconcile {
    /// Nothing is overdue.
    Nothing,
    /// Hand it to ingest again (the stream filter sees the write).
    Redrive(Patch),
    /// Out of attempts: fail it as `max_attempts_exceeded`.
    GiveUp(Patch),
    /// An expected task is due: ask the upstream's API.
    Poll,
    /// An expected task never completed: fail it as `never_completed`.
    Expire(Patch),
}

/// A record could not be turned into an item or back.
#[derive(Debug, thiserror::Error)]
#[error("task item is malformed: {0}")]
pub struct MalformedItem(String);

/// What to do with a repeat callback for an existing task.
#[derive(Debug, Clone, PartialEq)]
pub enum RepeatDecision {
    /// Count it ([`Patch::count_callback`]), change nothing else.
    Duplicate,
    /// Apply this patch (which also counts the callback).
    Revive(Patch),
}

/// What an ingest invocation should do with a task it was handed.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimDecision {
    Claim(Patch),
    /// Too many attempts already: fail the task instead.
    GiveUp(Patch),
    Skip(SkipReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Another invocation holds a live lease.
    Leased,
    /// Nothing left to do (stored, or failed).
    Finished,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Leased => "leased_elsewhere",
            Self::Finished => "already_finished",
        }
    }
}

impl Task {
    /// The record a first callback creates: `received` for a success, `failed` with the
    /// upstream's code and message for a failure. It lives `ttl` from `now`.
    pub fn from_callback(envelope: &CallbackEnvelope, now: Timestamp, ttl: Duration) -> Self {
        Self::from_outcome(envelope, RecordSource::Callback, now, ttl)
    }

    /// [`Task::from_callback`] for an outcome from `source`.
    pub fn from_outcome(
        envelope: &CallbackEnvelope,
        source: RecordSource,
        now: Timestamp,
        ttl: Duration,
    ) -> Self {
        let (status, video_url, failure_reason) = match &envelope.outcome {
            Outcome::Succeeded { video_url } => {
                (TaskStatus::Received, Some(video_url.clone()), None)
            }
            Outcome::Failed { .. } => (
                TaskStatus::Failed,
                None,
                Some(FailureReason::UpstreamFailed),
            ),
        };
        Self {
            status,
            video_url,
            upstream_code: envelope.code(),
            upstream_msg: stored_text(&envelope.msg).to_owned(),
            callback_count: 1,
            failure_reason,
            source: Some(source),
            registered_at: None,
            ..Self::expected(envelope.task_id.clone(), now, ttl)
        }
    }

    /// The record an operator registers before the callback: `expected`, no outcome yet.
    pub fn expected(task_id: TaskId, now: Timestamp, ttl: Duration) -> Self {
        Self {
            task_id,
            status: TaskStatus::Expected,
            video_url: None,
            upstream_code: 0,
            upstream_msg: String::new(),
            received_at: now,
            updated_at: now,
            last_callback_at: now,
            callback_count: 0,
            expires_at: expiry(now, ttl),
            revision: 1,
            attempts: 0,
            lease_owner: None,
            lease_until: None,
            failure_reason: None,
            failure_detail: None,
            bytes_received: None,
            video: None,
            source: None,
            registered_at: Some(now),
            next_poll_at: None,
            polls: 0,
            redrive_mark: None,
            redrives: 0,
        }
    }

    /// The item a store keeps for this record: its fields plus the derived index key.
    pub fn to_item(&self) -> Result<Item, MalformedItem> {
        let mut item = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(item)) => item,
            Ok(other) => return Err(MalformedItem(format!("serialised to {other}"))),
            Err(e) => return Err(MalformedItem(e.to_string())),
        };
        if let (_, Some(open)) = status_attributes(self.status) {
            item.insert(attr::OPEN_STATUS.into(), open);
        }
        Ok(item)
    }

    /// The record an item holds (attributes it does not know, like the index key, are
    /// ignored).
    pub fn from_item(item: Item) -> Result<Self, MalformedItem> {
        serde_json::from_value(serde_json::Value::Object(item))
            .map_err(|e| MalformedItem(e.to_string()))
    }

    /// Decides what a repeat callback does: a success revives a failed task, the first
    /// outcome of an expected task decides it; everything else is a duplicate. (The
    /// functions call [`Task::on_repeat_outcome`], which names the source.)
    #[cfg(test)]
    pub fn on_repeat_callback(
        &self,
        envelope: &CallbackEnvelope,
        now: Timestamp,
        ttl: Duration,
    ) -> RepeatDecision {
        self.on_repeat_outcome(envelope, RecordSource::Callback, now, ttl)
    }

    /// [`Task::on_repeat_callback`] for an outcome from `source`.
    pub fn on_repeat_outcome(
        &self,
        envelope: &CallbackEnvelope,
        source: RecordSource,
        now: Timestamp,
        ttl: Duration,
    ) -> RepeatDecision {
        let change = match &envelope.outcome {
            Outcome::Succeeded { video_url } => TaskChange::Revive {
                video_url: video_url.clone(),
                upstream_code: SUCCESS_CODE,
                upstream_msg: envelope.msg.clone(),
                source,
            },
            Outcome::Failed { code } => TaskChange::FailedUpstream {
                upstream_code: *code,
                upstream_msg: envelope.msg.clone(),
                source,
            },
        };
        // Only a status change decides anything; the table says which.
        let changes_status = change
            .event()
            .is_some_and(|e| matches!(transition(self.status, e), Transition::To(_)));
        if !changes_status {
            return RepeatDecision::Duplicate;
        }
        match build(
            self.status,
            &change,
            Condition::Revision(self.revision),
            now,
            ttl,
        ) {
            Some(patch) => RepeatDecision::Revive(patch),
            None => RepeatDecision::Duplicate,
        }
    }

    /// Whether the lease (if any) has ended at `now`.
    pub fn lease_expired(&self, now: Timestamp) -> bool {
        self.lease_until
            .is_none_or(|until| until <= now.as_millis())
    }

    /// Decides whether an ingest invocation may take the task until `lease_until`; a
    /// task that gives up lives `ttl` from `now`.
    pub fn decide_claim(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        max_attempts: u32,
        ttl: Duration,
    ) -> ClaimDecision {
        let revision = Condition::Revision(self.revision);
        if self.status == TaskStatus::Downloading {
            if !self.lease_expired(now) {
                return ClaimDecision::Skip(SkipReason::Leased);
            }
            // Only an abandoned download counts against the budget: `received` always has
            // a fresh one (creation and revival start at zero).
            if self.attempts >= max_attempts {
                let give_up = TaskChange::Fail {
                    reason: FailureReason::MaxAttemptsExceeded,
                    detail: format!("{} attempts failed", self.attempts),
                };
                if let Some(patch) = build(self.status, &give_up, revision.clone(), now, ttl) {
                    return ClaimDecision::GiveUp(patch);
                }
            }
        }
        let claim = TaskChange::Claim {
            owner: owner.to_owned(),
            lease_until,
        };
        match build(self.status, &claim, revision, now, ttl) {
            Some(patch) => ClaimDecision::Claim(patch),
            None => ClaimDecision::Skip(SkipReason::Finished),
        }
    }

    /// What the reconciler should do with this (open) task at `now`.
    pub fn decide_reconcile(&self, now: Timestamp, policy: &ReconcilePolicy) -> Reconcile {
        let revision = Condition::Revision(self.revision);
        let since = |t: Timestamp| now.saturating_duration_since(t);
        let patch =
            |change: &TaskChange| build(self.status, change, revision.clone(), now, policy.ttl);
        let decided = match self.status {
            TaskStatus::Downloading if self.lease_expired(now) => {
                if self.attempts >= policy.max_attempts {
                    let give_up = TaskChange::Fail {
                        reason: FailureReason::MaxAttemptsExceeded,
                        detail: format!("{} attempts, the last one abandoned", self.attempts),
                    };
                    patch(&give_up).map(Reconcile::GiveUp)
                } else {
                    patch(&self.redrive()).map(Reconcile::Redrive)
                }
            }
            TaskStatus::Received if since(self.updated_at) >= policy.received_after => {
                patch(&self.redrive()).map(Reconcile::Redrive)
            }
            TaskStatus::Expected => {
                let registered = self.registered_at.unwrap_or(self.received_at);
                let age = since(registered);
                if age >= policy.expected_max_age {
                    let expire = TaskChange::Expire {
                        detail: format!(
                            "no callback and no outcome from polling in {} s",
                            age.as_secs()
                        ),
                    };
                    patch(&expire).map(Reconcile::Expire)
                } else if age >= policy.poll_grace
                    && self.next_poll_at.is_none_or(|at| at <= now.as_millis())
                {
                    Some(Reconcile::Poll)
                } else {
                    None
                }
            }
            _ => None,
        };
        decided.unwrap_or(Reconcile::Nothing)
    }

    /// After a poll found no outcome yet: poll again later, each interval twice the last.
    pub fn schedule_poll(&self, now: Timestamp, policy: &ReconcilePolicy) -> Option<Patch> {
        let interval = Backoff {
            base: policy.poll_min_interval,
            max: policy.poll_max_interval,
            retries: u32::MAX,
        }
        .ceiling(self.polls);
        let change = TaskChange::SchedulePoll {
            next_poll_at: now.saturating_add(interval),
        };
        build(
            self.status,
            &change,
            Condition::Revision(self.revision),
            now,
            policy.ttl,
        )
    }

    /// An operator's re-drive (`POST /tasks/{id}/redrive`): the reconciler's re-drive, now
    /// rather than when it is overdue. A `received` task is re-announced; a `downloading`
    /// one only once its lease has run out (a live download is never taken away); any
    /// other status is refused by the table (`None`). Revision-checked, so it cannot race
    /// the reconciler or ingest into a double hand-over.
    pub fn decide_operator_redrive(&self, now: Timestamp, ttl: Duration) -> Option<Patch> {
        if self.status == TaskStatus::Downloading && !self.lease_expired(now) {
            return None;
        }
        build(
            self.status,
            &self.redrive(),
            Condition::Revision(self.revision),
            now,
            ttl,
        )
    }

    fn redrive(&self) -> TaskChange {
        TaskChange::Redrive {
            mark: self.redrive_mark.is_none(),
        }
    }

    /// A consistent `failed` record (`unreadable_record`, with `detail`) built from an item
    /// that does not decode: every field that still decodes is kept, the rest falls back
    /// to what is known (`now`), leases end. It lives `ttl` from `now`.
    pub fn salvage(
        task_id: TaskId,
        raw: &Item,
        detail: &str,
        now: Timestamp,
        ttl: Duration,
    ) -> Self {
        Self {
            task_id,
            status: TaskStatus::Failed,
            video_url: field(raw, attr::VIDEO_URL),
            upstream_code: field(raw, attr::UPSTREAM_CODE).unwrap_or(0),
            upstream_msg: field::<String>(raw, attr::UPSTREAM_MSG)
                .map(|m| stored_text(&m).to_owned())
                .unwrap_or_default(),
            received_at: field(raw, attr::RECEIVED_AT).unwrap_or(now),
            updated_at: now,
            last_callback_at: field(raw, attr::LAST_CALLBACK_AT).unwrap_or(now),
            callback_count: field(raw, attr::CALLBACK_COUNT).unwrap_or(0),
            expires_at: expiry(now, ttl),
            revision: field::<u64>(raw, attr::REVISION).map_or(1, |r| r.saturating_add(1)),
            attempts: field(raw, attr::ATTEMPTS).unwrap_or(0),
            lease_owner: None,
            lease_until: None,
            failure_reason: Some(FailureReason::UnreadableRecord),
            failure_detail: Some(stored_text(detail).to_owned()),
            bytes_received: None,
            video: field(raw, attr::VIDEO),
            source: field(raw, attr::SOURCE),
            registered_at: field(raw, attr::REGISTERED_AT),
            next_poll_at: None,
            polls: field(raw, attr::POLLS).unwrap_or(0),
            redrive_mark: None,
            redrives: field(raw, attr::REDRIVES).unwrap_or(0),
        }
    }

    /// The patch that replaces an unreadable `raw` item with its salvaged record.
    pub fn fail_unreadable(
        task_id: TaskId,
        raw: &Item,
        detail: &str,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<Patch, MalformedItem> {
        let salvaged = Self::salvage(task_id, raw, detail, now, ttl).to_item()?;
        Ok(Patch::replace_unreadable(raw, &salvaged))
    }

    /// The record after `patch`, if its condition holds: exactly what a store does.
    pub fn apply(&self, patch: &Patch) -> Option<Task> {
        let item = self.to_item().ok()?;
        patch
            .apply_to(Some(&item))
            .and_then(|next| Task::from_item(next).ok())
    }
}

/// TTL attribute value: `ttl` after `now`, in Unix seconds.
pub fn expiry(now: Timestamp, ttl: Duration) -> i64 {
    now.saturating_add(ttl).as_secs()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::domain::ssrf::UrlPolicy;

    const TTL: Duration = DEFAULT_TASK_TTL;
    const MAX: u32 = 3;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(1_795_000_000_000 + ms)
    }

    fn url(s: &str) -> VideoUrl {
        VideoUrl::parse(s, &UrlPolicy::default()).unwrap()
    }

    fn success(id: &str, u: &str) -> CallbackEnvelope {
        CallbackEnvelope {
            task_id: TaskId::parse(id).unwrap(),
            msg: "MP4 generated successfully.".into(),
            outcome: Outcome::Succeeded { video_url: url(u) },
        }
    }

    fn failure(id: &str, code: u16) -> CallbackEnvelope {
        CallbackEnvelope {
            task_id: TaskId::parse(id).unwrap(),
            msg: "source download failed".into(),
            outcome: Outcome::Failed { code },
        }
    }

    fn task_in(status: TaskStatus) -> Task {
        let mut task = Task::from_callback(&success("t1", "https://cdn.example/a.mp4"), t(0), TTL);
        task.status = status;
        task
    }

    fn policy() -> ReconcilePolicy {
        ReconcilePolicy {
            received_after: Duration::from_secs(120),
            max_attempts: MAX,
            poll_grace: Duration::from_secs(60),
            poll_min_interval: Duration::from_secs(30),
            poll_max_interval: Duration::from_secs(600),
            expected_max_age: Duration::from_secs(86_400),
            ttl: TTL,
        }
    }

    fn video() -> StoredVideo {
        StoredVideo {
            bucket: "b".into(),
            key: "videos/t1.mp4".into(),
            bytes: 10,
            sha256: "00".repeat(32),
            content_type: "video/mp4".into(),
        }
    }

    #[test]
    fn an_operator_redrive_is_the_reconcilers_and_never_takes_a_live_lease() {
        let received = task_in(TaskStatus::Received);
        let patch = received.decide_operator_redrive(t(1), TTL).unwrap();
        assert_eq!(patch.condition, Condition::Revision(received.revision));
        let redriven = received.apply(&patch).unwrap();
        assert_eq!(redriven.status, TaskStatus::Received);
        assert!(redriven.redrive_mark.is_some(), "the ingest filter sees it");
        assert!(redriven.revision > received.revision);

        let mut leased = task_in(TaskStatus::Downloading);
        leased.lease_owner = Some("inv".into());
        leased.lease_until = Some(t(10_000).as_millis());
        assert_eq!(leased.decide_operator_redrive(t(5_000), TTL), None);
        let taken = leased.decide_operator_redrive(t(10_000), TTL).unwrap();
        let back = leased.apply(&taken).unwrap();
        assert_eq!(
            (back.status, back.lease_owner),
            (TaskStatus::Received, None)
        );

        for status in [TaskStatus::Stored, TaskStatus::Failed, TaskStatus::Expected] {
            assert_eq!(
                task_in(status).decide_operator_redrive(t(1), TTL),
                None,
                "{status:?}"
            );
        }
    }

    #[test]
    fn first_callback_creates_received_or_failed() {
        let ok = Task::from_callback(&success("t1", "https://cdn.example/a.mp4"), t(0), TTL);
        assert_eq!(ok.status, TaskStatus::Received);
        assert_eq!(
            (ok.callback_count, ok.revision, ok.upstream_code),
            (1, 1, 200)
        );
        assert_eq!(ok.expires_at, t(0).as_secs() + 30 * 24 * 3600);

        let failed = Task::from_callback(&failure("t1", 451), t(0), TTL);
        assert_eq!(failed.status, TaskStatus::Failed);
        assert_eq!(failed.upstream_code, 451);
        assert_eq!(failed.upstream_msg, "source download failed");
        assert_eq!(failed.failure_reason, Some(FailureReason::UpstreamFailed));
        assert_eq!(failed.video_url, None);
    }

    #[test]
    fn repeat_callbacks_are_duplicates_except_success_after_failure() {
        // (An expected task is decided by its first callback: see expected_tasks.)
        let known = [
            TaskStatus::Received,
            TaskStatus::Downloading,
            TaskStatus::Stored,
            TaskStatus::Failed,
        ];
        for s in known {
            let task = task_in(s);
            assert_eq!(
                task.on_repeat_callback(&failure("t1", 500), t(1), TTL),
                RepeatDecision::Duplicate
            );
            let decision =
                task.on_repeat_callback(&success("t1", "https://cdn.example/b.mp4"), t(1), TTL);
            match s {
                TaskStatus::Failed => assert!(matches!(decision, RepeatDecision::Revive(_))),
                _ => assert_eq!(decision, RepeatDecision::Duplicate, "{s:?}"),
            }
        }
    }

    #[test]
    fn revive_resets_the_task_for_a_new_download() {
        let mut failed = Task::from_callback(&failure("t1", 451), t(0), TTL);
        failed.attempts = 2;
        let RepeatDecision::Revive(update) =
            failed.on_repeat_callback(&success("t1", "https://cdn.example/b.mp4"), t(5), TTL)
        else {
            panic!("expected a revive")
        };
        let next = failed.apply(&update).unwrap();
        assert_eq!(next.status, TaskStatus::Received);
        assert_eq!(
            next.video_url.unwrap().as_str(),
            "https://cdn.example/b.mp4"
        );
        assert_eq!(
            (
                next.upstream_code,
                next.attempts,
                next.callback_count,
                next.revision
            ),
            (200, 0, 2, 2)
        );
        assert_eq!(next.failure_reason, None);
        assert_eq!(next.last_callback_at, t(5));
        // A concurrent writer got there first: the guard no longer holds.
        let mut moved_on = failed.clone();
        moved_on.revision += 1;
        assert_eq!(moved_on.apply(&update), None);
    }

    #[test]
    fn claim_decisions() {
        let lease = t(900_000);
        let received = task_in(TaskStatus::Received);
        let ClaimDecision::Claim(claim) = received.decide_claim("inv-1", t(1), lease, MAX, TTL)
        else {
            panic!("received must be claimable")
        };
        let downloading = received.apply(&claim).unwrap();
        assert_eq!(downloading.status, TaskStatus::Downloading);
        assert_eq!(downloading.attempts, 1);
        assert_eq!(downloading.lease_owner.as_deref(), Some("inv-1"));
        assert_eq!(downloading.lease_until, Some(lease.as_millis()));

        // Live lease: skip. Expired lease: take over.
        assert_eq!(
            downloading.decide_claim("inv-2", t(2), lease, MAX, TTL),
            ClaimDecision::Skip(SkipReason::Leased)
        );
        let later = Timestamp::from_millis(lease.as_millis());
        let ClaimDecision::Claim(takeover) =
            downloading.decide_claim("inv-2", later, t(2_000_000), MAX, TTL)
        else {
            panic!("an expired lease must be taken over")
        };
        let taken = downloading.apply(&takeover).unwrap();
        assert_eq!(
            (taken.attempts, taken.lease_owner.as_deref()),
            (2, Some("inv-2"))
        );

        // Finished tasks are skipped.
        for s in [TaskStatus::Stored, TaskStatus::Failed] {
            assert_eq!(
                task_in(s).decide_claim("x", t(1), lease, MAX, TTL),
                ClaimDecision::Skip(SkipReason::Finished)
            );
        }

        // Out of attempts: give up instead of claiming.
        let mut tired = taken.clone();
        tired.attempts = MAX;
        tired.lease_until = Some(t(0).as_millis());
        let ClaimDecision::GiveUp(give_up) = tired.decide_claim("inv-3", t(3), lease, MAX, TTL)
        else {
            panic!("expected give up")
        };
        let failed = tired.apply(&give_up).unwrap();
        assert_eq!(failed.status, TaskStatus::Failed);
        assert_eq!(
            failed.failure_reason,
            Some(FailureReason::MaxAttemptsExceeded)
        );
        assert_eq!(failed.lease_owner, None);
    }

    #[test]
    fn outcome_writes_need_the_lease() {
        let received = task_in(TaskStatus::Received);
        let ClaimDecision::Claim(claim) =
            received.decide_claim("inv-1", t(1), t(100_000), MAX, TTL)
        else {
            panic!()
        };
        let downloading = received.apply(&claim).unwrap();
        let video = video();
        let store = |owner: &str| Lease::new(owner, t(100_000)).store(video.clone(), t(50), TTL);
        assert_eq!(
            downloading.apply(&store("inv-2")),
            None,
            "not the lease owner"
        );
        let stored = downloading.apply(&store("inv-1")).unwrap();
        assert_eq!(stored.status, TaskStatus::Stored);
        assert_eq!(stored.video.as_ref(), Some(&video));
        assert_eq!(stored.revision, downloading.revision + 1);
        assert_eq!(stored.apply(&store("inv-1")), None, "nothing leaves stored");

        let lease = Lease::new("inv-1", t(100_000));
        let progress = lease.renew(64 << 20, t(100_000), t(10));
        let moved = downloading.apply(&progress).unwrap();
        assert_eq!(
            (moved.status, moved.bytes_received, moved.revision),
            (
                TaskStatus::Downloading,
                Some(64 << 20),
                downloading.revision
            )
        );

        let release = lease.release(t(20));
        let released = downloading.apply(&release).unwrap();
        assert!(released.lease_expired(t(20)));
        assert_eq!(released.status, TaskStatus::Downloading);

        let fail = lease.fail(FailureReason::NotMp4, "starts with <html", t(30), TTL);
        let failed = downloading.apply(&fail).unwrap();
        assert_eq!(
            (failed.status, failed.failure_reason),
            (TaskStatus::Failed, Some(FailureReason::NotMp4))
        );
    }

    #[test]
    fn serialises_with_stable_field_names() {
        let task = Task::from_callback(&success("t1", "https://cdn.example/a.mp4"), t(0), TTL);
        let v = serde_json::to_value(&task).unwrap();
        assert_eq!(v["status"], "received");
        assert_eq!(v["received_at"], "2026-11-18T11:06:40.000Z");
        assert!(v.get("lease_owner").is_none());
        let back: Task = serde_json::from_value(v).unwrap();
        assert_eq!(back, task);
        assert_eq!(
            serde_json::to_value(FailureReason::MaxAttemptsExceeded).unwrap(),
            "max_attempts_exceeded"
        );
        assert_eq!(FailureReason::NotMp4.as_str(), "not_mp4");
    }

    // --- the patch model ---

    /// One of every patch the domain can produce, from a record where it applies.
    fn every_patch() -> Vec<(Task, Patch)> {
        let received = task_in(TaskStatus::Received);
        let ClaimDecision::Claim(claim) = received.decide_claim("o", t(1), t(9_000), MAX, TTL)
        else {
            panic!()
        };
        let downloading = received.apply(&claim).unwrap();
        let mut tired = downloading.clone();
        tired.attempts = MAX;
        tired.lease_until = Some(t(0).as_millis());
        let ClaimDecision::GiveUp(give_up) = tired.decide_claim("p", t(2), t(9_000), MAX, TTL)
        else {
            panic!()
        };
        let failed = task_in(TaskStatus::Failed);
        let RepeatDecision::Revive(revive) =
            failed.on_repeat_callback(&success("t1", "https://cdn.example/c.mp4"), t(3), TTL)
        else {
            panic!()
        };
        let lease = Lease::new("o", t(9_000));
        let policy = policy();
        let late = t(10 * 3_600_000);
        let Reconcile::Redrive(redrive_received) = received.decide_reconcile(late, &policy) else {
            panic!()
        };
        let Reconcile::Redrive(redrive_downloading) = downloading.decide_reconcile(late, &policy)
        else {
            panic!()
        };
        let mut tired_out = tired.clone();
        tired_out.attempts = policy.max_attempts;
        let Reconcile::GiveUp(abandoned) = tired_out.decide_reconcile(late, &policy) else {
            panic!()
        };
        let expected = Task::expected(TaskId::parse("t1").unwrap(), t(0), TTL);
        let RepeatDecision::Revive(expected_failed) =
            expected.on_repeat_callback(&failure("t1", 451), t(5), TTL)
        else {
            panic!()
        };
        let RepeatDecision::Revive(expected_succeeded) =
            expected.on_repeat_callback(&success("t1", "https://cdn.example/e.mp4"), t(5), TTL)
        else {
            panic!()
        };
        let Reconcile::Expire(never) = expected.decide_reconcile(t(86_400_001), &policy) else {
            panic!()
        };
        let poll_later = expected.schedule_poll(t(60_000), &policy).unwrap();
        vec![
            (received.clone(), claim),
            (tired, give_up),
            (tired_out, abandoned),
            (failed, revive),
            (received.clone(), redrive_received),
            (downloading.clone(), redrive_downloading),
            (expected.clone(), expected_failed),
            (expected.clone(), expected_succeeded),
            (expected.clone(), never),
            (expected, poll_later),
            (
                downloading.clone(),
                lease.refresh_url(url("https://cdn.example/fresh.mp4"), t(5)),
            ),
            (received, Patch::count_callback(t(4))),
            (downloading.clone(), lease.renew(5, t(9_500), t(5))),
            (downloading.clone(), lease.store(video(), t(6), TTL)),
            (
                downloading.clone(),
                lease.fail(FailureReason::TooLarge, "x", t(7), TTL),
            ),
            (downloading, lease.release(t(8))),
        ]
    }

    #[test]
    fn patches_name_only_attributes_of_the_record_and_never_one_twice() {
        let mut full = task_in(TaskStatus::Downloading);
        full.lease_owner = Some("o".into());
        full.lease_until = Some(1);
        full.failure_reason = Some(FailureReason::NotMp4);
        full.failure_detail = Some("d".into());
        full.bytes_received = Some(1);
        full.video = Some(video());
        full.source = Some(RecordSource::Poll);
        full.registered_at = Some(t(0));
        full.next_poll_at = Some(1);
        full.polls = 1;
        full.redrive_mark = Some("m".into());
        full.redrives = 1;
        let known: BTreeSet<String> = full.to_item().unwrap().keys().cloned().collect();
        assert!(known.contains(attr::OPEN_STATUS));
        // attr::ALL is written by hand: every attribute a record has must be in it, or
        // salvaging an unreadable item would leave that attribute behind.
        for a in &known {
            assert!(attr::known(a).is_some(), "{a} is missing from attr::ALL");
        }
        for (before, patch) in every_patch() {
            let mut seen = BTreeSet::new();
            for a in patch.attributes() {
                assert!(known.contains(a), "{a} is not an attribute of a task");
                assert!(seen.insert(a), "{a} appears twice in {patch:?}");
            }
            let after = before.apply(&patch).expect("applies where it was decided");
            // The index key follows the status in every patch.
            let item = after.to_item().unwrap();
            assert_eq!(
                item.contains_key(attr::OPEN_STATUS),
                after.status.is_open(),
                "{patch:?}"
            );
            let applied = patch.apply_to(Some(&before.to_item().unwrap())).unwrap();
            assert_eq!(
                applied.contains_key(attr::OPEN_STATUS),
                after.status.is_open()
            );
        }
    }

    #[test]
    fn every_lease_change_is_allowed_while_downloading() {
        for e in [TaskEvent::Store, TaskEvent::Fail, TaskEvent::Release] {
            assert_ne!(
                transition(TaskStatus::Downloading, e),
                Transition::Refused,
                "{e:?}"
            );
        }
    }

    #[test]
    fn conditions_on_missing_and_present_items() {
        let task = task_in(TaskStatus::Received);
        let item = task.to_item().unwrap();
        assert!(!Condition::Exists.holds(None));
        assert!(Condition::Exists.holds(Some(&item)));
        assert!(Condition::Revision(1).holds(Some(&item)));
        assert!(!Condition::Revision(2).holds(Some(&item)));
        assert!(!Condition::LeaseHeldBy("o".into()).holds(Some(&item)));
        assert_eq!(Patch::count_callback(t(1)).apply_to(None), None);
        let counted = task.apply(&Patch::count_callback(t(1))).unwrap();
        assert_eq!(
            (counted.callback_count, counted.revision, counted.status),
            (2, 1, TaskStatus::Received)
        );
    }

    #[test]
    fn the_typed_view_matches_the_status() {
        let received = task_in(TaskStatus::Received);
        assert!(matches!(received.state(), Ok(TaskState::Received { .. })));
        let ClaimDecision::Claim(claim) = received.decide_claim("o", t(1), t(9), MAX, TTL) else {
            panic!()
        };
        let downloading = received.apply(&claim).unwrap();
        match downloading.state().unwrap() {
            TaskState::Downloading {
                lease,
                bytes_received,
                ..
            } => assert_eq!((lease, bytes_received), (Lease::new("o", t(9)), 0)),
            other => panic!("{other:?}"),
        }
        let stored = downloading
            .apply(&Lease::new("o", t(9)).store(video(), t(2), TTL))
            .unwrap();
        assert_eq!(stored.state(), Ok(TaskState::Stored { video: &video() }));
        let failed = Task::from_callback(&failure("t1", 500), t(0), TTL);
        assert_eq!(
            failed.state(),
            Ok(TaskState::Failed {
                reason: FailureReason::UpstreamFailed,
                detail: None
            })
        );
        let broken = task_in(TaskStatus::Stored);
        assert_eq!(
            broken.state().unwrap_err().to_string(),
            "task is stored but has no video"
        );
    }

    // --- issue 7: expected tasks, re-drives, polling, caps ---

    #[test]
    fn expected_tasks_are_decided_by_their_first_outcome() {
        let expected = Task::expected(TaskId::parse("t1").unwrap(), t(0), TTL);
        assert_eq!(expected.status, TaskStatus::Expected);
        assert!(expected.status.is_open());
        assert_eq!(expected.to_item().unwrap()[attr::OPEN_STATUS], "expected");
        assert!(matches!(expected.state(), Ok(TaskState::Expected { .. })));

        let RepeatDecision::Revive(ok) =
            expected.on_repeat_callback(&success("t1", "https://cdn.example/e.mp4"), t(5), TTL)
        else {
            panic!("a success decides an expected task")
        };
        let received = expected.apply(&ok).unwrap();
        assert_eq!(
            (
                received.status,
                received.callback_count,
                received.upstream_code
            ),
            (TaskStatus::Received, 1, 200)
        );
        assert_eq!(
            received.video_url.unwrap().as_str(),
            "https://cdn.example/e.mp4"
        );

        let RepeatDecision::Revive(bad) =
            expected.on_repeat_outcome(&failure("t1", 451), RecordSource::Poll, t(5), TTL)
        else {
            panic!("a failure decides an expected task")
        };
        let failed = expected.apply(&bad).unwrap();
        assert_eq!(
            (failed.status, failed.failure_reason, failed.upstream_code),
            (TaskStatus::Failed, Some(FailureReason::UpstreamFailed), 451)
        );
        assert_eq!(failed.source, Some(RecordSource::Poll));
        assert!(!failed.to_item().unwrap().contains_key(attr::OPEN_STATUS));
        // Once decided, a further failure is a duplicate.
        assert_eq!(
            failed.on_repeat_callback(&failure("t1", 500), t(6), TTL),
            RepeatDecision::Duplicate
        );
    }

    #[test]
    fn the_reconciler_redrives_abandoned_and_stuck_tasks() {
        let policy = policy();
        let received = task_in(TaskStatus::Received);
        assert_eq!(
            received.decide_reconcile(t(119_000), &policy),
            Reconcile::Nothing
        );
        let Reconcile::Redrive(redrive) = received.decide_reconcile(t(120_000), &policy) else {
            panic!("a received task untouched for 2 minutes is re-driven")
        };
        let once = received.apply(&redrive).unwrap();
        assert_eq!(
            (once.status, once.revision, once.redrives),
            (TaskStatus::Received, 2, 1)
        );
        assert!(once.redrive_mark.is_some(), "the mark appears");
        let Reconcile::Redrive(again) = once.decide_reconcile(t(500_000), &policy) else {
            panic!()
        };
        let twice = once.apply(&again).unwrap();
        assert!(
            twice.redrive_mark.is_none(),
            "and disappears on the next re-drive"
        );
        // A second reconciler deciding on the old record loses.
        assert_eq!(twice.apply(&again), None);

        let ClaimDecision::Claim(claim) = received.decide_claim("o", t(1), t(60_000), MAX, TTL)
        else {
            panic!()
        };
        let downloading = received.apply(&claim).unwrap();
        assert_eq!(
            downloading.decide_reconcile(t(59_999), &policy),
            Reconcile::Nothing
        );
        let Reconcile::Redrive(redrive) = downloading.decide_reconcile(t(60_000), &policy) else {
            panic!("an expired lease is re-driven")
        };
        let back = downloading.apply(&redrive).unwrap();
        assert_eq!(back.status, TaskStatus::Received);
        assert_eq!(
            (back.lease_owner, back.lease_until, back.attempts),
            (None, None, 1)
        );

        let mut spent = downloading.clone();
        spent.attempts = MAX;
        let Reconcile::GiveUp(give_up) = spent.decide_reconcile(t(60_000), &policy) else {
            panic!("out of attempts: fail instead of re-driving")
        };
        let failed = spent.apply(&give_up).unwrap();
        assert_eq!(
            failed.failure_reason,
            Some(FailureReason::MaxAttemptsExceeded)
        );

        for s in [TaskStatus::Stored, TaskStatus::Failed] {
            assert_eq!(
                task_in(s).decide_reconcile(t(10_000_000), &policy),
                Reconcile::Nothing
            );
        }
    }

    #[test]
    fn expected_tasks_are_polled_with_growing_intervals_then_expire() {
        let policy = policy();
        let expected = Task::expected(TaskId::parse("t1").unwrap(), t(0), TTL);
        assert_eq!(
            expected.decide_reconcile(t(59_000), &policy),
            Reconcile::Nothing,
            "grace"
        );
        assert_eq!(
            expected.decide_reconcile(t(60_000), &policy),
            Reconcile::Poll
        );
        let mut task = expected;
        let mut now = t(60_000);
        let mut gaps = Vec::new();
        for _ in 0..7 {
            let next = task
                .apply(&task.schedule_poll(now, &policy).unwrap())
                .unwrap();
            let at = next.next_poll_at.unwrap();
            gaps.push((at - now.as_millis()) / 1000);
            assert_eq!(
                next.decide_reconcile(Timestamp::from_millis(at - 1), &policy),
                Reconcile::Nothing
            );
            now = Timestamp::from_millis(at);
            assert_eq!(next.decide_reconcile(now, &policy), Reconcile::Poll);
            task = next;
        }
        assert_eq!(gaps, [30, 60, 120, 240, 480, 600, 600]);
        assert_eq!(task.polls, 7);
        let Reconcile::Expire(expire) = task.decide_reconcile(t(86_400_000), &policy) else {
            panic!("never completed")
        };
        let failed = task.apply(&expire).unwrap();
        assert_eq!(
            (failed.status, failed.failure_reason),
            (TaskStatus::Failed, Some(FailureReason::NeverCompleted))
        );
    }

    #[test]
    fn stored_text_is_capped_on_a_character_boundary() {
        let long = "é".repeat(MAX_STORED_TEXT); // 2 bytes each
        let envelope = CallbackEnvelope {
            msg: long.clone(),
            ..failure("t1", 500)
        };
        let task = Task::from_callback(&envelope, t(0), TTL);
        assert!(task.upstream_msg.len() <= MAX_STORED_TEXT);
        assert_eq!(task.upstream_msg.len(), MAX_STORED_TEXT);
        assert!(long.starts_with(&task.upstream_msg));
        let odd = format!("a{}", "é".repeat(MAX_STORED_TEXT));
        assert_eq!(
            stored_text(&odd).len(),
            MAX_STORED_TEXT - 1,
            "never splits a character"
        );
        let downloading = {
            let ClaimDecision::Claim(c) =
                task_in(TaskStatus::Received).decide_claim("o", t(1), t(9), MAX, TTL)
            else {
                panic!()
            };
            task_in(TaskStatus::Received).apply(&c).unwrap()
        };
        let failed = downloading
            .apply(&Lease::new("o", t(9)).fail(
                FailureReason::NotMp4,
                "x".repeat(100_000),
                t(2),
                TTL,
            ))
            .unwrap();
        assert_eq!(failed.failure_detail.unwrap().len(), MAX_STORED_TEXT);
    }

    #[test]
    fn an_unreadable_record_is_failed_into_a_readable_one() {
        let mut item = task_in(TaskStatus::Received).to_item().unwrap();
        item.insert(attr::STATUS.into(), serde_json::json!("exploded"));
        item.insert(attr::VIDEO_URL.into(), serde_json::json!(12));
        item.insert("someone_elses".into(), serde_json::json!("kept"));
        assert!(Task::from_item(item.clone()).is_err());
        let id = TaskId::parse("t1").unwrap();
        let patch =
            Task::fail_unreadable(id.clone(), &item, "unknown variant `exploded`", t(5), TTL)
                .unwrap();
        let after = patch.apply_to(Some(&item)).unwrap();
        let fixed = Task::from_item(after.clone()).unwrap();
        assert_eq!(
            (fixed.status, fixed.failure_reason, fixed.revision),
            (TaskStatus::Failed, Some(FailureReason::UnreadableRecord), 2)
        );
        assert_eq!(
            (fixed.video_url, fixed.callback_count),
            (None, 1),
            "what decodes is kept"
        );
        assert!(
            after[attr::UNREADABLE_ITEM]
                .as_str()
                .unwrap()
                .contains("exploded")
        );
        assert!(!after.contains_key(attr::OPEN_STATUS));
        assert_eq!(after["someone_elses"], "kept", "attributes not ours stay");
        // A newer write got there first: the stale revision refuses.
        let mut newer = item.clone();
        newer.insert(attr::REVISION.into(), serde_json::json!(7));
        assert_eq!(patch.apply_to(Some(&newer)), None);
        // Without a readable revision, existence is the only condition.
        item.insert(attr::REVISION.into(), serde_json::json!("x"));
        let loose = Task::fail_unreadable(id, &item, "x", t(5), TTL).unwrap();
        assert_eq!(loose.condition, Condition::Exists);
        assert!(loose.apply_to(Some(&item)).is_some());
    }
}

//! The task record and its state machine.
//!
//! ```text
//!   success callback ──► received ──claim──► downloading ──► stored   (final)
//!   failure callback ──► failed ◄──────────────────┘
//!        ▲                 │ success callback (the upstream failed, then succeeded)
//!        └─────────────────┴──► received
//! ```
//! Every decision is a pure function of the current record, the event and the clock; the
//! store applies the resulting [`Update`] with a condition ([`Guard`]) so that concurrent
//! writers cannot interleave. Nothing ever leaves `stored`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::envelope::{CallbackEnvelope, Outcome, SUCCESS_CODE, VideoUrl};
use crate::task_id::TaskId;

/// Default time a task record lives after its last change (DynamoDB TTL).
pub const DEFAULT_TASK_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
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
    pub const ALL: [Self; 4] = [
        Self::Received,
        Self::Downloading,
        Self::Stored,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Downloading => "downloading",
            Self::Stored => "stored",
            Self::Failed => "failed",
        }
    }

    /// Open tasks still need work; only they appear in the sparse `open-tasks` index.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Received | Self::Downloading)
    }
}

/// What can happen to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskEvent {
    SuccessCallback,
    FailureCallback,
    /// Ingest takes the task (from `received`, or over an expired lease).
    Claim,
    /// Ingest finished copying.
    Store,
    /// Ingest failed permanently, or gave up after too many attempts.
    Fail,
    /// Ingest hit a transient error and hands the lease back for a retry.
    Release,
}

impl TaskEvent {
    pub const ALL: [Self; 6] = [
        Self::SuccessCallback,
        Self::FailureCallback,
        Self::Claim,
        Self::Store,
        Self::Fail,
        Self::Release,
    ];
}

/// The result of an event in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The status changes (or is re-entered, for a lease takeover).
    To(TaskStatus),
    /// Accepted without a status change (a duplicate callback, a release).
    Stay,
    /// Not allowed: the writer skips, nothing is written.
    Refused,
}

/// The state machine, in one table.
pub fn transition(from: TaskStatus, event: TaskEvent) -> Transition {
    use TaskEvent as E;
    use TaskStatus as S;
    match (from, event) {
        // The upstream may fail and later succeed: a success revives a failed task.
        (S::Failed, E::SuccessCallback) => Transition::To(S::Received),
        // Any other repeat callback is a duplicate: counted, never a regression.
        (_, E::SuccessCallback | E::FailureCallback) => Transition::Stay,
        (S::Received | S::Downloading, E::Claim) => Transition::To(S::Downloading),
        (S::Downloading, E::Store) => Transition::To(S::Stored),
        (S::Downloading, E::Fail) => Transition::To(S::Failed),
        (S::Downloading, E::Release) => Transition::Stay,
        _ => Transition::Refused,
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

/// A task as stored: one DynamoDB item per `task_id`.
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
}

/// A change to apply to a stored task; the store turns it into one conditional write.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskChange {
    /// failed → received with the new URL; attempts start over.
    Revive {
        video_url: VideoUrl,
        upstream_code: u16,
        upstream_msg: String,
    },
    /// received (or downloading with an expired lease) → downloading; attempts + 1.
    Claim {
        owner: String,
        lease_until: Timestamp,
    },
    /// Download progress; status unchanged.
    Progress { bytes_received: u64 },
    /// downloading → stored.
    Store { video: StoredVideo },
    /// downloading → failed.
    Fail {
        reason: FailureReason,
        detail: String,
    },
    /// Transient failure: the lease ends now so the retry can take over at once.
    Release,
}

impl TaskChange {
    pub fn event(&self) -> Option<TaskEvent> {
        match self {
            Self::Revive { .. } => Some(TaskEvent::SuccessCallback),
            Self::Claim { .. } => Some(TaskEvent::Claim),
            Self::Store { .. } => Some(TaskEvent::Store),
            Self::Fail { .. } => Some(TaskEvent::Fail),
            Self::Release => Some(TaskEvent::Release),
            Self::Progress { .. } => None,
        }
    }

    /// Changes that alter the status bump the revision.
    pub fn changes_status(&self) -> bool {
        matches!(
            self,
            Self::Revive { .. } | Self::Claim { .. } | Self::Store { .. } | Self::Fail { .. }
        )
    }
}

/// The condition an update is written under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// The record is still the one the decision was made on.
    Revision(u64),
    /// The writer still holds the lease of a downloading task.
    LeaseOwner(String),
}

/// A change, its condition and its time.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub change: TaskChange,
    pub guard: Guard,
    pub at: Timestamp,
}

/// What to do with a repeat callback for an existing task.
#[derive(Debug, Clone, PartialEq)]
pub enum RepeatDecision {
    /// Count it (`callback_count + 1`), change nothing else.
    Duplicate,
    /// Apply this update (which also counts the callback).
    Revive(Update),
}

/// What an ingest invocation should do with a task it was handed.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimDecision {
    Claim(Update),
    /// Too many attempts already: fail the task instead.
    GiveUp(Update),
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
    /// upstream's code and message for a failure.
    pub fn from_callback(envelope: &CallbackEnvelope, now: Timestamp, ttl: Duration) -> Self {
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
            task_id: envelope.task_id.clone(),
            status,
            video_url,
            upstream_code: envelope.code(),
            upstream_msg: envelope.msg.clone(),
            received_at: now,
            updated_at: now,
            last_callback_at: now,
            callback_count: 1,
            expires_at: expiry(now, ttl),
            revision: 1,
            attempts: 0,
            lease_owner: None,
            lease_until: None,
            failure_reason,
            failure_detail: None,
            bytes_received: None,
            video: None,
        }
    }

    /// Decides what a repeat callback does. Only a success for a failed task changes
    /// anything; everything else is a duplicate.
    pub fn on_repeat_callback(
        &self,
        envelope: &CallbackEnvelope,
        now: Timestamp,
    ) -> RepeatDecision {
        let event = match envelope.outcome {
            Outcome::Succeeded { .. } => TaskEvent::SuccessCallback,
            Outcome::Failed { .. } => TaskEvent::FailureCallback,
        };
        match (transition(self.status, event), &envelope.outcome) {
            (Transition::To(TaskStatus::Received), Outcome::Succeeded { video_url }) => {
                RepeatDecision::Revive(Update {
                    change: TaskChange::Revive {
                        video_url: video_url.clone(),
                        upstream_code: SUCCESS_CODE,
                        upstream_msg: envelope.msg.clone(),
                    },
                    guard: Guard::Revision(self.revision),
                    at: now,
                })
            }
            _ => RepeatDecision::Duplicate,
        }
    }

    /// Whether the lease (if any) has ended at `now`.
    pub fn lease_expired(&self, now: Timestamp) -> bool {
        self.lease_until
            .is_none_or(|until| until <= now.as_millis())
    }

    /// Decides whether an ingest invocation may take the task.
    pub fn decide_claim(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        max_attempts: u32,
    ) -> ClaimDecision {
        match (self.status, transition(self.status, TaskEvent::Claim)) {
            (TaskStatus::Downloading, _) if !self.lease_expired(now) => {
                ClaimDecision::Skip(SkipReason::Leased)
            }
            // Only an abandoned download counts against the budget: `received` always has
            // a fresh one (creation and revival start at zero).
            (TaskStatus::Downloading, _) if self.attempts >= max_attempts => {
                ClaimDecision::GiveUp(Update {
                    change: TaskChange::Fail {
                        reason: FailureReason::MaxAttemptsExceeded,
                        detail: format!("{} attempts failed", self.attempts),
                    },
                    guard: Guard::Revision(self.revision),
                    at: now,
                })
            }
            (_, Transition::To(_)) => ClaimDecision::Claim(Update {
                change: TaskChange::Claim {
                    owner: owner.to_owned(),
                    lease_until,
                },
                guard: Guard::Revision(self.revision),
                at: now,
            }),
            _ => ClaimDecision::Skip(SkipReason::Finished),
        }
    }

    /// Whether `guard` holds for this record.
    pub fn satisfies(&self, guard: &Guard) -> bool {
        match guard {
            Guard::Revision(r) => self.revision == *r,
            Guard::LeaseOwner(owner) => {
                self.status == TaskStatus::Downloading && self.lease_owner.as_deref() == Some(owner)
            }
        }
    }

    /// The record after `update`, if its guard holds and the state machine allows it.
    /// This is the reference semantics that the DynamoDB adapter's update expressions
    /// implement (and its integration tests compare against).
    pub fn apply(&self, update: &Update, ttl: Duration) -> Option<Task> {
        if !self.satisfies(&update.guard) {
            return None;
        }
        let status = match update.change.event().map(|e| transition(self.status, e)) {
            None | Some(Transition::Stay) => self.status,
            Some(Transition::To(s)) => s,
            Some(Transition::Refused) => return None,
        };
        let mut next = self.clone();
        next.status = status;
        next.updated_at = update.at;
        if update.change.changes_status() {
            next.revision += 1;
        }
        match &update.change {
            TaskChange::Revive {
                video_url,
                upstream_code,
                upstream_msg,
            } => {
                next.video_url = Some(video_url.clone());
                next.upstream_code = *upstream_code;
                next.upstream_msg.clone_from(upstream_msg);
                next.attempts = 0;
                next.callback_count += 1;
                next.last_callback_at = update.at;
                next.expires_at = expiry(update.at, ttl);
                next.failure_reason = None;
                next.failure_detail = None;
                next.lease_owner = None;
                next.lease_until = None;
                next.bytes_received = None;
            }
            TaskChange::Claim { owner, lease_until } => {
                next.attempts += 1;
                next.lease_owner = Some(owner.clone());
                next.lease_until = Some(lease_until.as_millis());
                next.bytes_received = Some(0);
            }
            TaskChange::Progress { bytes_received } => next.bytes_received = Some(*bytes_received),
            TaskChange::Store { video } => {
                next.video = Some(video.clone());
                next.bytes_received = None;
                next.lease_owner = None;
                next.lease_until = None;
                next.expires_at = expiry(update.at, ttl);
            }
            TaskChange::Fail { reason, detail } => {
                next.failure_reason = Some(*reason);
                next.failure_detail = Some(detail.clone());
                next.bytes_received = None;
                next.lease_owner = None;
                next.lease_until = None;
                next.expires_at = expiry(update.at, ttl);
            }
            TaskChange::Release => next.lease_until = Some(update.at.as_millis()),
        }
        Some(next)
    }
}

/// `TASK_TTL_DAYS` (30, 1–3650): how long a task record lives after its last change.
pub fn task_ttl_from_env(env: &crate::config::Env) -> Result<Duration, crate::config::ConfigError> {
    let days = env.ranged(
        "TASK_TTL_DAYS",
        DEFAULT_TASK_TTL.as_secs() / 86_400,
        1..=3_650,
    )?;
    Ok(Duration::from_secs(days * 86_400))
}

/// TTL attribute value: `ttl` after `now`, in Unix seconds.
pub fn expiry(now: Timestamp, ttl: Duration) -> i64 {
    now.saturating_add(ttl).as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::VideoUrlPolicy;

    const TTL: Duration = DEFAULT_TASK_TTL;
    const MAX: u32 = 3;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(1_795_000_000_000 + ms)
    }

    fn url(s: &str) -> VideoUrl {
        VideoUrl::parse(s, &VideoUrlPolicy::default()).unwrap()
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

    #[test]
    fn every_state_event_pair() {
        use TaskEvent as E;
        use TaskStatus as S;
        use Transition::{Refused, Stay, To};
        let expected = |s: S, e: E| -> Transition {
            match (s, e) {
                (S::Received, E::SuccessCallback | E::FailureCallback) => Stay,
                (S::Received, E::Claim) => To(S::Downloading),
                (S::Received, E::Store | E::Fail | E::Release) => Refused,
                (S::Downloading, E::SuccessCallback | E::FailureCallback) => Stay,
                (S::Downloading, E::Claim) => To(S::Downloading),
                (S::Downloading, E::Store) => To(S::Stored),
                (S::Downloading, E::Fail) => To(S::Failed),
                (S::Downloading, E::Release) => Stay,
                (S::Stored, E::SuccessCallback | E::FailureCallback) => Stay,
                (S::Stored, E::Claim | E::Store | E::Fail | E::Release) => Refused,
                (S::Failed, E::SuccessCallback) => To(S::Received),
                (S::Failed, E::FailureCallback) => Stay,
                (S::Failed, E::Claim | E::Store | E::Fail | E::Release) => Refused,
            }
        };
        for s in TaskStatus::ALL {
            for e in TaskEvent::ALL {
                assert_eq!(transition(s, e), expected(s, e), "{s:?} + {e:?}");
            }
        }
    }

    #[test]
    fn nothing_leaves_stored() {
        for e in TaskEvent::ALL {
            assert!(
                !matches!(transition(TaskStatus::Stored, e), Transition::To(s) if s != TaskStatus::Stored)
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
        for s in TaskStatus::ALL {
            let task = task_in(s);
            assert_eq!(
                task.on_repeat_callback(&failure("t1", 500), t(1)),
                RepeatDecision::Duplicate
            );
            let decision =
                task.on_repeat_callback(&success("t1", "https://cdn.example/b.mp4"), t(1));
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
            failed.on_repeat_callback(&success("t1", "https://cdn.example/b.mp4"), t(5))
        else {
            panic!("expected a revive")
        };
        let next = failed.apply(&update, TTL).unwrap();
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
        assert_eq!(moved_on.apply(&update, TTL), None);
    }

    #[test]
    fn claim_decisions() {
        let lease = t(900_000);
        let received = task_in(TaskStatus::Received);
        let ClaimDecision::Claim(claim) = received.decide_claim("inv-1", t(1), lease, MAX) else {
            panic!("received must be claimable")
        };
        let downloading = received.apply(&claim, TTL).unwrap();
        assert_eq!(downloading.status, TaskStatus::Downloading);
        assert_eq!(downloading.attempts, 1);
        assert_eq!(downloading.lease_owner.as_deref(), Some("inv-1"));
        assert_eq!(downloading.lease_until, Some(lease.as_millis()));

        // Live lease: skip. Expired lease: take over.
        assert_eq!(
            downloading.decide_claim("inv-2", t(2), lease, MAX),
            ClaimDecision::Skip(SkipReason::Leased)
        );
        let later = Timestamp::from_millis(lease.as_millis());
        let ClaimDecision::Claim(takeover) =
            downloading.decide_claim("inv-2", later, t(2_000_000), MAX)
        else {
            panic!("an expired lease must be taken over")
        };
        let taken = downloading.apply(&takeover, TTL).unwrap();
        assert_eq!(
            (taken.attempts, taken.lease_owner.as_deref()),
            (2, Some("inv-2"))
        );

        // Finished tasks are skipped.
        for s in [TaskStatus::Stored, TaskStatus::Failed] {
            assert_eq!(
                task_in(s).decide_claim("x", t(1), lease, MAX),
                ClaimDecision::Skip(SkipReason::Finished)
            );
        }

        // Out of attempts: give up instead of claiming.
        let mut tired = taken.clone();
        tired.attempts = MAX;
        tired.lease_until = Some(t(0).as_millis());
        let ClaimDecision::GiveUp(give_up) = tired.decide_claim("inv-3", t(3), lease, MAX) else {
            panic!("expected give up")
        };
        let failed = tired.apply(&give_up, TTL).unwrap();
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
        let ClaimDecision::Claim(claim) = received.decide_claim("inv-1", t(1), t(100_000), MAX)
        else {
            panic!()
        };
        let downloading = received.apply(&claim, TTL).unwrap();
        let video = StoredVideo {
            bucket: "b".into(),
            key: "videos/t1.mp4".into(),
            bytes: 10,
            sha256: "00".repeat(32),
            content_type: "video/mp4".into(),
        };
        let store = |owner: &str| Update {
            change: TaskChange::Store {
                video: video.clone(),
            },
            guard: Guard::LeaseOwner(owner.into()),
            at: t(50),
        };
        assert_eq!(
            downloading.apply(&store("inv-2"), TTL),
            None,
            "not the lease owner"
        );
        let stored = downloading.apply(&store("inv-1"), TTL).unwrap();
        assert_eq!(stored.status, TaskStatus::Stored);
        assert_eq!(stored.video.as_ref(), Some(&video));
        assert_eq!(stored.revision, downloading.revision + 1);
        assert_eq!(
            stored.apply(&store("inv-1"), TTL),
            None,
            "nothing leaves stored"
        );

        let progress = Update {
            change: TaskChange::Progress {
                bytes_received: 64 << 20,
            },
            guard: Guard::LeaseOwner("inv-1".into()),
            at: t(10),
        };
        let moved = downloading.apply(&progress, TTL).unwrap();
        assert_eq!(
            (moved.status, moved.bytes_received, moved.revision),
            (
                TaskStatus::Downloading,
                Some(64 << 20),
                downloading.revision
            )
        );

        let release = Update {
            change: TaskChange::Release,
            guard: Guard::LeaseOwner("inv-1".into()),
            at: t(20),
        };
        let released = downloading.apply(&release, TTL).unwrap();
        assert!(released.lease_expired(t(20)));
        assert_eq!(released.status, TaskStatus::Downloading);

        let fail = Update {
            change: TaskChange::Fail {
                reason: FailureReason::NotMp4,
                detail: "starts with <html".into(),
            },
            guard: Guard::LeaseOwner("inv-1".into()),
            at: t(30),
        };
        let failed = downloading.apply(&fail, TTL).unwrap();
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
}

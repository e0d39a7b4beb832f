//! Ingest's use case for one task, written against the ports: claim it with a lease (one
//! conditional write), copy its video to the sink, record the outcome under the lease.
//! Permanent failures fail the task; transient ones hand the lease back so the stream's
//! retry can take over at once.

use std::time::Duration;

use shared::domain::task::{
    ClaimDecision, FailureReason, Lease, Patch, SkipReason, StoredVideo, Task, TaskState,
    TaskStatus,
};
use shared::fetch::Origin;
use shared::sink::{VIDEO_CONTENT_TYPE, VideoSink, video_key};
use shared::store::{Applied, StoreError, TaskStore};
use shared::{TaskId, Timestamp};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::config::IngestConfig;
use crate::transfer::{Destination, Progress, Source, TransferError, Transferred, transfer};

/// Claims are retried this often when concurrent writers change the task under us.
const MAX_CLAIM_CONFLICTS: usize = 3;
/// A progress write may not hold up the download for longer than this.
const PROGRESS_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// What happened to one task (one stream record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    Stored,
    Failed(FailureReason),
    Skipped(Skipped),
    /// Transient failure: the stream must deliver this record again.
    Retry,
}

/// Why a record needed no work. The string form is the `reason` log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Not an INSERT or MODIFY (the trigger's filter lets only those through).
    NotAnInsertOrModify,
    /// The stream image does not decode into a task.
    MalformedImage,
    /// The image is not a `received` task.
    NotReceived,
    /// The claim decision: leased elsewhere, or already finished.
    Claim(SkipReason),
    /// The task disappeared before it could be claimed.
    TaskDeleted,
    /// Another invocation took over before the outcome was recorded.
    LeaseLost,
}

impl Skipped {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAnInsertOrModify => "not_an_insert_or_modify",
            Self::MalformedImage => "malformed_image",
            Self::NotReceived => "not_received",
            Self::Claim(reason) => reason.as_str(),
            Self::TaskDeleted => "task_deleted",
            Self::LeaseLost => "lease_lost",
        }
    }
}

/// The invocation a task is ingested in: who holds the lease, until when, and when the
/// transfer must stop to leave time for the outcome.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The lease owner: the invocation's request id.
    pub owner: String,
    pub lease_until: Timestamp,
    pub transfer_deadline: Instant,
}

/// The use case's dependencies, built once per cold start.
#[derive(Debug)]
pub struct TaskIngest<S, K, O> {
    pub store: S,
    pub sink: K,
    pub origin: O,
    pub config: IngestConfig,
}

enum Claim {
    Claimed(Box<Task>),
    GaveUp,
    Skip(Skipped),
}

impl<S: TaskStore, K: VideoSink, O: Origin> TaskIngest<S, K, O> {
    /// Ingests `task` (as the stream announced it) within `invocation`.
    pub async fn ingest(&self, task: Task, invocation: &Invocation) -> RecordOutcome {
        if task.status != TaskStatus::Received {
            return skip(Skipped::NotReceived);
        }
        let task_id = task.task_id.clone();
        let claimed = match self.claim(task, invocation).await {
            Ok(Claim::Claimed(task)) => task,
            Ok(Claim::GaveUp) => {
                warn!(
                    outcome = "failed",
                    reason = FailureReason::MaxAttemptsExceeded.as_str(),
                    "task out of attempts"
                );
                return RecordOutcome::Failed(FailureReason::MaxAttemptsExceeded);
            }
            Ok(Claim::Skip(reason)) => return skip(reason),
            Err(e) => {
                error!(outcome = "retry", error = %e, "could not claim the task");
                return RecordOutcome::Retry;
            }
        };
        let (url, lease) = match claimed.state() {
            Ok(TaskState::Downloading {
                video_url, lease, ..
            }) => (video_url.clone(), lease),
            other => {
                // Only a hand-edited record gets here; it can never be downloaded.
                let detail = match other {
                    Err(inconsistent) => inconsistent.to_string(),
                    Ok(state) => format!("claimed task is {state:?}"),
                };
                let lease = Lease::new(invocation.owner.clone(), invocation.lease_until);
                let reason = FailureReason::SourceRejected;
                let patch = lease.fail(reason, detail, Timestamp::now(), self.config.task_ttl);
                return self
                    .finish(&task_id, patch, RecordOutcome::Failed(reason))
                    .await;
            }
        };
        info!(attempt = claimed.attempts, video_url = %url, "ingest started");

        let key = video_key(&task_id);
        let started = Instant::now();
        let progress = StoreProgress {
            store: &self.store,
            task_id: &task_id,
            lease: &lease,
        };
        let result = transfer(
            &Source {
                origin: &self.origin,
                url: url.as_url(),
            },
            &Destination {
                sink: &self.sink,
                key: &key,
                task_id: &task_id,
            },
            &self.config.transfer,
            invocation.transfer_deadline,
            &progress,
        )
        .await;
        let elapsed = started.elapsed();

        match result {
            Ok(done) => {
                log_stored(&done, elapsed);
                let video = StoredVideo {
                    bucket: self.sink.bucket().to_owned(),
                    key,
                    bytes: done.bytes,
                    sha256: done.sha256,
                    content_type: VIDEO_CONTENT_TYPE.into(),
                };
                let patch = lease.store(video, Timestamp::now(), self.config.task_ttl);
                self.finish(&task_id, patch, RecordOutcome::Stored).await
            }
            Err(e) => self.record_failure(&task_id, &lease, e, elapsed).await,
        }
    }

    async fn record_failure(
        &self,
        task_id: &TaskId,
        lease: &Lease,
        e: TransferError,
        elapsed: Duration,
    ) -> RecordOutcome {
        let elapsed_ms = elapsed.as_millis() as u64;
        match e.failure_reason() {
            Some(reason) => {
                warn!(outcome = "failed", reason = reason.as_str(), error = %e, elapsed_ms, "ingest failed permanently");
                let patch = lease.fail(
                    reason,
                    e.to_string(),
                    Timestamp::now(),
                    self.config.task_ttl,
                );
                self.finish(task_id, patch, RecordOutcome::Failed(reason))
                    .await
            }
            None => {
                warn!(outcome = "retry", error = %e, elapsed_ms, "ingest failed; the stream will retry");
                // Hand the lease back so the retry can take over at once.
                self.finish(
                    task_id,
                    lease.release(Timestamp::now()),
                    RecordOutcome::Retry,
                )
                .await;
                RecordOutcome::Retry
            }
        }
    }

    /// Takes the task, deciding on the freshest image after each conflict.
    async fn claim(&self, mut task: Task, invocation: &Invocation) -> Result<Claim, StoreError> {
        for _ in 0..MAX_CLAIM_CONFLICTS {
            let decision = task.decide_claim(
                &invocation.owner,
                Timestamp::now(),
                invocation.lease_until,
                self.config.max_attempts,
                self.config.task_ttl,
            );
            let (patch, gives_up) = match decision {
                ClaimDecision::Claim(patch) => (patch, false),
                ClaimDecision::GiveUp(patch) => (patch, true),
                ClaimDecision::Skip(reason) => return Ok(Claim::Skip(Skipped::Claim(reason))),
            };
            match self.store.apply(&task.task_id, &patch).await? {
                Applied::Done(_) if gives_up => return Ok(Claim::GaveUp),
                Applied::Done(claimed) => return Ok(Claim::Claimed(claimed)),
                Applied::Conflict(Some(current)) => task = *current,
                Applied::Conflict(None) => return Ok(Claim::Skip(Skipped::TaskDeleted)),
            }
        }
        Err(StoreError::Contended(task.task_id))
    }

    /// Writes an outcome under the lease. A lost lease means another invocation took
    /// over; a store failure means the stream should retry.
    async fn finish(
        &self,
        task_id: &TaskId,
        patch: Patch,
        outcome: RecordOutcome,
    ) -> RecordOutcome {
        match self.store.apply(task_id, &patch).await {
            Ok(Applied::Done(_)) => outcome,
            Ok(Applied::Conflict(current)) => {
                warn!(current_status = ?current.map(|t| t.status), "lease lost before the outcome was recorded");
                RecordOutcome::Skipped(Skipped::LeaseLost)
            }
            Err(e) => {
                error!(error = %e, "could not record the outcome; the stream will retry");
                RecordOutcome::Retry
            }
        }
    }
}

/// Logs and returns a skip.
pub fn skip(reason: Skipped) -> RecordOutcome {
    info!(
        outcome = "skipped",
        reason = reason.as_str(),
        "record skipped"
    );
    RecordOutcome::Skipped(reason)
}

fn log_stored(done: &Transferred, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64().max(1e-3);
    info!(
        outcome = "stored",
        bytes = done.bytes,
        sha256 = %done.sha256,
        parts = done.parts,
        ranged_requests = done.ranged_requests,
        restarts = done.restarts,
        elapsed_ms = elapsed.as_millis() as u64,
        mib_per_s = done.bytes as f64 / (1024.0 * 1024.0) / seconds,
        "video stored"
    );
}

/// Progress written to the task under the lease, never holding up the download long.
struct StoreProgress<'a, S> {
    store: &'a S,
    task_id: &'a TaskId,
    lease: &'a Lease,
}

impl<S: TaskStore> Progress for StoreProgress<'_, S> {
    async fn report(&self, bytes_received: u64) {
        let patch = self.lease.progress(bytes_received, Timestamp::now());
        match tokio::time::timeout(
            PROGRESS_WRITE_TIMEOUT,
            self.store.apply(self.task_id, &patch),
        )
        .await
        {
            Ok(Ok(Applied::Done(_))) => {}
            Ok(Ok(Applied::Conflict(_))) => {
                warn!(bytes_received, "progress not written: lease lost")
            }
            Ok(Err(e)) => warn!(bytes_received, error = %e, "progress not written"),
            Err(_) => warn!(bytes_received, "progress write timed out"),
        }
    }
}

//! Ingest's use case for one task, written against the ports: claim it with a short lease
//! (one conditional write), copy its video to the sink while a keeper renews the lease,
//! record the outcome under the lease. Permanent failures fail the task; transient ones
//! hand the lease back so the stream's retry (or the reconciler) can take over at once.
//!
//! What keeps a task from stranding: the lease is short and renewed (a dead invocation's
//! task is re-driven within minutes), outcome writes are retried with backoff inside the
//! invocation's margin, and an upload that completed but was never recorded is found by
//! the next attempt (same task, same source, its length and SHA-256 on the object) and
//! recorded without fetching the video again.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shared::domain::backoff::Backoff;
use shared::domain::envelope::VideoUrl;
use shared::domain::task::{
    ClaimDecision, FailureReason, Lease, Patch, SkipReason, StoredVideo, Task, TaskState,
    TaskStatus,
};
use shared::fetch::Origin;
use shared::sink::{ObjectInfo, VIDEO_CONTENT_TYPE, VideoSink, video_key};
use shared::store::{Applied, StoreError, TaskStore};
use shared::upstream::{NoUpstream, UpstreamApi, UpstreamRecord};
use shared::{TaskId, Timestamp};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::config::IngestConfig;
use crate::transfer::{
    Destination, Limits, Progress, Source, Stop, TransferError, Transferred, meta,
    source_fingerprint, transfer,
};

/// Claims are retried this often when concurrent writers change the task under us.
const MAX_CLAIM_CONFLICTS: usize = 3;
/// A lease or progress write may not hold up the download for longer than this.
const LEASE_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Outcome writes that fail are retried with this backoff while the invocation lasts.
const OUTCOME_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(200),
    max: Duration::from_secs(5),
    retries: 30,
};
/// Time kept back at the very end of the invocation: the last outcome write must return.
const OUTCOME_MARGIN: Duration = Duration::from_secs(1);

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
            Self::NotReceived => "not_received",
            Self::Claim(reason) => reason.as_str(),
            Self::TaskDeleted => "task_deleted",
            Self::LeaseLost => "lease_lost",
        }
    }
}

/// The invocation a task is ingested in: who holds the lease, how long one lease lasts,
/// and its deadlines.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The lease owner: the invocation's request id.
    pub owner: String,
    /// The invocation ends here; no lease outlives it.
    pub deadline: Timestamp,
    /// Each lease (claim or renewal) lasts this long, capped at the deadline.
    pub lease_for: Duration,
    /// The copy stops here, leaving the margin for the commit and the outcome.
    pub transfer_deadline: Instant,
    /// Outcome writes are retried until here.
    pub outcome_deadline: Instant,
}

impl Invocation {
    /// The invocation `owner` that must end by `deadline`, as of `now`.
    pub fn new(owner: String, deadline: Timestamp, now: Timestamp, config: &IngestConfig) -> Self {
        let remaining = Duration::from_millis(
            u64::try_from(deadline.as_millis() - now.as_millis()).unwrap_or(0),
        );
        let start = Instant::now();
        Self {
            owner,
            deadline,
            lease_for: config.lease_for,
            transfer_deadline: start + remaining.saturating_sub(config.deadline_margin),
            outcome_deadline: start + remaining.saturating_sub(OUTCOME_MARGIN),
        }
    }

    /// The end of a lease taken or renewed at `now`.
    pub fn lease_until(&self, now: Timestamp) -> Timestamp {
        now.saturating_add(self.lease_for).min(self.deadline)
    }
}

/// The use case's dependencies, built once per cold start.
#[derive(Debug)]
pub struct TaskIngest<S, K, O, U = NoUpstream> {
    pub store: S,
    pub sink: K,
    pub origin: O,
    /// Asked for a fresh URL when a video URL has expired (when configured).
    pub upstream: U,
    pub config: IngestConfig,
}

enum Claim {
    Claimed(Box<Task>),
    GaveUp,
    Skip(Skipped),
}

impl<S: TaskStore, K: VideoSink, O: Origin, U: UpstreamApi> TaskIngest<S, K, O, U> {
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
                let lease = Lease::new(invocation.owner.clone(), invocation.deadline);
                let reason = FailureReason::SourceRejected;
                let patch = lease.fail(reason, detail, Timestamp::now(), self.config.task_ttl);
                return self
                    .finish(&task_id, patch, RecordOutcome::Failed(reason), invocation)
                    .await;
            }
        };
        info!(attempt = claimed.attempts, video_url = %url, "ingest started");
        self.copy(&task_id, url, &lease, invocation).await
    }

    /// Copies the video (or finds it already copied) and records the outcome.
    async fn copy(
        &self,
        task_id: &TaskId,
        mut url: VideoUrl,
        lease: &Lease,
        invocation: &Invocation,
    ) -> RecordOutcome {
        let key = video_key(task_id);
        let mut refreshed = false;
        loop {
            let source = source_fingerprint(url.as_url());
            if let Some(done) = self.already_stored(&key, task_id, &source).await {
                info!(outcome = "stored", bytes = done.bytes, sha256 = %done.sha256,
                      "an earlier attempt's upload is complete: recorded without fetching again");
                return self
                    .record_stored(task_id, key, done, lease, invocation)
                    .await;
            }
            let started = Instant::now();
            let result = self
                .transfer_under_lease(task_id, &url, &key, &source, lease, invocation)
                .await;
            let elapsed = started.elapsed();
            match result {
                Ok(done) => {
                    log_stored(&done, elapsed);
                    return self
                        .record_stored(task_id, key, done, lease, invocation)
                        .await;
                }
                Err(e)
                    if e.failure_reason() == Some(FailureReason::SourceExpired) && !refreshed =>
                {
                    refreshed = true;
                    match self.fresh_url(task_id, &url, lease, invocation).await {
                        Some(fresh) => url = fresh,
                        None => {
                            return self
                                .record_failure(task_id, lease, e, elapsed, invocation)
                                .await;
                        }
                    }
                }
                Err(e) => {
                    return self
                        .record_failure(task_id, lease, e, elapsed, invocation)
                        .await;
                }
            }
        }
    }

    /// The transfer, with a keeper renewing the lease beside it; a lost lease stops it.
    async fn transfer_under_lease(
        &self,
        task_id: &TaskId,
        url: &VideoUrl,
        key: &str,
        source: &str,
        lease: &Lease,
        invocation: &Invocation,
    ) -> Result<Transferred, TransferError> {
        let (lost, stop) = Stop::new();
        let keeper = LeaseKeeper {
            store: &self.store,
            task_id,
            lease,
            invocation,
            bytes: AtomicU64::new(0),
            lost,
        };
        let limits = Limits {
            deadline: invocation.transfer_deadline,
            stop,
        };
        let from = Source {
            origin: &self.origin,
            url: url.as_url(),
        };
        let to = Destination {
            sink: &self.sink,
            key,
            task_id,
            source,
        };
        let copy = transfer(&from, &to, &self.config.transfer, &limits, &keeper);
        tokio::select! {
            result = copy => result,
            never = keeper.renew_forever() => match never {},
        }
    }

    /// A complete object from an earlier attempt at the same source, if one is there.
    async fn already_stored(
        &self,
        key: &str,
        task_id: &TaskId,
        source: &str,
    ) -> Option<Transferred> {
        let info = match self.sink.head(key).await {
            Ok(info) => info?,
            Err(e) => {
                warn!(error = %e, "could not look for an earlier upload; copying");
                return None;
            }
        };
        complete_upload(&info, task_id, source)
    }

    /// Asks the upstream for a fresh URL for an expired one, and records it on the task.
    async fn fresh_url(
        &self,
        task_id: &TaskId,
        expired: &VideoUrl,
        lease: &Lease,
        invocation: &Invocation,
    ) -> Option<VideoUrl> {
        let fresh = match self.upstream.record_info(task_id).await {
            Ok(UpstreamRecord::Succeeded { video_url }) => video_url,
            Ok(other) => {
                warn!(answer = ?other, "the video URL expired and the upstream has no fresh one");
                return None;
            }
            Err(e) => {
                warn!(error = %e, "the video URL expired; could not ask the upstream for a fresh one");
                return None;
            }
        };
        let fresh = match VideoUrl::parse(&fresh, &self.config.url_policy) {
            Ok(url) if url != *expired => url,
            Ok(_) => {
                warn!("the upstream answered the same, expired URL");
                return None;
            }
            Err(e) => {
                warn!(error = %e, "the upstream's fresh URL is not acceptable");
                return None;
            }
        };
        info!(video_url = %fresh, "the video URL expired; retrying once with a fresh one");
        let patch = lease.refresh_url(fresh.clone(), Timestamp::now());
        match self.write(task_id, &patch, invocation).await {
            Ok(Applied::Done(_)) => Some(fresh),
            Ok(Applied::Conflict(_)) | Err(_) => None,
        }
    }

    async fn record_stored(
        &self,
        task_id: &TaskId,
        key: String,
        done: Transferred,
        lease: &Lease,
        invocation: &Invocation,
    ) -> RecordOutcome {
        let video = StoredVideo {
            bucket: self.sink.bucket().to_owned(),
            key,
            bytes: done.bytes,
            sha256: done.sha256,
            content_type: VIDEO_CONTENT_TYPE.into(),
        };
        let patch = lease.store(video, Timestamp::now(), self.config.task_ttl);
        self.finish(task_id, patch, RecordOutcome::Stored, invocation)
            .await
    }

    async fn record_failure(
        &self,
        task_id: &TaskId,
        lease: &Lease,
        e: TransferError,
        elapsed: Duration,
        invocation: &Invocation,
    ) -> RecordOutcome {
        let elapsed_ms = elapsed.as_millis() as u64;
        if matches!(e, TransferError::Stopped(_)) {
            warn!(outcome = "skipped", reason = Skipped::LeaseLost.as_str(), error = %e, elapsed_ms,
                  "another invocation took the task over; stopped");
            return RecordOutcome::Skipped(Skipped::LeaseLost);
        }
        match e.failure_reason() {
            Some(reason) => {
                warn!(outcome = "failed", reason = reason.as_str(), error = %e, elapsed_ms, "ingest failed permanently");
                let patch = lease.fail(
                    reason,
                    e.to_string(),
                    Timestamp::now(),
                    self.config.task_ttl,
                );
                self.finish(task_id, patch, RecordOutcome::Failed(reason), invocation)
                    .await
            }
            None => {
                warn!(outcome = "retry", error = %e, elapsed_ms, "ingest failed; the stream will retry");
                // Hand the lease back so the retry can take over at once.
                let release = lease.release(Timestamp::now());
                self.finish(task_id, release, RecordOutcome::Retry, invocation)
                    .await;
                RecordOutcome::Retry
            }
        }
    }

    /// Takes the task, deciding on the freshest image after each conflict.
    async fn claim(&self, mut task: Task, invocation: &Invocation) -> Result<Claim, StoreError> {
        for _ in 0..MAX_CLAIM_CONFLICTS {
            let now = Timestamp::now();
            let decision = task.decide_claim(
                &invocation.owner,
                now,
                invocation.lease_until(now),
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
    /// over; a store that keeps failing until the invocation's end means the stream (or
    /// the reconciler, once the short lease runs out) tries again.
    async fn finish(
        &self,
        task_id: &TaskId,
        patch: Patch,
        outcome: RecordOutcome,
        invocation: &Invocation,
    ) -> RecordOutcome {
        match self.write(task_id, &patch, invocation).await {
            Ok(Applied::Done(_)) => outcome,
            Ok(Applied::Conflict(current)) => {
                warn!(current_status = ?current.map(|t| t.status), "lease lost before the outcome was recorded");
                RecordOutcome::Skipped(Skipped::LeaseLost)
            }
            Err(e) => {
                error!(error = %e, "could not record the outcome; it will be tried again");
                RecordOutcome::Retry
            }
        }
    }

    /// One write, retried with backoff while the invocation lasts.
    async fn write(
        &self,
        task_id: &TaskId,
        patch: &Patch,
        invocation: &Invocation,
    ) -> Result<Applied, StoreError> {
        let mut retry = 0;
        loop {
            match self.store.apply(task_id, patch).await {
                Err(e) if retry < OUTCOME_BACKOFF.retries => {
                    let delay = OUTCOME_BACKOFF.delay(retry, fastrand::f64());
                    if Instant::now() + delay >= invocation.outcome_deadline {
                        return Err(e);
                    }
                    warn!(error = %e, retry = retry + 1, "task write failed; retrying");
                    tokio::time::sleep(delay).await;
                    retry += 1;
                }
                result => return result,
            }
        }
    }
}

/// The transfer an object left under `info` stands for, if it is a complete upload of
/// `source` for `task_id` (written by the commit, with its length and SHA-256).
pub fn complete_upload(info: &ObjectInfo, task_id: &TaskId, source: &str) -> Option<Transferred> {
    let sha256 = info.metadata(meta::SHA256)?;
    let recorded_bytes: u64 = info.metadata(meta::BYTES)?.parse().ok()?;
    let ours = info.metadata(meta::TASK_ID) == Some(task_id.as_str())
        && info.metadata(meta::SOURCE) == Some(source)
        && recorded_bytes == info.bytes
        && sha256.len() == 64
        && sha256.bytes().all(|b| b.is_ascii_hexdigit());
    ours.then(|| Transferred {
        bytes: info.bytes,
        sha256: sha256.to_owned(),
        parts: 0,
        ranged_requests: 0,
        restarts: 0,
    })
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

/// Keeps the lease while the transfer runs: progress reports renew it, and so does a
/// heartbeat when no bytes move (a stalled source, a backoff). A lost lease stops the copy.
struct LeaseKeeper<'a, S> {
    store: &'a S,
    task_id: &'a TaskId,
    lease: &'a Lease,
    invocation: &'a Invocation,
    bytes: AtomicU64,
    lost: watch::Sender<bool>,
}

impl<S: TaskStore> LeaseKeeper<'_, S> {
    /// Renews the lease and writes progress; `false` once the lease is known lost.
    async fn renew(&self, bytes_received: u64) -> bool {
        let now = Timestamp::now();
        let patch = self
            .lease
            .renew(bytes_received, self.invocation.lease_until(now), now);
        match tokio::time::timeout(LEASE_WRITE_TIMEOUT, self.store.apply(self.task_id, &patch))
            .await
        {
            Ok(Ok(Applied::Done(_))) => true,
            Ok(Ok(Applied::Conflict(_))) => {
                warn!(
                    bytes_received,
                    "lease lost: another invocation took the task over"
                );
                let _ = self.lost.send(true);
                false
            }
            // The lease may run out if the store stays down; the reconciler then re-drives
            // the task and this invocation's outcome write finds the lease lost.
            Ok(Err(e)) => {
                warn!(bytes_received, error = %e, "lease not renewed");
                true
            }
            Err(_) => {
                warn!(bytes_received, "lease renewal timed out");
                true
            }
        }
    }

    /// Renews every third of a lease, for as long as the transfer runs.
    async fn renew_forever(&self) -> Infallible {
        let every = (self.invocation.lease_for / 3).max(Duration::from_millis(200));
        loop {
            tokio::time::sleep(every).await;
            if !self.renew(self.bytes.load(Ordering::Relaxed)).await {
                // Stopped; the transfer ends itself and wins the select.
                std::future::pending::<()>().await;
            }
        }
    }
}

impl<S: TaskStore> Progress for LeaseKeeper<'_, S> {
    async fn report(&self, bytes_received: u64) {
        self.bytes.store(bytes_received, Ordering::Relaxed);
        self.renew(bytes_received).await;
    }
}

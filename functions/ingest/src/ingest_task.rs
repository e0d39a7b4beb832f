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
use shared::metrics;
use shared::sink::{ObjectInfo, VIDEO_CONTENT_TYPE, VideoSink, tag, video_key};
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
        let remaining = deadline.saturating_duration_since(now);
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
        // We hold the lease: any upload still open for this key is a dead attempt's.
        match self.sink.abort_uploads(&key).await {
            Ok(0) => {}
            Ok(n) => info!(
                aborted = n,
                "aborted the multipart uploads an earlier attempt left"
            ),
            Err(e) => warn!(error = %e, "could not look for an earlier attempt's uploads"),
        }
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
            flush_every: self.config.transfer.progress.interval,
            bytes: AtomicU64::new(0),
            written: AtomicU64::new(0),
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
    let sha256 = info.tag(tag::SHA256)?;
    let recorded_bytes: u64 = info.tag(tag::BYTES)?.parse().ok()?;
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
    metrics::ingest_transfer(done.bytes, elapsed, done.ranged_requests, done.restarts);
}

/// Keeps the lease while the transfer runs: progress reports renew it, and so does a
/// heartbeat when no bytes move (a stalled source, a backoff). Bytes that arrived just
/// before a stall are written within one progress interval, not left for the heartbeat
/// (a third of the lease: minutes). A lost lease stops the copy.
struct LeaseKeeper<'a, S> {
    store: &'a S,
    task_id: &'a TaskId,
    lease: &'a Lease,
    invocation: &'a Invocation,
    /// How often unwritten bytes are flushed (the progress interval).
    flush_every: Duration,
    /// Bytes seen so far, and bytes last written.
    bytes: AtomicU64,
    written: AtomicU64,
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
            Ok(Ok(Applied::Done(_))) => {
                self.written.fetch_max(bytes_received, Ordering::Relaxed);
                true
            }
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

    /// Renews every third of a lease, and sooner (every progress interval) when bytes
    /// arrived that no write has carried yet, for as long as the transfer runs.
    async fn renew_forever(&self) -> Infallible {
        let heartbeat = (self.invocation.lease_for / 3).max(Duration::from_millis(200));
        let tick = heartbeat.min(self.flush_every.max(Duration::from_millis(200)));
        let mut since_write = Duration::ZERO;
        loop {
            tokio::time::sleep(tick).await;
            since_write += tick;
            let bytes = self.bytes.load(Ordering::Relaxed);
            let unwritten = bytes > self.written.load(Ordering::Relaxed);
            if !unwritten && since_write < heartbeat {
                continue;
            }
            since_write = Duration::ZERO;
            if !self.renew(bytes).await {
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

    fn saw(&self, bytes_received: u64) {
        self.bytes.store(bytes_received, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use shared::domain::task::{DEFAULT_TASK_TTL, Reconcile, ReconcilePolicy};
    use shared::fetch::scripted::{ScriptedOrigin, Step, chunks};
    use shared::lambda::config::Env;
    use shared::test_support::{MemoryTaskStore, MemoryVideoSink, Video, success};
    use shared::upstream::scripted::ScriptedUpstream;

    use super::*;

    const PART: usize = 5 * 1024 * 1024;
    const TASK: &str = "t-ingest";

    fn config(extra: &[(&str, &str)]) -> IngestConfig {
        let mut pairs = vec![
            ("TABLE_NAME", "t"),
            ("BUCKET_NAME", "videos"),
            ("PART_SIZE_MIB", "5"),
            ("MAX_ATTEMPTS", "3"),
            ("LEASE_SECS", "2"),
            ("PROGRESS_INTERVAL_SECS", "1"),
        ];
        pairs.extend_from_slice(extra);
        IngestConfig::from_env(&Env::from_pairs(pairs)).unwrap()
    }

    type Fakes<U = NoUpstream> =
        TaskIngest<Arc<MemoryTaskStore>, MemoryVideoSink, ScriptedOrigin, U>;

    fn fakes<U: UpstreamApi>(origin: ScriptedOrigin, upstream: U) -> Fakes<U> {
        TaskIngest {
            store: Arc::new(MemoryTaskStore::default()),
            sink: MemoryVideoSink::default(),
            origin,
            upstream,
            config: config(&[]),
        }
    }

    fn invocation(owner: &str, lease_for: Duration, budget: Duration) -> Invocation {
        let now = Timestamp::now();
        let mut config = config(&[]);
        config.lease_for = lease_for;
        config.deadline_margin = Duration::from_millis(500);
        Invocation::new(owner.into(), now.saturating_add(budget), now, &config)
    }

    fn id() -> TaskId {
        TaskId::parse(TASK).unwrap()
    }

    fn policy() -> ReconcilePolicy {
        ReconcilePolicy {
            received_after: Duration::from_secs(120),
            max_attempts: 3,
            poll_grace: Duration::from_secs(60),
            poll_min_interval: Duration::from_secs(30),
            poll_max_interval: Duration::from_secs(600),
            expected_max_age: Duration::from_secs(86_400),
            ttl: DEFAULT_TASK_TTL,
        }
    }

    async fn seeded<U: UpstreamApi>(f: &Fakes<U>) -> Task {
        let task = Task::from_callback(
            &success(TASK, "https://cdn.example/v.mp4"),
            Timestamp::now(),
            DEFAULT_TASK_TTL,
        );
        f.store.create(&task).await.unwrap();
        task
    }

    fn bytes(len: usize) -> Vec<u8> {
        Video::new(len as u64, 3).bytes()
    }

    /// Only a `received` image is work: any other status is skipped before the store is
    /// touched, whatever the stored record says (here: still `received`, claimable).
    #[tokio::test]
    async fn an_image_that_is_not_received_is_skipped_without_a_claim() {
        let f = fakes(ScriptedOrigin::new([]), NoUpstream);
        let task = seeded(&f).await;
        let inv = invocation("inv-1", Duration::from_secs(60), Duration::from_secs(60));
        for status in [
            TaskStatus::Downloading,
            TaskStatus::Stored,
            TaskStatus::Failed,
            TaskStatus::Expected,
        ] {
            let mut image = task.clone();
            image.status = status;
            assert_eq!(
                f.ingest(image, &inv).await,
                RecordOutcome::Skipped(Skipped::NotReceived),
                "{status:?}"
            );
        }
        let after = f.store.snapshot(&id()).unwrap();
        assert_eq!(
            (after.status, after.attempts, after.lease_owner),
            (TaskStatus::Received, 0, None)
        );
        assert_eq!((f.origin.opens(), f.sink.uploads_started()), (0, 0));
    }

    /// A stored video is measured: its bytes, its copy time and throughput.
    #[test]
    fn a_stored_video_records_its_size_time_and_throughput() {
        use shared::metrics::*;
        use shared::test_support::CapturedMetrics;

        let video = bytes(PART + 99);
        let (outcome, m) = CapturedMetrics::run(async {
            let f = fakes(
                ScriptedOrigin::new([chunks(&video, 64 * 1024, None)]),
                NoUpstream,
            );
            let task = seeded(&f).await;
            let inv = invocation("inv-1", Duration::from_secs(60), Duration::from_secs(60));
            f.ingest(task, &inv).await
        });
        assert_eq!(outcome, RecordOutcome::Stored);
        assert_eq!(m.histogram(INGEST_BYTES, &[]), vec![video.len() as f64]);
        assert_eq!(m.histogram(INGEST_SECONDS, &[]).len(), 1);
        assert_eq!(
            m.counter(INGEST_RESUMES, &[]) + m.counter(INGEST_RESTARTS, &[]),
            0
        );
    }

    /// Hole 1: the final outcome write fails once (a throttle, a timeout). It is retried
    /// inside the invocation; the task does not strand in `downloading`.
    #[tokio::test]
    async fn a_failing_outcome_write_is_retried_inside_the_invocation() {
        let video = bytes(PART + 99);
        let f = fakes(
            ScriptedOrigin::new([chunks(&video, 64 * 1024, None)]),
            NoUpstream,
        );
        let task = seeded(&f).await;
        f.store
            .fail_patches_setting(shared::domain::task::attr::VIDEO, 2);
        let inv = invocation("inv-1", Duration::from_secs(60), Duration::from_secs(60));
        assert_eq!(f.ingest(task, &inv).await, RecordOutcome::Stored);
        let stored = f.store.snapshot(&id()).unwrap();
        assert_eq!(stored.status, TaskStatus::Stored);
        assert_eq!(stored.video.unwrap().bytes, video.len() as u64);
    }

    /// Hole 1, when the store stays down past the invocation: the record says
    /// `downloading`, the lease runs out, the reconciler re-drives, and the next attempt
    /// records the upload that already completed without fetching the video again.
    #[tokio::test]
    async fn an_unrecorded_complete_upload_is_recorded_by_the_next_attempt_without_refetching() {
        let video = bytes(2 * PART + 7);
        let f = fakes(
            ScriptedOrigin::new([chunks(&video, 256 * 1024, None)]),
            NoUpstream,
        );
        let task = seeded(&f).await;
        f.store
            .fail_patches_setting(shared::domain::task::attr::VIDEO, 1_000);
        let inv = invocation("inv-1", Duration::from_millis(600), Duration::from_secs(3));
        assert_eq!(f.ingest(task.clone(), &inv).await, RecordOutcome::Retry);
        let stuck = f.store.snapshot(&id()).unwrap();
        assert_eq!(stuck.status, TaskStatus::Downloading);
        assert!(
            f.sink.object("videos/t-ingest.mp4").is_some(),
            "the object is complete"
        );

        // The short lease runs out; the reconciler hands the task back to ingest.
        let later = Timestamp::now().saturating_add(Duration::from_secs(4));
        let Reconcile::Redrive(redrive) = stuck.decide_reconcile(later, &policy()) else {
            panic!("an expired lease is re-driven")
        };
        f.store.apply(&id(), &redrive).await.unwrap();
        f.store
            .fail_patches_setting(shared::domain::task::attr::VIDEO, 0);
        let redriven = f.store.snapshot(&id()).unwrap();
        let inv = invocation("inv-2", Duration::from_secs(60), Duration::from_secs(60));
        assert_eq!(f.ingest(redriven, &inv).await, RecordOutcome::Stored);
        assert_eq!(f.origin.opens(), 1, "the video was not fetched again");
        assert!(
            f.sink.open_uploads().is_empty(),
            "the dead attempt's upload is aborted"
        );
        let stored = f.store.snapshot(&id()).unwrap();
        let recorded = stored.video.unwrap();
        assert_eq!(recorded.bytes, video.len() as u64);
        assert_eq!(recorded.sha256, crate::transfer::tests_support::sha(&video));
        assert_eq!(stored.attempts, 2);
    }

    /// An object under the key that is not a complete upload of this source (another
    /// URL, no recorded hash, a length that does not match) is fetched again.
    #[tokio::test]
    async fn only_a_complete_upload_of_the_same_source_is_reused() {
        let video = bytes(1000);
        let task_id = id();
        let url = url::Url::parse("https://cdn.example/v.mp4").unwrap();
        let source = source_fingerprint(&url);
        // Metadata from the start, tags from the commit (entries 2 and 3).
        let info = |pairs: &[(&str, &str)], bytes: u64| {
            let owned =
                |p: &[(&str, &str)]| p.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
            ObjectInfo {
                bytes,
                metadata: owned(&pairs[..pairs.len().min(2)]),
                tags: owned(&pairs[pairs.len().min(2)..]),
            }
        };
        let sha = crate::transfer::tests_support::sha(&video);
        let full = [
            ("task-id", TASK),
            ("source", source.as_str()),
            ("sha256", sha.as_str()),
            ("bytes", "1000"),
        ];
        assert!(complete_upload(&info(&full, 1000), &task_id, &source).is_some());
        assert!(
            complete_upload(&info(&full, 999), &task_id, &source).is_none(),
            "length"
        );
        assert!(
            complete_upload(&info(&full[..2], 1000), &task_id, &source).is_none(),
            "no hash: unfinished"
        );
        let other = source_fingerprint(&url::Url::parse("https://cdn.example/other.mp4").unwrap());
        assert!(
            complete_upload(&info(&full, 1000), &task_id, &other).is_none(),
            "another source"
        );
        let someone = TaskId::parse("someone-else").unwrap();
        assert!(
            complete_upload(&info(&full, 1000), &someone, &source).is_none(),
            "another task"
        );
    }

    /// Bytes that arrive just before a stall are written within a progress interval,
    /// not a third of the lease later (found by the fault suite: a 9 MiB source that
    /// stalled at its last byte showed 0 bytes for the whole stall).
    #[tokio::test]
    async fn bytes_before_a_stall_are_written_within_a_progress_interval() {
        let video = bytes(PART / 2);
        let mut steps = chunks(&video[..3000], 1000, None);
        steps.push(Step::Stall(Duration::from_millis(2_500)));
        steps.extend(chunks(&video[3000..], 64 * 1024, None));
        let mut f = fakes(ScriptedOrigin::new([steps]), NoUpstream);
        f.config.transfer.progress.interval = Duration::from_millis(500);
        let task = seeded(&f).await;
        // A 60 s lease: its heartbeat (20 s) never comes during this test.
        let inv = invocation("inv-1", Duration::from_secs(60), Duration::from_secs(30));
        let store = Arc::clone(&f.store);
        let watcher = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            store
                .snapshot(&TaskId::parse(TASK).unwrap())
                .and_then(|t| t.bytes_received)
        });
        assert_eq!(f.ingest(task, &inv).await, RecordOutcome::Stored);
        assert_eq!(
            watcher.await.unwrap(),
            Some(3000),
            "written during the stall"
        );
    }

    /// A stalled source keeps the lease: the heartbeat renews it although no bytes move.
    #[tokio::test]
    async fn the_lease_is_renewed_while_the_source_stalls() {
        let video = bytes(PART / 2);
        let mut steps = chunks(&video[..1000], 1000, None);
        steps.push(Step::Stall(Duration::from_millis(1_500)));
        steps.extend(chunks(&video[1000..], 64 * 1024, None));
        let f = fakes(ScriptedOrigin::new([steps]), NoUpstream);
        let task = seeded(&f).await;
        let lease = Duration::from_millis(600);
        let inv = invocation("inv-1", lease, Duration::from_secs(30));
        let store = Arc::clone(&f.store);
        let watcher = tokio::spawn(async move {
            // Sample the lease while the transfer stalls: it must stay in the future, and
            // the heartbeat carries the bytes received before the stall.
            let mut seen = Vec::new();
            let mut bytes = 0;
            for _ in 0..6 {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if let Some(t) = store.snapshot(&TaskId::parse(TASK).unwrap())
                    && t.status == TaskStatus::Downloading
                {
                    seen.push(!t.lease_expired(Timestamp::now()));
                    bytes = bytes.max(t.bytes_received.unwrap_or(0));
                }
            }
            assert_eq!(bytes, 1000, "progress written while stalled");
            seen
        });
        assert_eq!(f.ingest(task, &inv).await, RecordOutcome::Stored);
        let seen = watcher.await.unwrap();
        assert!(
            !seen.is_empty() && seen.iter().all(|live| *live),
            "{seen:?}"
        );
    }

    /// Another invocation takes the task over (our lease ran out and the reconciler
    /// re-drove it): this one stops, aborts its upload and records nothing.
    #[tokio::test]
    async fn a_lost_lease_stops_the_copy() {
        let video = bytes(3 * PART);
        let mut steps = chunks(&video[..PART + 1], 64 * 1024, None);
        steps.push(Step::Stall(Duration::from_secs(3)));
        steps.extend(chunks(&video[PART + 1..], 64 * 1024, None));
        let f = fakes(ScriptedOrigin::new([steps]), NoUpstream);
        let task = seeded(&f).await;
        let inv = invocation("inv-1", Duration::from_millis(900), Duration::from_secs(30));
        let store = Arc::clone(&f.store);
        let thief = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            // Someone else holds it now (as after a re-drive and a new claim).
            let current = store.snapshot(&TaskId::parse(TASK).unwrap()).unwrap();
            let mut stolen = current.to_item().unwrap();
            stolen.insert("lease_owner".into(), serde_json::json!("inv-2"));
            store.put_item(&current.task_id, stolen);
        });
        assert_eq!(
            f.ingest(task, &inv).await,
            RecordOutcome::Skipped(Skipped::LeaseLost)
        );
        thief.await.unwrap();
        assert!(f.sink.open_uploads().is_empty() && f.sink.object("videos/t-ingest.mp4").is_none());
        assert_eq!(f.sink.aborted().len(), 1);
    }

    /// The source URL expired (403) and the upstream hands out a fresh one: ingest
    /// records it and retries once with it.
    #[tokio::test]
    async fn an_expired_url_is_refreshed_once_from_the_upstream() {
        let video = bytes(PART + 3);
        let origin = ScriptedOrigin::new([
            vec![Step::refuse_with_status(403)],
            chunks(&video, 64 * 1024, None),
        ]);
        let upstream = ScriptedUpstream::default();
        upstream.answer(
            &id(),
            [UpstreamRecord::Succeeded {
                video_url: "https://cdn.example/fresh.mp4".into(),
            }],
        );
        let f = fakes(origin, upstream);
        let task = seeded(&f).await;
        let inv = invocation("inv-1", Duration::from_secs(60), Duration::from_secs(60));
        assert_eq!(f.ingest(task, &inv).await, RecordOutcome::Stored);
        let stored = f.store.snapshot(&id()).unwrap();
        assert_eq!(
            stored.video_url.unwrap().as_str(),
            "https://cdn.example/fresh.mp4"
        );
        assert_eq!(f.origin.opens(), 2);
        assert_eq!(f.upstream.asked().len(), 1);
    }

    /// Only once: a second expiry, or an upstream with nothing fresh, fails the task.
    #[tokio::test]
    async fn an_expired_url_without_a_fresh_one_fails() {
        let origin = ScriptedOrigin::new([
            vec![Step::refuse_with_status(410)],
            vec![Step::refuse_with_status(410)],
        ]);
        let upstream = ScriptedUpstream::default();
        upstream.answer(
            &id(),
            [UpstreamRecord::Succeeded {
                video_url: "https://cdn.example/fresh.mp4".into(),
            }],
        );
        let f = fakes(origin, upstream);
        let task = seeded(&f).await;
        let inv = invocation("inv-1", Duration::from_secs(60), Duration::from_secs(60));
        assert_eq!(
            f.ingest(task, &inv).await,
            RecordOutcome::Failed(FailureReason::SourceExpired)
        );
        assert_eq!(f.origin.opens(), 2, "one refresh, not more");

        let f = fakes(
            ScriptedOrigin::new([vec![Step::refuse_with_status(403)]]),
            NoUpstream,
        );
        let task = seeded(&f).await;
        assert_eq!(
            f.ingest(task, &inv).await,
            RecordOutcome::Failed(FailureReason::SourceExpired)
        );
    }

    #[tokio::test]
    async fn the_lease_never_outlives_the_invocation() {
        let inv = invocation("inv-1", Duration::from_secs(120), Duration::from_secs(30));
        let now = Timestamp::now();
        assert!(inv.lease_until(now) <= inv.deadline);
        let short = invocation("inv-1", Duration::from_secs(2), Duration::from_secs(30));
        assert_eq!(
            short.lease_until(now),
            now.saturating_add(Duration::from_secs(2))
        );
    }
}

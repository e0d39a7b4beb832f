//! DynamoDB stream → ingest. For every `received` task: claim it with a lease (one
//! conditional write), copy its video to S3, record the outcome under the lease.
//! Permanent failures fail the task; transient ones hand the lease back and report the
//! record as a batch item failure so the stream retries it.

use std::time::Duration;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::{Error, LambdaEvent};
use tokio::time::Instant;
use tracing::{Instrument, error, field, info, info_span, warn};
use video_tasks::sink::{VideoSink, video_key};
use video_tasks::store::{Applied, StoreError, TaskStore};
use video_tasks::task::{
    ClaimDecision, FailureReason, Guard, StoredVideo, Task, TaskChange, TaskStatus, Update,
};
use video_tasks::{TaskId, Timestamp};

use crate::config::IngestConfig;
use crate::transfer::{Destination, Origin, Progress, TransferError, Transferred, transfer};

/// Claims are retried this often when concurrent writers change the task under us.
const MAX_CLAIM_CONFLICTS: usize = 3;
/// A progress write may not hold up the download for longer than this.
const PROGRESS_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// The ingest function's dependencies, built once per cold start.
#[derive(Debug)]
pub struct Ingest<S, K> {
    store: S,
    sink: K,
    client: reqwest::Client,
    config: IngestConfig,
}

/// What happened to one stream record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    Stored,
    Failed(FailureReason),
    Skipped(&'static str),
    /// Transient failure: the stream must deliver this record again.
    Retry,
}

impl<S: TaskStore, K: VideoSink> Ingest<S, K> {
    pub fn new(store: S, sink: K, client: reqwest::Client, config: IngestConfig) -> Self {
        Self {
            store,
            sink,
            client,
            config,
        }
    }

    /// Handles one batch. Records are processed in order; from the first one that must
    /// be retried, it and every later record are reported as failures (the stream
    /// resumes from the lowest failed sequence number anyway).
    pub async fn handle(&self, event: LambdaEvent<Event>) -> Result<DynamoDbEventResponse, Error> {
        let (event, context) = event.into_parts();
        let now = Timestamp::now();
        // The invocation cannot outlive its deadline, so neither does its lease.
        let lease_until =
            invocation_deadline(context.deadline, now, self.config.fallback_invocation);
        let remaining = Duration::from_millis(
            u64::try_from(lease_until.as_millis() - now.as_millis()).unwrap_or(0),
        );
        let transfer_deadline =
            Instant::now() + remaining.saturating_sub(self.config.deadline_margin);
        info!(
            request_id = %context.request_id,
            records = event.records.len(),
            remaining_ms = remaining.as_millis() as u64,
            "batch received"
        );

        let mut response = DynamoDbEventResponse::default();
        let mut retrying = false;
        for record in &event.records {
            let sequence = record.change.sequence_number.clone();
            if !retrying {
                let span = info_span!("record", request_id = %context.request_id, event_id = %record.event_id,
                                      sequence = sequence.as_deref().unwrap_or_default(), task_id = field::Empty);
                let outcome = self
                    .process(record, &context.request_id, lease_until, transfer_deadline)
                    .instrument(span)
                    .await;
                retrying = outcome == RecordOutcome::Retry;
            }
            if retrying {
                let Some(sequence) = sequence else {
                    // Without an identifier only failing the whole batch gets a retry.
                    return Err("a record to retry has no sequence number".into());
                };
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = Some(sequence);
                response.batch_item_failures.push(failure);
            }
        }
        Ok(response)
    }

    async fn process(
        &self,
        record: &EventRecord,
        owner: &str,
        lease_until: Timestamp,
        deadline: Instant,
    ) -> RecordOutcome {
        // The event source mapping filters already; this guards the local pump and
        // any misconfigured trigger.
        if !matches!(record.event_name.as_str(), "INSERT" | "MODIFY") {
            return skip("not_an_insert_or_modify");
        }
        let task: Task = match serde_dynamo::from_item(record.change.new_image.clone()) {
            Ok(task) => task,
            Err(e) => {
                // Retrying cannot fix the image; the record stays in the table for the reconciler.
                error!(outcome = "skipped", reason = "malformed_image", error = %e, "stream image is not a task");
                return RecordOutcome::Skipped("malformed_image");
            }
        };
        tracing::Span::current().record("task_id", task.task_id.as_str());
        if task.status != TaskStatus::Received {
            return skip("not_received");
        }

        let task_id = task.task_id.clone();
        let claimed = match self.claim(task, owner, lease_until).await {
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
        let Some(url) = claimed.video_url.clone() else {
            let change = TaskChange::Fail {
                reason: FailureReason::SourceRejected,
                detail: "no video_url".into(),
            };
            return self
                .finish(
                    &task_id,
                    owner,
                    change,
                    RecordOutcome::Failed(FailureReason::SourceRejected),
                )
                .await;
        };
        info!(attempt = claimed.attempts, video_url = %url, "ingest started");

        let key = video_key(&task_id);
        let started = Instant::now();
        let origin = Origin {
            client: &self.client,
            url: url.as_url(),
            policy: &self.config.url_policy,
            settings: self.config.source,
        };
        let destination = Destination {
            sink: &self.sink,
            key: &key,
            task_id: &task_id,
        };
        let progress = StoreProgress {
            store: &self.store,
            task_id: &task_id,
            owner,
        };
        let result = transfer(
            &origin,
            &destination,
            &self.config.transfer,
            deadline,
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
                    content_type: video_tasks::sink::VIDEO_CONTENT_TYPE.into(),
                };
                self.finish(
                    &task_id,
                    owner,
                    TaskChange::Store { video },
                    RecordOutcome::Stored,
                )
                .await
            }
            Err(e) => self.record_failure(&task_id, owner, e, elapsed).await,
        }
    }

    async fn record_failure(
        &self,
        task_id: &TaskId,
        owner: &str,
        e: TransferError,
        elapsed: Duration,
    ) -> RecordOutcome {
        let elapsed_ms = elapsed.as_millis() as u64;
        match e.failure_reason() {
            Some(reason) => {
                warn!(outcome = "failed", reason = reason.as_str(), error = %e, elapsed_ms, "ingest failed permanently");
                let change = TaskChange::Fail {
                    reason,
                    detail: e.to_string(),
                };
                self.finish(task_id, owner, change, RecordOutcome::Failed(reason))
                    .await
            }
            None => {
                warn!(outcome = "retry", error = %e, elapsed_ms, "ingest failed; the stream will retry");
                // Hand the lease back so the retry can take over at once.
                self.finish(task_id, owner, TaskChange::Release, RecordOutcome::Retry)
                    .await;
                RecordOutcome::Retry
            }
        }
    }

    /// Takes the task, deciding on the freshest image after each conflict.
    async fn claim(
        &self,
        mut task: Task,
        owner: &str,
        lease_until: Timestamp,
    ) -> Result<Claim, StoreError> {
        for _ in 0..MAX_CLAIM_CONFLICTS {
            let now = Timestamp::now();
            let (update, gives_up) =
                match task.decide_claim(owner, now, lease_until, self.config.max_attempts) {
                    ClaimDecision::Claim(update) => (update, false),
                    ClaimDecision::GiveUp(update) => (update, true),
                    ClaimDecision::Skip(reason) => return Ok(Claim::Skip(reason.as_str())),
                };
            match self.store.apply(&task.task_id, &update).await? {
                Applied::Done(_) if gives_up => return Ok(Claim::GaveUp),
                Applied::Done(claimed) => return Ok(Claim::Claimed(claimed)),
                Applied::Conflict(Some(current)) => task = *current,
                Applied::Conflict(None) => return Ok(Claim::Skip("task_deleted")),
            }
        }
        Err(StoreError::Contended(task.task_id))
    }

    /// Writes an outcome under the lease. A lost lease means another invocation took
    /// over; a store failure means the stream should retry.
    async fn finish(
        &self,
        task_id: &TaskId,
        owner: &str,
        change: TaskChange,
        outcome: RecordOutcome,
    ) -> RecordOutcome {
        let update = Update {
            change,
            guard: Guard::LeaseOwner(owner.to_owned()),
            at: Timestamp::now(),
        };
        match self.store.apply(task_id, &update).await {
            Ok(Applied::Done(_)) => outcome,
            Ok(Applied::Conflict(current)) => {
                warn!(current_status = ?current.map(|t| t.status), "lease lost before the outcome was recorded");
                RecordOutcome::Skipped("lease_lost")
            }
            Err(e) => {
                error!(error = %e, "could not record the outcome; the stream will retry");
                RecordOutcome::Retry
            }
        }
    }
}

/// The invocation's deadline: the runtime's, or `now + fallback` when the runtime's is
/// already past (local emulators send a fixed deadline in 1970; Lambda never does).
pub fn invocation_deadline(
    runtime_deadline_ms: u64,
    now: Timestamp,
    fallback: Duration,
) -> Timestamp {
    let runtime = Timestamp::from_millis(i64::try_from(runtime_deadline_ms).unwrap_or(i64::MAX));
    if runtime > now {
        runtime
    } else {
        warn!(
            runtime_deadline_ms,
            fallback_s = fallback.as_secs(),
            "runtime deadline already past; using the fallback budget"
        );
        now.saturating_add(fallback)
    }
}

enum Claim {
    Claimed(Box<Task>),
    GaveUp,
    Skip(&'static str),
}

fn skip(reason: &'static str) -> RecordOutcome {
    info!(outcome = "skipped", reason, "record skipped");
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
    owner: &'a str,
}

impl<S: TaskStore> Progress for StoreProgress<'_, S> {
    async fn report(&self, bytes_received: u64) {
        let update = Update {
            change: TaskChange::Progress { bytes_received },
            guard: Guard::LeaseOwner(self.owner.to_owned()),
            at: Timestamp::now(),
        };
        match tokio::time::timeout(
            PROGRESS_WRITE_TIMEOUT,
            self.store.apply(self.task_id, &update),
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    use serde_json::{Value, json};
    use video_tasks::config::Env;
    use video_tasks::envelope::{VideoUrl, VideoUrlPolicy};
    use video_tasks::fetch::guarded_client;
    use video_tasks::sink::s3::S3VideoSink;
    use video_tasks::store::dynamodb::task_to_item;
    use video_tasks::store::memory::MemoryTaskStore;

    const FIXTURE: &str = include_str!("../../../tests/fixtures/dynamodb-stream-received.json");
    const TASK: &str = "taskId_774b9aa0422f";

    /// An S3 sink pointed at a closed local port: these tests never get as far as
    /// writing, and if one did, it would fail loudly rather than reach AWS.
    fn sink() -> S3VideoSink {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:1")
            .credentials_provider(Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            ))
            .build();
        S3VideoSink::new(aws_sdk_s3::Client::from_conf(conf), "videos")
    }

    fn ingest(extra: &[(&str, &str)]) -> Ingest<MemoryTaskStore, S3VideoSink> {
        let mut pairs = vec![
            ("TABLE_NAME", "t"),
            ("BUCKET_NAME", "videos"),
            ("DOWNLOAD_RETRIES", "0"),
            ("MAX_ATTEMPTS", "2"),
            ("CONNECT_TIMEOUT_SECS", "2"),
        ];
        pairs.extend_from_slice(extra);
        let config = IngestConfig::from_env(&Env::from_pairs(pairs)).unwrap();
        let client = guarded_client(config.url_policy.clone(), config.fetch_timeouts).unwrap();
        Ingest::new(MemoryTaskStore::default(), sink(), client, config)
    }

    /// The fixture with the task's image set to `task`, `copies` times with increasing
    /// sequence numbers.
    fn event(task: &Task, copies: usize, request_id: &str) -> LambdaEvent<Event> {
        let mut v: Value = serde_json::from_str(FIXTURE).unwrap();
        let template = v["Records"][0].clone();
        let image: serde_json::Map<String, Value> = task_to_item(task)
            .unwrap()
            .into_iter()
            .map(|(k, av)| {
                let attr = match av {
                    aws_sdk_dynamodb::types::AttributeValue::S(s) => json!({ "S": s }),
                    aws_sdk_dynamodb::types::AttributeValue::N(n) => json!({ "N": n }),
                    other => panic!("unexpected attribute {other:?}"),
                };
                (k, attr)
            })
            .collect();
        let records: Vec<Value> = (0..copies)
            .map(|i| {
                let mut r = template.clone();
                r["dynamodb"]["NewImage"] = Value::Object(image.clone());
                r["dynamodb"]["SequenceNumber"] = format!("1110000000000000001234567{i:02}").into();
                r
            })
            .collect();
        v["Records"] = Value::Array(records);
        let mut context = lambda_runtime::Context::default();
        context.request_id = request_id.into();
        context.deadline = u64::try_from(Timestamp::now().as_millis()).unwrap() + 60_000;
        LambdaEvent::new(serde_json::from_value(v).unwrap(), context)
    }

    async fn seeded(ingest: &Ingest<MemoryTaskStore, S3VideoSink>, url: &str) -> Task {
        let mut v: Value = serde_json::from_str(FIXTURE).unwrap();
        let image = v["Records"][0]["dynamodb"]["NewImage"].take();
        let mut task: Task =
            serde_dynamo::from_item(serde_json::from_value::<serde_dynamo::Item>(image).unwrap())
                .unwrap();
        task.video_url = Some(VideoUrl::parse(url, &VideoUrlPolicy { allow_http: true }).unwrap());
        ingest.store.create(&task).await.unwrap();
        task
    }

    fn failures(response: &DynamoDbEventResponse) -> Vec<String> {
        response
            .batch_item_failures
            .iter()
            .filter_map(|f| f.item_identifier.clone())
            .collect()
    }

    fn stored(ingest: &Ingest<MemoryTaskStore, S3VideoSink>) -> Task {
        ingest
            .store
            .snapshot(&TaskId::parse(TASK).unwrap())
            .unwrap()
    }

    #[test]
    fn a_past_runtime_deadline_falls_back_to_the_configured_budget() {
        let now = Timestamp::from_secs(1_795_000_000);
        let budget = Duration::from_secs(900);
        let future = u64::try_from(now.as_millis()).unwrap() + 60_000;
        assert_eq!(
            invocation_deadline(future, now, budget).as_millis(),
            now.as_millis() + 60_000
        );
        // What cargo lambda watch sends.
        assert_eq!(
            invocation_deadline(600_000, now, budget),
            now.saturating_add(budget)
        );
    }

    #[tokio::test]
    async fn the_fixture_decodes_into_a_task() {
        let v: Value = serde_json::from_str(FIXTURE).unwrap();
        let event: Event = serde_json::from_value(v).unwrap();
        let task: Task =
            serde_dynamo::from_item(event.records[0].change.new_image.clone()).unwrap();
        assert_eq!(
            (task.task_id.as_str(), task.status, task.revision),
            (TASK, TaskStatus::Received, 1)
        );
    }

    #[tokio::test]
    async fn a_blocked_url_fails_the_task_permanently_without_retry() {
        let ingest = ingest(&[]);
        let task = seeded(&ingest, "https://169.254.169.254/latest/meta-data/").await;
        let response = ingest.handle(event(&task, 1, "inv-1")).await.unwrap();
        assert!(failures(&response).is_empty());
        let task = stored(&ingest);
        assert_eq!(
            (task.status, task.failure_reason),
            (TaskStatus::Failed, Some(FailureReason::BlockedUrl))
        );
        assert_eq!(task.attempts, 1);
        assert!(task.lease_owner.is_none());
    }

    #[tokio::test]
    async fn a_transient_failure_releases_the_lease_and_reports_this_and_later_records() {
        let ingest = ingest(&[
            ("VIDEO_URL_ALLOW_HTTP", "true"),
            ("VIDEO_URL_ALLOW_LOOPBACK", "true"),
        ]);
        // Port 1 on loopback refuses connections: a transient error.
        let task = seeded(&ingest, "http://127.0.0.1:1/v.mp4").await;
        let response = ingest.handle(event(&task, 3, "inv-1")).await.unwrap();
        assert_eq!(
            failures(&response).len(),
            3,
            "the failed record and every later one"
        );
        let after = stored(&ingest);
        assert_eq!((after.status, after.attempts), (TaskStatus::Downloading, 1));
        assert!(
            after.lease_expired(Timestamp::now()),
            "released for the retry"
        );

        // The stream redelivers the original image; the retry takes over the released lease.
        ingest.handle(event(&task, 1, "inv-2")).await.unwrap();
        assert_eq!(stored(&ingest).attempts, 2);
        // Out of attempts (MAX_ATTEMPTS=2): the next delivery fails the task.
        let response = ingest.handle(event(&task, 1, "inv-3")).await.unwrap();
        assert!(failures(&response).is_empty());
        let last = stored(&ingest);
        assert_eq!(
            (last.status, last.failure_reason),
            (TaskStatus::Failed, Some(FailureReason::MaxAttemptsExceeded))
        );
    }

    #[tokio::test]
    async fn a_live_lease_or_a_finished_task_is_skipped() {
        let ingest = ingest(&[]);
        let task = seeded(&ingest, "https://cdn.example/v.mp4").await;
        // Someone else claims it first, with a lease far in the future.
        let lease = Timestamp::now().saturating_add(Duration::from_secs(600));
        let claim = Update {
            change: TaskChange::Claim {
                owner: "other".into(),
                lease_until: lease,
            },
            guard: Guard::Revision(task.revision),
            at: Timestamp::now(),
        };
        ingest.store.apply(&task.task_id, &claim).await.unwrap();
        let response = ingest.handle(event(&task, 1, "inv-1")).await.unwrap();
        assert!(failures(&response).is_empty());
        let after = stored(&ingest);
        assert_eq!(
            (after.lease_owner.as_deref(), after.attempts),
            (Some("other"), 1),
            "untouched"
        );

        // Images that are not `received` are ignored outright.
        let mut downloading = task.clone();
        downloading.status = TaskStatus::Downloading;
        ingest
            .handle(event(&downloading, 1, "inv-2"))
            .await
            .unwrap();
        assert_eq!(stored(&ingest).lease_owner.as_deref(), Some("other"));
    }
}

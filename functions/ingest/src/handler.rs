//! DynamoDB stream → ingest: the batch plumbing. Every record is decoded into a task and
//! handed to the use case ([`crate::ingest_task`]) in its own span; from the first record
//! that must be retried, it and every later record are reported as batch item failures.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use lambda_runtime::{Error, LambdaEvent};
use shared::Timestamp;
use shared::domain::task::{FailureReason, Task};
use shared::fetch::Origin;
use shared::fetch::client::{BuildError, HostLookup, SystemLookup};
use shared::fetch::http::HttpOrigin;
use shared::lambda::stream::in_order;
use shared::metrics::{self, IngestOutcome};
use shared::sink::VideoSink;
use shared::store::image::{task_from_image, unreadable_image};
use shared::store::{Applied, TaskStore};
use shared::upstream::{NoUpstream, UpstreamApi};
use tracing::{Instrument, debug, error, field, info, info_span, warn};

use crate::config::IngestConfig;
use crate::ingest_task::{Invocation, RecordOutcome, Skipped, TaskIngest, skip};

/// The ingest function: the use case and its dependencies, built once per cold start.
#[derive(Debug)]
pub struct Ingest<S, K, O, U = NoUpstream> {
    tasks: TaskIngest<S, K, O, U>,
}

impl<S: TaskStore, K: VideoSink, O: Origin> Ingest<S, K, O> {
    pub fn new(store: S, sink: K, origin: O, config: IngestConfig) -> Self {
        Self {
            tasks: TaskIngest {
                store,
                sink,
                origin,
                upstream: NoUpstream,
                config,
            },
        }
    }
}

impl<S: TaskStore, K: VideoSink, O: Origin, U: UpstreamApi> Ingest<S, K, O, U> {
    /// Asks `upstream` for fresh URLs when one expires.
    pub fn with_upstream<V: UpstreamApi>(self, upstream: V) -> Ingest<S, K, O, V> {
        let TaskIngest {
            store,
            sink,
            origin,
            config,
            ..
        } = self.tasks;
        Ingest {
            tasks: TaskIngest {
                store,
                sink,
                origin,
                upstream,
                config,
            },
        }
    }

    /// The task store (tests read what was written).
    pub fn store(&self) -> &S {
        &self.tasks.store
    }

    /// Handles one batch, in order ([`in_order`]: from the first record to retry, it and
    /// every later one are reported as failures).
    pub async fn handle(&self, event: LambdaEvent<Event>) -> Result<DynamoDbEventResponse, Error> {
        let (event, context) = event.into_parts();
        let now = Timestamp::now();
        let config = &self.tasks.config;
        // The invocation cannot outlive its deadline, so neither does any lease it takes.
        let deadline = lease_deadline(context.deadline, now, config.local_emulator_budget);
        let invocation = Invocation::new(context.request_id.clone(), deadline, now, config);
        let remaining = deadline.saturating_duration_since(now);
        info!(
            request_id = %context.request_id,
            records = event.records.len(),
            remaining_ms = remaining.as_millis() as u64,
            "batch received"
        );

        let invocation = &invocation;
        let request_id = &context.request_id;
        Ok(in_order(&event.records, |record| async move {
            let sequence = record.change.sequence_number.as_deref().unwrap_or_default();
            let span = info_span!("record", request_id = %request_id, event_id = %record.event_id,
                                  sequence = sequence, task_id = field::Empty);
            let outcome = self.process(record, invocation).instrument(span).await;
            metrics::ingest_outcome(match &outcome {
                RecordOutcome::Stored => IngestOutcome::Stored,
                RecordOutcome::Failed(reason) => IngestOutcome::Failed(reason.as_str()),
                RecordOutcome::Skipped(_) => IngestOutcome::Skipped,
                RecordOutcome::Retry => IngestOutcome::Retry,
            });
            outcome == RecordOutcome::Retry
        })
        .await?)
    }

    async fn process(&self, record: &EventRecord, invocation: &Invocation) -> RecordOutcome {
        // The event source mapping filters already; this guards the local pump and
        // any misconfigured trigger.
        if !matches!(record.event_name.as_str(), "INSERT" | "MODIFY") {
            return skip(Skipped::NotAnInsertOrModify);
        }
        let task = match task_from_image(record.change.new_image.clone()) {
            Ok(task) => task,
            // Retrying cannot fix the image: the task fails with the reason instead.
            Err(e) => return self.fail_unreadable(record, &e.to_string()).await,
        };
        tracing::Span::current().record("task_id", task.task_id.as_str());
        debug!(
            status = task.status.as_str(),
            revision = task.revision,
            attempts = task.attempts,
            "stream record decoded"
        );
        self.tasks.ingest(task, invocation).await
    }

    /// A record nothing can read becomes `failed` (`unreadable_record`), never silently
    /// skipped; the write is conditional on the revision the image shows.
    async fn fail_unreadable(&self, record: &EventRecord, detail: &str) -> RecordOutcome {
        let reason = FailureReason::UnreadableRecord;
        let Some((task_id, raw)) = unreadable_image(&record.change.keys, &record.change.new_image)
        else {
            error!(
                outcome = "skipped",
                reason = reason.as_str(),
                error = detail,
                "stream record names no valid task id; nothing can be written"
            );
            return RecordOutcome::Failed(reason);
        };
        tracing::Span::current().record("task_id", task_id.as_str());
        let config = &self.tasks.config;
        let patch = match Task::fail_unreadable(
            task_id.clone(),
            &raw,
            detail,
            Timestamp::now(),
            config.task_ttl,
        ) {
            Ok(patch) => patch,
            Err(e) => {
                error!(outcome = "skipped", error = %e, "could not build the failed record");
                return RecordOutcome::Failed(reason);
            }
        };
        match self.tasks.store.apply(&task_id, &patch).await {
            Ok(Applied::Done(_)) => {
                error!(
                    outcome = "failed",
                    reason = reason.as_str(),
                    error = detail,
                    "stream image is not a task; failed it"
                );
                RecordOutcome::Failed(reason)
            }
            Ok(Applied::Conflict(_)) => {
                warn!(
                    error = detail,
                    "unreadable image was superseded by a newer write"
                );
                RecordOutcome::Skipped(Skipped::NotReceived)
            }
            Err(e) => {
                error!(outcome = "retry", error = %e, "could not fail the unreadable task");
                RecordOutcome::Retry
            }
        }
    }
}

impl<S: TaskStore, K: VideoSink> Ingest<S, K, HttpOrigin> {
    /// Reads videos over HTTP, through the SSRF guard `config` describes. Fresh URLs for
    /// expired ones come from an upstream added with [`Ingest::with_upstream`] (main adds
    /// the one that follows the secret's rotation).
    pub fn over_http(store: S, sink: K, config: IngestConfig) -> Result<Self, BuildError> {
        Self::over_http_with(store, sink, config, Arc::new(SystemLookup))
    }

    /// [`Ingest::over_http`] resolving source host names through `lookup` (the guard
    /// still judges every address it returns).
    pub fn over_http_with(
        store: S,
        sink: K,
        config: IngestConfig,
        lookup: Arc<dyn HostLookup>,
    ) -> Result<Self, BuildError> {
        let origin = HttpOrigin::with_lookup(
            config.url_policy.clone(),
            config.fetch_timeouts,
            config.source,
            lookup,
        )?;
        Ok(Ingest::new(store, sink, origin, config))
    }
}

/// The invocation's deadline, which is also the lease's: the runtime's, or
/// `now + local_emulator_budget` when the runtime's is already past. LOCAL EMULATOR ONLY:
/// cargo lambda watch sends a fixed deadline in 1970; Lambda never sends a past one.
pub fn lease_deadline(
    runtime_deadline_ms: u64,
    now: Timestamp,
    local_emulator_budget: Duration,
) -> Timestamp {
    let runtime = Timestamp::from_millis(i64::try_from(runtime_deadline_ms).unwrap_or(i64::MAX));
    if runtime > now {
        runtime
    } else {
        warn!(
            runtime_deadline_ms,
            budget_s = local_emulator_budget.as_secs(),
            "runtime deadline already past (a local emulator); using the configured budget"
        );
        now.saturating_add(local_emulator_budget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use shared::TaskId;
    use shared::domain::task::{ClaimDecision, DEFAULT_TASK_TTL, FailureReason, Task, TaskStatus};
    use shared::lambda::config::Env;
    use shared::test_support::fixtures::DYNAMODB_STREAM_RECEIVED as FIXTURE;
    use shared::test_support::{MemoryTaskStore, MemoryVideoSink, stream_event, success};

    const TASK: &str = "taskId_774b9aa0422f";

    type TestIngest = Ingest<MemoryTaskStore, MemoryVideoSink, HttpOrigin>;

    /// The real HTTP source; a memory sink (these tests never get as far as writing, and
    /// if one did, nothing would leave the process).
    fn ingest(extra: &[(&str, &str)]) -> TestIngest {
        let mut pairs = vec![
            ("TABLE_NAME", "t"),
            ("BUCKET_NAME", "videos"),
            ("DOWNLOAD_RETRIES", "0"),
            ("MAX_ATTEMPTS", "2"),
            ("CONNECT_TIMEOUT_SECS", "2"),
        ];
        pairs.extend_from_slice(extra);
        let config = IngestConfig::from_env(&Env::from_pairs(pairs)).unwrap();
        Ingest::over_http(
            MemoryTaskStore::default(),
            MemoryVideoSink::default(),
            config,
        )
        .unwrap()
    }

    /// A stream event with `task`'s image `copies` times, sequence numbers increasing.
    fn event(task: &Task, copies: usize, request_id: &str) -> LambdaEvent<Event> {
        let image = task.to_item().unwrap();
        let v = stream_event(&vec![image; copies]);
        let mut context = lambda_runtime::Context::default();
        context.request_id = request_id.into();
        context.deadline = u64::try_from(Timestamp::now().as_millis()).unwrap() + 60_000;
        LambdaEvent::new(serde_json::from_value(v).unwrap(), context)
    }

    async fn seeded(ingest: &TestIngest, url: &str) -> Task {
        let task = Task::from_callback(&success(TASK, url), Timestamp::now(), DEFAULT_TASK_TTL);
        ingest.store().create(&task).await.unwrap();
        task
    }

    fn failures(response: &DynamoDbEventResponse) -> Vec<String> {
        response
            .batch_item_failures
            .iter()
            .filter_map(|f| f.item_identifier.clone())
            .collect()
    }

    fn stored(ingest: &TestIngest) -> Task {
        ingest
            .store()
            .snapshot(&TaskId::parse(TASK).unwrap())
            .unwrap()
    }

    #[test]
    fn a_past_runtime_deadline_falls_back_to_the_configured_budget() {
        let now = Timestamp::from_secs(1_795_000_000);
        let budget = Duration::from_secs(900);
        let future = u64::try_from(now.as_millis()).unwrap() + 60_000;
        assert_eq!(
            lease_deadline(future, now, budget).as_millis(),
            now.as_millis() + 60_000
        );
        // What cargo lambda watch sends.
        assert_eq!(
            lease_deadline(600_000, now, budget),
            now.saturating_add(budget)
        );
    }

    #[tokio::test]
    async fn the_fixture_decodes_into_a_task() {
        let v: Value = serde_json::from_str(FIXTURE).unwrap();
        let event: Event = serde_json::from_value(v).unwrap();
        let task = task_from_image(event.records[0].change.new_image.clone()).unwrap();
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

    /// Each record is counted by outcome; a failure also by its reason and in the total
    /// the alarm watches.
    #[test]
    fn records_are_counted_by_outcome_and_failure_reason() {
        use shared::metrics::*;
        use shared::test_support::CapturedMetrics;

        let ((), m) = CapturedMetrics::run(async {
            let ingest = ingest(&[]);
            let task = seeded(&ingest, "https://169.254.169.254/latest/meta-data/").await;
            ingest.handle(event(&task, 1, "inv-1")).await.unwrap();
            // The same record again: the task is finished, so it is skipped.
            ingest.handle(event(&task, 1, "inv-2")).await.unwrap();
        });
        assert_eq!(m.counter(INGEST_OUTCOMES, &[(OUTCOME, "failed")]), 1);
        assert_eq!(m.counter(INGEST_OUTCOMES, &[(OUTCOME, "skipped")]), 1);
        assert_eq!(m.counter(INGEST_FAILURES, &[(REASON, "blocked_url")]), 1);
        assert_eq!(m.counter(INGEST_FAILED, &[]), 1);
        assert!(
            m.histogram(INGEST_BYTES, &[]).is_empty(),
            "nothing was copied"
        );
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
        let ClaimDecision::Claim(claim) =
            task.decide_claim("other", Timestamp::now(), lease, 5, DEFAULT_TASK_TTL)
        else {
            panic!("a received task is claimable")
        };
        ingest.store().apply(&task.task_id, &claim).await.unwrap();
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

//! DynamoDB stream → notify: the batch plumbing. A record is an outcome when its new
//! image's status is `stored` or `failed` and differs from the old image's (a duplicate
//! callback that only counts itself on a stored task is not a new outcome; a revived
//! task that fails again, or `failed → stored`, is). Each outcome is notified in its own
//! span; from the first record that must be retried, it and every later record are
//! reported as batch item failures.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use lambda_runtime::{Error, LambdaEvent};
use shared::Timestamp;
use shared::domain::task::attr;
use shared::lambda::stream::in_order;
use shared::metrics;
use shared::notifications::{DeliveryStore, EndpointStore, JobQueue, ThresholdStore};
use shared::store::image::task_from_image;
use shared::usecase::notify::Notifier;
use tracing::{Instrument, debug, error, field, info, info_span};

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// The outcome was notified (deliveries created, or counted by thresholds).
    Notified,
    /// Not an outcome: nothing to do.
    NotAnOutcome,
    /// An outcome whose image does not decode: ingest fails such a task with a reason,
    /// and that write is the outcome notified.
    Unreadable,
    /// A store or the queue failed: the stream retries from here.
    Retry,
}

/// The notify function: the use case, built once per cold start.
#[derive(Debug)]
pub struct NotifyHandler<E, D, T, Q> {
    notifier: Notifier<E, D, T, Q>,
}

impl<E, D, T, Q> NotifyHandler<E, D, T, Q>
where
    E: EndpointStore,
    D: DeliveryStore,
    T: ThresholdStore,
    Q: JobQueue,
{
    pub fn new(notifier: Notifier<E, D, T, Q>) -> Self {
        Self { notifier }
    }

    /// The use case's ports (tests read what was written).
    pub fn notifier(&self) -> &Notifier<E, D, T, Q> {
        &self.notifier
    }

    /// Handles one batch, in order; from the first record to retry, every later one is
    /// reported too (the stream resumes from the lowest failed sequence number anyway,
    /// and a later record of the same task must not overtake it).
    pub async fn handle(&self, event: LambdaEvent<Event>) -> Result<DynamoDbEventResponse, Error> {
        let (event, context) = event.into_parts();
        info!(request_id = %context.request_id, records = event.records.len(), "batch received");
        let request_id = &context.request_id;
        Ok(in_order(&event.records, |record| async move {
            let sequence = record.change.sequence_number.as_deref().unwrap_or_default();
            let span = info_span!("record", request_id = %request_id, event_id = %record.event_id,
                                  sequence = sequence, task_id = field::Empty);
            self.process(record).instrument(span).await == RecordOutcome::Retry
        })
        .await?)
    }

    async fn process(&self, record: &EventRecord) -> RecordOutcome {
        if !is_new_outcome(record) {
            debug!(
                outcome = "skipped",
                reason = "not_an_outcome",
                "record skipped"
            );
            return RecordOutcome::NotAnOutcome;
        }
        let task = match task_from_image(record.change.new_image.clone()) {
            Ok(task) => task,
            Err(e) => {
                error!(outcome = "skipped", reason = "unreadable_image", error = %e,
                       "outcome image does not decode; nothing to notify");
                return RecordOutcome::Unreadable;
            }
        };
        tracing::Span::current().record("task_id", task.task_id.as_str());
        match self.notifier.outcome(&task, Timestamp::now()).await {
            Ok(notified) => {
                metrics::notifications_queued(notified.created);
                RecordOutcome::Notified
            }
            Err(e) => {
                error!(outcome = "retry", error = %e, "could not notify the outcome");
                RecordOutcome::Retry
            }
        }
    }
}

/// `stored`/`failed` in the new image and something else (or nothing) in the old one.
/// The template's filter says the same; this guards the local pump and any
/// misconfigured trigger.
pub fn is_new_outcome(record: &EventRecord) -> bool {
    if !matches!(record.event_name.as_str(), "INSERT" | "MODIFY") {
        return false;
    }
    let status = |image: &serde_dynamo::Item| match image.get(attr::STATUS) {
        Some(serde_dynamo::AttributeValue::S(s)) => Some(s.clone()),
        _ => None,
    };
    let new = status(&record.change.new_image);
    let old = status(&record.change.old_image);
    matches!(new.as_deref(), Some("stored" | "failed")) && old != new
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use lambda_runtime::Context;
    use shared::domain::notify::delivery::DeliveryStatus;
    use shared::domain::notify::endpoint::{EndpointId, EndpointSpec, EndpointUrlPolicy};
    use shared::domain::task::{DEFAULT_TASK_TTL, FailureReason, Item, Task};
    use shared::notifications::Endpoint;
    use shared::notifications::Job;
    use shared::notifications::memory::{
        MemoryDeliveries, MemoryEndpoints, MemoryQueue, MemoryThresholds,
    };
    use shared::test_support::{envelope, stored_task, stream_change_event};
    use shared::{TaskStatus, Timestamp};

    type Handler = NotifyHandler<MemoryEndpoints, MemoryDeliveries, MemoryThresholds, MemoryQueue>;

    fn handler(specs: &[serde_json::Value]) -> Handler {
        let endpoints = MemoryEndpoints::default();
        for (i, spec) in specs.iter().enumerate() {
            let spec: EndpointSpec = serde_json::from_value(spec.clone()).unwrap();
            let settings = spec.validate(&EndpointUrlPolicy::local()).unwrap();
            endpoints.insert(Endpoint::new(
                EndpointId::generate(i as u128 + 1),
                settings,
                None,
                None,
                Timestamp::now(),
            ));
        }
        NotifyHandler::new(Notifier {
            endpoints,
            deliveries: MemoryDeliveries::default(),
            thresholds: MemoryThresholds::default(),
            queue: MemoryQueue::default(),
        })
    }

    fn webhook() -> serde_json::Value {
        serde_json::json!({"kind": "webhook", "url": "https://hooks.example/in"})
    }

    fn task(id: &str, status: TaskStatus, revision: u64) -> Task {
        if status == TaskStatus::Stored {
            return stored_task(id, revision, Timestamp::now());
        }
        let mut task = Task::from_callback(
            &envelope(id, 200, Some("https://cdn.example/v.mp4"), "ok"),
            Timestamp::now(),
            DEFAULT_TASK_TTL,
        );
        task.status = status;
        task.revision = revision;
        if status == TaskStatus::Failed {
            task.failure_reason = Some(FailureReason::SourceNotFound);
        }
        task
    }

    fn item(t: &Task) -> Item {
        t.to_item().unwrap()
    }

    async fn run(h: &Handler, changes: &[(Option<&Item>, &Item)]) -> DynamoDbEventResponse {
        let event: Event = serde_json::from_value(stream_change_event(changes)).unwrap();
        h.handle(LambdaEvent::new(event, Context::default()))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn an_outcome_is_one_delivery_per_endpoint_and_a_redelivered_record_adds_none() {
        let h = handler(&[webhook(), webhook()]);
        let downloading = item(&task("t-1", TaskStatus::Downloading, 2));
        let stored = item(&task("t-1", TaskStatus::Stored, 3));
        let response = run(&h, &[(Some(&downloading), &stored)]).await;
        assert!(response.batch_item_failures.is_empty());
        let all = h.notifier().deliveries.all();
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|d| d.status == DeliveryStatus::Pending));
        assert_eq!(h.notifier().queue.jobs().len(), 2);
        assert!(
            h.notifier()
                .queue
                .jobs()
                .iter()
                .all(|(job, delay)| matches!(job, Job::Deliver { .. }) && delay.is_zero())
        );
        // The stream delivers at least once: the same record again creates nothing.
        run(&h, &[(Some(&downloading), &stored)]).await;
        assert_eq!(h.notifier().deliveries.all().len(), 2);
    }

    #[tokio::test]
    async fn only_a_change_into_stored_or_failed_is_an_outcome() {
        let h = handler(&[webhook()]);
        let received = item(&task("t-2", TaskStatus::Received, 1));
        let downloading = item(&task("t-2", TaskStatus::Downloading, 2));
        let stored = item(&task("t-2", TaskStatus::Stored, 3));
        let mut counted = stored.clone();
        counted.insert("callback_count".into(), 2.into());
        run(
            &h,
            &[
                (None, &received),
                (Some(&received), &downloading),
                (Some(&stored), &counted), // a duplicate callback on a stored task
            ],
        )
        .await;
        assert!(h.notifier().deliveries.all().is_empty());
        // A failed task revived and stored is two events: each notified once.
        let failed = item(&task("t-3", TaskStatus::Failed, 3));
        let revived = item(&task("t-3", TaskStatus::Downloading, 5));
        let stored = item(&task("t-3", TaskStatus::Stored, 6));
        run(&h, &[(None, &failed), (Some(&revived), &stored)]).await;
        assert_eq!(h.notifier().deliveries.all().len(), 2);
    }

    #[tokio::test]
    async fn a_store_failure_retries_that_record_and_every_later_one() {
        let h = handler(&[webhook()]);
        let a = item(&task("t-4", TaskStatus::Stored, 3));
        let b = item(&task("t-5", TaskStatus::Stored, 3));
        let not_outcome = item(&task("t-6", TaskStatus::Received, 1));
        h.notifier().deliveries.set_unavailable(true);
        let response = run(&h, &[(None, &not_outcome), (None, &a), (None, &b)]).await;
        let ids: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone().unwrap())
            .collect();
        assert_eq!(
            ids,
            ["111000000000000000123456701", "111000000000000000123456702"]
        );
        h.notifier().deliveries.set_unavailable(false);
        assert!(
            run(&h, &[(None, &a), (None, &b)])
                .await
                .batch_item_failures
                .is_empty()
        );
        assert_eq!(h.notifier().deliveries.all().len(), 2);
    }

    #[tokio::test]
    async fn an_unreadable_outcome_image_is_skipped_not_retried_forever() {
        let h = handler(&[webhook()]);
        let mut broken = item(&task("t-7", TaskStatus::Stored, 3));
        broken.insert("revision".into(), "three".into());
        let response = run(&h, &[(None, &broken)]).await;
        assert!(response.batch_item_failures.is_empty());
        assert!(h.notifier().deliveries.all().is_empty());
    }
}

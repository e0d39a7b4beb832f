//! SQS → deliver: the batch plumbing. Each message carries one [`QueuedJob`]:
//!
//! - early (SQS holds a delay at most 15 minutes): sent again for the rest of the wait,
//!   or, beyond 15 minutes, kept hidden that long and reported as a batch item failure
//!   so Lambda does not delete it;
//! - due: run. A delivery attempt that must be tried again queues its next attempt as
//!   a new message; a store or queue failure reports the message, which SQS redelivers
//!   (and, after the queue's `maxReceiveCount`, moves to the dead-letter queue: a body
//!   that is not a job goes there too).

use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Error, LambdaEvent};
use shared::Timestamp;
use shared::domain::notify::delivery::SqsWait;
use shared::metrics::{self, DeliveryOutcome};
use shared::notifications::{
    Arrival, DeliveryStore, EndpointStore, Job, JobQueue, QueuedJob, Requeue, ThresholdStore,
};
use shared::sender::Sender;
use shared::store::TaskStore;
use shared::usecase::deliver::{Courier, Delivered};
use shared::usecase::notify::Notifier;
use tracing::{Instrument, debug, error, field, info, info_span, warn};

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Done: Lambda deletes the message.
    Done,
    /// Early beyond 15 minutes: hidden until its time, kept (reported, not deleted).
    Hidden,
    /// Something failed: reported, SQS delivers it again after its visibility timeout.
    Retry,
}

/// The deliver function: the two use cases and the queue, built once per cold start.
#[derive(Debug)]
pub struct DeliverHandler<D, E, Th, S, Q, T> {
    pub courier: Courier<D, E, S, Q>,
    pub notifier: Notifier<E, D, Th, Q>,
    /// The tasks table: a drain check asks whether any task is still open.
    pub tasks: T,
}

impl<D, E, Th, S, Q, T> DeliverHandler<D, E, Th, S, Q, T>
where
    D: DeliveryStore,
    E: EndpointStore,
    Th: ThresholdStore,
    S: Sender,
    Q: JobQueue + Requeue,
    T: TaskStore,
{
    /// Handles one batch; every message on its own (a standard queue has no order).
    pub async fn handle(&self, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
        let (event, context) = event.into_parts();
        info!(request_id = %context.request_id, messages = event.records.len(), "batch received");
        let mut response = SqsBatchResponse::default();
        for message in &event.records {
            let message_id = message.message_id.clone().unwrap_or_default();
            let span = info_span!("message", request_id = %context.request_id, message_id = %message_id,
                                  job = field::Empty, delivery_id = field::Empty, endpoint_id = field::Empty);
            let outcome = self
                .process(message, Timestamp::now())
                .instrument(span)
                .await;
            if outcome != MessageOutcome::Done {
                if message_id.is_empty() {
                    return Err("a message to keep has no message id".into());
                }
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                response.batch_item_failures.push(failure);
            }
        }
        Ok(response)
    }

    /// One message at `now`.
    pub async fn process(&self, message: &SqsMessage, now: Timestamp) -> MessageOutcome {
        let queued: QueuedJob = match message.body.as_deref().map(serde_json::from_str) {
            Some(Ok(queued)) => queued,
            Some(Err(e)) => {
                error!(outcome = "poison", error = %e, "message body is not a job");
                return MessageOutcome::Retry;
            }
            None => {
                error!(outcome = "poison", "message has no body");
                return MessageOutcome::Retry;
            }
        };
        debug!(job = ?queued.job, not_before = ?queued.not_before, "job received");
        let wait = match queued.clone().arrival(now) {
            Arrival::Run(job) => return self.run(job, now).await,
            Arrival::WaitAgain(wait) => wait,
        };
        match wait {
            // Less than a second early: run it (the use case checks the time again).
            SqsWait::Now => self.run(queued.job, now).await,
            SqsWait::DelaySeconds(secs) => {
                let delay = Duration::from_secs(secs.into());
                match self.courier.queue.resend(&queued, delay).await {
                    Ok(()) => {
                        info!(
                            outcome = "waiting",
                            wait_secs = secs,
                            "early job sent again"
                        );
                        MessageOutcome::Done
                    }
                    Err(e) => {
                        error!(outcome = "retry", error = %e, "could not send the early job again");
                        MessageOutcome::Retry
                    }
                }
            }
            SqsWait::VisibilitySeconds(secs) => {
                let Some(receipt) = message.receipt_handle.as_deref() else {
                    error!(outcome = "retry", "early message has no receipt handle");
                    return MessageOutcome::Retry;
                };
                match self
                    .courier
                    .queue
                    .hide(receipt, Duration::from_secs(secs.into()))
                    .await
                {
                    Ok(()) => {
                        info!(outcome = "waiting", wait_secs = secs, "early job hidden");
                        MessageOutcome::Hidden
                    }
                    Err(e) => {
                        error!(outcome = "retry", error = %e, "could not hide the early job");
                        MessageOutcome::Retry
                    }
                }
            }
        }
    }

    async fn run(&self, job: Job, now: Timestamp) -> MessageOutcome {
        let span = tracing::Span::current();
        let result = match &job {
            Job::Deliver { delivery_id } => {
                span.record("job", "deliver")
                    .record("delivery_id", delivery_id.as_str());
                let delivered = self
                    .courier
                    .deliver(delivery_id, now, fastrand::f64())
                    .await;
                if let Ok(delivered) = &delivered {
                    count_delivery(delivered);
                }
                match delivered {
                    Ok(Delivered::RetryIn(wait) | Delivered::NotYet(wait)) => self
                        .courier
                        .queue
                        .enqueue(&job, wait)
                        .await
                        .map_err(|e| e.to_string()),
                    Ok(_) => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            }
            Job::FlushBatch { endpoint_id, seq } => {
                span.record("job", "flush_batch")
                    .record("endpoint_id", endpoint_id.as_str());
                self.notifier
                    .flush_batch(endpoint_id, *seq, now)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Job::DrainCheck { endpoint_id } => {
                span.record("job", "drain_check")
                    .record("endpoint_id", endpoint_id.as_str());
                self.notifier
                    .drain_check(&self.tasks, endpoint_id, now)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        };
        match result {
            Ok(()) => MessageOutcome::Done,
            Err(e) => {
                warn!(outcome = "retry", job = ?job, error = %e, "job failed; SQS redelivers it");
                MessageOutcome::Retry
            }
        }
    }
}

/// Counts one delivery by outcome; "nothing to do" (not pending, taken) is not counted.
fn count_delivery(delivered: &Delivered) {
    let outcome = match delivered {
        Delivered::Succeeded => DeliveryOutcome::Succeeded,
        Delivered::RetryIn(_) => DeliveryOutcome::Retry,
        Delivered::Dead => DeliveryOutcome::Dead,
        Delivered::SkippedDisabled => DeliveryOutcome::SkippedDisabled,
        Delivered::NotYet(_) => DeliveryOutcome::NotYet,
        Delivered::Nothing => return,
    };
    metrics::delivery(outcome);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use super::*;
    use lambda_runtime::Context;
    use shared::domain::notify::delivery::{Delivery, DeliveryStatus};
    use shared::domain::notify::endpoint::{EndpointId, EndpointSpec, EndpointUrlPolicy};
    use shared::domain::notify::format::samples;
    use shared::domain::notify::health::HealthPolicy;
    use shared::notifications::Endpoint;
    use shared::notifications::memory::{
        MemoryDeliveries, MemoryEndpoints, MemoryQueue, MemoryThresholds,
    };
    use shared::sender::scripted::ScriptedSender;
    use shared::store::memory::MemoryTaskStore;
    use shared::usecase::deliver::DeliverSettings;

    type Handler = DeliverHandler<
        Arc<MemoryDeliveries>,
        Arc<MemoryEndpoints>,
        MemoryThresholds,
        ScriptedSender,
        Arc<MemoryQueue>,
        MemoryTaskStore,
    >;

    const FIXTURE: &str = include_str!("fixtures/sqs-job.json");

    fn handler() -> (Handler, EndpointId) {
        let deliveries = Arc::<MemoryDeliveries>::default();
        let endpoints = Arc::<MemoryEndpoints>::default();
        let queue = Arc::<MemoryQueue>::default();
        let spec: EndpointSpec = serde_json::from_value(
            serde_json::json!({"kind": "webhook", "url": "http://127.0.0.1:9/hook"}),
        )
        .unwrap();
        let settings = spec.validate(&EndpointUrlPolicy::local()).unwrap();
        let key = shared::domain::secret::Secret::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let endpoint = Endpoint::new(
            EndpointId::generate(1),
            settings,
            Some(shared::domain::notify::signing::SigningKeys::new(key)),
            None,
            Timestamp::now(),
        );
        let id = endpoint.id.clone();
        endpoints.insert(endpoint);
        let handler = DeliverHandler {
            courier: Courier {
                deliveries: Arc::clone(&deliveries),
                endpoints: Arc::clone(&endpoints),
                sender: ScriptedSender::default(),
                queue: Arc::clone(&queue),
                settings: DeliverSettings::new(HealthPolicy::default()),
            },
            notifier: Notifier {
                endpoints,
                deliveries,
                thresholds: MemoryThresholds::default(),
                queue,
            },
            tasks: MemoryTaskStore::default(),
        };
        (handler, id)
    }

    /// The fixture's message carrying `bodies`, one record each (ids `m0`, `m1`, …).
    fn event(bodies: &[String]) -> SqsEvent {
        let mut event: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
        let template = event["Records"][0].clone();
        event["Records"] = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                let mut r = template.clone();
                r["messageId"] = format!("m{i}").into();
                r["receiptHandle"] = format!("receipt-{i}").into();
                r["body"] = body.clone().into();
                r
            })
            .collect();
        serde_json::from_value(event).unwrap()
    }

    fn queued(job: Job, not_before: Timestamp) -> String {
        serde_json::to_string(&QueuedJob { job, not_before }).unwrap()
    }

    async fn run(h: &Handler, bodies: &[String]) -> Vec<String> {
        h.handle(LambdaEvent::new(event(bodies), Context::default()))
            .await
            .unwrap()
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect()
    }

    async fn pending(h: &Handler, endpoint: &EndpointId) -> Delivery {
        let d = Delivery::new(
            samples::all().remove(1),
            endpoint.clone(),
            true,
            Timestamp::now(),
        );
        h.courier.deliveries.create(&d).await.unwrap();
        d
    }

    #[tokio::test]
    async fn a_due_attempt_is_sent_and_a_failure_queues_the_next_attempt() {
        let (h, ep) = handler();
        let d = pending(&h, &ep).await;
        h.courier.sender.answer(503, "busy");
        let job = Job::Deliver {
            delivery_id: d.id.clone(),
        };
        let failures = run(&h, &[queued(job.clone(), Timestamp::now())]).await;
        assert!(failures.is_empty(), "the message is done: {failures:?}");
        assert_eq!(h.courier.sender.requests().len(), 1);
        let next = h.courier.queue.jobs();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].0, job);
        // 5 s ±20 %.
        assert!(
            (4_000..=6_000).contains(&next[0].1.as_millis()),
            "{:?}",
            next[0].1
        );
        let d = h.courier.deliveries.snapshot(&d.id).unwrap();
        assert_eq!((d.status, d.attempt_count), (DeliveryStatus::Pending, 1));
    }

    /// Deliveries are counted by outcome; a 410 is dead at once and disables the endpoint
    /// (both alarm targets); a copy with nothing to do is not counted.
    #[test]
    fn deliveries_are_counted_by_outcome_with_dead_and_disabled_apart() {
        use shared::metrics::*;
        use shared::test_support::CapturedMetrics;

        let ((), m) = CapturedMetrics::run(async {
            let (h, ep) = handler();
            let first = pending(&h, &ep).await;
            h.courier.sender.answer(503, "busy");
            let job = |d: &Delivery| {
                queued(
                    Job::Deliver {
                        delivery_id: d.id.clone(),
                    },
                    Timestamp::now(),
                )
            };
            run(&h, &[job(&first)]).await;
            // A fresh endpoint (the first one is now backing off).
            let (h, ep) = handler();
            let second = pending(&h, &ep).await;
            h.courier.sender.answer(410, "gone");
            run(&h, &[job(&second), job(&second)]).await;
        });
        assert_eq!(m.counter(DELIVERIES, &[(OUTCOME, "retry")]), 1);
        assert_eq!(
            m.counter(DELIVERIES, &[(OUTCOME, "dead")]),
            1,
            "{:?}",
            m.counted()
        );
        assert_eq!(m.counter(DEAD_DELIVERIES, &[]), 1);
        assert_eq!(m.counter(DELIVERY_ATTEMPTS, &[]), 2);
        assert_eq!(m.counter(ENDPOINTS_DISABLED, &[]), 1);
        let counted: u64 = ["succeeded", "retry", "dead", "skipped_disabled", "not_yet"]
            .iter()
            .map(|o| m.counter(DELIVERIES, &[(OUTCOME, o)]))
            .sum();
        assert_eq!(
            counted,
            2,
            "the second copy found nothing to do: {:?}",
            m.counted()
        );
    }

    #[tokio::test]
    async fn a_success_queues_nothing_and_a_second_copy_sends_nothing() {
        let (h, ep) = handler();
        let d = pending(&h, &ep).await;
        h.courier.sender.answer(204, "");
        let body = queued(
            Job::Deliver {
                delivery_id: d.id.clone(),
            },
            Timestamp::now(),
        );
        assert!(run(&h, &[body.clone(), body]).await.is_empty());
        assert_eq!(
            h.courier.sender.requests().len(),
            1,
            "at-least-once SQS, one send"
        );
        assert!(h.courier.queue.jobs().is_empty());
        assert_eq!(
            h.courier.deliveries.snapshot(&d.id).unwrap().status,
            DeliveryStatus::Succeeded
        );
    }

    #[tokio::test]
    async fn early_jobs_wait_out_their_time_in_legs() {
        let (h, ep) = handler();
        let now = Timestamp::now();
        let job = Job::DrainCheck { endpoint_id: ep };
        let soon = QueuedJob {
            job: job.clone(),
            not_before: now.saturating_add(Duration::from_secs(600)),
        };
        let later = QueuedJob {
            job,
            not_before: now.saturating_add(Duration::from_secs(7_200)),
        };
        let bodies = [
            serde_json::to_string(&soon).unwrap(),
            serde_json::to_string(&later).unwrap(),
        ];
        let failures = run(&h, &bodies).await;
        assert_eq!(failures, ["m1"], "the hidden message is kept, not deleted");
        let resent = h.courier.queue.resent();
        assert_eq!(resent.len(), 1);
        assert_eq!(resent[0].0, soon, "sent again with its own not-before time");
        assert!(
            (598..=600).contains(&resent[0].1.as_secs()),
            "{:?}",
            resent[0].1
        );
        let hidden = h.courier.queue.hidden();
        assert_eq!(hidden.len(), 1);
        assert_eq!(hidden[0].0, "receipt-1");
        assert!(
            (7_198..=7_200).contains(&hidden[0].1.as_secs()),
            "{:?}",
            hidden[0].1
        );
    }

    #[tokio::test]
    async fn poison_bodies_and_store_failures_are_reported_for_redelivery() {
        let (h, ep) = handler();
        let d = pending(&h, &ep).await;
        let good = queued(
            Job::Deliver {
                delivery_id: d.id.clone(),
            },
            Timestamp::now(),
        );
        let flush = queued(
            Job::FlushBatch {
                endpoint_id: EndpointId::generate(99),
                seq: 1,
            },
            Timestamp::now(),
        );
        h.courier.deliveries.set_unavailable(true);
        let failures = run(
            &h,
            &[
                "not json".into(),
                r#"{"job":"unknown"}"#.into(),
                good.clone(),
                flush,
            ],
        )
        .await;
        assert_eq!(
            failures,
            ["m0", "m1", "m2"],
            "a flush for a deleted endpoint is done"
        );
        assert!(h.courier.sender.requests().is_empty());
        h.courier.deliveries.set_unavailable(false);
        h.courier.sender.answer(200, "ok");
        assert!(run(&h, &[good]).await.is_empty());
        assert_eq!(h.courier.sender.requests().len(), 1);
    }
}

//! The notify use case: a task reached an outcome (the stream said so); tell every
//! endpoint that wants to know, once. For each endpoint whose filter matches:
//!
//! - `each`: one delivery, created with a conditional put (its id is derived from the
//!   event's, so a redelivered stream record creates nothing) and queued;
//! - `batch`: the task joins the endpoint's current batch; the completion that fills it
//!   creates the batch's delivery; the first member queues the `max_wait` flush check;
//! - `drain`: the busy period is extended and a check queued `quiet` later.
//!
//! A disabled endpoint still gets its deliveries, recorded `skipped_disabled`, so
//! `recover` can send them once it is enabled again. The flush and drain checks are
//! [`Notifier::flush_batch`] and [`Notifier::drain_check`].

use std::time::Duration;

use tracing::info;

use crate::domain::clock::Timestamp;
use crate::domain::notify::delivery::Delivery;
use crate::domain::notify::endpoint::{EndpointId, Threshold};
use crate::domain::notify::event::Event;
use crate::domain::notify::threshold::{BatchDecision, DrainCheck, batch_slot, drained_event};
use crate::domain::task::{Task, TaskStatus};
use crate::notifications::{
    DeliveryStore, Endpoint, EndpointStore, Job, JobQueue, NotifyStoreError, QueueError,
    ThresholdStore,
};
use crate::store::{StoreError, TaskStore};

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Store(#[from] NotifyStoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Tasks(#[from] StoreError),
}

/// What notifying one outcome did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notified {
    /// Deliveries created (a redelivered record creates none).
    pub created: usize,
    /// Endpoints whose filter did not match.
    pub filtered: usize,
    /// Batch and drain endpoints that counted the completion.
    pub counted: usize,
}

/// The notify use case's ports.
#[derive(Debug, Clone)]
pub struct Notifier<E, D, T, Q> {
    pub endpoints: E,
    pub deliveries: D,
    pub thresholds: T,
    pub queue: Q,
}

impl<E, D, T, Q> Notifier<E, D, T, Q>
where
    E: EndpointStore,
    D: DeliveryStore,
    T: ThresholdStore,
    Q: JobQueue,
{
    /// Notifies the endpoints of `task`'s outcome, at `now`.
    pub async fn outcome(&self, task: &Task, now: Timestamp) -> Result<Notified, NotifyError> {
        let mut report = Notified::default();
        let Some(event) = Event::for_task(task) else {
            return Ok(report);
        };
        for endpoint in self.endpoints.list().await? {
            if !endpoint
                .settings
                .filter
                .matches(event.event_type, Some((&task.task_id, task.status)))
            {
                report.filtered += 1;
                continue;
            }
            match endpoint.settings.threshold {
                Threshold::Each => {
                    let delivery =
                        Delivery::new(event.clone(), endpoint.id.clone(), endpoint.enabled, now);
                    report.created += usize::from(self.create_and_queue(delivery).await?);
                }
                Threshold::Batch { n, max_wait_secs } => {
                    report.counted += 1;
                    let max_wait = Duration::from_secs(max_wait_secs);
                    report.created += self.join(&endpoint, task, n, max_wait, now).await?;
                }
                Threshold::Drain { quiet_secs } => {
                    report.counted += 1;
                    self.thresholds.mark_busy(&endpoint.id, now).await?;
                    let check = Job::DrainCheck {
                        endpoint_id: endpoint.id.clone(),
                    };
                    self.queue
                        .enqueue(&check, Duration::from_secs(quiet_secs))
                        .await?;
                }
            }
        }
        info!(
            outcome = "notified",
            task_id = %task.task_id,
            task_status = task.status.as_str(),
            event_id = %event.id,
            created = report.created,
            filtered = report.filtered,
            counted = report.counted,
            "outcome notified"
        );
        Ok(report)
    }

    /// A batch's wait is over: flush it short if it is still open.
    pub async fn flush_batch(
        &self,
        endpoint_id: &EndpointId,
        seq: u64,
        now: Timestamp,
    ) -> Result<usize, NotifyError> {
        let Some(endpoint) = self.endpoints.get(endpoint_id).await? else {
            return Ok(0);
        };
        self.send_batch(&endpoint, seq, true, now).await
    }

    /// A drain endpoint's quiet time may be over: if nothing completed since and no task
    /// is open, send `tasks.queue_drained` for the busy period (once).
    pub async fn drain_check<S: TaskStore>(
        &self,
        tasks: &S,
        endpoint_id: &EndpointId,
        now: Timestamp,
    ) -> Result<usize, NotifyError> {
        let Some(endpoint) = self.endpoints.get(endpoint_id).await? else {
            return Ok(0);
        };
        let Threshold::Drain { quiet_secs } = endpoint.settings.threshold else {
            return Ok(0);
        };
        let busy = self.thresholds.busy(endpoint_id).await?;
        let quiet = Duration::from_secs(quiet_secs);
        // Cheap checks first: only a quiet period is worth the open-task query.
        if matches!(
            busy.check(now, quiet, false),
            DrainCheck::Idle | DrainCheck::NotQuiet
        ) {
            return Ok(0);
        }
        let open = any_open(tasks, now).await?;
        let DrainCheck::Drained { since, completed } = busy.check(now, quiet, open) else {
            return Ok(0);
        };
        if !self.thresholds.end_busy(endpoint_id, since).await? {
            return Ok(0);
        }
        let delivery = Delivery::new(
            drained_event(endpoint_id, since, completed),
            endpoint_id.clone(),
            endpoint.enabled,
            now,
        );
        Ok(usize::from(self.create_and_queue(delivery).await?))
    }

    /// Creates `delivery` and, if new and pending, queues it. `true` if it was new.
    async fn create_and_queue(&self, delivery: Delivery) -> Result<bool, NotifyError> {
        let pending = delivery.next_attempt_at.is_some();
        let id = delivery.id.clone();
        if !self.deliveries.create(&delivery).await? {
            return Ok(false);
        }
        if pending {
            let job = Job::Deliver { delivery_id: id };
            self.queue.enqueue(&job, Duration::ZERO).await?;
        }
        Ok(true)
    }

    /// Adds `task` to `endpoint`'s current batch; the number of deliveries created (0 or 1).
    async fn join(
        &self,
        endpoint: &Endpoint,
        task: &Task,
        n: u32,
        max_wait: Duration,
        now: Timestamp,
    ) -> Result<usize, NotifyError> {
        // A stream record can be delivered twice: the same task may then join twice. A
        // batch counts completions, as seed 001 does; receivers get each task id listed.
        loop {
            let k = self.thresholds.next_completion(&endpoint.id).await?;
            let (seq, _) = batch_slot(k, n);
            let joined = self
                .thresholds
                .join_batch(&endpoint.id, seq, &task.task_id, now)
                .await?;
            let Some(batch) = joined else {
                // Flushed before this member arrived: move the counter past the batch (one
                // write, not one per number left in it) and take the next number.
                self.thresholds
                    .skip_past(&endpoint.id, (seq + 1).saturating_mul(u64::from(n)))
                    .await?;
                continue;
            };
            return match batch.decide(n, max_wait, now) {
                BatchDecision::SendFull => self.send_batch(endpoint, seq, false, now).await,
                BatchDecision::Wait { .. } if batch.members.len() == 1 => {
                    let job = Job::FlushBatch {
                        endpoint_id: endpoint.id.clone(),
                        seq,
                    };
                    self.queue.enqueue(&job, max_wait).await?;
                    Ok(0)
                }
                _ => Ok(0),
            };
        }
    }

    async fn send_batch(
        &self,
        endpoint: &Endpoint,
        seq: u64,
        flushed: bool,
        now: Timestamp,
    ) -> Result<usize, NotifyError> {
        let Some(batch) = self
            .thresholds
            .close_batch(&endpoint.id, seq, flushed)
            .await?
        else {
            return Ok(0); // someone else closed it
        };
        let event = batch.event(&endpoint.id, seq);
        let delivery = Delivery::new(event, endpoint.id.clone(), endpoint.enabled, now);
        Ok(usize::from(self.create_and_queue(delivery).await?))
    }
}

/// Whether any task is open: one single-item query of the sparse index per open status.
async fn any_open<S: TaskStore>(tasks: &S, now: Timestamp) -> Result<bool, StoreError> {
    for status in [
        TaskStatus::Expected,
        TaskStatus::Received,
        TaskStatus::Downloading,
    ] {
        let before = now.saturating_add(Duration::from_secs(3_600));
        if !tasks
            .list_open(status, before, 1, None)
            .await?
            .tasks
            .is_empty()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::notify::delivery::DeliveryStatus;
    use crate::domain::notify::endpoint::{EndpointSpec, EndpointUrlPolicy};
    use crate::domain::notify::event::{EventData, EventType};
    use crate::domain::task::DEFAULT_TASK_TTL;
    use crate::notifications::memory::{
        MemoryDeliveries, MemoryEndpoints, MemoryQueue, MemoryThresholds,
    };
    use crate::store::memory::MemoryTaskStore;
    use crate::test_support::envelope;

    const T0: Timestamp = Timestamp::from_secs(1_795_000_000);

    #[derive(Default)]
    struct World {
        notifier: Notifier<MemoryEndpoints, MemoryDeliveries, MemoryThresholds, MemoryQueue>,
        tasks: MemoryTaskStore,
    }

    impl<E: Default, D: Default, T: Default, Q: Default> Default for Notifier<E, D, T, Q> {
        fn default() -> Self {
            Self {
                endpoints: E::default(),
                deliveries: D::default(),
                thresholds: T::default(),
                queue: Q::default(),
            }
        }
    }

    impl std::ops::Deref for World {
        type Target = Notifier<MemoryEndpoints, MemoryDeliveries, MemoryThresholds, MemoryQueue>;
        fn deref(&self) -> &Self::Target {
            &self.notifier
        }
    }

    fn endpoint(seed: u128, spec: serde_json::Value) -> Endpoint {
        let spec: EndpointSpec = serde_json::from_value(spec).unwrap();
        let policy = EndpointUrlPolicy::default();
        Endpoint::new(
            EndpointId::generate(seed),
            spec.validate(&policy).unwrap(),
            None,
            None,
            T0,
        )
    }

    fn outcome(id: &str, stored: bool, revision: u64) -> Task {
        let url = stored.then_some("https://cdn.example/v.mp4");
        let mut task = Task::from_callback(
            &envelope(id, if stored { 200 } else { 451 }, url, "m"),
            T0,
            DEFAULT_TASK_TTL,
        );
        task.revision = revision;
        if stored {
            return crate::test_support::stored_task(id, revision, T0);
        }
        task
    }

    async fn notify(w: &World, task: &Task, now: Timestamp) -> Notified {
        w.outcome(task, now).await.unwrap()
    }

    #[tokio::test]
    async fn each_endpoint_gets_one_delivery_and_a_redelivered_record_creates_nothing() {
        let w = World::default();
        w.endpoints.insert(endpoint(
            1,
            serde_json::json!({"kind": "webhook", "url": "https://a.example/h"}),
        ));
        w.endpoints.insert(endpoint(
            2,
            serde_json::json!({"kind": "webhook", "url": "https://b.example/h", "filter": {"statuses": ["failed"]}}),
        ));
        let stored = outcome("t-1", true, 3);
        assert_eq!(
            notify(&w, &stored, T0).await,
            Notified {
                created: 1,
                filtered: 1,
                counted: 0
            }
        );
        assert_eq!(
            notify(&w, &stored, T0).await,
            Notified {
                created: 0,
                filtered: 1,
                counted: 0
            }
        );
        assert_eq!(w.deliveries.all().len(), 1);
        assert_eq!(w.queue.jobs().len(), 1, "queued once");
        // failed, then stored (a revive): two events, two deliveries where both match.
        let failed = outcome("t-2", false, 1);
        let revived = outcome("t-2", true, 4);
        assert_eq!(notify(&w, &failed, T0).await.created, 2);
        assert_eq!(notify(&w, &revived, T0).await.created, 1);
        // Non-outcomes are not events.
        let received = Task::from_callback(
            &envelope("t-3", 200, Some("https://cdn.example/v.mp4"), "m"),
            T0,
            DEFAULT_TASK_TTL,
        );
        assert_eq!(notify(&w, &received, T0).await, Notified::default());
    }

    #[tokio::test]
    async fn a_disabled_endpoint_records_skipped_deliveries_and_queues_none() {
        let w = World::default();
        let mut ep = endpoint(
            1,
            serde_json::json!({"kind": "webhook", "url": "https://a.example/h"}),
        );
        ep.enabled = false;
        w.endpoints.insert(ep);
        assert_eq!(notify(&w, &outcome("t-1", true, 3), T0).await.created, 1);
        assert_eq!(
            w.deliveries.all()[0].status,
            DeliveryStatus::SkippedDisabled
        );
        assert!(w.queue.jobs().is_empty());
    }

    #[tokio::test]
    async fn batches_of_three_and_a_flush_after_max_wait() {
        let w = World::default();
        let ep = endpoint(
            1,
            serde_json::json!({"kind": "webhook", "url": "https://a.example/h",
            "threshold": {"mode": "batch", "n": 3, "max_wait_secs": 600}}),
        );
        let id = ep.id.clone();
        w.endpoints.insert(ep);
        for i in 0..7 {
            notify(&w, &outcome(&format!("t-{i}"), true, 3), T0).await;
        }
        let batches: Vec<_> = w
            .deliveries
            .all()
            .into_iter()
            .filter_map(|d| match d.event.data {
                EventData::Batch { count, partial, .. } => Some((count, partial)),
                _ => None,
            })
            .collect();
        assert_eq!(batches, [(3, false), (3, false)]);
        // Three flush checks were queued, one per batch's first member, each 600 s out.
        let flushes: Vec<_> = w
            .queue
            .jobs()
            .into_iter()
            .filter(|(j, _)| matches!(j, Job::FlushBatch { .. }))
            .collect();
        assert_eq!(flushes.len(), 3);
        assert!(flushes.iter().all(|(_, d)| *d == Duration::from_secs(600)));
        // The flushes of the full batches do nothing; the last one's sends it short.
        let later = T0.saturating_add(Duration::from_secs(600));
        let flush = |seq| w.flush_batch(&id, seq, later);
        assert_eq!(flush(0).await.unwrap(), 0);
        assert_eq!(flush(2).await.unwrap(), 1);
        assert_eq!(flush(2).await.unwrap(), 0);
        let partial: Vec<_> = w
            .deliveries
            .all()
            .into_iter()
            .filter(|d| {
                matches!(
                    d.event.data,
                    EventData::Batch {
                        partial: true,
                        count: 1,
                        ..
                    }
                )
            })
            .collect();
        assert_eq!(partial.len(), 1);
        // A completion after the flush starts the next batch instead of joining the sent one.
        notify(&w, &outcome("t-late", true, 3), later).await;
        assert_eq!(w.thresholds.batch(&id, 2).unwrap().members.len(), 1);
        assert_eq!(w.thresholds.batch(&id, 3).unwrap().members.len(), 1);
        assert_eq!(
            w.thresholds.completions(&id),
            10,
            "one skip, not one per number"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_completions_batch_exactly() {
        let w = Arc::new(World::default());
        let ep = endpoint(
            1,
            serde_json::json!({"kind": "webhook", "url": "https://a.example/h",
            "threshold": {"mode": "batch", "n": 10, "max_wait_secs": 600}}),
        );
        w.endpoints.insert(ep);
        let runs: Vec<_> = (0..200)
            .map(|i| {
                let w = Arc::clone(&w);
                tokio::spawn(
                    async move { notify(&w, &outcome(&format!("c-{i}"), true, 3), T0).await },
                )
            })
            .collect();
        for r in runs {
            r.await.unwrap();
        }
        let mut members: Vec<String> = Vec::new();
        let mut count = 0;
        for d in w.deliveries.all() {
            if let EventData::Batch {
                task_ids, partial, ..
            } = d.event.data
            {
                assert!(!partial);
                assert_eq!(task_ids.len(), 10);
                members.extend(task_ids.iter().map(|t| t.to_string()));
                count += 1;
            }
        }
        members.sort();
        members.dedup();
        assert_eq!((count, members.len()), (20, 200));
    }

    #[tokio::test]
    async fn one_drain_event_per_busy_period() {
        let w = World::default();
        let ep = endpoint(
            1,
            serde_json::json!({"kind": "webhook", "url": "https://a.example/h",
            "threshold": {"mode": "drain", "quiet_secs": 60}}),
        );
        let id = ep.id.clone();
        w.endpoints.insert(ep);
        let check = |now| w.drain_check(&w.tasks, &id, now);
        // A task still open keeps the period busy.
        let open = Task::from_callback(
            &envelope("open-1", 200, Some("https://cdn.example/v.mp4"), "m"),
            T0,
            DEFAULT_TASK_TTL,
        );
        w.tasks.create(&open).await.unwrap();
        notify(&w, &outcome("t-1", true, 3), T0).await;
        notify(
            &w,
            &outcome("t-2", false, 1),
            T0.saturating_add(Duration::from_secs(30)),
        )
        .await;
        assert_eq!(w.queue.jobs().len(), 2);
        assert_eq!(
            check(T0.saturating_add(Duration::from_secs(60)))
                .await
                .unwrap(),
            0,
            "not quiet"
        );
        let quiet = T0.saturating_add(Duration::from_secs(90));
        assert_eq!(check(quiet).await.unwrap(), 0, "a task is open");
        // It ends: one event, however many checks run.
        let mut done = open.clone();
        done.status = TaskStatus::Failed;
        w.tasks.put_item(&done.task_id, done.to_item().unwrap());
        assert_eq!(check(quiet).await.unwrap(), 1);
        assert_eq!(check(quiet).await.unwrap(), 0);
        let drained: Vec<_> = w
            .deliveries
            .all()
            .into_iter()
            .filter(|d| d.event.event_type == EventType::QueueDrained)
            .collect();
        assert_eq!(drained.len(), 1);
        assert!(matches!(
            drained[0].event.data,
            EventData::Drained { completed: 2, .. }
        ));
        // The next busy period gets its own event.
        let t2 = quiet.saturating_add(Duration::from_secs(600));
        notify(&w, &outcome("t-3", true, 3), t2).await;
        assert_eq!(
            check(t2.saturating_add(Duration::from_secs(60)))
                .await
                .unwrap(),
            1
        );
    }
}

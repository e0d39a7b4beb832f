//! The notification adapters against the local servers: the job queue on SQS (moto), and
//! the stores' DynamoDB adapter against the local DynamoDB server, with the
//! same expectations as the memory fakes the use cases are unit-tested on: conditional
//! creates and saves, atomic counters, first-writer-wins disable and batch close, rate
//! windows, and every event type round-tripping through an item. Then the notify and
//! deliver use cases run on the adapter, with concurrent completions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use integration_tests::Stack;
use shared::domain::notify::delivery::{Delivery, DeliveryStatus};
use shared::domain::notify::endpoint::{EndpointId, EndpointSpec, EndpointUrlPolicy};
use shared::domain::notify::event::EventData;
use shared::domain::notify::format::samples;
use shared::domain::notify::health::{Health, HealthChange, HealthPolicy};
use shared::domain::notify::signing::{DEFAULT_ROTATION_OVERLAP, SigningKeys};
use shared::domain::secret::Secret;
use shared::notifications::dynamodb::DynamoNotifications;
use shared::notifications::memory::MemoryQueue;
use shared::notifications::sqs::SqsJobQueue;
use shared::notifications::vault::{EndpointSecrets, EndpointVault};
use shared::notifications::{
    Arrival, DeliveryStore, Endpoint, EndpointAdmin, EndpointStore, Job, JobQueue, QueuedJob,
    Saved, ThresholdStore,
};
use shared::sender::scripted::ScriptedSender;
use shared::usecase::deliver::{Courier, DeliverSettings, Delivered};
use shared::usecase::notify::Notifier;
use shared::{Task, TaskId, Timestamp};

fn fresh_id() -> EndpointId {
    EndpointId::generate(fastrand::u128(..))
}

fn endpoint(spec: serde_json::Value) -> Endpoint {
    let spec: EndpointSpec = serde_json::from_value(spec).unwrap();
    let settings = spec.validate(&EndpointUrlPolicy::local()).unwrap();
    Endpoint::new(fresh_id(), settings, None, None, Timestamp::now())
}

fn stored_task(id: &str) -> Task {
    shared::test_support::stored_task(id, 3, Timestamp::now())
}

#[tokio::test]
async fn deliveries_are_created_once_saved_by_revision_and_every_event_round_trips() {
    let store = Stack::load().notifications();
    let ep = fresh_id();
    let now = Timestamp::now();
    for event in samples::all() {
        let d = Delivery::new(event, ep.clone(), true, now);
        assert!(store.create(&d).await.unwrap());
        assert!(
            !store.create(&d).await.unwrap(),
            "a redelivered record creates nothing"
        );
        assert_eq!(
            DeliveryStore::get(&store, &d.id).await.unwrap(),
            Some(d.clone())
        );
    }
    let d = Delivery::new(samples::all().remove(0), ep.clone(), true, now);
    let d = Delivery {
        id: shared::domain::notify::delivery::DeliveryId::of(
            &shared::domain::notify::event::EventId::derive(&["save", ep.as_str()]),
            &ep,
        ),
        ..d
    };
    store.create(&d).await.unwrap();
    let next = Delivery {
        status: DeliveryStatus::Succeeded,
        revision: d.revision + 1,
        ..d.clone()
    };
    assert_eq!(store.save(&next, d.revision).await.unwrap(), Saved::Done);
    assert_eq!(
        store.save(&next, d.revision).await.unwrap(),
        Saved::Conflict,
        "stale revision"
    );
    assert_eq!(
        DeliveryStore::get(&store, &d.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        DeliveryStatus::Succeeded
    );
}

#[tokio::test]
async fn endpoints_keep_their_secrets_count_failures_disable_once_and_limit_rates() {
    let stack = Stack::load();
    let store = stack.endpoints();
    let mut e = endpoint(serde_json::json!({"kind": "webhook", "url": "http://127.0.0.1:9/hook"}));
    let now = Timestamp::now();
    e.signing = Some(
        SigningKeys::new(Secret::new(b"old-key-0123456789abcdef".to_vec())).rotated(
            Secret::new(b"new-key-0123456789abcdef".to_vec()),
            now,
            DEFAULT_ROTATION_OVERLAP,
        ),
    );
    assert!(store.create_endpoint(&e).await.unwrap());
    assert!(!store.create_endpoint(&e).await.unwrap());
    let back = EndpointStore::get(&store, &e.id).await.unwrap().unwrap();
    assert_eq!(back.settings, e.settings);
    let keys = back.signing.unwrap();
    assert_eq!(keys.current.expose(), b"new-key-0123456789abcdef");
    assert_eq!(
        keys.previous.as_ref().map(|(k, _)| k.expose().to_vec()),
        Some(b"old-key-0123456789abcdef".to_vec())
    );
    assert!(store.list().await.unwrap().iter().any(|x| x.id == e.id));

    // The keys are in Secrets Manager under the stack's prefix, and nowhere in the table.
    let item = stack.raw_endpoint_item(&e.id).await.unwrap();
    let text = format!("{item:?}");
    for attribute in ["signing_key", "signing_previous", "feishu_secret"] {
        assert!(!item.contains_key(attribute), "{attribute} in the table");
    }
    assert!(
        !text.contains("new-key") && !text.contains("bmV3LWtleS"),
        "{text}"
    );
    let name = stack.endpoint_vault().name(&e.id);
    assert!(name.starts_with(stack.var("ENDPOINT_SECRETS_PREFIX")));
    let stored = stack
        .secrets_manager()
        .get_secret_value()
        .secret_id(&name)
        .send()
        .await
        .unwrap()
        .secret_string
        .unwrap();
    let secrets = EndpointSecrets::from_json(&stored).unwrap();
    assert_eq!(
        secrets,
        EndpointSecrets::of(&back_with(&store, &e.id).await)
    );

    let t0 = Timestamp::from_secs(1_795_000_000);
    let mut health = Health::default();
    for i in 0..3 {
        let at = t0.saturating_add(Duration::from_secs(i * 60));
        health = store
            .record_health(&e.id, HealthChange::CountFailure { at })
            .await
            .unwrap();
    }
    assert_eq!(
        health,
        Health {
            consecutive_failures: 3,
            failing_since: Some(t0)
        }
    );
    assert_eq!(
        store
            .record_health(&e.id, HealthChange::Reset)
            .await
            .unwrap(),
        Health::default()
    );

    assert!(store.disable(&e.id, "gone", now).await.unwrap());
    assert!(!store.disable(&e.id, "gone", now).await.unwrap(), "once");
    let disabled = EndpointStore::get(&store, &e.id).await.unwrap().unwrap();
    assert!(!disabled.enabled);
    assert_eq!(disabled.disabled.map(|(_, r)| r).as_deref(), Some("gone"));

    let mut slots = Vec::new();
    for _ in 0..3 {
        slots.push(store.take_send_slot(&e.id, 7, 2).await.unwrap());
    }
    assert_eq!(slots, [true, true, false], "two per window");
    assert!(
        store.take_send_slot(&e.id, 8, 2).await.unwrap(),
        "a new window"
    );

    // A delete takes the secret with the endpoint, and a second one is still clean.
    assert!(store.delete_endpoint(&e.id).await.unwrap());
    assert!(stack.endpoint_vault().read(&e.id).await.unwrap().is_none());
    assert!(!store.delete_endpoint(&e.id).await.unwrap());
}

async fn back_with(store: &impl EndpointStore, id: &EndpointId) -> Endpoint {
    EndpointStore::get(store, id).await.unwrap().unwrap()
}

#[tokio::test]
async fn threshold_counters_are_atomic_and_conditional() {
    let store = Arc::new(Stack::load().notifications());
    let ep = fresh_id();
    let runs: Vec<_> = (0..30)
        .map(|_| {
            let store = Arc::clone(&store);
            let ep = ep.clone();
            tokio::spawn(async move { store.next_completion(&ep).await.unwrap() })
        })
        .collect();
    let mut seen = BTreeSet::new();
    for r in runs {
        seen.insert(r.await.unwrap());
    }
    assert_eq!(
        seen,
        (1..=30).collect(),
        "30 concurrent adds, 30 distinct numbers"
    );
    store.skip_past(&ep, 50).await.unwrap();
    store.skip_past(&ep, 40).await.unwrap(); // never moves it back
    assert_eq!(store.next_completion(&ep).await.unwrap(), 51);

    let now = Timestamp::now();
    let a = TaskId::parse("batch-a").unwrap();
    let b = TaskId::parse("batch-b").unwrap();
    store.join_batch(&ep, 0, &a, now).await.unwrap().unwrap();
    let batch = store.join_batch(&ep, 0, &b, now).await.unwrap().unwrap();
    assert_eq!(batch.members, [a.clone(), b.clone()]);
    assert_eq!(batch.first_at, Some(now));
    assert!(
        store
            .close_batch(&ep, 0, true)
            .await
            .unwrap()
            .is_some_and(|b| b.flushed)
    );
    assert_eq!(
        store.close_batch(&ep, 0, false).await.unwrap(),
        None,
        "closed once"
    );
    assert_eq!(
        store.join_batch(&ep, 0, &a, now).await.unwrap(),
        None,
        "a closed batch takes no one"
    );
    assert_eq!(
        store.close_batch(&ep, 9, false).await.unwrap(),
        None,
        "no such batch"
    );

    let t0 = Timestamp::from_secs(1_795_000_000);
    store.mark_busy(&ep, t0).await.unwrap();
    let busy = store
        .mark_busy(&ep, t0.saturating_add(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!((busy.since, busy.completed), (Some(t0), 2));
    assert!(
        !store
            .end_busy(&ep, t0.saturating_add(Duration::from_secs(1)))
            .await
            .unwrap()
    );
    assert!(store.end_busy(&ep, t0).await.unwrap());
    assert_eq!(store.busy(&ep).await.unwrap().since, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_completions_make_exact_batches_through_dynamodb() {
    let stack = Stack::load();
    let store = stack.notifications();
    let batch = endpoint(
        serde_json::json!({"kind": "webhook", "url": "http://127.0.0.1:9/hook",
        "threshold": {"mode": "batch", "n": 5, "max_wait_secs": 600}}),
    );
    store.create_endpoint(&batch).await.unwrap();
    let notifier = Arc::new(Notifier {
        endpoints: OnlyEndpoint(store.clone(), batch.id.clone()),
        deliveries: store.clone(),
        thresholds: store.clone(),
        queue: MemoryQueue::default(),
    });
    let prefix = format!("conc-{}", fastrand::u32(..));
    let runs: Vec<_> = (0..20)
        .map(|i| {
            let notifier = Arc::clone(&notifier);
            let task = stored_task(&format!("{prefix}-{i}"));
            tokio::spawn(async move { notifier.outcome(&task, Timestamp::now()).await.unwrap() })
        })
        .collect();
    let created: usize = {
        let mut total = 0;
        for r in runs {
            total += r.await.unwrap().created;
        }
        total
    };
    assert_eq!(created, 4, "20 completions, batches of 5");
    let mut members = BTreeSet::new();
    for (job, _) in notifier.queue.jobs() {
        if let shared::notifications::Job::Deliver { delivery_id } = job {
            let d = DeliveryStore::get(&store, &delivery_id)
                .await
                .unwrap()
                .unwrap();
            let EventData::Batch {
                task_ids, partial, ..
            } = d.event.data
            else {
                panic!("a batch event")
            };
            assert!(!partial);
            assert_eq!(task_ids.len(), 5);
            members.extend(task_ids);
        }
    }
    assert_eq!(members.len(), 20, "every task in exactly one batch");
}

/// The adapter's endpoint store seen through one endpoint: the table is shared by every
/// test run, and `list` must not fan out to endpoints other runs made.
#[derive(Debug, Clone)]
struct OnlyEndpoint(DynamoNotifications, EndpointId);

impl EndpointStore for OnlyEndpoint {
    async fn list(&self) -> Result<Vec<Endpoint>, shared::notifications::NotifyStoreError> {
        Ok(self
            .0
            .list()
            .await?
            .into_iter()
            .filter(|e| e.id == self.1)
            .collect())
    }
    async fn get(
        &self,
        id: &EndpointId,
    ) -> Result<Option<Endpoint>, shared::notifications::NotifyStoreError> {
        EndpointStore::get(&self.0, id).await
    }
    async fn record_health(
        &self,
        id: &EndpointId,
        change: HealthChange,
    ) -> Result<Health, shared::notifications::NotifyStoreError> {
        self.0.record_health(id, change).await
    }
    async fn disable(
        &self,
        id: &EndpointId,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, shared::notifications::NotifyStoreError> {
        self.0.disable(id, reason, now).await
    }
    async fn take_send_slot(
        &self,
        id: &EndpointId,
        window: i64,
        max: u32,
    ) -> Result<bool, shared::notifications::NotifyStoreError> {
        self.0.take_send_slot(id, window, max).await
    }
}

#[tokio::test]
async fn a_delivery_runs_through_the_adapter_and_a_410_disables_its_endpoint() {
    let stack = Stack::load();
    let store = stack.notifications();
    let endpoints = Arc::new(stack.endpoints());
    let mut e = endpoint(serde_json::json!({"kind": "webhook", "url": "http://127.0.0.1:9/hook"}));
    e.signing = Some(SigningKeys::new(Secret::new(
        b"0123456789abcdef0123456789abcdef".to_vec(),
    )));
    endpoints.create_endpoint(&e).await.unwrap();
    let now = Timestamp::now();
    let d = Delivery::new(samples::all().remove(1), e.id.clone(), true, now);
    store.create(&d).await.unwrap();
    let sender = ScriptedSender::default();
    sender.answer(503, "busy").answer(410, "gone");
    let courier = Courier {
        deliveries: store.clone(),
        endpoints: Arc::clone(&endpoints),
        sender,
        queue: MemoryQueue::default(),
        settings: DeliverSettings::new(HealthPolicy::default()),
    };
    let first = courier.deliver(&d.id, now, 0.5).await.unwrap();
    assert_eq!(first, Delivered::RetryIn(Duration::from_secs(5)));
    let later = now.saturating_add(Duration::from_secs(5));
    assert_eq!(
        courier.deliver(&d.id, later, 0.5).await.unwrap(),
        Delivered::Dead
    );
    let after = DeliveryStore::get(&store, &d.id).await.unwrap().unwrap();
    assert_eq!(
        (after.status, after.attempt_count, after.attempts.len()),
        (DeliveryStatus::Dead, 2, 2)
    );
    assert_eq!(after.attempts[0].response_body, "busy");
    let endpoint = EndpointStore::get(&endpoints, &e.id)
        .await
        .unwrap()
        .unwrap();
    assert!(!endpoint.enabled);
    assert_eq!(
        endpoint.health.consecutive_failures, 1,
        "the 503 counted; the 410 disabled"
    );
    // Both attempts were signed.
    assert!(
        courier
            .sender
            .requests()
            .iter()
            .all(|r| r.headers.iter().any(|(n, _)| *n == "webhook-signature"))
    );
}

#[tokio::test]
async fn jobs_travel_through_the_queue_with_their_not_before() {
    let stack = Stack::load();
    let sqs = stack.sqs();
    // A queue of this test's own, so the stack's consumers (later) never see it.
    let name = format!("jobs-test-{}", fastrand::u32(..));
    let url = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue = SqsJobQueue::new(sqs.clone(), url.clone());
    let job = Job::DrainCheck {
        endpoint_id: fresh_id(),
    };
    let before = Timestamp::now();
    queue.enqueue(&job, Duration::ZERO).await.unwrap();
    queue
        .enqueue(&job, Duration::from_secs(3_600))
        .await
        .unwrap();
    let got = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    // The hour-long wait is capped at SQS's 15 minutes: only the immediate job is visible.
    assert_eq!(got.len(), 1, "{got:?}");
    let queued: QueuedJob = serde_json::from_str(got[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(queued.job, job);
    assert!(queued.not_before >= before && queued.not_before <= Timestamp::now());
    assert_eq!(queued.arrival(Timestamp::now()), Arrival::Run(job));
    sqs.delete_queue().queue_url(&url).send().await.unwrap();
}

//! The operator's notification actions, behind the IAM-authorised routes: endpoints
//! (create with a signing secret shown once, update, enable, disable, rotate the secret,
//! delete), a test send, and the replays (`retry` one delivery, `recover` an endpoint's
//! failed or skipped deliveries over a window, re-notify a task's outcome).
//!
//! A replay keeps the event id (receivers deduplicate on it) and starts the schedule
//! over; the body gets a new timestamp and signature when it is sent. Every replay is a
//! revision-checked save followed by a queued job, so a replay racing an attempt loses
//! cleanly (409) instead of double-sending.

use std::time::Duration;

use tracing::info;

use crate::domain::clock::Timestamp;
use crate::domain::notify::delivery::{Delivery, DeliveryId, DeliveryStatus};
use crate::domain::notify::endpoint::{
    EndpointError, EndpointId, EndpointSpec, EndpointUrlPolicy, Threshold,
};
use crate::domain::notify::event::Event;
use crate::domain::notify::signing::{DEFAULT_ROTATION_OVERLAP, SigningKeys, SigningScheme};
use crate::domain::secret::Secret;
use crate::domain::task::Task;
use crate::notifications::{
    DeliveryLog, DeliveryPage, DeliveryQuery, DeliveryStore, Endpoint, EndpointAdmin,
    EndpointStore, Job, JobQueue, NotifyStoreError, QueueError, Saved,
};
use crate::sender::Sender;
use crate::usecase::deliver::{Courier, DeliverError, Delivered};

/// The longest window one `recover` may cover.
pub const RECOVER_MAX_WINDOW: Duration = Duration::from_secs(14 * 24 * 3_600);
/// The most deliveries one `recover` looks at (the answer says where to go on).
pub const RECOVER_MAX_DELIVERIES: usize = 10_000;
/// The most deliveries one page of `GET /endpoints/{id}/deliveries` holds.
pub const PAGE_MAX: usize = 100;
/// Signing keys are this many random bytes (Standard Webhooks allows 24–64).
const KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum OperateError {
    #[error("no endpoint with this id")]
    NoEndpoint,
    #[error("no delivery with this id")]
    NoDelivery,
    #[error("endpoint refused: {0}")]
    InvalidEndpoint(#[from] EndpointError),
    #[error("{0}")]
    InvalidRequest(String),
    /// The task has no outcome yet (or cannot be read as one): nothing to notify.
    #[error("the task is not stored or failed yet")]
    NoOutcome,
    /// A test send to a disabled endpoint: enable it first (a test never sends behind the
    /// flag's back).
    #[error("the endpoint is disabled; enable it to test it")]
    Disabled,
    /// Changed by someone else between the read and the write: try again.
    #[error("changed meanwhile; try again")]
    Conflict,
    #[error(transparent)]
    Store(#[from] NotifyStoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Deliver(#[from] DeliverError),
    #[error("no random bytes: {0}")]
    Random(String),
}

/// A new endpoint and, for HMAC-signed kinds, its `whsec_` secret: shown this once.
#[derive(Debug)]
pub struct CreatedEndpoint {
    pub endpoint: Endpoint,
    pub secret: Option<String>,
}

/// What a `recover` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Recovered {
    /// Deliveries in the window looked at.
    pub scanned: usize,
    /// Dead or skipped deliveries sent again.
    pub replayed: usize,
    /// When more than [`RECOVER_MAX_DELIVERIES`] were in the window: call again with
    /// this as `until` for the older ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_until: Option<Timestamp>,
}

/// The operator use case: the deliver use case's ports (a test is one real attempt) and
/// where endpoint URLs may point.
#[derive(Debug)]
pub struct Operator<D, E, S, Q> {
    pub courier: Courier<D, E, S, Q>,
    pub url_policy: EndpointUrlPolicy,
}

fn random_bytes<const N: usize>() -> Result<[u8; N], OperateError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| OperateError::Random(e.to_string()))?;
    Ok(out)
}

/// The secret an operator is shown once: the `whsec_` of HMAC keys. Ed25519 keys have
/// none to show (their public keys are in every view of the endpoint).
fn shown_once(keys: &SigningKeys) -> Option<String> {
    (keys.scheme == SigningScheme::HmacSha256).then(|| keys.shareable())
}

fn random_key() -> Result<Secret, OperateError> {
    Ok(Secret::new(random_bytes::<KEY_BYTES>()?.to_vec()))
}

impl<D, E, S, Q> Operator<D, E, S, Q>
where
    D: DeliveryStore + DeliveryLog,
    E: EndpointStore + EndpointAdmin,
    S: Sender,
    Q: JobQueue,
{
    fn deliveries(&self) -> &D {
        &self.courier.deliveries
    }

    fn endpoints(&self) -> &E {
        &self.courier.endpoints
    }

    pub async fn endpoint(&self, id: &EndpointId) -> Result<Endpoint, OperateError> {
        self.endpoints()
            .get(id)
            .await?
            .ok_or(OperateError::NoEndpoint)
    }

    pub async fn list(&self) -> Result<Vec<Endpoint>, OperateError> {
        Ok(self.endpoints().list().await?)
    }

    /// A new endpoint from `spec`; signed kinds get a fresh key.
    pub async fn create(
        &self,
        spec: EndpointSpec,
        now: Timestamp,
    ) -> Result<CreatedEndpoint, OperateError> {
        let feishu = spec
            .feishu_secret
            .clone()
            .map(|s| Secret::new(s.into_bytes()));
        let settings = spec.validate(&self.url_policy)?;
        let signing = match settings.kind.is_signed() {
            true => Some(SigningKeys::with_scheme(settings.signing, random_key()?)),
            false => None,
        };
        let id = EndpointId::generate(u128::from_le_bytes(random_bytes::<16>()?));
        let endpoint = Endpoint::new(id, settings, signing, feishu, now);
        if !self.endpoints().create_endpoint(&endpoint).await? {
            return Err(OperateError::Conflict);
        }
        info!(outcome = "endpoint_created", endpoint_id = %endpoint.id,
              kind = endpoint.settings.kind.as_str(), "endpoint created");
        let secret = endpoint.signing.as_ref().and_then(shown_once);
        Ok(CreatedEndpoint { endpoint, secret })
    }

    /// Replaces an endpoint's settings with `spec` (its kind cannot change; a Feishu
    /// secret left out is kept).
    pub async fn update(
        &self,
        id: &EndpointId,
        spec: EndpointSpec,
        now: Timestamp,
    ) -> Result<Endpoint, OperateError> {
        let current = self.endpoint(id).await?;
        let feishu = spec
            .feishu_secret
            .clone()
            .map(|s| Secret::new(s.into_bytes()));
        let settings = spec.validate(&self.url_policy)?;
        if settings.kind != current.settings.kind {
            return Err(OperateError::InvalidRequest(format!(
                "kind cannot change (it is {}): create another endpoint",
                current.settings.kind.as_str()
            )));
        }
        let endpoint = Endpoint {
            settings,
            feishu_secret: feishu.or(current.feishu_secret.clone()),
            updated_at: now,
            ..current
        };
        if !self.endpoints().update_endpoint(&endpoint).await? {
            return Err(OperateError::NoEndpoint);
        }
        info!(outcome = "endpoint_updated", endpoint_id = %id, "endpoint updated");
        Ok(endpoint)
    }

    /// A new signing key; the old one keeps signing for a day (receivers verify with
    /// either while they switch). The new `whsec_` secret is shown this once.
    pub async fn rotate_secret(
        &self,
        id: &EndpointId,
        now: Timestamp,
    ) -> Result<CreatedEndpoint, OperateError> {
        let current = self.endpoint(id).await?;
        let Some(keys) = current.signing.clone() else {
            return Err(OperateError::InvalidRequest(format!(
                "{} endpoints are not signed",
                current.settings.kind.as_str()
            )));
        };
        let keys = keys.rotated(random_key()?, now, DEFAULT_ROTATION_OVERLAP);
        let secret = shown_once(&keys);
        let endpoint = Endpoint {
            signing: Some(keys),
            updated_at: now,
            ..current
        };
        if !self.endpoints().update_endpoint(&endpoint).await? {
            return Err(OperateError::NoEndpoint);
        }
        info!(outcome = "secret_rotated", endpoint_id = %id, "signing secret rotated");
        Ok(CreatedEndpoint { endpoint, secret })
    }

    /// Enables (health reset) or disables (reason `operator`) an endpoint.
    pub async fn set_enabled(
        &self,
        id: &EndpointId,
        enabled: bool,
        now: Timestamp,
    ) -> Result<Endpoint, OperateError> {
        let found = if enabled {
            self.endpoints().enable(id, now).await?
        } else {
            // Already disabled is fine: the answer shows the endpoint as it is.
            self.endpoints().disable(id, "operator", now).await?;
            true
        };
        if !found {
            return Err(OperateError::NoEndpoint);
        }
        info!(outcome = if enabled { "endpoint_enabled" } else { "endpoint_disabled" },
              endpoint_id = %id, "endpoint switched");
        self.endpoint(id).await
    }

    pub async fn delete(&self, id: &EndpointId) -> Result<(), OperateError> {
        if !self.endpoints().delete_endpoint(id).await? {
            return Err(OperateError::NoEndpoint);
        }
        info!(outcome = "endpoint_deleted", endpoint_id = %id, "endpoint deleted");
        Ok(())
    }

    /// Sends a `test` event now and returns its delivery with the attempt; a failed test
    /// goes on with the endpoint's schedule like any delivery.
    pub async fn test(
        &self,
        id: &EndpointId,
        now: Timestamp,
    ) -> Result<(Delivery, Delivered), OperateError> {
        let endpoint = self.endpoint(id).await?;
        if !endpoint.enabled {
            return Err(OperateError::Disabled);
        }
        let nonce = u64::from_le_bytes(random_bytes::<8>()?);
        let event = Event::test(endpoint.id.as_str(), now, nonce);
        let delivery = Delivery::new(event, endpoint.id.clone(), true, now);
        self.deliveries().create(&delivery).await?;
        let outcome = self.courier.deliver(&delivery.id, now, 0.5).await?;
        self.follow_up(&delivery.id, &outcome).await?;
        let after = self
            .deliveries()
            .get(&delivery.id)
            .await?
            .ok_or(OperateError::NoDelivery)?;
        Ok((after, outcome))
    }

    pub async fn delivery(&self, id: &DeliveryId) -> Result<Delivery, OperateError> {
        self.deliveries()
            .get(id)
            .await?
            .ok_or(OperateError::NoDelivery)
    }

    /// Sends one delivery again, whatever became of it.
    pub async fn retry(&self, id: &DeliveryId, now: Timestamp) -> Result<Delivery, OperateError> {
        let delivery = self.delivery(id).await?;
        let replayed = self.replay(delivery, now).await?;
        info!(outcome = "replayed", delivery_id = %id, "delivery sent again");
        Ok(replayed)
    }

    /// Sends again every dead or skipped delivery of `endpoint` created in
    /// [`since`, `until`] (at most 14 days; at most 10 000 looked at, newest first).
    pub async fn recover(
        &self,
        endpoint: &EndpointId,
        since: Timestamp,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<Recovered, OperateError> {
        if since >= until {
            return Err(OperateError::InvalidRequest(
                "since must be before until".into(),
            ));
        }
        if until.saturating_duration_since(since) > RECOVER_MAX_WINDOW {
            return Err(OperateError::InvalidRequest(
                "the window is longer than 14 days".into(),
            ));
        }
        self.endpoint(endpoint).await?;
        let mut report = Recovered::default();
        let mut query = DeliveryQuery {
            endpoint: endpoint.clone(),
            since: Some(since),
            until: Some(until),
            limit: 500,
            after: None,
        };
        loop {
            let page = self.deliveries().list_for_endpoint(&query).await?;
            for delivery in page.deliveries {
                if report.scanned == RECOVER_MAX_DELIVERIES {
                    report.next_until = Some(delivery.created_at);
                    return Ok(report);
                }
                report.scanned += 1;
                if matches!(
                    delivery.status,
                    DeliveryStatus::Dead | DeliveryStatus::SkippedDisabled
                ) {
                    match self.replay(delivery, now).await {
                        Ok(_) => report.replayed += 1,
                        // Moved on meanwhile (an attempt, another replay): it is in hand.
                        Err(OperateError::Conflict) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
        info!(outcome = "recovered", endpoint_id = %endpoint, scanned = report.scanned,
              replayed = report.replayed, "endpoint recovered");
        Ok(report)
    }

    /// Notifies `task`'s outcome again to every per-event endpoint it matches: an
    /// existing delivery of the event is replayed, a missing one created. (Batch and
    /// drain endpoints count completions, not events: a re-notify does not recount.)
    pub async fn renotify(&self, task: &Task, now: Timestamp) -> Result<usize, OperateError> {
        let event = Event::for_task(task).ok_or(OperateError::NoOutcome)?;
        let mut sent = 0;
        for endpoint in self.endpoints().list().await? {
            if !matches!(endpoint.settings.threshold, Threshold::Each)
                || !endpoint
                    .settings
                    .filter
                    .matches(event.event_type, Some((&task.task_id, task.status)))
            {
                continue;
            }
            let id = DeliveryId::of(&event.id, &endpoint.id);
            match self.deliveries().get(&id).await? {
                Some(existing) => {
                    self.replay(existing, now).await?;
                }
                None => {
                    let delivery =
                        Delivery::new(event.clone(), endpoint.id.clone(), endpoint.enabled, now);
                    if self.deliveries().create(&delivery).await? {
                        self.queue_now(&delivery.id).await?;
                    }
                }
            }
            sent += 1;
        }
        info!(outcome = "renotified", task_id = %task.task_id, endpoints = sent, "outcome notified again");
        Ok(sent)
    }

    /// One page of an endpoint's deliveries, newest first.
    pub async fn deliveries_of(&self, query: &DeliveryQuery) -> Result<DeliveryPage, OperateError> {
        self.endpoint(&query.endpoint).await?;
        Ok(self.deliveries().list_for_endpoint(query).await?)
    }

    async fn replay(&self, delivery: Delivery, now: Timestamp) -> Result<Delivery, OperateError> {
        let revision = delivery.revision;
        let replayed = delivery.replayed(now);
        if self.deliveries().save(&replayed, revision).await? == Saved::Conflict {
            return Err(OperateError::Conflict);
        }
        self.queue_now(&replayed.id).await?;
        Ok(replayed)
    }

    async fn queue_now(&self, id: &DeliveryId) -> Result<(), OperateError> {
        let job = Job::Deliver {
            delivery_id: id.clone(),
        };
        Ok(self.courier.queue.enqueue(&job, Duration::ZERO).await?)
    }

    /// After an inline attempt: the next one goes to the queue, as deliver would queue it.
    async fn follow_up(&self, id: &DeliveryId, outcome: &Delivered) -> Result<(), OperateError> {
        if let Delivered::RetryIn(wait) | Delivered::NotYet(wait) = outcome {
            let job = Job::Deliver {
                delivery_id: id.clone(),
            };
            self.courier.queue.enqueue(&job, *wait).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::notify::classify::TransportError;
    use crate::domain::notify::event::EventType;
    use crate::domain::notify::health::HealthPolicy;
    use crate::domain::task::TaskStatus;
    use crate::domain::verify::{CallbackRequest, Scheme, Verified, Verifier};
    use crate::notifications::memory::{MemoryDeliveries, MemoryEndpoints, MemoryQueue};
    use crate::sender::scripted::ScriptedSender;
    use crate::usecase::deliver::DeliverSettings;

    type World = Operator<Arc<MemoryDeliveries>, Arc<MemoryEndpoints>, ScriptedSender, MemoryQueue>;

    const T0: Timestamp = Timestamp::from_secs(1_795_000_000);

    fn world() -> World {
        Operator {
            courier: Courier {
                deliveries: Arc::default(),
                endpoints: Arc::default(),
                sender: ScriptedSender::default(),
                queue: MemoryQueue::default(),
                settings: DeliverSettings::new(HealthPolicy::default()),
            },
            url_policy: EndpointUrlPolicy::local(),
        }
    }

    /// Whether the first request the sender sent passes `verifier` (as its receiver would check it).
    fn sent_passes(w: &World, verifier: &Verifier) -> bool {
        let sent = &w.courier.sender.requests()[0];
        let headers = crate::test_support::header_map(&sent.headers);
        let request = CallbackRequest {
            tokens: &[],
            headers: &headers,
            body: &sent.body,
        };
        verifier.verify(&request, T0) == Ok(Verified::By(Scheme::StandardWebhooks))
    }

    fn spec(json: serde_json::Value) -> EndpointSpec {
        serde_json::from_value(json).unwrap()
    }

    fn webhook() -> EndpointSpec {
        spec(serde_json::json!({"kind": "webhook", "url": "http://127.0.0.1:9/hook"}))
    }

    fn stored(id: &str) -> Task {
        crate::test_support::stored_task(id, 3, T0)
    }

    #[tokio::test]
    async fn created_endpoints_sign_with_the_secret_shown_once_and_the_test_proves_it() {
        let w = world();
        let created = w.create(webhook(), T0).await.unwrap();
        let secret = created.secret.clone().expect("webhooks are signed");
        assert!(secret.starts_with("whsec_"));
        let chat = w
            .create(
                spec(serde_json::json!({"kind": "slack", "url": "http://127.0.0.1:9/services/x"})),
                T0,
            )
            .await
            .unwrap();
        assert!(chat.secret.is_none(), "chat kinds are not signed");

        w.courier.sender.answer(200, "ok");
        let (delivery, outcome) = w.test(&created.endpoint.id, T0).await.unwrap();
        assert_eq!(outcome, Delivered::Succeeded);
        assert_eq!(delivery.event.event_type, EventType::Test);
        assert_eq!(delivery.attempts.len(), 1);
        // The receiver verifies the test with the secret it was given, using our verifier.
        let key = crate::domain::verify::standard_webhooks::decode_whsec(&secret).unwrap();
        let verifier = Verifier::default().with_standard_webhooks(vec![Secret::new(key)]);
        assert!(sent_passes(&w, &verifier));
    }

    #[tokio::test]
    async fn ed25519_endpoints_show_no_secret_and_their_test_verifies_with_the_public_key() {
        let w = world();
        let created = w
            .create(
                spec(serde_json::json!({"kind": "webhook", "url": "http://127.0.0.1:9/hook", "signing": "ed25519"})),
                T0,
            )
            .await
            .unwrap();
        assert!(created.secret.is_none(), "nothing secret to show");
        let view = crate::notifications::view::EndpointView::of(&created.endpoint, T0);
        assert!(view.signing_secrets.is_empty(), "no masked seed either");
        let public = crate::domain::verify::decode_whpk(&view.public_keys[0]).unwrap();
        w.courier.sender.answer(200, "ok");
        w.test(&created.endpoint.id, T0).await.unwrap();
        let verifier = Verifier::default().with_standard_webhooks_public_keys(vec![public]);
        assert!(sent_passes(&w, &verifier));
        // Rotating keeps the scheme and, again, shows no secret.
        let rotated = w.rotate_secret(&created.endpoint.id, T0).await.unwrap();
        assert!(rotated.secret.is_none());
        assert_eq!(
            rotated.endpoint.signing.unwrap().scheme,
            SigningScheme::Ed25519
        );
    }

    #[tokio::test]
    async fn a_failed_test_follows_the_schedule_and_retry_replays_with_the_same_event() {
        let w = world();
        let id = w.create(webhook(), T0).await.unwrap().endpoint.id;
        w.courier.sender.fail(TransportError::Connect);
        let (delivery, outcome) = w.test(&id, T0).await.unwrap();
        assert!(matches!(outcome, Delivered::RetryIn(_)));
        assert_eq!(
            w.courier.queue.jobs().len(),
            1,
            "the next attempt is queued"
        );
        let later = T0.saturating_add(Duration::from_secs(60));
        let replayed = w.retry(&delivery.id, later).await.unwrap();
        assert_eq!(replayed.event.id, delivery.event.id);
        assert_eq!(replayed.next_attempt_at, Some(later));
        assert_eq!(replayed.attempt_count, 0, "the schedule starts over");
        assert_eq!(replayed.attempts.len(), 1, "the history stays");
        assert_eq!(w.courier.queue.jobs().len(), 2);
        let unknown = DeliveryId::of(&crate::domain::notify::event::EventId::derive(&["x"]), &id);
        assert!(matches!(
            w.retry(&unknown, later).await,
            Err(OperateError::NoDelivery)
        ));
    }

    #[tokio::test]
    async fn recover_replays_dead_and_skipped_in_the_window_only() {
        let w = world();
        let id = w.create(webhook(), T0).await.unwrap().endpoint.id;
        let day = Duration::from_secs(86_400);
        let mut made = Vec::new();
        for (i, status) in [
            DeliveryStatus::Dead,
            DeliveryStatus::SkippedDisabled,
            DeliveryStatus::Succeeded,
            DeliveryStatus::Dead,
        ]
        .into_iter()
        .enumerate()
        {
            let at = T0.saturating_add(day * i as u32);
            let mut task = stored(&format!("t-{i}"));
            task.revision = i as u64 + 10;
            let mut d = Delivery::new(Event::for_task(&task).unwrap(), id.clone(), true, at);
            d.status = status;
            w.courier.deliveries.create(&d).await.unwrap();
            made.push(d);
        }
        // Days 0..=2: the dead and the skipped one; the succeeded one stays; day 3 is outside.
        let report = w
            .recover(
                &id,
                T0,
                T0.saturating_add(day * 2),
                T0.saturating_add(day * 5),
            )
            .await
            .unwrap();
        assert_eq!((report.scanned, report.replayed), (3, 2));
        let status = |i: usize| w.courier.deliveries.snapshot(&made[i].id).unwrap().status;
        assert_eq!(
            [status(0), status(1), status(2), status(3)],
            [
                DeliveryStatus::Pending,
                DeliveryStatus::Pending,
                DeliveryStatus::Succeeded,
                DeliveryStatus::Dead
            ]
        );
        assert_eq!(w.courier.queue.jobs().len(), 2);
        let too_long = w.recover(&id, T0, T0.saturating_add(day * 15), T0).await;
        assert!(matches!(too_long, Err(OperateError::InvalidRequest(_))));
        let backwards = w.recover(&id, T0.saturating_add(day), T0, T0).await;
        assert!(matches!(backwards, Err(OperateError::InvalidRequest(_))));
    }

    #[tokio::test]
    async fn renotify_replays_or_creates_and_keeps_the_event_id() {
        let w = world();
        let a = w.create(webhook(), T0).await.unwrap().endpoint.id;
        let task = stored("t-renotify");
        let event = Event::for_task(&task).unwrap();
        // a has the delivery already (delivered); b is new since.
        let mut old = Delivery::new(event.clone(), a.clone(), true, T0);
        old.status = DeliveryStatus::Succeeded;
        w.courier.deliveries.create(&old).await.unwrap();
        let b = w.create(webhook(), T0).await.unwrap().endpoint.id;
        assert_eq!(w.renotify(&task, T0).await.unwrap(), 2);
        for ep in [&a, &b] {
            let d = w
                .courier
                .deliveries
                .snapshot(&DeliveryId::of(&event.id, ep))
                .unwrap();
            assert_eq!(
                (d.status, &d.event.id),
                (DeliveryStatus::Pending, &event.id)
            );
        }
        assert_eq!(w.courier.queue.jobs().len(), 2);
        let mut open = task.clone();
        open.status = TaskStatus::Downloading;
        open.video = None;
        assert!(matches!(
            w.renotify(&open, T0).await,
            Err(OperateError::NoOutcome)
        ));
    }

    #[tokio::test]
    async fn update_keeps_kind_and_secrets_rotate_with_overlap_and_delete_is_final() {
        let w = world();
        let created = w.create(webhook(), T0).await.unwrap();
        let id = created.endpoint.id.clone();
        let moved = w
            .update(
                &id,
                spec(serde_json::json!({"kind": "webhook", "url": "http://127.0.0.1:9/new", "description": "d"})),
                T0,
            )
            .await
            .unwrap();
        assert_eq!(moved.settings.url, "http://127.0.0.1:9/new");
        assert_eq!(w.endpoint(&id).await.unwrap().settings.description, "d");
        let kind = w
            .update(
                &id,
                spec(serde_json::json!({"kind": "discord", "url": "http://127.0.0.1:9/api/webhooks/1"})),
                T0,
            )
            .await;
        assert!(matches!(kind, Err(OperateError::InvalidRequest(_))));

        let rotated = w.rotate_secret(&id, T0).await.unwrap();
        assert_ne!(rotated.secret, created.secret);
        let keys = w.endpoint(&id).await.unwrap().signing.unwrap();
        assert_eq!(
            keys.signing_at(T0).count(),
            2,
            "old and new sign during the overlap"
        );

        let off = w.set_enabled(&id, false, T0).await.unwrap();
        assert!(!off.enabled);
        assert!(matches!(w.test(&id, T0).await, Err(OperateError::Disabled)));
        let on = w.set_enabled(&id, true, T0).await.unwrap();
        assert!(on.enabled && on.disabled.is_none());

        w.delete(&id).await.unwrap();
        assert!(matches!(w.delete(&id).await, Err(OperateError::NoEndpoint)));
        assert!(matches!(
            w.test(&id, T0).await,
            Err(OperateError::NoEndpoint)
        ));
        let refused = w
            .create(
                spec(serde_json::json!({"kind": "webhook", "url": "ftp://x"})),
                T0,
            )
            .await;
        assert!(matches!(refused, Err(OperateError::InvalidEndpoint(_))));
    }

    #[tokio::test]
    async fn deliveries_page_newest_first_with_a_cursor() {
        let w = world();
        let id = w.create(webhook(), T0).await.unwrap().endpoint.id;
        for i in 0..5u64 {
            let mut task = stored(&format!("p-{i}"));
            task.revision = i + 1;
            let at = T0.saturating_add(Duration::from_secs(i));
            let d = Delivery::new(Event::for_task(&task).unwrap(), id.clone(), true, at);
            w.courier.deliveries.create(&d).await.unwrap();
        }
        let mut query = DeliveryQuery {
            endpoint: id.clone(),
            since: None,
            until: None,
            limit: 2,
            after: None,
        };
        let mut seen = Vec::new();
        loop {
            let page = w.deliveries_of(&query).await.unwrap();
            seen.extend(page.deliveries.iter().map(|d| d.created_at));
            match page.next {
                Some(next) => {
                    let text = next.to_string();
                    query.after = crate::notifications::DeliveryCursor::parse(&text);
                    assert_eq!(query.after.as_ref(), Some(&next), "the cursor round-trips");
                }
                None => break,
            }
        }
        let mut expected = seen.clone();
        expected.sort_by(|a, b| b.cmp(a));
        assert_eq!(seen, expected);
        assert_eq!(seen.len(), 5);
    }
}

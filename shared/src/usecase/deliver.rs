//! The deliver use case: one attempt of one delivery, written against the ports. It is
//! the riskiest piece of notification (a lost update double-sends, a missed disable
//! hammers a dead endpoint), so every decision in it is the domain's and every write is
//! conditional:
//!
//! 1. the delivery must be `pending` and due, its endpoint enabled and inside its rate
//!    limit (otherwise: wait, skip, or nothing to do);
//! 2. the event is rendered for the endpoint's kind, signed (webhook and custom kinds)
//!    with the send's timestamp, sent, and the answer classified;
//! 3. the attempt is claimed before it is sent and recorded after, both with
//!    revision-checked saves: two workers holding the same message never both send,
//!    and nothing is counted twice;
//! 4. the endpoint's health is updated atomically, and the one worker that disables it
//!    creates the `endpoint.disabled` delivery for the fallback endpoint.

use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::domain::clock::Timestamp;
use crate::domain::notify::classify::{Verdict, classify};
use crate::domain::notify::delivery::{
    AfterAttempt, Attempt, Delivery, DeliveryId, DeliveryStatus,
};
use crate::domain::notify::endpoint::EndpointId;
use crate::domain::notify::event::{Event, EventData, EventId, EventType};
use crate::domain::notify::format::{self, Target};
use crate::domain::notify::health::{DisableReason, HealthChange, HealthPolicy};
use crate::notifications::{
    DeliveryStore, EndpointStore, Job, JobQueue, NotifyStoreError, Saved, VideoLinks,
};
use crate::sender::{Outgoing, Sender};

/// What one run of the use case did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    Succeeded,
    /// Failed this time; the next attempt is due after this long.
    RetryIn(Duration),
    /// Failed for good (schedule spent, or a permanent refusal).
    Dead,
    /// Not due yet, or the endpoint's rate window is full: look again after this long.
    NotYet(Duration),
    /// The endpoint is disabled: recorded `skipped_disabled`, for `recover`.
    SkippedDisabled,
    /// Nothing to do: no such delivery, not pending, or another worker got there first.
    Nothing,
}

/// How long a claimed attempt is held: the send's timeout and a margin.
pub const CLAIM_FOR: Duration = Duration::from_secs(60);

/// What the use case needs besides the ports.
#[derive(Debug, Clone)]
pub struct DeliverSettings {
    pub health: HealthPolicy,
    /// Where `endpoint.disabled` goes (never itself).
    pub fallback: Option<EndpointId>,
    /// Video links for endpoints with `include_video_url`, valid this long; without, the
    /// events carry bucket and key only.
    pub links: Option<(Arc<dyn VideoLinks>, Duration)>,
}

impl DeliverSettings {
    /// No fallback, no links.
    pub fn new(health: HealthPolicy) -> Self {
        Self {
            health,
            fallback: None,
            links: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// A store could not answer: the message is retried (nothing was sent, or the send
    /// is recorded on the next run: at-least-once, receivers deduplicate on the id).
    #[error(transparent)]
    Store(#[from] NotifyStoreError),
}

/// The deliver use case's ports and settings.
#[derive(Debug, Clone)]
pub struct Courier<D, E, S, Q> {
    pub deliveries: D,
    pub endpoints: E,
    pub sender: S,
    /// Where the `endpoint.disabled` delivery for the fallback endpoint is queued.
    pub queue: Q,
    pub settings: DeliverSettings,
}

impl<D, E, S, Q> Courier<D, E, S, Q>
where
    D: DeliveryStore,
    E: EndpointStore,
    S: Sender,
    Q: JobQueue,
{
    /// Runs one attempt of delivery `id` at `now`; `unit` is the jitter draw in [0, 1).
    pub async fn deliver(
        &self,
        id: &DeliveryId,
        now: Timestamp,
        unit: f64,
    ) -> Result<Delivered, DeliverError> {
        let (deliveries, endpoints, sender, settings) = (
            &self.deliveries,
            &self.endpoints,
            &self.sender,
            &self.settings,
        );
        let Some(delivery) = deliveries.get(id).await? else {
            return Ok(Delivered::Nothing);
        };
        if delivery.status != DeliveryStatus::Pending {
            return Ok(Delivered::Nothing);
        }
        if let Some(due) = delivery.next_attempt_at.filter(|due| *due > now) {
            return Ok(Delivered::NotYet(due.saturating_duration_since(now)));
        }
        let revision = delivery.revision;
        let Some(endpoint) = endpoints.get(&delivery.endpoint_id).await? else {
            // Deleted since: nothing will ever take this delivery.
            let dead = Delivery {
                status: DeliveryStatus::Dead,
                next_attempt_at: None,
                updated_at: now,
                revision: revision + 1,
                ..delivery
            };
            deliveries.save(&dead, revision).await?;
            warn!(
                outcome = "dead",
                reason = "endpoint_deleted",
                "delivery dropped"
            );
            return Ok(Delivered::Dead);
        };
        if !endpoint.enabled {
            let skipped = Delivery {
                status: DeliveryStatus::SkippedDisabled,
                next_attempt_at: None,
                updated_at: now,
                revision: revision + 1,
                ..delivery
            };
            deliveries.save(&skipped, revision).await?;
            info!(outcome = "skipped_disabled", endpoint_id = %endpoint.id, "endpoint disabled");
            return Ok(Delivered::SkippedDisabled);
        }
        if let Some(limit) = endpoint.settings.rate_limit {
            let (window, next) = limit.window(now);
            if !endpoints
                .take_send_slot(&endpoint.id, window, limit.max)
                .await?
            {
                // Re-delayed, never dropped; the jitter spreads a queue of them over the window.
                let wait = next.saturating_duration_since(now)
                    + Duration::from_millis((unit * 1_000.0) as u64);
                return Ok(Delivered::NotYet(wait));
            }
        }

        // Claim the attempt first: a second worker holding the same message (SQS delivers at
        // least once) finds the revision moved and sends nothing. A worker that dies after
        // claiming leaves the delivery due again once the claim's window has passed.
        let claimed = Delivery {
            next_attempt_at: Some(now.saturating_add(CLAIM_FOR)),
            updated_at: now,
            revision: revision + 1,
            ..delivery
        };
        if deliveries.save(&claimed, revision).await? == Saved::Conflict {
            return Ok(Delivered::Nothing);
        }
        let (delivery, revision) = (claimed, revision + 1);

        let target = Target {
            kind: endpoint.settings.kind,
            feishu_secret: endpoint.feishu_secret.as_ref(),
            template: endpoint.settings.template.as_deref(),
        };
        let schedule = endpoint.settings.retry_schedule();
        let event = self.with_video_link(&endpoint, &delivery.event, now).await;
        let (attempt, verdict) = match format::render(target, &event, now) {
            Err(e) => {
                // Templates are checked when saved; a render failing now is permanent.
                let verdict = Verdict::Permanent {
                    class: crate::domain::notify::classify::FailureClass::TargetError(-2),
                };
                let attempt = Attempt {
                    response_body: e.to_string(),
                    ..Attempt::new(now, 0, Duration::ZERO, b"", &verdict)
                };
                (attempt, verdict)
            }
            Ok(rendered) => {
                let mut url = match url::Url::parse(&endpoint.settings.url) {
                    Ok(u) => u,
                    Err(e) => {
                        return Err(NotifyStoreError::Malformed(format!(
                            "stored endpoint URL: {e}"
                        ))
                        .into());
                    }
                };
                if let Some((k, v)) = rendered.query {
                    url.query_pairs_mut().append_pair(k, v);
                }
                let headers = match (&endpoint.signing, endpoint.settings.kind.is_signed()) {
                    (Some(keys), true) => keys
                        .headers(delivery.event.id.as_str(), now, &rendered.body)
                        .to_vec(),
                    // A signed kind is never sent unsigned. Its secret is missing: still being
                    // written, or removed outside the API; the job is retried.
                    (None, true) => {
                        return Err(NotifyStoreError::Malformed(format!(
                            "endpoint {} has no signing secret",
                            endpoint.id
                        ))
                        .into());
                    }
                    (_, false) => Vec::new(),
                };
                let outgoing = Outgoing {
                    url,
                    headers,
                    body: rendered.body,
                };
                match sender.send(outgoing).await {
                    Ok(sent) => {
                        let verdict = classify(endpoint.settings.kind, &sent.attempted(), now);
                        (
                            Attempt::new(now, sent.status, sent.took, &sent.body, &verdict),
                            verdict,
                        )
                    }
                    Err(failed) => {
                        let verdict = classify(endpoint.settings.kind, &failed.attempted(), now);
                        let attempt = Attempt {
                            response_body: failed.detail.clone(),
                            ..Attempt::new(now, 0, failed.took, b"", &verdict)
                        };
                        (attempt, verdict)
                    }
                }
            }
        };

        let after = delivery.decide(&verdict, &schedule, unit);
        let status_code = attempt.status_code;
        let recorded = delivery.recorded(attempt, &after, now);
        if deliveries.save(&recorded, revision).await? == Saved::Conflict {
            // Only an operator's replay moves a claimed delivery on: theirs stands.
            return Ok(Delivered::Nothing);
        }
        info!(
            outcome = match &after {
                AfterAttempt::Succeeded => "succeeded",
                AfterAttempt::RetryIn(_) => "retry",
                AfterAttempt::Dead => "dead",
            },
            endpoint_id = %endpoint.id,
            event_id = %recorded.event.id,
            task_id = recorded.event.task().map(|t| t.task_id.as_str()),
            status_code,
            error_class = verdict.failure().map(|c| c.as_str()),
            attempt = recorded.attempt_count,
            "delivery attempted"
        );

        let change = endpoint.health.after(&verdict, now);
        let disable = match change {
            HealthChange::None => None,
            HealthChange::DisableNow { class } => Some(DisableReason::Gone { class }),
            HealthChange::Reset | HealthChange::CountFailure { .. } => endpoints
                .record_health(&endpoint.id, change)
                .await?
                .disable_reason(now, &settings.health),
        };
        if let Some(reason) = disable {
            self.disable_endpoint(&endpoint, reason, now).await?;
        }
        Ok(match after {
            AfterAttempt::Succeeded => Delivered::Succeeded,
            AfterAttempt::RetryIn(wait) => Delivered::RetryIn(wait),
            AfterAttempt::Dead => Delivered::Dead,
        })
    }

    /// `event`, with a fresh link to its video when the endpoint asked for one and links
    /// are configured. A link that cannot be made is left out (the event still names
    /// bucket and key), never a reason not to send.
    async fn with_video_link(
        &self,
        endpoint: &crate::notifications::Endpoint,
        event: &Event,
        now: Timestamp,
    ) -> Event {
        let (Some((links, ttl)), true) =
            (&self.settings.links, endpoint.settings.include_video_url)
        else {
            return event.clone();
        };
        let mut event = event.clone();
        if let EventData::Task(task) = &mut event.data {
            if let Some(video) = task.video.as_mut() {
                match links.link(&video.bucket, &video.key, *ttl).await {
                    Ok(url) => {
                        video.url = Some(url);
                        video.url_expires_at = Some(now.saturating_add(*ttl).to_rfc3339());
                    }
                    Err(e) => warn!(endpoint_id = %endpoint.id, error = %e,
                                    "video link not made; sent without it"),
                }
            }
        }
        event
    }

    async fn disable_endpoint(
        &self,
        endpoint: &crate::notifications::Endpoint,
        reason: DisableReason,
        now: Timestamp,
    ) -> Result<(), DeliverError> {
        let (deliveries, endpoints, settings) = (&self.deliveries, &self.endpoints, &self.settings);
        if !endpoints
            .disable(&endpoint.id, reason.as_str(), now)
            .await?
        {
            return Ok(()); // someone else disabled it, and told the fallback
        }
        let health = endpoints
            .get(&endpoint.id)
            .await?
            .map(|e| e.health)
            .unwrap_or(endpoint.health);
        warn!(outcome = "endpoint_disabled", endpoint_id = %endpoint.id, reason = reason.as_str(), "endpoint disabled");
        crate::metrics::endpoint_disabled();
        let Some(fallback) = settings.fallback.as_ref().filter(|f| **f != endpoint.id) else {
            return Ok(());
        };
        let event = Event {
            id: EventId::derive(&[
                "disabled",
                endpoint.id.as_str(),
                &now.as_millis().to_string(),
            ]),
            event_type: EventType::EndpointDisabled,
            data: EventData::Disabled {
                endpoint_id: endpoint.id.to_string(),
                reason: match reason {
                    DisableReason::Gone { class } => format!("gone ({})", class.as_str()),
                    DisableReason::Failing { .. } => "failing".into(),
                },
                consecutive_failures: health.consecutive_failures,
                failing_since: health.failing_since.map(Timestamp::to_rfc3339),
            },
        };
        let enabled = endpoints.get(fallback).await?.is_some_and(|f| f.enabled);
        let delivery = Delivery::new(event, fallback.clone(), enabled, now);
        if deliveries.create(&delivery).await? {
            let job = Job::Deliver {
                delivery_id: delivery.id.clone(),
            };
            if let Err(e) = self.queue.enqueue(&job, Duration::ZERO).await {
                // Retrying this message would not help: the disable is done, so the next
                // run never gets here. The delivery stays pending for `deliveries retry`.
                error!(outcome = "unqueued", delivery_id = %delivery.id, error = %e,
                       "endpoint.disabled delivery written but not queued");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::notify::classify::TransportError;
    use crate::domain::notify::endpoint::{EndpointSpec, EndpointUrlPolicy, RateLimit};
    use crate::domain::notify::format::{TargetKind, samples};
    use crate::domain::notify::health::Health;
    use crate::domain::notify::signing::SigningKeys;
    use crate::domain::secret::Secret;
    use crate::domain::verify::{CallbackRequest, Scheme, Verified, Verifier};
    use crate::notifications::Endpoint;
    use crate::notifications::memory::{MemoryDeliveries, MemoryEndpoints, MemoryQueue};
    use crate::sender::scripted::ScriptedSender;

    const T0: Timestamp = Timestamp::from_secs(1_795_000_000);
    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    type World = Courier<Arc<MemoryDeliveries>, Arc<MemoryEndpoints>, ScriptedSender, MemoryQueue>;

    fn endpoint(kind: TargetKind, url: &str, seed: u128) -> Endpoint {
        let spec: EndpointSpec =
            serde_json::from_value(serde_json::json!({"kind": kind.as_str(), "url": url})).unwrap();
        let signing = kind
            .is_signed()
            .then(|| SigningKeys::new(Secret::new(KEY.to_vec())));
        let settings = spec.validate(&EndpointUrlPolicy::local()).unwrap();
        Endpoint::new(EndpointId::generate(seed), settings, signing, None, T0)
    }

    async fn world(kind: TargetKind) -> (World, EndpointId, DeliveryId) {
        let w = World {
            deliveries: Arc::default(),
            endpoints: Arc::default(),
            sender: ScriptedSender::default(),
            queue: MemoryQueue::default(),
            settings: DeliverSettings::new(HealthPolicy::default()),
        };
        let ep = endpoint(kind, "http://127.0.0.1:9/hook", 1);
        let id = ep.id.clone();
        w.endpoints.insert(ep);
        let d = Delivery::new(samples::all().remove(1), id.clone(), true, T0);
        let did = d.id.clone();
        w.deliveries.create(&d).await.unwrap();
        (w, id, did)
    }

    async fn run(w: &World, id: &DeliveryId, now: Timestamp) -> Delivered {
        w.deliver(id, now, 0.5).await.unwrap()
    }

    #[tokio::test]
    async fn a_signed_webhook_is_delivered_and_our_verifier_accepts_it() {
        let (w, _, id) = world(TargetKind::Webhook).await;
        assert_eq!(run(&w, &id, T0).await, Delivered::Succeeded);
        let sent = w.sender.requests();
        assert_eq!(sent.len(), 1);
        let headers = crate::test_support::header_map(&sent[0].headers);
        let verifier = Verifier::default().with_standard_webhooks(vec![Secret::new(KEY.to_vec())]);
        let req = CallbackRequest {
            tokens: &[],
            headers: &headers,
            body: &sent[0].body,
        };
        assert_eq!(
            verifier.verify(&req, T0),
            Ok(Verified::By(Scheme::StandardWebhooks))
        );
        let d = w.deliveries.snapshot(&id).unwrap();
        assert_eq!((d.status, d.attempt_count), (DeliveryStatus::Succeeded, 1));
        // A redelivered message finds nothing to do, and sends nothing.
        assert_eq!(run(&w, &id, T0).await, Delivered::Nothing);
        assert_eq!(w.sender.requests().len(), 1);
    }

    #[tokio::test]
    async fn a_signed_kind_without_its_secret_is_retried_never_sent_unsigned() {
        let (w, ep, id) = world(TargetKind::Webhook).await;
        let mut keyless = w.endpoints.snapshot(&ep).unwrap();
        keyless.signing = None;
        w.endpoints.insert(keyless);
        let err = w.deliver(&id, T0, 0.5).await.unwrap_err();
        assert!(err.to_string().contains("no signing secret"), "{err}");
        assert!(w.sender.requests().is_empty(), "nothing sent");
        let d = w.deliveries.snapshot(&id).unwrap();
        assert_eq!((d.status, d.attempt_count), (DeliveryStatus::Pending, 0));
    }

    #[tokio::test]
    async fn failures_retry_on_schedule_and_a_410_disables_at_once() {
        let (w, ep, id) = world(TargetKind::Webhook).await;
        w.sender
            .answer(500, "oops")
            .fail(TransportError::Timeout)
            .answer(410, "gone");
        assert_eq!(
            run(&w, &id, T0).await,
            Delivered::RetryIn(Duration::from_secs(5))
        );
        // Not due yet: nothing is sent.
        assert_eq!(
            run(&w, &id, T0).await,
            Delivered::NotYet(Duration::from_secs(5))
        );
        assert_eq!(w.sender.requests().len(), 1);
        let t1 = T0.saturating_add(Duration::from_secs(5));
        // A timeout waits at least a minute; the schedule's 5 minutes is longer.
        assert_eq!(
            run(&w, &id, t1).await,
            Delivered::RetryIn(Duration::from_secs(300))
        );
        let health = w.endpoints.snapshot(&ep).unwrap().health;
        assert_eq!(health.consecutive_failures, 2);
        let t2 = t1.saturating_add(Duration::from_secs(300));
        assert_eq!(run(&w, &id, t2).await, Delivered::Dead);
        let endpoint = w.endpoints.snapshot(&ep).unwrap();
        assert!(!endpoint.enabled);
        assert_eq!(endpoint.disabled.map(|(_, r)| r).as_deref(), Some("gone"));
        let d = w.deliveries.snapshot(&id).unwrap();
        let classes: Vec<_> = d
            .attempts
            .iter()
            .map(|a| a.error_class.clone().unwrap_or_default())
            .collect();
        assert_eq!(classes, ["server_error", "timeout", "gone"]);
        assert_eq!(d.attempts[0].response_body, "oops");
    }

    #[tokio::test]
    async fn a_disabled_endpoint_skips_and_tells_the_fallback_once() {
        let (mut w, ep, id) = world(TargetKind::Slack).await;
        let fallback = endpoint(TargetKind::Webhook, "http://127.0.0.1:9/fallback", 2);
        w.settings.fallback = Some(fallback.id.clone());
        w.endpoints.insert(fallback.clone());
        w.sender.answer(404, "no_service");
        assert_eq!(
            run(&w, &id, T0).await,
            Delivered::Dead,
            "Slack 404 is permanent"
        );
        let told: Vec<Delivery> = w
            .deliveries
            .all()
            .into_iter()
            .filter(|d| d.endpoint_id == fallback.id)
            .collect();
        assert_eq!(told.len(), 1);
        assert_eq!(told[0].event.event_type, EventType::EndpointDisabled);
        assert_eq!(
            w.queue.jobs(),
            [(
                Job::Deliver {
                    delivery_id: told[0].id.clone()
                },
                Duration::ZERO
            )],
            "the fallback's delivery is queued, once"
        );
        assert_eq!(run(&w, &told[0].id, T0).await, Delivered::Succeeded);

        // Another delivery for the disabled endpoint is recorded for recover, not sent.
        let other = Delivery::new(samples::all().remove(0), ep.clone(), true, T0);
        w.deliveries.create(&other).await.unwrap();
        let before = w.sender.requests().len();
        assert_eq!(run(&w, &other.id, T0).await, Delivered::SkippedDisabled);
        assert_eq!(w.sender.requests().len(), before);
        assert_eq!(
            w.deliveries.snapshot(&other.id).unwrap().status,
            DeliveryStatus::SkippedDisabled
        );
    }

    #[tokio::test]
    async fn long_failing_endpoints_are_disabled_after_five_days_and_twenty_failures() {
        let (w, ep, _) = world(TargetKind::Webhook).await;
        let mut now = T0;
        let mut disabled_at = None;
        for i in 0..40u64 {
            let d = Delivery::new(samples::all().remove(5), ep.clone(), true, now);
            let d = Delivery {
                id: DeliveryId::of(&EventId::derive(&["t", &i.to_string()]), &ep),
                ..d
            };
            w.deliveries.create(&d).await.unwrap();
            w.sender.answer(503, "");
            let _ = run(&w, &d.id, now).await;
            if !w.endpoints.snapshot(&ep).unwrap().enabled {
                disabled_at = Some((i + 1, now.saturating_duration_since(T0)));
                break;
            }
            now = now.saturating_add(Duration::from_secs(6 * 3600));
        }
        // 6 h apart: 20 failures take 114 h (< 5 days), the 21st lands at 120 h.
        assert_eq!(disabled_at, Some((21, Duration::from_secs(120 * 3600))));
    }

    #[tokio::test]
    async fn a_claimed_attempt_is_not_sent_twice_and_a_dead_worker_s_claim_expires() {
        let (w, _, id) = world(TargetKind::Webhook).await;
        // A worker claimed the attempt and died before recording it.
        let d = w.deliveries.snapshot(&id).unwrap();
        let claimed = Delivery {
            next_attempt_at: Some(T0.saturating_add(CLAIM_FOR)),
            revision: d.revision + 1,
            ..d.clone()
        };
        w.deliveries.save(&claimed, d.revision).await.unwrap();
        assert_eq!(run(&w, &id, T0).await, Delivered::NotYet(CLAIM_FOR));
        assert!(w.sender.requests().is_empty());
        // Once the claim has run out, the attempt is made (once).
        let later = T0.saturating_add(CLAIM_FOR);
        assert_eq!(run(&w, &id, later).await, Delivered::Succeeded);
        assert_eq!(run(&w, &id, later).await, Delivered::Nothing);
        assert_eq!(w.sender.requests().len(), 1);
        assert_eq!(w.deliveries.snapshot(&id).unwrap().revision, d.revision + 3);
    }

    #[tokio::test]
    async fn a_success_resets_the_streak() {
        let (w, ep, id) = world(TargetKind::Webhook).await;
        w.sender.answer(500, "");
        run(&w, &id, T0).await;
        assert_eq!(
            w.endpoints
                .snapshot(&ep)
                .unwrap()
                .health
                .consecutive_failures,
            1
        );
        run(&w, &id, T0.saturating_add(Duration::from_secs(5))).await;
        assert_eq!(w.endpoints.snapshot(&ep).unwrap().health, Health::default());
    }

    #[tokio::test]
    async fn the_rate_limit_re_delays_instead_of_dropping() {
        let (w, ep, _) = world(TargetKind::WeCom).await;
        assert_eq!(
            w.endpoints.snapshot(&ep).unwrap().settings.rate_limit,
            Some(RateLimit {
                max: 20,
                per_secs: 60
            })
        );
        let mut outcomes = Vec::new();
        for i in 0..25u64 {
            let d = Delivery {
                id: DeliveryId::of(&EventId::derive(&["r", &i.to_string()]), &ep),
                ..Delivery::new(samples::all().remove(1), ep.clone(), true, T0)
            };
            w.deliveries.create(&d).await.unwrap();
            w.sender.answer(200, r#"{"errcode":0,"errmsg":"ok"}"#);
            outcomes.push(run(&w, &d.id, T0).await);
        }
        let sent = outcomes
            .iter()
            .filter(|o| **o == Delivered::Succeeded)
            .count();
        assert_eq!(sent, 20);
        for o in &outcomes[20..] {
            // T0 is 40 s into its minute: the next window opens in 20 s (+ jitter).
            assert_eq!(*o, Delivered::NotYet(Duration::from_millis(20_500)));
        }
        assert_eq!(w.sender.requests().len(), 20);
    }

    #[tokio::test]
    async fn a_wecom_error_inside_a_200_is_a_failure_and_the_store_being_down_is_an_error() {
        let (w, _, id) = world(TargetKind::WeCom).await;
        w.sender
            .answer(200, r#"{"errcode":40008,"errmsg":"invalid message type"}"#);
        assert_eq!(
            run(&w, &id, T0).await,
            Delivered::RetryIn(Duration::from_secs(5))
        );
        let d = w.deliveries.snapshot(&id).unwrap();
        assert_eq!(d.attempts[0].error_class.as_deref(), Some("target_error"));
        assert!(
            w.sender.requests()[0].headers.is_empty(),
            "chat kinds are not signed"
        );
        w.deliveries.set_unavailable(true);
        let err = w.deliver(&id, T0, 0.5).await;
        assert!(matches!(err, Err(DeliverError::Store(_))));
    }

    #[derive(Debug)]
    struct Links(Option<&'static str>);

    impl VideoLinks for Links {
        fn link<'a>(
            &'a self,
            bucket: &'a str,
            key: &'a str,
            ttl: Duration,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + 'a>>
        {
            let answer = match self.0 {
                Some(host) => Ok(format!(
                    "https://{host}/{bucket}/{key}?ttl={}",
                    ttl.as_secs()
                )),
                None => Err("no credentials".to_owned()),
            };
            Box::pin(async move { answer })
        }
    }

    #[tokio::test]
    async fn a_fresh_video_link_goes_only_to_endpoints_that_ask_and_a_failed_one_is_left_out() {
        for (asks, links, expected) in [
            (
                true,
                Some("links.example"),
                Some("https://links.example/music-videos/videos/sample-stored-1.mp4?ttl=600"),
            ),
            (false, Some("links.example"), None),
            (true, None, None),
        ] {
            let mut w = world(TargetKind::Webhook).await.0;
            w.settings.links = Some((Arc::new(Links(links)), Duration::from_secs(600)));
            let mut ep = endpoint(TargetKind::Webhook, "http://127.0.0.1:9/hook", 7);
            ep.settings.include_video_url = asks;
            w.endpoints.insert(ep.clone());
            let mut event = samples::all().remove(0);
            if let EventData::Task(t) = &mut event.data {
                let video = t.video.as_mut().unwrap();
                (video.url, video.url_expires_at) = (None, None);
            }
            let d = Delivery::new(event, ep.id.clone(), true, T0);
            w.deliveries.create(&d).await.unwrap();
            assert_eq!(run(&w, &d.id, T0).await, Delivered::Succeeded);
            let sent = w.sender.requests();
            let body: serde_json::Value = serde_json::from_slice(&sent[0].body).unwrap();
            let video = &body["data"]["video"];
            assert_eq!(
                video["url"].as_str(),
                expected,
                "asks {asks}, links {links:?}"
            );
            assert_eq!(
                video["url_expires_at"].as_str().is_some(),
                expected.is_some()
            );
            // The stored event never holds a link (each attempt gets a fresh one).
            let stored = w.deliveries.snapshot(&d.id).unwrap();
            let EventData::Task(t) = &stored.event.data else {
                unreachable!()
            };
            assert!(t.video.as_ref().unwrap().url.is_none());
        }
    }

    #[tokio::test]
    async fn discord_gets_wait_true() {
        let (w, _, id) = world(TargetKind::Discord).await;
        assert_eq!(run(&w, &id, T0).await, Delivered::Succeeded);
        assert_eq!(w.sender.requests()[0].url.query(), Some("wait=true"));
    }
}

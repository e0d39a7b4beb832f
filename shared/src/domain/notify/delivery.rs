//! A delivery: one event for one endpoint, and how it moves. Its id is derived from the
//! event's and the endpoint's, so a redelivered stream record finds the delivery already
//! there (a conditional put creates nothing new). Each attempt is recorded (the last 10
//! are kept), then the delivery is `succeeded`, `dead`, or `pending` with its next
//! attempt's time; an endpoint that is disabled gets `skipped_disabled` deliveries, which
//! `recover` sends once it is enabled again.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::classify::Verdict;
use super::endpoint::EndpointId;
use super::event::{Event, EventId};
use super::schedule::RetrySchedule;
use crate::domain::clock::Timestamp;

/// Attempts kept on a delivery (older ones are dropped; the count is kept).
pub const ATTEMPTS_KEPT: usize = 10;
/// Bytes of a response body kept on an attempt.
pub const RESPONSE_BODY_KEPT: usize = 4 * 1024;
/// How long a delivery is kept (DynamoDB TTL).
pub const DELIVERY_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// SQS's longest message delay, and its longest visibility timeout.
pub const SQS_MAX_DELAY: Duration = Duration::from_secs(15 * 60);
pub const SQS_MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

/// `dlv_` and the hash of the event id and the endpoint id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeliveryId(String);

impl DeliveryId {
    pub fn of(event: &EventId, endpoint: &EndpointId) -> Self {
        let derived = EventId::derive(&["delivery", event.as_str(), endpoint.as_str()]);
        Self(format!("dlv_{}", &derived.as_str()[4..]))
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let hex = raw.strip_prefix("dlv_")?;
        EventId::parse(&format!("evt_{hex}")).map(|_| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Dead,
    /// Created while its endpoint was disabled; `recover` sends it.
    SkippedDisabled,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Dead => "dead",
            Self::SkippedDisabled => "skipped_disabled",
        }
    }
}

/// One attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub at: Timestamp,
    /// The answer's status, or 0 when none came.
    pub status_code: u16,
    pub duration_ms: u64,
    /// The first 4 KiB of the answer, as text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub response_body: String,
    /// Why it did not deliver (`classify`'s class), absent on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
}

impl Attempt {
    pub fn new(
        at: Timestamp,
        status_code: u16,
        duration: Duration,
        body: &[u8],
        verdict: &Verdict,
    ) -> Self {
        let text = String::from_utf8_lossy(body);
        Self {
            at,
            status_code,
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            response_body: crate::domain::text::cut_bytes(&text, RESPONSE_BODY_KEPT).to_owned(),
            error_class: verdict.failure().map(|c| c.as_str().to_owned()),
        }
    }
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: DeliveryId,
    pub endpoint_id: EndpointId,
    pub event: Event,
    pub status: DeliveryStatus,
    /// Attempts made in all (also those no longer kept).
    pub attempt_count: u32,
    /// The last [`ATTEMPTS_KEPT`], oldest first.
    pub attempts: Vec<Attempt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// TTL, in Unix seconds.
    pub expires_at: i64,
    /// Bumped by every change; writes are conditional on it.
    pub revision: u64,
}

/// What an attempt does to its delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterAttempt {
    Succeeded,
    /// Try again after this long.
    RetryIn(Duration),
    /// No more attempts: the schedule is spent, or the target refused for good.
    Dead,
}

impl Delivery {
    /// A new delivery of `event` to `endpoint`, `pending` (or `skipped_disabled`).
    pub fn new(event: Event, endpoint: EndpointId, enabled: bool, now: Timestamp) -> Self {
        Self {
            id: DeliveryId::of(&event.id, &endpoint),
            endpoint_id: endpoint,
            event,
            status: if enabled {
                DeliveryStatus::Pending
            } else {
                DeliveryStatus::SkippedDisabled
            },
            attempt_count: 0,
            attempts: Vec::new(),
            next_attempt_at: enabled.then_some(now),
            created_at: now,
            updated_at: now,
            expires_at: now.saturating_add(DELIVERY_TTL).as_secs(),
            revision: 0,
        }
    }

    /// What `verdict` on attempt number `attempt_count + 1` means under `schedule`,
    /// with `unit` the jitter draw.
    pub fn decide(&self, verdict: &Verdict, schedule: &RetrySchedule, unit: f64) -> AfterAttempt {
        match verdict {
            Verdict::Delivered => AfterAttempt::Succeeded,
            Verdict::Permanent { .. } => AfterAttempt::Dead,
            Verdict::Retry { .. } => {
                let made =
                    usize::try_from(self.attempt_count.saturating_add(1)).unwrap_or(usize::MAX);
                schedule
                    .next_delay(made, verdict, unit)
                    .map_or(AfterAttempt::Dead, AfterAttempt::RetryIn)
            }
        }
    }

    /// The delivery after `attempt` ended in `after`, at `now`.
    pub fn recorded(mut self, attempt: Attempt, after: &AfterAttempt, now: Timestamp) -> Self {
        self.attempt_count = self.attempt_count.saturating_add(1);
        self.attempts.push(attempt);
        if self.attempts.len() > ATTEMPTS_KEPT {
            let drop = self.attempts.len() - ATTEMPTS_KEPT;
            self.attempts.drain(..drop);
        }
        (self.status, self.next_attempt_at) = match after {
            AfterAttempt::Succeeded => (DeliveryStatus::Succeeded, None),
            AfterAttempt::Dead => (DeliveryStatus::Dead, None),
            AfterAttempt::RetryIn(wait) => {
                (DeliveryStatus::Pending, Some(now.saturating_add(*wait)))
            }
        };
        self.updated_at = now;
        self.revision += 1;
        self
    }

    /// Sent again by an operator (`retry`, `recover`, re-notify): pending now, with its
    /// history kept and its schedule started over. The event id stays; the body gets a
    /// new timestamp and signature when it is sent.
    pub fn replayed(mut self, now: Timestamp) -> Self {
        self.status = DeliveryStatus::Pending;
        self.next_attempt_at = Some(now);
        self.attempt_count = 0;
        self.updated_at = now;
        self.expires_at = self
            .expires_at
            .max(now.saturating_add(DELIVERY_TTL).as_secs());
        self.revision += 1;
        self
    }
}

/// How to wait `remaining` with SQS: a message delay up to 15 minutes, beyond that the
/// received message's visibility (up to 12 hours, after which it is looked at again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqsWait {
    Now,
    DelaySeconds(u32),
    VisibilitySeconds(u32),
}

pub fn sqs_wait(remaining: Duration) -> SqsWait {
    let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    if remaining < Duration::from_secs(1) {
        SqsWait::Now
    } else if remaining <= SQS_MAX_DELAY {
        SqsWait::DelaySeconds(secs(remaining))
    } else {
        SqsWait::VisibilitySeconds(secs(remaining.min(SQS_MAX_VISIBILITY)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::notify::classify::{FailureClass, THROTTLED_FLOOR};

    const T0: Timestamp = Timestamp::from_secs(1_795_000_000);

    fn endpoint() -> EndpointId {
        EndpointId::generate(42)
    }

    fn delivery() -> Delivery {
        let event = crate::domain::notify::format::samples::all().remove(1);
        Delivery::new(event, endpoint(), true, T0)
    }

    fn server_error() -> Verdict {
        Verdict::Retry {
            class: FailureClass::ServerError(502),
            counts_toward_disable: true,
            floor: None,
            retry_after: None,
        }
    }

    #[test]
    fn ids_are_deterministic_per_event_and_endpoint() {
        let d = delivery();
        assert_eq!(d.id, DeliveryId::of(&d.event.id, &endpoint()));
        assert_ne!(d.id, DeliveryId::of(&d.event.id, &EndpointId::generate(43)));
        assert_eq!(DeliveryId::parse(d.id.as_str()), Some(d.id.clone()));
        assert_eq!(DeliveryId::parse("dlv_nope"), None);
        assert_eq!(d.status, DeliveryStatus::Pending);
        assert_eq!(d.next_attempt_at, Some(T0));
        assert_eq!(d.expires_at, T0.as_secs() + 30 * 24 * 3600);
        let skipped = Delivery::new(d.event.clone(), endpoint(), false, T0);
        assert_eq!(
            (skipped.status, skipped.next_attempt_at),
            (DeliveryStatus::SkippedDisabled, None)
        );
    }

    #[test]
    fn a_delivery_runs_its_schedule_then_dies() {
        let schedule = RetrySchedule::default();
        let mut d = delivery();
        let mut waits = Vec::new();
        let mut now = T0;
        loop {
            let after = d.decide(&server_error(), &schedule, 0.5);
            let attempt = Attempt::new(
                now,
                502,
                Duration::from_millis(30),
                b"bad gateway",
                &server_error(),
            );
            d = d.recorded(attempt, &after, now);
            match after {
                AfterAttempt::RetryIn(w) => {
                    waits.push(w.as_secs());
                    now = now.saturating_add(w);
                }
                AfterAttempt::Dead => break,
                AfterAttempt::Succeeded => unreachable!(),
            }
        }
        assert_eq!(waits, [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000]);
        assert_eq!(
            (d.status, d.attempt_count, d.next_attempt_at),
            (DeliveryStatus::Dead, 8, None)
        );
        assert_eq!(d.attempts.len(), 8);
        assert_eq!(d.attempts[0].error_class.as_deref(), Some("server_error"));
    }

    #[test]
    fn only_the_last_ten_attempts_are_kept_with_bodies_cut() {
        let schedule = RetrySchedule::from_secs(&[0; 20]).unwrap();
        let mut d = delivery();
        let big = "é".repeat(5_000);
        for i in 0..15 {
            let now = T0.saturating_add(Duration::from_secs(i));
            let after = d.decide(&server_error(), &schedule, 0.5);
            d = d.recorded(
                Attempt::new(now, 500, Duration::ZERO, big.as_bytes(), &server_error()),
                &after,
                now,
            );
        }
        assert_eq!(d.attempt_count, 15);
        assert_eq!(d.attempts.len(), ATTEMPTS_KEPT);
        assert_eq!(d.attempts[0].at, T0.saturating_add(Duration::from_secs(5)));
        assert!(
            d.attempts
                .iter()
                .all(|a| a.response_body.len() <= RESPONSE_BODY_KEPT)
        );
        assert_eq!(
            d.attempts[0].response_body.len(),
            RESPONSE_BODY_KEPT,
            "é is 2 bytes"
        );
    }

    #[test]
    fn success_and_permanent_refusals_end_it() {
        let schedule = RetrySchedule::default();
        let d = delivery();
        assert_eq!(
            d.decide(&Verdict::Delivered, &schedule, 0.5),
            AfterAttempt::Succeeded
        );
        let gone = Verdict::Permanent {
            class: FailureClass::Gone,
        };
        assert_eq!(d.decide(&gone, &schedule, 0.5), AfterAttempt::Dead);
        let ok = d.clone().recorded(
            Attempt::new(
                T0,
                200,
                Duration::from_millis(12),
                b"ok",
                &Verdict::Delivered,
            ),
            &AfterAttempt::Succeeded,
            T0,
        );
        assert_eq!(
            (ok.status, ok.attempts[0].error_class.clone()),
            (DeliveryStatus::Succeeded, None)
        );
        assert_eq!(ok.revision, 1);
        // Throttled at once: the first retry waits the floor, not 5 s.
        let throttled = Verdict::Retry {
            class: FailureClass::RateLimited,
            counts_toward_disable: false,
            floor: Some(THROTTLED_FLOOR),
            retry_after: None,
        };
        assert_eq!(
            d.decide(&throttled, &schedule, 0.5),
            AfterAttempt::RetryIn(THROTTLED_FLOOR)
        );
    }

    #[test]
    fn a_replay_keeps_the_event_and_the_history_and_starts_over() {
        let schedule = RetrySchedule::default();
        let mut d = delivery();
        let gone = Verdict::Permanent {
            class: FailureClass::Gone,
        };
        let after = d.decide(&gone, &schedule, 0.5);
        d = d.recorded(
            Attempt::new(T0, 410, Duration::ZERO, b"", &gone),
            &after,
            T0,
        );
        let later = T0.saturating_add(Duration::from_secs(86_400));
        let again = d.clone().replayed(later);
        assert_eq!(again.event.id, d.event.id);
        assert_eq!(
            (again.status, again.next_attempt_at, again.attempt_count),
            (DeliveryStatus::Pending, Some(later), 0)
        );
        assert_eq!(again.attempts, d.attempts);
        assert_eq!(again.expires_at, later.as_secs() + 30 * 24 * 3600);
    }

    #[test]
    fn sqs_waits() {
        assert_eq!(sqs_wait(Duration::from_millis(300)), SqsWait::Now);
        assert_eq!(sqs_wait(Duration::from_secs(5)), SqsWait::DelaySeconds(5));
        assert_eq!(
            sqs_wait(Duration::from_secs(900)),
            SqsWait::DelaySeconds(900)
        );
        assert_eq!(
            sqs_wait(Duration::from_secs(1_800)),
            SqsWait::VisibilitySeconds(1_800)
        );
        assert_eq!(
            sqs_wait(Duration::from_secs(36_000 * 2)),
            SqsWait::VisibilitySeconds(43_200)
        );
    }
}

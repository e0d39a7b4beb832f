//! When an endpoint is disabled. A permanent refusal (410, Slack 403/404, WeCom 93000)
//! disables it at once; otherwise it takes both a long failing streak in time (5 days by
//! default) and in count (20 consecutive failures), so neither one bad hour nor a
//! trickle of failures over a week is enough. Any success resets both. Rate limiting
//! shows the endpoint is alive and counts for nothing.
//!
//! Counting is split so that concurrent deliveries stay correct: [`Health::after`]
//! says what an attempt changes (the store applies it as an atomic counter update) and
//! [`Health::disable_reason`] judges the counters the store returns.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::classify::{FailureClass, Verdict};
use crate::domain::clock::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// The streak must be at least this old…
    pub failing_for: Duration,
    /// …and at least this long.
    pub consecutive: u32,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            failing_for: Duration::from_secs(5 * 24 * 3600),
            consecutive: 20,
        }
    }
}

/// An endpoint's failure counters, as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub consecutive_failures: u32,
    /// When the current streak began (its first failure).
    pub failing_since: Option<Timestamp>,
}

/// What one attempt changes on its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthChange {
    /// Nothing to write (a success on a healthy endpoint, rate limiting).
    None,
    /// A success ends the streak: both counters cleared.
    Reset,
    /// One more failure: add 1, and start the streak at `at` if none is running.
    CountFailure { at: Timestamp },
    /// Disable now, whatever the counters say.
    DisableNow { class: FailureClass },
}

/// Why an endpoint was disabled (the `endpoint.disabled` event's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisableReason {
    /// The target said it is gone.
    Gone { class: FailureClass },
    /// Failing since `since`, with `consecutive` failures in a row.
    Failing { since: Timestamp, consecutive: u32 },
}

impl DisableReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gone { .. } => "gone",
            Self::Failing { .. } => "failing",
        }
    }
}

impl Health {
    /// What `verdict`, seen at `now`, changes.
    pub fn after(&self, verdict: &Verdict, now: Timestamp) -> HealthChange {
        match *verdict {
            Verdict::Delivered if *self == Self::default() => HealthChange::None,
            Verdict::Delivered => HealthChange::Reset,
            Verdict::Permanent { class } => HealthChange::DisableNow { class },
            Verdict::Retry {
                counts_toward_disable: false,
                ..
            } => HealthChange::None,
            Verdict::Retry { .. } => HealthChange::CountFailure { at: now },
        }
    }

    /// The counters after `change` (what the store's atomic update computes).
    pub fn applied(self, change: HealthChange) -> Self {
        match change {
            HealthChange::None | HealthChange::DisableNow { .. } => self,
            HealthChange::Reset => Self::default(),
            HealthChange::CountFailure { at } => Self {
                consecutive_failures: self.consecutive_failures.saturating_add(1),
                failing_since: self.failing_since.or(Some(at)),
            },
        }
    }

    /// Whether these counters, at `now`, disable the endpoint.
    pub fn disable_reason(&self, now: Timestamp, policy: &HealthPolicy) -> Option<DisableReason> {
        let since = self.failing_since?;
        (self.consecutive_failures >= policy.consecutive
            && now.saturating_duration_since(since) >= policy.failing_for)
            .then_some(DisableReason::Failing {
                since,
                consecutive: self.consecutive_failures,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::notify::classify::THROTTLED_FLOOR;

    const HOUR: Duration = Duration::from_secs(3600);
    const T0: Timestamp = Timestamp::from_secs(1_795_000_000);

    fn failed() -> Verdict {
        Verdict::Retry {
            class: FailureClass::ServerError(500),
            counts_toward_disable: true,
            floor: None,
            retry_after: None,
        }
    }

    /// A fake clock: `attempts` failures spread evenly over `span`, then the verdict.
    fn run(attempts: u32, span: Duration) -> (Health, Option<DisableReason>) {
        let policy = HealthPolicy::default();
        let mut health = Health::default();
        let mut reason = None;
        for i in 0..attempts {
            let now =
                T0.saturating_add(span.mul_f64(f64::from(i) / f64::from(attempts.max(2) - 1)));
            health = health.applied(health.after(&failed(), now));
            reason = reason.or(health.disable_reason(now, &policy));
        }
        (health, reason)
    }

    #[test]
    fn it_takes_five_days_and_twenty_failures() {
        // 20 failures within a day: not yet.
        assert_eq!(run(20, 24 * HOUR).1, None);
        // 19 failures over a week: not yet.
        assert_eq!(run(19, 7 * 24 * HOUR).1, None);
        // 20 failures over exactly five days: disabled at the last one.
        let (health, reason) = run(20, 120 * HOUR);
        assert_eq!(health.consecutive_failures, 20);
        assert_eq!(
            reason,
            Some(DisableReason::Failing {
                since: T0,
                consecutive: 20
            })
        );
    }

    #[test]
    fn any_success_resets_the_streak() {
        let (health, _) = run(19, 119 * HOUR);
        assert_eq!(health.after(&Verdict::Delivered, T0), HealthChange::Reset);
        let reset = health.applied(HealthChange::Reset);
        assert_eq!(reset, Health::default());
        assert_eq!(reset.after(&Verdict::Delivered, T0), HealthChange::None);
        // The next failure starts a new streak, not the old one.
        let later = T0.saturating_add(200 * HOUR);
        let next = reset.applied(reset.after(&failed(), later));
        assert_eq!(
            (next.consecutive_failures, next.failing_since),
            (1, Some(later))
        );
    }

    #[test]
    fn gone_disables_at_once_and_rate_limits_count_for_nothing() {
        let health = Health::default();
        let gone = Verdict::Permanent {
            class: FailureClass::Gone,
        };
        assert_eq!(
            health.after(&gone, T0),
            HealthChange::DisableNow {
                class: FailureClass::Gone
            }
        );
        let throttled = Verdict::Retry {
            class: FailureClass::RateLimited,
            counts_toward_disable: false,
            floor: Some(THROTTLED_FLOOR),
            retry_after: None,
        };
        let (failing, _) = run(5, HOUR);
        assert_eq!(failing.after(&throttled, T0), HealthChange::None);
        assert_eq!(failing.applied(HealthChange::None), failing);
    }

    #[test]
    fn the_policy_is_configurable() {
        let strict = HealthPolicy {
            failing_for: HOUR,
            consecutive: 3,
        };
        let health = Health {
            consecutive_failures: 3,
            failing_since: Some(T0),
        };
        assert_eq!(
            health.disable_reason(T0.saturating_add(HOUR / 2), &strict),
            None
        );
        assert!(
            health
                .disable_reason(T0.saturating_add(HOUR), &strict)
                .is_some()
        );
        assert_eq!(Health::default().disable_reason(T0, &strict), None);
    }
}

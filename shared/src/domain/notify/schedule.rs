//! When the next attempt goes. The default schedule is immediately, then 5 s, 5 min,
//! 30 min, 2 h, 5 h, 10 h and 10 h (about 28 h in all), each delay ±20 % jitter;
//! endpoints may override it. Throttling and timeouts wait at least 60 s, and a
//! `Retry-After` is honoured inside [scheduled, 2 × scheduled]: a target cannot push a
//! delivery out indefinitely, nor pull it in faster than the schedule.

use std::time::Duration;

use super::classify::Verdict;

/// Jitter on every delay, as a fraction of it.
pub const JITTER: f64 = 0.2;
/// At most this many attempts, and no single delay longer than this.
pub const MAX_ATTEMPTS: usize = 20;
pub const MAX_DELAY: Duration = Duration::from_secs(24 * 3600);

/// Delays before each attempt: the first is the initial send's (normally zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

impl Default for RetrySchedule {
    fn default() -> Self {
        Self(
            [0, 5, 300, 1_800, 7_200, 18_000, 36_000, 36_000]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
        )
    }
}

/// Why a schedule override was refused (when the endpoint is saved).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("a retry schedule needs 1 to {MAX_ATTEMPTS} delays, got {0}")]
    Length(usize),
    #[error("delay {index} is {secs} s, over the {} s maximum", MAX_DELAY.as_secs())]
    TooLong { index: usize, secs: u64 },
}

impl RetrySchedule {
    /// An override, in seconds per attempt (the first is the initial send's delay).
    pub fn from_secs(delays: &[u64]) -> Result<Self, ScheduleError> {
        if delays.is_empty() || delays.len() > MAX_ATTEMPTS {
            return Err(ScheduleError::Length(delays.len()));
        }
        if let Some((index, &secs)) = delays
            .iter()
            .enumerate()
            .find(|(_, s)| **s > MAX_DELAY.as_secs())
        {
            return Err(ScheduleError::TooLong { index, secs });
        }
        Ok(Self(
            delays.iter().copied().map(Duration::from_secs).collect(),
        ))
    }

    pub fn as_secs(&self) -> Vec<u64> {
        self.0.iter().map(Duration::as_secs).collect()
    }

    /// Attempts the schedule allows in all.
    pub fn attempts(&self) -> usize {
        self.0.len()
    }

    /// How long to wait before the next attempt, after `attempts_made` attempts of
    /// which the last ended in `verdict`; `None` once the schedule is spent or the
    /// verdict allows no retry (the delivery is dead). `unit` is a uniform draw in
    /// [0, 1): the jitter, passed in so the decision stays a pure function.
    pub fn next_delay(
        &self,
        attempts_made: usize,
        verdict: &Verdict,
        unit: f64,
    ) -> Option<Duration> {
        let Verdict::Retry {
            floor, retry_after, ..
        } = *verdict
        else {
            return None;
        };
        let base = *self.0.get(attempts_made)?;
        let jitter = 1.0 + JITTER * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        let scheduled = base.mul_f64(jitter).max(floor.unwrap_or(Duration::ZERO));
        Some(match retry_after {
            Some(asked) => asked.clamp(scheduled, scheduled.saturating_mul(2)),
            None => scheduled,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::notify::classify::{FailureClass, THROTTLED_FLOOR};

    fn server_error(retry_after: Option<u64>) -> Verdict {
        Verdict::Retry {
            class: FailureClass::ServerError(503),
            counts_toward_disable: true,
            floor: None,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    fn throttled(retry_after: Option<u64>) -> Verdict {
        Verdict::Retry {
            class: FailureClass::RateLimited,
            counts_toward_disable: false,
            floor: Some(THROTTLED_FLOOR),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    const MID: f64 = 0.5; // no jitter

    #[test]
    fn the_default_schedule_without_jitter() {
        let s = RetrySchedule::default();
        let delays: Vec<Option<u64>> = (1..=8)
            .map(|n| {
                s.next_delay(n, &server_error(None), MID)
                    .map(|d| d.as_secs())
            })
            .collect();
        assert_eq!(
            delays,
            [
                Some(5),
                Some(300),
                Some(1_800),
                Some(7_200),
                Some(18_000),
                Some(36_000),
                Some(36_000),
                None
            ]
        );
        assert_eq!(s.attempts(), 8);
        assert_eq!(
            s.next_delay(0, &server_error(None), MID),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let s = RetrySchedule::default();
        for i in 0..=100 {
            let unit = f64::from(i) / 100.0;
            let d = s.next_delay(2, &server_error(None), unit).unwrap();
            assert!(
                d >= Duration::from_secs(240) && d <= Duration::from_secs(360),
                "{unit}: {d:?}"
            );
        }
        assert_eq!(
            s.next_delay(2, &server_error(None), 0.0),
            Some(Duration::from_secs(240))
        );
        assert_eq!(
            s.next_delay(2, &server_error(None), 1.0),
            Some(Duration::from_secs(360))
        );
        // Out-of-range draws are clamped, never widen the band.
        assert_eq!(
            s.next_delay(2, &server_error(None), 7.0),
            Some(Duration::from_secs(360))
        );
    }

    #[test]
    fn throttling_and_timeouts_wait_at_least_a_minute() {
        let s = RetrySchedule::default();
        assert_eq!(
            s.next_delay(1, &throttled(None), MID),
            Some(THROTTLED_FLOOR)
        );
        assert_eq!(
            s.next_delay(2, &throttled(None), MID),
            Some(Duration::from_secs(300))
        );
    }

    #[test]
    fn retry_after_is_clamped_to_between_scheduled_and_twice_scheduled() {
        let s = RetrySchedule::default();
        // Scheduled 300 s: asking for 10 s waits 300, for 450 s waits 450, for a day 600.
        assert_eq!(
            s.next_delay(2, &server_error(Some(10)), MID),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            s.next_delay(2, &server_error(Some(450)), MID),
            Some(Duration::from_secs(450))
        );
        assert_eq!(
            s.next_delay(2, &server_error(Some(86_400)), MID),
            Some(Duration::from_secs(600))
        );
        // Throttled after the first retry: the floor is the scheduled delay.
        assert_eq!(
            s.next_delay(1, &throttled(Some(90)), MID),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            s.next_delay(1, &throttled(Some(1_000)), MID),
            Some(Duration::from_secs(120))
        );
    }

    #[test]
    fn nothing_follows_a_delivery_or_a_permanent_refusal() {
        let s = RetrySchedule::default();
        assert_eq!(s.next_delay(1, &Verdict::Delivered, MID), None);
        let gone = Verdict::Permanent {
            class: FailureClass::Gone,
        };
        assert_eq!(s.next_delay(1, &gone, MID), None);
    }

    #[test]
    fn overrides_are_checked_when_saved() {
        let s = RetrySchedule::from_secs(&[0, 1, 2]).unwrap();
        assert_eq!(s.as_secs(), [0, 1, 2]);
        assert_eq!(s.next_delay(3, &server_error(None), MID), None);
        assert_eq!(RetrySchedule::from_secs(&[]), Err(ScheduleError::Length(0)));
        assert_eq!(
            RetrySchedule::from_secs(&[0; 21]),
            Err(ScheduleError::Length(21))
        );
        assert_eq!(
            RetrySchedule::from_secs(&[0, 90_000]),
            Err(ScheduleError::TooLong {
                index: 1,
                secs: 90_000
            })
        );
    }
}

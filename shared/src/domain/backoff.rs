//! Exponential backoff with jitter for transient errors, bounded in attempts and delay.
//! Pure: the caller draws the jitter.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    /// Retries allowed after the first try.
    pub retries: u32,
}

impl Backoff {
    /// Delay before retry number `retry` (0-based), given a jitter fraction in `[0, 1)`:
    /// half the exponential delay plus a random part of the other half, so retries of
    /// many invocations spread out but never collapse to zero.
    pub fn delay(&self, retry: u32, jitter: f64) -> Duration {
        let capped = self.ceiling(retry);
        capped / 2 + capped.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
    }

    /// `base × 2^n`, at most `max` (the exponent stops growing at 16, long past any cap).
    pub fn ceiling(&self, n: u32) -> Duration {
        self.base.saturating_mul(1 << n.min(16)).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        base: Duration::from_millis(200),
        max: Duration::from_secs(5),
        retries: 5,
    };

    #[test]
    fn grows_exponentially_then_caps() {
        assert_eq!(B.delay(0, 0.0), Duration::from_millis(100));
        assert_eq!(B.delay(0, 1.0), Duration::from_millis(200));
        assert_eq!(B.delay(3, 1.0), Duration::from_millis(1600));
        assert_eq!(B.delay(10, 1.0), Duration::from_secs(5));
        assert_eq!(B.delay(1000, 0.0), Duration::from_millis(2500));
    }

    #[test]
    fn jitter_stays_within_half_and_full_delay() {
        for _ in 0..1000 {
            let d = B.delay(2, fastrand::f64());
            assert!(
                d >= Duration::from_millis(400) && d <= Duration::from_millis(800),
                "{d:?}"
            );
        }
    }
}

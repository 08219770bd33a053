//! The one retry schedule of the sidecar's background fetches (the IdP's signing keys, the
//! Key Vault secret): `min`, doubling, never more than `max`, reset by a success. The
//! schedule itself is `backon`'s exponential backoff; this type fixes its shape (no jitter,
//! no end) and checks its bounds once, when it is built.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// A validated `{min, max}` doubling backoff.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackoffError {
    #[error("a backoff's first delay must be more than zero")]
    ZeroMin,
    #[error("a backoff's first delay ({min:?}) must not exceed its longest ({max:?})")]
    MinAboveMax { min: Duration, max: Duration },
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Result<Self, BackoffError> {
        if min.is_zero() {
            return Err(BackoffError::ZeroMin);
        }
        if min > max {
            return Err(BackoffError::MinAboveMax { min, max });
        }
        Ok(Self {
            builder: ExponentialBuilder::new()
                .with_min_delay(min)
                .with_max_delay(max)
                .with_factor(2.0)
                .without_max_times(),
        })
    }

    /// What every background fetch retries with: 1 s, 2 s, 4 s, … up to a minute. Each caller
    /// also keeps a retry no later than its own refresh period.
    pub fn fetch_retries() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(60))
            .expect("1 s..60 s is a valid backoff")
    }

    /// A fresh schedule, starting at `min`.
    pub fn start(&self) -> Retries {
        Retries {
            backoff: *self,
            delays: self.builder.build(),
        }
    }
}

/// One retrying loop's place in its schedule.
#[derive(Debug)]
pub struct Retries {
    backoff: Backoff,
    delays: ExponentialBackoff,
}

impl Retries {
    /// How long to wait after another failure.
    pub fn next_delay(&mut self) -> Duration {
        self.delays
            .next()
            .expect("a backoff without a retry limit never ends")
    }

    /// After a success: the next failure waits `min` again.
    pub fn reset(&mut self) {
        *self = self.backoff.start();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &[u64]) -> Vec<Duration> {
        s.iter().copied().map(Duration::from_secs).collect()
    }

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut retries = Backoff::fetch_retries().start();
        let first: Vec<_> = (0..9).map(|_| retries.next_delay()).collect();
        assert_eq!(first, secs(&[1, 2, 4, 8, 16, 32, 60, 60, 60]));
        retries.reset();
        assert_eq!(retries.next_delay(), Duration::from_secs(1));

        let mut short = Backoff::new(Duration::from_millis(250), Duration::from_secs(1))
            .unwrap()
            .start();
        let delays: Vec<_> = (0..4).map(|_| short.next_delay().as_millis()).collect();
        assert_eq!(delays, [250, 500, 1000, 1000]);
    }

    #[test]
    fn bounds_are_checked_when_built() {
        assert_eq!(
            Backoff::new(Duration::ZERO, Duration::from_secs(1)).unwrap_err(),
            BackoffError::ZeroMin
        );
        let err = Backoff::new(Duration::from_secs(2), Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("must not exceed"), "{err}");
        let same = Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).unwrap();
        assert_eq!(same.start().next_delay(), Duration::from_secs(1));
    }
}

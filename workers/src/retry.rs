//! The one backoff of the workers, for every retried request and write: exponential (factor 2) from `first`, capped
//! at `max`, with equal jitter: each wait lies between half and all of its step, so that restarted replicas do not
//! retry in step. Built on `backon` (already in the tree through kube-runtime). The loops that use it decide
//! themselves when to stop: after an attempt count, at a deadline, or when their writer gives up.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// An exponential backoff with equal jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The step of the first wait.
    pub first: Duration,
    /// The largest step.
    pub max: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self { first, max }
    }

    /// The waits, one per failure, without end.
    pub fn delays(&self) -> ExponentialBackoff {
        // backon's jitter adds up to one step to each wait: halving the steps keeps every wait within [step/2, step).
        ExponentialBuilder::new()
            .with_factor(2.0)
            .with_min_delay(self.first / 2)
            .with_max_delay(self.max.max(self.first) / 2)
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// The wait before retry number `attempt` (1-based), for loops that count their failures.
    pub fn wait(&self, attempt: u32) -> Duration {
        let index = usize::try_from(attempt.saturating_sub(1).min(64)).unwrap_or(64);
        self.delays().nth(index).unwrap_or(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_to_the_cap_with_equal_jitter() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for (attempt, step) in [(1, 1), (2, 2), (3, 4), (7, 60), (40, 60), (u32::MAX, 60)] {
            let wait = backoff.wait(attempt);
            let step = Duration::from_secs(step);
            assert!(wait >= step / 2 && wait <= step, "attempt {attempt}: {wait:?}");
        }
        let delays: Vec<Duration> = backoff.delays().take(8).collect();
        assert_eq!(delays.len(), 8, "the delays never end");
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(60)));
    }
}

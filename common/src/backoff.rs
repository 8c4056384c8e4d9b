//! The one retry backoff: a delay that doubles from `initial` to `max`, with
//! jitter so a rack of agents (or sinks) that failed together does not retry
//! in lockstep, reset once the thing retried has stayed healthy a while (the
//! shape of kube-rs's default: 800 ms doubling to 30 s).

use std::time::{Duration, Instant};

use rand::Rng;

/// Retry delays; see the module doc.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    healthy_after: Duration,
    jitter: bool,
    current: Duration,
    connected_at: Option<Instant>,
}

impl Backoff {
    /// 800 ms doubling to 30 s, jittered, reset after 60 s of health: for
    /// reconnecting to a peer.
    pub fn new() -> Self {
        Self::with(
            Duration::from_millis(800),
            Duration::from_secs(30),
            Duration::from_secs(60),
        )
    }

    /// Jittered delays from `initial` doubling to `max`; a connection that
    /// lasted `healthy_after` starts the next failure from `initial` again.
    pub fn with(initial: Duration, max: Duration, healthy_after: Duration) -> Self {
        Backoff {
            initial,
            max,
            healthy_after,
            jitter: true,
            current: initial,
            connected_at: None,
        }
    }

    /// Exact delays, no jitter: for a single local resource (a serial port,
    /// the store) where nothing else retries in step with us, and where a
    /// predictable schedule is easier to read in a log.
    pub fn exact(initial: Duration, max: Duration) -> Self {
        Backoff {
            jitter: false,
            ..Self::with(initial, max, Duration::ZERO)
        }
    }

    /// A connection was established (see `healthy_after`).
    pub fn connected(&mut self) {
        self.connected_at = Some(Instant::now());
    }

    /// It worked: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.current = self.initial;
        self.connected_at = None;
    }

    /// It failed: how long to wait before the next try.
    pub fn next_delay(&mut self) -> Duration {
        if let Some(at) = self.connected_at.take()
            && at.elapsed() >= self.healthy_after
        {
            self.current = self.initial;
        }
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        if self.jitter {
            // Between half and all of the base delay.
            base.mul_f64(rand::rng().random_range(0.5..=1.0))
        } else {
            base
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_jitter_and_resets_after_a_healthy_period() {
        let mut b = Backoff::with(
            Duration::from_millis(100),
            Duration::from_millis(800),
            Duration::ZERO,
        );
        let delays: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        let bases = [100u64, 200, 400, 800, 800, 800];
        for (d, base) in delays.iter().zip(bases) {
            assert!(
                *d <= Duration::from_millis(base) && *d >= Duration::from_millis(base / 2),
                "{d:?} vs {base}"
            );
        }
        b.connected();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn exact_doubles_to_a_bound_and_resets() {
        let mut b = Backoff::exact(Duration::from_millis(500), Duration::from_secs(15));
        let steps: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert_eq!(steps[0], Duration::from_millis(500));
        assert_eq!(steps[1], Duration::from_secs(1));
        assert_eq!(steps[7], Duration::from_secs(15));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }
}

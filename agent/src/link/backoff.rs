//! Reconnect delays: 800 ms doubling to 30 s, with jitter so a rack of agents
//! that lost the collector together does not reconnect in lockstep; reset
//! once a connection has stayed healthy for a while.

use std::time::{Duration, Instant};

use rand::Rng;

#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    healthy_after: Duration,
    current: Duration,
    connected_at: Option<Instant>,
}

impl Backoff {
    pub fn new() -> Self {
        Self::with(
            Duration::from_millis(800),
            Duration::from_secs(30),
            Duration::from_secs(60),
        )
    }

    pub fn with(initial: Duration, max: Duration, healthy_after: Duration) -> Self {
        Backoff {
            initial,
            max,
            healthy_after,
            current: initial,
            connected_at: None,
        }
    }

    /// A connection was established.
    pub fn connected(&mut self) {
        self.connected_at = Some(Instant::now());
    }

    /// The connection failed or ended: how long to wait before the next try.
    pub fn next_delay(&mut self) -> Duration {
        if let Some(at) = self.connected_at.take()
            && at.elapsed() >= self.healthy_after
        {
            self.current = self.initial;
        }
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        // Between half and all of the base delay.
        let jitter = rand::rng().random_range(0.5..=1.0);
        base.mul_f64(jitter)
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
}

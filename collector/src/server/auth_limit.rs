//! Wrong-password rate limit per client address, pure over the clock it is
//! given: a few failures a minute are allowed, then that address's checks
//! are refused unchecked until the minute is over. Other addresses are
//! never affected. Shared by the NUT server and the status page's login.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The minute failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; the expired windows go first, then the
/// oldest (memory stays bounded under a spray of addresses).
pub const MAX_TRACKED: usize = 4096;

/// Failures per address in the current minute.
#[derive(Debug)]
pub struct AuthLimiter {
    per_minute: u32,
    failures: HashMap<IpAddr, (Instant, u32)>,
}

impl AuthLimiter {
    pub fn new(per_minute: u32) -> Self {
        AuthLimiter {
            per_minute,
            failures: HashMap::new(),
        }
    }

    /// True while `addr` has used up its failures for this minute.
    pub fn blocked(&self, addr: IpAddr, now: Instant) -> bool {
        self.blocked_for(addr, now).is_some()
    }

    /// How long `addr` stays refused, if it used up its failures.
    pub fn blocked_for(&self, addr: IpAddr, now: Instant) -> Option<Duration> {
        let (start, n) = self.failures.get(&addr)?;
        let left = WINDOW.saturating_sub(now.duration_since(*start));
        (*n >= self.per_minute && !left.is_zero()).then_some(left)
    }

    /// Counts a failure; true when this one used up the allowance (log it once).
    pub fn failed(&mut self, addr: IpAddr, now: Instant) -> bool {
        if self.failures.len() >= MAX_TRACKED && !self.failures.contains_key(&addr) {
            self.failures
                .retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if self.failures.len() >= MAX_TRACKED
                && let Some(oldest) = self
                    .failures
                    .iter()
                    .min_by_key(|(_, (start, _))| *start)
                    .map(|(a, _)| *a)
            {
                self.failures.remove(&oldest);
            }
        }
        let entry = self.failures.entry(addr).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 == self.per_minute
    }

    /// Addresses remembered now.
    pub fn tracked(&self) -> usize {
        self.failures.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_for_the_rest_of_its_minute_only() {
        let mut l = AuthLimiter::new(3);
        let t0 = Instant::now();
        let bad: IpAddr = [10, 0, 0, 9].into();
        let good: IpAddr = [10, 0, 0, 1].into();
        assert!(!l.failed(bad, t0));
        assert!(!l.failed(bad, t0));
        assert!(!l.blocked(bad, t0));
        assert!(l.failed(bad, t0), "the third failure is the one to log");
        assert!(l.blocked(bad, t0 + Duration::from_secs(59)));
        assert!(!l.blocked(good, t0));
        assert!(!l.blocked(bad, t0 + WINDOW));
    }
}

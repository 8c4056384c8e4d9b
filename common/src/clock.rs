//! The wall clock as the whole project counts it: Unix milliseconds.
//!
//! Wall time is for records people read (events, samples, certificates).
//! Deadlines and timeouts use `std::time::Instant` or tokio's clock, which
//! do not jump when a Raspberry Pi without a real-time clock syncs NTP.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Unix milliseconds now; 0 for a clock set before 1970.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Unix milliseconds that advance with the monotonic clock: the wall time
/// at this process's first call, plus the time elapsed since. For deadlines
/// kept as Unix ms (the power machine's, which are saved and shown): a
/// Raspberry Pi without a real-time clock that syncs NTP mid-outage jumps
/// its wall clock forward by hours, which would expire every deadline at
/// once; this clock does not jump.
pub fn steady_ms() -> i64 {
    static BASE: OnceLock<(i64, Instant)> = OnceLock::new();
    let (wall, at) = BASE.get_or_init(|| (now_ms(), Instant::now()));
    let elapsed = i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX);
    wall.saturating_add(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_time_starts_at_the_wall_clock_and_only_moves_forward() {
        let a = steady_ms();
        assert!((a - now_ms()).abs() < 1000, "{a}");
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = steady_ms();
        assert!(b >= a + 5, "{a} {b}");
    }

    #[test]
    fn is_after_2020_and_moves_forward() {
        let a = now_ms();
        assert!(a > 1_577_836_800_000, "{a}");
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(now_ms() > a);
    }
}

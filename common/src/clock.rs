//! The wall clock as the whole project counts it: Unix milliseconds.
//!
//! Wall time is for records people read (events, samples, certificates).
//! Deadlines and timeouts use `std::time::Instant` or tokio's clock, which
//! do not jump when a Raspberry Pi without a real-time clock syncs NTP.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix milliseconds now; 0 for a clock set before 1970.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_after_2020_and_moves_forward() {
        let a = now_ms();
        assert!(a > 1_577_836_800_000, "{a}");
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(now_ms() > a);
    }
}

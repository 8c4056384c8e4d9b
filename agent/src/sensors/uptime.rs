//! Seconds since boot: CLOCK_BOOTTIME on the real host, /proc/uptime under
//! a fixture root.

use nix::time::{ClockId, clock_gettime};

/// CLOCK_BOOTTIME, the clock /proc/uptime prints (suspend included), read
/// through the vDSO: no system call, no text.
pub fn since_boot() -> Option<f64> {
    let t = clock_gettime(ClockId::CLOCK_BOOTTIME).ok()?;
    Some(t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
}

/// Parses "12345.67 23456.78" (uptime, idle time summed over CPUs).
pub fn parse_uptime(text: &str) -> Option<f64> {
    let v: f64 = text.split_ascii_whitespace().next()?.parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_first_number() {
        assert_eq!(parse_uptime("350735.47 234388.90\n"), Some(350_735.47));
        assert_eq!(parse_uptime("soon"), None);
        assert_eq!(parse_uptime("-1 0"), None);
    }

    #[test]
    fn boottime_is_what_proc_uptime_says() {
        let proc_uptime =
            || parse_uptime(&std::fs::read_to_string("/proc/uptime").unwrap()).unwrap();
        let before = proc_uptime();
        let clock = since_boot().unwrap();
        let after = proc_uptime();
        // /proc/uptime rounds down to hundredths.
        assert!(
            clock >= before && clock < after + 0.01,
            "CLOCK_BOOTTIME {clock} outside /proc/uptime {before}..{after}"
        );
    }
}

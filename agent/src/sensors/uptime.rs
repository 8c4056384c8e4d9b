//! Seconds since boot from /proc/uptime.

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
}

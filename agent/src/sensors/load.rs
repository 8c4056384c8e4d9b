//! Load averages: sysinfo(2) on the real host, /proc/loadavg under a
//! fixture root.

use nodewarden_proto::v1::LoadAverage;

use super::syscall;

/// The kernel's load averages through sysinfo(2).
pub fn from_kernel() -> std::io::Result<LoadAverage> {
    let [load1, load5, load15] = syscall::load_averages()?;
    Ok(LoadAverage {
        load1,
        load5,
        load15,
    })
}

/// Parses "0.52 0.58 0.59 1/389 12345".
pub fn parse_loadavg(text: &str) -> Option<LoadAverage> {
    let mut words = text.split_ascii_whitespace();
    let mut next = || -> Option<f64> {
        let v: f64 = words.next()?.parse().ok()?;
        (v.is_finite() && v >= 0.0).then_some(v)
    };
    Some(LoadAverage {
        load1: next()?,
        load5: next()?,
        load15: next()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_three_averages() {
        let l = parse_loadavg("0.52 0.58 1.59 1/389 12345\n").unwrap();
        assert_eq!((l.load1, l.load5, l.load15), (0.52, 0.58, 1.59));
        assert!(parse_loadavg("0.52 zero").is_none());
        assert!(parse_loadavg("").is_none());
    }
}

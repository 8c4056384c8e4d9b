//! How numbers, units and instants read in the terminal.

use std::time::Duration;

use nodewarden_common::units::format_duration;

/// The unit of a history series, as the Admin API names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unit {
    /// Degrees Celsius.
    Celsius,
    /// 0-100.
    Percent,
    /// Bytes, shown in binary multiples.
    Bytes,
    /// Hertz, shown in MHz/GHz.
    Hertz,
    /// Seconds, shown as a compact duration.
    Seconds,
    /// Volts.
    Volts,
    /// Anything else: the name is printed after the value.
    Other(String),
}

impl Unit {
    /// Reads the `unit` field of a `HistoryResponse`.
    pub fn from_api(name: &str) -> Self {
        match name {
            "celsius" => Self::Celsius,
            "percent" => Self::Percent,
            "bytes" => Self::Bytes,
            "hertz" => Self::Hertz,
            "seconds" => Self::Seconds,
            "volts" => Self::Volts,
            other => Self::Other(other.to_owned()),
        }
    }

    /// A value with its unit, e.g. "72.5 °C", "1.2 GiB", "1.50 GHz".
    pub fn format(&self, value: f64) -> String {
        if !value.is_finite() {
            return value.to_string();
        }
        match self {
            Self::Celsius => format!("{value:.1} °C"),
            Self::Percent => format!("{value:.1} %"),
            Self::Bytes => format_bytes(value),
            Self::Hertz => format_hertz(value),
            Self::Seconds if value >= 0.0 => format_duration(Duration::from_secs_f64(value)),
            Self::Seconds => format!("{value:.1} s"),
            Self::Volts => format!("{value:.1} V"),
            Self::Other(name) if name.is_empty() => format_plain(value),
            Self::Other(name) => format!("{} {name}", format_plain(value)),
        }
    }
}

/// A number without unit: integers stay integers, others get 2 decimals.
fn format_plain(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

const BINARY_UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/// The binary multiple that suits `bytes` (index into "B", "KiB", ...).
fn binary_scale(bytes: f64) -> usize {
    let mut scale = 0;
    let mut v = bytes.abs();
    while v >= 1024.0 && scale + 1 < BINARY_UNITS.len() {
        v /= 1024.0;
        scale += 1;
    }
    scale
}

fn scaled(bytes: f64, scale: usize) -> String {
    let v = bytes / 1024f64.powi(scale as i32);
    if scale == 0 {
        format!("{v:.0}")
    } else if v < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// "512 B", "3.7 GiB", "28 GiB".
pub fn format_bytes(bytes: f64) -> String {
    let scale = binary_scale(bytes);
    format!("{} {}", scaled(bytes, scale), BINARY_UNITS[scale])
}

/// "1.2/3.7 GiB": a part of a whole, both in the whole's unit.
pub fn format_bytes_of(part: u64, whole: u64) -> String {
    let scale = binary_scale(whole as f64);
    format!(
        "{}/{} {}",
        scaled(part as f64, scale),
        scaled(whole as f64, scale),
        BINARY_UNITS[scale]
    )
}

/// "600 MHz", "1.50 GHz".
pub fn format_hertz(hz: f64) -> String {
    if hz >= 1e9 {
        format!("{:.2} GHz", hz / 1e9)
    } else if hz >= 1e6 {
        format!("{:.0} MHz", hz / 1e6)
    } else if hz >= 1e3 {
        format!("{:.0} kHz", hz / 1e3)
    } else {
        format!("{hz:.1} Hz")
    }
}

/// "3s ago", "5m03s ago", "in 2s" (clock skew), "never".
pub fn format_ago(then_ms: i64, now_ms: i64) -> String {
    if then_ms <= 0 {
        return "never".to_owned();
    }
    let delta = now_ms - then_ms;
    if delta < 0 {
        // Agent clocks can run ahead of the collector's; say so rather than
        // printing a negative age.
        return format!(
            "in {}",
            format_duration(Duration::from_millis(delta.unsigned_abs()))
        );
    }
    if delta < 1000 {
        return "now".to_owned();
    }
    format!(
        "{} ago",
        format_duration(Duration::from_millis(delta.unsigned_abs()))
    )
}

pub use nodewarden_common::units::Utc;

/// "2026-11-23 11:23:17Z".
pub fn format_timestamp(ms: i64) -> String {
    let t = Utc::from_unix_ms(ms);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// A time label sized to the span it sits in: "11:23:17" for short spans,
/// "11:23" within a day, "11-23 11:23" beyond.
pub fn format_time_of(ms: i64, span_ms: i64) -> String {
    let t = Utc::from_unix_ms(ms);
    if span_ms <= 15 * 60_000 {
        format!("{:02}:{:02}:{:02}", t.hour, t.minute, t.second)
    } else if span_ms <= 86_400_000 {
        format!("{:02}:{:02}", t.hour, t.minute)
    } else {
        format!("{:02}-{:02} {:02}:{:02}", t.month, t.day, t.hour, t.minute)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_read_naturally() {
        assert_eq!(Unit::from_api("celsius").format(72.46), "72.5 °C");
        assert_eq!(Unit::from_api("percent").format(43.14), "43.1 %");
        assert_eq!(
            Unit::from_api("bytes").format(3.7 * 1024.0 * 1024.0 * 1024.0),
            "3.7 GiB"
        );
        assert_eq!(Unit::from_api("hertz").format(1.5e9), "1.50 GHz");
        assert_eq!(Unit::from_api("hertz").format(600e6), "600 MHz");
        assert_eq!(Unit::from_api("seconds").format(303.0), "5m03s");
        assert_eq!(Unit::from_api("volts").format(229.84), "229.8 V");
        assert_eq!(Unit::from_api("").format(3.0), "3");
        assert_eq!(Unit::from_api("widgets").format(2.5), "2.50 widgets");
    }

    #[test]
    fn memory_share_uses_the_totals_unit() {
        let gib = 1024 * 1024 * 1024;
        assert_eq!(format_bytes_of(gib + gib / 5, 4 * gib), "1.2/4.0 GiB");
        assert_eq!(format_bytes_of(300 * 1024 * 1024, 16 * gib), "0.3/16 GiB");
        assert_eq!(format_bytes(512.0), "512 B");
    }

    #[test]
    fn ages_are_relative() {
        assert_eq!(format_ago(1_000, 4_200), "3s ago");
        assert_eq!(format_ago(0, 4_200), "never");
        assert_eq!(format_ago(5_000, 4_200), "in 800ms");
        assert_eq!(format_ago(4_000, 4_200), "now");
    }

    #[test]
    fn utc_calendar_is_right_across_leap_days() {
        // 2024-02-29 12:34:56 UTC and 2026-11-23 00:00:00 UTC (date -d ... +%s).
        assert_eq!(format_timestamp(1_709_210_096_000), "2024-02-29 12:34:56Z");
        assert_eq!(format_timestamp(1_795_392_000_000), "2026-11-23 00:00:00Z");
        assert_eq!(format_timestamp(0), "1970-01-01 00:00:00Z");
        assert_eq!(format_time_of(1_709_210_096_000, 600_000), "12:34:56");
        assert_eq!(format_time_of(1_709_210_096_000, 3_600_000), "12:34");
        assert_eq!(
            format_time_of(1_709_210_096_000, 7 * 86_400_000),
            "02-29 12:34"
        );
    }
}

//! Values derived from a sample the same way everywhere they are shown
//! (tables, JSON, Prometheus), so the CLI and /metrics never disagree.

use nodewarden_proto::throttle;
use nodewarden_proto::v1::{Memory, Sample, Throttling, ThrottlingSource};

/// The hottest sensor the agent marked as the CPU's, in °C.
pub fn cpu_temperature_celsius(sample: &Sample) -> Option<f64> {
    sample
        .temperatures
        .iter()
        .filter(|t| t.is_cpu)
        .map(|t| f64::from(t.millicelsius) / 1000.0)
        .reduce(f64::max)
}

/// Memory in use: total minus MemAvailable (never total minus MemFree,
/// which counts reclaimable cache as used).
pub fn memory_used_bytes(memory: &Memory) -> u64 {
    memory.total_bytes.saturating_sub(memory.available_bytes)
}

/// Share of memory in use, 0-1; None when the total is unknown.
pub fn memory_used_ratio(memory: &Memory) -> Option<f64> {
    (memory.total_bytes > 0).then(|| memory_used_bytes(memory) as f64 / memory.total_bytes as f64)
}

/// The throttle flags this source can report: an rpi_volt hwmon alarm only
/// knows about under-voltage, so the other bits are not "0", they are unknown.
pub fn meaningful_flags(throttling: &Throttling) -> Vec<throttle::Flag> {
    match throttling.source() {
        ThrottlingSource::HwmonRpiVolt => throttle::FLAGS
            .into_iter()
            .filter(|f| f.bit == throttle::UNDER_VOLTAGE)
            .collect(),
        _ => throttle::FLAGS.to_vec(),
    }
}

/// Plain-language name of a throttle flag.
pub fn flag_meaning(flag: throttle::Flag) -> &'static str {
    match flag.bit {
        throttle::UNDER_VOLTAGE => "under-voltage",
        throttle::FREQUENCY_CAPPED => "ARM frequency capped",
        throttle::THROTTLED => "throttled",
        throttle::SOFT_TEMP_LIMIT => "soft temperature limit",
        _ => flag.name,
    }
}

/// Plain-language meaning of a NUT ups.status token; None for tokens NUT
/// does not define (they are shown as they are).
pub fn ups_status_meaning(token: &str) -> Option<&'static str> {
    Some(match token {
        "OL" => "on line (mains)",
        "OB" => "on battery",
        "LB" => "low battery",
        "HB" => "high battery",
        "RB" => "replace battery",
        "CHRG" => "charging",
        "DISCHRG" => "discharging",
        "BYPASS" => "on bypass",
        "CAL" => "calibrating",
        "OFF" => "output off",
        "OVER" => "overloaded",
        "TRIM" => "trimming high input voltage",
        "BOOST" => "boosting low input voltage",
        "FSD" => "forced shutdown",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use nodewarden_proto::v1::Temperature;

    use super::*;

    #[test]
    fn cpu_temperature_is_the_hottest_cpu_sensor_only() {
        let t = |mc, is_cpu| Temperature {
            millicelsius: mc,
            is_cpu,
            ..Default::default()
        };
        let sample = Sample {
            temperatures: vec![t(91_000, false), t(55_500, true), t(61_250, true)],
            ..Default::default()
        };
        assert_eq!(cpu_temperature_celsius(&sample), Some(61.25));
        let no_cpu = Sample {
            temperatures: vec![t(40_000, false)],
            ..Default::default()
        };
        assert_eq!(cpu_temperature_celsius(&no_cpu), None);
    }

    #[test]
    fn used_memory_counts_cache_as_free() {
        let m = Memory {
            total_bytes: 4000,
            available_bytes: 3000,
            free_bytes: 500,
            ..Default::default()
        };
        assert_eq!(memory_used_bytes(&m), 1000);
        assert_eq!(memory_used_ratio(&m), Some(0.25));
        assert_eq!(memory_used_ratio(&Memory::default()), None);
    }
}

//! Turning samples and UPS statuses into events. Pure: state in, events out,
//! so every rule is unit-tested without a server.

use nodewarden_common::ups::UpsFlags;
use nodewarden_proto::throttle::{self, OCCURRED_SHIFT, UNDER_VOLTAGE};
use nodewarden_proto::v1::{Event, Sample, Severity, UpsStatus};

use serde::Deserialize;

/// The thresholds of the sample rules (`[events]` in the collector config).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventThresholds {
    /// CPU temperature that raises a temperature_high event.
    pub temperature_high_celsius: f64,
    /// Drop below high minus this to clear it (no flapping at the threshold).
    pub temperature_hysteresis_celsius: f64,
}

impl Default for EventThresholds {
    fn default() -> Self {
        EventThresholds {
            temperature_high_celsius: 80.0,
            temperature_hysteresis_celsius: 5.0,
        }
    }
}

/// What the collector remembers per node to notice changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeEventState {
    /// Last throttle word seen (None before the first sample with one).
    throttle: Option<u32>,
    temperature_high: bool,
}

/// Builds an event.
pub fn event(ts: i64, subject: &str, kind: &str, severity: Severity, message: String) -> Event {
    Event {
        timestamp_ms: ts,
        subject: subject.to_string(),
        kind: kind.to_string(),
        severity: severity as i32,
        message,
    }
}

/// Hottest CPU temperature in a sample, degrees C.
pub fn cpu_temp_celsius(sample: &Sample) -> Option<f64> {
    sample
        .temperatures
        .iter()
        .filter(|t| t.is_cpu)
        .map(|t| t.millicelsius)
        .max()
        .map(|m| f64::from(m) / 1000.0)
}

fn names(word: u32) -> String {
    throttle::active_now(word)
        .map(|f| f.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Events one new sample causes for `node`.
pub fn sample_events(
    node: &str,
    state: &mut NodeEventState,
    sample: &Sample,
    thresholds: &EventThresholds,
) -> Vec<Event> {
    let ts = sample.timestamp_ms;
    let mut out = Vec::new();
    if let Some(t) = &sample.throttling {
        // Where only hwmon's rpi_volt alarm is readable (no mailbox access),
        // the alarm is the under-voltage-now bit.
        let alarm = if t.under_voltage_alarm {
            UNDER_VOLTAGE
        } else {
            0
        };
        let word = t.get_throttled | alarm;
        let prev = state.throttle.unwrap_or(0);
        let first_sight = state.throttle.is_none();
        // Bits 1-3: capped, throttled, soft limit (now).
        let limits = |w: u32| w & 0b1110;
        if limits(word) != 0 && limits(prev) == 0 {
            out.push(event(
                ts,
                node,
                "throttling_started",
                Severity::Warning,
                format!("throttling: {}", names(limits(word))),
            ));
        } else if limits(word) == 0 && limits(prev) != 0 {
            out.push(event(
                ts,
                node,
                "throttling_stopped",
                Severity::Info,
                "throttling stopped".into(),
            ));
        }
        let uv_now = word & UNDER_VOLTAGE != 0;
        let uv_past = word & (UNDER_VOLTAGE << OCCURRED_SHIFT) != 0;
        let prev_past = prev & (UNDER_VOLTAGE << OCCURRED_SHIFT) != 0;
        if uv_now && prev & UNDER_VOLTAGE == 0 {
            out.push(event(
                ts,
                node,
                "under_voltage",
                Severity::Critical,
                "under-voltage now: the power supply cannot hold 5 V under this load".into(),
            ));
        } else if uv_past && (!prev_past || first_sight) && !uv_now {
            out.push(event(
                ts,
                node,
                "under_voltage",
                Severity::Warning,
                "under-voltage has occurred since boot (between samples)".into(),
            ));
        }
        state.throttle = Some(word);
    }
    if let Some(temp) = cpu_temp_celsius(sample) {
        let high = thresholds.temperature_high_celsius;
        if !state.temperature_high && temp >= high {
            state.temperature_high = true;
            out.push(event(
                ts,
                node,
                "temperature_high",
                Severity::Warning,
                format!("CPU at {temp:.1} °C (threshold {high:.0} °C)"),
            ));
        } else if state.temperature_high && temp < high - thresholds.temperature_hysteresis_celsius
        {
            state.temperature_high = false;
            out.push(event(
                ts,
                node,
                "temperature_normal",
                Severity::Info,
                format!("CPU back to {temp:.1} °C"),
            ));
        }
    }
    out
}

/// Events a UPS status change causes. `prev` is the last status seen.
pub fn ups_events(node: &str, prev: Option<&UpsStatus>, new: &UpsStatus) -> Vec<Event> {
    let ts = new.timestamp_ms;
    let name = new.ups_name.as_str();
    let subject = name;
    let mut out = Vec::new();
    let prev_comm = prev.is_none_or(|p| p.communication_ok);
    if !new.communication_ok {
        if prev_comm {
            out.push(event(
                ts,
                subject,
                "ups_comm_lost",
                Severity::Critical,
                format!(
                    "lost communication with UPS {name} on {node}: {}",
                    new.communication_error
                ),
            ));
        }
        return out;
    }
    if !prev_comm {
        out.push(event(
            ts,
            subject,
            "ups_comm_restored",
            Severity::Info,
            format!("UPS {name} answers again"),
        ));
    }
    let now = UpsFlags::from_tokens(&new.status);
    // What the last status that was read said (none after a lost reading).
    let was = prev
        .filter(|p| p.communication_ok)
        .map(|p| UpsFlags::from_tokens(&p.status))
        .unwrap_or_default();
    let charge = new
        .battery_charge_percent
        .map(|c| format!(", battery {c:.0} %"))
        .unwrap_or_default();
    if now.on_battery && !was.on_battery {
        out.push(event(
            ts,
            subject,
            "ups_on_battery",
            Severity::Critical,
            format!("UPS {name} on battery{charge}"),
        ));
    }
    if now.online && was.on_battery {
        out.push(event(
            ts,
            subject,
            "ups_on_line",
            Severity::Info,
            format!("UPS {name} back on mains{charge}"),
        ));
    }
    if now.low_battery && !was.low_battery {
        out.push(event(
            ts,
            subject,
            "ups_low_battery",
            Severity::Critical,
            format!("UPS {name} battery low{charge}"),
        ));
    }
    if now.replace_battery && !was.replace_battery {
        out.push(event(
            ts,
            subject,
            "ups_replace_battery",
            Severity::Warning,
            format!("UPS {name} asks for a new battery"),
        ));
    }
    if now.calibrating && !was.calibrating {
        out.push(event(
            ts,
            subject,
            "ups_test_started",
            Severity::Info,
            format!("UPS {name} battery test running"),
        ));
    }
    if !now.calibrating && was.calibrating {
        let (kind, severity, verdict) = if now.replace_battery {
            (
                "ups_test_failed",
                Severity::Warning,
                "failed: replace the battery",
            )
        } else {
            ("ups_test_passed", Severity::Info, "passed")
        };
        out.push(event(
            ts,
            subject,
            kind,
            severity,
            format!("UPS {name} battery test {verdict}"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use nodewarden_proto::v1::{Temperature, Throttling};

    use super::*;

    fn sample(word: Option<u32>, temp_c: Option<i32>) -> Sample {
        Sample {
            timestamp_ms: 1,
            throttling: word.map(|w| Throttling {
                get_throttled: w,
                ..Default::default()
            }),
            temperatures: temp_c
                .map(|t| {
                    vec![Temperature {
                        millicelsius: t * 1000,
                        is_cpu: true,
                        ..Default::default()
                    }]
                })
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    fn kinds(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.kind.as_str()).collect()
    }

    #[test]
    fn under_voltage_and_throttling_rise_and_fall_once() {
        let th = EventThresholds::default();
        let mut st = NodeEventState::default();
        assert!(sample_events("pi", &mut st, &sample(Some(0), None), &th).is_empty());
        let e = sample_events("pi", &mut st, &sample(Some(0x50005), None), &th);
        assert_eq!(kinds(&e), ["throttling_started", "under_voltage"]);
        assert_eq!(e[1].severity, Severity::Critical as i32);
        // Same word again: nothing new.
        assert!(sample_events("pi", &mut st, &sample(Some(0x50005), None), &th).is_empty());
        // Over, but it happened since boot: only "stopped".
        assert_eq!(
            kinds(&sample_events(
                "pi",
                &mut st,
                &sample(Some(0x50000), None),
                &th
            )),
            ["throttling_stopped"]
        );
    }

    #[test]
    fn under_voltage_between_samples_is_caught_by_the_since_boot_bit() {
        let th = EventThresholds::default();
        let mut st = NodeEventState::default();
        sample_events("pi", &mut st, &sample(Some(0), None), &th);
        let e = sample_events("pi", &mut st, &sample(Some(0x10000), None), &th);
        assert_eq!(kinds(&e), ["under_voltage"]);
        assert_eq!(e[0].severity, Severity::Warning as i32);
    }

    #[test]
    fn the_hwmon_under_voltage_alarm_raises_and_clears_like_the_word() {
        let th = EventThresholds::default();
        let mut st = NodeEventState::default();
        let alarm = |on: bool| Sample {
            timestamp_ms: 1,
            throttling: Some(Throttling {
                source: nodewarden_proto::v1::ThrottlingSource::HwmonRpiVolt as i32,
                get_throttled: 0,
                under_voltage_alarm: on,
            }),
            ..Default::default()
        };
        assert!(sample_events("pi", &mut st, &alarm(false), &th).is_empty());
        let e = sample_events("pi", &mut st, &alarm(true), &th);
        assert_eq!(kinds(&e), ["under_voltage"]);
        assert_eq!(e[0].severity, Severity::Critical as i32);
        assert!(sample_events("pi", &mut st, &alarm(true), &th).is_empty());
        assert!(sample_events("pi", &mut st, &alarm(false), &th).is_empty());
        assert_eq!(
            kinds(&sample_events("pi", &mut st, &alarm(true), &th)),
            ["under_voltage"]
        );
    }

    #[test]
    fn temperature_has_hysteresis() {
        let th = EventThresholds::default();
        let mut st = NodeEventState::default();
        assert_eq!(
            kinds(&sample_events("x", &mut st, &sample(None, Some(81)), &th)),
            ["temperature_high"]
        );
        assert!(sample_events("x", &mut st, &sample(None, Some(78)), &th).is_empty());
        assert!(sample_events("x", &mut st, &sample(None, Some(81)), &th).is_empty());
        assert_eq!(
            kinds(&sample_events("x", &mut st, &sample(None, Some(70)), &th)),
            ["temperature_normal"]
        );
    }

    fn ups(status: &[&str], comm: bool) -> UpsStatus {
        UpsStatus {
            ups_name: "riello".into(),
            communication_ok: comm,
            communication_error: if comm {
                String::new()
            } else {
                "no reply".into()
            },
            status: status.iter().map(|s| s.to_string()).collect(),
            battery_charge_percent: Some(80.0),
            ..Default::default()
        }
    }

    #[test]
    fn ups_transitions() {
        let ol = ups(&["OL"], true);
        let ob = ups(&["OB", "DISCHRG"], true);
        let lb = ups(&["OB", "LB"], true);
        let lost = ups(&[], false);
        assert!(ups_events("n", None, &ol).is_empty());
        assert_eq!(kinds(&ups_events("n", Some(&ol), &ob)), ["ups_on_battery"]);
        assert_eq!(kinds(&ups_events("n", Some(&ob), &lb)), ["ups_low_battery"]);
        assert_eq!(kinds(&ups_events("n", Some(&lb), &lost)), ["ups_comm_lost"]);
        assert!(ups_events("n", Some(&lost), &lost).is_empty());
        assert_eq!(
            kinds(&ups_events("n", Some(&lost), &ol)),
            ["ups_comm_restored"]
        );
        assert_eq!(kinds(&ups_events("n", Some(&ob), &ol)), ["ups_on_line"]);
        let cal = ups(&["OL", "CAL"], true);
        assert_eq!(
            kinds(&ups_events("n", Some(&ol), &cal)),
            ["ups_test_started"]
        );
        assert_eq!(
            kinds(&ups_events("n", Some(&cal), &ups(&["OL", "RB"], true))),
            ["ups_replace_battery", "ups_test_failed"]
        );
    }
}

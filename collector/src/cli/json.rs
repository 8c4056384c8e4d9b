//! `--json`: the Admin API's answers as stable JSON for scripts.
//!
//! The shape is written out here rather than derived from the protobuf
//! types, so renaming a proto field cannot silently break someone's script.
//! Conventions:
//! - keys are snake_case and carry their unit: `_ms` (unix milliseconds or a
//!   duration in ms), `_seconds`, `_bytes`, `_celsius`, `_hertz`,
//!   `_percent` (0-100), `_volts`;
//! - a reading the source did not provide is `null` (never 0);
//! - enums are lower-case strings (`"critical"`, `"thermal_zone"`);
//! - derived values the CLI shows are included so scripts agree with it:
//!   `cpu_temperature_celsius` (hottest CPU sensor), `memory.used_bytes`
//!   (total minus available), `throttling.now` / `throttling.since_boot`.
//!
//! Top level per command: `nodes` → `{"nodes": [node...]}`; `node` → node;
//! `history` → `{"node", "metric", "unit", "resolution_ms", "points":
//! [{"timestamp_ms", "value", "min", "max"}], "available_metrics"}`;
//! `events` → `{"events": [{"timestamp_ms", "subject", "kind", "severity",
//! "message"}]}`; `ups` → `{"ups": [ups...]}`.

use nodewarden_proto::throttle;
use nodewarden_proto::v1::{
    Event, HistoryResponse, NodeInfo, PressureLine, Sample, TemperatureSource, Throttling, UpsInfo,
    UpsStatus,
};
use serde_json::{Value, json};

use super::events::severity_name;
use super::readings::{cpu_temperature_celsius, meaningful_flags, memory_used_bytes};

fn non_empty(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        Value::from(text)
    }
}

fn timestamp(ms: i64) -> Value {
    if ms > 0 { Value::from(ms) } else { Value::Null }
}

/// `{"nodes": [...]}` sorted by name.
pub fn nodes(nodes: &[NodeInfo]) -> Value {
    let mut sorted: Vec<&NodeInfo> = nodes.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    json!({ "nodes": sorted.into_iter().map(node).collect::<Vec<_>>() })
}

/// One node with its latest sample.
pub fn node(n: &NodeInfo) -> Value {
    json!({
        "name": n.name,
        "role": non_empty(&n.role),
        "board_model": non_empty(&n.board_model),
        "arch": non_empty(&n.arch),
        "kernel_version": non_empty(&n.kernel_version),
        "os_name": non_empty(&n.os_name),
        "agent_version": non_empty(&n.agent_version),
        "online": n.online,
        "offline_reason": non_empty(&n.offline_reason),
        "first_seen_ms": timestamp(n.first_seen_ms),
        "last_seen_ms": timestamp(n.last_seen_ms),
        "peer_address": non_empty(&n.peer_address),
        "sample_interval_ms": (n.sample_interval_ms > 0).then_some(n.sample_interval_ms),
        // logind's answer at the agent's start: anything but "yes" (or
        // "custom", a configured command) means a power cut cannot power
        // this node off.
        "can_power_off": non_empty(&n.can_power_off),
        "k3s_role": non_empty(&n.k3s_role),
        // What nodewarden set on the Kubernetes node ([node_health]).
        "kubernetes": {
            "conditions": n.kube_conditions.iter().map(|c| json!({
                "type": c.r#type,
                "status": c.status,
                "reason": c.reason,
                "message": c.message,
                "last_transition_ms": timestamp(c.last_transition_ms),
            })).collect::<Vec<_>>(),
            "labels": n.kube_labels.iter().collect::<std::collections::BTreeMap<_, _>>(),
            "taints": n.kube_taints,
        },
        "latest": n.latest.as_ref().map(sample),
    })
}

fn pressure_line(line: Option<&PressureLine>) -> Value {
    line.map_or(Value::Null, |l| {
        json!({
            "avg10_percent": l.avg10_percent,
            "avg60_percent": l.avg60_percent,
            "avg300_percent": l.avg300_percent,
            "total_seconds": l.total_seconds,
        })
    })
}

fn throttling(t: &Throttling) -> Value {
    let flags = meaningful_flags(t);
    let word = t.get_throttled;
    let names = |shift: u32| -> Vec<&str> {
        flags
            .iter()
            .filter(|f| word & (f.bit << shift) != 0)
            .map(|f| f.name)
            .collect()
    };
    json!({
        "source": match t.source() {
            nodewarden_proto::v1::ThrottlingSource::Mailbox => "mailbox",
            nodewarden_proto::v1::ThrottlingSource::HwmonRpiVolt => "hwmon_rpi_volt",
            nodewarden_proto::v1::ThrottlingSource::Unspecified => "unknown",
        },
        "get_throttled": word,
        "now": names(0),
        "since_boot": names(throttle::OCCURRED_SHIFT),
        "under_voltage_alarm": t.under_voltage_alarm,
    })
}

fn sample(s: &Sample) -> Value {
    json!({
        "seq": s.seq,
        "timestamp_ms": s.timestamp_ms,
        "cpu_temperature_celsius": cpu_temperature_celsius(s),
        "temperatures": s.temperatures.iter().map(|t| json!({
            "source": match t.source() {
                TemperatureSource::ThermalZone => "thermal_zone",
                TemperatureSource::Hwmon => "hwmon",
                TemperatureSource::Unspecified => "unknown",
            },
            "device": t.device,
            "chip_name": t.chip_name,
            "sensor": non_empty(&t.sensor),
            "label": non_empty(&t.label),
            "celsius": f64::from(t.millicelsius) / 1000.0,
            "is_cpu": t.is_cpu,
        })).collect::<Vec<_>>(),
        "cpu": s.cpu.as_ref().map(|c| json!({
            "usage_percent": c.usage_percent,
            "logical_cpus": c.logical_cpus,
            "measured_arm_clock_hertz": (c.measured_arm_clock_hertz > 0).then_some(c.measured_arm_clock_hertz),
            "cores": c.cores.iter().map(|core| json!({
                "id": core.id,
                "usage_percent": core.usage_percent,
                "frequency_hertz": (core.frequency_hertz > 0).then_some(core.frequency_hertz),
            })).collect::<Vec<_>>(),
        })),
        "load": s.load.as_ref().map(|l| json!({
            "load1": l.load1, "load5": l.load5, "load15": l.load15,
        })),
        "memory": s.memory.as_ref().map(|m| json!({
            "total_bytes": m.total_bytes,
            "available_bytes": m.available_bytes,
            "used_bytes": memory_used_bytes(m),
            "free_bytes": m.free_bytes,
            "buffers_bytes": m.buffers_bytes,
            "cached_bytes": m.cached_bytes,
            "swap_total_bytes": m.swap_total_bytes,
            "swap_free_bytes": m.swap_free_bytes,
        })),
        "pressure": s.pressure.as_ref().map(|p| json!({
            "cpu_some": pressure_line(p.cpu_some.as_ref()),
            "memory_some": pressure_line(p.memory_some.as_ref()),
            "memory_full": pressure_line(p.memory_full.as_ref()),
            "io_some": pressure_line(p.io_some.as_ref()),
            "io_full": pressure_line(p.io_full.as_ref()),
        })),
        "uptime_seconds": s.uptime_seconds,
        "root_filesystem": s.root_filesystem.as_ref().map(|f| json!({
            "mountpoint": f.mountpoint,
            "size_bytes": f.size_bytes,
            "available_bytes": f.available_bytes,
            "free_bytes": f.free_bytes,
        })),
        "throttling": s.throttling.as_ref().map(throttling),
        "ups": s.ups.iter().map(ups_status).collect::<Vec<_>>(),
    })
}

fn ups_status(s: &UpsStatus) -> Value {
    json!({
        "name": s.ups_name,
        "timestamp_ms": timestamp(s.timestamp_ms),
        "communication_ok": s.communication_ok,
        "communication_error": non_empty(&s.communication_error),
        "status": s.status,
        "input_voltage_volts": s.input_voltage_volts,
        "output_voltage_volts": s.output_voltage_volts,
        "input_frequency_hertz": s.input_frequency_hertz,
        "load_percent": s.load_percent,
        "battery_voltage_volts": s.battery_voltage_volts,
        "battery_charge_percent": s.battery_charge_percent,
        "battery_charge_estimated": s.battery_charge_estimated,
        "battery_runtime_seconds": s.battery_runtime_seconds,
        "battery_runtime_estimated": s.battery_runtime_estimated,
        "temperature_celsius": s.temperature_celsius,
        "identity": s.identity.as_ref().map(|i| json!({
            "manufacturer": non_empty(&i.manufacturer),
            "model": non_empty(&i.model),
            "firmware": non_empty(&i.firmware),
            "driver": non_empty(&i.driver),
            "port": non_empty(&i.port),
            "serial_number": non_empty(&i.serial_number),
        })),
        "ratings": s.ratings.as_ref().map(|r| json!({
            "input_voltage_volts": r.input_voltage_volts,
            "output_voltage_volts": r.output_voltage_volts,
            "current_amperes": r.current_amperes,
            "battery_voltage_volts": r.battery_voltage_volts,
            "frequency_hertz": r.frequency_hertz,
            "power_va": r.power_va,
            "real_power_watts": r.real_power_watts,
        })),
        "supported_commands": s.supported_commands,
    })
}

/// `{"ups": [...]}`.
pub fn ups(list: &[UpsInfo]) -> Value {
    json!({
        "ups": list.iter().map(|u| json!({
            "node": u.node,
            "last_change_ms": timestamp(u.last_change_ms),
            "status": u.status.as_ref().map(ups_status),
        })).collect::<Vec<_>>()
    })
}

/// A history series.
pub fn history(h: &HistoryResponse) -> Value {
    json!({
        "node": h.node,
        "metric": h.metric,
        "unit": h.unit,
        "resolution_ms": h.resolution_ms,
        "points": h.points.iter().map(|p| json!({
            "timestamp_ms": p.timestamp_ms,
            "value": p.value,
            "min": p.min,
            "max": p.max,
        })).collect::<Vec<_>>(),
        "available_metrics": h.available_metrics,
    })
}

/// `{"events": [...]}`.
pub fn events(list: &[Event]) -> Value {
    json!({
        "events": list.iter().map(|e| json!({
            "timestamp_ms": e.timestamp_ms,
            "subject": e.subject,
            "kind": e.kind,
            "severity": severity_name(e.severity()),
            "message": e.message,
        })).collect::<Vec<_>>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::nodes::tests::cluster;

    #[test]
    fn node_json_has_units_in_keys_and_derived_values() {
        let v = nodes(&cluster());
        let list = v["nodes"].as_array().cloned().unwrap_or_default();
        assert_eq!(list.len(), 4);
        assert_eq!(list[0]["name"], "banana");
        let pi4 = &list[2];
        assert_eq!(pi4["name"], "pi4");
        assert_eq!(pi4["can_power_off"], "yes");
        assert_eq!(pi4["k3s_role"], Value::Null, "unknown is null");
        let k8s = &pi4["kubernetes"];
        assert_eq!(k8s["conditions"][0]["type"], "UnderVoltage");
        assert_eq!(k8s["conditions"][0]["status"], "True");
        assert_eq!(k8s["conditions"][0]["reason"], "UnderVoltageDetected");
        assert!(k8s["conditions"][0]["last_transition_ms"].is_i64());
        assert_eq!(
            k8s["labels"]["nodewarden.io/board"],
            "raspberry-pi-4-model-b"
        );
        assert_eq!(
            k8s["taints"],
            json!(["nodewarden.io/under-voltage:PreferNoSchedule"])
        );
        assert_eq!(
            list[1]["kubernetes"]["conditions"],
            json!([]),
            "nuc: none set"
        );
        assert_eq!(pi4["latest"]["cpu_temperature_celsius"], 82.3);
        assert_eq!(
            pi4["latest"]["throttling"]["now"],
            json!(["under_voltage", "throttled"])
        );
        assert_eq!(pi4["latest"]["memory"]["used_bytes"], 1024u64 * 1024 * 1024);
        assert_eq!(
            pi4["latest"]["pressure"],
            Value::Null,
            "absent is null, not zeros"
        );
        let nuc = &list[1];
        assert_eq!(nuc["latest"]["throttling"], Value::Null);
        assert_eq!(nuc["latest"]["temperatures"][1]["label"], "Package id 0");
        assert_eq!(nuc["latest"]["ups"][0]["status"], json!(["OL"]));
        assert_eq!(
            nuc["latest"]["ups"][0]["battery_runtime_seconds"],
            Value::Null
        );
    }
}

//! Prometheus text exposition (format 0.0.4) for the whole cluster: one
//! scrape target, every series labelled with the `node` it is about.
//!
//! Names follow node_exporter wherever it has the same reading, so existing
//! dashboards and alerts work unchanged once they select by `node`; readings
//! node_exporter does not have are `nodewarden_*`, and so is memory, whose
//! node_exporter names fail `promtool check metrics` (camelCase). Base units throughout
//! (seconds, bytes, hertz, celsius, 0-1 ratios), `_total` on counters.
//!
//! Nothing stale is exported: an offline node yields only
//! `nodewarden_node_up 0` and its last-seen time, and a UPS that cannot be
//! read (communication lost, or its agent offline) only
//! `nodewarden_ups_communication_ok 0`. An absent reading yields no series
//! rather than a zero.

use std::collections::HashMap;
use std::fmt::Write as _;

use nodewarden_proto::throttle;
use nodewarden_proto::v1::{NodeInfo, Sample, TemperatureSource, UpsInfo, UpsStatus};

use crate::cli::readings::{cpu_temperature_celsius, meaningful_flags};

/// Content-Type of the exposition, for the HTTP response.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// NUT status words exported as 0 when not active, so alerts can test for
/// `== 1` and graphs have a continuous line.
const COMMON_UPS_STATUS: [&str; 11] = [
    "OL", "OB", "LB", "RB", "CHRG", "DISCHRG", "BYPASS", "OFF", "OVER", "FSD", "CAL",
];

/// Metric family type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
}

#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    lines: Vec<String>,
}

/// Samples grouped by family in order of first use, so each family's
/// HELP/TYPE appears once, right above all its samples.
#[derive(Debug, Default)]
struct Exposition {
    families: Vec<Family>,
    index: HashMap<&'static str, usize>,
}

impl Exposition {
    fn add(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let at = *self.index.entry(name).or_insert_with(|| {
            self.families.push(Family {
                name,
                help,
                kind,
                lines: Vec::new(),
            });
            self.families.len() - 1
        });
        let mut line = name.to_owned();
        if !labels.is_empty() {
            line.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                let _ = write!(line, "{key}=\"{}\"", escape_label(val));
            }
            line.push('}');
        }
        line.push(' ');
        line.push_str(&format_value(value));
        self.families[at].lines.push(line);
    }

    fn gauge(&mut self, name: &'static str, help: &'static str, labels: &[(&str, &str)], v: f64) {
        self.add(name, help, Kind::Gauge, labels, v);
    }

    fn counter(&mut self, name: &'static str, help: &'static str, labels: &[(&str, &str)], v: f64) {
        self.add(name, help, Kind::Counter, labels, v);
    }

    fn finish(self) -> String {
        let mut out = String::new();
        for f in self.families {
            let kind = match f.kind {
                Kind::Gauge => "gauge",
                Kind::Counter => "counter",
            };
            let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
            let _ = writeln!(out, "# TYPE {} {kind}", f.name);
            for line in f.lines {
                out.push_str(&line);
                out.push('\n');
            }
        }
        out
    }
}

/// Label values escape backslash, double quote and newline.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text escapes backslash and newline.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Go-compatible float text: integers without a fraction, NaN, +Inf, -Inf.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn bool_value(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// The exposition for every node and UPS the collector knows.
pub fn render(nodes: &[NodeInfo], ups: &[UpsInfo]) -> String {
    let mut e = Exposition::default();
    let mut sorted: Vec<&NodeInfo> = nodes.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for node in &sorted {
        node_metrics(&mut e, node);
    }
    let online = |name: &str| nodes.iter().any(|n| n.name == name && n.online);
    let mut ups_sorted: Vec<&UpsInfo> = ups.iter().collect();
    ups_sorted.sort_by(|a, b| {
        let name = |u: &UpsInfo| u.status.as_ref().map(|s| s.ups_name.clone());
        a.node.cmp(&b.node).then(name(a).cmp(&name(b)))
    });
    for info in ups_sorted {
        if let Some(status) = &info.status {
            ups_metrics(&mut e, info, status, online(&info.node));
        }
    }
    e.finish()
}

fn node_metrics(e: &mut Exposition, node: &NodeInfo) {
    let n = node.name.as_str();
    e.gauge(
        "nodewarden_node_up",
        "1 if the node's agent is connected to the collector, else 0.",
        &[("node", n)],
        bool_value(node.online),
    );
    if node.last_seen_ms > 0 {
        e.gauge(
            "nodewarden_node_last_seen_timestamp_seconds",
            "When the collector last heard from the node's agent (unix time).",
            &[("node", n)],
            node.last_seen_ms as f64 / 1000.0,
        );
    }
    if !node.online {
        return;
    }
    e.gauge(
        "nodewarden_node_info",
        "Node identity as labels; always 1.",
        &[
            ("node", n),
            ("role", &node.role),
            ("model", &node.board_model),
            ("arch", &node.arch),
            ("kernel", &node.kernel_version),
            ("os", &node.os_name),
            ("agent_version", &node.agent_version),
        ],
        1.0,
    );
    if let Some(sample) = &node.latest {
        sample_metrics(e, n, sample);
    }
}

/// One node's latest sample, family by family in exposition order.
fn sample_metrics(e: &mut Exposition, n: &str, s: &Sample) {
    temperature_metrics(e, n, s);
    cpu_metrics(e, n, s);
    load_metrics(e, n, s);
    memory_metrics(e, n, s);
    pressure_metrics(e, n, s);
    filesystem_metrics(e, n, s);
    clock_metrics(e, n, s);
    throttling_metrics(e, n, s);
}

/// Temperatures: thermal zones, hwmon sensors with their labels and chip names, and the CPU's.
fn temperature_metrics(e: &mut Exposition, n: &str, s: &Sample) {
    let mut chips_named: Vec<(&str, &str)> = Vec::new();
    for t in &s.temperatures {
        let celsius = f64::from(t.millicelsius) / 1000.0;
        match t.source() {
            TemperatureSource::ThermalZone => e.gauge(
                "node_thermal_zone_temp",
                "Zone temperature in Celsius (/sys/class/thermal).",
                &[("node", n), ("zone", &t.device), ("type", &t.chip_name)],
                celsius,
            ),
            TemperatureSource::Hwmon | TemperatureSource::Unspecified => {
                e.gauge(
                    "node_hwmon_temp_celsius",
                    "Hardware monitor for temperature (input).",
                    &[("node", n), ("chip", &t.device), ("sensor", &t.sensor)],
                    celsius,
                );
                if !t.label.is_empty() {
                    e.gauge(
                        "node_hwmon_sensor_label",
                        "Label for given chip and sensor; always 1.",
                        &[
                            ("node", n),
                            ("chip", &t.device),
                            ("sensor", &t.sensor),
                            ("label", &t.label),
                        ],
                        1.0,
                    );
                }
                if !chips_named.contains(&(t.device.as_str(), t.chip_name.as_str())) {
                    chips_named.push((&t.device, &t.chip_name));
                }
            }
        }
    }
    for (chip, chip_name) in chips_named {
        e.gauge(
            "node_hwmon_chip_names",
            "Annotation metric for human-readable chip names; always 1.",
            &[("node", n), ("chip", chip), ("chip_name", chip_name)],
            1.0,
        );
    }
    if let Some(c) = cpu_temperature_celsius(s) {
        e.gauge(
            "nodewarden_cpu_temperature_celsius",
            "The hottest sensor the agent identified as the CPU's, in Celsius.",
            &[("node", n)],
            c,
        );
    }
}

/// CPU usage, per-core mode seconds and frequency, and the Pi's measured ARM clock.
fn cpu_metrics(e: &mut Exposition, n: &str, s: &Sample) {
    if let Some(cpu) = &s.cpu {
        e.gauge(
            "nodewarden_cpu_usage_ratio",
            "Busy share of all CPUs since the previous sample (0-1).",
            &[("node", n)],
            f64::from(cpu.usage_percent) / 100.0,
        );
        for core in &cpu.cores {
            let id = core.id.to_string();
            let modes = [
                ("user", core.user_seconds),
                ("nice", core.nice_seconds),
                ("system", core.system_seconds),
                ("idle", core.idle_seconds),
                ("iowait", core.iowait_seconds),
                ("irq", core.irq_seconds),
                ("softirq", core.softirq_seconds),
                ("steal", core.steal_seconds),
            ];
            // All zero means the agent did not read /proc/stat, not an idle
            // CPU that never ran (idle time grows from boot).
            if modes.iter().any(|(_, v)| *v > 0.0) {
                for (mode, seconds) in modes {
                    e.counter(
                        "node_cpu_seconds_total",
                        "Seconds the CPUs spent in each mode.",
                        &[("node", n), ("cpu", &id), ("mode", mode)],
                        seconds,
                    );
                }
            }
            if core.frequency_hertz > 0 {
                e.gauge(
                    "node_cpu_scaling_frequency_hertz",
                    "Current scaled CPU thread frequency in hertz.",
                    &[("node", n), ("cpu", &id)],
                    core.frequency_hertz as f64,
                );
            }
        }
        if cpu.measured_arm_clock_hertz > 0 {
            e.gauge(
                "nodewarden_rpi_arm_clock_hertz",
                "ARM clock measured by the Raspberry Pi firmware; unlike scaling frequency it shows firmware throttling.",
                &[("node", n)],
                cpu.measured_arm_clock_hertz as f64,
            );
        }
    }
}

/// Load averages.
fn load_metrics(e: &mut Exposition, n: &str, s: &Sample) {
    if let Some(load) = &s.load {
        e.gauge("node_load1", "1m load average.", &[("node", n)], load.load1);
        e.gauge("node_load5", "5m load average.", &[("node", n)], load.load5);
        e.gauge(
            "node_load15",
            "15m load average.",
            &[("node", n)],
            load.load15,
        );
    }
}

/// Memory from /proc/meminfo. node_exporter keeps the kernel's field names
/// (`node_memory_MemTotal_bytes`), which promtool rejects as camelCase; these
/// are the same readings under snake_case `nodewarden_memory_*` names.
fn memory_metrics(e: &mut Exposition, n: &str, s: &Sample) {
    if let Some(m) = &s.memory {
        let mem: [(&'static str, &'static str, u64); 7] = [
            (
                "nodewarden_memory_total_bytes",
                "Usable RAM in bytes (MemTotal in /proc/meminfo).",
                m.total_bytes,
            ),
            (
                "nodewarden_memory_available_bytes",
                "Memory available for new work without swapping, in bytes (MemAvailable).",
                m.available_bytes,
            ),
            (
                "nodewarden_memory_free_bytes",
                "Unused RAM in bytes (MemFree).",
                m.free_bytes,
            ),
            (
                "nodewarden_memory_buffers_bytes",
                "Block device buffers in bytes (Buffers).",
                m.buffers_bytes,
            ),
            (
                "nodewarden_memory_cached_bytes",
                "Page cache in bytes (Cached).",
                m.cached_bytes,
            ),
            (
                "nodewarden_memory_swap_total_bytes",
                "Swap space in bytes (SwapTotal).",
                m.swap_total_bytes,
            ),
            (
                "nodewarden_memory_swap_free_bytes",
                "Unused swap space in bytes (SwapFree).",
                m.swap_free_bytes,
            ),
        ];
        for (name, help, bytes) in mem {
            e.gauge(name, help, &[("node", n)], bytes as f64);
        }
    }
}

/// Pressure stall information (PSI) counters.
fn pressure_metrics(e: &mut Exposition, n: &str, s: &Sample) {
    if let Some(p) = &s.pressure {
        let lines = [
            (
                "node_pressure_cpu_waiting_seconds_total",
                "Total time in seconds that processes have waited for CPU time.",
                &p.cpu_some,
            ),
            (
                "node_pressure_memory_waiting_seconds_total",
                "Total time in seconds that processes have waited for memory.",
                &p.memory_some,
            ),
            (
                "node_pressure_memory_stalled_seconds_total",
                "Total time in seconds no process could make progress due to memory congestion.",
                &p.memory_full,
            ),
            (
                "node_pressure_io_waiting_seconds_total",
                "Total time in seconds that processes have waited due to IO congestion.",
                &p.io_some,
            ),
            (
                "node_pressure_io_stalled_seconds_total",
                "Total time in seconds no process could make progress due to IO congestion.",
                &p.io_full,
            ),
        ];
        for (name, help, line) in lines {
            if let Some(l) = line {
                e.counter(name, help, &[("node", n)], l.total_seconds);
            }
        }
    }
}

/// The root filesystem's size and free space.
fn filesystem_metrics(e: &mut Exposition, n: &str, s: &Sample) {
    if let Some(fs) = &s.root_filesystem {
        let labels = [("node", n), ("mountpoint", fs.mountpoint.as_str())];
        e.gauge(
            "node_filesystem_size_bytes",
            "Filesystem size in bytes.",
            &labels,
            fs.size_bytes as f64,
        );
        e.gauge(
            "node_filesystem_avail_bytes",
            "Filesystem space available to non-root users in bytes.",
            &labels,
            fs.available_bytes as f64,
        );
        e.gauge(
            "node_filesystem_free_bytes",
            "Filesystem free space in bytes.",
            &labels,
            fs.free_bytes as f64,
        );
    }
}

/// When the sample was taken, and when the node booted.
fn clock_metrics(e: &mut Exposition, n: &str, s: &Sample) {
    if s.timestamp_ms > 0 {
        let taken = s.timestamp_ms as f64 / 1000.0;
        e.gauge(
            "node_time_seconds",
            "System time in seconds since epoch (1970), when the sample was taken.",
            &[("node", n)],
            taken,
        );
        if s.uptime_seconds > 0.0 {
            // Rounded to the second: uptime and the sample clock are read a
            // few microseconds apart, and a jittering boot time would look
            // like a reboot to `changes(node_boot_time_seconds[..])`.
            e.gauge(
                "node_boot_time_seconds",
                "Node boot time, in unixtime.",
                &[("node", n)],
                (taken - s.uptime_seconds).round(),
            );
        }
    }
}

/// The Raspberry Pi firmware's throttle flags, now and since boot.
fn throttling_metrics(e: &mut Exposition, n: &str, s: &Sample) {
    if let Some(t) = &s.throttling {
        let word = t.get_throttled;
        for flag in meaningful_flags(t) {
            e.gauge(
                "nodewarden_rpi_throttled",
                "Raspberry Pi firmware throttle flag active now (get_throttled bits 0-3).",
                &[("node", n), ("flag", flag.name)],
                bool_value(word & flag.bit != 0),
            );
        }
        for flag in meaningful_flags(t) {
            e.gauge(
                "nodewarden_rpi_throttled_since_boot",
                "Raspberry Pi firmware throttle flag occurred since boot (get_throttled bits 16-19).",
                &[("node", n), ("flag", flag.name)],
                bool_value(word & (flag.bit << throttle::OCCURRED_SHIFT) != 0),
            );
        }
    }
}

/// One UPS: whether it can be read, and when it can, everything it reports.
fn ups_metrics(e: &mut Exposition, info: &UpsInfo, s: &UpsStatus, agent_online: bool) {
    let (node, ups) = (info.node.as_str(), s.ups_name.as_str());
    let labels = [("node", node), ("ups", ups)];
    // Readings from an agent that is gone, or a UPS that stopped answering,
    // are the last good ones: exporting them would hide the outage.
    let current = agent_online && s.communication_ok;
    e.gauge(
        "nodewarden_ups_communication_ok",
        "1 if the UPS answers its agent and the agent is connected, else 0.",
        &labels,
        bool_value(current),
    );
    if info.last_change_ms > 0 {
        e.gauge(
            "nodewarden_ups_last_change_timestamp_seconds",
            "When the UPS status words last changed (unix time).",
            &labels,
            info.last_change_ms as f64 / 1000.0,
        );
    }
    if !current {
        return;
    }
    ups_status_metrics(e, node, s);
    ups_reading_metrics(e, node, s);
    ups_info_metric(e, node, s);
}

/// One series per NUT status word, the common ones always (0 when not active).
fn ups_status_metrics(e: &mut Exposition, node: &str, s: &UpsStatus) {
    let ups = s.ups_name.as_str();
    let mut tokens: Vec<&str> = COMMON_UPS_STATUS.to_vec();
    for t in &s.status {
        if !tokens.contains(&t.as_str()) {
            tokens.push(t);
        }
    }
    for token in tokens {
        e.gauge(
            "nodewarden_ups_status",
            "1 for each NUT ups.status word the UPS reports now (OL on line, OB on battery, LB low battery, ...).",
            &[("node", node), ("ups", ups), ("status", token)],
            bool_value(s.status.iter().any(|t| t == token)),
        );
    }
}

/// Battery, load and line readings, and which of them nodewarden estimated.
fn ups_reading_metrics(e: &mut Exposition, node: &str, s: &UpsStatus) {
    let ups = s.ups_name.as_str();
    let labels = [("node", node), ("ups", ups)];
    let readings: [(&'static str, &'static str, Option<f64>); 8] = [
        (
            "nodewarden_ups_battery_charge_ratio",
            "Battery charge (0-1); see nodewarden_ups_estimated.",
            s.battery_charge_percent.map(|p| p / 100.0),
        ),
        (
            "nodewarden_ups_battery_runtime_seconds",
            "Battery runtime left at the current load; see nodewarden_ups_estimated.",
            s.battery_runtime_seconds,
        ),
        (
            "nodewarden_ups_load_ratio",
            "Output load as a share of the UPS's capacity (0-1).",
            s.load_percent.map(|p| p / 100.0),
        ),
        (
            "nodewarden_ups_input_voltage_volts",
            "Input (mains) voltage.",
            s.input_voltage_volts,
        ),
        (
            "nodewarden_ups_output_voltage_volts",
            "Output voltage.",
            s.output_voltage_volts,
        ),
        (
            "nodewarden_ups_input_frequency_hertz",
            "Input (mains) frequency.",
            s.input_frequency_hertz,
        ),
        (
            "nodewarden_ups_battery_voltage_volts",
            "Battery voltage.",
            s.battery_voltage_volts,
        ),
        (
            "nodewarden_ups_temperature_celsius",
            "UPS internal temperature.",
            s.temperature_celsius,
        ),
    ];
    for (name, help, value) in readings {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            e.gauge(name, help, &labels, v);
        }
    }
    let estimates = [
        (
            "charge",
            s.battery_charge_percent,
            s.battery_charge_estimated,
        ),
        (
            "runtime",
            s.battery_runtime_seconds,
            s.battery_runtime_estimated,
        ),
    ];
    for (quantity, value, estimated) in estimates {
        if value.is_some() {
            e.gauge(
                "nodewarden_ups_estimated",
                "1 if the quantity was estimated by nodewarden rather than reported by the UPS.",
                &[("node", node), ("ups", ups), ("quantity", quantity)],
                bool_value(estimated),
            );
        }
    }
}

/// The UPS's identity as labels.
fn ups_info_metric(e: &mut Exposition, node: &str, s: &UpsStatus) {
    let ups = s.ups_name.as_str();
    if let Some(id) = &s.identity {
        e.gauge(
            "nodewarden_ups_info",
            "UPS identity as labels; always 1.",
            &[
                ("node", node),
                ("ups", ups),
                ("manufacturer", &id.manufacturer),
                ("model", &id.model),
                ("firmware", &id.firmware),
                ("driver", &id.driver),
                ("serial", &id.serial_number),
            ],
            1.0,
        );
    }
}

mod store;
#[cfg(test)]
mod tests;

pub use store::render_store;

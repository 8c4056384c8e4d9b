//! `nodewarden nodes` (one line per node) and `nodewarden node NAME` (one
//! node in full).

use std::fmt::Write as _;
use std::time::Duration;

use nodewarden_common::units::format_duration;
use nodewarden_proto::throttle;
use nodewarden_proto::v1::{NodeInfo, PressureLine, Sample, TemperatureSource, Throttling};

use super::format::{format_ago, format_bytes, format_bytes_of, format_hertz, format_timestamp};
use super::readings::{
    cpu_temperature_celsius, flag_meaning, meaningful_flags, memory_used_bytes, memory_used_ratio,
};
use super::style::{Align, Level, Style, Table, truncate};
use super::ups::render_ups_summary;

/// CPU at or above this is critical (Pi firmware soft-throttles at 80 °C).
pub const TEMP_CRITICAL_CELSIUS: f64 = 80.0;
/// CPU at or above this deserves a look.
pub const TEMP_WARNING_CELSIUS: f64 = 70.0;
/// Memory share in use at or above this deserves a look.
pub const MEMORY_WARNING_RATIO: f64 = 0.9;

/// How worrying a CPU temperature is.
pub fn temperature_level(celsius: f64) -> Level {
    if celsius >= TEMP_CRITICAL_CELSIUS {
        Level::Critical
    } else if celsius >= TEMP_WARNING_CELSIUS {
        Level::Warning
    } else {
        Level::Normal
    }
}

/// How worrying a throttle word is: under-voltage now is critical; any other
/// flag now, or under-voltage earlier since boot, is a warning.
pub fn throttle_level(word: u32) -> Level {
    if word & throttle::UNDER_VOLTAGE != 0 {
        Level::Critical
    } else if throttle::active_now(word).next().is_some()
        || word & (throttle::UNDER_VOLTAGE << throttle::OCCURRED_SHIFT) != 0
    {
        Level::Warning
    } else {
        Level::Normal
    }
}

/// Short flags for a table: flags active now in upper case, flags seen only
/// earlier since boot in lower case ("UV THR", "thr", "ok").
pub fn throttle_summary(throttling: &Throttling) -> String {
    let word = throttling.get_throttled;
    let flags = meaningful_flags(throttling);
    let mut parts: Vec<String> = flags
        .iter()
        .filter(|f| word & f.bit != 0)
        .map(|f| f.short.to_owned())
        .collect();
    parts.extend(
        flags
            .iter()
            .filter(|f| word & f.bit == 0 && word & (f.bit << throttle::OCCURRED_SHIFT) != 0)
            .map(|f| f.short.to_lowercase()),
    );
    if parts.is_empty() {
        "ok".to_owned()
    } else {
        parts.join(" ")
    }
}

/// Columns left out, in this order, until the table fits the terminal:
/// identity is one `node NAME` away, health is what this table is for.
const NARROW_DROP_ORDER: [&str; 4] = ["MODEL", "ARCH", "ROLE", "UPTIME"];

/// The `nodes` table, sorted by name, all columns.
pub fn render_nodes(nodes: &[NodeInfo], now_ms: i64, style: Style) -> String {
    render_nodes_to_fit(nodes, now_ms, style, usize::MAX)
}

/// The `nodes` table without the less important columns when it would be
/// wider than `width`.
pub fn render_nodes_to_fit(nodes: &[NodeInfo], now_ms: i64, style: Style, width: usize) -> String {
    if nodes.is_empty() {
        return "no nodes have connected yet\n".to_owned();
    }
    let mut sorted: Vec<&NodeInfo> = nodes.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("ROLE", Align::Left),
        ("MODEL", Align::Left),
        ("ARCH", Align::Left),
        ("CPU TEMP", Align::Right),
        ("THROTTLE", Align::Left),
        ("CPU", Align::Right),
        ("MEMORY", Align::Right),
        ("UPTIME", Align::Right),
        ("LAST SEEN", Align::Right),
        ("STATE", Align::Left),
    ]);
    for node in sorted {
        table.row(node_row(node, now_ms, style));
    }
    for column in NARROW_DROP_ORDER {
        if table.width() <= width {
            break;
        }
        table.remove_column(column);
    }
    table.render(style)
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

fn node_row(node: &NodeInfo, now_ms: i64, style: Style) -> Vec<String> {
    let dash = || "-".to_owned();
    // An offline node's last sample is history, not state: the table shows
    // what is true now, `node NAME` shows the last sample with its age.
    let live = node.latest.as_ref().filter(|_| node.online);
    let mut worst = Level::Normal;

    let temp = match live.and_then(cpu_temperature_celsius) {
        Some(c) => {
            let level = temperature_level(c);
            worst = worst.max(level);
            style.paint(level, &format!("{c:.1} °C"))
        }
        None => dash(),
    };
    let throttle = match live.and_then(|s| s.throttling.as_ref()) {
        Some(t) => {
            let level = throttle_level(t.get_throttled);
            worst = worst.max(level);
            style.paint(level, &throttle_summary(t))
        }
        None => dash(),
    };
    let cpu = live
        .and_then(|s| s.cpu.as_ref())
        .map_or_else(dash, |c| format!("{:.0} %", c.usage_percent));
    let memory = match live.and_then(|s| s.memory.as_ref()) {
        Some(m) if m.total_bytes > 0 => {
            let level = match memory_used_ratio(m) {
                Some(r) if r >= MEMORY_WARNING_RATIO => Level::Warning,
                _ => Level::Normal,
            };
            worst = worst.max(level);
            style.paint(level, &format_bytes_of(memory_used_bytes(m), m.total_bytes))
        }
        _ => dash(),
    };
    let uptime = live.map_or_else(dash, |s| format_uptime(s.uptime_seconds));
    let state = if node.online {
        "online".to_owned()
    } else {
        worst = Level::Critical;
        style.paint(Level::Critical, "offline")
    };
    vec![
        style.paint(worst, &node.name),
        or_dash(&node.role),
        or_dash(&truncate(&node.board_model, 28)),
        or_dash(&node.arch),
        temp,
        throttle,
        cpu,
        memory,
        uptime,
        format_ago(node.last_seen_ms, now_ms),
        state,
    ]
}

fn format_uptime(seconds: f64) -> String {
    if seconds.is_finite() && seconds >= 0.0 {
        format_duration(Duration::from_secs_f64(seconds))
    } else {
        "-".to_owned()
    }
}

/// Appends a section heading.
fn heading(out: &mut String, style: Style, title: &str) {
    let _ = writeln!(out, "{}", style.bold(title));
}

/// Appends "  key          value".
fn field(out: &mut String, key: &str, value: &str) {
    let _ = writeln!(out, "  {key:<14} {value}");
}

/// `node NAME`: everything the collector knows about one node.
pub fn render_node(node: &NodeInfo, now_ms: i64, style: Style) -> String {
    let mut out = String::new();
    let state = if node.online {
        "online".to_owned()
    } else if node.offline_reason.is_empty() {
        style.paint(Level::Critical, "offline")
    } else {
        style.paint(
            Level::Critical,
            &format!("offline: {}", node.offline_reason),
        )
    };
    let _ = writeln!(out, "{} ({state})", style.bold(&node.name));

    heading(&mut out, style, "Identity");
    field(&mut out, "role", &or_dash(&node.role));
    field(&mut out, "model", &or_dash(&node.board_model));
    field(&mut out, "arch", &or_dash(&node.arch));
    field(&mut out, "os", &or_dash(&node.os_name));
    field(&mut out, "kernel", &or_dash(&node.kernel_version));
    field(&mut out, "agent", &or_dash(&node.agent_version));
    if node.first_seen_ms > 0 {
        field(
            &mut out,
            "first seen",
            &format_timestamp(node.first_seen_ms),
        );
    }
    let last_seen = if node.last_seen_ms > 0 {
        format!(
            "{} ({})",
            format_ago(node.last_seen_ms, now_ms),
            format_timestamp(node.last_seen_ms)
        )
    } else {
        "never".to_owned()
    };
    field(&mut out, "last seen", &last_seen);
    if node.online {
        field(&mut out, "stream peer", &or_dash(&node.peer_address));
    }
    if node.sample_interval_ms > 0 {
        field(
            &mut out,
            "sample every",
            &format_duration(Duration::from_millis(u64::from(node.sample_interval_ms))),
        );
    }

    let Some(sample) = node.latest.as_ref() else {
        out.push_str("\nno sample received yet\n");
        return out;
    };
    if !node.online {
        let _ = writeln!(
            out,
            "\nLast sample, taken {} (the node is offline; these values are not current)",
            format_ago(sample.timestamp_ms, now_ms)
        );
    }
    render_sample(&mut out, sample, now_ms, style);
    out
}

fn render_sample(out: &mut String, sample: &Sample, now_ms: i64, style: Style) {
    heading(out, style, "Temperatures");
    if sample.temperatures.is_empty() {
        field(out, "none", "no sensor could be read");
    }
    let mut table = Table::new(&[
        ("  SENSOR", Align::Left),
        ("SOURCE", Align::Left),
        ("TEMP", Align::Right),
        ("", Align::Left),
    ]);
    for t in &sample.temperatures {
        let celsius = f64::from(t.millicelsius) / 1000.0;
        let (name, source) = match t.source() {
            TemperatureSource::ThermalZone => {
                (t.chip_name.clone(), format!("thermal_zone{}", t.device))
            }
            _ => {
                let label = if t.label.is_empty() {
                    t.sensor.clone()
                } else {
                    t.label.clone()
                };
                (
                    format!("{} {label}", t.chip_name),
                    format!("hwmon {} {}", t.device, t.sensor),
                )
            }
        };
        let (temp, role) = if t.is_cpu {
            (
                style.paint(temperature_level(celsius), &format!("{celsius:.1} °C")),
                "CPU",
            )
        } else {
            (format!("{celsius:.1} °C"), "")
        };
        table.row(vec![format!("  {name}"), source, temp, role.to_owned()]);
    }
    if !sample.temperatures.is_empty() {
        // The table's header line is bold already; indent it like a field.
        out.push_str(&table.render(style));
    }

    if let Some(t) = &sample.throttling {
        let _ = writeln!(
            out,
            "{} (firmware get_throttled 0x{:x})",
            style.bold("Throttling"),
            t.get_throttled
        );
        let flags = meaningful_flags(t);
        let word = t.get_throttled;
        let now: Vec<&str> = flags
            .iter()
            .filter(|f| word & f.bit != 0)
            .map(|f| flag_meaning(*f))
            .collect();
        let past: Vec<&str> = flags
            .iter()
            .filter(|f| word & (f.bit << throttle::OCCURRED_SHIFT) != 0)
            .map(|f| flag_meaning(*f))
            .collect();
        let level = throttle_level(word);
        let now_text = if now.is_empty() {
            "none".to_owned()
        } else {
            now.join(", ")
        };
        field(out, "now", &style.paint(level, &now_text));
        let past_text = if past.is_empty() {
            "none".to_owned()
        } else {
            past.join(", ")
        };
        field(out, "since boot", &past_text);
        if flags.len() == 1 {
            field(
                out,
                "note",
                "only the rpi_volt under-voltage alarm is readable (add the agent to group video for the rest)",
            );
        }
    }

    if let Some(cpu) = &sample.cpu {
        heading(out, style, "CPU");
        let mut usage = format!("{:.1} % of {} CPUs", cpu.usage_percent, cpu.logical_cpus);
        if cpu.measured_arm_clock_hertz > 0 {
            let _ = write!(
                usage,
                ", ARM clock {} (measured by firmware)",
                format_hertz(cpu.measured_arm_clock_hertz as f64)
            );
        }
        field(out, "usage", &usage);
        for core in &cpu.cores {
            let mut line = format!("{:5.1} %", core.usage_percent);
            if core.frequency_hertz > 0 {
                let _ = write!(line, "  {}", format_hertz(core.frequency_hertz as f64));
            }
            field(out, &format!("cpu{}", core.id), &line);
        }
    }

    if let Some(m) = &sample.memory {
        heading(out, style, "Memory");
        let ratio = memory_used_ratio(m).unwrap_or(0.0);
        let level = if ratio >= MEMORY_WARNING_RATIO {
            Level::Warning
        } else {
            Level::Normal
        };
        field(
            out,
            "used",
            &style.paint(
                level,
                &format!(
                    "{} ({:.0} %; total minus available)",
                    format_bytes_of(memory_used_bytes(m), m.total_bytes),
                    ratio * 100.0
                ),
            ),
        );
        field(
            out,
            "available",
            &format!(
                "{}, free {}, buffers {}, cached {}",
                format_bytes(m.available_bytes as f64),
                format_bytes(m.free_bytes as f64),
                format_bytes(m.buffers_bytes as f64),
                format_bytes(m.cached_bytes as f64)
            ),
        );
        let swap = if m.swap_total_bytes == 0 {
            "none".to_owned()
        } else {
            format!(
                "{} used",
                format_bytes_of(
                    m.swap_total_bytes.saturating_sub(m.swap_free_bytes),
                    m.swap_total_bytes
                )
            )
        };
        field(out, "swap", &swap);
    }

    if let Some(load) = &sample.load {
        heading(out, style, "Load");
        field(
            out,
            "1/5/15 min",
            &format!("{:.2} {:.2} {:.2}", load.load1, load.load5, load.load15),
        );
    }

    if let Some(p) = &sample.pressure {
        heading(
            out,
            style,
            "Pressure (share of time stalled, avg 10s/60s/300s)",
        );
        let lines: [(&str, &Option<PressureLine>); 5] = [
            ("cpu some", &p.cpu_some),
            ("memory some", &p.memory_some),
            ("memory full", &p.memory_full),
            ("io some", &p.io_some),
            ("io full", &p.io_full),
        ];
        for (name, line) in lines {
            if let Some(l) = line {
                field(
                    out,
                    name,
                    &format!(
                        "{:.2} % {:.2} % {:.2} %",
                        l.avg10_percent, l.avg60_percent, l.avg300_percent
                    ),
                );
            }
        }
    }

    if let Some(fs) = &sample.root_filesystem {
        heading(out, style, &format!("Filesystem {}", fs.mountpoint));
        let used = fs.size_bytes.saturating_sub(fs.free_bytes);
        let share = if fs.size_bytes > 0 {
            used as f64 / fs.size_bytes as f64 * 100.0
        } else {
            0.0
        };
        field(
            out,
            "used",
            &format!("{} ({share:.0} %)", format_bytes_of(used, fs.size_bytes)),
        );
        field(
            out,
            "available",
            &format!("{} to users", format_bytes(fs.available_bytes as f64)),
        );
    }

    heading(out, style, "Uptime");
    field(out, "since boot", &format_uptime(sample.uptime_seconds));
    field(
        out,
        "sample taken",
        &format!(
            "{} (#{})",
            format_ago(sample.timestamp_ms, now_ms),
            sample.seq
        ),
    );

    if !sample.ups.is_empty() {
        heading(out, style, "UPS read by this node");
        for ups in &sample.ups {
            out.push_str(&render_ups_summary(ups, style));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use nodewarden_proto::v1::{
        Cpu, CpuCore, Filesystem, LoadAverage, Memory, Temperature, ThrottlingSource, UpsStatus,
    };

    use super::*;
    use crate::cli::style::display_width;

    pub const NOW_MS: i64 = 1_795_430_000_000;
    const GIB: u64 = 1024 * 1024 * 1024;

    fn zone(device: &str, chip: &str, millicelsius: i32, is_cpu: bool) -> Temperature {
        Temperature {
            source: TemperatureSource::ThermalZone as i32,
            device: device.into(),
            chip_name: chip.into(),
            millicelsius,
            is_cpu,
            ..Default::default()
        }
    }

    fn sample(temps: Vec<Temperature>, throttled: Option<u32>, usage: f32) -> Sample {
        Sample {
            seq: 4711,
            timestamp_ms: NOW_MS - 1_500,
            temperatures: temps,
            cpu: Some(Cpu {
                usage_percent: usage,
                logical_cpus: 4,
                measured_arm_clock_hertz: 1_500_000_000,
                cores: (0..4)
                    .map(|id| CpuCore {
                        id,
                        usage_percent: usage,
                        frequency_hertz: 1_500_000_000,
                        user_seconds: 1_234.5 + f64::from(id),
                        system_seconds: 321.25,
                        idle_seconds: 98_765.75,
                        ..Default::default()
                    })
                    .collect(),
            }),
            load: Some(LoadAverage {
                load1: 0.52,
                load5: 0.4,
                load15: 0.33,
            }),
            memory: Some(Memory {
                total_bytes: 4 * GIB,
                available_bytes: 3 * GIB,
                free_bytes: GIB,
                buffers_bytes: GIB / 8,
                cached_bytes: GIB,
                swap_total_bytes: GIB / 10,
                swap_free_bytes: GIB / 10,
            }),
            pressure: None,
            uptime_seconds: 3.0 * 86_400.0 + 7_200.0,
            root_filesystem: Some(Filesystem {
                mountpoint: "/".into(),
                size_bytes: 29 * GIB,
                available_bytes: 15 * GIB,
                free_bytes: 16 * GIB,
            }),
            throttling: throttled.map(|word| Throttling {
                source: ThrottlingSource::Mailbox as i32,
                get_throttled: word,
                under_voltage_alarm: false,
            }),
            ups: Vec::new(),
        }
    }

    /// A small realistic cluster: a hot, under-volted Pi 4, a healthy Pi 5
    /// that was throttled earlier, an x86 server and an offline Banana Pi.
    pub fn cluster() -> Vec<NodeInfo> {
        let node = |name: &str, role: &str, model: &str, arch: &str, s: Option<Sample>| NodeInfo {
            name: name.into(),
            role: role.into(),
            board_model: model.into(),
            arch: arch.into(),
            kernel_version: "6.6.51+rpt-rpi-v8".into(),
            os_name: "Debian GNU/Linux 12 (bookworm)".into(),
            agent_version: "0.1.0".into(),
            first_seen_ms: NOW_MS - 5 * 86_400_000,
            last_seen_ms: NOW_MS - 3_000,
            online: true,
            offline_reason: String::new(),
            latest: s,
            peer_address: "10.0.0.12:53422".into(),
            sample_interval_ms: 1000,
        };
        let mut x86 = sample(
            vec![
                zone("0", "acpitz", 27_800, false),
                Temperature {
                    source: TemperatureSource::Hwmon as i32,
                    device: "platform_coretemp_0".into(),
                    chip_name: "coretemp".into(),
                    sensor: "temp1".into(),
                    label: "Package id 0".into(),
                    millicelsius: 52_000,
                    is_cpu: true,
                },
            ],
            None,
            12.0,
        );
        x86.ups.push(UpsStatus {
            ups_name: "riello".into(),
            communication_ok: true,
            status: vec!["OL".into()],
            battery_charge_percent: Some(100.0),
            ..Default::default()
        });
        if let Some(c) = x86.cpu.as_mut() {
            // The firmware clock exists on a Pi only.
            c.measured_arm_clock_hertz = 0;
        }
        if let Some(m) = x86.memory.as_mut() {
            // 15.2 of 16 GiB in use.
            m.total_bytes = 16 * GIB;
            m.available_bytes = GIB * 8 / 10;
        }
        let mut offline = node(
            "banana",
            "worker",
            "Banana Pi BPI-M5",
            "aarch64",
            Some(sample(
                vec![zone("0", "cpu-thermal", 90_000, true)],
                None,
                99.0,
            )),
        );
        offline.online = false;
        offline.offline_reason = "no message for 30 s".into();
        offline.last_seen_ms = NOW_MS - 400_000;
        vec![
            node(
                "pi4",
                "worker",
                "Raspberry Pi 4 Model B Rev 1.4",
                "aarch64",
                Some(sample(
                    vec![zone("0", "cpu-thermal", 82_300, true)],
                    Some(0x50005),
                    87.0,
                )),
            ),
            node(
                "pi5",
                "server",
                "Raspberry Pi 5 Model B Rev 1.0",
                "aarch64",
                Some(sample(
                    vec![zone("0", "cpu-thermal", 71_000, true)],
                    Some(0x40000),
                    20.0,
                )),
            ),
            node("nuc", "server", "Intel NUC", "x86_64", Some(x86)),
            offline,
        ]
    }

    fn row_of<'a>(out: &'a str, name: &str) -> &'a str {
        out.lines()
            .find(|l| l.contains(name) && !l.starts_with("NAME"))
            .unwrap_or_else(|| panic!("no row for {name} in\n{out}"))
    }

    #[test]
    fn table_shows_what_needs_attention() {
        let out = render_nodes(&cluster(), NOW_MS, Style::PLAIN);
        let names: Vec<&str> = out
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().next().unwrap_or(""))
            .collect();
        assert_eq!(names, ["banana", "nuc", "pi4", "pi5"], "sorted by name");
        let pi4 = row_of(&out, "pi4");
        assert!(pi4.contains("82.3 °C"), "{pi4}");
        assert!(pi4.contains("UV THR"), "now-flags in upper case: {pi4}");
        assert!(
            pi4.contains("1.0/4.0 GiB"),
            "used = total - available: {pi4}"
        );
        assert!(pi4.contains("3d02h") && pi4.contains("3s ago"), "{pi4}");
        let pi5 = row_of(&out, "pi5");
        assert!(
            pi5.contains(" thr "),
            "past-only flags in lower case: {pi5}"
        );
        let banana = row_of(&out, "banana");
        assert!(banana.contains("offline") && banana.contains("6m40s ago"));
        assert!(
            !banana.contains("90.0"),
            "an offline node shows no stale temperature: {banana}"
        );
        let nuc = row_of(&out, "nuc");
        assert!(
            nuc.contains("52.0 °C") && nuc.contains("15/16 GiB"),
            "{nuc}"
        );
        // Aligned: every line has the STATE column at the same offset.
        let state_at: Vec<usize> = out
            .lines()
            .map(|l| {
                let at = ["offline", "online", "STATE"]
                    .iter()
                    .find_map(|w| l.find(w))
                    .unwrap_or(0);
                display_width(&l[..at])
            })
            .collect();
        assert!(state_at.windows(2).all(|w| w[0] == w[1]), "{out}");
        assert!(!out.contains('\x1b'), "plain style has no escapes");
    }

    #[test]
    fn colour_marks_the_hot_and_the_offline() {
        let out = render_nodes(&cluster(), NOW_MS, Style::COLOR);
        let red = |t: &str| format!("\x1b[31m{t}\x1b[0m");
        let yellow = |t: &str| format!("\x1b[33m{t}\x1b[0m");
        let pi4 = row_of(&out, "pi4");
        assert!(pi4.contains(&red("82.3 °C")), "{pi4:?}");
        assert!(pi4.contains(&red("UV THR")), "{pi4:?}");
        assert!(pi4.contains(&red("pi4")), "name takes the worst colour");
        let pi5 = row_of(&out, "pi5");
        assert!(pi5.contains(&yellow("71.0 °C")), "{pi5:?}");
        let nuc = row_of(&out, "nuc");
        assert!(
            nuc.contains(&yellow("15/16 GiB")),
            "memory over 90 %: {nuc:?}"
        );
        assert!(nuc.contains("52.0 °C") && !nuc.contains(&red("52.0 °C")));
        assert!(row_of(&out, "banana").contains(&red("offline")));
        let widths: Vec<usize> = out.lines().skip(1).map(display_width).collect();
        let plain = render_nodes(&cluster(), NOW_MS, Style::PLAIN);
        let plain_widths: Vec<usize> = plain.lines().skip(1).map(display_width).collect();
        assert_eq!(widths, plain_widths, "colour does not shift columns");
    }

    #[test]
    fn narrow_terminals_keep_the_health_columns() {
        let wide = render_nodes(&cluster(), NOW_MS, Style::PLAIN);
        assert!(wide.lines().any(|l| display_width(l) > 100), "{wide}");
        let out = render_nodes_to_fit(&cluster(), NOW_MS, Style::PLAIN, 80);
        assert!(out.lines().all(|l| display_width(l) <= 80), "{out}");
        let header = out.lines().next().unwrap_or_default();
        assert!(!header.contains("MODEL"), "{header}");
        for kept in [
            "NAME",
            "CPU TEMP",
            "THROTTLE",
            "MEMORY",
            "LAST SEEN",
            "STATE",
        ] {
            assert!(header.contains(kept), "{kept} kept: {header}");
        }
        assert!(row_of(&out, "pi4").contains("UV THR"), "{out}");
    }

    #[test]
    fn throttle_levels_follow_the_firmware_bits() {
        assert_eq!(throttle_level(0x50005), Level::Critical);
        assert_eq!(
            throttle_level(0x10000),
            Level::Warning,
            "past under-voltage"
        );
        assert_eq!(throttle_level(0x2), Level::Warning);
        assert_eq!(throttle_level(0x40000), Level::Normal);
        let hwmon_only = Throttling {
            source: ThrottlingSource::HwmonRpiVolt as i32,
            get_throttled: 0x10000,
            under_voltage_alarm: false,
        };
        assert_eq!(throttle_summary(&hwmon_only), "uv");
    }

    #[test]
    fn node_detail_groups_everything() {
        let nodes = cluster();
        let out = render_node(&nodes[2], NOW_MS, Style::PLAIN);
        for expected in [
            "nuc (online)",
            "model          Intel NUC",
            "stream peer    10.0.0.12:53422",
            "sample every   1s",
            "coretemp Package id 0",
            "hwmon platform_coretemp_0 temp1",
            "acpitz",
            "thermal_zone0",
            "cpu3",
            "1.50 GHz",
            "Load",
            "0.52 0.40 0.33",
            "Filesystem /",
            "13/29 GiB (45 %)",
            "riello",
            "on line",
        ] {
            assert!(out.contains(expected), "missing {expected:?} in\n{out}");
        }
        let cpu_line = out
            .lines()
            .find(|l| l.contains("coretemp"))
            .unwrap_or_default();
        assert!(cpu_line.trim_end().ends_with("CPU"), "{cpu_line}");
        assert!(!out.contains("Throttling"), "no Pi, no throttle section");

        let pi4 = render_node(&nodes[0], NOW_MS, Style::PLAIN);
        assert!(pi4.contains("get_throttled 0x50005"), "{pi4}");
        assert!(
            pi4.contains("now            under-voltage, throttled"),
            "{pi4}"
        );
        let banana = render_node(&nodes[3], NOW_MS, Style::PLAIN);
        assert!(banana.contains("offline: no message for 30 s"), "{banana}");
        assert!(banana.contains("not current"), "{banana}");
    }
}

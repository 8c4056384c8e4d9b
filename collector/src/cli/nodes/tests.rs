use nodewarden_proto::v1::{
    Cpu, CpuCore, Filesystem, KubeCondition, LoadAverage, Memory, NodeInfo, Sample, Temperature,
    TemperatureSource, ThrottlingSource, UpsStatus,
};

use super::*;
use crate::cli::style::{Style, display_width};

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
        can_power_off: "yes".into(),
        k3s_role: String::new(),
        kube_conditions: Vec::new(),
        kube_labels: Default::default(),
        kube_taints: Vec::new(),
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
    let mut pi4 = node(
        "pi4",
        "worker",
        "Raspberry Pi 4 Model B Rev 1.4",
        "aarch64",
        Some(sample(
            vec![zone("0", "cpu-thermal", 82_300, true)],
            Some(0x50005),
            87.0,
        )),
    );
    let cond = |t: &str, status: &str, reason: &str| KubeCondition {
        r#type: t.into(),
        status: status.into(),
        reason: reason.into(),
        message: format!("{t} message"),
        last_transition_ms: NOW_MS - 180_000,
    };
    pi4.kube_conditions = vec![
        cond("UnderVoltage", "True", "UnderVoltageDetected"),
        cond("ThermalThrottling", "True", "ThrottlingActive"),
        cond("NodewardenAgentDown", "False", "AgentConnected"),
    ];
    pi4.kube_labels = [("nodewarden.io/board", "raspberry-pi-4-model-b")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    pi4.kube_taints = vec!["nodewarden.io/under-voltage:PreferNoSchedule".into()];
    vec![
        pi4,
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
fn the_table_shows_which_of_nodewardens_conditions_hold() {
    let mut nodes = cluster();
    nodes[1].kube_conditions = vec![KubeCondition {
        r#type: "UnderVoltage".into(),
        status: "False".into(),
        ..KubeCondition::default()
    }];
    let out = render_nodes(&nodes, NOW_MS, Style::PLAIN);
    assert!(out.lines().next().unwrap().contains("K8S"), "{out}");
    assert!(
        row_of(&out, "pi4")
            .trim_end()
            .ends_with("UnderVoltage,ThermalThrottling,tainted(1)"),
        "{out}"
    );
    assert!(row_of(&out, "pi5").trim_end().ends_with("ok"), "{out}");
    assert!(
        row_of(&out, "nuc").trim_end().ends_with('-'),
        "no API: {out}"
    );
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
    assert!(pi4.contains("Kubernetes (set by nodewarden)"), "{pi4}");
    assert!(
        pi4.contains(
            "UnderVoltage   True UnderVoltageDetected (since 3m00s ago): UnderVoltage message"
        ),
        "{pi4}"
    );
    assert!(
        pi4.contains("label          nodewarden.io/board=raspberry-pi-4-model-b"),
        "{pi4}"
    );
    assert!(
        pi4.contains("taint          nodewarden.io/under-voltage:PreferNoSchedule"),
        "{pi4}"
    );
    assert!(
        !out.contains("Kubernetes"),
        "nothing set on nuc: no section"
    );
    let banana = render_node(&nodes[3], NOW_MS, Style::PLAIN);
    assert!(banana.contains("offline: no message for 30 s"), "{banana}");
    assert!(banana.contains("not current"), "{banana}");
}

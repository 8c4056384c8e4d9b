//! The exposition is parsed back, by a strict parser here and by the
//! official Prometheus Python client, and the values a user would alert on
//! are checked.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::process::{Command, Stdio};

use nodewarden_proto::v1::{NodeInfo, UpsInfo};

use super::*;
use crate::cli::nodes::tests::{NOW_MS, cluster};
use crate::cli::ups::tests::on_battery;

type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq)]
struct ParsedSample {
    name: String,
    labels: Labels,
    value: f64,
}

#[derive(Debug, Default)]
struct Parsed {
    /// (name, type, help) in order.
    families: Vec<(String, String, String)>,
    samples: Vec<ParsedSample>,
}

impl Parsed {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: Labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    fn of_node(&self, node: &str) -> Vec<&ParsedSample> {
        self.samples
            .iter()
            .filter(|s| s.labels.get("node").map(String::as_str) == Some(node))
            .collect()
    }
}

fn valid_name(name: &str, colons: bool) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':'))
}

fn parse_labels(text: &str) -> Result<(Labels, &str), String> {
    let mut labels = Labels::new();
    let mut rest = text;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find("=\"").ok_or(format!("no =\" in {rest}"))?;
        let key = &rest[..eq];
        if !valid_name(key, false) {
            return Err(format!("bad label name {key:?}"));
        }
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?} in {rest}")),
                },
                Some((i, '"')) => break eq + 2 + i + 1,
                Some((_, '\n')) => return Err("raw newline in label value".into()),
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated label value in {rest}")),
            }
        };
        if labels.insert(key.to_owned(), value).is_some() {
            return Err(format!("label {key} twice"));
        }
        rest = &rest[end..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// A strict reader of text format 0.0.4: every line a HELP, TYPE or sample;
/// HELP and TYPE once per family and before its samples; a family's samples
/// contiguous; labels well-formed and escaped; no duplicate series.
fn parse(text: &str) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let mut current: Option<(String, String)> = None;
    let mut helped: HashSet<String> = HashSet::new();
    let mut typed: HashSet<String> = HashSet::new();
    let mut series: HashSet<String> = HashSet::new();
    let mut pending_help: Option<(String, String)> = None;
    if !text.ends_with('\n') {
        return Err("exposition must end with a newline".into());
    }
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').ok_or(format!("bad HELP: {line}"))?;
            if !valid_name(name, true) || !helped.insert(name.to_owned()) {
                return Err(format!("HELP for {name} invalid or repeated"));
            }
            pending_help = Some((name.to_owned(), help.to_owned()));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or(format!("bad TYPE: {line}"))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(format!("bad type {kind}"));
            }
            if !typed.insert(name.to_owned()) {
                return Err(format!("TYPE for {name} repeated: family split"));
            }
            let help = match pending_help.take() {
                Some((n, h)) if n == name => h,
                _ => return Err(format!("TYPE {name} without its HELP just above")),
            };
            parsed
                .families
                .push((name.to_owned(), kind.to_owned(), help));
            current = Some((name.to_owned(), kind.to_owned()));
        } else if line.starts_with('#') || line.trim().is_empty() {
            return Err(format!("unexpected line {line:?}"));
        } else {
            let name_end = line.find(['{', ' ']).ok_or(format!("no value: {line}"))?;
            let name = &line[..name_end];
            let (labels, rest) = if line[name_end..].starts_with('{') {
                parse_labels(&line[name_end + 1..])?
            } else {
                (Labels::new(), &line[name_end..])
            };
            let value_text = rest
                .strip_prefix(' ')
                .ok_or(format!("no space before value: {line}"))?;
            let value: f64 = match value_text {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                v => v
                    .parse()
                    .map_err(|_| format!("bad value {v:?} in {line}"))?,
            };
            match &current {
                Some((family, _)) if family == name => {}
                _ => return Err(format!("sample {name} outside its family block")),
            }
            let key = format!("{name}{labels:?}");
            if !series.insert(key) {
                return Err(format!("duplicate series {line}"));
            }
            parsed.samples.push(ParsedSample {
                name: name.to_owned(),
                labels,
                value,
            });
        }
    }
    Ok(parsed)
}

/// The test cluster, with one more UPS that stopped answering.
fn scene() -> (Vec<NodeInfo>, Vec<UpsInfo>) {
    let mut lost = on_battery();
    lost.node = "pi4".into();
    if let Some(s) = lost.status.as_mut() {
        s.ups_name = "apc".into();
        s.communication_ok = false;
        s.communication_error = "no reply".into();
    }
    (cluster(), vec![on_battery(), lost])
}

#[test]
fn exposition_is_well_formed_and_conventional() {
    let (nodes, ups) = scene();
    let text = render(&nodes, &ups);
    let parsed = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(parsed.samples.len() > 80, "{text}");
    for (name, kind, help) in &parsed.families {
        assert!(!help.is_empty(), "{name} has help");
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name} is a {kind}"
        );
        assert!(
            name.starts_with("node_") || name.starts_with("nodewarden_"),
            "{name}"
        );
    }
    for s in &parsed.samples {
        assert!(
            s.labels.contains_key("node"),
            "every series names its node: {s:?}"
        );
        if s.name.ends_with("_ratio") {
            assert!((0.0..=1.0).contains(&s.value), "{s:?}");
        }
    }
}

#[test]
fn node_readings_use_node_exporter_names() {
    let (nodes, ups) = scene();
    let p = parse(&render(&nodes, &ups)).unwrap_or_else(|e| panic!("{e}"));
    let nuc = [("node", "nuc")];
    assert_eq!(p.value("nodewarden_node_up", &nuc), Some(1.0));
    assert_eq!(
        p.value(
            "node_hwmon_temp_celsius",
            &[
                ("node", "nuc"),
                ("chip", "platform_coretemp_0"),
                ("sensor", "temp1")
            ]
        ),
        Some(52.0)
    );
    assert_eq!(
        p.value(
            "node_hwmon_sensor_label",
            &[
                ("node", "nuc"),
                ("chip", "platform_coretemp_0"),
                ("sensor", "temp1"),
                ("label", "Package id 0")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        p.value(
            "node_thermal_zone_temp",
            &[("node", "nuc"), ("zone", "0"), ("type", "acpitz")]
        ),
        Some(27.8)
    );
    assert_eq!(
        p.value("nodewarden_cpu_temperature_celsius", &nuc),
        Some(52.0)
    );
    assert_eq!(
        p.value("nodewarden_memory_total_bytes", &nuc),
        Some(16.0 * 1024.0 * 1024.0 * 1024.0)
    );
    assert_eq!(
        p.value(
            "node_cpu_seconds_total",
            &[("node", "nuc"), ("cpu", "2"), ("mode", "user")]
        ),
        Some(1_236.5)
    );
    assert_eq!(
        p.value(
            "node_cpu_scaling_frequency_hertz",
            &[("node", "nuc"), ("cpu", "0")]
        ),
        Some(1.5e9)
    );
    assert_eq!(p.value("nodewarden_cpu_usage_ratio", &nuc), Some(0.12));
    assert_eq!(p.value("node_load15", &nuc), Some(0.33));
    assert_eq!(
        p.value(
            "node_filesystem_avail_bytes",
            &[("node", "nuc"), ("mountpoint", "/")]
        ),
        Some(15.0 * 1024.0 * 1024.0 * 1024.0)
    );
    // Sample taken 1.5 s before NOW, 3 d 2 h after boot.
    let boot = ((NOW_MS - 1_500) as f64 / 1000.0 - (3.0 * 86_400.0 + 7_200.0)).round();
    assert_eq!(p.value("node_boot_time_seconds", &nuc), Some(boot));
    assert!(
        p.of_node("nuc")
            .iter()
            .all(|s| !s.name.starts_with("nodewarden_rpi")),
        "no throttle series on x86"
    );
    assert!(
        p.of_node("nuc")
            .iter()
            .all(|s| !s.name.starts_with("node_pressure")),
        "pressure absent in the sample, so absent here"
    );
}

#[test]
fn throttle_bits_are_separate_series() {
    let (nodes, ups) = scene();
    let p = parse(&render(&nodes, &ups)).unwrap_or_else(|e| panic!("{e}"));
    let flag = |node, flag| [("node", node), ("flag", flag)];
    // pi4: 0x50005, under-voltage and throttled now and since boot.
    assert_eq!(
        p.value("nodewarden_rpi_throttled", &flag("pi4", "under_voltage")),
        Some(1.0)
    );
    assert_eq!(
        p.value("nodewarden_rpi_throttled", &flag("pi4", "throttled")),
        Some(1.0)
    );
    assert_eq!(
        p.value("nodewarden_rpi_throttled", &flag("pi4", "frequency_capped")),
        Some(0.0)
    );
    assert_eq!(
        p.value("nodewarden_rpi_throttled", &flag("pi4", "soft_temp_limit")),
        Some(0.0)
    );
    assert_eq!(
        p.value(
            "nodewarden_rpi_throttled_since_boot",
            &flag("pi4", "under_voltage")
        ),
        Some(1.0)
    );
    // pi5: 0x40000, throttled earlier, fine now.
    assert_eq!(
        p.value("nodewarden_rpi_throttled", &flag("pi5", "throttled")),
        Some(0.0)
    );
    assert_eq!(
        p.value(
            "nodewarden_rpi_throttled_since_boot",
            &flag("pi5", "throttled")
        ),
        Some(1.0)
    );
    assert_eq!(
        p.value("nodewarden_rpi_arm_clock_hertz", &[("node", "pi4")]),
        Some(1.5e9)
    );
    assert_eq!(
        p.value("nodewarden_cpu_temperature_celsius", &[("node", "pi4")]),
        Some(82.3)
    );
}

#[test]
fn offline_nodes_export_nothing_stale() {
    let (nodes, ups) = scene();
    let p = parse(&render(&nodes, &ups)).unwrap_or_else(|e| panic!("{e}"));
    let mut names: Vec<&str> = p
        .of_node("banana")
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "nodewarden_node_last_seen_timestamp_seconds",
            "nodewarden_node_up"
        ]
    );
    assert_eq!(
        p.value("nodewarden_node_up", &[("node", "banana")]),
        Some(0.0)
    );
    assert_eq!(
        p.value(
            "nodewarden_node_last_seen_timestamp_seconds",
            &[("node", "banana")]
        ),
        Some((NOW_MS - 400_000) as f64 / 1000.0)
    );
}

#[test]
fn ups_status_words_and_readings() {
    let (nodes, ups) = scene();
    let p = parse(&render(&nodes, &ups)).unwrap_or_else(|e| panic!("{e}"));
    let riello = [("node", "nuc"), ("ups", "riello")];
    let status = |s| [("node", "nuc"), ("ups", "riello"), ("status", s)];
    assert_eq!(p.value("nodewarden_ups_status", &status("OB")), Some(1.0));
    assert_eq!(
        p.value("nodewarden_ups_status", &status("DISCHRG")),
        Some(1.0)
    );
    assert_eq!(p.value("nodewarden_ups_status", &status("OL")), Some(0.0));
    assert_eq!(p.value("nodewarden_ups_status", &status("LB")), Some(0.0));
    assert_eq!(
        p.value("nodewarden_ups_communication_ok", &riello),
        Some(1.0)
    );
    assert_eq!(
        p.value("nodewarden_ups_battery_charge_ratio", &riello),
        Some(0.87)
    );
    assert_eq!(
        p.value("nodewarden_ups_battery_runtime_seconds", &riello),
        Some(720.0)
    );
    assert_eq!(p.value("nodewarden_ups_load_ratio", &riello), Some(0.23));
    assert_eq!(
        p.value("nodewarden_ups_output_voltage_volts", &riello),
        Some(229.8)
    );
    assert_eq!(
        p.value("nodewarden_ups_input_frequency_hertz", &riello),
        Some(50.0)
    );
    let estimated = |q| [("node", "nuc"), ("ups", "riello"), ("quantity", q)];
    assert_eq!(
        p.value("nodewarden_ups_estimated", &estimated("runtime")),
        Some(1.0)
    );
    assert_eq!(
        p.value("nodewarden_ups_estimated", &estimated("charge")),
        Some(0.0)
    );
    assert_eq!(
        p.value("nodewarden_ups_last_change_timestamp_seconds", &riello),
        Some((NOW_MS - 42_000) as f64 / 1000.0)
    );

    // The UPS that stopped answering: no stale readings, no stale status.
    let apc: Vec<&str> = p
        .samples
        .iter()
        .filter(|s| s.labels.get("ups").map(String::as_str) == Some("apc"))
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        apc,
        [
            "nodewarden_ups_communication_ok",
            "nodewarden_ups_last_change_timestamp_seconds"
        ]
    );
    assert_eq!(
        p.value(
            "nodewarden_ups_communication_ok",
            &[("node", "pi4"), ("ups", "apc")]
        ),
        Some(0.0)
    );

    // A UPS whose agent went offline is not being read either.
    let mut nodes = nodes;
    for n in &mut nodes {
        if n.name == "nuc" {
            n.online = false;
        }
    }
    let p = parse(&render(&nodes, &ups)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        p.value("nodewarden_ups_communication_ok", &riello),
        Some(0.0)
    );
    assert_eq!(p.value("nodewarden_ups_status", &status("OB")), None);
}

#[test]
fn awkward_label_values_survive_the_round_trip() {
    let mut nodes = cluster();
    let model = "Board \"X\" rev 1\\2\nsecond line";
    nodes[1].board_model = model.into();
    let text = render(&nodes, &[]);
    let p = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let info = p
        .samples
        .iter()
        .find(|s| s.name == "nodewarden_node_info" && s.labels["node"] == nodes[1].name)
        .expect("info series");
    assert_eq!(info.labels["model"], model);
    assert_eq!(format_value(f64::NAN), "NaN");
    assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
    assert_eq!(format_value(0.87), "0.87");
    assert_eq!(format_value(1.5e9), "1500000000");
    assert_eq!(render(&[], &[]), "", "an empty cluster is an empty scrape");
}

#[test]
fn the_store_and_its_events_are_exported() {
    use crate::store::{EventCount, StoreCounters};
    use nodewarden_proto::v1::Severity;
    let counters = StoreCounters {
        write_errors: 3,
        writable: false,
        events: vec![EventCount {
            subject: "power:rack".into(),
            kind: "power_shutdown_started".into(),
            severity: Severity::Critical,
            count: 2,
            last_ms: 1_700_000_000_500,
        }],
    };
    let text = render_store(&counters);
    let p = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        p.value("nodewarden_store_write_errors_total", &[]),
        Some(3.0)
    );
    assert_eq!(p.value("nodewarden_store_writable", &[]), Some(0.0));
    assert_eq!(
        p.value(
            "nodewarden_events_total",
            &[
                ("subject", "power:rack"),
                ("kind", "power_shutdown_started"),
                ("severity", "critical")
            ]
        ),
        Some(2.0)
    );
    assert_eq!(
        p.value(
            "nodewarden_event_last_timestamp_seconds",
            &[
                ("subject", "power:rack"),
                ("kind", "power_shutdown_started"),
                ("severity", "critical")
            ]
        ),
        Some(1_700_000_000.5)
    );
    assert!(
        text.contains("# TYPE nodewarden_events_total counter"),
        "{text}"
    );
    let healthy = render_store(&StoreCounters {
        writable: true,
        ..Default::default()
    });
    assert!(
        healthy.contains("nodewarden_store_writable 1\n"),
        "{healthy}"
    );
    assert!(!healthy.contains("nodewarden_events_total"), "{healthy}");
}

/// The official Prometheus Python client parses the same exposition into
/// the same samples (it is stricter about the grammar than most scrapers).
#[test]
fn prometheus_client_parser_agrees() {
    // The test command installs the client before any test runs; a test
    // never installs (apt's lock would make parallel tests fail).
    let present = Command::new("/usr/bin/python3")
        .args(["-c", "import prometheus_client.parser"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        present,
        "the Prometheus Python client is missing: install the test tools first, \
         as scripts/test.sh does: sudo sh tests/setup/install-test-tools.sh prometheus"
    );

    let (mut nodes, ups) = scene();
    nodes[1].board_model = "Board \"X\" rev 1\\2\nsecond line".into();
    let text = render(&nodes, &ups);
    let mine = parse(&text).unwrap_or_else(|e| panic!("{e}"));

    let program = r#"
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", program])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write exposition");
    let output = child.wait_with_output().expect("python3 output");
    assert!(
        output.status.success(),
        "prometheus_client rejected the exposition: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let theirs: Vec<(String, Labels, f64)> =
        serde_json::from_slice(&output.stdout).expect("python JSON");
    let theirs: Vec<ParsedSample> = theirs
        .into_iter()
        .map(|(name, labels, value)| ParsedSample {
            name,
            labels,
            value,
        })
        .collect();
    assert_eq!(theirs.len(), mine.samples.len());
    assert_eq!(theirs, mine.samples);
}

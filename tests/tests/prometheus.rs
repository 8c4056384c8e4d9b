//! What ships for Prometheus and Grafana, checked against the real thing:
//! the collector's /metrics (real collector, two real agents, a simulated
//! UPS behind a third) passes `promtool check metrics`; the alert rules pass
//! `promtool check rules` and their unit tests (`promtool test rules`); and a
//! real Prometheus scraping that collector answers every PromQL expression
//! in the Grafana dashboard and the rules with data, except the ones the
//! rule unit tests prove (listed in `PROVEN_BY_UNIT_TESTS`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nodewarden_agent::ups::sim::SimUps;
use nodewarden_agent::ups::sim::megatec::{MegatecDialect, MegatecResponder};
use nodewarden_tests::{Collector, Proc, eventually, free_port, start_agent, start_ups_agent};
use serde_json::Value;

const PROMTOOL: &str = "/usr/bin/promtool";
const PROMETHEUS: &str = "/usr/bin/prometheus";

/// The shipped files, from the repository root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn rules_file() -> PathBuf {
    repo().join("packaging/prometheus/nodewarden-rules.yml")
}

fn rules_tests_file() -> PathBuf {
    repo().join("packaging/prometheus/nodewarden-rules.test.yml")
}

fn board(name: &str) -> String {
    repo()
        .join("tests/fixtures/boards")
        .join(name)
        .display()
        .to_string()
}

fn dashboard_file() -> PathBuf {
    repo().join("packaging/grafana/nodewarden.json")
}

/// One plain HTTP/1.0 GET on loopback; the body, or None if it did not answer 200.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.lines().next()?;
    status.contains(" 200 ").then(|| body.to_string())
}

/// A collector with agents `alpha` (a Raspberry Pi 4's fixture tree: throttle
/// flags, ARM clock) and `beta` (an Intel PC's: hwmon sensors, pressure,
/// scaling frequency), and `ups-host` reading the simulated UPS `rack`,
/// which goes on battery once all three report (so the on-battery event is
/// in /metrics).
struct Cluster {
    _dir: tempfile::TempDir,
    collector: Collector,
    _agents: Vec<Proc>,
    _sim: nodewarden_agent::ups::sim::SimHandle,
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ups0");
    let sim = SimUps::spawn(MegatecResponder::new(MegatecDialect::default()), &link).unwrap();
    let collector = Collector::start(dir.path(), free_port(), free_port()).await;
    let url = collector.url();
    let agents = vec![
        start_agent(
            dir.path(),
            "alpha",
            &url,
            "1s",
            &["--sysroot", &board("pi4")],
        ),
        start_agent(
            dir.path(),
            "beta",
            &url,
            "1s",
            &["--sysroot", &board("x86-intel")],
        ),
        start_ups_agent(dir.path(), &collector, &link, "1s"),
    ];
    let port = collector.metrics_port;
    eventually(
        Duration::from_secs(20),
        "UPS on line in /metrics",
        || async move {
            http_get(port, "/metrics").filter(|m| {
                m.contains("nodewarden_ups_status{node=\"ups-host\",ups=\"rack\",status=\"OL\"} 1")
                    && m.contains("nodewarden_node_up{node=\"alpha\"} 1")
                    && m.contains("nodewarden_node_up{node=\"beta\"} 1")
            })
        },
    )
    .await;
    sim.set(|s| s.mains = false);
    eventually(Duration::from_secs(10), "the on-battery event in /metrics", || async move {
        http_get(port, "/metrics").filter(|m| m.contains("kind=\"ups_on_battery\""))
    })
    .await;
    Cluster {
        _dir: dir,
        collector,
        _agents: agents,
        _sim: sim,
    }
}

/// Runs promtool with `args`, `stdin` fed to it; panics with its output unless it succeeds.
fn promtool(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(PROMTOOL)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_nothing_to_fix_in_metrics() {
    nodewarden_tests::setup::require("tsdb", &[PROMTOOL]);
    let c = cluster().await;
    let metrics = http_get(c.collector.metrics_port, "/metrics").unwrap();
    // Every kind of series is there: node, CPU, memory, UPS, store, events.
    for family in [
        "nodewarden_node_up",
        "node_load1",
        "nodewarden_memory_available_bytes",
        "nodewarden_rpi_throttled",
        "node_hwmon_temp_celsius",
        "nodewarden_ups_battery_charge_ratio",
        "nodewarden_store_writable",
        "nodewarden_events_total",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {family} ")),
            "no {family} in:\n{metrics}"
        );
    }
    let report = promtool(&["check", "metrics"], &metrics);
    assert!(
        report.trim().is_empty(),
        "promtool check metrics:\n{report}\n{metrics}"
    );
}

/// The single-quoted `expr:` lines of a rules or rules-test file.
fn yaml_exprs(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let l = l.trim().trim_start_matches("- ");
            let e = l.strip_prefix("expr: ")?;
            let e = e.strip_prefix('\'').and_then(|e| e.strip_suffix('\''));
            Some(
                e.unwrap_or_else(|| panic!("keep {l:?} one single-quoted line"))
                    .replace("''", "'"),
            )
        })
        .collect()
}

/// The alert names a rules file defines.
fn alert_names(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: ").map(str::to_string))
        .collect()
}

#[test]
fn alert_rules_pass_promtool_and_each_alert_is_tested_firing_and_quiet() {
    nodewarden_tests::setup::require("tsdb", &[PROMTOOL]);
    let rules = rules_file();
    let report = promtool(&["check", "rules", rules.to_str().unwrap()], "");
    let rules_found = format!("SUCCESS: {} rules found", alert_names(&rules).len());
    assert!(report.contains(&rules_found), "{report}");
    let tests = rules_tests_file();
    let report = promtool(&["test", "rules", tests.to_str().unwrap()], "");
    assert!(report.contains("SUCCESS"), "{report}");

    // Each alert has a case where it fires and one where it does not.
    let text = std::fs::read_to_string(&tests).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut fires = std::collections::BTreeSet::new();
    let mut quiet = std::collections::BTreeSet::new();
    for (i, l) in lines.iter().enumerate() {
        if let Some(name) = l.strip_prefix("alertname: ") {
            match lines.get(i + 1) {
                Some(&"exp_alerts: []") => quiet.insert(name),
                Some(&"exp_alerts:") => fires.insert(name),
                other => panic!("{name}: expected exp_alerts after it, found {other:?}"),
            };
        }
    }
    let names = alert_names(&rules);
    for want in [
        "NodewardenNodeHot",
        "NodewardenNodeThrottled",
        "NodewardenUnderVoltage",
        "NodewardenMemoryPressure",
        "NodewardenAgentOffline",
        "NodewardenUpsOnBattery",
        "NodewardenUpsBatteryLow",
        "NodewardenUpsBatteryNeedsReplacement",
        "NodewardenPowerSequenceStarted",
        "NodewardenPowerSequenceFailed",
        "NodewardenStoreFailing",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "no alert {want} in {names:?}"
        );
    }
    for name in &names {
        assert!(fires.contains(name.as_str()), "no test where {name} fires");
        assert!(
            quiet.contains(name.as_str()),
            "no test where {name} stays quiet"
        );
    }
}

/// The shipped dashboard, parsed.
fn dashboard() -> Value {
    let text = std::fs::read_to_string(dashboard_file()).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every `expr` in the dashboard JSON (panel targets and annotations), with
/// Grafana's variables as a user with "All" nodes selected would send them.
fn dashboard_exprs() -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", Value::String(e)) => out.push(e.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let dashboard = dashboard();
    assert_eq!(dashboard["schemaVersion"], 39, "docs state schema 39");
    let mut out = Vec::new();
    walk(&dashboard, &mut out);
    out
}

fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$node", ".+")
}

/// Query-string encoding: everything but unreserved characters as %XX.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The names of the series `expr` selects (outside label matchers' quotes).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c == '"' {
            quoted = !quoted;
        }
        if !quoted && (c.is_ascii_alphanumeric() || c == '_') {
            word.push(c);
            continue;
        }
        if (word.starts_with("node_") || word.starts_with("nodewarden_")) && !names.contains(&word)
        {
            names.push(word.clone());
        }
        word.clear();
    }
    names
}

/// Prometheus's answer to an instant query: its result list.
fn query(port: u16, expr: &str) -> Vec<Value> {
    let body = http_get(port, &format!("/api/v1/query?query={}", encode(expr)))
        .unwrap_or_else(|| panic!("Prometheus refused {expr:?}"));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{expr}: {body}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_rule_query_has_data_in_a_real_prometheus() {
    nodewarden_tests::setup::require("tsdb", &[PROMETHEUS, PROMTOOL]);
    let started = std::time::Instant::now();
    let c = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: ['{}']\n\
             scrape_configs:\n  - job_name: nodewarden\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            rules_file().display(),
            c.collector.metrics_port
        ),
    )
    .unwrap();
    let port = free_port();
    let _prometheus = Proc::spawn(
        Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}")),
        dir.path().join("prometheus.log"),
    );
    eventually(
        Duration::from_secs(20),
        "Prometheus scraping the collector",
        || async move {
            let up = http_get(port, "/api/v1/query?query=up")?;
            up.contains("\"1\"]").then_some(())
        },
    )
    .await;
    // Twenty seconds of 1 s scrapes: rate() over a minute has its points.
    tokio::time::sleep(Duration::from_secs(20)).await;

    // The `node` variable offers every node.
    let dashboard = dashboard();
    let variable = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "node")
        .expect("a node variable");
    assert_eq!(
        variable["definition"],
        "label_values(nodewarden_node_up, node)"
    );
    let values = http_get(
        port,
        "/api/v1/label/node/values?match%5B%5D=nodewarden_node_up",
    )
    .unwrap();
    let values: Value = serde_json::from_str(&values).unwrap();
    assert_eq!(
        values["data"],
        serde_json::json!(["alpha", "beta", "ups-host"])
    );

    let proven = yaml_exprs(&rules_tests_file());
    let mut missing = Vec::new();
    let mut by_unit_test = Vec::new();
    let mut with_data = 0;
    for expr in dashboard_exprs() {
        let sent = substitute(&expr);
        if !query(port, &sent).is_empty() {
            with_data += 1;
            continue;
        }
        if proven.contains(&sent) {
            by_unit_test.push(sent);
        } else {
            missing.push(sent);
        }
    }
    // An alert's expression has data only while it fires: the rule unit
    // tests prove each one; here every series it reads must exist.
    for expr in yaml_exprs(&rules_file()) {
        for name in metric_names(&expr) {
            if query(port, &format!("count({name})")).is_empty() {
                missing.push(format!("{name} (read by the rule {expr})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "no data in Prometheus and no promtool unit test for:\n{}",
        missing.join("\n")
    );
    eprintln!(
        "{with_data} dashboard queries answered with data; proven by promtool unit tests instead: {by_unit_test:?}"
    );

    // The simulated UPS is on battery: Prometheus, with the shipped rules loaded, says so.
    eventually(
        Duration::from_secs(10),
        "NodewardenUpsOnBattery firing",
        || async move {
            let alerts: Value = serde_json::from_str(&http_get(port, "/api/v1/alerts")?).ok()?;
            alerts["data"]["alerts"]
                .as_array()?
                .iter()
                .any(|a| {
                    a["labels"]["alertname"] == "NodewardenUpsOnBattery"
                        && a["labels"]["ups"] == "rack"
                        && a["state"] == "firing"
                })
                .then_some(())
        },
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

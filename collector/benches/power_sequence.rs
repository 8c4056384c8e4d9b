//! The power orchestrator against in-memory Kubernetes and agent ports, on the
//! real hub and store:
//! 1. time from the UPS report that crosses a threshold (OB + LB) to the
//!    first cordon call (goal <= 1 s), over many runs;
//! 2. the whole sequence for 5 nodes whose drains take their pods' grace
//!    periods, printed as a timeline, with each stage's real halt time
//!    (from the node's confirm, when it begins to halt, to its disconnect);
//! 3. a reclosing grid: mains back, the nodes boot, mains gone again, three
//!    times within seconds: every outage an event, printed as one timeline.
//!
//! Times are scaled: a Pi's halt of 30-60 s is 300-900 ms here.
//!
//! `cargo bench -p nodewarden --bench power_sequence`

#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a panic is the failure report

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nodewarden::config::EventThresholds;
use nodewarden::power::config::PowerConfig;
use nodewarden::power::machine::Phase;
use nodewarden::power::orchestrator::{Ports, PowerHandle, spawn};
use nodewarden::power::ports::{
    AgentPort, AgentPortError, ClusterNode, ClusterPort, ClusterPortError, CommandOutcome,
    DrainSummary, LateAnswer, NodeDrainPlan,
};
use nodewarden::state::hub::Hub;
use nodewarden::store::{NodeRecord, Retention, Store};
use nodewarden_common::clock::now_ms;
use nodewarden_proto::v1::UpsStatus;

/// Node, server?, longest pod grace period.
const NODES: [(&str, bool, u64); 5] = [
    ("pi5-a", true, 500),
    ("pi5-b", true, 3000),
    ("pi4-a", false, 2000),
    ("pi4-b", false, 4000),
    ("bpi-m5", false, 1000),
];
/// Time a node takes from its confirm (it begins to halt) to its agent's
/// stream closing (k3s stopped, filesystems unmounted), scaled 1:50.
fn halt_of(node: &str) -> Duration {
    Duration::from_millis(match node {
        "pi5-a" | "pi5-b" => 900,
        "pi4-a" | "pi4-b" => 700,
        _ => 500,
    })
}

struct Cluster {
    first_cordon: Mutex<Option<Instant>>,
}

impl ClusterPort for Cluster {
    async fn nodes(&self) -> Result<Vec<ClusterNode>, ClusterPortError> {
        Ok(NODES
            .iter()
            .map(|(n, server, _)| ClusterNode {
                name: n.to_string(),
                server: *server,
                unschedulable: false,
            })
            .collect())
    }
    async fn cordon(&self, _: &str) -> Result<bool, ClusterPortError> {
        self.first_cordon
            .lock()
            .unwrap()
            .get_or_insert_with(Instant::now);
        Ok(false)
    }
    async fn drain(
        &self,
        node: &str,
        deadline: tokio::time::Instant,
    ) -> Result<DrainSummary, ClusterPortError> {
        let grace = NODES.iter().find(|n| n.0 == node).map_or(0, |n| n.2);
        let done = tokio::time::Instant::now() + Duration::from_millis(grace);
        tokio::time::sleep_until(done.min(deadline)).await;
        Ok(DrainSummary {
            evicted: 3,
            skipped: 1,
            remaining: Vec::new(),
            left_behind: Vec::new(),
        })
    }
    async fn uncordon_ours(&self, _: &str) -> Result<(), ClusterPortError> {
        Ok(())
    }
    async fn drain_plan(&self, _: &[String]) -> Result<Vec<NodeDrainPlan>, ClusterPortError> {
        Ok(Vec::new())
    }
}

struct Agents {
    hub: std::sync::Weak<Hub>,
}

impl Agents {
    fn go_down(&self, node: &str) {
        if let Some(hub) = self.hub.upgrade() {
            let node = node.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(halt_of(&node)).await;
                hub.disconnected(&node, None, "halted", now_ms());
            });
        }
    }
}

impl AgentPort for Agents {
    async fn power_off(
        &self,
        node: &str,
        _: u64,
        _: &str,
        _: bool,
        _: LateAnswer,
    ) -> Result<CommandOutcome, AgentPortError> {
        self.go_down(node);
        Ok(CommandOutcome::new(true, "poweroff in 0s"))
    }
    async fn ups_shutdown_return(
        &self,
        _: &str,
        _: &str,
        _: u64,
        _: Duration,
        _: Duration,
        _: bool,
    ) -> Result<CommandOutcome, AgentPortError> {
        Ok(CommandOutcome::new(true, "S02R0001"))
    }
    async fn ups_cancel_shutdown(
        &self,
        _: &str,
        _: &str,
        _: u64,
    ) -> Result<CommandOutcome, AgentPortError> {
        Ok(CommandOutcome::new(true, "shutdown.stop accepted"))
    }
    fn connected(&self, node: &str) -> bool {
        self.hub
            .upgrade()
            .and_then(|h| h.node_info(node))
            .is_some_and(|n| n.online)
    }
}

fn ups(tokens: &[&str]) -> UpsStatus {
    UpsStatus {
        ups_name: "riello".into(),
        timestamp_ms: now_ms(),
        communication_ok: true,
        status: tokens.iter().map(|s| s.to_string()).collect(),
        battery_charge_percent: Some(80.0),
        battery_runtime_seconds: Some(900.0),
        ..Default::default()
    }
}

/// Every node's agent connects, on streams numbered from `base`.
fn connect_all(hub: &Hub, base: u64) {
    for (i, (n, _, _)) in NODES.iter().enumerate() {
        hub.connected(
            NodeRecord {
                name: n.to_string(),
                ..Default::default()
            },
            base + i as u64,
            "bench".into(),
            now_ms(),
        );
    }
}

async fn wait(h: &PowerHandle, f: impl Fn(Phase) -> bool) {
    while !h.domains().first().is_some_and(|d| f(d.machine.phase)) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn setup(dir: &std::path::Path) -> (Arc<Hub>, Arc<Cluster>, PowerHandle) {
    let store = Arc::new(Store::open(dir, Retention::default()).unwrap());
    let hub = Arc::new(Hub::new(store, EventThresholds::default()));
    connect_all(&hub, 100);
    hub.ups_status("pi5-a", ups(&["OL"]));
    let cluster = Arc::new(Cluster {
        first_cordon: Mutex::new(None),
    });
    let agents = Arc::new(Agents {
        hub: Arc::downgrade(&hub),
    });
    let config = PowerConfig {
        collector_node: "pi5-a".into(),
        agent_confirm_timeout: Duration::from_secs(5),
        servers_timeout: Duration::from_secs(5),
        mains_stable: Duration::from_millis(200),
        armed: true,
        ..Default::default()
    };
    let (stop, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(stop);
    let ports = Ports {
        cluster: cluster.clone(),
        agents,
        live: hub.clone(),
        store: hub.store().clone(),
    };
    let h = spawn(config, ports, rx);
    (hub, cluster, h)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, cluster, h) = setup(dir.path());
    while !h.domains().first().is_some_and(|d| {
        d.machine.spec.owner == "pi5-a"
            && d.machine.members.len() == 5
            && d.machine
                .members
                .iter()
                .any(|m| m.role == nodewarden::power::machine::Role::Server)
    }) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // 1. Threshold to first cordon, then cancel (mains back) and repeat.
    let runs = 30;
    let mut lat = Vec::new();
    for _ in 0..runs {
        *cluster.first_cordon.lock().unwrap() = None;
        let t0 = Instant::now();
        hub.ups_status("pi5-a", ups(&["OB", "LB"]));
        loop {
            if let Some(t) = *cluster.first_cordon.lock().unwrap() {
                lat.push(t - t0);
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        wait(&h, |p| p == Phase::Draining).await;
        hub.ups_status("pi5-a", ups(&["OL"]));
        wait(&h, |p| p == Phase::OnMains).await;
    }
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("UPS threshold -> first cordon ({runs} runs, goal <= 1000 ms)");
    println!(
        "{:>10} {:>10} {:>10} {:>10}",
        "min ms", "median ms", "p95 ms", "max ms"
    );
    println!(
        "{:>10.2} {:>10.2} {:>10.2} {:>10.2}",
        ms(lat[0]),
        ms(lat[runs / 2]),
        ms(lat[runs * 95 / 100]),
        ms(lat[runs - 1])
    );
    println!();

    // 2. The whole sequence, 5 nodes.
    let t0 = Instant::now();
    hub.ups_status("pi5-a", ups(&["OB", "LB"]));
    wait(&h, |p| p == Phase::AwaitingReturn).await;
    let total = t0.elapsed();
    let m = h.domains()[0].machine.clone();
    println!("whole sequence, 5 nodes (drain = longest pod grace; halts scaled 1:50)");
    let grace: BTreeMap<&str, u64> = NODES.iter().map(|n| (n.0, n.2)).collect();
    println!(
        "pod grace: {}",
        grace
            .iter()
            .map(|(n, g)| format!("{n} {:.1}s", *g as f64 / 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let start = m.timeline.first().map_or(0, |e| e.at_ms);
    for e in &m.timeline {
        println!("{:>8.3}s  {}", (e.at_ms - start) as f64 / 1000.0, e.text);
    }
    println!(
        "total: {:.3} s from the low-battery report to the last poweroff sent",
        total.as_secs_f64()
    );
    println!();
    println!("{:<24} {:<16} {:>14}", "stage", "nodes", "real halt ms");
    for st in &m.stages {
        let halts: Vec<i64> = st
            .nodes
            .iter()
            .filter_map(|n| halt_ms(&m.timeline, n))
            .collect();
        let shown = halts
            .iter()
            .max()
            .map_or("-".to_string(), |h| h.to_string());
        println!("{:<24} {:<16} {:>14}", st.label, st.nodes.join(","), shown);
    }
    println!();

    // 3. A reclosing grid: three shots within seconds.
    let seen = Arc::new(Mutex::new(Vec::<(i64, String)>::new()));
    // The machine's clock: only what happens from here on.
    let from_ms = nodewarden_common::clock::steady_ms();
    let watch = {
        let (h, seen) = (h.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                if let Some(d) = h.domains().first() {
                    let mut s = seen.lock().unwrap();
                    for e in d.machine.timeline.iter().filter(|e| e.at_ms >= from_ms) {
                        if !s.iter().any(|(t, x)| *t == e.at_ms && *x == e.text) {
                            s.push((e.at_ms, e.text.clone()));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let t0 = Instant::now();
    for shot in 0..3u64 {
        hub.ups_status("pi5-a", ups(&["OL"]));
        connect_all(&hub, 200 + shot * 10);
        tokio::time::sleep(Duration::from_millis(300)).await;
        hub.ups_status("pi5-a", ups(&["OB", "LB"]));
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    wait(&h, |p| p == Phase::AwaitingReturn).await;
    let total = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(20)).await;
    watch.abort();
    let mut all = seen.lock().unwrap().clone();
    all.sort_by_key(|(t, _)| *t);
    let events = all
        .iter()
        .filter(|(_, x)| x.starts_with("shutdown started"))
        .count();
    println!("reclosing grid: mains back 300 ms, gone 700 ms, three times ({events} events)");
    let start = all.first().map_or(0, |e| e.0);
    for (t, x) in &all {
        println!("{:>8.3}s  {x}", (t - start) as f64 / 1000.0);
    }
    println!(
        "total: {:.3} s from the first shot to the last event waiting for mains",
        total.as_secs_f64()
    );
}

/// A node's real halt on `timeline`: "... going down (850ms after it began to halt)".
fn halt_ms(timeline: &[nodewarden::power::machine::TimelineEntry], node: &str) -> Option<i64> {
    timeline.iter().rev().find_map(|e| {
        let rest = e.text.strip_prefix(&format!(
            "{node} disconnected after its poweroff command: going down ("
        ))?;
        let ms = rest.split("ms after").next()?;
        ms.trim().parse().ok()
    })
}

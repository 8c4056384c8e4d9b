//! The power-cut sequence end to end: the real collector (`nodewarden
//! serve`), five real agents (three k3s servers, two workers) whose poweroff
//! is a hook script that logs and then stops its agent the way a halting node
//! drops off, a simulated Megatec UPS on a real pty read by the agent on `s1`,
//! and the fake Kubernetes API as a separate process.
//!
//! What a user would notice is what is checked: which nodes end up cordoned
//! (the fake's state), which pods were evicted (its request log), which
//! hooks ran and in what order (the hook log), and what the UPS received on
//! its serial line (`S.5R0001`: cut the output in 30 s, back 1 min after
//! mains returns).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nodewarden_agent::ups::sim::megatec::{MegatecDialect, MegatecResponder};
use nodewarden_agent::ups::sim::{SimHandle, SimUps};
use nodewarden_proto::v1::EventsRequest;
use nodewarden_tests::fakekube::FakeKubeProcess;
use nodewarden_tests::{Collector, Proc, admin, agent_config, eventually, free_port, start_agent};
use serde_json::Value;

/// The e2e runs share two cores; one cluster at a time keeps the timings honest.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SERVERS: [&str; 3] = ["s1", "s2", "s3"];
const WORKERS: [&str; 2] = ["w1", "w2"];
/// What `ups_off_delay = 30s`, `ups_restore_delay = 1m` must put on the line.
const SHUTDOWN_RETURN: &str = "S.5R0001";

/// Three servers, two workers; a DaemonSet pod on every node, a StatefulSet
/// pod behind a budget on w1, a ReplicaSet pod on w2, one on s3. Pod grace
/// periods of 20 s run at 0.05 real seconds per second: 1 s.
fn scenario(admin_cordoned: &[&str], web_min_available: i64) -> String {
    let mut nodes = Vec::new();
    for s in SERVERS {
        nodes.push(serde_json::json!({"name": s, "role": "server", "unschedulable": admin_cordoned.contains(&s)}));
    }
    for w in WORKERS {
        nodes.push(serde_json::json!({"name": w, "unschedulable": admin_cordoned.contains(&w)}));
    }
    let mut pods = Vec::new();
    for n in SERVERS.iter().chain(WORKERS.iter()) {
        pods.push(
            serde_json::json!({"namespace": "kube-system", "name": format!("svclb-{n}"), "node": n,
            "owner_kind": "DaemonSet", "owner_name": "svclb", "grace_seconds": 20}),
        );
    }
    pods.push(serde_json::json!({"namespace": "default", "name": "web-0", "node": "w1",
        "owner_kind": "StatefulSet", "owner_name": "web", "labels": {"app": "web"}, "grace_seconds": 20}));
    pods.push(serde_json::json!({"namespace": "default", "name": "api-7d9f-x2x", "node": "w2",
        "owner_kind": "ReplicaSet", "owner_name": "api-7d9f", "labels": {"app": "api"}, "grace_seconds": 20}));
    pods.push(serde_json::json!({"namespace": "default", "name": "cache-0", "node": "s3",
        "owner_kind": "StatefulSet", "owner_name": "cache", "labels": {"app": "cache"}, "grace_seconds": 20}));
    serde_json::json!({
        "time_factor": 0.05,
        "pod_startup_seconds": 1,
        "nodes": nodes,
        "pods": pods,
        "pdbs": [{"namespace": "default", "name": "web", "selector": {"app": "web"}, "min_available": web_min_available}],
    })
    .to_string()
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A simulated UPS and a watcher that notes, to the millisecond, when a
/// shutdown command first reached its serial line.
struct Ups {
    sim: Arc<SimHandle>,
    first_shutdown_ns: Arc<Mutex<Option<u128>>>,
    stop: Arc<AtomicBool>,
}

impl Ups {
    fn spawn(link: &Path) -> Ups {
        let sim = Arc::new(
            SimUps::spawn(MegatecResponder::new(MegatecDialect::default()), link).unwrap(),
        );
        let first = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, f, st) = (sim.clone(), first.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                if f.lock().unwrap().is_none()
                    && String::from_utf8_lossy(&s.received())
                        .split('\r')
                        .any(|l| l.starts_with('S'))
                {
                    *f.lock().unwrap() = Some(now_ns());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Ups {
            sim,
            first_shutdown_ns: first,
            stop,
        }
    }

    fn mains(&self, on: bool) {
        self.sim.set(|s| s.mains = on);
    }

    /// The shutdown commands received (`S...` lines), in order.
    fn shutdowns(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.sim.received())
            .split('\r')
            .filter(|l| l.starts_with('S'))
            .map(String::from)
            .collect()
    }

    fn first_shutdown_ns(&self) -> Option<u128> {
        *self.first_shutdown_ns.lock().unwrap()
    }
}

impl Drop for Ups {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// How a test's cluster is set up.
struct Setup {
    /// Nodes an admin cordoned before the outage.
    admin_cordoned: &'static [&'static str],
    /// `minAvailable` of the budget covering web-0 (1 blocks its eviction).
    web_min_available: i64,
    /// `[power]` keys replacing the defaults below (same key names).
    power: &'static [(&'static str, &'static str)],
    /// UPSes by name, with the node whose agent reads each.
    ups: &'static [(&'static str, &'static str)],
    /// Extra `[power]` tables (e.g. `[[power.domain]]`), appended verbatim.
    domains: &'static str,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            admin_cordoned: &[],
            web_min_available: 0,
            power: &[],
            ups: &[("rack", "s1")],
            domains: "",
        }
    }
}

/// The collector, the agents, the UPSes and the fake API of one test.
/// Fields drop in order: processes first, then the directory they use.
struct Rig {
    agents: BTreeMap<String, Proc>,
    collector: Collector,
    ups: BTreeMap<String, Ups>,
    fake: FakeKubeProcess,
    collector_toml: String,
    port: u16,
    metrics_port: u16,
    dir: tempfile::TempDir,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

fn power_toml(setup: &Setup, kubeconfig: &Path) -> String {
    let mut keys: Vec<(&str, String)> = [
        ("collector_node", "\"s2\""),
        ("grace", "\"2s\""),
        ("min_charge_percent", "0"),
        ("min_runtime", "\"0s\""),
        ("drain_timeout", "\"4s\""),
        ("agent_confirm_timeout", "\"3s\""),
        ("servers_timeout", "\"3s\""),
        ("halt_time", "\"1s\""),
        ("ups_off_delay", "\"30s\""),
        ("ups_restore_delay", "\"1m\""),
        ("mains_stable", "\"2s\""),
        ("return_timeout", "\"30s\""),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect();
    for (k, v) in setup.power {
        match keys.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => keys.push((k, v.to_string())),
        }
    }
    let mut s = format!(
        "\n[kubernetes]\nkubeconfig = \"{}\"\nrequest_timeout = \"2s\"\neviction_retry = \"500ms\"\npoll_interval = \"200ms\"\n\n[power]\n",
        kubeconfig.display()
    );
    for (k, v) in keys {
        s.push_str(&format!("{k} = {v}\n"));
    }
    s.push_str(setup.domains);
    s
}

/// The poweroff hook every agent runs: log `<name> <unix ns> <command id>`,
/// then stop the agent as a halting node would. `stay-<name>` keeps the
/// agent running (a node slow to go down).
fn write_hook(dir: &Path) {
    std::fs::write(
        dir.join("hook.sh"),
        format!(
            "#!/bin/sh\necho \"$1 $(date +%s%N) $NODEWARDEN_COMMAND_ID\" >> {log}\n\
             [ -e {d}/stay-$1 ] && exit 0\nkill -TERM \"$NODEWARDEN_AGENT_PID\"\n",
            log = dir.join("hooks.log").display(),
            d = dir.display()
        ),
    )
    .unwrap();
}

impl Rig {
    async fn start(setup: Setup) -> Rig {
        let serial = SERIAL.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_hook(d);
        let fake = FakeKubeProcess::spawn(&scenario(setup.admin_cordoned, setup.web_min_available));
        let mut ups = BTreeMap::new();
        for (name, _) in setup.ups {
            ups.insert(name.to_string(), Ups::spawn(&d.join(format!("tty-{name}"))));
        }
        let (port, metrics_port) = (free_port(), free_port());
        let collector_toml = power_toml(&setup, &fake.kubeconfig);
        let collector = Collector::start_with(d, port, metrics_port, &collector_toml).await;
        let mut rig = Rig {
            dir,
            fake,
            collector,
            collector_toml,
            port,
            metrics_port,
            agents: BTreeMap::new(),
            ups,
            _serial: serial,
        };
        for name in SERVERS.iter().chain(WORKERS.iter()) {
            let owned: Vec<&str> = setup
                .ups
                .iter()
                .filter(|(_, owner)| owner == name)
                .map(|(u, _)| *u)
                .collect();
            rig.write_agent_config(name, &owned);
            rig.start_agent(name);
        }
        rig.wait_ready(setup.ups).await;
        rig
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn write_agent_config(&self, name: &str, ups: &[&str]) {
        let d = self.dir();
        let mut s = format!(
            "node_name = \"{name}\"\nsample_interval = \"1s\"\n\n[commands]\npoweroff = [\"/bin/sh\", \"{}\", \"{name}\"]\nstate_dir = \"{}\"\n",
            d.join("hook.sh").display(),
            d.join(format!("run-{name}")).display()
        );
        for u in ups {
            s.push_str(&format!(
                "\n[[ups]]\nname = \"{u}\"\nprotocol = \"megatec\"\nport = \"{}\"\npoll_interval = \"500ms\"\n",
                d.join(format!("tty-{u}")).display()
            ));
        }
        std::fs::write(agent_config(d, name), s).unwrap();
    }

    fn start_agent(&mut self, name: &str) {
        let p = start_agent(self.dir(), name, &self.collector.url(), "1s", &[]);
        self.agents.insert(name.to_string(), p);
    }

    /// Every agent connected, every domain has its UPS and the right roles.
    async fn wait_ready(&self, ups: &[(&str, &str)]) {
        eventually(
            Duration::from_secs(30),
            "all agents and UPSes known to the power sequence",
            || async {
                let p = self.power();
                let domains = p["domains"].as_array()?;
                let mut connected = 0;
                for d in domains {
                    if d["phase"] != "on_mains"
                        || !ups.iter().any(|(u, o)| d["ups"] == *u && d["owner"] == *o)
                    {
                        return None;
                    }
                    for n in d["nodes"].as_array()? {
                        let name = n["name"].as_str()?;
                        let want = if name.starts_with('s') {
                            "server"
                        } else {
                            "worker"
                        };
                        if n["role"] != want {
                            return None;
                        }
                        connected += usize::from(n["connected"] == true);
                    }
                }
                (connected == SERVERS.len() + WORKERS.len()).then_some(())
            },
        )
        .await;
    }

    /// `nodewarden power --json`.
    fn power(&self) -> Value {
        let out = self.collector.cli(&["power", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    fn domain(&self, name: &str) -> Value {
        self.power()["domains"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["name"] == name).cloned())
            .unwrap_or(Value::Null)
    }

    async fn wait_phase(&self, domain: &str, phase: &str, timeout: Duration) -> Value {
        eventually(
            timeout,
            &format!("domain {domain} in phase {phase}"),
            || async {
                let d = self.domain(domain);
                (d["phase"] == phase).then_some(d)
            },
        )
        .await
    }

    /// Hook runs in the order they happened: (node, unix ns).
    fn hooks(&self) -> Vec<(String, u128)> {
        let mut v: Vec<(String, u128)> = std::fs::read_to_string(self.dir().join("hooks.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let mut w = l.split_whitespace();
                (
                    w.next().unwrap().to_string(),
                    w.next().unwrap().parse().unwrap(),
                )
            })
            .collect();
        v.sort_by_key(|(_, t)| *t);
        v
    }

    fn hook_at(&self, node: &str) -> u128 {
        let runs: Vec<u128> = self
            .hooks()
            .into_iter()
            .filter(|(n, _)| n == node)
            .map(|(_, t)| t)
            .collect();
        assert_eq!(
            runs.len(),
            1,
            "{node}'s poweroff hook ran {} times: {:?}",
            runs.len(),
            self.hooks()
        );
        runs[0]
    }

    fn ups(&self, name: &str) -> &Ups {
        &self.ups[name]
    }

    fn kube_node(&self, name: &str) -> Value {
        self.fake.control("GET", "/fake/state")["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["metadata"]["name"] == name)
            .cloned()
            .unwrap()
    }

    fn unschedulable(&self, name: &str) -> bool {
        self.kube_node(name)["spec"]["unschedulable"] == true
    }

    fn pods_on(&self, node: &str) -> Vec<String> {
        let mut v: Vec<String> = self.fake.control("GET", "/fake/state")["pods"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["spec"]["nodeName"] == node)
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    }

    /// (method, path, status) of every API request so far.
    fn requests(&self) -> Vec<(String, String, u64)> {
        self.fake
            .control("GET", "/fake/requests")
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["method"].as_str().unwrap().to_string(),
                    r["path"].as_str().unwrap().to_string(),
                    r["status"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    fn evicted(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .requests()
            .into_iter()
            .filter(|(m, p, _)| m == "POST" && p.ends_with("/eviction"))
            .map(|(_, p, _)| p.rsplit('/').nth(1).unwrap().to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn node_patches(&self) -> usize {
        self.requests()
            .iter()
            .filter(|(m, p, _)| m == "PATCH" && p.starts_with("/api/v1/nodes/"))
            .count()
    }

    /// Power events recorded for `domain` (kinds, oldest first).
    async fn events(&self, domain: &str) -> Vec<String> {
        let mut a = admin(&self.collector.socket()).await.unwrap();
        let r = a
            .events(EventsRequest {
                since_ms: 0,
                node: format!("power:{domain}"),
                limit: 0,
            })
            .await
            .unwrap()
            .into_inner();
        r.events.into_iter().map(|e| e.kind).collect()
    }

    /// Everything the processes logged, for a failure report.
    fn logs(&self) -> String {
        let mut s = format!("--- collector\n{}", self.collector.proc.log_text());
        for (n, p) in &self.agents {
            s.push_str(&format!("--- agent {n}\n{}", p.log_text()));
        }
        s
    }

    fn pid(&self, agent: &str) -> u32 {
        self.agents[agent].child.id()
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

const SEQUENCE: Duration = Duration::from_secs(30);

/// Every node cordoned by us (the annotation says so) and now unschedulable.
fn assert_cordoned_by_us(rig: &Rig, nodes: &[&str]) {
    for n in nodes {
        let node = rig.kube_node(n);
        assert_eq!(
            node["spec"]["unschedulable"], true,
            "{n} not cordoned: {node}"
        );
        assert!(
            node["metadata"]["annotations"]["nodewarden.io/cordoned-at"].is_string(),
            "{n} lacks the cordoned-at annotation: {node}"
        );
    }
}

/// Waits (briefly) until `node`'s poweroff hook has run.
async fn wait_hook(rig: &Rig, node: &str) {
    eventually(
        Duration::from_secs(5),
        &format!("{node}'s hook"),
        || async { rig.hooks().iter().any(|(n, _)| n == node).then_some(()) },
    )
    .await;
}

/// Waits until a worker's poweroff hook has run: past the point of no return.
async fn wait_a_worker_down(rig: &Rig) {
    eventually(SEQUENCE, "a worker powered off", || async {
        rig.hooks()
            .iter()
            .any(|(n, _)| n.starts_with('w'))
            .then_some(())
    })
    .await;
}

/// Workers, then the servers together (s3), then the UPS host after it told
/// the UPS to cycle, then the collector's own node; each hook exactly once.
/// The last stage is sent as the domain enters `awaiting_return`: its hook
/// may still be starting, so give it a moment.
async fn assert_full_order(rig: &Rig, ups: &str) {
    wait_hook(rig, "s2").await;
    let w = rig.hook_at("w1").max(rig.hook_at("w2"));
    let s3 = rig.hook_at("s3");
    let s1 = rig.hook_at("s1");
    let s2 = rig.hook_at("s2");
    assert!(
        w < s3,
        "a worker went down after the servers: {:?}",
        rig.hooks()
    );
    assert!(
        s3 < s1,
        "the UPS host went down before the other servers: {:?}",
        rig.hooks()
    );
    assert!(
        s1 < s2,
        "the collector's node was not last: {:?}",
        rig.hooks()
    );
    assert_eq!(rig.ups(ups).shutdowns(), [SHUTDOWN_RETURN], "UPS line");
    let sent = rig.ups(ups).first_shutdown_ns().unwrap();
    assert!(s3 < sent, "UPS told to cycle before the servers were down");
    assert!(
        sent < s1,
        "the UPS host went down before telling the UPS to cycle"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_outage_drains_then_powers_off_workers_servers_ups_host_collector_node() {
    let rig = Rig::start(Setup::default()).await;
    let before: BTreeMap<&str, Vec<String>> = ["s1", "w1", "w2"]
        .into_iter()
        .map(|n| (n, rig.pods_on(n)))
        .collect();
    rig.ups("rack").mains(false);
    let cut = now_ns();
    let d = rig.wait_phase("main", "awaiting_return", SEQUENCE).await;
    wait_hook(&rig, "s2").await;
    eprintln!(
        "mains off to the collector's node powered off: {:?}",
        Duration::from_nanos((rig.hook_at("s2") - cut) as u64)
    );

    assert_cordoned_by_us(&rig, &["s1", "s2", "s3", "w1", "w2"]);
    // Drained with kubectl semantics: DaemonSet pods stay, the rest evicted.
    assert_eq!(
        rig.evicted(),
        ["api-7d9f-x2x", "cache-0", "web-0"],
        "evictions"
    );
    assert!(before["w1"].contains(&"web-0".to_string()));
    assert_eq!(rig.pods_on("w1"), ["svclb-w1"]);
    assert_eq!(rig.pods_on("w2"), ["svclb-w2"]);
    assert_eq!(rig.pods_on("s1"), before["s1"]);
    // Cordons came before any eviction.
    let reqs = rig.requests();
    let last_cordon = reqs
        .iter()
        .rposition(|(m, p, _)| m == "PATCH" && p.starts_with("/api/v1/nodes/"))
        .unwrap();
    let first_eviction = reqs
        .iter()
        .position(|(_, p, _)| p.ends_with("/eviction"))
        .unwrap();
    assert!(
        last_cordon < first_eviction,
        "an eviction before every node was cordoned"
    );

    assert_full_order(&rig, "rack").await;
    // No poweroff before the grace ran out.
    let first_hook = rig.hooks()[0].1;
    assert!(
        first_hook > cut + 2_000_000_000,
        "a node went down within the grace"
    );
    assert!(
        d["reason"].as_str().unwrap_or("").contains("on battery"),
        "{d}"
    );
    let kinds = rig.events("main").await;
    for k in [
        "power_on_battery",
        "power_shutdown_started",
        "power_poweroff_sent",
        "power_ups_cycle",
    ] {
        assert!(
            kinds.iter().any(|x| x == k),
            "no {k} event in {kinds:?}\n{}",
            rig.logs()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_outage_within_the_grace_is_recorded_and_nothing_else() {
    let rig = Rig::start(Setup {
        power: &[("grace", "\"3s\"")],
        ..Setup::default()
    })
    .await;
    rig.ups("rack").mains(false);
    rig.wait_phase("main", "on_battery", Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    rig.ups("rack").mains(true);
    eventually(Duration::from_secs(10), "a brief_outage event", || async {
        rig.events("main")
            .await
            .iter()
            .any(|k| k == "power_brief_outage")
            .then_some(())
    })
    .await;
    // Well past where the grace would have run out.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(rig.domain("main")["phase"], "on_mains");
    assert_eq!(rig.hooks(), [], "a poweroff hook ran");
    assert_eq!(
        rig.ups("rack").shutdowns(),
        Vec::<String>::new(),
        "UPS line"
    );
    assert_eq!(
        rig.node_patches(),
        0,
        "a node was patched: {:?}",
        rig.requests()
    );
    assert_eq!(rig.evicted(), Vec::<String>::new());
    for n in SERVERS.iter().chain(WORKERS.iter()) {
        assert!(!rig.unschedulable(n), "{n} cordoned");
    }
    let kinds = rig.events("main").await;
    assert!(
        !kinds.iter().any(|k| k == "power_shutdown_started"),
        "{kinds:?}"
    );
}

/// Waits for a 429 from the budget on web-0: the drain is under way and blocked.
async fn wait_blocked_drain(rig: &Rig) {
    eventually(
        Duration::from_secs(15),
        "the budget refusing web-0's eviction",
        || async {
            rig.requests()
                .iter()
                .any(|(m, p, s)| m == "POST" && p.ends_with("/web-0/eviction") && *s == 429)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mains_back_during_the_drain_cancels_and_uncordons_ours_only() {
    // w2 was cordoned by an admin before the outage: it must stay so.
    let rig = Rig::start(Setup {
        admin_cordoned: &["w2"],
        web_min_available: 1,
        power: &[("drain_timeout", "\"20s\"")],
        ..Setup::default()
    })
    .await;
    rig.ups("rack").mains(false);
    wait_blocked_drain(&rig).await;
    assert_eq!(rig.domain("main")["phase"], "draining");
    assert_cordoned_by_us(&rig, &["s1", "s2", "s3", "w1"]);
    rig.ups("rack").mains(true);
    rig.wait_phase("main", "on_mains", Duration::from_secs(15))
        .await;
    for n in ["s1", "s2", "s3", "w1"] {
        let node = rig.kube_node(n);
        assert_ne!(
            node["spec"]["unschedulable"], true,
            "{n} left cordoned: {node}"
        );
        assert!(
            node["metadata"]["annotations"]["nodewarden.io/cordoned-at"].is_null(),
            "{n} keeps our annotation: {node}"
        );
    }
    assert!(
        rig.unschedulable("w2"),
        "the admin's cordon on w2 was lifted"
    );
    // (Once w1 is schedulable again the evicted api pod may be rescheduled onto it.)
    assert!(
        rig.pods_on("w1").contains(&"web-0".to_string()),
        "web-0 left w1 despite its budget"
    );
    assert!(
        !rig.requests()
            .iter()
            .any(|(_, p, s)| p.ends_with("/web-0/eviction") && *s == 201),
        "web-0 was evicted despite its budget"
    );
    assert_eq!(rig.hooks(), [], "a node was powered off");
    assert_eq!(
        rig.ups("rack").shutdowns(),
        Vec::<String>::new(),
        "UPS line"
    );
    let kinds = rig.events("main").await;
    assert!(kinds.iter().any(|k| k == "power_cancelled"), "{kinds:?}");
    assert!(
        !kinds.iter().any(|k| k == "power_poweroff_sent"),
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_full_outage_the_nodes_come_back_and_only_ours_are_uncordoned() {
    let mut rig = Rig::start(Setup {
        admin_cordoned: &["w2"],
        ..Setup::default()
    })
    .await;
    rig.ups("rack").mains(false);
    rig.wait_phase("main", "awaiting_return", SEQUENCE).await;
    assert_full_order(&rig, "rack").await;
    assert!(rig.unschedulable("w2"));
    // Mains returns; the UPS powers everything up again: the agents restart
    // (their tmpfs of issued poweroffs is empty after a boot).
    rig.ups("rack").mains(true);
    for n in SERVERS.iter().chain(WORKERS.iter()) {
        let _ = std::fs::remove_dir_all(rig.dir().join(format!("run-{n}")));
        rig.start_agent(n);
    }
    rig.wait_phase("main", "on_mains", Duration::from_secs(20))
        .await;
    for n in ["s1", "s2", "s3", "w1"] {
        assert!(
            !rig.unschedulable(n),
            "{n} left cordoned after the recovery"
        );
    }
    assert!(
        rig.unschedulable("w2"),
        "the admin's cordon on w2 was lifted"
    );
    assert_eq!(
        rig.hooks().len(),
        5,
        "a hook ran again after the return: {:?}",
        rig.hooks()
    );
    let kinds = rig.events("main").await;
    assert!(kinds.iter().any(|k| k == "power_recovered"), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ups_low_battery_flag_starts_the_sequence_before_the_grace_ends() {
    let rig = Rig::start(Setup {
        power: &[("grace", "\"10m\"")],
        ..Setup::default()
    })
    .await;
    rig.ups("rack").mains(false);
    rig.wait_phase("main", "on_battery", Duration::from_secs(5))
        .await;
    // Below the simulated unit's 20 % low-battery level: it raises its flag.
    rig.ups("rack").sim.set(|s| s.charge_percent = 15.0);
    let flagged = Instant::now();
    eventually(Duration::from_secs(5), "all nodes cordoned", || async {
        SERVERS
            .iter()
            .chain(WORKERS.iter())
            .all(|n| rig.unschedulable(n))
            .then_some(())
    })
    .await;
    let to_cordon = flagged.elapsed();
    let d = rig.wait_phase("main", "awaiting_return", SEQUENCE).await;
    assert!(
        d["reason"]
            .as_str()
            .unwrap_or("")
            .to_lowercase()
            .contains("low battery"),
        "reason: {}",
        d["reason"]
    );
    assert_full_order(&rig, "rack").await;
    eprintln!(
        "low-battery flag to every node cordoned: {to_cordon:?} ({})",
        d["reason"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_killed_mid_sequence_resumes_and_no_poweroff_runs_twice() {
    let mut rig = Rig::start(Setup::default()).await;
    // The workers are slow to go down (their agents stay up after the hook),
    // and busy when the poweroff arrives: it sits unanswered in their socket.
    for w in WORKERS {
        std::fs::write(rig.dir().join(format!("stay-{w}")), "").unwrap();
    }
    rig.ups("rack").mains(false);
    rig.wait_phase("main", "draining", Duration::from_secs(10))
        .await;
    for w in WORKERS {
        signal(rig.pid(w), "STOP");
    }
    eventually(
        SEQUENCE,
        "both workers' poweroffs sent, unanswered",
        || async {
            let d = rig.domain("main");
            let nodes = d["nodes"].as_array()?;
            WORKERS
                .iter()
                .all(|w| {
                    nodes
                        .iter()
                        .any(|n| n["name"] == *w && n["power"] == "sent")
                })
                .then_some(())
        },
    )
    .await;
    rig.collector.proc.kill_hard();
    let first_log = rig.collector.proc.log_text();
    // The workers wake: they read the command the dead collector sent, run it,
    // reconnect, and get it again (same id) from the restarted collector.
    for w in WORKERS {
        signal(rig.pid(w), "CONT");
    }
    rig.collector = Collector::start_with(
        rig.dir.path(),
        rig.port,
        rig.metrics_port,
        &rig.collector_toml,
    )
    .await;
    rig.wait_phase("main", "awaiting_return", SEQUENCE).await;
    let log = rig.collector.proc.log_text();
    assert!(
        log.contains("resuming an interrupted sequence"),
        "before:\n{first_log}\nafter:\n{log}"
    );
    assert_full_order(&rig, "rack").await;
    assert!(
        log.matches("not running it again").count() >= 2,
        "the resent poweroffs did not reach both workers:\n{}",
        rig.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_kubernetes_api_does_not_stop_the_poweroffs() {
    let rig = Rig::start(Setup::default()).await;
    rig.fake.control("POST", "/fake/reachability?mode=hang");
    rig.ups("rack").mains(false);
    rig.wait_phase("main", "awaiting_return", SEQUENCE).await;
    assert_full_order(&rig, "rack").await;
    for n in SERVERS.iter().chain(WORKERS.iter()) {
        assert!(!rig.unschedulable(n), "{n} cordoned through a hung API?");
    }
    assert_eq!(rig.pods_on("w1"), ["svclb-w1", "web-0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_never_confirms_is_waited_for_then_left_behind() {
    let rig = Rig::start(Setup::default()).await;
    rig.ups("rack").mains(false);
    // w2's node freezes as the sequence starts: its link stays open, nothing answers.
    rig.wait_phase("main", "draining", Duration::from_secs(10))
        .await;
    signal(rig.pid("w2"), "STOP");
    rig.wait_phase("main", "awaiting_return", SEQUENCE).await;
    let hooks = rig.hooks();
    assert!(
        !hooks.iter().any(|(n, _)| n == "w2"),
        "w2 ran its hook while frozen: {hooks:?}"
    );
    let w1 = rig.hook_at("w1");
    let s3 = rig.hook_at("s3");
    let waited = Duration::from_nanos((s3 - w1) as u64);
    // agent_confirm_timeout = 3s: the servers waited for w2, but no longer.
    assert!(
        waited >= Duration::from_millis(2500),
        "servers went down {waited:?} after w1"
    );
    assert!(
        waited < Duration::from_secs(6),
        "servers waited {waited:?} after w1"
    );
    let d = rig.domain("main");
    let w2 = d["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "w2")
        .unwrap()
        .clone();
    assert_eq!(w2["power"], "failed: timed out", "{w2}");
    wait_hook(&rig, "s2").await;
    assert!(rig.hook_at("s1") < rig.hook_at("s2"));
    assert_eq!(rig.ups("rack").shutdowns(), [SHUTDOWN_RETURN]);
    signal(rig.pid("w2"), "KILL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_power_domains_only_the_one_on_battery_goes_down() {
    let rig = Rig::start(Setup {
        ups: &[("rack-a", "s1"), ("rack-b", "w2")],
        domains: "\n[[power.domain]]\nname = \"a\"\nups = \"rack-a\"\nowner = \"s1\"\nnodes = [\"s1\", \"s2\", \"s3\"]\n\n\
                  [[power.domain]]\nname = \"b\"\nups = \"rack-b\"\nowner = \"w2\"\nnodes = [\"w1\", \"w2\"]\n",
        ..Setup::default()
    })
    .await;
    rig.ups("rack-b").mains(false);
    rig.wait_phase("b", "awaiting_return", SEQUENCE).await;
    assert_eq!(rig.domain("a")["phase"], "on_mains");
    assert_cordoned_by_us(&rig, &["w1", "w2"]);
    for s in SERVERS {
        assert!(!rig.unschedulable(s), "{s} of domain a cordoned");
    }
    assert_eq!(rig.evicted(), ["api-7d9f-x2x", "web-0"]);
    let hooks: Vec<String> = rig.hooks().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        hooks,
        ["w1", "w2"],
        "only domain b's nodes, worker before UPS host"
    );
    assert_eq!(rig.ups("rack-b").shutdowns(), [SHUTDOWN_RETURN]);
    assert!(rig.ups("rack-b").first_shutdown_ns().unwrap() < rig.hook_at("w2"));
    assert_eq!(rig.ups("rack-a").shutdowns(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mains_back_after_the_workers_are_off_carries_on_and_cycles_the_ups() {
    let rig = Rig::start(Setup::default()).await;
    rig.ups("rack").mains(false);
    wait_a_worker_down(&rig).await;
    // Past the point of no return: only the UPS cycle brings the workers back.
    rig.ups("rack").mains(true);
    eventually(SEQUENCE, "the collector's node powered off", || async {
        rig.hooks().iter().any(|(n, _)| n == "s2").then_some(())
    })
    .await;
    assert_full_order(&rig, "rack").await;
    let kinds = rig.events("main").await;
    assert!(!kinds.iter().any(|k| k == "power_cancelled"), "{kinds:?}");
}

/// A UPS cycle that cannot be sent while mains is back (the UPS host's agent
/// is gone) must not strand the cluster: the UPS host and the collector's
/// node stay up, `manual_power_cycle_needed` is raised, and once the UPS
/// host's agent is back the cycle is tried again; only when the UPS took it
/// do the last nodes go down, so the UPS brings everything back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_ups_cycle_with_mains_back_keeps_the_last_nodes_up_until_it_works() {
    let mut rig = Rig::start(Setup {
        power: &[
            ("ups_command_attempts", "2"),
            ("ups_command_retry", "\"1s\""),
        ],
        ..Setup::default()
    })
    .await;
    // s3 is slow to go down: its stage waits out servers_timeout (3 s),
    // time for what follows to happen before the UPS is told to cycle.
    std::fs::write(rig.dir().join("stay-s3"), "").unwrap();
    rig.ups("rack").mains(false);
    wait_a_worker_down(&rig).await;
    // Past the point of no return, mains comes back, and the UPS host's
    // agent dies before it can pass the UPS command on.
    rig.ups("rack").mains(true);
    eventually(SEQUENCE, "the collector to see mains", || async {
        (rig.domain("main")["ups_state"]["on_battery"] == false).then_some(())
    })
    .await;
    signal(rig.pid("s1"), "KILL");
    eventually(SEQUENCE, "a manual power cycle asked for", || async {
        rig.events("main")
            .await
            .iter()
            .any(|k| k == "power_manual_power_cycle_needed")
            .then_some(())
    })
    .await;
    wait_hook(&rig, "s3").await;
    // Held: nothing more goes down while the UPS cannot cycle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let down: Vec<String> = rig.hooks().into_iter().map(|(n, _)| n).collect();
    assert!(
        !down.iter().any(|n| n == "s1" || n == "s2"),
        "the UPS host or the collector's node went down with mains back and no UPS cycle: {down:?}\n{}",
        rig.logs()
    );
    assert!(rig.ups("rack").shutdowns().is_empty(), "UPS line");
    // The UPS host is back: the cycle is tried again and taken, then the
    // held nodes go down, the collector's own last.
    rig.start_agent("s1");
    eventually(SEQUENCE, "the collector's node powered off", || async {
        rig.hooks().iter().any(|(n, _)| n == "s2").then_some(())
    })
    .await;
    assert_full_order(&rig, "rack").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_blocks_then_allows_lets_the_drain_finish_early() {
    let rig = Rig::start(Setup {
        web_min_available: 1,
        power: &[("drain_timeout", "\"20s\"")],
        ..Setup::default()
    })
    .await;
    rig.ups("rack").mains(false);
    wait_blocked_drain(&rig).await;
    assert_eq!(rig.pods_on("w1"), ["svclb-w1", "web-0"]);
    rig.fake.control(
        "POST",
        "/fake/pdb?namespace=default&name=web&minAvailable=0",
    );
    let allowed = Instant::now();
    eventually(SEQUENCE, "the workers powered off", || async {
        rig.hooks()
            .iter()
            .any(|(n, _)| n.starts_with('w'))
            .then_some(())
    })
    .await;
    // Retried every 500 ms and done: not held to the 20 s drain timeout.
    assert!(
        allowed.elapsed() < Duration::from_secs(8),
        "{:?}",
        allowed.elapsed()
    );
    assert!(
        rig.requests()
            .iter()
            .any(|(m, p, s)| m == "POST" && p.ends_with("/web-0/eviction") && *s == 201),
        "web-0 never evicted"
    );
    assert!(!rig.pods_on("w1").contains(&"web-0".to_string()));
    rig.wait_phase("main", "awaiting_return", SEQUENCE).await;
    assert_full_order(&rig, "rack").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_ups_while_on_battery_starts_the_sequence_at_once() {
    let rig = Rig::start(Setup {
        power: &[("grace", "\"10m\"")],
        ..Setup::default()
    })
    .await;
    rig.ups("rack").mains(false);
    rig.wait_phase("main", "on_battery", Duration::from_secs(5))
        .await;
    rig.ups("rack").sim.set(|s| s.silent = true);
    let d = rig.wait_phase("main", "awaiting_return", SEQUENCE).await;
    assert!(
        d["reason"].as_str().unwrap_or("").contains("communication"),
        "reason: {}",
        d["reason"]
    );
    assert_cordoned_by_us(&rig, &["s1", "s2", "s3", "w1", "w2"]);
    let w = rig.hook_at("w1").max(rig.hook_at("w2"));
    assert!(w < rig.hook_at("s3") && rig.hook_at("s3") < rig.hook_at("s1"));
    wait_hook(&rig, "s2").await;
    assert!(rig.hook_at("s1") < rig.hook_at("s2"));
}

//! The rig the power-sequence end-to-end tests share: the real collector
//! (`nodewarden serve`), five real agents (three k3s servers, two workers)
//! whose poweroff is a hook script that logs and then stops its agent the way
//! a halting node drops off, a simulated Megatec UPS on a real pty read by
//! the agent on `s1`, and the fake Kubernetes API as a separate process; and
//! the checks on what a user would notice: which nodes end up cordoned (the
//! fake's state), which pods were evicted (its request log), which hooks ran
//! and in what order (the hook log), and what the UPS received on its serial
//! line (`S.5R0001`: cut the output in 30 s, back 1 min after mains returns).
#![allow(dead_code)] // each test file uses its own part of the rig
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nodewarden_agent::ups::sim::megatec::{MegatecDialect, MegatecResponder};
use nodewarden_agent::ups::sim::{SimHandle, SimUps};
use nodewarden_proto::v1::EventsRequest;
use nodewarden_tests::fakekube::FakeKubeProcess;
use nodewarden_tests::{Collector, Proc, admin, agent_config, eventually, free_port, start_agent};
use serde_json::Value;

/// The e2e runs share two cores; one cluster at a time keeps the timings honest.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub const SERVERS: [&str; 3] = ["s1", "s2", "s3"];
pub const WORKERS: [&str; 2] = ["w1", "w2"];
/// What `ups_off_delay = 30s`, `ups_restore_delay = 1m` must put on the line.
pub const SHUTDOWN_RETURN: &str = "S.5R0001";

/// Three servers, two workers; a DaemonSet pod on every node, a StatefulSet
/// pod behind a budget on w1, a ReplicaSet pod on w2, one on s3. Pod grace
/// periods of 20 s run at 0.05 real seconds per second: 1 s.
/// `held` adds, per (node, name), a pod with a finalizer: once evicted it
/// stays terminating for good (1 s grace).
pub fn scenario(admin_cordoned: &[&str], web_min_available: i64, held: &[(&str, &str)]) -> String {
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
    for (node, name) in held {
        pods.push(
            serde_json::json!({"namespace": "default", "name": name, "node": node,
            "grace_seconds": 1, "finalizers": ["example.com/hold"]}),
        );
    }
    serde_json::json!({
        "time_factor": 0.05,
        "pod_startup_seconds": 1,
        "nodes": nodes,
        "pods": pods,
        "pdbs": [{"namespace": "default", "name": "web", "selector": {"app": "web"}, "min_available": web_min_available}],
    })
    .to_string()
}

pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A simulated UPS and a watcher that notes, to the millisecond, when a
/// shutdown command first reached its serial line.
pub struct Ups {
    pub sim: Arc<SimHandle>,
    pub first_shutdown_ns: Arc<Mutex<Option<u128>>>,
    pub stop: Arc<AtomicBool>,
}

impl Ups {
    pub fn spawn(link: &Path) -> Ups {
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

    pub fn mains(&self, on: bool) {
        self.sim.set(|s| s.mains = on);
    }

    /// The shutdown commands received (`S...` lines), in order.
    pub fn shutdowns(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.sim.received())
            .split('\r')
            .filter(|l| l.starts_with('S'))
            .map(String::from)
            .collect()
    }

    pub fn first_shutdown_ns(&self) -> Option<u128> {
        *self.first_shutdown_ns.lock().unwrap()
    }
}

impl Drop for Ups {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// How a test's cluster is set up.
pub struct Setup {
    /// Nodes an admin cordoned before the outage.
    pub admin_cordoned: &'static [&'static str],
    /// `minAvailable` of the budget covering web-0 (1 blocks its eviction).
    pub web_min_available: i64,
    /// `[power]` keys replacing the defaults below (same key names).
    pub power: &'static [(&'static str, &'static str)],
    /// UPSes by name, with the node whose agent reads each.
    pub ups: &'static [(&'static str, &'static str)],
    /// Extra `[power]` tables (e.g. `[[power.domain]]`), appended verbatim.
    pub domains: &'static str,
    /// `[kubernetes]` keys added to the rig's.
    pub kubernetes: &'static [(&'static str, &'static str)],
    /// Pods held by a finalizer, (node, name): see [`scenario`].
    pub held_pods: &'static [(&'static str, &'static str)],
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            admin_cordoned: &[],
            web_min_available: 0,
            power: &[],
            ups: &[("rack", "s1")],
            domains: "",
            kubernetes: &[],
            held_pods: &[],
        }
    }
}

/// The collector, the agents, the UPSes and the fake API of one test.
/// Fields drop in order: processes first, then the directory they use.
pub struct Rig {
    pub agents: BTreeMap<String, Proc>,
    pub collector: Collector,
    pub ups: BTreeMap<String, Ups>,
    pub fake: FakeKubeProcess,
    pub collector_toml: String,
    pub port: u16,
    pub metrics_port: u16,
    pub dir: tempfile::TempDir,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

pub fn power_toml(setup: &Setup, kubeconfig: &Path, dir: &Path) -> String {
    let mut keys: Vec<(&str, String)> = [
        ("armed", "true"),
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
        // An agent stopped a moment before the outage is offline, not a
        // reconnect to wait for.
        ("offline_after", "\"1s\""),
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
        "\n[kubernetes]\nkubeconfig = \"{}\"\nrequest_timeout = \"2s\"\neviction_retry = \"500ms\"\npoll_interval = \"200ms\"\n",
        kubeconfig.display()
    );
    for (k, v) in setup.kubernetes {
        s.push_str(&format!("{k} = {v}\n"));
    }
    // These tests read every node PATCH as a cordon; the node-health loop's
    // condition and label writes have their own tests (node_health_e2e).
    // Its Events on the power steps stay on.
    s.push_str("\n[node_health]\nconditions = false\nlabels = false\n");
    s.push_str("\n[power]\n");
    for (k, v) in keys {
        s.push_str(&format!("{k} = {v}\n"));
    }
    s.push_str(setup.domains);
    s.push_str(&format!(
        "\n[power.notify]\nexec = [\"/bin/sh\", \"{}\"]\n",
        dir.join("notice.sh").display()
    ));
    s
}

/// The notify exec hook: logs `<event>|<node>|<message>`, one line each.
pub fn write_notice_hook(dir: &Path) {
    std::fs::write(
        dir.join("notice.sh"),
        format!(
            "#!/bin/sh\necho \"$NODEWARDEN_EVENT|$NODEWARDEN_NODE|$NODEWARDEN_MESSAGE\" >> {}\n",
            dir.join("notices.log").display()
        ),
    )
    .unwrap();
}

/// The poweroff hook every agent runs: log `<name> <unix ns> <command id>`,
/// then stop the agent as a halting node would. `stay-<name>` keeps the
/// agent running (a node slow to go down); `fail-<name>` fails the way
/// logind does without the polkit rule, after the agent has confirmed.
pub fn write_hook(dir: &Path) {
    std::fs::write(
        dir.join("hook.sh"),
        format!(
            "#!/bin/sh\necho \"$1 $(date +%s%N) $NODEWARDEN_COMMAND_ID\" >> {log}\n\
             if [ -e {d}/fail-$1 ]; then echo 'Failed to power off system via logind: Access denied' >&2; exit 1; fi\n\
             [ -e {d}/stay-$1 ] && exit 0\nkill -TERM \"$NODEWARDEN_AGENT_PID\"\n",
            log = dir.join("hooks.log").display(),
            d = dir.display()
        ),
    )
    .unwrap();
}

impl Rig {
    pub async fn start(setup: Setup) -> Rig {
        let serial = SERIAL.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_hook(d);
        write_notice_hook(d);
        let fake = FakeKubeProcess::spawn(&scenario(
            setup.admin_cordoned,
            setup.web_min_available,
            setup.held_pods,
        ));
        let mut ups = BTreeMap::new();
        for (name, _) in setup.ups {
            ups.insert(name.to_string(), Ups::spawn(&d.join(format!("tty-{name}"))));
        }
        let (port, metrics_port) = (free_port(), free_port());
        let collector_toml = power_toml(&setup, &fake.kubeconfig, d);
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

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn write_agent_config(&self, name: &str, ups: &[&str]) {
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

    pub fn start_agent(&mut self, name: &str) {
        let p = start_agent(self.dir(), name, &self.collector.url(), "1s", &[]);
        self.agents.insert(name.to_string(), p);
    }

    /// Every agent connected, every domain has its UPS and the right roles.
    pub async fn wait_ready(&self, ups: &[(&str, &str)]) {
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
    pub fn power(&self) -> Value {
        let out = self.collector.cli(&["power", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    pub fn domain(&self, name: &str) -> Value {
        self.power()["domains"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["name"] == name).cloned())
            .unwrap_or(Value::Null)
    }

    pub async fn wait_phase(&self, domain: &str, phase: &str, timeout: Duration) -> Value {
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

    /// The domain's timeline texts, oldest first.
    pub fn timeline(&self, domain: &str) -> Vec<String> {
        self.domain(domain)["timeline"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|e| e["text"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What the notify exec hook was run with: `<event>|<node>|<message>`.
    pub fn notices(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir().join("notices.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// Hook runs in the order they happened: (node, unix ns).
    pub fn hooks(&self) -> Vec<(String, u128)> {
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

    pub fn hook_at(&self, node: &str) -> u128 {
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

    pub fn ups(&self, name: &str) -> &Ups {
        &self.ups[name]
    }

    pub fn kube_node(&self, name: &str) -> Value {
        self.fake.control("GET", "/fake/state")["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["metadata"]["name"] == name)
            .cloned()
            .unwrap()
    }

    pub fn unschedulable(&self, name: &str) -> bool {
        self.kube_node(name)["spec"]["unschedulable"] == true
    }

    pub fn pods_on(&self, node: &str) -> Vec<String> {
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
    pub fn requests(&self) -> Vec<(String, String, u64)> {
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

    pub fn evicted(&self) -> Vec<String> {
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

    pub fn node_patches(&self) -> usize {
        self.requests()
            .iter()
            .filter(|(m, p, _)| m == "PATCH" && p.starts_with("/api/v1/nodes/"))
            .count()
    }

    /// Power events recorded for `domain` (kinds, oldest first).
    pub async fn events(&self, domain: &str) -> Vec<String> {
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

    /// How many power events of `kind` (e.g. `power_shutdown_started`) `domain` recorded.
    pub async fn count(&self, domain: &str, kind: &str) -> usize {
        self.events(domain)
            .await
            .iter()
            .filter(|k| *k == kind)
            .count()
    }

    /// How many times `node`'s poweroff hook ran.
    pub fn hook_runs(&self, node: &str) -> usize {
        self.hooks().iter().filter(|(n, _)| n == node).count()
    }

    /// Notices the exec hook got for `event` (`shutdown_started`, ...).
    pub fn notices_of(&self, event: &str) -> Vec<String> {
        let prefix = format!("{event}|");
        self.notices()
            .into_iter()
            .filter(|l| l.starts_with(&prefix))
            .collect()
    }

    /// The node boots again after a poweroff: its agent starts with the
    /// tmpfs of issued poweroffs empty.
    pub fn boot(&mut self, node: &str) {
        let _ = std::fs::remove_dir_all(self.dir().join(format!("run-{node}")));
        self.start_agent(node);
    }

    /// Mains returns and every node boots.
    pub fn boot_all(&mut self) {
        for n in SERVERS.iter().chain(WORKERS.iter()) {
            self.boot(n);
        }
    }

    /// A full outage of `rack` (the only UPS): everything powered off in order.
    pub async fn full_outage(&self) {
        self.ups("rack").mains(false);
        self.wait_phase("main", "awaiting_return", SEQUENCE).await;
        assert_full_order(self, "rack").await;
    }

    /// Waits until the collector sees `node`'s agent connected (or not).
    pub async fn wait_connected(&self, node: &str, connected: bool) {
        eventually(
            Duration::from_secs(15),
            &format!("{node} connected = {connected}"),
            || async {
                let d = self.domain("main");
                d["nodes"]
                    .as_array()?
                    .iter()
                    .any(|n| n["name"] == node && n["connected"] == connected)
                    .then_some(())
            },
        )
        .await;
    }

    /// Waits until the collector has read the UPS on battery (or on mains).
    pub async fn wait_on_battery(&self, domain: &str, on_battery: bool) {
        eventually(
            Duration::from_secs(10),
            &format!("UPS of {domain} read with on_battery = {on_battery}"),
            || async {
                (self.domain(domain)["ups_state"]["on_battery"] == on_battery).then_some(())
            },
        )
        .await;
    }

    /// Everything the processes logged, for a failure report.
    pub fn logs(&self) -> String {
        let mut s = format!("--- collector\n{}", self.collector.proc.log_text());
        for (n, p) in &self.agents {
            s.push_str(&format!("--- agent {n}\n{}", p.log_text()));
        }
        s
    }

    pub fn pid(&self, agent: &str) -> u32 {
        self.agents[agent].child.id()
    }
}

pub fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

pub const SEQUENCE: Duration = Duration::from_secs(30);

/// Every node cordoned by us (the annotation says so) and now unschedulable.
pub fn assert_cordoned_by_us(rig: &Rig, nodes: &[&str]) {
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

/// Every node in `nodes` schedulable again with no cordon record of ours.
pub fn assert_uncordoned(rig: &Rig, nodes: &[&str]) {
    for n in nodes {
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
}

/// Waits (briefly) until `node`'s poweroff hook has run.
pub async fn wait_hook(rig: &Rig, node: &str) {
    eventually(
        Duration::from_secs(5),
        &format!("{node}'s hook"),
        || async { rig.hooks().iter().any(|(n, _)| n == node).then_some(()) },
    )
    .await;
}

/// Waits until a worker's poweroff hook has run: past the point of no return.
pub async fn wait_a_worker_down(rig: &Rig) {
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
pub async fn assert_full_order(rig: &Rig, ups: &str) {
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

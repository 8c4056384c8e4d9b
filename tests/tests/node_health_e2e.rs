//! Node health in Kubernetes, end to end: a real collector and real agents
//! reading a Raspberry Pi 4 fixture tree, against the fake API server. An
//! under-voltage raises the `UnderVoltage` condition and an Event, clearing
//! it lowers them, a flapping sensor costs a bounded number of writes, the
//! board labels appear and go with the node; and the bad inputs: RBAC
//! refusals, conflicts, an API that is down, a node Kubernetes does not know.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use nodewarden_tests::fakekube::{FakeKube, Reachability};
use nodewarden_tests::{
    Collector, PI4_UNDER_VOLTAGE_ALARM, Proc, copy_board, eventually, free_port, start_agent,
};
use serde_json::{Value, json};

const SCENARIO: &str = r#"{"nodes": [{"name": "pi"}, {"name": "w1"}]}"#;
const UV_TAINT: &str = "nodewarden.io/under-voltage";

/// Writes at most every 2 s, heartbeats every 30 s, checks twice a second.
fn health_toml(fake: &FakeKube) -> String {
    format!(
        "[kubernetes]\nkubeconfig = \"{}\"\nrequest_timeout = \"2s\"\n\n\
         [node_health]\ncheck_interval = \"250ms\"\nmin_write_interval = \"2s\"\nheartbeat = \"30s\"\n",
        fake.kubeconfig().display()
    )
}

/// A copy of the Pi 4 fixture tree and its hwmon under-voltage alarm file.
fn pi4(dir: &Path) -> (PathBuf, PathBuf) {
    let board = copy_board(dir, "pi4");
    let alarm = board.join(PI4_UNDER_VOLTAGE_ALARM);
    (board, alarm)
}

struct Rig {
    fake: FakeKube,
    collector: Collector,
    dir: tempfile::TempDir,
    alarm: PathBuf,
    board: PathBuf,
}

impl Rig {
    async fn start(scenario: &str) -> Rig {
        Rig::start_with(scenario, "").await
    }

    /// With `extra` TOML after the `[node_health]` keys.
    async fn start_with(scenario: &str, extra: &str) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeKube::start_json(scenario).await;
        let (board, alarm) = pi4(dir.path());
        let config = format!("{}{extra}", health_toml(&fake));
        let collector = Collector::start_with(dir.path(), free_port(), free_port(), &config).await;
        Rig {
            fake,
            collector,
            dir,
            alarm,
            board,
        }
    }

    fn agent(&self, name: &str) -> Proc {
        self.agent_on(name, &self.board)
    }

    fn agent_on(&self, name: &str, board: &Path) -> Proc {
        start_agent(
            self.dir.path(),
            name,
            &self.collector.url(),
            "1s",
            &["--sysroot", board.to_str().unwrap()],
        )
    }

    /// nodewarden's taint keys on `node`, and everyone's.
    fn taint_keys(&self, node: &str) -> Vec<String> {
        self.fake.node(node).unwrap()["spec"]["taints"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|t| t["key"].as_str().unwrap().to_string())
            .collect()
    }

    async fn wait_taint(&self, node: &str, present: bool) {
        eventually(
            Duration::from_secs(15),
            &format!("{node}: under-voltage taint present = {present}"),
            || async {
                (self.taint_keys(node).contains(&UV_TAINT.to_string()) == present).then_some(())
            },
        )
        .await;
    }

    fn condition(&self, node: &str, kind: &str) -> Option<Value> {
        self.fake.node(node)?["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == kind)
            .cloned()
    }

    async fn wait_condition(&self, node: &str, kind: &str, status: &str, secs: u64) -> Value {
        eventually(
            Duration::from_secs(secs),
            &format!("{kind}={status} on {node}"),
            || async { self.condition(node, kind).filter(|c| c["status"] == status) },
        )
        .await
    }

    fn status_writes(&self, node: &str) -> usize {
        let path = format!("/api/v1/nodes/{node}/status");
        self.fake
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH" && r.path == path)
            .count()
    }

    fn events(&self, node: &str, reason: &str) -> Vec<Value> {
        self.fake
            .events()
            .into_iter()
            .filter(|e| e["involvedObject"]["name"] == node && e["reason"] == reason)
            .collect()
    }

    /// The one event `reason` on `node`. The collector posts it after it
    /// writes the condition, so it may come a moment after the condition.
    async fn one_event(&self, node: &str, reason: &str) -> Value {
        eventually(Duration::from_secs(5), reason, || async {
            self.events(node, reason).pop()
        })
        .await;
        let events = self.events(node, reason);
        assert_eq!(
            events.len(),
            1,
            "one {reason} event per transition: {events:?}"
        );
        events[0].clone()
    }

    fn log(&self) -> String {
        self.collector.proc.log_text()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_voltage_raises_the_condition_and_a_flapping_sensor_costs_bounded_writes() {
    let rig = Rig::start(SCENARIO).await;
    // An admin's taint, there before nodewarden writes anything.
    rig.fake.merge_node(
        "pi",
        &json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}),
    );
    let ready_before = rig.condition("pi", "Ready").unwrap();
    let _agent = rig.agent("pi");

    let uv = rig.wait_condition("pi", "UnderVoltage", "False", 20).await;
    assert_eq!(uv["reason"], "NoUnderVoltage");
    for kind in [
        "ThermalThrottling",
        "HighTemperature",
        "NodewardenAgentDown",
    ] {
        assert!(rig.condition("pi", kind).is_some(), "{kind} missing");
    }
    assert_eq!(
        rig.condition("pi", "Ready").unwrap(),
        ready_before,
        "the kubelet's condition was touched"
    );
    let labels = eventually(Duration::from_secs(10), "the board labels", || async {
        let n = rig.fake.node("pi")?;
        n["metadata"]["labels"]["nodewarden.io/board"]
            .is_string()
            .then(|| n["metadata"]["labels"].clone())
    })
    .await;
    assert_eq!(labels["nodewarden.io/board"], "raspberry-pi-4-model-b");
    assert_eq!(labels["nodewarden.io/throttling-capable"], "true");
    assert!(
        labels["nodewarden.io/memory-gib"]
            .as_str()
            .unwrap()
            .parse::<u32>()
            .unwrap()
            >= 1
    );
    assert!(
        rig.fake.node("w1").unwrap()["status"]["conditions"]
            .as_array()
            .unwrap()
            .len()
            == 1,
        "a node without an agent got conditions"
    );

    std::fs::write(&rig.alarm, "1\n").unwrap();
    let up = rig.wait_condition("pi", "UnderVoltage", "True", 15).await;
    assert_eq!(up["reason"], "UnderVoltageDetected");
    // `nodewarden nodes --json` says what nodewarden set (the table's K8S
    // column is dropped first on a narrow terminal: cli::nodes tests).
    let k8s = eventually(
        Duration::from_secs(5),
        "UnderVoltage in nodes --json",
        || async {
            let out = rig.collector.cli(&["nodes", "--json"]);
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            let k8s = v["nodes"][0]["kubernetes"].clone();
            k8s["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "UnderVoltage" && c["status"] == "True")
                .then_some(k8s)
        },
    )
    .await;
    assert_eq!(
        k8s["labels"]["nodewarden.io/board"],
        "raspberry-pi-4-model-b"
    );
    let msg = up["message"].as_str().unwrap();
    assert!(
        msg.starts_with("under-voltage since ") && msg.contains("once in the last 24 h"),
        "{msg}"
    );
    assert_ne!(up["lastTransitionTime"], uv["lastTransitionTime"]);
    let ev = rig.one_event("pi", "UnderVoltageDetected").await;
    assert_eq!(ev["involvedObject"]["kind"], "Node");
    assert_eq!(ev["type"], "Warning");

    std::fs::write(&rig.alarm, "0\n").unwrap();
    let down = rig.wait_condition("pi", "UnderVoltage", "False", 15).await;
    assert_ne!(down["lastTransitionTime"], up["lastTransitionTime"]);
    rig.one_event("pi", "NoUnderVoltage").await;

    // Flapping for 10 s, a change about every sample the agent takes (one
    // a second): ~9 changes seen, at most one write per 2 s. Not faster:
    // flips every 250 ms make a 500 ms cycle that aliases to the same phase
    // at every 1 s sample (a steady reading, never a flap).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rig.status_writes("pi");
    let events_before = rig.fake.events().len();
    let flap_start = std::time::Instant::now();
    let mut on = false;
    while flap_start.elapsed() < Duration::from_secs(10) {
        on = !on;
        std::fs::write(&rig.alarm, if on { "1\n" } else { "0\n" }).unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    std::fs::write(&rig.alarm, "0\n").unwrap();
    let writes = rig.status_writes("pi") - before;
    let events = rig.fake.events().len() - events_before;
    eprintln!("flapping 10 s: {writes} status writes, {events} events");
    assert!(writes >= 1, "the flapping was never written");
    assert!(
        writes <= 10 / 2 + 1,
        "{writes} status writes in 10 s of flapping"
    );
    assert!(events <= 10 / 2 + 1, "{events} events in 10 s of flapping");
    let taints = rig.fake.node("pi").unwrap()["spec"]["taints"].clone();
    assert_eq!(taints[0]["key"], "dedicated", "the admin's taint: {taints}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_agent_is_agent_down_and_a_removed_node_loses_its_labels() {
    let rig = Rig::start(SCENARIO).await;
    let mut agent = rig.agent("pi");
    rig.wait_condition("pi", "NodewardenAgentDown", "False", 20)
        .await;
    eventually(Duration::from_secs(10), "the board label", || async {
        rig.fake.node("pi")?["metadata"]["labels"]["nodewarden.io/board"]
            .as_str()
            .map(|_| ())
    })
    .await;
    agent.stop();
    // The harness's collector calls a silent node offline after 5 s.
    let down = rig
        .wait_condition("pi", "NodewardenAgentDown", "True", 20)
        .await;
    assert_eq!(down["reason"], "AgentDisconnected");
    let uv = rig.wait_condition("pi", "UnderVoltage", "Unknown", 5).await;
    assert_eq!(uv["reason"], "NoCurrentReadings");
    rig.one_event("pi", "AgentDisconnected").await;

    assert!(
        rig.collector
            .cli(&["nodes", "remove", "pi"])
            .status
            .success()
    );
    eventually(Duration::from_secs(10), "the labels removed", || async {
        let labels = rig.fake.node("pi")?["metadata"]["labels"].clone();
        let ours = labels
            .as_object()?
            .keys()
            .any(|k| k.starts_with("nodewarden.io/"));
        (!ours).then_some(())
    })
    .await;
    // And the conditions nothing would keep true any more; the kubelet's stay.
    eventually(
        Duration::from_secs(10),
        "the conditions removed",
        || async {
            let conds = rig.fake.node("pi")?["status"]["conditions"].clone();
            let types: Vec<&str> = conds
                .as_array()?
                .iter()
                .filter_map(|c| c["type"].as_str())
                .collect();
            (types == ["Ready"]).then_some(())
        },
    )
    .await;
    // Kubernetes' own labels stay.
    assert_eq!(
        rig.fake.node("pi").unwrap()["metadata"]["labels"]["kubernetes.io/hostname"],
        "pi"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_conflicts_an_api_down_and_an_unknown_node_are_survived() {
    let rig = Rig::start(SCENARIO).await;
    rig.fake.set_denied("patch", "nodes/status", true);
    let _pi = rig.agent("pi");
    let _ghost = rig.agent("ghost");
    eventually(
        Duration::from_secs(20),
        "the RBAC refusal in the log",
        || async {
            rig.log()
                .contains("forbids nodewarden to patch nodes/status")
                .then_some(())
        },
    )
    .await;
    assert!(
        rig.log()
            .contains("packaging/kubernetes/nodewarden-rbac.yaml")
    );
    // Logged once, not once per check.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        rig.log()
            .matches("forbids nodewarden to patch nodes/status")
            .count(),
        1
    );
    rig.fake.set_denied("patch", "nodes/status", false);
    rig.wait_condition("pi", "UnderVoltage", "False", 10).await;

    // A 409 is re-read and retried once.
    rig.fake.inject_conflicts(1);
    std::fs::write(&rig.alarm, "1\n").unwrap();
    rig.wait_condition("pi", "UnderVoltage", "True", 15).await;
    let statuses: Vec<u16> = rig
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path == "/api/v1/nodes/pi/status")
        .map(|r| r.status)
        .collect();
    assert!(statuses.windows(2).any(|w| w == [409, 200]), "{statuses:?}");

    // The API goes down; the change made meanwhile is written on its return.
    rig.fake.set_reachability(Reachability::Unavailable);
    std::fs::write(&rig.alarm, "0\n").unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        rig.condition("pi", "UnderVoltage").unwrap()["status"],
        "True"
    );
    let during = rig.fake.requests().len();
    rig.fake.set_reachability(Reachability::Up);
    rig.wait_condition("pi", "UnderVoltage", "False", 10).await;
    // One list per check while down, nothing queued behind it.
    assert!(during < 200, "{during} requests");

    // `ghost` has no node in Kubernetes: said once, never written to.
    assert_eq!(
        rig.log()
            .matches("Kubernetes has no node of this name")
            .count(),
        1,
        "{}",
        rig.log()
    );
    assert!(
        !rig.fake
            .requests()
            .iter()
            .any(|r| r.path.contains("/nodes/ghost"))
    );
}

/// Under-voltage taints the node, clearing it removes the taint only after
/// the hold; never more than a third of the nodes carry one (the next in
/// line gets it when a place frees); the power sequence's cordon and an
/// admin's taint are left as they are, and the cordon is lifted as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taints_follow_under_voltage_with_a_hold_and_a_cap_and_leave_cordons_alone() {
    let three = r#"{"nodes": [{"name": "pi"}, {"name": "pi2"}, {"name": "w1"}]}"#;
    let rig = Rig::start_with(
        three,
        "max_tainted_fraction = 0.34\n\n[[node_health.taint]]\ncondition = \"UnderVoltage\"\n\
         key = \"nodewarden.io/under-voltage\"\nhold = \"3s\"\n\n\
         [[power.domain]]\nname = \"rack\"\nups = \"ups0\"\nowner = \"w1\"\nnodes = [\"pi\", \"pi2\", \"w1\"]\n",
    )
    .await;
    rig.fake.merge_node(
        "pi",
        &json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}),
    );
    let second = rig.dir.path().join("second");
    std::fs::create_dir(&second).unwrap();
    let board2 = copy_board(&second, "pi4");
    let _pi = rig.agent("pi");
    let _pi2 = rig.agent_on("pi2", &board2);
    rig.wait_condition("pi2", "UnderVoltage", "False", 20).await;

    std::fs::write(&rig.alarm, "1\n").unwrap();
    rig.wait_taint("pi", true).await;
    let taint = rig.fake.node("pi").unwrap()["spec"]["taints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == UV_TAINT)
        .cloned()
        .unwrap();
    assert_eq!(taint["effect"], "PreferNoSchedule");
    eventually(
        Duration::from_secs(5),
        "the taint in nodes --json",
        || async {
            let out = rig.collector.cli(&["nodes", "--json"]);
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            let pi = v["nodes"]
                .as_array()?
                .iter()
                .find(|n| n["name"] == "pi")?
                .clone();
            (pi["kubernetes"]["taints"] == json!(["nodewarden.io/under-voltage:PreferNoSchedule"]))
                .then_some(())
        },
    )
    .await;
    // The power views say it too, before anyone is asked to drain or halt
    // (the condition's write may follow the taint by min_write_interval).
    rig.wait_condition("pi", "UnderVoltage", "True", 15).await;
    let line = "in Kubernetes: pi UnderVoltage,tainted(1) \
                (taints nodewarden.io/under-voltage:PreferNoSchedule)";
    let plan = eventually(Duration::from_secs(5), "pi's marks in plan", || async {
        let out = rig.collector.cli(&["plan"]);
        let plan = String::from_utf8_lossy(&out.stdout).to_string();
        plan.contains(line).then_some(plan)
    })
    .await;
    assert!(!plan.contains("in Kubernetes: pi2"), "{plan}");
    let power = rig.collector.cli(&["power", "--json"]);
    let v: Value = serde_json::from_slice(&power.stdout).unwrap();
    let pi = v["domains"][0]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "pi")
        .cloned()
        .unwrap();
    assert_eq!(
        pi["kube_taints"],
        json!(["nodewarden.io/under-voltage:PreferNoSchedule"])
    );
    assert!(
        pi["kube_conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "UnderVoltage" && c["status"] == "True"),
        "{pi}"
    );
    // pi2 under-volted too: the cap (1 of 3) keeps it untainted.
    std::fs::write(board2.join(PI4_UNDER_VOLTAGE_ALARM), "1\n").unwrap();
    rig.wait_condition("pi2", "UnderVoltage", "True", 15).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !rig.taint_keys("pi2").contains(&UV_TAINT.to_string()),
        "the cap did not hold"
    );

    // The power sequence cordons pi, with its record.
    let settings = nodewarden::cluster::KubeSettings {
        kubeconfig: Some(rig.fake.kubeconfig().to_path_buf()),
        ..Default::default()
    };
    let cluster = nodewarden::cluster::KubeCluster::connect(&settings)
        .await
        .unwrap();
    cluster.cordon("pi").await.unwrap();

    // Healthy again: the taint stays for the hold, then goes; pi2 gets it.
    std::fs::write(&rig.alarm, "0\n").unwrap();
    rig.wait_condition("pi", "UnderVoltage", "False", 15).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        rig.taint_keys("pi").contains(&UV_TAINT.to_string()),
        "removed before the hold"
    );
    rig.wait_taint("pi", false).await;
    rig.wait_taint("pi2", true).await;
    let keys = rig.taint_keys("pi");
    assert!(keys.contains(&"dedicated".to_string()), "{keys:?}");
    assert!(
        keys.contains(&"node.kubernetes.io/unschedulable".to_string()),
        "the cordon: {keys:?}"
    );
    assert_eq!(rig.fake.node("pi").unwrap()["spec"]["unschedulable"], true);

    // The sequence's uncordon lifts its cordon; the admin's taint stays.
    assert_eq!(
        cluster.uncordon_ours("pi").await.unwrap(),
        nodewarden::cluster::UncordonOutcome::Uncordoned
    );
    assert_eq!(rig.taint_keys("pi"), ["dedicated"]);
}

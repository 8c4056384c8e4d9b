//! The orchestrator against the real hub and store, with in-memory Kubernetes
//! and agent ports that keep a log of every call.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use nodewarden_proto::v1::UpsStatus;

use super::*;
use crate::config::EventThresholds;
use crate::power::ports::{CommandOutcome, DrainSummary, NoCluster};
use crate::store::{NodeRecord, Retention, Store};

#[derive(Default)]
struct FakeCluster {
    log: Mutex<Vec<(Instant, String)>>,
    admin_cordoned: BTreeSet<String>,
    /// Drain time per node (its pods' grace periods).
    drain_time: BTreeMap<String, Duration>,
    servers: BTreeSet<String>,
    nodes: Vec<String>,
}

impl FakeCluster {
    fn record(&self, what: String) {
        self.log.lock().unwrap().push((Instant::now(), what));
    }
    fn calls(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|x| x.1.clone())
            .collect()
    }
}

impl ClusterPort for FakeCluster {
    async fn nodes(&self) -> Result<Vec<ClusterNode>, String> {
        Ok(self
            .nodes
            .iter()
            .map(|n| ClusterNode {
                name: n.clone(),
                server: self.servers.contains(n),
                unschedulable: self.admin_cordoned.contains(n),
            })
            .collect())
    }
    async fn cordon(&self, node: &str) -> Result<bool, String> {
        self.record(format!("cordon {node}"));
        Ok(self.admin_cordoned.contains(node))
    }
    async fn drain(
        &self,
        node: &str,
        deadline: tokio::time::Instant,
    ) -> Result<DrainSummary, String> {
        let t = self.drain_time.get(node).copied().unwrap_or_default();
        tokio::time::sleep_until((tokio::time::Instant::now() + t).min(deadline)).await;
        self.record(format!("drained {node}"));
        Ok(DrainSummary {
            evicted: 2,
            ..Default::default()
        })
    }
    async fn uncordon_ours(&self, node: &str) -> Result<(), String> {
        self.record(format!("uncordon {node}"));
        Ok(())
    }
    async fn drain_plan(&self, nodes: &[String]) -> Result<Vec<NodeDrainPlan>, String> {
        Ok(nodes
            .iter()
            .map(|n| NodeDrainPlan {
                node: n.clone(),
                pods: vec![crate::power::ports::PodPlan {
                    namespace: "default".into(),
                    name: format!("web-{n}"),
                    grace_seconds: self.drain_time.get(n).map_or(30, |d| d.as_secs() as u32),
                    blocked_by: (n == "w1").then(|| "web-pdb".to_string()),
                }],
                skipped: 1,
            })
            .collect())
    }
}

/// Agents that confirm and then drop their stream, like a node going down.
struct FakeAgents {
    // Weak: a command left hanging must not keep the store open.
    hub: std::sync::Weak<Hub>,
    log: Mutex<Vec<(Instant, String)>>,
    silent: BTreeSet<String>,
}

impl FakeAgents {
    fn calls(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|x| x.1.clone())
            .collect()
    }
}

impl AgentPort for FakeAgents {
    async fn power_off(
        &self,
        node: &str,
        id: u64,
        _: &str,
        dry_run: bool,
    ) -> Result<CommandOutcome, String> {
        let d = if dry_run { " (dry run)" } else { "" };
        self.log
            .lock()
            .unwrap()
            .push((Instant::now(), format!("poweroff {node} #{id}{d}")));
        if self.silent.contains(node) {
            std::future::pending::<()>().await;
        }
        if !dry_run && let Some(hub) = self.hub.upgrade() {
            let node = node.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                hub.disconnected(&node, None, "powered off", now_ms());
            });
        }
        Ok(CommandOutcome {
            ok: true,
            message: "ok".into(),
        })
    }
    async fn ups_shutdown_return(
        &self,
        owner: &str,
        ups: &str,
        _: u64,
        off: Duration,
        restore: Duration,
        dry_run: bool,
    ) -> Result<CommandOutcome, String> {
        let d = if dry_run { " (dry run)" } else { "" };
        self.log.lock().unwrap().push((
            Instant::now(),
            format!(
                "ups {owner}/{ups} off {}s restore {}s{d}",
                off.as_secs(),
                restore.as_secs()
            ),
        ));
        Ok(CommandOutcome {
            ok: true,
            message: "S02R0001".into(),
        })
    }
    fn connected(&self, node: &str) -> bool {
        self.hub
            .upgrade()
            .and_then(|h| h.node_info(node))
            .is_some_and(|n| n.online)
    }
}

const NODES: [&str; 5] = ["s1", "s2", "s3", "w1", "w2"];

fn power_config() -> PowerConfig {
    PowerConfig {
        collector_node: "s1".into(),
        grace: Duration::from_millis(300),
        min_runtime: Duration::ZERO,
        agent_confirm_timeout: Duration::from_secs(2),
        servers_timeout: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(3),
        halt_time: Duration::from_millis(100),
        mains_stable: Duration::from_millis(300),
        ..Default::default()
    }
}

fn hub(dir: &std::path::Path) -> Arc<Hub> {
    let store = Arc::new(Store::open(dir, Retention::default()).unwrap());
    Arc::new(Hub::new(store, EventThresholds::default()))
}

fn connect_all(hub: &Hub) {
    for (i, n) in NODES.iter().enumerate() {
        hub.connected(
            NodeRecord {
                name: n.to_string(),
                ..Default::default()
            },
            i as u64 + 1,
            "test".into(),
            now_ms(),
        );
    }
}

fn ups(tokens: &[&str]) -> UpsStatus {
    UpsStatus {
        ups_name: "riello".into(),
        timestamp_ms: now_ms(),
        communication_ok: true,
        status: tokens.iter().map(|s| s.to_string()).collect(),
        battery_charge_percent: Some(90.0),
        battery_runtime_seconds: Some(1200.0),
        ..Default::default()
    }
}

fn cluster() -> Arc<FakeCluster> {
    Arc::new(FakeCluster {
        admin_cordoned: ["w2".to_string()].into(),
        drain_time: [("w1".to_string(), Duration::from_millis(200))].into(),
        servers: ["s1", "s2", "s3"].iter().map(|s| s.to_string()).collect(),
        nodes: NODES.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

async fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn phase(h: &PowerHandle) -> Option<Phase> {
    h.domains().first().map(|d| d.machine.phase)
}

async fn started(
    dir: &std::path::Path,
    c: Arc<FakeCluster>,
) -> (Arc<Hub>, Arc<FakeAgents>, PowerHandle, watch::Sender<bool>) {
    let hub = hub(dir);
    connect_all(&hub);
    hub.ups_status("s1", ups(&["OL"]));
    let agents = Arc::new(FakeAgents {
        hub: Arc::downgrade(&hub),
        log: Mutex::default(),
        silent: BTreeSet::new(),
    });
    let (stop, rx) = watch::channel(false);
    let h = spawn(power_config(), hub.clone(), c, agents.clone(), rx);
    until("the domain to adopt the UPS", 5, || {
        h.domains().first().is_some_and(|d| {
            d.machine.spec.owner == "s1"
                && d.machine.members.len() == 5
                && d.machine.members.iter().any(|m| m.role == Role::Server)
        })
    })
    .await;
    (hub, agents, h, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_runs_the_whole_sequence_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster();
    let (hub, agents, h, _stop) = started(dir.path(), c.clone()).await;
    hub.ups_status("s1", ups(&["OB", "DISCHRG"]));
    until("awaiting return", 10, || {
        phase(&h) == Some(Phase::AwaitingReturn)
    })
    .await;
    until("the last poweroff", 5, || {
        agents.calls().iter().any(|c| c.starts_with("poweroff s1"))
    })
    .await;
    let k8s = c.calls();
    let mut first: Vec<String> = k8s[..5].to_vec();
    first.sort();
    assert_eq!(
        first,
        [
            "cordon s1",
            "cordon s2",
            "cordon s3",
            "cordon w1",
            "cordon w2"
        ]
    );
    assert!(k8s[5..].iter().all(|x| x.starts_with("drained")), "{k8s:?}");
    let order: Vec<String> = agents
        .calls()
        .iter()
        .map(|c| {
            c.split(" #")
                .next()
                .unwrap()
                .split(" off")
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(order.len(), 6, "{order:?}");
    let mut workers = order[..2].to_vec();
    workers.sort();
    let mut servers = order[2..4].to_vec();
    servers.sort();
    assert_eq!(workers, ["poweroff w1", "poweroff w2"]);
    assert_eq!(servers, ["poweroff s2", "poweroff s3"]);
    assert_eq!(order[4..], ["ups s1/riello", "poweroff s1"]);
    assert!(agents.calls()[4].contains("off 120s restore 60s"));
    // The state is in the store, and the events log has the story.
    let saved = hub.store().power_states().unwrap();
    let m = Machine::from_persisted(&saved[0].1).unwrap();
    assert_eq!(m.phase, Phase::AwaitingReturn);
    // Events are written off the sequence's path: give them a moment.
    for k in [
        "power_on_battery",
        "power_shutdown_started",
        "power_poweroff_sent",
        "power_node_down",
        "power_ups_cycle",
    ] {
        until(k, 5, || {
            hub.store()
                .events(0, None, 0)
                .unwrap()
                .iter()
                .any(|e| e.kind == k)
        })
        .await;
    }

    // Mains returns, nodes come back: exactly ours are uncordoned (not w2).
    until("every node down", 5, || {
        hub.node_infos().iter().all(|n| !n.online)
    })
    .await;
    hub.ups_status("s1", ups(&["OL"]));
    connect_all(&hub);
    until("recovered", 10, || phase(&h) == Some(Phase::OnMains)).await;
    let mut unc: Vec<String> = c
        .calls()
        .into_iter()
        .filter(|x| x.starts_with("uncordon"))
        .collect();
    unc.sort();
    assert_eq!(
        unc,
        ["uncordon s1", "uncordon s2", "uncordon s3", "uncordon w1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_cordon_follows_a_low_battery_report_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster();
    let (hub, _agents, _h, _stop) = started(dir.path(), c.clone()).await;
    let t0 = Instant::now();
    hub.ups_status("s1", ups(&["OB", "LB"]));
    until("first cordon", 5, || !c.calls().is_empty()).await;
    let first = c.log.lock().unwrap()[0].0;
    let latency = first - t0;
    assert!(latency < Duration::from_secs(1), "{latency:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mains_back_during_the_drain_cancels_and_powers_nothing_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut fc = Arc::try_unwrap(cluster()).ok().unwrap();
    fc.drain_time.insert("w1".into(), Duration::from_secs(30));
    let c = Arc::new(fc);
    let (hub, agents, h, _stop) = started(dir.path(), c.clone()).await;
    hub.ups_status("s1", ups(&["OB"]));
    until("draining", 5, || phase(&h) == Some(Phase::Draining)).await;
    hub.ups_status("s1", ups(&["OL"]));
    until("cancelled", 5, || phase(&h) == Some(Phase::OnMains)).await;
    assert!(agents.calls().is_empty(), "{:?}", agents.calls());
    let mut unc: Vec<String> = c
        .calls()
        .into_iter()
        .filter(|x| x.starts_with("uncordon"))
        .collect();
    unc.sort();
    assert_eq!(
        unc,
        ["uncordon s1", "uncordon s2", "uncordon s3", "uncordon w1"]
    );
    assert!(
        !c.calls().contains(&"drained w1".to_string()),
        "the drain was stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_kubernetes_api_the_poweroffs_still_happen() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    connect_all(&hub);
    hub.ups_status("s1", ups(&["OL"]));
    let agents = Arc::new(FakeAgents {
        hub: Arc::downgrade(&hub),
        log: Mutex::default(),
        silent: BTreeSet::new(),
    });
    let (_stop, rx) = watch::channel(false);
    let h = spawn(
        power_config(),
        hub.clone(),
        Arc::new(NoCluster),
        agents.clone(),
        rx,
    );
    until("adopted", 5, || {
        h.domains()
            .first()
            .is_some_and(|d| d.machine.spec.owner == "s1")
    })
    .await;
    hub.ups_status("s1", ups(&["OB", "LB"]));
    until("awaiting return", 30, || {
        phase(&h) == Some(Phase::AwaitingReturn)
    })
    .await;
    until("the last poweroff", 5, || {
        agents.calls().iter().any(|c| c.starts_with("poweroff s1"))
    })
    .await;
    assert_eq!(
        agents
            .calls()
            .iter()
            .filter(|c| c.starts_with("poweroff"))
            .count(),
        5,
        "{:?}",
        agents.calls()
    );
    let tl = &h.domains()[0].machine.timeline;
    assert!(
        tl.iter()
            .any(|e| e.text.contains("no Kubernetes API configured")),
        "{tl:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_orchestrator_resumes_without_powering_anything_off_twice() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster();
    let ids_before;
    {
        let hub = hub(dir.path());
        connect_all(&hub);
        hub.ups_status("s1", ups(&["OL"]));
        // Servers never answer: the first collector stops while waiting on them.
        let agents = Arc::new(FakeAgents {
            hub: Arc::downgrade(&hub),
            log: Mutex::default(),
            silent: ["s2".to_string(), "s3".to_string()].into(),
        });
        let (stop, rx) = watch::channel(false);
        let h = spawn(power_config(), hub.clone(), c.clone(), agents.clone(), rx);
        until("adopted", 5, || {
            h.domains().first().is_some_and(|d| {
                d.machine.spec.owner == "s1"
                        && d.machine.members.len() == 5
                        // Roles come from the (asynchronous) Kubernetes node list.
                        && d.machine.members.iter().any(|m| m.role == Role::Server)
            })
        })
        .await;
        hub.ups_status("s1", ups(&["OB", "LB"]));
        until("servers asked", 10, || {
            agents.calls().iter().any(|c| c.starts_with("poweroff s2"))
        })
        .await;
        ids_before = agents.calls();
        stop.send(true).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A new collector on the same data dir: agents reconnect.
    let hub = hub(dir.path());
    let agents = Arc::new(FakeAgents {
        hub: Arc::downgrade(&hub),
        log: Mutex::default(),
        silent: BTreeSet::new(),
    });
    let (_stop, rx) = watch::channel(false);
    let h = spawn(power_config(), hub.clone(), c.clone(), agents.clone(), rx);
    for n in ["s1", "s2", "s3"] {
        hub.connected(
            NodeRecord {
                name: n.into(),
                ..Default::default()
            },
            9,
            "t".into(),
            now_ms(),
        );
    }
    until("awaiting return", 10, || {
        phase(&h) == Some(Phase::AwaitingReturn)
    })
    .await;
    let after = agents.calls();
    // The servers' commands are resent with the very same ids; workers are not asked again.
    for s in ["poweroff s2", "poweroff s3"] {
        let before = ids_before.iter().find(|c| c.starts_with(s)).unwrap();
        assert_eq!(
            after
                .iter()
                .filter(|c| c.starts_with(s))
                .collect::<Vec<_>>(),
            [before]
        );
    }
    assert!(
        !after.iter().any(|c| c.starts_with("poweroff w")),
        "{after:?}"
    );
    assert!(after.iter().any(|c| c.starts_with("ups s1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_reports_every_step_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster();
    let (hub, agents, h, _stop) = started(dir.path(), c.clone()).await;
    let mut rx = h.drill(DrillOptions::default()).await.unwrap();
    let mut lines = Vec::new();
    while let Some(DrillUpdate::Step(_, e)) =
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
    {
        lines.push(e.text);
    }
    assert!(
        c.calls().is_empty(),
        "no cordon without --cordon: {:?}",
        c.calls()
    );
    assert!(
        agents.calls().iter().all(|c| c.ends_with("(dry run)")),
        "{:?}",
        agents.calls()
    );
    assert_eq!(agents.calls().len(), 6);
    assert!(
        hub.node_infos().iter().all(|n| n.online),
        "every node is still up"
    );
    assert!(
        lines.iter().any(|l| l.contains("would cordon and drain")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("drill complete")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("did not disconnect")),
        "{lines:?}"
    );
    assert_eq!(phase(&h), Some(Phase::OnMains));
    until("the drill's events", 5, || {
        hub.store()
            .events(0, None, 0)
            .unwrap()
            .iter()
            .any(|e| e.kind == "power_drill_shutdown_started")
    })
    .await;

    // With --cordon: real cordons, undone at the end.
    let mut rx = h
        .drill(DrillOptions {
            cordon: true,
            ..Default::default()
        })
        .await
        .unwrap();
    while let Some(u) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
    {
        if u == DrillUpdate::Done {
            break;
        }
    }
    let calls = c.calls();
    assert_eq!(calls.iter().filter(|c| c.starts_with("cordon")).count(), 5);
    assert!(
        !calls.iter().any(|c| c.starts_with("drained")),
        "a drill never evicts"
    );
    let mut unc: Vec<&String> = calls.iter().filter(|c| c.starts_with("uncordon")).collect();
    unc.sort();
    assert_eq!(
        unc,
        ["uncordon s1", "uncordon s2", "uncordon s3", "uncordon w1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_lists_stages_pods_pdbs_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let (_hub, _agents, h, _stop) = started(dir.path(), cluster()).await;
    let plan = h.plan().await.unwrap();
    let d = &plan.domains[0];
    let stages: Vec<(String, Vec<String>)> = d
        .stages
        .iter()
        .map(|s| (s.label.clone(), s.nodes.clone()))
        .collect();
    assert_eq!(
        stages,
        [
            (
                "workers".to_string(),
                vec!["w1".to_string(), "w2".to_string()]
            ),
            (
                "servers".to_string(),
                vec!["s2".to_string(), "s3".to_string()]
            ),
            ("UPS host and collector".to_string(), vec!["s1".to_string()]),
        ]
    );
    assert_eq!(d.drain.len(), 5);
    assert!(
        d.warnings.iter().any(|w| w.contains("web-pdb")),
        "{:?}",
        d.warnings
    );
    assert_eq!(d.runtime_ms, Some(1_200_000));
}

/// `nodewarden power`, `plan` and `drill` through the Power service on a real
/// Unix socket, as the CLI runs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_power_plan_and_drill_over_the_admin_socket() {
    use crate::cli::{QueryCommand, View, connect_channel, power};
    use nodewarden_proto::v1::power_client::PowerClient;
    use nodewarden_proto::v1::power_server::PowerServer;

    let dir = tempfile::tempdir().unwrap();
    let (hub, _agents, h, _stop) = started(dir.path(), cluster()).await;
    let socket = dir.path().join("admin.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    // The same caller policy as the collector's admin socket: this test runs
    // as the socket's own user, who may operate.
    let policy = crate::server::auth::Policy::new("nodewarden-admin");
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(tonic::service::InterceptorLayer::new(move |r| {
                policy.stamp(r)
            }))
            .add_service(PowerServer::new(crate::power::service::PowerService::new(
                h.clone(),
                true,
            )))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
    );
    let client = PowerClient::new(connect_channel(&socket).await.unwrap());
    let view = View {
        json: false,
        style: crate::cli::style::Style { color: false },
        width: 100,
        now_ms: now_ms(),
    };
    let run = |cmd: QueryCommand, json: bool| {
        let mut client = client.clone();
        async move {
            let mut out = Vec::new();
            power::execute(&mut client, &cmd, &View { json, ..view }, &mut out)
                .await
                .unwrap();
            String::from_utf8(out).unwrap()
        }
    };

    let text = run(QueryCommand::Power, false).await;
    assert!(text.contains("domain main — UPS riello on s1"), "{text}");
    assert!(text.contains("phase:  on_mains"), "{text}");
    assert!(text.contains("on mains, charge 90%, runtime 20m"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&run(QueryCommand::Power, true).await).unwrap();
    assert_eq!(json["domains"][0]["phase"], "on_mains");
    assert_eq!(json["domains"][0]["nodes"].as_array().unwrap().len(), 5);

    let text = run(QueryCommand::Plan, false).await;
    let steps: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(
        steps,
        [
            "  1. cordon s1, s2, s3, w1, w2",
            "  2. drain them (about 3s)",
            "  3. power off workers: w1, w2 (wait at most 2s)",
            "  4. power off servers: s2, s3 (wait at most 2s)",
            "  5. tell s1 to cycle UPS riello (shutdown with return)",
            "  6. power off UPS host and collector: s1 (wait at most 2s)",
        ],
        "{text}"
    );
    assert!(
        text.contains("default/web-w1 (grace 0s)  BLOCKED by PDB web-pdb"),
        "{text}"
    );
    assert!(
        text.contains("warning: default/web-w1 on w1 is blocked"),
        "{text}"
    );

    let text = run(
        QueryCommand::Drill {
            cordon: false,
            simulated_ups: false,
            domain: None,
        },
        false,
    )
    .await;
    assert!(text.contains("drill complete"), "{text}");
    assert!(
        text.contains("[main] drill: asking to report poweroff of workers: w1, w2"),
        "{text}"
    );
    assert!(hub.node_infos().iter().all(|n| n.online));
    let text = run(
        QueryCommand::Drill {
            cordon: false,
            simulated_ups: false,
            domain: Some("nope".into()),
        },
        true,
    )
    .await;
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["done"], true);
    assert!(text.contains("no such power domain"), "{text}");
}

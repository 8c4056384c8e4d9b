//! The orchestrator against in-memory ports (live state, store, Kubernetes
//! and agents, see `power::testing`): no redb file, no sockets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::*;
use crate::power::machine::{Machine, PowerState, Role};
use crate::power::ports::{LivePort, NoCluster, StorePort};
use crate::power::testing::*;

/// A worker whose agent confirms the poweroff and then reports it failed
/// (logind refused: an inhibitor lock) ends its wait at once: the servers
/// go next, well before the 2 s stage timeout, and the failure is an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poweroff_that_fails_after_its_confirm_ends_the_wait_early() {
    let c = cluster();
    let Started {
        live,
        store,
        agents,
        handle: h,
        stop: _stop,
    } = started_with(c.clone(), |live| agents_failing_after_accept(live, &["w1"])).await;
    live.ups_status("s1", ups(&["OB", "DISCHRG"]));
    until("the servers' poweroffs", 10, || {
        agents.calls().iter().any(|c| c.starts_with("poweroff s2"))
    })
    .await;
    let at = |p: &str| agents.first_call_at(p);
    let waited = at("poweroff s2").duration_since(at("poweroff w1"));
    assert!(
        waited < Duration::from_millis(1500),
        "the servers waited {waited:?} for a worker that had already failed"
    );
    let w1 = h.domains()[0].machine.nodes["w1"].power.clone();
    assert!(
        matches!(&w1, PowerState::Failed(why) if why.contains("inhibitor")),
        "{w1:?}"
    );
    until("the poweroff_failed event", 5, || {
        store
            .event_kinds()
            .iter()
            .any(|k| k == "power_poweroff_failed")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_runs_the_whole_sequence_in_order() {
    let c = cluster();
    let Started {
        live,
        store,
        agents,
        handle: h,
        stop: _stop,
    } = started(c.clone()).await;
    live.ups_status("s1", ups(&["OB", "DISCHRG"]));
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
    assert!(agents.calls()[4].contains("off 180s restore 180s"));
    // The state is in the store, and the events log has the story.
    let saved = store.power_states().unwrap();
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
        until(k, 5, || store.event_kinds().iter().any(|kind| kind == k)).await;
    }

    // Mains returns, nodes come back: exactly ours are uncordoned (not w2).
    until("every node down", 5, || {
        live.node_infos().iter().all(|n| !n.online)
    })
    .await;
    live.ups_status("s1", ups(&["OL"]));
    connect_all(&live);
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
    let c = cluster();
    let Started {
        live, stop: _stop, ..
    } = started(c.clone()).await;
    let t0 = Instant::now();
    live.ups_status("s1", ups(&["OB", "LB"]));
    until("first cordon", 5, || !c.calls().is_empty()).await;
    let first = c.log.lock().unwrap()[0].0;
    let latency = first - t0;
    assert!(latency < Duration::from_secs(1), "{latency:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mains_back_during_the_drain_cancels_and_powers_nothing_off() {
    let mut fc = Arc::try_unwrap(cluster()).ok().unwrap();
    fc.drain_time.insert("w1".into(), Duration::from_secs(30));
    let c = Arc::new(fc);
    let Started {
        live,
        store: _,
        agents,
        handle: h,
        stop: _stop,
    } = started(c.clone()).await;
    live.ups_status("s1", ups(&["OB"]));
    until("draining", 5, || phase(&h) == Some(Phase::Draining)).await;
    live.ups_status("s1", ups(&["OL"]));
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
async fn without_a_kubernetes_api_the_agents_own_k3s_roles_order_the_stages() {
    let (live, store) = (Arc::new(MemLive::default()), Arc::new(MemStore::default()));
    for (n, role) in [
        ("s1", "server"),
        ("s2", "server"),
        ("s3", "server"),
        ("w1", "agent"),
        ("w2", "agent"),
    ] {
        live.k3s_roles.lock().unwrap().insert(n.into(), role.into());
    }
    connect_all(&live);
    live.ups_status("s1", ups(&["OL"]));
    let agents = agents(&live, &[]);
    let (_stop, rx) = watch::channel(false);
    let h = spawn(
        power_config(),
        ports(&live, &store, Arc::new(NoCluster), &agents),
        rx,
    );
    until("the members", 5, || {
        h.domains()
            .first()
            .is_some_and(|d| d.machine.members.len() == 5)
    })
    .await;
    let members = h.domains()[0].machine.members.clone();
    for m in &members {
        let want = if m.name.starts_with('s') {
            Role::Server
        } else {
            Role::Worker
        };
        assert_eq!(m.role, want, "{members:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_kubernetes_api_the_poweroffs_still_happen() {
    let (live, store) = (Arc::new(MemLive::default()), Arc::new(MemStore::default()));
    connect_all(&live);
    live.ups_status("s1", ups(&["OL"]));
    let agents = agents(&live, &[]);
    let (_stop, rx) = watch::channel(false);
    let h = spawn(
        power_config(),
        ports(&live, &store, Arc::new(NoCluster), &agents),
        rx,
    );
    until("adopted", 5, || {
        h.domains()
            .first()
            .is_some_and(|d| d.machine.spec.owner == "s1")
    })
    .await;
    live.ups_status("s1", ups(&["OB", "LB"]));
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
    let c = cluster();
    // The store outlives the first collector; its hub's memory does not.
    let (first, store) = (Arc::new(MemLive::default()), Arc::new(MemStore::default()));
    let ids_before;
    {
        connect_all(&first);
        first.ups_status("s1", ups(&["OL"]));
        // Servers never answer: the first collector stops while waiting on them.
        let agents = agents(&first, &["s2", "s3"]);
        let (stop, rx) = watch::channel(false);
        let h = spawn(
            power_config(),
            ports(&first, &store, c.clone(), &agents),
            rx,
        );
        until("adopted", 5, || {
            h.domains().first().is_some_and(|d| {
                d.machine.spec.owner == "s1"
                        && d.machine.members.len() == 5
                        // Roles come from the (asynchronous) Kubernetes node list.
                        && d.machine.members.iter().any(|m| m.role == Role::Server)
            })
        })
        .await;
        first.ups_status("s1", ups(&["OB", "LB"]));
        until("servers asked", 10, || {
            agents.calls().iter().any(|c| c.starts_with("poweroff s2"))
        })
        .await;
        ids_before = agents.calls();
        stop.send(true).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A new collector on the same store (its hub reloads the nodes, all
    // offline, and the last UPS statuses): agents reconnect.
    let live = Arc::new(first.restarted());
    drop(first);
    let agents = agents(&live, &[]);
    let (_stop, rx) = watch::channel(false);
    let h = spawn(power_config(), ports(&live, &store, c.clone(), &agents), rx);
    for n in ["s1", "s2", "s3"] {
        live.connected(n);
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

/// A collector restarted while the Kubernetes API is down keeps the roles
/// it had learnt (persisted with the machine): the servers stay servers, so
/// they still go down together after the workers, not with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_learnt_before_a_restart_survive_a_missing_kubernetes_api() {
    let c = cluster();
    let (first, store) = (Arc::new(MemLive::default()), Arc::new(MemStore::default()));
    {
        connect_all(&first);
        first.ups_status("s1", ups(&["OL"]));
        let agents = agents(&first, &[]);
        let (stop, rx) = watch::channel(false);
        let _h = spawn(power_config(), ports(&first, &store, c, &agents), rx);
        until("roles saved", 5, || {
            store.power_states().unwrap().iter().any(|(_, b)| {
                Machine::from_persisted(b)
                    .is_ok_and(|m| m.members.iter().filter(|x| x.role == Role::Server).count() == 3)
            })
        })
        .await;
        stop.send(true).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let live = Arc::new(first.restarted());
    drop(first);
    connect_all(&live);
    let agents = agents(&live, &[]);
    let (_stop, rx) = watch::channel(false);
    let h = spawn(
        power_config(),
        ports(&live, &store, Arc::new(NoCluster), &agents),
        rx,
    );
    until("members known again", 5, || {
        h.domains()
            .first()
            .is_some_and(|d| d.machine.members.len() == 5)
    })
    .await;
    // Give a refresh of the members (connection news) the chance to demote.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let roles: Vec<(String, Role)> = h.domains()[0]
        .machine
        .members
        .iter()
        .map(|m| (m.name.clone(), m.role))
        .collect();
    for s in ["s1", "s2", "s3"] {
        assert!(
            roles.contains(&(s.to_string(), Role::Server)),
            "{s} lost its server role without an API: {roles:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_reports_every_step_and_changes_nothing() {
    let c = cluster();
    let Started {
        live,
        store,
        agents,
        handle: h,
        stop: _stop,
    } = started(c.clone()).await;
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
        live.node_infos().iter().all(|n| n.online),
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
        store
            .event_kinds()
            .iter()
            .any(|kind| kind == "power_drill_shutdown_started")
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

/// `plan` carries the time budget the sequence keeps, counted from the
/// planned stages (cordon, every stage's wait, the UPS command, the halt),
/// and names a node whose agent is offline as skipped in its stage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_the_budget_from_every_stage_and_the_offline_nodes() {
    let Started {
        live,
        handle: h,
        stop: _stop,
        ..
    } = started(cluster()).await;
    live.disconnected("w2");
    until("w2 seen offline", 5, || {
        h.domains()[0].machine.connected.get("w2") == Some(&false)
    })
    .await;
    let plan = h.plan().await.unwrap();
    let d = &plan.domains[0];
    let b = &d.budget;
    let stage_waits: i64 = d.stages.iter().map(|s| s.timeout_ms).sum();
    assert_eq!(
        b.reserve_ms,
        b.cordon_ms + stage_waits + b.ups_command_ms + b.halt_ms,
        "{b:?}"
    );
    assert_eq!((b.ups_command_ms, b.halt_ms), (2_000, 100));
    assert_eq!(d.total_estimate_ms, d.drain_estimate_ms + b.reserve_ms);
    let workers = d.stages.iter().find(|s| s.label == "workers").unwrap();
    assert_eq!(workers.skipped, ["w2"]);
    assert!(
        d.warnings
            .iter()
            .any(|w| w.contains("w2") && w.contains("skipped: offline")),
        "{:?}",
        d.warnings
    );
}

/// A `collector_node` that names no node of the domain (the host name
/// differs from the Kubernetes node name) is said loudly: a critical event,
/// and a warning in `plan`, since that node would go down with the servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_node_outside_the_domain_is_reported() {
    let (live, store) = (Arc::new(MemLive::default()), Arc::new(MemStore::default()));
    connect_all(&live);
    live.ups_status("s1", ups(&["OL"]));
    let agents = agents(&live, &[]);
    let (_stop, rx) = watch::channel(false);
    let config = crate::power::config::PowerConfig {
        collector_node: "k3s-server".into(),
        ..power_config()
    };
    let h = spawn(config, ports(&live, &store, cluster(), &agents), rx);
    until("the event", 5, || {
        store
            .event_kinds()
            .iter()
            .any(|k| k == "power_collector_node_unknown")
    })
    .await;
    let plan = h.plan().await.unwrap();
    assert!(
        plan.domains[0]
            .warnings
            .iter()
            .any(|w| w.contains("`k3s-server` is not a node of power domain")),
        "{:?}",
        plan.domains[0].warnings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_lists_stages_pods_pdbs_and_warnings() {
    let Started {
        handle: h,
        stop: _stop,
        ..
    } = started(cluster()).await;
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

/// Hosts logged in to the NUT server are external hosts: told (FSD) after
/// the servers and before the UPS host's cycle. One logged in when the
/// outage starts and gone before its step counts as down: nothing is sent
/// to it and the stage does not wait for it. A host following another UPS
/// is not in this domain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nut_clients_go_down_after_the_servers_and_one_gone_early_is_not_waited_for() {
    let Started {
        live,
        agents,
        handle: h,
        stop: _stop,
        ..
    } = started(cluster()).await;
    live.nut_login("nut:10.0.0.5", "s1", "riello");
    live.nut_login("nut:10.0.0.6", "s1", "riello");
    live.nut_login("nut:10.0.0.9", "s9", "elsewhere");
    until("the NUT hosts among the members", 5, || {
        let m = h.domains()[0].machine.members.clone();
        m.iter().filter(|x| x.name.starts_with("nut:")).count() == 2
    })
    .await;
    let members = h.domains()[0].machine.members.clone();
    for x in members.iter().filter(|x| x.name.starts_with("nut:")) {
        assert_eq!(x.role, Role::External { order: 1 }, "{x:?}");
    }
    assert!(!members.iter().any(|x| x.name == "nut:10.0.0.9"));
    live.ups_status("s1", ups(&["OB", "DISCHRG"]));
    until("the sequence to start", 5, || {
        phase(&h).is_some_and(|p| p != Phase::OnMains && p != Phase::OnBattery)
    })
    .await;
    live.disconnected("nut:10.0.0.6");
    until("awaiting return", 15, || {
        phase(&h) == Some(Phase::AwaitingReturn)
    })
    .await;
    let at = |p: &str| agents.first_call_at(p);
    assert!(at("poweroff s3") < at("poweroff nut:10.0.0.5"));
    assert!(at("poweroff nut:10.0.0.5") < at("ups s1/riello"));
    let calls = agents.calls();
    assert!(!calls.iter().any(|c| c.contains("10.0.0.6")), "{calls:?}");
    let waited = at("ups s1/riello").duration_since(at("poweroff nut:10.0.0.5"));
    assert!(
        waited < Duration::from_millis(1500),
        "waited {waited:?} for a host that had logged out"
    );
    let m = &h.domains()[0].machine;
    assert_eq!(m.nodes["nut:10.0.0.6"].power, PowerState::NotConnected);
    assert!(
        m.timeline.iter().any(|e| e
            .text
            .contains("nut:10.0.0.6: NUT client logged out before its step")),
        "{:?}",
        m.timeline
    );
}

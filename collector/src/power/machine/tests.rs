use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

const S: i64 = 1000;

fn settings() -> Settings {
    Settings {
        grace_ms: 30 * S,
        min_charge_percent: 30.0,
        min_runtime_ms: 300 * S,
        on_comm_lost: true,
        drain_timeout_ms: 120 * S,
        poweroff_reserve_ms: 150 * S,
        agent_confirm_timeout_ms: 30 * S,
        servers_timeout_ms: 60 * S,
        ups_off_delay_ms: 120 * S,
        ups_restore_delay_ms: 60 * S,
        mains_stable_ms: 60 * S,
        return_timeout_ms: 600 * S,
        ups_command_attempts: 3,
        ups_command_retry_ms: 10 * S,
        halt_time_ms: 45 * S,
        estimated_confirmations: 3,
        comm_lost_window_ms: 10 * S,
        uncordon_attempts: 10,
    }
}

/// w1, w2 workers; s1 (collector + UPS owner), s2, s3 servers; db external.
fn machine() -> Machine {
    let spec = DomainSpec {
        name: "main".into(),
        ups: "riello".into(),
        owner: "s1".into(),
        collector_node: Some("s1".into()),
        settings: settings(),
    };
    let mut m = Machine::new(spec, 0);
    let members = vec![
        member("w1", Role::Worker),
        member("w2", Role::Worker),
        member("s1", Role::Server),
        member("s2", Role::Server),
        member("s3", Role::Server),
        member("db", Role::External { order: 1 }),
    ];
    m.step(0, Input::Members(members.clone()));
    for mem in members {
        m.step(0, Input::AgentConnected(mem.name));
    }
    m.step(0, Input::Ups(mains()));
    m
}

fn member(name: &str, role: Role) -> Member {
    Member {
        name: name.into(),
        role,
    }
}

fn mains() -> UpsObservation {
    UpsObservation {
        comm_ok: true,
        online: true,
        on_battery: false,
        low_battery: false,
        charge_percent: Some(100.0),
        runtime_ms: Some(1200 * S),
        charge_estimated: false,
        runtime_estimated: false,
    }
}

fn battery() -> UpsObservation {
    UpsObservation {
        online: false,
        on_battery: true,
        ..mains()
    }
}

fn cordons(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .flat_map(|a| match a {
            Action::Cordon(n) => n.clone(),
            _ => vec![],
        })
        .collect()
}

fn poweroffs(actions: &[Action]) -> Vec<(String, u64)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::PowerOff {
                node, command_id, ..
            } => Some((node.clone(), *command_id)),
            _ => None,
        })
        .collect()
}

fn uncordons(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .flat_map(|a| match a {
            Action::Uncordon(n) => n.clone(),
            _ => vec![],
        })
        .collect()
}

fn kinds(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Notify(n) => Some(n.kind.as_str().to_string()),
            _ => None,
        })
        .collect()
}

fn cordon_all(m: &mut Machine, t: i64, already: &[&str]) -> Vec<Action> {
    let mut out = Vec::new();
    for n in ["w1", "w2", "s1", "s2", "s3"] {
        out.extend(m.step(
            t,
            Input::Cordoned {
                node: n.into(),
                result: Ok(already.contains(&n)),
            },
        ));
    }
    out
}

fn drain_all(m: &mut Machine, t: i64) -> Vec<Action> {
    let mut out = Vec::new();
    for n in ["w1", "w2", "s1", "s2", "s3"] {
        out.extend(m.step(
            t,
            Input::Drained {
                node: n.into(),
                result: Ok("3 pods evicted".into()),
            },
        ));
    }
    out
}

/// Confirms and disconnects every node told to power off in `actions`.
fn obey(m: &mut Machine, t: i64, actions: &[Action]) -> Vec<Action> {
    let mut out = Vec::new();
    for (node, id) in poweroffs(actions) {
        out.extend(m.step(
            t,
            Input::CommandResult {
                node: node.clone(),
                command_id: id,
                ok: true,
                message: "powering off".into(),
            },
        ));
        out.extend(m.step(t, Input::AgentDisconnected(node)));
    }
    for a in actions {
        if let Action::UpsShutdownReturn {
            owner, command_id, ..
        } = a
        {
            out.extend(m.step(
                t,
                Input::CommandResult {
                    node: owner.clone(),
                    command_id: *command_id,
                    ok: true,
                    message: "S02R0001 sent".into(),
                },
            ));
        }
    }
    out
}

#[test]
fn brief_outage_within_grace_does_nothing_but_record() {
    let mut m = machine();
    let a = m.step(S, Input::Ups(battery()));
    assert_eq!(kinds(&a), ["on_battery"]);
    assert_eq!(m.phase, Phase::OnBattery);
    assert_eq!(m.wake_at(), Some(31 * S));
    assert!(m.step(20 * S, Input::Tick).is_empty());
    let a = m.step(25 * S, Input::Ups(mains()));
    assert!(cordons(&a).is_empty());
    assert_eq!(kinds(&a), ["mains_returned", "brief_outage"]);
    assert_eq!(m.phase, Phase::OnMains);
    assert!(m.step(100 * S, Input::Tick).is_empty());
}

#[test]
fn grace_expiry_cordons_every_cluster_node_at_once() {
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    assert!(cordons(&m.step(30 * S, Input::Tick)).is_empty());
    let a = m.step(31 * S, Input::Tick);
    assert_eq!(cordons(&a), ["s1", "s2", "s3", "w1", "w2"]);
    assert!(kinds(&a).contains(&"shutdown_started".to_string()));
    assert_eq!(m.phase, Phase::Cordoning);
}

#[test]
fn each_threshold_starts_the_sequence_before_the_grace() {
    let low = UpsObservation {
        low_battery: true,
        ..battery()
    };
    let charge = UpsObservation {
        charge_percent: Some(29.0),
        ..battery()
    };
    let runtime = UpsObservation {
        runtime_ms: Some(200 * S),
        ..battery()
    };
    for (obs, why) in [
        (low, "low battery"),
        (charge, "charge"),
        (runtime, "runtime"),
    ] {
        let mut m = machine();
        m.step(S, Input::Ups(battery()));
        let a = m.step(2 * S, Input::Ups(obs));
        assert_eq!(cordons(&a).len(), 5, "{why}");
        assert!(m.reason.contains(why), "{}: {why}", m.reason);
    }
}

#[test]
fn low_charge_on_mains_does_not_start_anything() {
    let mut m = machine();
    let a = m.step(
        S,
        Input::Ups(UpsObservation {
            charge_percent: Some(5.0),
            ..mains()
        }),
    );
    assert!(a.is_empty());
    assert_eq!(m.phase, Phase::OnMains);
}

#[test]
fn communication_lost_on_battery_starts_but_not_on_mains() {
    let lost = || {
        Input::Ups(UpsObservation {
            comm_ok: false,
            ..battery()
        })
    };
    // Three lost readings in a row (estimated_confirmations) start it.
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    assert!(
        cordons(&m.step(2 * S, lost())).is_empty(),
        "one failed poll"
    );
    assert!(cordons(&m.step(3 * S, lost())).is_empty());
    let a = m.step(4 * S, lost());
    assert_eq!(cordons(&a).len(), 5);
    assert!(m.reason.contains("communication lost"));
    // One lost reading and silence: it counts after comm_lost_window.
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    m.step(2 * S, lost());
    assert_eq!(m.wake_at(), Some(12 * S));
    assert!(cordons(&m.step(11 * S, Input::Tick)).is_empty());
    assert_eq!(cordons(&m.step(12 * S, Input::Tick)).len(), 5);
    // A failed poll between good ones: nothing.
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    m.step(2 * S, lost());
    m.step(3 * S, Input::Ups(battery()));
    assert!(cordons(&m.step(13 * S, Input::Tick)).is_empty());
    assert_eq!(m.phase, Phase::OnBattery);

    let mut m = machine();
    let a = m.step(
        2 * S,
        Input::Ups(UpsObservation {
            comm_ok: false,
            ..mains()
        }),
    );
    assert_eq!(kinds(&a), ["ups_comm_lost"]);
    assert_eq!(m.phase, Phase::OnMains);
    assert!(m.step(100 * S, Input::Tick).is_empty());
}

fn full_sequence(m: &mut Machine) -> Vec<Action> {
    let mut all = Vec::new();
    all.extend(m.step(S, Input::Ups(battery())));
    all.extend(m.step(31 * S, Input::Tick));
    let a = cordon_all(m, 32 * S, &["w2"]);
    let drain = a
        .iter()
        .find_map(|x| match x {
            Action::Drain { nodes, deadline_ms } => Some((nodes.clone(), *deadline_ms)),
            _ => None,
        })
        .expect("drain after cordons");
    assert_eq!(drain.0.len(), 5);
    all.extend(a);
    let mut a = drain_all(m, 50 * S);
    let mut t = 50 * S;
    // Obey stage after stage until nothing more comes.
    while !poweroffs(&a).is_empty()
        || a.iter()
            .any(|x| matches!(x, Action::UpsShutdownReturn { .. }))
    {
        all.extend(a.clone());
        t += S;
        a = obey(m, t, &a);
    }
    all.extend(a);
    all
}

#[test]
fn long_outage_powers_off_workers_then_servers_then_external_then_ups_then_collector() {
    let mut m = machine();
    let all = full_sequence(&mut m);
    let order: Vec<String> = all
        .iter()
        .filter_map(|a| match a {
            Action::PowerOff { node, .. } => Some(node.clone()),
            Action::UpsShutdownReturn { .. } => Some("UPS".into()),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["w1", "w2", "s2", "s3", "db", "UPS", "s1"]);
    assert_eq!(m.phase, Phase::AwaitingReturn);
    let ups = all
        .iter()
        .find_map(|a| match a {
            Action::UpsShutdownReturn {
                owner,
                off_delay_ms,
                restore_delay_ms,
                dry_run,
                ..
            } => Some((owner.clone(), *off_delay_ms, *restore_delay_ms, *dry_run)),
            _ => None,
        })
        .expect("UPS command");
    assert_eq!(ups, ("s1".to_string(), 120 * S, 60 * S, false));
}

#[test]
fn servers_are_sent_together_and_not_before_workers_are_gone() {
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    cordon_all(&mut m, 32 * S, &[]);
    let a = drain_all(&mut m, 40 * S);
    assert_eq!(poweroffs(&a).len(), 2, "both workers at once");
    let w1 = poweroffs(&a)[0].clone();
    // Only w1 confirms and leaves: servers wait for w2.
    let b = obey(&mut m, 41 * S, &a[..0]);
    assert!(b.is_empty());
    m.step(
        41 * S,
        Input::CommandResult {
            node: w1.0.clone(),
            command_id: w1.1,
            ok: true,
            message: String::new(),
        },
    );
    let b = m.step(41 * S, Input::AgentDisconnected(w1.0));
    assert!(poweroffs(&b).is_empty());
    // w2 never answers: the bounded wait ends at 40 + 30 s.
    assert!(poweroffs(&m.step(69 * S, Input::Tick)).is_empty());
    let c = m.step(70 * S, Input::Tick);
    let names: Vec<String> = poweroffs(&c).into_iter().map(|p| p.0).collect();
    assert_eq!(names, ["s2", "s3"]);
    assert!(
        m.timeline
            .iter()
            .any(|e| e.text.contains("w2 did not confirm"))
    );
}

#[test]
fn mains_back_during_drain_cancels_and_uncordons_only_ours() {
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    cordon_all(&mut m, 32 * S, &["w2"]);
    assert_eq!(m.phase, Phase::Draining);
    let a = m.step(40 * S, Input::Ups(mains()));
    assert!(kinds(&a).contains(&"cancelled".to_string()));
    assert_eq!(uncordons(&a), ["s1", "s2", "s3", "w1"]);
    assert!(poweroffs(&a).is_empty());
    assert_eq!(m.phase, Phase::Cancelling);
    // A late drain result changes nothing.
    assert!(drain_all(&mut m, 41 * S).is_empty());
    let mut done = Vec::new();
    for n in ["s1", "s2", "s3", "w1"] {
        done.extend(m.step(
            42 * S,
            Input::Uncordoned {
                node: n.into(),
                result: Ok(()),
            },
        ));
    }
    assert_eq!(kinds(&done), ["cancel_done"]);
    assert_eq!(m.phase, Phase::OnMains);
}

#[test]
fn a_cordon_answer_after_the_cancel_is_undone() {
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    m.step(
        32 * S,
        Input::Cordoned {
            node: "w1".into(),
            result: Ok(false),
        },
    );
    let a = m.step(33 * S, Input::Ups(mains()));
    assert_eq!(uncordons(&a), ["w1"]);
    let b = m.step(
        34 * S,
        Input::Cordoned {
            node: "s2".into(),
            result: Ok(false),
        },
    );
    assert_eq!(uncordons(&b), ["s2"]);
}

#[test]
fn mains_back_after_workers_are_off_carries_on() {
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    cordon_all(&mut m, 32 * S, &[]);
    let a = drain_all(&mut m, 40 * S);
    assert_eq!(poweroffs(&a).len(), 2);
    let b = m.step(41 * S, Input::Ups(mains()));
    assert!(uncordons(&b).is_empty());
    assert_eq!(m.phase, Phase::PoweringOff);
    let c = obey(&mut m, 42 * S, &a);
    let names: Vec<String> = poweroffs(&c).into_iter().map(|p| p.0).collect();
    assert_eq!(names, ["s2", "s3"]);
}

#[test]
fn unreachable_api_does_not_stop_the_poweroffs() {
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    // No cordon answer at all: after the cordon timeout, straight to poweroff.
    let a = m.step(31 * S + CORDON_TIMEOUT_MS, Input::Tick);
    assert_eq!(poweroffs(&a).len(), 2);
    assert!(
        m.timeline
            .iter()
            .any(|e| e.text.contains("skipping the drain"))
    );

    // Cordon errors: same.
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    let mut out = Vec::new();
    for n in ["w1", "w2", "s1", "s2", "s3"] {
        out.extend(m.step(
            32 * S,
            Input::Cordoned {
                node: n.into(),
                result: Err("connection refused".into()),
            },
        ));
    }
    assert_eq!(poweroffs(&out).len(), 2);
}

#[test]
fn drain_is_bounded_by_remaining_runtime_and_times_out() {
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    // 400 s left, 150 s reserve: 250 s, capped by the 120 s drain timeout.
    m.step(31 * S, Input::Tick);
    let a = cordon_all(&mut m, 32 * S, &[]);
    assert!(a.contains(&Action::Drain {
        nodes: vec![
            "s1".into(),
            "s2".into(),
            "s3".into(),
            "w1".into(),
            "w2".into()
        ],
        deadline_ms: 152 * S
    }));
    // 290 s left (below the 300 s floor); every stage after the drain is
    // kept back: cordon 15 + stages 30+60+30+30 + UPS command 30 + halt 45.
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    m.step(
        2 * S,
        Input::Ups(UpsObservation {
            runtime_ms: Some(290 * S),
            ..battery()
        }),
    );
    assert_eq!(m.budget().reserve_ms, 240 * S);
    let a = cordon_all(&mut m, 3 * S, &[]);
    let deadline = a
        .iter()
        .find_map(|x| match x {
            Action::Drain { deadline_ms, .. } => Some(*deadline_ms),
            _ => None,
        })
        .expect("drain");
    assert_eq!(deadline, 3 * S + 50 * S);
    // One node never finishes: the deadline moves on to poweroff.
    m.step(
        10 * S,
        Input::Drained {
            node: "w1".into(),
            result: Ok("done".into()),
        },
    );
    let b = m.step(deadline, Input::Tick);
    assert_eq!(poweroffs(&b).len(), 2);
    assert!(m.timeline.iter().any(|e| e.text.contains("drain timeout")));
}

#[test]
fn recovery_uncordons_exactly_ours_after_mains_is_stable_and_nodes_are_back() {
    let mut m = machine();
    full_sequence(&mut m);
    assert_eq!(m.phase, Phase::AwaitingReturn);
    // Collector restarted after the UPS cycle: everything is reconnecting.
    let mut resumed: Machine = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    let re = resumed.resume(500 * S);
    assert!(poweroffs(&re).is_empty(), "nothing is sent twice: {re:?}");
    let mut m = resumed;
    m.step(500 * S, Input::Ups(mains()));
    for n in ["s1", "s2", "s3", "db", "w1"] {
        m.step(510 * S, Input::AgentConnected(n.into()));
    }
    assert!(
        uncordons(&m.step(559 * S, Input::Tick)).is_empty(),
        "not stable yet"
    );
    // Stable, but w1 is ours and... w2 is missing yet w2 was already cordoned.
    let a = m.step(560 * S, Input::Tick);
    assert_eq!(
        uncordons(&a),
        ["s1", "s2", "s3", "w1"],
        "w2 was cordoned by an admin"
    );
    assert_eq!(m.phase, Phase::Recovering);
    let mut b = Vec::new();
    for n in ["s1", "s2", "s3"] {
        b.extend(m.step(
            561 * S,
            Input::Uncordoned {
                node: n.into(),
                result: Ok(()),
            },
        ));
    }
    b.extend(m.step(
        561 * S,
        Input::Uncordoned {
            node: "w1".into(),
            result: Err("503".into()),
        },
    ));
    assert!(kinds(&b).is_empty());
    let c = m.step(561 * S + UNCORDON_RETRY_MS, Input::Tick);
    assert_eq!(uncordons(&c), ["w1"]);
    let d = m.step(
        600 * S,
        Input::Uncordoned {
            node: "w1".into(),
            result: Ok(()),
        },
    );
    assert_eq!(kinds(&d), ["recovered"]);
    assert_eq!(m.phase, Phase::OnMains);
}

#[test]
fn recovery_waits_for_our_nodes_but_not_forever() {
    let mut m = machine();
    full_sequence(&mut m);
    m.step(500 * S, Input::Ups(mains()));
    m.step(501 * S, Input::AgentConnected("s1".into()));
    assert!(uncordons(&m.step(560 * S, Input::Tick)).is_empty());
    assert_eq!(m.wake_at(), Some(560 * S));
    let a = m.step(1160 * S, Input::Tick);
    assert_eq!(uncordons(&a).len(), 4);
    assert!(m.timeline.iter().any(|e| e.text.contains("still missing")));
}

#[test]
fn restart_mid_sequence_resends_the_same_command_ids() {
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    cordon_all(&mut m, 32 * S, &[]);
    let a = drain_all(&mut m, 40 * S);
    let first = poweroffs(&a);
    let json = serde_json::to_vec(&m).unwrap();
    let mut back: Machine = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, {
        let mut x = m.clone();
        x.connected = back.connected.clone();
        x
    });
    let again = back.resume(45 * S);
    assert_eq!(poweroffs(&again), first);
    // After restart nobody is known connected until the hub says so; a
    // disconnect that happened while we were down still counts as gone.
    for (n, _) in &first {
        back.step(46 * S, Input::AgentDisconnected(n.clone()));
    }
    assert!(poweroffs(&back.step(46 * S, Input::Tick)).is_empty());
    // The servers' agents reconnect to the new collector within the wait.
    let mut b = Vec::new();
    for n in ["s2", "s3"] {
        b.extend(back.step(47 * S, Input::AgentConnected(n.into())));
    }
    let names: Vec<String> = poweroffs(&b).into_iter().map(|p| p.0).collect();
    assert_eq!(names, ["s2", "s3"]);
}

#[test]
fn resume_reissues_pending_cordon_drain_and_ups_command() {
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    assert_eq!(cordons(&m.clone().resume(32 * S)).len(), 5);
    let a = cordon_all(&mut m, 32 * S, &[]);
    let drain = a
        .iter()
        .find(|x| matches!(x, Action::Drain { .. }))
        .cloned();
    assert!(m.clone().resume(33 * S).contains(&drain.expect("drain")));
}

#[test]
fn command_ids_are_stable_and_distinct() {
    let a = command_id("main", 5, "w1", "poweroff");
    assert_eq!(a, command_id("main", 5, "w1", "poweroff"));
    assert_ne!(a, command_id("main", 6, "w1", "poweroff"));
    assert_ne!(a, command_id("main", 5, "w2", "poweroff"));
    assert_ne!(a, command_id("other", 5, "w1", "poweroff"));
    assert_ne!(a, command_id("main", 5, "w1", "ups"));
    assert_ne!(a, 0);
}

#[test]
fn refused_poweroff_and_absent_agent_do_not_hold_the_sequence() {
    let mut m = machine();
    m.step(0, Input::AgentDisconnected("w2".into()));
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    cordon_all(&mut m, 32 * S, &[]);
    let a = drain_all(&mut m, 40 * S);
    assert_eq!(poweroffs(&a).len(), 1, "w2 is not connected");
    let (node, id) = poweroffs(&a)[0].clone();
    let b = m.step(
        41 * S,
        Input::CommandResult {
            node,
            command_id: id,
            ok: false,
            message: "poweroff hook failed".into(),
        },
    );
    assert!(kinds(&b).contains(&"poweroff_failed".to_string()));
    assert_eq!(poweroffs(&b).len(), 2, "servers next");
}

#[test]
fn ups_owner_not_connected_still_powers_off_the_last_nodes() {
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    cordon_all(&mut m, 32 * S, &[]);
    let mut a = drain_all(&mut m, 40 * S);
    let mut t = 40 * S;
    let mut seen = Vec::new();
    // Stop at the external stage and drop the owner's link.
    while !poweroffs(&a).iter().any(|p| p.0 == "db") {
        t += S;
        a = obey(&mut m, t, &a);
    }
    m.step(t, Input::AgentDisconnected("s1".into()));
    seen.extend(obey(&mut m, t + S, &a));
    assert!(kinds(&seen).contains(&"ups_cycle_failed".to_string()));
    assert!(
        seen.iter()
            .all(|x| !matches!(x, Action::UpsShutdownReturn { .. }))
    );
}

#[test]
fn drill_reports_instead_of_powering_off_and_cordons_only_when_asked() {
    let spec = machine().spec;
    let mut m = Machine::drill(spec.clone(), 0, false);
    let base = machine();
    m.members = base.members.clone();
    m.connected = base.connected.clone();
    let a = m.step(
        10 * S,
        Input::Start {
            reason: "drill".into(),
        },
    );
    assert!(cordons(&a).is_empty());
    assert!(a.iter().all(|x| match x {
        Action::PowerOff { dry_run, .. } => *dry_run,
        Action::Drain { .. } => false,
        _ => true,
    }));
    let mut a = a;
    let mut order = Vec::new();
    let mut t = 10 * S;
    while !a.is_empty() {
        order.extend(poweroffs(&a).into_iter().map(|p| p.0));
        // Drill agents confirm but stay connected.
        let mut next = Vec::new();
        for (node, id) in poweroffs(&a) {
            next.extend(m.step(
                t,
                Input::CommandResult {
                    node,
                    command_id: id,
                    ok: true,
                    message: "dry run".into(),
                },
            ));
        }
        for x in &a {
            if let Action::UpsShutdownReturn {
                owner,
                command_id,
                dry_run,
                ..
            } = x
            {
                assert!(*dry_run);
                next.extend(m.step(
                    t,
                    Input::CommandResult {
                        node: owner.clone(),
                        command_id: *command_id,
                        ok: true,
                        message: "dry run".into(),
                    },
                ));
            }
        }
        a = next;
        a.retain(|x| !matches!(x, Action::Notify(_)));
        t += S;
    }
    assert_eq!(order, ["w1", "w2", "s2", "s3", "db", "s1"]);
    assert_eq!(m.phase, Phase::OnMains, "a drill ends by itself");

    let mut m = Machine::drill(spec, 0, true);
    m.members = base.members.clone();
    m.connected = base.connected;
    let a = m.step(
        10 * S,
        Input::Start {
            reason: "drill".into(),
        },
    );
    assert_eq!(cordons(&a).len(), 5);
    let b = cordon_all(&mut m, 11 * S, &[]);
    assert!(
        !b.iter().any(|x| matches!(x, Action::Drain { .. })),
        "a drill never evicts"
    );
    assert_eq!(poweroffs(&b).len(), 2);
}

#[test]
fn two_outages_get_different_command_ids() {
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    let first = m.poweroff_id("w1");
    m.step(32 * S, Input::Ups(mains()));
    m.step(33 * S, Input::Ups(battery()));
    // The cancel is still waiting for cordon answers; once they time out a
    // new outage starts with a new id.
    m.step(33 * S + CORDON_TIMEOUT_MS, Input::Tick);
    m.step(100 * S, Input::Tick);
    assert!(m.active());
    assert_ne!(m.poweroff_id("w1"), first);
}

/// Random interleavings of every input: the safety rules hold in all of them.
#[test]
fn random_runs_keep_the_safety_rules() {
    let nodes = ["w1", "w2", "s1", "s2", "s3", "db"];
    for seed in 0..400u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut m = machine();
        let mut t = 0i64;
        let mut log: Vec<(i64, Action)> = Vec::new();
        let mut cordoned_before: BTreeSet<String> = BTreeSet::new();
        let mut held = false;
        for _ in 0..200 {
            t += rng.random_range(0..20) * S;
            let input = match rng.random_range(0..10) {
                0 => Input::Ups(mains()),
                1 | 2 => Input::Ups(UpsObservation {
                    runtime_ms: Some(rng.random_range(0..1500) * S),
                    low_battery: rng.random_bool(0.05),
                    comm_ok: rng.random_bool(0.95),
                    runtime_estimated: rng.random_bool(0.3),
                    ..battery()
                }),
                3 => Input::AgentDisconnected(nodes[rng.random_range(0..6)].into()),
                4 => Input::AgentConnected(nodes[rng.random_range(0..6)].into()),
                5 => {
                    let n = nodes[rng.random_range(0..6)];
                    let was = rng.random_bool(0.3);
                    Input::Cordoned {
                        node: n.into(),
                        result: Ok(was),
                    }
                }
                6 => Input::Drained {
                    node: nodes[rng.random_range(0..6)].into(),
                    result: Ok("x".into()),
                },
                7 => Input::Uncordoned {
                    node: nodes[rng.random_range(0..6)].into(),
                    result: if rng.random_bool(0.8) {
                        Ok(())
                    } else {
                        Err("503".into())
                    },
                },
                8 => {
                    // Answer an outstanding poweroff correctly.
                    match log.iter().rev().find_map(|(_, a)| match a {
                        Action::PowerOff {
                            node, command_id, ..
                        } => Some((node.clone(), *command_id)),
                        Action::UpsShutdownReturn {
                            owner, command_id, ..
                        } => Some((owner.clone(), *command_id)),
                        _ => None,
                    }) {
                        Some((node, command_id)) => Input::CommandResult {
                            node,
                            command_id,
                            ok: rng.random_bool(0.9),
                            message: String::new(),
                        },
                        None => Input::Tick,
                    }
                }
                _ => Input::Tick,
            };
            // Track which cordon answers the machine accepted as "already
            // cordoned" (not our own cordon carried from a cut-short event).
            if let Input::Cordoned {
                node,
                result: Ok(true),
            } = &input
                && m.nodes
                    .get(node)
                    .is_some_and(|p| p.cordon == Some(CordonState::Pending) && !p.ours_before)
            {
                cordoned_before.insert(node.clone());
            }
            let out = m.step(t, input);
            for a in &out {
                match a {
                    // Held after a failed cycle with mains present: the UPS
                    // host / collector s1 stays up until the UPS takes a
                    // cycle or a new event starts.
                    Action::Notify(n) if n.kind == NoticeKind::ManualPowerCycleNeeded => {
                        held = true
                    }
                    Action::Notify(n)
                        if matches!(n.kind, NoticeKind::UpsCycle | NoticeKind::ShutdownStarted) =>
                    {
                        held = false;
                        if n.kind == NoticeKind::ShutdownStarted {
                            cordoned_before.clear();
                        }
                    }
                    Action::PowerOff { node, .. } if node == "s1" => {
                        assert!(!held, "seed {seed}: s1 powered off while held");
                    }
                    Action::Uncordon(ns) => {
                        for n in ns {
                            assert!(
                                !cordoned_before.contains(n),
                                "seed {seed}: uncordoned {n}, which an admin had cordoned"
                            );
                            assert_ne!(n, "db", "seed {seed}: db is not a Kubernetes node");
                        }
                    }
                    _ => {}
                }
            }
            for a in out {
                log.push((t, a));
            }
            // Persist and resume now and then, as a collector restart would.
            if rng.random_bool(0.03) {
                let mut back: Machine =
                    serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
                for a in back.resume(t) {
                    log.push((t, a));
                }
                for (n, up) in m.connected.clone() {
                    if up {
                        back.step(t, Input::AgentConnected(n));
                    }
                }
                m = back;
            }
        }
        // One event may hold several poweroffs of a node only with one id.
        let mut ids: std::collections::BTreeMap<u64, String> = Default::default();
        let mut per_node_event: std::collections::BTreeMap<(String, u64), ()> = Default::default();
        for (_, a) in &log {
            if let Action::PowerOff {
                node, command_id, ..
            } = a
            {
                if let Some(prev) = ids.insert(*command_id, node.clone()) {
                    assert_eq!(&prev, node, "seed {seed}: one id, one node");
                }
                per_node_event.insert((node.clone(), *command_id), ());
            }
        }
        // Within one command id set (one event), no server before the workers.
        let mut by_event: std::collections::BTreeMap<i64, Vec<String>> = Default::default();
        let mut event = 0;
        for (_, a) in &log {
            match a {
                Action::Notify(n) if n.kind == NoticeKind::ShutdownStarted => event += 1,
                Action::PowerOff { node, .. } => {
                    by_event.entry(event).or_default().push(node.clone())
                }
                _ => {}
            }
        }
        for (e, order) in by_event {
            let first_server = order.iter().position(|n| n.starts_with('s'));
            let last_worker = order.iter().rposition(|n| n.starts_with('w'));
            if let (Some(s), Some(w)) = (first_server, last_worker) {
                // Resume may resend a worker's command after servers only if
                // that worker was sent before (same id): check first sends.
                let firsts: Vec<&String> = {
                    let mut seen = BTreeSet::new();
                    order.iter().filter(|n| seen.insert((*n).clone())).collect()
                };
                let fs = firsts.iter().position(|n| n.starts_with('s'));
                let lw = firsts.iter().rposition(|n| n.starts_with('w'));
                assert!(
                    fs > lw || s > w,
                    "seed {seed} event {e}: servers before workers: {order:?}"
                );
            }
        }
    }
}

/// Random flickers shorter than the grace, above every floor: only records.
#[test]
fn random_flickers_within_the_grace_never_act() {
    for seed in 0..200u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut m = machine();
        let mut t = 0i64;
        for _ in 0..50 {
            t += rng.random_range(1..600) * S;
            let mut out = m.step(t, Input::Ups(battery()));
            let mut on = 0;
            while on < 29 * S {
                let d = rng.random_range(0..10) * S;
                if on + d >= 30 * S {
                    break;
                }
                on += d;
                out.extend(m.step(
                    t + on,
                    Input::Ups(UpsObservation {
                        charge_percent: Some(rng.random_range(31.0..100.0)),
                        runtime_ms: Some(rng.random_range(301..2000) * S),
                        ..battery()
                    }),
                ));
                out.extend(m.step(t + on, Input::Tick));
            }
            t += on;
            out.extend(m.step(t, Input::Ups(mains())));
            assert!(
                out.iter().all(|a| matches!(a, Action::Notify(_))),
                "seed {seed}: {out:?}"
            );
            assert_eq!(m.phase, Phase::OnMains);
        }
    }
}

/// A machine mid-sequence with an agent that was not connected at its stage.
fn machine_with_an_absent_agent() -> Machine {
    let mut m = machine();
    m.step(0, Input::AgentDisconnected("w2".into()));
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    cordon_all(&mut m, 32 * S, &[]);
    drain_all(&mut m, 40 * S);
    assert_eq!(m.nodes["w2"].power, PowerState::NotConnected);
    m
}

#[test]
fn not_connected_is_saved_as_the_failure_text_it_always_was() {
    let json = serde_json::to_value(PowerState::NotConnected).unwrap();
    assert_eq!(json, serde_json::json!({"failed": "agent not connected"}));
    let back: PowerState = serde_json::from_value(json).unwrap();
    assert_eq!(back, PowerState::NotConnected);
    let other: PowerState =
        serde_json::from_value(serde_json::json!({"failed": "timed out"})).unwrap();
    assert_eq!(other, PowerState::Failed("timed out".into()));
}

#[test]
fn a_state_saved_before_formats_had_a_version_still_loads() {
    let m = machine_with_an_absent_agent();
    // What the collector wrote before: the bare machine, no envelope.
    let old = serde_json::to_vec(&m).unwrap();
    assert!(!String::from_utf8_lossy(&old).contains("\"version\""));
    assert!(String::from_utf8_lossy(&old).contains(r#"{"failed":"agent not connected"}"#));
    let back = Machine::from_persisted(&old).expect("old format loads");
    assert_eq!(back, m);
    assert_eq!(back.phase, Phase::PoweringOff);
}

#[test]
fn the_current_format_carries_its_version_and_round_trips() {
    let m = machine_with_an_absent_agent();
    let bytes = m.to_persisted().unwrap();
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(value["version"], PERSISTED_VERSION);
    assert_eq!(value["machine"], serde_json::to_value(&m).unwrap());
    assert_eq!(Machine::from_persisted(&bytes).unwrap(), m);
}

#[test]
fn an_unknown_version_is_refused_with_a_clear_error() {
    let m = machine_with_an_absent_agent();
    let newer = serde_json::to_vec(&serde_json::json!({"version": 2, "machine": m})).unwrap();
    let e = Machine::from_persisted(&newer).unwrap_err();
    assert!(
        matches!(e, RestoreError::UnknownVersion { found: 2 }),
        "{e:?}"
    );
    assert_eq!(
        e.describe(),
        "saved power state has format version 2, this collector reads up to 1; was the collector downgraded?"
    );
    let odd = br#"{"version": "two", "machine": {}}"#;
    assert!(matches!(
        Machine::from_persisted(odd),
        Err(RestoreError::BadVersion(v)) if v == r#""two""#
    ));
    let torn = Machine::from_persisted(b"{\"version\": 1, \"mach").unwrap_err();
    assert!(matches!(torn, RestoreError::NotJson(_)), "{torn:?}");
    assert!(
        torn.describe()
            .starts_with("saved power state is not valid JSON: ")
    );
    let wrong = Machine::from_persisted(br#"{"version": 1, "machine": {"phase": 3}}"#).unwrap_err();
    assert!(
        matches!(wrong, RestoreError::Invalid { version: 1, .. }),
        "{wrong:?}"
    );
}

// ---- Item: a failed UPS cycle is a gate, not a shrug ----

fn ups_ids(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::UpsShutdownReturn { command_id, .. } => Some(*command_id),
            _ => None,
        })
        .collect()
}

/// The owner's answer to a UPS command.
fn ups_answer(command_id: u64, ok: bool) -> Input {
    Input::CommandResult {
        node: "s1".into(),
        command_id,
        ok,
        message: if ok { "S02R0001 sent" } else { "NAK" }.into(),
    }
}

fn notice(actions: &[Action], kind: NoticeKind) -> Option<Notice> {
    actions.iter().find_map(|a| match a {
        Action::Notify(n) if n.kind == kind => Some(n.clone()),
        _ => None,
    })
}

/// An outage run until the UPS command goes out: its time and id.
fn until_ups_command(m: &mut Machine) -> (i64, u64) {
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    cordon_all(m, 32 * S, &[]);
    let mut a = drain_all(m, 40 * S);
    let mut t = 40 * S;
    loop {
        if let Some(id) = ups_ids(&a).first() {
            return (t, *id);
        }
        assert!(!poweroffs(&a).is_empty(), "stalled before the UPS command");
        t += S;
        let sent: Vec<Action> = a
            .into_iter()
            .filter(|x| matches!(x, Action::PowerOff { .. }))
            .collect();
        a = obey(m, t, &sent);
    }
}

#[test]
fn a_refused_ups_command_is_tried_again_with_a_new_id() {
    let mut m = machine();
    let (t, first) = until_ups_command(&mut m);
    assert_eq!(
        first,
        m.ups_command_id(),
        "the first try keeps the stable id"
    );
    let a = m.step(t, ups_answer(first, false));
    assert!(ups_ids(&a).is_empty() && poweroffs(&a).is_empty(), "{a:?}");
    assert_eq!(m.wake_at(), Some(t + 10 * S));
    assert!(ups_ids(&m.step(t + 9 * S, Input::Tick)).is_empty());
    let b = m.step(t + 10 * S, Input::Tick);
    let second = ups_ids(&b)[0];
    assert_ne!(second, first, "a retry needs an id of its own");
    assert_eq!(second, m.ups_attempt_id(2));
    // The agent answers the first id again with its first result: ignored.
    assert!(m.step(t + 11 * S, ups_answer(first, false)).is_empty());
    let c = m.step(t + 11 * S, ups_answer(second, true));
    assert_eq!(kinds(&c), ["ups_cycle", "poweroff_sent"]);
    let names: Vec<String> = poweroffs(&c).into_iter().map(|p| p.0).collect();
    assert_eq!(names, ["s1"]);
}

#[test]
fn a_ups_command_that_keeps_failing_on_battery_carries_on() {
    let mut m = machine();
    let (t, first) = until_ups_command(&mut m);
    // No answer at all: the try times out after agent_confirm_timeout.
    let a = m.step(t + 30 * S, Input::Tick);
    assert!(ups_ids(&a).is_empty() && poweroffs(&a).is_empty());
    let b = m.step(t + 40 * S, Input::Tick);
    let second = ups_ids(&b)[0];
    m.step(t + 41 * S, ups_answer(second, false));
    let c = m.step(t + 51 * S, Input::Tick);
    let third = ups_ids(&c)[0];
    assert!(first != third && second != third);
    let d = m.step(t + 52 * S, ups_answer(third, false));
    assert!(kinds(&d).contains(&"ups_cycle_failed".to_string()));
    assert!(notice(&d, NoticeKind::ManualPowerCycleNeeded).is_none());
    let names: Vec<String> = poweroffs(&d).into_iter().map(|p| p.0).collect();
    assert_eq!(names, ["s1"], "on battery the battery will cut the output");
}

#[test]
fn a_failed_cycle_with_mains_back_holds_the_last_nodes_and_asks_for_a_power_cycle() {
    let mut m = machine();
    let (t, first) = until_ups_command(&mut m);
    m.step(t, Input::Ups(mains()));
    let mut out = m.step(t, ups_answer(first, false));
    let second = ups_ids(&m.step(t + 10 * S, Input::Tick))[0];
    out.extend(m.step(t + 10 * S, ups_answer(second, false)));
    let third = ups_ids(&m.step(t + 20 * S, Input::Tick))[0];
    out.extend(m.step(t + 20 * S, ups_answer(third, false)));
    assert!(poweroffs(&out).is_empty(), "s1 is held: {out:?}");
    assert_eq!(m.nodes["s1"].power, PowerState::Waiting);
    let failed = notice(&out, NoticeKind::UpsCycleFailed).expect("ups_cycle_failed");
    assert!(failed.message.contains("keeping s1 running"), "{failed:?}");
    let manual = notice(&out, NoticeKind::ManualPowerCycleNeeded).expect("manual notice");
    assert_eq!(
        manual.kind.severity(),
        nodewarden_proto::v1::Severity::Critical
    );
    assert!(
        manual
            .message
            .starts_with("manual power cycle needed: db, s2, s3, w1, w2 "),
        "{}",
        manual.message
    );
    assert_eq!(m.phase, Phase::AwaitingReturn);
    assert!(m.held);
    // Still held: the cycle is tried again, the waits doubling.
    let fourth = ups_ids(&m.step(t + 30 * S, Input::Tick))[0];
    assert_eq!(fourth, m.ups_attempt_id(4));
    m.step(t + 31 * S, ups_answer(fourth, false));
    assert_eq!(m.wake_at(), Some(t + 51 * S));
    let fifth = ups_ids(&m.step(t + 51 * S, Input::Tick))[0];
    let a = m.step(t + 52 * S, ups_answer(fifth, true));
    assert_eq!(kinds(&a), ["ups_cycle", "poweroff_sent"]);
    let names: Vec<String> = poweroffs(&a).into_iter().map(|p| p.0).collect();
    assert_eq!(
        names,
        ["s1"],
        "the UPS will cut and restore: now s1 goes down"
    );
    assert!(!m.held);
    assert_eq!(m.phase, Phase::AwaitingReturn);
}

#[test]
fn an_owner_not_connected_with_mains_back_holds_the_collector() {
    let mut m = machine();
    m.spec.collector_node = Some("s2".into());
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    cordon_all(&mut m, 32 * S, &[]);
    let mut a = drain_all(&mut m, 40 * S);
    let mut t = 40 * S;
    while !poweroffs(&a).iter().any(|p| p.0 == "db") {
        t += S;
        a = obey(&mut m, t, &a);
    }
    m.step(t, Input::Ups(mains()));
    m.step(t, Input::AgentDisconnected("s1".into()));
    let b = obey(&mut m, t + S, &a);
    assert!(
        notice(&b, NoticeKind::ManualPowerCycleNeeded).is_some(),
        "{b:?}"
    );
    assert!(poweroffs(&b).is_empty(), "s2 (the collector) stays up");
    assert!(m.held);
    // The owner comes back: the cycle is tried at once when due.
    m.step(t + 2 * S, Input::AgentConnected("s1".into()));
    let c = m.step(t + 11 * S, Input::Tick);
    assert_eq!(ups_ids(&c), [m.ups_command_id()]);
}

/// A collector restart: the saved machine resumed, the named agents back.
fn restarted(m: &Machine, t: i64, back: &[&str]) -> Machine {
    let mut r = Machine::from_persisted(&m.to_persisted().unwrap()).unwrap();
    r.resume(t);
    for n in back {
        r.step(t, Input::AgentConnected((*n).into()));
    }
    r
}

#[test]
fn mains_back_while_a_stage_of_unheard_nodes_waits_still_cancels() {
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    cordon_all(&mut m, 32 * S, &[]);
    // Both workers leave during the drain, then the collector restarts.
    m.step(35 * S, Input::AgentDisconnected("w1".into()));
    m.step(35 * S, Input::AgentDisconnected("w2".into()));
    let mut m = restarted(&m, 36 * S, &["s1", "s2", "s3", "db"]);
    let a = drain_all(&mut m, 40 * S);
    assert!(poweroffs(&a).is_empty());
    assert_eq!(m.phase, Phase::PoweringOff);
    assert!(!m.point_of_no_return, "nothing was sent");
    let b = m.step(41 * S, Input::Ups(mains()));
    assert!(kinds(&b).contains(&"cancelled".to_string()), "{b:?}");
    assert_eq!(uncordons(&b), ["s1", "s2", "s3", "w1", "w2"]);
    assert_eq!(m.phase, Phase::Cancelling);
}

// ---- Item: a second outage is an outage ----

/// Reclosing shots: mains back `up` ms, then gone again, from `t`, for each
/// of `dead` (the time on battery before the next shot). Returns the time the
/// last drop began and every action.
fn reclose(m: &mut Machine, mut t: i64, shots: &[(i64, i64)]) -> (i64, Vec<Action>) {
    let mut out = Vec::new();
    let mut last_drop = t;
    for (up, dead) in shots {
        out.extend(m.step(t, Input::Ups(mains())));
        t += up;
        out.extend(m.step(t, Input::Ups(battery())));
        last_drop = t;
        out.extend(m.step(t, Input::Tick));
        t += dead;
    }
    (last_drop, out)
}

fn started(actions: &[Action]) -> usize {
    kinds(actions)
        .iter()
        .filter(|k| *k == "shutdown_started")
        .count()
}

#[test]
fn mains_reclosing_three_times_during_the_drain_starts_a_new_event_that_keeps_our_cordons() {
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    cordon_all(&mut m, 32 * S, &["w2"]);
    assert_eq!(m.phase, Phase::Draining);
    // Shots: 0.5 s, 15 s, 30 s dead times; the last one locks out.
    let (drop, a) = reclose(&mut m, 40 * S, &[(S, 500), (S, 15 * S), (S, 30 * S)]);
    assert_eq!(
        m.phase,
        Phase::Cancelling,
        "the uncordons are still in flight"
    );
    assert_eq!(uncordons(&a), ["s1", "s2", "s3", "w1"]);
    assert_eq!(started(&a), 0, "each drop is within the grace");
    // Some uncordons land, two never answer.
    for n in ["s1", "s2"] {
        m.step(
            drop,
            Input::Uncordoned {
                node: n.into(),
                result: Ok(()),
            },
        );
    }
    assert_eq!(m.wake_at(), Some(drop + 30 * S));
    let b = m.step(drop + 30 * S, Input::Tick);
    assert_eq!(started(&b), 1, "locked out past the grace: a new event");
    assert!(
        m.reason.contains("a new outage during cancelling"),
        "{}",
        m.reason
    );
    assert_eq!(cordons(&b), ["s1", "s2", "s3", "w1", "w2"]);
    // s3 and w1 are still cordoned (by us): the API says "already".
    cordon_all(&mut m, drop + 31 * S, &["s3", "w1", "w2"]);
    // The old event's uncordon of s3 answers late: it changes nothing.
    m.step(
        drop + 31 * S,
        Input::Uncordoned {
            node: "s3".into(),
            result: Ok(()),
        },
    );
    let c = m.step(drop + 40 * S, Input::Ups(mains()));
    assert_eq!(
        uncordons(&c),
        ["s1", "s2", "s3", "w1"],
        "ours from both events, never w2"
    );
}

/// A full outage, then mains back at `t` and every node but w2 back.
fn back_at(m: &mut Machine, t: i64) {
    full_sequence(m);
    assert_eq!(m.phase, Phase::AwaitingReturn);
    m.step(t, Input::Ups(mains()));
    for n in ["s1", "s2", "s3", "db", "w1"] {
        m.step(t, Input::AgentConnected(n.into()));
    }
}

#[test]
fn mains_reclosing_during_awaiting_return_starts_a_new_event_for_the_nodes_that_came_back() {
    let mut m = machine();
    back_at(&mut m, 500 * S);
    let (drop, a) = reclose(&mut m, 501 * S, &[(S, 500), (S, 15 * S), (S, 30 * S)]);
    assert_eq!(started(&a), 0);
    assert_eq!(m.phase, Phase::AwaitingReturn);
    let b = m.step(drop + 30 * S, Input::Tick);
    assert_eq!(started(&b), 1, "{b:?}");
    assert!(cordons(&b).contains(&"w1".to_string()));
    for n in ["s1", "s2", "s3", "w1"] {
        assert!(m.nodes[n].ours_before, "{n} is still ours");
    }
    assert!(!m.nodes["w2"].ours_before, "w2 was cordoned by an admin");
}

#[test]
fn mains_reclosing_during_recovery_starts_a_new_event_and_keeps_what_is_not_uncordoned() {
    let mut m = machine();
    back_at(&mut m, 500 * S);
    let a = m.step(560 * S, Input::Tick);
    assert_eq!(m.phase, Phase::Recovering);
    assert_eq!(uncordons(&a), ["s1", "s2", "s3", "w1"]);
    m.step(
        561 * S,
        Input::Uncordoned {
            node: "s1".into(),
            result: Ok(()),
        },
    );
    let (drop, _) = reclose(&mut m, 562 * S, &[(S, 500), (S, 15 * S), (S, 30 * S)]);
    let b = m.step(drop + 30 * S, Input::Tick);
    assert_eq!(started(&b), 1);
    assert!(!m.nodes["s1"].ours_before, "s1 was uncordoned");
    for n in ["s2", "s3", "w1"] {
        assert!(m.nodes[n].ours_before, "{n} is still ours");
    }
}

#[test]
fn api_down_during_recovery_then_a_new_outage_still_uncordons_ours_at_the_end() {
    let mut m = machine();
    back_at(&mut m, 500 * S);
    m.step(560 * S, Input::Tick);
    for n in ["s1", "s2", "s3", "w1"] {
        m.step(
            561 * S,
            Input::Uncordoned {
                node: n.into(),
                result: Err("connection refused".into()),
            },
        );
    }
    assert_eq!(m.phase, Phase::Recovering);
    // The retries go on; then power goes again.
    m.step(591 * S, Input::Tick);
    m.step(600 * S, Input::Ups(battery()));
    let b = m.step(630 * S, Input::Tick);
    assert_eq!(started(&b), 1, "a new outage is not ignored while retrying");
    // The API is still down: nothing can be cordoned; the sequence goes on.
    let c = m.step(630 * S + CORDON_TIMEOUT_MS, Input::Tick);
    assert!(!poweroffs(&c).is_empty());
    // Mains back once workers are sent: past the point of no return, the
    // sequence carries on; recovery at the end uncordons the carried nodes.
    m.step(631 * S + CORDON_TIMEOUT_MS, Input::Ups(mains()));
    let mut t = 700 * S;
    let mut a = c;
    while !poweroffs(&a).is_empty() || !ups_ids(&a).is_empty() {
        t += S;
        a = obey(&mut m, t, &a);
    }
    assert_eq!(m.phase, Phase::AwaitingReturn);
    for n in ["s1", "s2", "s3", "db", "w1", "w2"] {
        m.step(t, Input::AgentConnected(n.into()));
    }
    let e = m.step(t + 60 * S, Input::Tick);
    assert_eq!(uncordons(&e), ["s1", "s2", "s3", "w1"]);
}

#[test]
fn uncordon_tries_are_bounded_then_a_notice_and_the_machine_is_armed_again() {
    let mut m = machine();
    back_at(&mut m, 500 * S);
    m.step(560 * S, Input::Tick);
    let mut t = 561 * S;
    let mut out = Vec::new();
    for _ in 0..10 {
        for n in ["s1", "s2", "s3", "w1"] {
            out.extend(m.step(
                t,
                Input::Uncordoned {
                    node: n.into(),
                    result: Err("503".into()),
                },
            ));
        }
        t += UNCORDON_RETRY_MS;
        out.extend(m.step(t, Input::Tick));
    }
    let n = notice(&out, NoticeKind::UncordonFailed).expect("uncordon_failed");
    assert!(
        n.message
            .starts_with("could not uncordon s1, s2, s3, w1 after 10 tries"),
        "{}",
        n.message
    );
    assert_eq!(m.phase, Phase::OnMains, "armed again");
    assert_eq!(
        uncordons(&m.step(t + 3600 * S, Input::Tick)),
        Vec::<String>::new()
    );
    // And a new outage is handled (w2 never came back: skipped).
    m.step(t + 3700 * S, Input::Ups(battery()));
    let a = m.step(t + 3730 * S, Input::Tick);
    assert_eq!(cordons(&a), ["s1", "s2", "s3", "w1"]);
}

// ---- Item: nodes that cannot take part do not hold the others ----

#[test]
fn a_node_offline_at_the_start_is_skipped_not_cordoned_drained_or_waited_for() {
    let mut m = machine();
    m.step(0, Input::AgentDisconnected("w2".into()));
    let preview = m.preview_stages();
    assert_eq!(preview[0].label, "workers");
    assert_eq!(preview[0].skipped, ["w2"]);
    m.step(S, Input::Ups(battery()));
    let a = m.step(31 * S, Input::Tick);
    assert_eq!(cordons(&a), ["s1", "s2", "s3", "w1"], "w2 is not cordoned");
    assert!(
        m.timeline
            .iter()
            .any(|e| e.text.starts_with("w2 skipped: offline")),
        "{:?}",
        m.timeline
    );
    assert_eq!(m.stages[0].skipped, ["w2"]);
    let b = cordon_all(&mut m, 32 * S, &[]);
    let drained = b
        .iter()
        .find_map(|x| match x {
            Action::Drain { nodes, .. } => Some(nodes.clone()),
            _ => None,
        })
        .expect("drain");
    assert!(!drained.contains(&"w2".to_string()));
    // A collector restart forgets who is connected: w2 is still not waited for.
    let mut m = restarted(&m, 33 * S, &["w1", "s1", "s2", "s3", "db"]);
    let c = drain_all(&mut m, 40 * S);
    let names: Vec<String> = poweroffs(&c).into_iter().map(|p| p.0).collect();
    assert_eq!(names, ["w1"]);
    let d = obey(&mut m, 41 * S, &c);
    let names: Vec<String> = poweroffs(&d).into_iter().map(|p| p.0).collect();
    assert_eq!(names, ["s2", "s3"], "the workers' stage ends without w2");
}

// ---- Item: the budget counts every stage and follows the battery ----

#[test]
fn the_budget_counts_every_stage_after_the_drain() {
    let m = machine();
    let b = m.budget();
    let stages: Vec<(&str, i64)> = b
        .stages
        .iter()
        .map(|s| (s.label.as_str(), s.timeout_ms))
        .collect();
    assert_eq!(
        stages,
        [
            ("workers", 30 * S),
            ("servers", 60 * S),
            ("external hosts (order 1)", 30 * S),
            ("UPS host and collector", 30 * S)
        ]
    );
    assert_eq!(
        (b.cordon_ms, b.ups_command_ms, b.halt_ms, b.reserve_ms),
        (15 * S, 30 * S, 45 * S, 240 * S)
    );
    // 1200 s left: the drain gets its whole timeout.
    assert_eq!((b.runtime_ms, b.drain_ms), (Some(1200 * S), 120 * S));
}

/// On battery, cordoned, draining with the whole drain timeout (until 152 s).
fn draining() -> Machine {
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    cordon_all(&mut m, 32 * S, &[]);
    assert_eq!(m.deadline_ms, Some(152 * S));
    m
}

#[test]
fn a_runtime_collapsing_during_the_drain_cuts_it_short() {
    let mut m = draining();
    // 300 s left: 60 s over the reserve: the drain ends at 100 s.
    let a = m.step(
        40 * S,
        Input::Ups(UpsObservation {
            runtime_ms: Some(300 * S),
            ..battery()
        }),
    );
    assert!(poweroffs(&a).is_empty());
    assert_eq!(m.deadline_ms, Some(100 * S));
    // 200 s left: below what the stages need: the drain ends now.
    let b = m.step(
        50 * S,
        Input::Ups(UpsObservation {
            runtime_ms: Some(200 * S),
            ..battery()
        }),
    );
    assert_eq!(poweroffs(&b).len(), 2, "workers at once: {b:?}");
    assert!(
        m.timeline
            .iter()
            .any(|e| e.text == "battery runtime fell to 3m20s: ending the drain now"),
        "{:?}",
        m.timeline
    );
}

#[test]
fn low_battery_or_the_charge_floor_during_the_drain_ends_it_now() {
    let mut m = draining();
    let a = m.step(
        40 * S,
        Input::Ups(UpsObservation {
            low_battery: true,
            ..battery()
        }),
    );
    assert_eq!(poweroffs(&a).len(), 2);
    let mut m = draining();
    let a = m.step(
        40 * S,
        Input::Ups(UpsObservation {
            charge_percent: Some(25.0),
            ..battery()
        }),
    );
    assert_eq!(poweroffs(&a).len(), 2);
}

#[test]
fn one_estimated_reading_below_a_floor_does_not_start_the_sequence_three_in_a_row_do() {
    let sag = UpsObservation {
        charge_percent: Some(20.0),
        charge_estimated: true,
        runtime_ms: Some(100 * S),
        runtime_estimated: true,
        ..battery()
    };
    let fine = UpsObservation {
        charge_percent: Some(60.0),
        charge_estimated: true,
        runtime_ms: Some(900 * S),
        runtime_estimated: true,
        ..battery()
    };
    let mut m = machine();
    m.step(S, Input::Ups(fine.clone()));
    // A voltage sag: one reading, then back up.
    assert!(cordons(&m.step(2 * S, Input::Ups(sag.clone()))).is_empty());
    assert!(cordons(&m.step(3 * S, Input::Ups(fine.clone()))).is_empty());
    assert!(cordons(&m.step(4 * S, Input::Ups(sag.clone()))).is_empty());
    assert!(cordons(&m.step(5 * S, Input::Ups(sag.clone()))).is_empty());
    assert!(
        cordons(&m.step(10 * S, Input::Tick)).is_empty(),
        "no window for estimates"
    );
    assert_eq!(m.phase, Phase::OnBattery);
    let a = m.step(11 * S, Input::Ups(sag.clone()));
    assert_eq!(cordons(&a).len(), 5, "three in a row");
    assert!(m.reason.contains("charge"), "{}", m.reason);
    // The same value reported by the UPS itself counts at once.
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    let reported = UpsObservation {
        charge_estimated: false,
        runtime_estimated: false,
        ..sag
    };
    assert_eq!(cordons(&m.step(2 * S, Input::Ups(reported))).len(), 5);
}

#[test]
fn the_estimated_flags_come_from_the_agents_status() {
    let s = nodewarden_proto::v1::UpsStatus {
        communication_ok: true,
        status: vec!["OB".into()],
        battery_charge_percent: Some(40.0),
        battery_charge_estimated: true,
        battery_runtime_seconds: Some(600.0),
        battery_runtime_estimated: false,
        ..Default::default()
    };
    let o = UpsObservation::from_status(&s);
    assert!(o.charge_estimated && !o.runtime_estimated);
    assert_eq!(o.runtime_ms, Some(600 * S));
}

// ---- Item: one decision-maker at a time (collector_node) ----

#[test]
fn the_collector_node_must_be_one_of_the_domains_nodes() {
    let m = machine();
    assert_eq!(m.spec.validate(&m.members), Ok(()));
    let mut spec = m.spec.clone();
    spec.collector_node = Some("k3s-server-1".into());
    let e = spec.validate(&m.members).unwrap_err();
    assert_eq!(
        e,
        SpecError::CollectorNodeUnknown {
            node: "k3s-server-1".into(),
            domains: vec!["`main`".into()],
            nodes: ["db", "s1", "s2", "s3", "w1", "w2"]
                .map(String::from)
                .to_vec(),
        }
    );
    assert!(
        e.to_string().starts_with(
            "key `power.collector_node`: `k3s-server-1` is not a node of power domain `main` (its nodes: db, s1, s2, s3, w1, w2)"
        ),
        "{e}"
    );
    // Several domains: the collector's node is in one of them.
    let other = DomainSpec {
        name: "rack-b".into(),
        ..spec.clone()
    };
    let b = vec![member("k3s-server-1", Role::Server)];
    assert_eq!(
        validate_collector_node(&[(&spec, &m.members), (&other, &b)]),
        Ok(())
    );
    spec.collector_node = None;
    assert_eq!(spec.validate(&[]), Ok(()), "none set: nothing to check");
}

#[test]
fn a_state_saved_before_this_round_still_loads_with_the_defaults() {
    let mut m = machine_with_an_absent_agent();
    m.ups_attempts = 0;
    let mut value = serde_json::to_value(&m).unwrap();
    let strip = |v: &mut serde_json::Value| {
        let o = v.as_object_mut().unwrap();
        for k in [
            "ups_attempts",
            "ups_retry_at_ms",
            "held",
            "event_outage_ms",
            "estimated_low",
            "comm_lost",
        ] {
            o.remove(k);
        }
        let settings = o["spec"]["settings"].as_object_mut().unwrap();
        for k in [
            "ups_command_attempts",
            "ups_command_retry_ms",
            "halt_time_ms",
            "estimated_confirmations",
            "comm_lost_window_ms",
            "uncordon_attempts",
        ] {
            settings.remove(k);
        }
        for (_, p) in o["nodes"].as_object_mut().unwrap() {
            let p = p.as_object_mut().unwrap();
            p.remove("ours_before");
            p.remove("uncordon_failures");
            p.remove("skipped");
        }
        for st in o["stages"].as_array_mut().unwrap() {
            st.as_object_mut().unwrap().remove("skipped");
        }
        let ups = o["ups"].as_object_mut().unwrap();
        ups.remove("charge_estimated");
        ups.remove("runtime_estimated");
    };
    strip(&mut value);
    // What the previous collector wrote: the version 1 envelope, none of
    // this round's fields.
    let old = serde_json::to_vec(&serde_json::json!({"version": 1, "machine": value})).unwrap();
    let back = Machine::from_persisted(&old).expect("the previous format loads");
    let s = &back.spec.settings;
    assert_eq!(
        (
            s.ups_command_attempts,
            s.ups_command_retry_ms,
            s.halt_time_ms,
            s.estimated_confirmations,
            s.comm_lost_window_ms,
            s.uncordon_attempts
        ),
        (3, 10 * S, 45 * S, 3, 10 * S, 10)
    );
    assert!(!back.held && back.ups_attempts == 0);
    assert!(back.nodes.values().all(|p| !p.ours_before && !p.skipped));
    let mut resumed = back.clone();
    resumed.resume(50 * S);
    assert_eq!(resumed.event_outage_ms, m.on_battery_since_ms);
    let mut again = serde_json::to_value(&back).unwrap();
    strip(&mut again);
    assert_eq!(again, value, "everything else reads back as it was");
}

#[test]
fn a_state_saved_before_outages_were_told_apart_does_not_restart_its_own_outage() {
    // Awaiting return, still on battery (the collector runs off the domain).
    let mut m = machine();
    m.spec.collector_node = None;
    full_sequence(&mut m);
    assert_eq!(m.phase, Phase::AwaitingReturn);
    assert!(m.on_battery_since_ms.is_some());
    let mut value = serde_json::to_value(&m).unwrap();
    value.as_object_mut().unwrap().remove("event_outage_ms");
    let old = serde_json::to_vec(&serde_json::json!({"version": 1, "machine": value})).unwrap();
    let mut back = Machine::from_persisted(&old).unwrap();
    back.resume(200 * S);
    let a = back.step(200 * S, Input::Tick);
    assert_eq!(started(&a), 0, "{a:?}");
    assert_eq!(back.phase, Phase::AwaitingReturn);
}

#[test]
fn mains_dropping_again_while_held_powers_off_the_held_nodes_through_a_new_event() {
    let mut m = machine();
    let (t, first) = until_ups_command(&mut m);
    m.step(t, Input::Ups(mains()));
    m.step(t, ups_answer(first, false));
    let second = ups_ids(&m.step(t + 10 * S, Input::Tick))[0];
    m.step(t + 10 * S, ups_answer(second, false));
    let third = ups_ids(&m.step(t + 20 * S, Input::Tick))[0];
    m.step(t + 20 * S, ups_answer(third, false));
    assert!(m.held);
    // Power goes again: within the grace nothing is tried (no mains).
    let drop = t + 25 * S;
    let a = m.step(drop, Input::Ups(battery()));
    assert!(ups_ids(&a).is_empty() && poweroffs(&a).is_empty());
    assert!(ups_ids(&m.step(drop + 20 * S, Input::Tick)).is_empty());
    // Past the grace: a new event for the nodes still up (s1), ours kept.
    let b = m.step(drop + 30 * S, Input::Tick);
    assert_eq!(started(&b), 1);
    assert!(!m.held);
    assert_eq!(cordons(&b), ["s1"], "the others are off: skipped");
    let mut out = m.step(
        drop + 31 * S,
        Input::Cordoned {
            node: "s1".into(),
            result: Ok(true),
        },
    );
    assert!(m.nodes["s1"].ours_to_uncordon());
    out.extend(m.step(
        drop + 32 * S,
        Input::Drained {
            node: "s1".into(),
            result: Ok("0 pods".into()),
        },
    ));
    // A fresh try at the UPS command (a new event, a new id); on battery its
    // failure carries on: s1 goes down and the battery will cut the output.
    let id = ups_ids(&out)[0];
    assert_eq!(id, m.ups_command_id());
    assert_ne!(id, first);
    let mut t2 = drop + 33 * S;
    let mut last = m.step(t2, ups_answer(id, false));
    for _ in 0..2 {
        t2 += 10 * S;
        let next = ups_ids(&m.step(t2, Input::Tick))[0];
        last = m.step(t2, ups_answer(next, false));
    }
    let names: Vec<String> = poweroffs(&last).into_iter().map(|p| p.0).collect();
    assert_eq!(names, ["s1"], "{last:?}");
}

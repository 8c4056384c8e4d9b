//! One outage from start to end: the order of the stages, cancel, recovery,
//! restarts, refusals, drills and command ids.

use super::*;

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
            applied: AppliedDelays::NONE,
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
            applied: AppliedDelays::NONE,
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
                    applied: AppliedDelays::NONE,
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
                        applied: AppliedDelays::NONE,
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

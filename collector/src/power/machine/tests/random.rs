//! Randomized runs: every interleaving of inputs keeps the safety rules, and
//! flickers within the grace never act.

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

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
                            applied: AppliedDelays::NONE,
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

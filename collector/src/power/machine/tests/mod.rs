//! The machine alone: pure `step(now, input) -> actions` tests, one file per
//! concern, on the shared domain and helpers below.

use super::*;

mod cycle;
mod operator;
mod outages;
mod persist;
mod random;
mod sequence;
mod stages;
mod triggers;
mod wake;

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
        offline_after_ms: 30 * S,
        armed: true,
        wake_macs: BTreeMap::new(),
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
        driver: "megatec".into(),
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
                applied: AppliedDelays::NONE,
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
                    applied: AppliedDelays::NONE,
                },
            ));
        }
    }
    out
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

fn ups_ids(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::UpsShutdownReturn { command_id, .. } => Some(*command_id),
            _ => None,
        })
        .collect()
}

fn notice(actions: &[Action], kind: NoticeKind) -> Option<Notice> {
    actions.iter().find_map(|a| match a {
        Action::Notify(n) if n.kind == kind => Some(n.clone()),
        _ => None,
    })
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

fn started(actions: &[Action]) -> usize {
    kinds(actions)
        .iter()
        .filter(|k| *k == "shutdown_started")
        .count()
}

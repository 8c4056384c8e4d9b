//! A failed UPS cycle is a gate, not a shrug: retries with new ids, the hold
//! with mains present, and what ends it.

use super::*;

/// The owner's answer to a UPS command.
fn ups_answer(command_id: u64, ok: bool) -> Input {
    Input::CommandResult {
        node: "s1".into(),
        command_id,
        ok,
        message: if ok { "S02R0001 sent" } else { "NAK" }.into(),
        applied: AppliedDelays::NONE,
    }
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

/// The owner's yes, with the off delay the UPS says it will really use.
fn ups_took(command_id: u64, off_delay_s: u32) -> Input {
    Input::CommandResult {
        node: "s1".into(),
        command_id,
        ok: true,
        message: format!("shutdown.return accepted (off in {off_delay_s} s)"),
        applied: AppliedDelays {
            off_delay_s: Some(off_delay_s),
            restore_delay_s: Some(180),
        },
    }
}

fn cancels(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::UpsCancelShutdown { command_id, .. } => Some(*command_id),
            _ => None,
        })
        .collect()
}

#[test]
fn a_ups_that_keeps_a_shorter_off_delay_is_cancelled_and_with_mains_back_the_last_nodes_stay_up() {
    let mut m = machine();
    let (t, first) = until_ups_command(&mut m);
    let need = m.ups_off_need_ms();
    assert_eq!(
        need, m.spec.settings.halt_time_ms,
        "only s1 is left to halt"
    );
    m.step(t, Input::Ups(mains()));
    // A NUT driver that refused SET VAR: the UPS cuts in 5 s, mid-halt.
    let a = m.step(t + S, ups_took(first, 5));
    assert_eq!(cancels(&a), [m.ups_cancel_id(1)], "{a:?}");
    assert!(poweroffs(&a).is_empty(), "s1 would be cut mid-halt: {a:?}");
    let failed = notice(&a, NoticeKind::UpsCycleFailed).expect("ups_cycle_failed");
    assert!(
        failed.message.contains("after 5 s") && failed.message.contains("keeping s1 running"),
        "{}",
        failed.message
    );
    assert!(notice(&a, NoticeKind::ManualPowerCycleNeeded).is_some());
    assert!(m.held);
    // Trying again would get the same 5 s: no more tries, however long.
    for minute in 1..=20 {
        let b = m.step(t + minute * 60 * S, Input::Tick);
        assert!(
            ups_ids(&b).is_empty(),
            "retried a delay that cannot work: {b:?}"
        );
    }
    // The cancel's answer lands on the timeline, not as a cycle answer.
    m.step(
        t + 2 * S,
        Input::CommandResult {
            node: "s1".into(),
            command_id: m.ups_cancel_id(1),
            ok: true,
            message: "shutdown.stop accepted".into(),
            applied: AppliedDelays::NONE,
        },
    );
    assert!(
        m.timeline
            .iter()
            .any(|e| e.text.contains("cancelled the shutdown")),
        "{:?}",
        m.timeline
    );
}

#[test]
fn a_too_short_off_delay_on_battery_is_cancelled_and_the_battery_will_cut() {
    let mut m = machine();
    let (t, first) = until_ups_command(&mut m);
    let a = m.step(t + S, ups_took(first, 5));
    let cancel = cancels(&a);
    assert_eq!(cancel.len(), 1, "{a:?}");
    assert!(kinds(&a).contains(&"ups_cycle_failed".to_string()));
    // Not before the cancel has landed: powering the owner off first could
    // leave the UPS cutting it mid-halt.
    assert!(poweroffs(&a).is_empty(), "{a:?}");
    let b = m.step(
        t + 2 * S,
        Input::CommandResult {
            node: "s1".into(),
            command_id: cancel[0],
            ok: true,
            message: "shutdown.stop accepted".into(),
            applied: AppliedDelays::NONE,
        },
    );
    let names: Vec<String> = poweroffs(&b).into_iter().map(|p| p.0).collect();
    assert_eq!(names, ["s1"], "on battery the sequence carries on");
}

#[test]
fn an_unanswered_cancel_holds_the_owner_only_for_the_confirm_timeout() {
    let mut m = machine();
    let (t, first) = until_ups_command(&mut m);
    assert!(poweroffs(&m.step(t + S, ups_took(first, 5))).is_empty());
    assert!(poweroffs(&m.step(t + 30 * S, Input::Tick)).is_empty());
    let a = m.step(t + 31 * S, Input::Tick);
    let names: Vec<String> = poweroffs(&a).into_iter().map(|p| p.0).collect();
    assert_eq!(names, ["s1"], "{a:?}");
}

#[test]
fn an_off_delay_that_covers_the_last_halt_carries_on() {
    let mut m = machine();
    let (t, first) = until_ups_command(&mut m);
    let need_s = u32::try_from(m.ups_off_need_ms() / 1000).expect("fits");
    let a = m.step(t + S, ups_took(first, need_s));
    assert!(cancels(&a).is_empty(), "{a:?}");
    assert_eq!(kinds(&a), ["ups_cycle", "poweroff_sent"]);
}

fn standalone_report(ups_cycled: bool) -> Input {
    Input::StandaloneActed {
        node: "s1".into(),
        ups_cycled,
        message:
            "standalone mode (collector unreachable for 1m): UPS `riello`: shutdown.return accepted"
                .into(),
        applied: AppliedDelays::NONE,
    }
}

#[test]
fn a_ups_its_host_cycled_alone_starts_the_sequence_and_is_not_told_again() {
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    // The link comes back inside the grace: the owner says it already acted.
    let a = m.step(5 * S, standalone_report(true));
    assert!(notice(&a, NoticeKind::StandaloneActed).is_some(), "{a:?}");
    assert_eq!(
        cordons(&a).len(),
        5,
        "the output will be cut: no grace left"
    );
    assert!(m.reason.contains("standalone"), "{}", m.reason);
    // Run it to the end: no UPS command ever goes out.
    let mut all = cordon_all(&mut m, 6 * S, &[]);
    let mut b = drain_all(&mut m, 10 * S);
    let mut t = 10 * S;
    while !poweroffs(&b).is_empty() {
        all.extend(b.clone());
        t += S;
        b = obey(&mut m, t, &b);
    }
    all.extend(b);
    assert!(ups_ids(&all).is_empty(), "told the UPS again: {all:?}");
    assert!(
        m.timeline.iter().any(|e| e
            .text
            .contains("already cycling (its host did it in standalone mode)")),
        "{:?}",
        m.timeline
    );
    assert_eq!(m.phase, Phase::AwaitingReturn);
}

#[test]
fn a_standalone_report_that_the_ups_refused_changes_nothing_but_is_told() {
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    let a = m.step(5 * S, standalone_report(false));
    assert!(notice(&a, NoticeKind::StandaloneActed).is_some());
    assert!(cordons(&a).is_empty());
    assert_eq!(m.phase, Phase::OnBattery);
    // Another node's report is not the UPS host's.
    let b = m.step(
        6 * S,
        Input::StandaloneActed {
            node: "w1".into(),
            ups_cycled: true,
            message: String::new(),
            applied: AppliedDelays::NONE,
        },
    );
    assert!(b.is_empty(), "{b:?}");
}

#[test]
fn a_standalone_report_before_the_on_battery_reading_is_still_one_outage() {
    // After a collector restart the stored reading says mains; the report
    // and the OB push come on the same reconnect, in either order.
    let mut m = machine();
    m.step(S, standalone_report(true));
    assert_eq!(m.phase, Phase::Cordoning);
    m.step(2 * S, Input::Ups(battery()));
    assert!(
        !m.new_outage(),
        "the OB reading is this outage, not a new one"
    );
    full_run_from_cordons(&mut m, 3 * S);
    for k in 0..60 {
        m.step((100 + k) * S, Input::Tick);
    }
    assert_eq!(m.phase, Phase::AwaitingReturn, "{:?}", m.timeline);
}

/// Cordons, drain and every stage obeyed, from `t`.
fn full_run_from_cordons(m: &mut Machine, t: i64) {
    cordon_all(m, t, &[]);
    let mut a = drain_all(m, t + S);
    let mut t = t + S;
    while !poweroffs(&a).is_empty() {
        t += S;
        a = obey(m, t, &a);
    }
}

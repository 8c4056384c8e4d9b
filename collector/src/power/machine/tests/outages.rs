//! A second outage is an outage: mains reclosing during the drain, the
//! return and the recovery, and bounded uncordon tries.

use super::*;

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
    let r = notice(&out, NoticeKind::Recovered).expect("recovered");
    assert_eq!(r.message, "recovered: still cordoned: s1, s2, s3, w1");
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

use super::*;

fn run(s: &mut SimState, seconds: f64) {
    // Small steps, as the engine takes them.
    let steps = (seconds / 0.02).round() as usize;
    for _ in 0..steps {
        s.advance(0.02);
    }
}

#[test]
fn battery_drains_faster_under_more_load() {
    let mut light = SimState {
        mains: false,
        load_percent: 25.0,
        full_load_runtime_seconds: 100.0,
        ..SimState::default()
    };
    let mut heavy = SimState {
        load_percent: 100.0,
        ..light.clone()
    };
    run(&mut light, 10.0);
    run(&mut heavy, 10.0);
    assert!(
        (heavy.charge_percent - 90.0).abs() < 0.1,
        "{}",
        heavy.charge_percent
    );
    assert!(
        (light.charge_percent - 97.5).abs() < 0.1,
        "{}",
        light.charge_percent
    );
    assert!(!heavy.low_battery());
    run(&mut heavy, 71.0);
    assert!(heavy.low_battery(), "charge {}", heavy.charge_percent);
    run(&mut heavy, 20.0);
    assert_eq!(heavy.charge_percent, 0.0);
    assert!(heavy.output_off, "an empty battery stops the inverter");
}

#[test]
fn battery_charges_on_mains() {
    let mut s = SimState {
        charge_percent: 50.0,
        full_load_runtime_seconds: 10.0,
        ..SimState::default()
    };
    run(&mut s, 20.0);
    assert!(
        (s.charge_percent - 60.0).abs() < 0.1,
        "{}",
        s.charge_percent
    );
}

#[test]
fn shutdown_with_return_cuts_output_then_restores_after_mains_returns() {
    let mut s = SimState {
        mains: false,
        ..SimState::default()
    };
    s.apply(&SimEffect::Shutdown {
        off_delay_seconds: 3.0,
        restore_delay_seconds: Some(2.0),
    });
    run(&mut s, 2.0);
    assert!(!s.output_off);
    run(&mut s, 1.5);
    assert!(s.output_off && s.shutdown_in_seconds.is_none());
    // Stays off while mains is out, however long.
    run(&mut s, 5.0);
    assert!(s.output_off);
    s.mains = true;
    run(&mut s, 1.0);
    assert!(s.output_off);
    run(&mut s, 1.5);
    assert!(!s.output_off, "restored 2 s after mains returned");
}

#[test]
fn stay_off_and_cancel() {
    let mut s = SimState::default();
    s.apply(&SimEffect::Shutdown {
        off_delay_seconds: 1.0,
        restore_delay_seconds: None,
    });
    run(&mut s, 30.0);
    assert!(s.output_off, "stays off even with mains");
    s.apply(&SimEffect::CancelShutdown);
    assert!(!s.output_off);
    s.apply(&SimEffect::ToggleBeeper);
    assert!(!s.beeper_on);
}

#[test]
fn battery_voltage_spans_nuts_guessed_range() {
    let mut s = SimState::default();
    assert!((s.battery_voltage_volts() - 13.0).abs() < 1e-9);
    s.charge_percent = 0.0;
    assert!((s.battery_voltage_volts() - 10.4).abs() < 1e-9);
}

#[test]
fn control_socket_scripts_a_running_simulation() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = SimUps::spawn(
        megatec::MegatecResponder::default(),
        &dir.path().join("ups"),
    )
    .expect("sim");
    let ctl = dir.path().join("ups.ctl");
    sim.serve_control(&ctl).expect("listens");
    let mut s = UnixStream::connect(&ctl).expect("connects");
    s.write_all(b"mains off\nload 60\nbogus\nstatus\n")
        .expect("writes");
    let mut lines = BufReader::new(s).lines();
    let mut next = || lines.next().expect("a line").expect("reads");
    assert_eq!(next(), "ok");
    assert_eq!(next(), "ok");
    assert!(next().starts_with("error: unknown command"));
    assert_eq!(next(), "mains=false");
    assert!(!sim.state().mains);
    assert_eq!(sim.state().load_percent, 60.0);
    drop(sim);
    assert!(!ctl.exists(), "socket removed with the simulation");
    assert!(
        !dir.path().join("ups").exists(),
        "link removed with the simulation"
    );
}

//! The Megatec driver and the monitor against the simulated UPS over real
//! pseudo-terminals: what a user would see when mains fails, the battery
//! drains, the cable misbehaves or the adapter is replugged.
#![allow(clippy::expect_used)] // test code: a panic is the failure report

use std::path::Path;
use std::time::{Duration, Instant};

use nodewarden_agent::sysroot::SysRoot;
use nodewarden_agent::ups::config::UpsConfig;
use nodewarden_agent::ups::megatec::{BatteryTuning, MegatecDriver};
use nodewarden_agent::ups::model::{UpsCommandKind, UpsDriver, UpsError};
use nodewarden_agent::ups::monitor::{Opener, spawn_monitor, spawn_monitor_with};
use nodewarden_agent::ups::sim::megatec::{MegatecDialect, MegatecResponder};
use nodewarden_agent::ups::sim::{SimEffect, SimHandle, SimState, SimUps};
use nodewarden_proto::v1::UpsStatus;
use tokio::sync::mpsc;

fn sim_with(dir: &Path, dialect: MegatecDialect, state: SimState) -> SimHandle {
    SimUps::spawn_with(
        Box::new(MegatecResponder::new(dialect)),
        &dir.join("ups"),
        state,
    )
    .expect("simulator starts")
}

fn driver(sim: &SimHandle) -> MegatecDriver {
    MegatecDriver::open(sim.link(), None, BatteryTuning::default()).expect("opens the pty")
}

async fn next_change(rx: &mut mpsc::Receiver<UpsStatus>, within: Duration) -> UpsStatus {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("a change is pushed in time")
        .expect("monitor alive")
}

#[test]
fn mains_failure_then_draining_to_low_battery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = sim_with(
        dir.path(),
        MegatecDialect::default(),
        SimState {
            charge_percent: 30.0,
            load_percent: 100.0,
            full_load_runtime_seconds: 20.0,
            low_battery_percent: 20.0,
            ..SimState::default()
        },
    );
    let mut d = driver(&sim);
    let r = d.poll().expect("reads");
    assert_eq!(r.status, vec!["OL"]);
    assert_eq!(r.input_voltage_volts, Some(230.0));
    assert_eq!(r.load_percent, Some(100.0));
    let charge = r.battery_charge_percent.expect("estimated charge");
    assert!(r.battery_charge_estimated && r.battery_runtime_estimated);
    assert!((charge - 30.0).abs() < 2.0, "charge {charge}");
    let id = d.identify().expect("identity");
    assert_eq!(
        (
            id.manufacturer.as_str(),
            id.model.as_str(),
            id.firmware.as_str()
        ),
        ("NODEWARDEN", "SIM-800", "V1.0")
    );
    assert_eq!(
        d.ratings().expect("ratings").battery_voltage_volts,
        Some(12.0)
    );

    sim.set(|s| s.mains = false);
    let ob = d.poll().expect("reads");
    assert_eq!(ob.status, vec!["OB"]);
    assert_eq!(ob.input_voltage_volts, Some(0.0));
    assert_eq!(ob.output_voltage_volts, Some(230.0));
    let start = Instant::now();
    let mut last = ob.battery_charge_percent.expect("charge");
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let r = d.poll().expect("reads");
        let c = r.battery_charge_percent.expect("charge");
        assert!(c <= last + 1e-9, "charge rose on battery: {last} -> {c}");
        last = c;
        if r.has("LB") {
            assert_eq!(r.status, vec!["OB", "LB"]);
            assert!(c <= 21.0, "LB at {c} %");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never reached LB, charge {c}"
        );
    }
}

#[test]
fn unit_quirks_are_handled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = sim_with(
        dir.path(),
        MegatecDialect {
            no_temperature: true,
            no_identity: true,
            per_cell_battery: true,
            echoed: vec!["TL".into()],
            ..MegatecDialect::default()
        },
        SimState {
            charge_percent: 50.0,
            ..SimState::default()
        },
    );
    let mut d = driver(&sim);
    let r = d.poll().expect("reads");
    assert_eq!(r.temperature_celsius, None, "'@' field is no value");
    // Per-cell voltage (~1.95 V) is scaled to the 12 V pack.
    let v = r.battery_voltage_volts.expect("voltage");
    assert!((v - 11.7).abs() < 0.1, "pack voltage {v}");
    assert!((r.battery_charge_percent.expect("charge") - 50.0).abs() < 2.5);
    let id = d.identify().expect("a unit without I still works");
    assert_eq!(id.manufacturer, "");
    match d.command(UpsCommandKind::BatteryTestDeep) {
        Err(UpsError::Unsupported(name)) => assert_eq!(name, "test.battery.start.deep"),
        other => panic!("echo must mean unsupported, got {other:?}"),
    }
    d.command(UpsCommandKind::BatteryTestQuick)
        .expect("silence is acceptance");
    assert!(d.poll().expect("reads").has("CAL"));

    let dir2 = tempfile::tempdir().expect("tempdir");
    let nak = sim_with(
        dir2.path(),
        MegatecDialect {
            nak_commands: true,
            ..MegatecDialect::default()
        },
        SimState::default(),
    );
    let mut d = driver(&nak);
    match d.command(UpsCommandKind::CancelShutdown) {
        Err(UpsError::Refused { command, reason }) => {
            assert_eq!(command, "shutdown.stop");
            assert!(reason.contains("NAK"));
        }
        other => panic!("NAK must refuse, got {other:?}"),
    }
    let dir3 = tempfile::tempdir().expect("tempdir");
    let ack = sim_with(
        dir3.path(),
        MegatecDialect {
            ack_commands: true,
            ..MegatecDialect::default()
        },
        SimState::default(),
    );
    let mut d = driver(&ack);
    d.command(UpsCommandKind::BeeperToggle)
        .expect("ACK accepts");
    assert_eq!(
        ack.effects(),
        vec![SimEffect::ToggleBeeper],
        "sent once, not retried"
    );
}

#[test]
fn noise_before_replies_is_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = sim_with(dir.path(), MegatecDialect::default(), SimState::default());
    sim.set(|s| s.noise_bytes = 7);
    let mut d = driver(&sim);
    let r = d.poll().expect("reads through noise");
    assert_eq!(r.status, vec!["OL"]);
    assert_eq!(r.output_voltage_volts, Some(230.0));
    assert_eq!(d.identify().expect("identity").model, "SIM-800");
}

#[test]
fn slow_replies_time_out_after_three_tries_then_recover() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = sim_with(dir.path(), MegatecDialect::default(), SimState::default());
    let mut d = driver(&sim);
    d.poll().expect("reads");
    sim.set(|s| s.reply_delay_ms = 3500);
    let t = Instant::now();
    match d.poll() {
        Err(UpsError::Timeout {
            tries, timeout_ms, ..
        }) => assert_eq!((tries, timeout_ms), (3, 1000)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    sim.set(|s| s.reply_delay_ms = 0);
    let r = d.poll().expect("recovers once the unit answers in time");
    assert_eq!(r.status, vec!["OL"]);
    // A reply 1.5 s late still lands within the second try.
    sim.set(|s| s.reply_delay_ms = 1500);
    std::thread::sleep(Duration::from_secs(4));
    assert!(d.poll().is_ok());
}

#[test]
fn shutdown_return_reaches_the_line_never_sooner_than_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = sim_with(dir.path(), MegatecDialect::default(), SimState::default());
    let mut d = driver(&sim);
    // NUT's nutdrv_qx truncates 35 s to .5 and 90 s to 01: the unit would
    // cut the last nodes before they halt. We round up, and say what the
    // unit will really do.
    let cases: [(u32, u32, &str, f64, Option<f64>); 6] = [
        (30, 60, "S.5R0001\r", 30.0, Some(60.0)),
        (35, 180, "S.6R0003\r", 36.0, Some(180.0)),
        (12, 60, "S.2R0001\r", 12.0, Some(60.0)),
        (90, 120, "S02R0002\r", 120.0, Some(120.0)),
        (100, 150, "S02R0003\r", 120.0, Some(180.0)),
        (600, 0, "S10\r", 600.0, Some(0.0)),
    ];
    for (off, restore, wire, off_s, restore_s) in cases {
        let applied = d
            .command(UpsCommandKind::ShutdownReturn {
                off_delay_s: off,
                restore_delay_s: restore,
            })
            .expect("accepted");
        let received = String::from_utf8_lossy(&sim.received()).into_owned();
        assert!(
            received.ends_with(wire),
            "{off}/{restore}: line has {received:?}"
        );
        assert_eq!(
            sim.effects().last(),
            Some(&SimEffect::Shutdown {
                off_delay_seconds: off_s,
                restore_delay_seconds: restore_s
            })
        );
        // What the driver reports is what the simulated unit took.
        assert_eq!(applied.off_delay_s.map(f64::from), Some(off_s));
        assert_eq!(applied.restore_delay_s.map(f64::from), restore_s);
    }
    d.command(UpsCommandKind::ShutdownStayOff { off_delay_s: 300 })
        .expect("accepted");
    assert!(String::from_utf8_lossy(&sim.received()).ends_with("S05R0000\r"));
    assert!(
        d.poll().expect("reads").has("FSD"),
        "shutdown pending shows as FSD"
    );
    d.command(UpsCommandKind::CancelShutdown).expect("accepted");
    assert!(!d.poll().expect("reads").has("FSD"));
    match d.command(UpsCommandKind::ShutdownReturn {
        off_delay_s: 900,
        restore_delay_s: 60,
    }) {
        Err(UpsError::Refused { reason, .. }) => assert!(reason.contains("12-600"), "{reason}"),
        other => panic!("out-of-range delay must be refused before sending, got {other:?}"),
    }
    assert!(!String::from_utf8_lossy(&sim.received()).contains("S15"));
}

fn sim_opener(link: &Path) -> Opener {
    let link = link.to_path_buf();
    Box::new(move || {
        Ok(
            Box::new(MegatecDriver::open(&link, None, BatteryTuning::default())?)
                as Box<dyn UpsDriver>,
        )
    })
}

#[tokio::test]
async fn monitor_pushes_changes_within_one_poll_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = sim_with(dir.path(), MegatecDialect::default(), SimState::default());
    let (tx, mut rx) = mpsc::channel(16);
    let interval = Duration::from_millis(1000);
    let h = spawn_monitor_with("sim", interval, sim_opener(sim.link()), tx).expect("starts");
    let first = next_change(&mut rx, Duration::from_secs(10)).await;
    assert!(first.communication_ok, "{}", first.communication_error);
    assert_eq!(first.status, vec!["OL"]);
    assert_eq!(first.change_seq, 1);
    let id = first.identity.clone().expect("identity");
    assert_eq!(
        (id.driver.as_str(), id.model.as_str()),
        ("megatec", "SIM-800")
    );
    assert!(
        first
            .supported_commands
            .contains(&"shutdown.return".to_string())
    );

    let t = Instant::now();
    sim.set(|s| s.mains = false);
    let ob = next_change(&mut rx, Duration::from_secs(5)).await;
    let took = t.elapsed();
    assert_eq!(ob.status, vec!["OB"]);
    assert_eq!(ob.change_seq, 2);
    eprintln!("OB pushed {took:?} after mains failed (poll interval {interval:?})");
    assert!(
        took <= interval + Duration::from_millis(400),
        "pushed after {took:?}"
    );
    assert_eq!(h.latest().status, vec!["OB"]);

    let msg = h
        .command_async(UpsCommandKind::ShutdownReturn {
            off_delay_s: 30,
            restore_delay_s: 180,
        })
        .await
        .expect("accepted");
    assert!(msg.message.contains("shutdown.return"), "{msg:?}");
    assert_eq!(msg.delays.off_delay_s, Some(30));
    assert!(String::from_utf8_lossy(&sim.received()).contains("S.5R0003\r"));
    let fsd = next_change(&mut rx, Duration::from_secs(5)).await;
    assert_eq!(fsd.status, vec!["OB", "FSD"]);
}

/// A real unit at 2400 baud needs about 200 ms to send a Q1 reply; polls
/// must still start once per interval, not once per interval plus reply,
/// or every status change waits that much longer.
#[tokio::test]
async fn slow_replies_do_not_stretch_the_poll_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = sim_with(dir.path(), MegatecDialect::default(), SimState::default());
    sim.set(|s| s.reply_delay_ms = 300);
    let (tx, mut rx) = mpsc::channel(16);
    let interval = Duration::from_millis(1000);
    let _h = spawn_monitor_with("sim", interval, sim_opener(sim.link()), tx).expect("starts");
    let first = next_change(&mut rx, Duration::from_secs(15)).await;
    assert!(first.communication_ok, "{}", first.communication_error);
    let polls = |sim: &SimHandle| {
        String::from_utf8_lossy(&sim.received())
            .matches("Q1\r")
            .count()
    };
    let before = polls(&sim);
    tokio::time::sleep(Duration::from_millis(6050)).await;
    let during = polls(&sim) - before;
    // On a 1 s grid 6 or 7 polls start in 6.05 s; waiting the interval
    // after each 300 ms reply would give at most 5.
    assert!(
        during >= 6,
        "{during} polls in 6.05 s at a 1 s interval with 300 ms replies"
    );
}

#[tokio::test]
async fn silent_ups_is_reported_lost_at_once_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = sim_with(dir.path(), MegatecDialect::default(), SimState::default());
    let (tx, mut rx) = mpsc::channel(16);
    let h = spawn_monitor_with(
        "sim",
        Duration::from_millis(500),
        sim_opener(sim.link()),
        tx,
    )
    .expect("starts");
    assert!(
        next_change(&mut rx, Duration::from_secs(10))
            .await
            .communication_ok
    );
    sim.set(|s| s.silent = true);
    let t = Instant::now();
    let lost = next_change(&mut rx, Duration::from_secs(8)).await;
    assert!(!lost.communication_ok);
    assert!(
        lost.communication_error.contains("no reply"),
        "{}",
        lost.communication_error
    );
    eprintln!(
        "communication lost pushed {:?} after the UPS went silent",
        t.elapsed()
    );
    // Three 1 s tries, then the push: no waiting for another poll.
    assert!(
        t.elapsed() < Duration::from_millis(4500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(lost.status, vec!["OL"], "last good values are kept");
    assert!(!h.latest().communication_ok);
    sim.set(|s| s.silent = false);
    let back = next_change(&mut rx, Duration::from_secs(20)).await;
    assert!(back.communication_ok);
    assert_eq!(back.change_seq, lost.change_seq + 1);
}

#[tokio::test]
async fn replugged_device_is_found_again_through_its_stable_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("usb-NODEWARDEN_SIM-if00-port0");
    let sim1 = SimUps::spawn(MegatecResponder::default(), &link).expect("sim");
    let first_pty = sim1.pty_path().to_path_buf();
    let config = UpsConfig {
        name: "replug".into(),
        protocol: nodewarden_agent::ups::config::UpsProtocol::Megatec,
        port: link.display().to_string(),
        poll_interval: Duration::from_millis(500),
        ..UpsConfig::default()
    };
    let (tx, mut rx) = mpsc::channel(16);
    let h = spawn_monitor(&config, SysRoot::host(), tx).expect("starts");
    assert!(
        next_change(&mut rx, Duration::from_secs(10))
            .await
            .communication_ok
    );
    drop(sim1);
    let lost = next_change(&mut rx, Duration::from_secs(8)).await;
    assert!(!lost.communication_ok);
    // The kernel hands out the lowest free pty number, and other tests open
    // and close theirs meanwhile: hold ptys until one of them has the old
    // name, so the replugged device really comes back under another.
    let mut squatters = Vec::new();
    while !squatters
        .iter()
        .any(|p: &nodewarden_agent::ups::sim::pty::Pty| p.path == first_pty)
    {
        assert!(squatters.len() < 256, "never got {first_pty:?} back");
        squatters.push(nodewarden_agent::ups::sim::pty::open().expect("pty"));
    }
    let sim2 = SimUps::spawn(MegatecResponder::default(), &link).expect("sim");
    assert_ne!(sim2.pty_path(), first_pty, "replugged under a new name");
    let back = next_change(&mut rx, Duration::from_secs(20)).await;
    assert!(back.communication_ok, "{}", back.communication_error);
    assert_eq!(back.status, vec!["OL"]);
    assert_eq!(
        h.latest().identity.expect("identity").port,
        link.display().to_string()
    );
}

#[test]
fn monitor_rejects_unusable_settings() {
    let (tx, _rx) = mpsc::channel(1);
    let config = UpsConfig {
        port: "ttyUSB0".into(),
        ..UpsConfig::default()
    };
    let err = spawn_monitor(&config, SysRoot::host(), tx)
        .unwrap_err()
        .to_string();
    assert!(err.contains("key `port`"), "{err}");
}

//! NUT's own Megatec driver (nutdrv_qx, protocol=megatec) and nodewarden's
//! read the same simulated UPS over a pty and must report the same thing:
//! the simulator is faithful where NUT looks, and our driver reads it as
//! NUT does. Needs NUT: tests/setup/install-test-tools.sh (scripts/test.sh runs it).
#![allow(clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nodewarden_agent::ups::megatec::{BatteryTuning, MegatecDriver};
use nodewarden_agent::ups::model::{UpsDriver, UpsReading};
use nodewarden_agent::ups::sim::megatec::{MegatecDialect, MegatecResponder};
use nodewarden_agent::ups::sim::{SimState, SimUps};

const NUTDRV_QX: &str = "/lib/nut/nutdrv_qx";

/// Runs nutdrv_qx in dump mode (`-d 1`: one update, print, exit), killed
/// after 60 s whatever happens.
fn nut_dump(port: &Path, state_dir: &Path, extra: &[&str]) -> BTreeMap<String, String> {
    let mut child = Command::new(NUTDRV_QX)
        .args(["-s", "fidelity", "-u", "root", "-d", "1"])
        .args([
            "-x",
            &format!("port={}", port.display()),
            "-x",
            "protocol=megatec",
        ])
        .args(extra.iter().flat_map(|x| ["-x", x]))
        .env("NUT_STATEPATH", state_dir)
        .env("NUT_CONFPATH", state_dir)
        .env("NUT_ALTPIDPATH", state_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nutdrv_qx starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("nutdrv_qx did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    let values: BTreeMap<String, String> = out
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    assert!(
        values.contains_key("ups.status"),
        "nutdrv_qx gave no status.\nstdout:\n{out}\nstderr:\n{err}"
    );
    values
}

fn num(nut: &BTreeMap<String, String>, key: &str) -> f64 {
    nut.get(key)
        .unwrap_or_else(|| panic!("NUT reports no {key}: {nut:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("NUT's {key} is not a number: {nut:?}"))
}

fn close(ours: Option<f64>, theirs: f64, tolerance: f64, what: &str) {
    let ours = ours.unwrap_or_else(|| panic!("nodewarden reports no {what}"));
    assert!(
        (ours - theirs).abs() <= tolerance,
        "{what}: nodewarden {ours}, NUT {theirs}"
    );
}

fn compare(
    dialect: MegatecDialect,
    state: SimState,
    nut_args: &[&str],
) -> (UpsReading, BTreeMap<String, String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("ups");
    let sim = SimUps::spawn_with(Box::new(MegatecResponder::new(dialect)), &link, state)
        .expect("simulator");
    let nut = nut_dump(&link, dir.path(), nut_args);
    let ours = {
        let mut d = MegatecDriver::open(&link, None, BatteryTuning::default()).expect("opens");
        d.poll().expect("nodewarden reads the simulator")
    };
    drop(sim);

    assert_eq!(ours.status.join(" "), nut["ups.status"], "status");
    close(
        ours.input_voltage_volts,
        num(&nut, "input.voltage"),
        0.05,
        "input voltage",
    );
    close(
        ours.output_voltage_volts,
        num(&nut, "output.voltage"),
        0.05,
        "output voltage",
    );
    close(ours.load_percent, num(&nut, "ups.load"), 0.5, "load");
    close(
        ours.input_frequency_hertz,
        num(&nut, "input.frequency"),
        0.05,
        "frequency",
    );
    close(
        ours.temperature_celsius,
        num(&nut, "ups.temperature"),
        0.05,
        "temperature",
    );
    // NUT prints the guessed charge rounded to whole percent.
    close(
        ours.battery_charge_percent,
        num(&nut, "battery.charge"),
        0.5 + 1e-6,
        "charge",
    );
    assert!(ours.battery_charge_estimated);
    close(
        Some(12.0),
        num(&nut, "battery.voltage.nominal"),
        0.05,
        "nominal battery voltage",
    );
    (ours, nut)
}

/// A battery that barely moves during the comparison.
fn steady(state: SimState) -> SimState {
    SimState {
        full_load_runtime_seconds: 1.0e7,
        ..state
    }
}

#[test]
fn nut_and_nodewarden_agree_on_a_megatec_ups() {
    nodewarden_tests::setup::require("nut", nodewarden_tests::setup::NUT);

    // On mains.
    let (ours, nut) = compare(
        MegatecDialect::default(),
        steady(SimState {
            charge_percent: 80.0,
            load_percent: 40.0,
            ..SimState::default()
        }),
        &[],
    );
    assert_eq!(nut["ups.status"], "OL");
    close(
        ours.battery_voltage_volts,
        num(&nut, "battery.voltage"),
        0.05,
        "battery voltage",
    );
    assert_eq!(nut["device.mfr"], "NODEWARDEN");
    assert_eq!(nut["device.model"], "SIM-800");

    // On battery.
    let (ours, nut) = compare(
        MegatecDialect::default(),
        steady(SimState {
            mains: false,
            charge_percent: 45.0,
            load_percent: 70.0,
            ..SimState::default()
        }),
        &[],
    );
    assert_eq!(nut["ups.status"], "OB");
    assert_eq!(ours.input_voltage_volts, Some(0.0));

    // On battery, low.
    let (_, nut) = compare(
        MegatecDialect::default(),
        steady(SimState {
            mains: false,
            charge_percent: 12.0,
            load_percent: 30.0,
            ..SimState::default()
        }),
        &[],
    );
    assert_eq!(nut["ups.status"], "OB LB");

    // A battery test running while a shutdown is pending.
    let (_, nut) = compare(
        MegatecDialect::default(),
        steady(SimState {
            testing: true,
            shutdown_in_seconds: Some(1.0e6),
            ..SimState::default()
        }),
        &[],
    );
    assert_eq!(nut["ups.status"], "OL CAL FSD");

    // A unit reporting volts per cell. NUT 2.8.0 guesses the cell count
    // only after computing its first charge, so in dump mode (no full
    // update yet) it shows 0 %; its daemon corrects it at the first full
    // update. Give NUT the count (6 cells of a 12 V pack) and check that our
    // own guess lands on the same count and charge.
    let (ours, nut) = compare(
        MegatecDialect {
            per_cell_battery: true,
            ..MegatecDialect::default()
        },
        steady(SimState {
            charge_percent: 60.0,
            ..SimState::default()
        }),
        &["default.battery.packs=6"],
    );
    close(
        ours.battery_voltage_volts.map(|v| v / 6.0),
        num(&nut, "battery.voltage"),
        0.01,
        "per-cell battery voltage",
    );
}

/// NUT's `nutdrv_qx -k` (the shutdown upsmon triggers) sends the same
/// shutdown-with-return bytes our encoder makes, and the simulator reads
/// them as the delays NUT meant.
#[test]
fn nut_and_nodewarden_send_the_same_shutdown_return() {
    nodewarden_tests::setup::require("nut", nodewarden_tests::setup::NUT);
    for (offdelay, ondelay) in [(42u32, 300u32), (30, 180), (120, 60)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let link = dir.path().join("ups");
        let sim = SimUps::spawn(MegatecResponder::default(), &link).expect("simulator");
        let status = Command::new(NUTDRV_QX)
            .args(["-s", "fidelity", "-u", "root", "-k"])
            .args([
                "-x",
                &format!("port={}", link.display()),
                "-x",
                "protocol=megatec",
            ])
            .args([
                "-x",
                &format!("offdelay={offdelay}"),
                "-x",
                &format!("ondelay={ondelay}"),
            ])
            .env("NUT_STATEPATH", dir.path())
            .env("NUT_CONFPATH", dir.path())
            .env("NUT_ALTPIDPATH", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("nutdrv_qx -k runs");
        assert!(
            status.success(),
            "nutdrv_qx -k failed for {offdelay}/{ondelay}"
        );
        let ours =
            nodewarden_agent::ups::megatec::protocol::encode_shutdown_return(offdelay, ondelay)
                .expect("in range");
        let line = sim.received();
        assert!(
            line.ends_with(&ours),
            "{offdelay}/{ondelay}: NUT sent {:?}, we would send {:?}",
            String::from_utf8_lossy(&line),
            String::from_utf8_lossy(&ours)
        );
        match sim.effects().last() {
            Some(nodewarden_agent::ups::sim::SimEffect::Shutdown {
                off_delay_seconds,
                restore_delay_seconds,
            }) => {
                assert_eq!(*off_delay_seconds, f64::from(offdelay - offdelay % 6));
                assert_eq!(
                    *restore_delay_seconds,
                    Some(f64::from(ondelay - ondelay % 60))
                );
            }
            other => panic!("the simulator saw no shutdown: {other:?}"),
        }
    }
}

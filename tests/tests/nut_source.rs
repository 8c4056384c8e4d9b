//! nodewarden's NUT source against Debian's real upsd serving the dummy-ups
//! driver. Needs root (the programs run with `-u root`) and NUT:
//! tests/setup/install-test-tools.sh (scripts/test.sh runs it).
#![allow(clippy::expect_used)] // test code: a panic is the failure report

mod nut_support;

use std::fs;
use std::time::Duration;

use nodewarden_agent::ups::nut::{NutDriver, NutErrorCode};
use nodewarden_agent::ups::{UpsCommandKind, UpsDriver, UpsError};
use nut_support::{ADMIN_PASSWORD, ADMIN_USER, Nut, wait_for};

const ON_MAINS: &str = "\
ups.status: OL
input.voltage: 231.0
output.voltage: 229.8
input.frequency: 50.1
ups.load: 27
battery.voltage: 13.6
battery.charge: 100
battery.runtime: 1860
ups.temperature: 29.5
ups.firmware: FW-7.3
device.serial: SN0042
input.voltage.nominal: 230
output.voltage.nominal: 230
battery.voltage.nominal: 12
output.frequency.nominal: 50
ups.power.nominal: 800
ups.realpower.nominal: 480
ups.delay.shutdown: 20
";

fn start() -> Nut {
    let mut nut = Nut::start("dummy", "dummy-ups", "  port = dummy.dev\n");
    fs::write(nut.path("dummy.dev"), ON_MAINS).expect("write dummy.dev");
    // dummy-ups read the file once at start, before it was written: restart
    // it so the first values are ours.
    nut.stop_driver();
    nut.start_driver();
    let addr = nut.addr();
    let ready = wait_for(Duration::from_secs(15), || {
        let mut d = NutDriver::connect(&addr, None).ok()?;
        let r = d.poll().ok()?;
        (r.load_percent == Some(27.0)).then_some(())
    });
    assert!(
        ready.is_some(),
        "dummy-ups never served the values:\n{}",
        nut.logs()
    );
    nut
}

#[test]
fn reads_exactly_the_values_dummy_ups_serves() {
    let nut = start();
    let mut d = NutDriver::connect(&nut.addr(), None).expect("connect");
    assert_eq!(d.protocol(), "nut");
    assert_eq!(d.port(), format!("dummy@127.0.0.1:{}", nut.port));
    let r = d.poll().expect("poll");
    assert_eq!(r.status, vec!["OL"]);
    assert_eq!(r.input_voltage_volts, Some(231.0));
    assert_eq!(r.output_voltage_volts, Some(229.8));
    assert_eq!(r.input_frequency_hertz, Some(50.1));
    assert_eq!(r.load_percent, Some(27.0));
    assert_eq!(r.battery_voltage_volts, Some(13.6));
    assert_eq!(r.battery_charge_percent, Some(100.0));
    assert_eq!(r.battery_runtime_seconds, Some(1860.0));
    assert_eq!(r.temperature_celsius, Some(29.5));
    let id = d.identify().expect("identify");
    assert_eq!(id.firmware, "FW-7.3");
    assert_eq!(id.serial_number, "SN0042");
    assert_eq!(id.driver, "nut");
    // dummy-ups names itself as maker and model, whatever the file says.
    assert!(
        !id.manufacturer.is_empty() && !id.model.is_empty(),
        "{id:?}"
    );
    let n = d.ratings().expect("ratings");
    assert_eq!(n.input_voltage_volts, Some(230.0));
    assert_eq!(n.battery_voltage_volts, Some(12.0));
    assert_eq!(n.frequency_hertz, Some(50.0));
    assert_eq!(n.power_va, Some(800.0));
    assert_eq!(n.real_power_watts, Some(480.0));
    assert_eq!(d.get_var("ups.firmware").expect("GET VAR"), "FW-7.3");
}

#[test]
fn sees_mains_loss_when_the_dummy_file_changes() {
    let nut = start();
    let mut d = NutDriver::connect(&nut.addr(), None).expect("connect");
    assert_eq!(d.poll().expect("poll").status, vec!["OL"]);
    let on_battery = ON_MAINS
        .replace("ups.status: OL", "ups.status: OB LB")
        .replace("input.voltage: 231.0", "input.voltage: 0.0")
        .replace("battery.charge: 100", "battery.charge: 18");
    // dummy-once re-reads the file when its timestamp changes.
    std::thread::sleep(Duration::from_millis(1100));
    fs::write(nut.path("dummy.dev"), on_battery).expect("rewrite dummy.dev");
    let seen = wait_for(Duration::from_secs(15), || {
        let r = d.poll().ok()?;
        r.has("OB").then_some(r)
    })
    .unwrap_or_else(|| panic!("OB never seen:\n{}", nut.logs()));
    assert_eq!(seen.status, vec!["OB", "LB"]);
    assert_eq!(seen.input_voltage_volts, Some(0.0));
    assert_eq!(seen.battery_charge_percent, Some(18.0));
}

#[test]
fn lists_the_commands_the_driver_offers() {
    let nut = start();
    let mut d = NutDriver::connect(&nut.addr(), None).expect("connect");
    // dummy-ups 2.8.0 registers exactly one command.
    assert!(
        d.list_commands()
            .expect("LIST CMD")
            .contains(&"load.off".to_string())
    );
    assert!(d.supported_commands().contains(&"load.off"));
    assert!(!d.supported_commands().contains(&"shutdown.return"));
    let names: Vec<String> = d
        .list_ups()
        .expect("LIST UPS")
        .into_iter()
        .map(|u| u.0)
        .collect();
    assert_eq!(names, vec!["dummy"]);
}

#[test]
fn commands_without_credentials_are_refused_with_a_clear_error() {
    let nut = start();
    let mut d = NutDriver::connect(&nut.addr(), None).expect("connect");
    let err = d.instcmd("load.off", None).expect_err("no user");
    assert_eq!(err.code(), Some(&NutErrorCode::UsernameRequired), "{err}");
    let err = d
        .command(UpsCommandKind::ShutdownReturn {
            off_delay_s: 90,
            restore_delay_s: 10,
        })
        .expect_err("no user");
    assert!(
        matches!(
            err,
            UpsError::Refused {
                command: "shutdown.return",
                ..
            }
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("USERNAME-REQUIRED"), "{message}");
    assert!(message.contains("upsd.users"), "{message}");
    // Nothing changed on the UPS.
    assert_eq!(d.get_var("ups.delay.shutdown").expect("GET VAR"), "20");
}

#[test]
fn commands_with_credentials_reach_the_driver() {
    let nut = start();
    let wrong = Some((ADMIN_USER.to_string(), "wrong".to_string()));
    let mut d = NutDriver::connect(&nut.addr(), wrong).expect("connect");
    let err = d.instcmd("load.off", None).expect_err("wrong password");
    assert_eq!(err.code(), Some(&NutErrorCode::AccessDenied), "{err}");

    let admin = Some((ADMIN_USER.to_string(), ADMIN_PASSWORD.to_string()));
    let mut d = NutDriver::connect(&nut.addr(), admin).expect("connect");
    // The delay is set on the UPS before the command; dummy-ups has no
    // shutdown.return, so upsd refuses the command itself.
    let err = d
        .command(UpsCommandKind::ShutdownReturn {
            off_delay_s: 90,
            restore_delay_s: 10,
        })
        .expect_err("dummy-ups has no shutdown.return");
    assert!(err.to_string().contains("CMD-NOT-SUPPORTED"), "{err}");
    let delay = wait_for(Duration::from_secs(10), || {
        let v = d.get_var("ups.delay.shutdown").ok()?;
        (v == "90").then_some(v)
    });
    assert!(
        delay.is_some(),
        "SET VAR ups.delay.shutdown did not arrive:\n{}",
        nut.logs()
    );
    // load.off is listed, so upsd passes it on; with tracking we learn that
    // dummy-ups 2.8.0 does not actually handle any command.
    let err = d
        .instcmd("load.off", None)
        .expect_err("dummy-ups handles no command");
    assert_eq!(err.code(), Some(&NutErrorCode::Unknown), "{err}");
}

#[test]
fn a_lost_driver_and_a_restarted_upsd_are_survived() {
    let mut nut = start();
    let mut d = NutDriver::connect(&nut.addr(), None).expect("connect");
    d.set_timeout(Duration::from_secs(2));
    assert!(d.poll().is_ok());

    nut.stop_driver();
    let err = wait_for(Duration::from_secs(15), || d.poll().err())
        .unwrap_or_else(|| panic!("upsd kept serving a dead driver:\n{}", nut.logs()));
    assert!(matches!(err, UpsError::Io { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("DRIVER-NOT-CONNECTED") || message.contains("DATA-STALE"),
        "{message}"
    );

    nut.start_driver();
    nut.stop_upsd();
    assert!(d.poll().is_err(), "upsd is down");
    nut.start_upsd();
    // Same driver object: it reconnects by itself (a fresh dummy-ups says
    // WAIT until it has read its file).
    let back = wait_for(Duration::from_secs(15), || {
        d.poll().ok().filter(|r| r.has("OL"))
    });
    assert_eq!(
        back.map(|r| r.status),
        Some(vec!["OL".to_string()]),
        "{}",
        nut.logs()
    );
}

#[test]
fn an_unknown_ups_name_is_an_open_error() {
    let nut = start();
    let err = match NutDriver::connect(&format!("nope@127.0.0.1:{}", nut.port), None) {
        Ok(_) => panic!("upsd has no UPS named nope"),
        Err(e) => e,
    };
    assert!(matches!(err, UpsError::Open { .. }), "{err}");
    assert!(err.to_string().contains("UNKNOWN-UPS"), "{err}");
}

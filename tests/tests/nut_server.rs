//! nodewarden's NUT server followed by NUT's own clients: Debian's upsc,
//! upslog, upscmd, upsrw and upsmon, PyNUTClient and aionut (Home Assistant's NUT
//! library), against the real collector and agent reading a simulated UPS;
//! and upsc reading the same simulated UPS through NUT's driver + upsd and
//! through our agent + server. Needs tests/setup/install-test-tools.sh
//! (groups nut, nutclients).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod nut_server_support;
mod nut_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nodewarden_agent::ups::sim::SimUps;
use nodewarden_agent::ups::sim::megatec::{MegatecDialect, MegatecResponder};
use nodewarden_tests::{Proc, eventually};
use nut_server_support::{ADMIN, Rig, run, upsc};

fn vars(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_clients_read_command_and_see_the_agent_go() {
    let mut rig = Rig::start("").await;
    let rack = rig.ups("rack");
    let listed = upsc(&["-l", &format!("127.0.0.1:{}", rig.nut_port)]).unwrap();
    assert_eq!(listed, "rack");
    let all = vars(&upsc(&[&rack]).unwrap());
    assert_eq!(all["ups.status"], "OL");
    assert_eq!(all["driver.name"], "nutdrv_qx");
    assert_eq!(all["device.type"], "ups");
    for v in [
        "battery.charge",
        "battery.voltage",
        "input.voltage",
        "input.frequency",
        "ups.load",
    ] {
        assert!(
            all[v].parse::<f64>().is_ok(),
            "{v} = {:?} in {all:?}",
            all.get(v)
        );
    }
    assert!(
        all["input.voltage"].contains('.'),
        "nutdrv_qx prints one decimal: {all:?}"
    );
    // Synology DSM asks for `ups`, whatever the UPS is called.
    assert_eq!(upsc(&[&rig.ups("ups"), "ups.status"]).unwrap(), "OL");
    let (ok, out) = run("upsc", &[&rig.ups("nosuch"), "ups.status"]);
    assert!(!ok && out.contains("Unknown UPS"), "{out}");

    // upslog: one line per interval in its default format (charge, input
    // voltage, load, status, ...), read from a file it keeps writing.
    let log = rig.dir.path().join("upslog.txt");
    let mut upslog = Proc::spawn(
        std::process::Command::new("upslog")
            .args(["-s", &rack, "-i", "1", "-F", "-l"])
            .arg(&log)
            .args([
                "-f",
                "%VAR battery.charge% %VAR input.voltage% %VAR ups.status%",
            ])
            .env("NUT_STATEPATH", rig.dir.path())
            .env("NUT_ALTPIDPATH", rig.dir.path()),
        rig.dir.path().join("upslog.err"),
    );
    eventually(Duration::from_secs(10), "upslog writes a line", || {
        let log = log.clone();
        async move {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.lines()
                .find(|l| l.ends_with(" OL"))
                .map(str::to_string)
        }
    })
    .await;
    upslog.kill_hard();
    let line = std::fs::read_to_string(&log).unwrap();
    let first: Vec<&str> = line.lines().next().unwrap().split(' ').collect();
    assert_eq!(
        first,
        [
            all["battery.charge"].as_str(),
            all["input.voltage"].as_str(),
            "OL"
        ]
    );

    let (ok, out) = run("upscmd", &["-l", &rack]);
    assert!(ok && out.contains("test.battery.start.quick"), "{out}");
    let (ok, out) = run(
        "upscmd",
        &[
            "-u",
            "monuser",
            "-p",
            "secret",
            &rack,
            "test.battery.start.quick",
        ],
    );
    assert!(
        !ok && out.contains("ERR ACCESS-DENIED"),
        "a secondary may not: {out}"
    );
    let (ok, out) = run(
        "upscmd",
        &[
            "-u",
            ADMIN.0,
            "-p",
            ADMIN.1,
            &rack,
            "test.battery.start.quick",
        ],
    );
    assert!(ok && out.trim() == "OK", "{out}");
    assert!(rig.sim.state().testing, "the agent ran the test on the UPS");
    let beeper = rig.sim.state().beeper_on;
    let (ok, out) = run(
        "upscmd",
        &["-w", "-u", ADMIN.0, "-p", ADMIN.1, &rack, "beeper.toggle"],
    );
    assert!(ok && out.trim() == "SUCCESS", "tracked: {out}");
    assert_ne!(rig.sim.state().beeper_on, beeper);

    let (ok, out) = run("upsrw", &[&rack]);
    assert!(ok, "no writable variables is no error: {out}");
    let (ok, out) = run(
        "upsrw",
        &["-s", "ups.status=OB", "-u", ADMIN.0, "-p", ADMIN.1, &rack],
    );
    assert!(!ok && out.contains("ERR ACCESS-DENIED"), "{out}");

    rig.sim.set(|s| s.mains = false);
    let cut = Instant::now();
    eventually(Duration::from_secs(5), "upsc sees OB", || {
        let rack = rack.clone();
        async move { upsc(&[&rack, "ups.status"]).filter(|s| s.contains("OB")) }
    })
    .await;
    let seen = cut.elapsed();
    assert!(
        seen < Duration::from_millis(2500),
        "{seen:?} with a 1 s poll"
    );

    rig.agent.kill_hard();
    eventually(
        Duration::from_secs(15),
        "upsc says the data is stale",
        || {
            let rack = rack.clone();
            async move {
                let (ok, out) = run("upsc", &[&rack, "ups.status"]);
                (!ok && out.contains("Data stale")).then_some(())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsmon_as_a_secondary_shuts_down_when_the_primary_raises_fsd() {
    let rig = Rig::start("").await;
    let upsmon =
        nodewarden_tests::Upsmon::secondary(&rig.dir.path().join("upsmon"), &rig.ups("rack"));
    let mut primary = rig.connect();
    eventually(Duration::from_secs(20), "upsmon logged in", || {
        let (_, out) = run("upsc", &["-c", &rig.ups("rack")]);
        async move { out.contains("127.0.0.1").then_some(()) }
    })
    .await;
    assert_eq!(primary.say(&format!("USERNAME {}", ADMIN.0)), "OK");
    assert_eq!(primary.say(&format!("PASSWORD {}", ADMIN.1)), "OK");
    assert_eq!(primary.say("PRIMARY rack"), "OK PRIMARY-GRANTED");
    assert_eq!(primary.say("FSD rack"), "OK FSD-SET");
    let raised = Instant::now();
    assert_eq!(upsc(&[&rig.ups("rack"), "ups.status"]).unwrap(), "FSD OL");
    eventually(
        Duration::from_secs(15),
        "upsmon ran its SHUTDOWNCMD",
        || async { upsmon.ran.exists().then_some(()) },
    )
    .await;
    assert!(raised.elapsed() < Duration::from_secs(10));
}

const PYNUT: &str = r#"
import sys, PyNUT
c = PyNUT.PyNUTClient(host="127.0.0.1", port=int(sys.argv[1]), login="admin", password="s3cret")
print(sorted(c.GetUPSList()))
v = c.GetUPSVars("rack")
print(v[b"ups.status"].decode(), len(v))
print(sorted(c.GetUPSCommands("rack")))
print(c.RunUPSCommand("rack", "test.battery.start.quick"))
"#;

const AIONUT: &str = r#"
import asyncio, sys
from aionut import AIONUTClient
async def main():
    c = AIONUTClient(host="127.0.0.1", port=int(sys.argv[1]), username="admin", password="s3cret")
    print(sorted(await c.list_ups()))
    v = await c.list_vars("rack")
    print(v["ups.status"], len(v))
    print(sorted(await c.list_commands("rack")))
    print(await c.run_command("rack", "test.battery.start.quick"))
    c.shutdown()
asyncio.run(main())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynut_and_aionut_read_every_variable_and_run_a_command() {
    let rig = Rig::start("").await;
    let count = vars(&upsc(&[&rig.ups("rack")]).unwrap()).len();
    let port = rig.nut_port.to_string();
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/nut-venv/bin/python");
    assert!(
        std::path::Path::new(venv).exists(),
        "aionut is missing: sudo sh {} nutclients",
        nodewarden_tests::setup::INSTALL_SCRIPT
    );
    for (python, script) in [("/usr/bin/python3", PYNUT), (venv, AIONUT)] {
        rig.sim.set(|s| s.testing = false);
        let (ok, out) = run(python, &["-c", script, &port]);
        assert!(ok, "{python}: {out}");
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].contains("rack"), "{out}");
        // The status may still say CAL from the previous client's test.
        assert!(
            lines[1].starts_with("OL") && lines[1].ends_with(&format!(" {count}")),
            "every variable upsc sees ({count}): {out}"
        );
        assert!(lines[2].contains("test.battery.start.quick"), "{out}");
        assert!(lines[3].contains("OK"), "{out}");
        assert!(rig.sim.state().testing, "{python} ran the test: {out}");
    }
}

/// The same simulated UPS model read by NUT's nutdrv_qx + upsd and by our
/// agent + NUT server: upsc prints the same variables, with the
/// differences listed here and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsc_prints_the_same_from_nuts_upsd_and_from_nodewarden() {
    let rig = Rig::start("").await;
    let nut_dir = tempfile::tempdir().unwrap();
    let link = nut_dir.path().join("ups1");
    let _twin = SimUps::spawn(MegatecResponder::new(MegatecDialect::default()), &link).unwrap();
    let nut = nut_support::Nut::start(
        "rack",
        "nutdrv_qx",
        &format!("  port = {}\n  protocol = megatec\n", link.display()),
    );
    // upsd serves a UPS while its driver is still filling it in (CI once
    // read ups.status and battery values before the first Q1 answer had
    // landed), so wait until two reads a second apart list the same
    // variables and the live line's are among them.
    let mut last = BTreeMap::new();
    let theirs = nut_support::wait_for(Duration::from_secs(30), || {
        let now = vars(&upsc(&[&nut.addr()])?);
        let settled = now.contains_key("ups.load") && now.keys().eq(last.keys());
        std::thread::sleep(Duration::from_secs(1));
        last = now.clone();
        settled.then_some(now)
    })
    .unwrap_or_else(|| {
        panic!(
            "NUT's upsd never served all of rack:\n{last:?}\n{}",
            nut.logs()
        )
    });
    let ours = vars(&upsc(&[&rig.ups("rack")]).unwrap());
    // Only NUT's driver can say these: its own settings and bookkeeping.
    let nut_only = |k: &str| {
        k.starts_with("driver.")
            || k.starts_with("device.")
                && k != "device.model"
                && k != "device.mfr"
                && k != "device.type"
            || k.starts_with("ups.delay.")
            || k.starts_with("battery.voltage.high")
            || k.starts_with("battery.voltage.low")
            || k == "input.voltage.fault"
            || k == "ups.type"
            || k == "ups.beeper.status"
            || k == "battery.type"
            || k == "battery.packs"
            || k == "battery.protection"
            || k == "battery.runtime.low"
            || k == "battery.charge.low"
            || k == "battery.energysave"
            || k == "ups.start.auto"
            || k == "ups.start.battery"
            || k == "ups.start.reboot"
    };
    // Readings of the live line move between the two reads.
    let live = [
        "input.voltage",
        "output.voltage",
        "input.frequency",
        "ups.load",
        "battery.voltage",
        "ups.temperature",
    ];
    let mut differ = Vec::new();
    for (k, v) in &theirs {
        if nut_only(k) {
            continue;
        }
        match ours.get(k) {
            None => differ.push(format!("{k}: NUT {v:?}, ours missing")),
            Some(o) if live.contains(&k.as_str()) => {
                let (a, b) = (v.parse::<f64>().unwrap(), o.parse::<f64>().unwrap());
                let decimals = |s: &str| s.split_once('.').map_or(0, |(_, d)| d.len());
                if decimals(v) != decimals(o) || (a - b).abs() > a.abs() * 0.05 + 0.5 {
                    differ.push(format!("{k}: NUT {v:?}, ours {o:?}"));
                }
            }
            Some(o) if o != v => differ.push(format!("{k}: NUT {v:?}, ours {o:?}")),
            Some(_) => {}
        }
    }
    // What we add: a runtime estimated from charge and load (nutdrv_qx
    // reports none unless runtimecal is configured).
    let extra: Vec<&String> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
    assert_eq!(extra, ["battery.runtime"], "ours: {ours:?}");
    assert!(
        differ.is_empty(),
        "differences:\n{}\nNUT: {theirs:?}\nours: {ours:?}",
        differ.join("\n")
    );
}

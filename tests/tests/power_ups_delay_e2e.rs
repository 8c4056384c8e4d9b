//! The delays the UPS really uses, end to end with real peers: the UPS host
//! reads a simulated Riello through NUT's own riello_ser and upsd (Debian's
//! build), which cannot set `ups.delay.shutdown` and cuts after its fixed
//! 5 s. The agent reads back what the UPS took; the collector sees that 5 s
//! would cut the last nodes mid-halt, cancels the cycle and carries on as
//! for a refused one. Needs root and NUT: tests/setup/install-test-tools.sh.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use nodewarden_agent::ups::gpser::CheckKind;
use nodewarden_agent::ups::sim::gpser::GpserResponder;
use nodewarden_agent::ups::sim::{SimEffect, SimUps};
use nodewarden_tests::eventually;

mod nut_support;
mod power_support;

use nut_support::{ADMIN_PASSWORD, ADMIN_USER, Nut};
use power_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ups_that_keeps_a_shorter_off_delay_than_configured_is_cancelled_not_trusted() {
    // The stages after the UPS command: s1 (10 s to confirm), then s2 halts
    // in 10 s: the UPS must hold its output 20 s; riello_ser gives 5.
    let mut rig = Rig::start(Setup {
        power: &[
            ("halt_time", "\"10s\""),
            ("ups_off_delay", "\"60s\""),
            // NUT's round trips, and riello_ser's probe, take seconds.
            ("agent_confirm_timeout", "\"10s\""),
        ],
        ..Setup::default()
    })
    .await;
    // Debian 12's riello_ser computes the CRC wrongly (NUT issue 2137): the
    // simulated Riello answers with the sum check it can read.
    let link = rig.dir().join("tty-riello");
    let riello = SimUps::spawn(GpserResponder::new(CheckKind::Sum), &link).unwrap();
    let nut = Nut::start(
        "riello",
        "riello_ser",
        &format!("  port = {}\n", link.display()),
    );
    let config = nodewarden_tests::agent_config(rig.dir(), "s1");
    let toml = std::fs::read_to_string(&config).unwrap();
    let head = toml.split("\n[[ups]]").next().unwrap().to_string();
    std::fs::write(
        &config,
        format!(
            "{head}\n[[ups]]\nname = \"rack\"\nprotocol = \"nut\"\nport = \"{}\"\nnut_user = \"{ADMIN_USER}\"\nnut_password = \"{ADMIN_PASSWORD}\"\npoll_interval = \"500ms\"\n",
            nut.addr()
        ),
    )
    .unwrap();
    rig.agents.get_mut("s1").unwrap().stop();
    rig.start_agent("s1");
    // riello_ser probes the other Riello protocol for 5 s first.
    eventually(
        Duration::from_secs(40),
        "the collector reads the Riello through NUT",
        || async {
            let plan = rig.collector.cli(&["plan"]);
            let text = String::from_utf8_lossy(&plan.stdout).to_string();
            text.contains("the NUT driver may keep its own")
                .then_some(())
        },
    )
    .await;

    riello.set(|s| s.mains = false);
    rig.wait_phase("main", "awaiting_return", Duration::from_secs(90))
        .await;
    let failed = rig.notices_of("ups_cycle_failed");
    assert!(
        failed
            .iter()
            .any(|l| l.contains("cut its output after 5 s") && l.contains("carrying on")),
        "{failed:?}\n{:?}\n{}\n{}",
        rig.timeline("main"),
        nut.logs(),
        rig.logs()
    );
    // The UPS got the cycle through riello_ser, then its cancel, before the
    // owner went down.
    assert!(
        rig.timeline("main")
            .iter()
            .any(|l| l.contains("cancelled the shutdown")),
        "{:?}",
        rig.timeline("main")
    );
    let effects = eventually(
        Duration::from_secs(10),
        "the cancel reaches the Riello",
        || async {
            let e = riello.effects();
            e.contains(&SimEffect::CancelShutdown).then_some(e)
        },
    )
    .await;
    assert!(
        matches!(
            effects.first(),
            Some(SimEffect::Shutdown {
                off_delay_seconds: 5.0,
                ..
            })
        ),
        "{effects:?}"
    );
    // On battery the sequence carried on: the battery will cut the output.
    for n in ["s1", "s2"] {
        assert!(
            rig.hooks().iter().any(|(h, _)| h == n),
            "{n} was not powered off: {:?}",
            rig.hooks()
        );
    }
}

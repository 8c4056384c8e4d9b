//! A power sequence watched on the status page in a real browser (headless
//! chromium through chromium-driver, `web_support/timeline.py`): the
//! domain's timeline fills in as the sequence runs, with no reload. The rig
//! (collector, five agents, the fake Kubernetes API, the simulated UPS) is
//! `power_support`'s.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod power_support;
mod web_support;

use power_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_sequence_as_it_happens() {
    nodewarden_tests::setup::require(
        "browser",
        &[
            "/usr/bin/chromium",
            "/usr/bin/chromedriver",
            "/usr/bin/python3",
        ],
    );
    let rig = Rig::start(Setup::default()).await;
    let base = format!("http://127.0.0.1:{}", rig.metrics_port);
    let mut script = web_support::Script::start("timeline.py", &[&base, "main"]);
    if script.next_line() == "READY" {
        rig.ups("rack").mains(false);
        script.say("PULLED");
    }
    let (status, stderr, said) = script.finish();
    assert!(
        status.success(),
        "browser checks failed: {said:?}\n{stderr}\n{}",
        rig.logs()
    );
    let entries: usize = said
        .iter()
        .find_map(|l| l.strip_prefix("TIMELINE "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{said:?}"));
    // Started, cordoned and drained, the workers, the servers, the UPS.
    assert!(entries >= 5, "{said:?}");
    assert_eq!(said.iter().filter(|l| *l == "OK").count(), 1, "{said:?}");
    rig.wait_phase("main", "awaiting_return", SEQUENCE).await;
}

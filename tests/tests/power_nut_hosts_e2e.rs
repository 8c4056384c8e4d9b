//! Hosts outside the cluster that follow the UPS through the collector's NUT
//! server (a NAS's upsmon) are hosts of the power sequence: Debian's real
//! upsmon, as a secondary, is in `plan`, is only reported in a drill, and in
//! an outage sees FSD after the servers are down and runs its SHUTDOWNCMD;
//! its logout is what the UPS cycle waits for. The rig is in `power_support`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use nodewarden_tests::{Upsmon, eventually, free_port};

mod power_support;

use power_support::*;

const HOST: &str = "nut:127.0.0.1";

/// `[nut_server]` on `port` with the secondary user upsmon logs in as.
fn nut_server(port: u16) -> &'static str {
    let toml = format!(
        "\n[nut_server]\nlisten = \"127.0.0.1:{port}\"\n\
         [[nut_server.user]]\nname = \"monuser\"\npassword = \"secret\"\nupsmon = \"secondary\"\n"
    );
    // The rig takes 'static tables; one small string per test process.
    Box::leak(toml.into_boxed_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsmon_is_told_after_the_servers_and_the_ups_cycles_after_its_logout() {
    nodewarden_tests::setup::require("nutclients", &["/lib/nut/upsmon"]);
    let port = free_port();
    let rig = Rig::start(Setup {
        domains: nut_server(port),
        ..Setup::default()
    })
    .await;
    let upsmon = Upsmon::secondary(&rig.dir().join("upsmon"), &format!("rack@127.0.0.1:{port}"));
    eventually(
        Duration::from_secs(20),
        "upsmon logged in, a node of the domain",
        || async {
            rig.domain("main")["nodes"]
                .as_array()?
                .iter()
                .any(|n| n["name"] == HOST && n["connected"] == true)
                .then_some(())
        },
    )
    .await;

    // The plan puts it among the external hosts, after the servers.
    let plan = rig.collector.cli(&["plan"]);
    let plan = String::from_utf8_lossy(&plan.stdout);
    let external = plan.find(HOST).unwrap_or_else(|| panic!("{plan}"));
    assert!(plan[..external].contains("servers"), "{plan}");

    // A drill reports what FSD would do and raises none.
    let drill = rig.collector.cli(&["drill"]);
    let drill_out = String::from_utf8_lossy(&drill.stdout).to_string();
    assert!(drill.status.success(), "{drill_out}");
    assert!(
        drill_out.contains("would raise FSD") && drill_out.contains("monuser"),
        "{drill_out}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        upsmon.shutdown_at_ns().is_none(),
        "a drill made upsmon shut its host down"
    );

    rig.ups("rack").mains(false);
    rig.wait_phase("main", "awaiting_return", SEQUENCE).await;
    wait_hook(&rig, "s2").await;
    let fsd_seen = upsmon
        .shutdown_at_ns()
        .unwrap_or_else(|| panic!("upsmon never ran its SHUTDOWNCMD\n{}", rig.logs()));
    let ups_told = rig.ups("rack").first_shutdown_ns().unwrap();
    assert!(
        rig.hook_at("s3") < fsd_seen,
        "the NUT client was told before the servers went down"
    );
    assert!(
        fsd_seen < ups_told,
        "the UPS was told to cycle before the NUT client shut down"
    );
    assert!(ups_told < rig.hook_at("s1"));
    let domain = rig.domain("main");
    let host = domain["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == HOST)
        .cloned()
        .unwrap();
    assert_eq!(
        host["power"], "gone",
        "it logged out, not timed out: {host}"
    );
    let timeline = rig.timeline("main");
    assert!(
        timeline
            .iter()
            .any(|t| t.contains(HOST) && t.contains("FSD raised")),
        "{timeline:#?}"
    );
}

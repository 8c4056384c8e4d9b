//! A UPS end to end: simulated Megatec unit on a real pty, the real agent
//! reading it, the real collector recording state and events.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::{Duration, Instant};

use nodewarden_agent::ups::sim::SimUps;
use nodewarden_agent::ups::sim::megatec::{MegatecDialect, MegatecResponder};
use nodewarden_proto::v1::{EventsRequest, ListUpsRequest};
use nodewarden_tests::{Collector, admin, eventually, free_port};

async fn ups_status(c: &Collector) -> Option<Vec<String>> {
    let mut a = admin(&c.socket()).await.ok()?;
    let list = a
        .list_ups(ListUpsRequest {
            name: String::new(),
        })
        .await
        .ok()?
        .into_inner();
    let s = list.ups.first()?.status.clone()?;
    Some(if s.communication_ok {
        s.status
    } else {
        vec!["COMM-LOST".into()]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mains_loss_reaches_the_collector_within_a_poll_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ups0");
    let sim = SimUps::spawn(MegatecResponder::new(MegatecDialect::default()), &link).unwrap();
    let collector = Collector::start(dir.path(), free_port(), free_port()).await;
    let _agent = nodewarden_tests::start_ups_agent(dir.path(), &collector, &link, "5s");

    eventually(
        Duration::from_secs(20),
        "UPS on line at the collector",
        || async {
            ups_status(&collector)
                .await
                .filter(|s| s.iter().any(|t| t == "OL"))
        },
    )
    .await;

    // Pull the plug: pushed at once, not with the next 5 s sample.
    sim.set(|s| s.mains = false);
    let cut = Instant::now();
    eventually(
        Duration::from_secs(5),
        "UPS on battery at the collector",
        || async {
            ups_status(&collector)
                .await
                .filter(|s| s.iter().any(|t| t == "OB"))
        },
    )
    .await;
    let latency = cut.elapsed();
    assert!(
        latency < Duration::from_millis(1200 + 300),
        "took {latency:?} with a 1 s poll"
    );

    // Cable pulled: communication lost is reported, then recovery.
    sim.set(|s| s.silent = true);
    eventually(Duration::from_secs(10), "communication lost", || async {
        ups_status(&collector).await.filter(|s| s == &["COMM-LOST"])
    })
    .await;
    sim.set(|s| {
        s.silent = false;
        s.mains = true;
    });
    eventually(
        Duration::from_secs(20),
        "communication restored, on line",
        || async {
            ups_status(&collector)
                .await
                .filter(|s| s.iter().any(|t| t == "OL"))
        },
    )
    .await;

    let mut a = admin(&collector.socket()).await.unwrap();
    let events = a
        .events(EventsRequest {
            since_ms: 0,
            node: "rack".into(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<&str> = events.events.iter().map(|e| e.kind.as_str()).collect();
    for kind in ["ups_on_battery", "ups_comm_lost", "ups_comm_restored"] {
        assert!(kinds.contains(&kind), "missing {kind} in {kinds:?}");
    }
}

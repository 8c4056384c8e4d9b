//! The Power service on a real Unix socket, over an orchestrator with
//! in-memory ports, asked the way the CLI asks.

use nodewarden_common::clock::now_ms;

use super::*;
use crate::power::ports::LivePort;
use crate::power::testing::{Started, cluster, started};

/// `nodewarden power`, `plan` and `drill` through the Power service on a real
/// Unix socket, as the CLI runs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_power_plan_and_drill_over_the_admin_socket() {
    use crate::cli::{QueryCommand, View, connect_channel, power};
    use nodewarden_proto::v1::power_client::PowerClient;
    use nodewarden_proto::v1::power_server::PowerServer;

    let dir = tempfile::tempdir().unwrap();
    let Started {
        live,
        handle: h,
        stop: _stop,
        ..
    } = started(cluster()).await;
    let socket = dir.path().join("admin.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    // The same caller policy as the collector's admin socket: this test runs
    // as the socket's own user, who may operate.
    let policy = crate::server::auth::Policy::new("nodewarden-admin");
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(tonic::service::InterceptorLayer::new(move |r| {
                policy.stamp(r)
            }))
            .add_service(PowerServer::new(PowerService::new(h.clone(), true)))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
    );
    let client = PowerClient::new(connect_channel(&socket).await.unwrap());
    let view = View {
        json: false,
        style: crate::cli::style::Style { color: false },
        width: 100,
        now_ms: now_ms(),
    };
    let run = |cmd: QueryCommand, json: bool| {
        let mut client = client.clone();
        async move {
            let mut out = Vec::new();
            power::execute(&mut client, &cmd, &View { json, ..view }, &mut out)
                .await
                .unwrap();
            String::from_utf8(out).unwrap()
        }
    };

    let text = run(QueryCommand::Power { action: None }, false).await;
    assert!(text.contains("domain main — UPS riello on s1"), "{text}");
    assert!(text.contains("phase:  on_mains"), "{text}");
    assert!(text.contains("on mains, charge 90%, runtime 20m"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&run(QueryCommand::Power { action: None }, true).await).unwrap();
    assert_eq!(json["domains"][0]["phase"], "on_mains");
    assert_eq!(json["domains"][0]["nodes"].as_array().unwrap().len(), 5);

    let text = run(QueryCommand::Plan, false).await;
    let steps: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(
        steps,
        [
            "  1. cordon s1, s2, s3, w1, w2",
            "  2. drain them (about 3s)",
            "  3. power off workers: w1, w2 (wait at most 2s)",
            "  4. power off servers: s2, s3 (wait at most 2s)",
            "  5. tell s1 to cycle UPS riello (shutdown with return)",
            "  6. power off UPS host and collector: s1 (wait at most 2s)",
        ],
        "{text}"
    );
    assert!(
        text.contains("default/web-w1 (grace 0s)  BLOCKED by PDB web-pdb"),
        "{text}"
    );
    assert!(
        text.contains("warning: default/web-w1 on w1 is blocked"),
        "{text}"
    );

    let text = run(
        QueryCommand::Drill {
            cordon: false,
            simulated_ups: false,
            domain: None,
        },
        false,
    )
    .await;
    assert!(text.contains("drill complete"), "{text}");
    assert!(
        text.contains("[main] drill: asking to report poweroff of workers: w1, w2"),
        "{text}"
    );
    assert!(live.node_infos().iter().all(|n| n.online));
    let text = run(
        QueryCommand::Drill {
            cordon: false,
            simulated_ups: false,
            domain: Some("nope".into()),
        },
        true,
    )
    .await;
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["done"], true);
    assert!(text.contains("no such power domain"), "{text}");
}

//! End to end: a real tonic Admin server on a Unix socket in a temporary
//! directory, the CLI's own `connect` and `execute` against it.

use std::path::{Path, PathBuf};

use nodewarden_proto::v1::admin_server::{Admin, AdminServer};
use nodewarden_proto::v1::{
    Event, EventsRequest, EventsResponse, GetNodeRequest, HistoryPoint, HistoryRequest,
    HistoryResponse, ListNodesRequest, ListNodesResponse, ListUpsRequest, ListUpsResponse,
    NodeInfo, Severity, UpsInfo,
};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use super::*;
use crate::cli::nodes::tests::{NOW_MS, cluster};
use crate::cli::ups::tests::on_battery;

/// A small but honest Admin: answers from fixed data the way the collector
/// is specified to (NotFound for unknown nodes, available_metrics for
/// unknown metrics, filters applied), and records the history requests.
struct FixedAdmin {
    nodes: Vec<NodeInfo>,
    ups: Vec<UpsInfo>,
    events: Vec<Event>,
    history_requests: std::sync::Mutex<Vec<HistoryRequest>>,
}

#[tonic::async_trait]
impl Admin for FixedAdmin {
    async fn list_nodes(
        &self,
        _: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        Ok(Response::new(ListNodesResponse {
            nodes: self.nodes.clone(),
        }))
    }

    async fn get_node(
        &self,
        request: Request<GetNodeRequest>,
    ) -> Result<Response<NodeInfo>, Status> {
        let name = request.into_inner().name;
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .cloned()
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no node named {name}")))
    }

    async fn history(
        &self,
        request: Request<HistoryRequest>,
    ) -> Result<Response<HistoryResponse>, Status> {
        let r = request.into_inner();
        if let Ok(mut seen) = self.history_requests.lock() {
            seen.push(r.clone());
        }
        let mut response = HistoryResponse {
            node: r.node.clone(),
            metric: r.metric.clone(),
            ..Default::default()
        };
        if r.metric != "cpu_temp" {
            response.available_metrics =
                vec!["cpu_temp".into(), "cpu_usage".into(), "mem_used".into()];
            return Ok(Response::new(response));
        }
        response.unit = "celsius".into();
        response.resolution_ms = 0;
        // One sample a second over the window, warming up from 60 to ~75 °C.
        let until = if r.until_ms == 0 { NOW_MS } else { r.until_ms };
        let mut ts = r.since_ms;
        let mut i = 0.0;
        while ts <= until {
            let v = 60.0 + i * 0.025;
            response.points.push(HistoryPoint {
                timestamp_ms: ts,
                value: v,
                min: v,
                max: v,
            });
            ts += 1000;
            i += 1.0;
        }
        Ok(Response::new(response))
    }

    async fn events(
        &self,
        request: Request<EventsRequest>,
    ) -> Result<Response<EventsResponse>, Status> {
        let r = request.into_inner();
        let events = self
            .events
            .iter()
            .filter(|e| e.timestamp_ms >= r.since_ms && (r.node.is_empty() || e.subject == r.node))
            .cloned()
            .collect();
        Ok(Response::new(EventsResponse { events }))
    }

    async fn list_ups(
        &self,
        request: Request<ListUpsRequest>,
    ) -> Result<Response<ListUpsResponse>, Status> {
        let name = request.into_inner().name;
        let ups = self
            .ups
            .iter()
            .filter(|u| name.is_empty() || u.status.as_ref().is_some_and(|s| s.ups_name == name))
            .cloned()
            .collect();
        Ok(Response::new(ListUpsResponse { ups }))
    }

    async fn run_ups_command(
        &self,
        request: Request<nodewarden_proto::v1::RunUpsCommandRequest>,
    ) -> Result<Response<nodewarden_proto::v1::RunUpsCommandResponse>, Status> {
        // The real service's checks are tested end to end; this one only
        // answers for the CLI's rendering.
        let r = request.into_inner();
        Ok(Response::new(nodewarden_proto::v1::RunUpsCommandResponse {
            ok: r.command != "beeper.toggle",
            message: format!("{} {}", r.ups, r.command),
            node: "nuc".into(),
        }))
    }
}

fn event(minutes_ago: i64, severity: Severity, subject: &str, message: &str) -> Event {
    Event {
        timestamp_ms: NOW_MS - minutes_ago * 60_000,
        subject: subject.into(),
        kind: "test".into(),
        severity: severity as i32,
        message: message.into(),
    }
}

/// Serves a FixedAdmin on `dir/admin.sock`; the server lives as long as the
/// runtime.
async fn serve(dir: &Path) -> (PathBuf, std::sync::Arc<FixedAdmin>) {
    let path = dir.join("admin.sock");
    let listener = UnixListener::bind(&path).expect("bind the test socket");
    let admin = std::sync::Arc::new(FixedAdmin {
        nodes: cluster(),
        ups: vec![on_battery()],
        events: vec![
            event(
                60 * 30,
                Severity::Info,
                "pi5",
                "too old for the default window",
            ),
            event(90, Severity::Critical, "pi4", "under-voltage detected"),
            event(30, Severity::Info, "nuc", "node online"),
        ],
        history_requests: std::sync::Mutex::new(Vec::new()),
    });
    let service = AdminServer::from_arc(admin.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .serve_with_incoming(service, UnixListenerStream::new(listener)),
    );
    (path, admin)
}

fn plain_view() -> View {
    View {
        json: false,
        style: Style::PLAIN,
        width: 100,
        now_ms: NOW_MS,
    }
}

async fn query(socket: &Path, cmd: QueryCommand, view: View) -> Result<String, CliError> {
    let mut client = connect(socket).await?;
    let mut out = Vec::new();
    execute(&mut client, &cmd, &view, &mut out).await?;
    Ok(String::from_utf8(out).expect("the CLI writes UTF-8"))
}

/// `nodewarden ups`: every UPS.
fn all_ups() -> QueryCommand {
    QueryCommand::Ups {
        name: None,
        action: None,
    }
}

#[tokio::test]
async fn every_query_answers_through_a_real_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (socket, admin) = serve(dir.path()).await;
    let view = plain_view();

    let nodes = query(&socket, QueryCommand::Nodes { action: None }, view)
        .await
        .expect("nodes");
    assert_eq!(nodes.lines().count(), 5, "{nodes}");
    assert!(
        nodes
            .lines()
            .any(|l| l.starts_with("pi4") && l.contains("UV THR")),
        "{nodes}"
    );

    let node = query(&socket, QueryCommand::Node { name: "nuc".into() }, view)
        .await
        .expect("node");
    assert!(node.contains("coretemp Package id 0"), "{node}");
    let missing = query(&socket, QueryCommand::Node { name: "pi9".into() }, view).await;
    let message = missing.expect_err("unknown node").to_string();
    assert_eq!(
        message,
        "no node named `pi9`; known nodes: banana, nuc, pi4, pi5"
    );

    let history = QueryCommand::History {
        node: "pi4".into(),
        metric: "cpu_temp".into(),
        since: Duration::from_secs(600),
        until: None,
        points: None,
        table_rows: 5,
    };
    let out = query(&socket, history, view).await.expect("history");
    assert!(
        out.starts_with(
            "pi4 cpu_temp, 2026-11-23 10:23:20Z to 10:33:20Z (10m00s; raw samples; 601 points)"
        ),
        "{out}"
    );
    assert!(out.contains("75.0 °C ┤"), "{out}");
    assert!(out.contains("601 points summarised into 5 rows"), "{out}");
    let asked = admin
        .history_requests
        .lock()
        .map(|r| r[0].clone())
        .expect("recorded");
    assert_eq!(asked.since_ms, NOW_MS - 600_000);
    assert_eq!(
        asked.until_ms, 0,
        "no --until means now, as the server sees it"
    );
    assert_eq!(
        asked.max_points,
        (100 - 14) * 2,
        "two points per chart column"
    );

    let earlier = QueryCommand::History {
        node: "pi4".into(),
        metric: "cpu_temp".into(),
        since: Duration::from_secs(2 * 3600),
        until: Some(Duration::from_secs(3600)),
        points: Some(50),
        table_rows: 5,
    };
    let out = query(&socket, earlier, view)
        .await
        .expect("history --until");
    assert!(
        out.starts_with("pi4 cpu_temp, 2026-11-23 08:33:20Z to 09:33:20Z (1h00m;"),
        "{out}"
    );
    let asked = admin
        .history_requests
        .lock()
        .map(|r| r[1].clone())
        .expect("recorded");
    assert_eq!(
        (asked.since_ms, asked.until_ms),
        (NOW_MS - 7_200_000, NOW_MS - 3_600_000)
    );
    assert_eq!(asked.max_points, 50);
    let backwards = QueryCommand::History {
        node: "pi4".into(),
        metric: "cpu_temp".into(),
        since: Duration::from_secs(60),
        until: Some(Duration::from_secs(120)),
        points: None,
        table_rows: 5,
    };
    let message = query(&socket, backwards, view)
        .await
        .expect_err("until before since")
        .to_string();
    assert!(message.contains("--until must be more recent"), "{message}");

    let unknown = QueryCommand::History {
        node: "pi4".into(),
        metric: "cpu_tmp".into(),
        since: Duration::from_secs(600),
        until: None,
        points: Some(50),
        table_rows: 5,
    };
    let message = query(&socket, unknown, view)
        .await
        .expect_err("unknown metric")
        .to_string();
    assert!(
        message.contains("no metric `cpu_tmp`") && message.contains("  mem_used"),
        "{message}"
    );

    let events = QueryCommand::Events {
        since: Duration::from_secs(86_400),
        node: None,
    };
    let out = query(&socket, events, view).await.expect("events");
    assert_eq!(
        out.lines().count(),
        3,
        "the 30 h old event is outside 24 h: {out}"
    );
    assert!(
        out.contains("critical  pi4      under-voltage detected"),
        "{out}"
    );
    let only_nuc = QueryCommand::Events {
        since: Duration::from_secs(86_400),
        node: Some("nuc".into()),
    };
    let out = query(&socket, only_nuc, view).await.expect("events --node");
    assert_eq!(out.lines().count(), 2, "{out}");

    let out = query(&socket, all_ups(), view).await.expect("ups");
    assert!(out.contains("on battery, discharging"), "{out}");
    let test = QueryCommand::Ups {
        name: None,
        action: Some(UpsAction::Test {
            name: "riello".into(),
            deep: true,
            stop: false,
        }),
    };
    let out = query(&socket, test, view).await.expect("ups test");
    assert_eq!(
        out.trim(),
        "test.battery.start.deep on riello (agent nuc): riello test.battery.start.deep"
    );
    let beeper = QueryCommand::Ups {
        name: None,
        action: Some(UpsAction::Beeper {
            name: "riello".into(),
        }),
    };
    let refused = query(&socket, beeper, view).await;
    assert!(
        matches!(&refused, Err(CliError::Refused(m)) if m.starts_with("beeper.toggle on riello")),
        "{refused:?}"
    );
    let out = query(
        &socket,
        QueryCommand::Ups {
            name: Some("riello".into()),
            action: None,
        },
        view,
    )
    .await
    .expect("ups riello");
    assert!(out.contains("riello (read by nuc)"), "{out}");
    let message = query(
        &socket,
        QueryCommand::Ups {
            name: Some("apc".into()),
            action: None,
        },
        view,
    )
    .await
    .expect_err("unknown UPS")
    .to_string();
    assert_eq!(message, "no UPS named `apc`; known: riello");
}

#[tokio::test]
async fn json_is_parseable_and_stable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (socket, _) = serve(dir.path()).await;
    let view = View {
        json: true,
        ..plain_view()
    };
    let out = query(&socket, QueryCommand::Nodes { action: None }, view)
        .await
        .expect("nodes --json");
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["nodes"][2]["latest"]["cpu_temperature_celsius"], 82.3);
    assert_eq!(v["nodes"][0]["online"], false);

    let out = query(&socket, all_ups(), view).await.expect("ups --json");
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["ups"][0]["status"]["battery_runtime_seconds"], 720.0);
    assert_eq!(v["ups"][0]["status"]["battery_runtime_estimated"], true);

    let events = QueryCommand::Events {
        since: Duration::from_secs(86_400),
        node: Some("pi4".into()),
    };
    let out = query(&socket, events, view).await.expect("events --json");
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["events"][0]["severity"], "critical");
    assert_eq!(v["events"][0]["timestamp_ms"], NOW_MS - 90 * 60_000);
}

#[tokio::test]
async fn connection_failures_say_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.sock");
    let err = connect(&missing).await.expect_err("no socket");
    assert!(matches!(err, CliError::SocketMissing { .. }), "{err:?}");
    assert!(
        err.to_string().contains("systemctl status nodewarden"),
        "{err}"
    );

    // A collector that died leaves its socket file behind.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    let err = connect(&stale).await.expect_err("stale socket");
    assert!(matches!(err, CliError::NotListening { .. }), "{err:?}");
}

#[test]
fn colour_only_where_it_helps() {
    assert!(
        use_color(ColorChoice::Auto, false, true),
        "a terminal gets colour"
    );
    assert!(
        !use_color(ColorChoice::Auto, false, false),
        "a pipe does not"
    );
    assert!(
        !use_color(ColorChoice::Auto, true, true),
        "NO_COLOR is honoured"
    );
    assert!(
        use_color(ColorChoice::Always, true, false),
        "--color always wins"
    );
    assert!(!use_color(ColorChoice::Never, false, true));
    assert_eq!(terminal_width(Some("132")), 132);
    assert_eq!(terminal_width(Some("7")), 80);
    assert_eq!(terminal_width(None), 80);
}

#[test]
fn permission_errors_point_at_the_group() {
    // Root (which runs these tests) bypasses socket permissions, so the OS
    // error is built here; the classification is what is under test.
    let os = io::Error::from_raw_os_error(libc::EACCES);
    let err = connect_error(Path::new("/run/nodewarden/admin.sock"), &os);
    assert!(matches!(err, CliError::PermissionDenied { .. }));
    assert!(err.to_string().contains("group nodewarden"), "{err}");
}

#[test]
fn command_line_parses_as_documented() {
    use clap::Parser;

    // The shape main.rs is expected to have: `serve` beside the queries.
    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        opts: QueryOptions,
        #[command(subcommand)]
        cmd: Command,
    }
    #[derive(Debug, PartialEq, clap::Subcommand)]
    enum Command {
        Serve,
        #[command(flatten)]
        Query(QueryCommand),
    }
    let cli = Cli::try_parse_from([
        "nodewarden",
        "history",
        "pi4",
        "cpu_temp",
        "--since",
        "10m",
        "--json",
        "--color",
        "never",
    ])
    .expect("parses");
    assert_eq!(
        cli.cmd,
        Command::Query(QueryCommand::History {
            node: "pi4".into(),
            metric: "cpu_temp".into(),
            since: Duration::from_secs(600),
            until: None,
            points: None,
            table_rows: 12,
        })
    );
    assert!(cli.opts.json);
    assert_eq!(cli.opts.color, ColorChoice::Never);
    let cli = Cli::try_parse_from(["nodewarden", "events"]).expect("defaults");
    assert_eq!(
        cli.cmd,
        Command::Query(QueryCommand::Events {
            since: Duration::from_secs(86_400),
            node: None
        })
    );
    let cli = Cli::try_parse_from(["nodewarden", "serve"]).expect("serve");
    assert_eq!(cli.cmd, Command::Serve);
    let cli = Cli::try_parse_from(["nodewarden", "ups", "riello", "--json"]).expect("ups NAME");
    assert_eq!(
        cli.cmd,
        Command::Query(QueryCommand::Ups {
            name: Some("riello".into()),
            action: None,
        })
    );
    assert!(
        cli.opts.json,
        "options are global: they may follow the subcommand"
    );
    let err =
        Cli::try_parse_from(["nodewarden", "events", "--since", "soon"]).expect_err("bad duration");
    assert!(err.to_string().contains("is not a duration"), "{err}");
    let cli =
        Cli::try_parse_from(["nodewarden", "--socket", "/tmp/a.sock", "nodes"]).expect("socket");
    assert_eq!(cli.opts.socket_path(), PathBuf::from("/tmp/a.sock"));
}

/// Set in the child process of `run_colours_a_terminal_and_not_a_pipe`.
const PROBE_SOCKET_ENV: &str = "NODEWARDEN_TEST_PROBE_SOCKET";
const PROBE_TEST: &str = "cli::tests::run_colours_a_terminal_and_not_a_pipe";

/// Runs this test binary again as the child, with `run()` writing to a real
/// stdout: a pseudo-terminal (util-linux `script`, in Debian's essential
/// bsdutils) or a pipe.
fn run_probe(socket: &Path, under_pty: bool, env: &[(&str, &str)]) -> String {
    let exe = std::env::current_exe().expect("test binary path");
    let args = [PROBE_TEST, "--exact", "--nocapture", "--test-threads=1"];
    let mut command = if under_pty {
        let line = format!("'{}' {}", exe.display(), args.join(" "));
        let mut c = std::process::Command::new("script");
        c.args(["-qec", &line, "/dev/null"]);
        c
    } else {
        let mut c = std::process::Command::new(&exe);
        c.args(args);
        c
    };
    command
        .env(PROBE_SOCKET_ENV, socket)
        .env_remove("NO_COLOR")
        .env_remove("COLUMNS")
        .stdin(std::process::Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run the probe");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "probe failed: {text}");
    assert!(text.contains("probe exit: success"), "{text}");
    text
}

#[tokio::test]
async fn run_colours_a_terminal_and_not_a_pipe() {
    if let Some(socket) = std::env::var_os(PROBE_SOCKET_ENV) {
        let opts = QueryOptions {
            socket: Some(socket.into()),
            ..QueryOptions::default()
        };
        let code = run(QueryCommand::Nodes { action: None }, opts).await;
        let verdict = if code == ExitCode::SUCCESS {
            "success"
        } else {
            "failure"
        };
        println!("probe exit: {verdict}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (socket, _) = serve(dir.path()).await;
    let probe = |pty: bool, env: &'static [(&'static str, &'static str)]| {
        let socket = socket.clone();
        tokio::task::spawn_blocking(move || run_probe(&socket, pty, env))
    };

    let terminal = probe(true, &[]).await.expect("pty probe");
    assert!(
        terminal.contains("\x1b[31mUV THR\x1b[0m"),
        "a terminal gets colour: {terminal:?}"
    );
    assert!(
        !terminal.contains("MODEL"),
        "80 columns without $COLUMNS: the model column goes: {terminal}"
    );

    let pipe = probe(false, &[]).await.expect("pipe probe");
    assert!(pipe.contains("UV THR"), "{pipe}");
    assert!(!pipe.contains('\x1b'), "a pipe gets plain text: {pipe:?}");

    let no_color = probe(true, &[("NO_COLOR", "1"), ("COLUMNS", "200")])
        .await
        .expect("NO_COLOR probe");
    assert!(
        !no_color.contains('\x1b'),
        "NO_COLOR honoured: {no_color:?}"
    );
    assert!(
        no_color.contains("MODEL"),
        "200 columns fit the model: {no_color}"
    );
}

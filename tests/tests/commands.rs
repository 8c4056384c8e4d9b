//! The command channel end to end: the collector's hub (in-process, the real
//! server on a real socket) sends commands to real agent processes; the
//! agents run a poweroff hook script and talk to a simulated Megatec UPS on a
//! real pty. Standalone mode: the collector goes away during a power cut.
//! The link is mutual TLS: the test dir gets a PKI (`nodewarden init`) and
//! every agent joins with its token before it first starts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nodewarden::config::CollectorConfig;
use nodewarden::daemon::{Bound, ServeError, serve};
use nodewarden::power::config::PowerConfig;
use nodewarden::state::hub::Hub;
use nodewarden_agent::ups::sim::megatec::{MegatecDialect, MegatecResponder};
use nodewarden_agent::ups::sim::{SimEffect, SimHandle, SimUps};
use nodewarden_proto::v1::{
    Command, CommandState, PowerOff, ShutdownReturn, UpsCommand, command, ups_command,
};
use nodewarden_tests::{
    Collector, Proc, agent_config, agent_state_dir, bin, eventually, free_port, join,
};
use tokio::sync::watch;

/// The real collector server, in this process, so the test can call its hub.
struct InProc {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
    bound: Bound,
}

impl InProc {
    async fn start(dir: &Path, port: u16) -> InProc {
        // The CA, the collector's certificate and a join token in
        // `dir/data/pki`, where `serve` looks for them (kept across restarts).
        Collector::init(dir, port, free_port());
        let config = CollectorConfig {
            listen: ([127, 0, 0, 1], port).into(),
            admin_socket: dir.join("admin.sock"),
            metrics_listen: String::new(),
            data_dir: dir.join("data"),
            commit_interval: Duration::from_millis(100),
            sync_interval: Duration::from_millis(100),
            offline_after: Duration::from_secs(5),
            // These tests are the orchestrator: they send every command
            // through the hub themselves. The collector's own power sequence
            // would answer the simulated power cut with commands of its own.
            power: PowerConfig {
                enabled: false,
                ..PowerConfig::default()
            },
            ..CollectorConfig::default()
        };
        // After a stop, streams still winding down in this process hold the
        // store for a moment (a real collector exits instead): retry.
        let started = std::time::Instant::now();
        loop {
            let (stop, stop_rx) = watch::channel(false);
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            let mut task = tokio::spawn(serve(config.clone(), stop_rx, Some(ready_tx)));
            match ready_rx.await {
                Ok(bound) => return InProc { stop, task, bound },
                Err(_) => {
                    let err = (&mut task).await.unwrap().unwrap_err();
                    assert!(
                        matches!(err, ServeError::Store { .. })
                            && started.elapsed() < Duration::from_secs(10),
                        "collector did not start: {err}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    fn hub(&self) -> &Arc<Hub> {
        &self.bound.hub
    }

    fn url(&self) -> String {
        format!("https://{}", self.bound.link)
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap().unwrap();
    }
}

/// A poweroff hook that records each run: "id|reason|agent pid".
fn hook(dir: &Path, extra: &str) -> PathBuf {
    let script = dir.join("poweroff-hook.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$NODEWARDEN_COMMAND_ID|$NODEWARDEN_REASON|$NODEWARDEN_AGENT_PID\" >> {}\n{extra}\n",
            dir.join("hook-runs").display()
        ),
    )
    .unwrap();
    script
}

fn hook_runs(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("hook-runs"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Writes agent.toml for `name` (hook as poweroff, command state in
/// `dir`/run, identity in the harness's state dir; each sample sent as
/// taken, since this collector calls 5 s of silence offline) plus `sections`, joins
/// the collector unless `name` has joined already, and starts the agent.
fn agent(dir: &Path, name: &str, collector: &str, sections: &str) -> Proc {
    let config = agent_config(dir, name);
    std::fs::write(
        &config,
        format!(
            "collector = \"{collector}\"\nnode_name = \"{name}\"\nsample_interval = \"1s\"\nsend_interval = \"1s\"\nstate_dir = \"{}\"\n\n\
             [commands]\npoweroff = [\"/bin/sh\", \"{}\"]\nstate_dir = \"{}\"\n\n{sections}",
            agent_state_dir(dir, name).display(),
            dir.join("poweroff-hook.sh").display(),
            dir.join("run").display()
        ),
    )
    .unwrap();
    if !agent_state_dir(dir, name).join("node.pem").exists() {
        join(dir, name, collector);
    }
    Proc::spawn(
        std::process::Command::new(bin("nodewarden-agent"))
            .arg("--config")
            .arg(&config),
        dir.join(format!("agent-{name}.log")),
    )
}

async fn connected(hub: &Hub, node: &str) {
    eventually(
        Duration::from_secs(20),
        &format!("{node} connected"),
        || async { hub.is_connected(node).then_some(()) },
    )
    .await;
}

fn poweroff(id: u64, dry_run: bool) -> Command {
    Command {
        command_id: id,
        dry_run,
        action: Some(command::Action::PowerOff(PowerOff {
            reason: "UPS battery low".into(),
        })),
    }
}

fn shutdown_return(id: u64, dry_run: bool) -> Command {
    Command {
        command_id: id,
        dry_run,
        action: Some(command::Action::Ups(UpsCommand {
            ups_name: String::new(),
            action: Some(ups_command::Action::ShutdownReturn(ShutdownReturn {
                off_delay_seconds: 30,
                restore_delay_seconds: 600,
            })),
        })),
    }
}

const WAIT: Duration = Duration::from_secs(15);

fn state(r: &nodewarden_proto::v1::CommandResult) -> CommandState {
    CommandState::try_from(r.state).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poweroff_is_confirmed_then_runs_once_across_resends_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    hook(d, "");
    let port = free_port();
    let collector = InProc::start(d, port).await;
    let mut pi = agent(d, "pi-1", &collector.url(), "");
    connected(collector.hub(), "pi-1").await;
    let hub = collector.hub().clone();
    let id = hub.new_command_id();

    let mut pending = hub.start_command("pi-1", poweroff(id, false)).unwrap();
    let confirm = pending.confirmed(WAIT).await.unwrap();
    assert_eq!(
        state(&confirm),
        CommandState::Accepted,
        "{}",
        confirm.message
    );
    assert!(
        confirm.message.contains("poweroff-hook.sh"),
        "{}",
        confirm.message
    );
    let done = pending.finished(WAIT).await.unwrap();
    assert_eq!(state(&done), CommandState::Done, "{}", done.message);
    let pid = pi.child.id();
    assert_eq!(hook_runs(d), [format!("{id}|UPS battery low|{pid}")]);

    // The collector retries the same id, then a new decision sends another.
    let again = hub
        .send_command("pi-1", poweroff(id, false), WAIT)
        .await
        .unwrap();
    assert_eq!(state(&again), CommandState::Done);
    assert!(
        again.message.contains("not running it again"),
        "{}",
        again.message
    );
    let other = hub
        .send_command("pi-1", poweroff(hub.new_command_id(), false), WAIT)
        .await
        .unwrap();
    assert!(
        other
            .message
            .contains(&format!("already issued by command {id}")),
        "{}",
        other.message
    );

    // A restarted collector resends its persisted id.
    drop(hub);
    collector.stop().await;
    let collector = InProc::start(d, port).await;
    connected(collector.hub(), "pi-1").await;
    let resent = collector
        .hub()
        .send_command("pi-1", poweroff(id, false), WAIT)
        .await
        .unwrap();
    assert_eq!(state(&resent), CommandState::Done);

    // A restarted agent remembers the id from its file in /run.
    pi.stop();
    let _pi = agent(d, "pi-1", &collector.url(), "");
    collector.hub().wait_disconnected("pi-1", WAIT).await;
    connected(collector.hub(), "pi-1").await;
    let after_restart = collector
        .hub()
        .send_command("pi-1", poweroff(id, false), WAIT)
        .await
        .unwrap();
    assert_eq!(state(&after_restart), CommandState::Done);
    assert!(
        after_restart
            .message
            .contains("before this agent restarted"),
        "{}",
        after_restart.message
    );

    assert_eq!(
        hook_runs(d).len(),
        1,
        "the hook ran again: {:?}",
        hook_runs(d)
    );
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_confirms_and_halts_is_seen_to_disconnect() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The hook does what systemd does to a halting node's agent.
    hook(d, "kill -TERM \"$NODEWARDEN_AGENT_PID\"");
    let collector = InProc::start(d, free_port()).await;
    let mut pi = agent(d, "pi-2", &collector.url(), "");
    connected(collector.hub(), "pi-2").await;
    let hub = collector.hub();

    let id = hub.new_command_id();
    let confirm = hub
        .send_command_confirmed("pi-2", poweroff(id, false), WAIT)
        .await
        .unwrap();
    assert_eq!(state(&confirm), CommandState::Accepted);
    assert!(
        hub.wait_disconnected("pi-2", WAIT).await,
        "pi-2 still connected"
    );
    // Its normal SIGTERM path: a clean exit.
    let status = pi.child.wait().unwrap();
    assert!(status.success(), "{status}; log:\n{}", pi.log_text());
    assert_eq!(hook_runs(d).len(), 1);
    // Nobody connected: a clear error, not a hang.
    let err = hub
        .send_command("pi-2", poweroff(hub.new_command_id(), false), WAIT)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "pi-2 is not connected");
    collector.stop().await;
}

fn megatec_sim(d: &Path) -> SimHandle {
    SimUps::spawn(
        MegatecResponder::new(MegatecDialect::default()),
        &d.join("ups0"),
    )
    .unwrap()
}

fn ups_section(d: &Path, standalone: &str) -> String {
    format!(
        "[[ups]]\nname = \"rack\"\nprotocol = \"megatec\"\nport = \"{}\"\npoll_interval = \"1s\"\n\n[standalone]\n{standalone}\n",
        d.join("ups0").display()
    )
}

fn sent_lines(sim: &SimHandle) -> Vec<String> {
    String::from_utf8_lossy(&sim.received())
        .split('\r')
        .map(String::from)
        .filter(|l| !l.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ups_shutdown_return_reaches_the_serial_line_and_a_dry_run_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    hook(d, "");
    let sim = megatec_sim(d);
    let collector = InProc::start(d, free_port()).await;
    let _host = agent(
        d,
        "ups-host",
        &collector.url(),
        &ups_section(d, "enabled = false"),
    );
    connected(collector.hub(), "ups-host").await;
    let hub = collector.hub();
    // The monitor has read the UPS at least once.
    eventually(WAIT, "the agent polling the UPS", || async {
        sent_lines(&sim).iter().any(|l| l == "Q1").then_some(())
    })
    .await;

    let dry = hub
        .send_command(
            "ups-host",
            shutdown_return(hub.new_command_id(), true),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(state(&dry), CommandState::Done, "{}", dry.message);
    assert!(
        dry.message.contains("would send S.5R0010\\r"),
        "{}",
        dry.message
    );
    let dry_off = hub
        .send_command("ups-host", poweroff(hub.new_command_id(), true), WAIT)
        .await
        .unwrap();
    assert!(
        dry_off.message.starts_with("dry run: would run: /bin/sh "),
        "{}",
        dry_off.message
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !sent_lines(&sim).iter().any(|l| l.starts_with('S')),
        "a dry run reached the UPS: {:?}",
        sent_lines(&sim)
    );
    assert!(sim.effects().is_empty());
    assert!(hook_runs(d).is_empty(), "a dry run ran the hook");

    let id = hub.new_command_id();
    let mut pending = hub
        .start_command("ups-host", shutdown_return(id, false))
        .unwrap();
    assert_eq!(
        state(&pending.confirmed(WAIT).await.unwrap()),
        CommandState::Accepted
    );
    let done = pending.finished(WAIT).await.unwrap();
    assert_eq!(state(&done), CommandState::Done, "{}", done.message);
    assert!(
        done.message.contains("shutdown.return accepted by the UPS"),
        "{}",
        done.message
    );
    assert_eq!(
        sent_lines(&sim)
            .iter()
            .filter(|l| l.starts_with('S'))
            .collect::<Vec<_>>(),
        ["S.5R0010"]
    );
    assert_eq!(
        sim.effects(),
        [SimEffect::Shutdown {
            off_delay_seconds: 30.0,
            restore_delay_seconds: Some(600.0)
        }]
    );
    // A resend of the same id gets the same answer, not a second command.
    let resent = hub
        .send_command("ups-host", shutdown_return(id, false), WAIT)
        .await
        .unwrap();
    assert_eq!(resent.message, done.message);
    assert_eq!(
        sent_lines(&sim)
            .iter()
            .filter(|l| l.starts_with('S'))
            .count(),
        1
    );
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ups_command_to_a_node_without_a_ups_fails_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    hook(d, "");
    let collector = InProc::start(d, free_port()).await;
    let _pi = agent(d, "pi-3", &collector.url(), "");
    connected(collector.hub(), "pi-3").await;
    let hub = collector.hub();
    let r = hub
        .send_command("pi-3", shutdown_return(hub.new_command_id(), false), WAIT)
        .await
        .unwrap();
    assert_eq!(state(&r), CommandState::Failed);
    assert!(r.message.contains("this node has no UPS"), "{}", r.message);
    let empty = hub
        .send_command(
            "pi-3",
            Command {
                command_id: hub.new_command_id(),
                dry_run: false,
                action: None,
            },
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(state(&empty), CommandState::Unsupported);
    collector.stop().await;
}

const STANDALONE: &str = "link_lost_for = \"3s\"\ngrace = \"10m\"\nmin_charge_percent = 30\noff_delay = \"30s\"\nrestore_delay = \"10m\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_cycles_the_ups_and_powers_off_once_when_the_collector_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    hook(d, "");
    let sim = megatec_sim(d);
    let collector = InProc::start(d, free_port()).await;
    let host = agent(d, "ups-host", &collector.url(), &ups_section(d, STANDALONE));
    connected(collector.hub(), "ups-host").await;

    collector.stop().await;
    sim.set(|s| {
        s.mains = false;
        s.charge_percent = 25.0;
    });
    eventually(
        Duration::from_secs(20),
        "the standalone poweroff",
        || async { (!hook_runs(d).is_empty()).then_some(()) },
    )
    .await;
    // The UPS was told before this node went down.
    assert_eq!(
        sent_lines(&sim)
            .iter()
            .filter(|l| l.starts_with('S'))
            .collect::<Vec<_>>(),
        ["S.5R0010"]
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs = hook_runs(d);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(
        runs[0].starts_with("0|standalone: battery charge"),
        "{}",
        runs[0]
    );
    assert!(
        host.log_text().contains("cycling the UPS"),
        "{}",
        host.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_stands_down_when_the_collector_returns_first() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    hook(d, "");
    let sim = megatec_sim(d);
    let port = free_port();
    let collector = InProc::start(d, port).await;
    let standalone = STANDALONE.replace("\"3s\"", "\"8s\"");
    let host = agent(
        d,
        "ups-host",
        &collector.url(),
        &ups_section(d, &standalone),
    );
    connected(collector.hub(), "ups-host").await;

    collector.stop().await;
    sim.set(|s| {
        s.mains = false;
        s.charge_percent = 25.0;
    });
    eventually(WAIT, "standalone mode watching", || async {
        host.log_text()
            .contains("standalone mode watching")
            .then_some(())
    })
    .await;
    let collector = InProc::start(d, port).await;
    connected(collector.hub(), "ups-host").await;
    // Well past link_lost_for: nothing happened.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(hook_runs(d).is_empty(), "powered off: {:?}", hook_runs(d));
    assert!(
        !sent_lines(&sim).iter().any(|l| l.starts_with('S')),
        "{:?}",
        sent_lines(&sim)
    );
    assert!(
        host.log_text().contains("stands down"),
        "{}",
        host.log_text()
    );
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_adds_nothing_once_the_collector_has_ordered_the_poweroff() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    hook(d, "");
    let sim = megatec_sim(d);
    let collector = InProc::start(d, free_port()).await;
    let host = agent(d, "ups-host", &collector.url(), &ups_section(d, STANDALONE));
    connected(collector.hub(), "ups-host").await;
    let hub = collector.hub().clone();
    let id = hub.new_command_id();
    let done = hub
        .send_command("ups-host", poweroff(id, false), WAIT)
        .await
        .unwrap();
    assert_eq!(state(&done), CommandState::Done, "{}", done.message);

    // The collector's node goes down before this one halts.
    drop(hub);
    collector.stop().await;
    sim.set(|s| {
        s.mains = false;
        s.charge_percent = 25.0;
    });
    eventually(
        Duration::from_secs(20),
        "standalone mode deciding",
        || async { host.log_text().contains("already under way").then_some(()) },
    )
    .await;
    assert_eq!(hook_runs(d).len(), 1, "{:?}", hook_runs(d));
    assert!(
        !sent_lines(&sim).iter().any(|l| l.starts_with('S')),
        "{:?}",
        sent_lines(&sim)
    );
}

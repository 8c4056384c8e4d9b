//! The agent's main loop: sample on a timer, hand samples to the link, carry
//! out commands, watch for standalone mode, run until SIGTERM or Ctrl-C.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nodewarden_proto::v1::{Capability, CommandResult, CommandState, Hello, UpsStatus};
use tokio::sync::{mpsc, watch};

use crate::command::poweroff::{PowerOff, STANDALONE_ID};
use crate::command::ups::UpsUnit;
use crate::command::{self, Executor, Reply};
use crate::config::AgentConfig;
use crate::link::{self, CommandLink, Outbox};
use crate::sensors::Sensors;
use crate::standalone::{Standalone, StandaloneConfig, UpsView, Verdict};
use crate::sysroot::SysRoot;
use crate::ups::{UpsCommandKind, UpsHandle};

use nodewarden_common::clock::now_ms;

/// The Hello this agent sends on every connect.
pub fn hello(config: &AgentConfig, sensors: &Sensors, has_ups: bool) -> Hello {
    let facts = sensors.facts();
    let node_name = if config.node_name.is_empty() {
        facts.hostname.clone()
    } else {
        config.node_name.clone()
    };
    let mut capabilities: Vec<i32> = facts.capabilities.iter().map(|c| *c as i32).collect();
    if !capabilities.contains(&(Capability::Telemetry as i32)) {
        capabilities.push(Capability::Telemetry as i32);
    }
    if has_ups {
        capabilities.push(Capability::Ups as i32);
    }
    capabilities.push(Capability::Poweroff as i32);
    Hello {
        node_name,
        board_model: facts.board_model,
        arch: std::env::consts::ARCH.to_string(),
        kernel_version: facts.kernel_version,
        os_name: facts.os_name,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        instance_id: rand::random::<u64>() | 1,
        capabilities,
        sample_interval_ms: config.sample_interval.as_millis() as u32,
        boot_time_unix_seconds: facts.boot_time_unix_seconds,
        oldest_buffered_seq: 0,
        can_power_off: String::new(),
        k3s_role: k3s_role(&SysRoot::at(&config.sysroot)).into(),
    }
}

/// This node's k3s role as its systemd units say (the k3s installer writes
/// `k3s.service` on a server, `k3s-agent.service` on an agent): the
/// collector's fallback when the Kubernetes API cannot tell it.
pub fn k3s_role(root: &SysRoot) -> &'static str {
    let unit = |name: &str| {
        [
            "etc/systemd/system",
            "lib/systemd/system",
            "usr/lib/systemd/system",
        ]
        .iter()
        .any(|dir| root.join(format!("{dir}/{name}")).exists())
    };
    if unit("k3s.service") {
        "server"
    } else if unit("k3s-agent.service") {
        "agent"
    } else {
        ""
    }
}

/// Runs until `shutdown` turns true.
pub async fn run(config: AgentConfig, shutdown: watch::Receiver<bool>) {
    let root = SysRoot::at(&config.sysroot);
    let mut sensors = Sensors::with_filesystem(root.clone(), &config.filesystem);
    let (units, ups_rx) = spawn_ups_monitors(&config, &root);
    let monitors: Vec<UpsHandle> = units.iter().map(|u| u.handle.clone()).collect();

    let mut hello = hello(&config, &sensors, !config.ups.is_empty());
    hello.can_power_off = command::poweroff::can_power_off(&config.commands.poweroff).await;
    tracing::info!(
        node = %hello.node_name,
        model = %hello.board_model,
        collector = %config.collector,
        interval = ?config.sample_interval,
        send_interval = ?config.send_interval,
        "nodewarden-agent starting"
    );
    let outbox = Outbox::new(config.buffer_samples);
    let identity = crate::trust::Identity::at(&config.state_dir);
    tokio::spawn(crate::trust::renew_forever(
        config.collector.clone(),
        identity.clone(),
        shutdown.clone(),
    ));
    let poweroff = Arc::new(PowerOff::new(
        config.commands.poweroff.clone(),
        &config.commands.state_dir,
    ));
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let (reply_tx, reply_rx) = mpsc::channel(64);
    let standalone_ups = units.first().cloned();
    let executor = Arc::new(Executor::new(poweroff.clone(), units, reply_tx.clone()));
    tokio::spawn(command::run(executor, cmd_rx));
    let (connected_tx, connected_rx) = watch::channel(false);
    let link = tokio::spawn(link::run(
        link::CollectorPeer {
            address: config.collector.clone(),
            identity,
        },
        hello,
        outbox.clone(),
        ups_rx,
        CommandLink {
            to_executor: cmd_tx,
            replies: reply_rx,
        },
        connected_tx,
        shutdown.clone(),
    ));
    if let Some(unit) = standalone_ups
        && config.standalone.active(true)
    {
        tokio::spawn(standalone(
            config.standalone.clone(),
            unit,
            poweroff,
            connected_rx,
            reply_tx,
            shutdown.clone(),
        ));
    }

    let seq = sample_until_stopped(&config, &mut sensors, &monitors, &outbox, shutdown).await;
    let _ = nodewarden_common::sd_notify::notify_stopping();
    // Give the link a moment to flush what it has.
    let _ = tokio::time::timeout(Duration::from_secs(2), link).await;
    let unacked = outbox.buffer.lock().map_or(0, |b| b.len());
    tracing::info!(
        last_seq = seq,
        unacked,
        "stopped after {seq} samples; {unacked} not acknowledged by the collector"
    );
}

/// Starts one monitor per configured UPS; every monitor pushes its status
/// changes to the returned receiver, at once. A UPS that cannot be monitored
/// is logged and left out.
fn spawn_ups_monitors(
    config: &AgentConfig,
    root: &SysRoot,
) -> (Vec<UpsUnit>, mpsc::Receiver<UpsStatus>) {
    let (ups_tx, ups_rx) = mpsc::channel::<UpsStatus>(32);
    let mut units = Vec::new();
    for ups in &config.ups {
        match crate::ups::spawn_monitor(ups, root.clone(), ups_tx.clone()) {
            Ok(handle) => units.push(UpsUnit {
                config: ups.clone(),
                handle,
            }),
            // The rest of the agent still runs; the error says what to fix.
            Err(e) => tracing::error!(ups = %ups.name, "cannot monitor this UPS: {e}"),
        }
    }
    (units, ups_rx)
}

/// Samples on the ticker into the outbox and feeds the systemd watchdog
/// until shutdown; returns the last sample's seq.
async fn sample_until_stopped(
    config: &AgentConfig,
    sensors: &mut Sensors,
    monitors: &[UpsHandle],
    outbox: &Outbox,
    shutdown: watch::Receiver<bool>,
) -> u64 {
    let ups_latest = || {
        monitors
            .iter()
            .map(|m| m.latest())
            .collect::<Vec<UpsStatus>>()
    };
    // systemd (Type=notify): ready once configured and sampling; the watchdog
    // is fed from this loop, so a wedged agent gets restarted.
    let _ = nodewarden_common::sd_notify::notify_ready();
    let watchdog_every = nodewarden_common::sd_notify::watchdog_interval();
    let mut watchdog =
        tokio::time::interval(watchdog_every.map_or(Duration::from_secs(3600), |d| d / 2));
    let mut ticker = crate::ticker::Ticker::new(config.sample_interval);
    let mut pacing = link::pacing::Pacing::new(config.sample_interval, config.send_interval);
    let mut shutdown_rx = shutdown;
    // One future for the whole loop, not a new one (and a new waiter
    // registration) on every tick: this loop runs once a second for months.
    let stop = shutdown_rx.changed();
    tokio::pin!(stop);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            _ = ticker.tick() => {
                seq += 1;
                let mut sample = sensors.sample(seq, now_ms());
                sample.ups = ups_latest();
                let send_now = pacing.send_now(&sample);
                outbox.push(sample, send_now);
            }
            // Only under a systemd watchdog: otherwise no timer at all.
            _ = watchdog.tick(), if watchdog_every.is_some() => {
                let _ = nodewarden_common::sd_notify::notify_watchdog();
            }
        }
    }
    seq
}

/// Standalone mode's I/O: looks once a second, and when the decision says
/// so, tells the UPS to cycle its output and powers this node off.
async fn standalone(
    cfg: StandaloneConfig,
    unit: UpsUnit,
    poweroff: Arc<PowerOff>,
    connected: watch::Receiver<bool>,
    report: mpsc::Sender<Reply>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut decision = Standalone::new(cfg.clone());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_watch: Option<String> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let link_up = *connected.borrow();
        let view = UpsView::from(&unit.handle.latest());
        match decision.step(Instant::now(), link_up, view) {
            Verdict::Idle => {}
            Verdict::Watching(why) => {
                // The first line says it is watching; the rest of the wait
                // is not worth a journal line a second.
                if last_watch.is_none() {
                    tracing::warn!(ups = %unit.config.name, "standalone mode watching: {why}");
                }
                last_watch = Some(why);
            }
            Verdict::StoodDown(why) => {
                tracing::info!(ups = %unit.config.name, "standalone mode stands down: {why}");
                last_watch = None;
            }
            Verdict::Act(reason) => {
                take_over(&cfg, &unit, &poweroff, &reason, &report).await;
                return;
            }
        }
    }
}

async fn take_over(
    cfg: &StandaloneConfig,
    unit: &UpsUnit,
    poweroff: &PowerOff,
    reason: &str,
    report: &mpsc::Sender<Reply>,
) {
    // The collector ordered this node off before it went away: its sequence
    // had reached the end, UPS command included. Sending that again would
    // only restart the UPS's countdown.
    if let Some(id) = poweroff.under_way() {
        tracing::info!(
            "{reason}, but this node's poweroff is already under way (command {id}); standalone mode has nothing to add"
        );
        return;
    }
    tracing::error!(ups = %unit.config.name, "{reason}; cycling the UPS and powering this node off");
    let kind = UpsCommandKind::ShutdownReturn {
        off_delay_s: u32::try_from(cfg.off_delay.as_secs()).unwrap_or(u32::MAX),
        restore_delay_s: u32::try_from(cfg.restore_delay.as_secs()).unwrap_or(u32::MAX),
    };
    // The UPS first: once this node halts nobody is left to tell it. A UPS
    // that refuses still leaves this node to go down cleanly.
    let result = match unit.handle.command_async(kind).await {
        Ok(done) => {
            tracing::warn!(ups = %unit.config.name, "standalone: {}", done.message);
            CommandResult {
                command_id: STANDALONE_ID,
                state: CommandState::Done as i32,
                message: format!(
                    "standalone mode ({reason}): UPS `{}`: {}; powering this node off",
                    unit.config.name, done.message
                ),
                effective_off_delay_seconds: done.delays.off_delay_s,
                effective_restore_delay_seconds: done.delays.restore_delay_s,
            }
        }
        Err(e) => {
            tracing::error!(ups = %unit.config.name, "standalone: the UPS did not take shutdown.return: {e}; powering off anyway");
            CommandResult {
                command_id: STANDALONE_ID,
                state: CommandState::Failed as i32,
                message: format!(
                    "standalone mode ({reason}): UPS `{}` did not take shutdown.return: {e}; powering this node off",
                    unit.config.name
                ),
                ..CommandResult::default()
            }
        }
    };
    // Told to the collector when the link returns (the replies queue waits
    // for the next session): it must not send the UPS a second command.
    let _ = report.try_send(Reply { result, sent: None });
    match poweroff.begin(STANDALONE_ID) {
        command::poweroff::Begin::Run => {
            if let Err(e) = poweroff.run(STANDALONE_ID, reason).await {
                tracing::error!("standalone: {e}");
            }
        }
        other => tracing::info!("standalone: not powering off again ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_k3s_role_comes_from_the_installed_units() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = SysRoot::at(dir.path());
        assert_eq!(k3s_role(&root), "", "no k3s here");
        let units = dir.path().join("etc/systemd/system");
        std::fs::create_dir_all(&units).expect("units dir");
        std::fs::write(units.join("k3s-agent.service"), "").expect("unit");
        assert_eq!(k3s_role(&root), "agent");
        std::fs::write(units.join("k3s.service"), "").expect("unit");
        assert_eq!(k3s_role(&root), "server", "a server's unit wins");
    }
}

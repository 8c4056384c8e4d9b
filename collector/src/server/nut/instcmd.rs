//! INSTCMD on the agent that owns the UPS, over its authenticated link, and
//! upsd's status tracking (`SET TRACKING ON`, `OK TRACKING <id>`,
//! `GET TRACKING <id>`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nodewarden_proto::v1::{
    Command, CommandState, Empty, ShutdownReturn, ShutdownStayOff, UpsCommand, command, ups_command,
};

use super::protocol::NutError;
use super::session::Served;
use crate::state::commands::PendingCommand;
use crate::state::hub::Hub;

/// upsd forgets tracking entries after an hour (its TRACKINGDELAY).
const TRACKING_KEEP: Duration = Duration::from_secs(3600);
/// Entries kept at most, so a client cannot fill memory with commands.
const TRACKING_MAX: usize = 1024;
/// nutdrv_qx's default offdelay and ondelay, used by shutdown.* as NUT does.
const OFF_DELAY_S: u32 = 30;
const ON_DELAY_S: u32 = 180;

/// The agent command for a NUT instant command name.
pub fn action(cmd: &str) -> Option<ups_command::Action> {
    use ups_command::Action;
    Some(match cmd {
        "shutdown.return" => Action::ShutdownReturn(ShutdownReturn {
            off_delay_seconds: OFF_DELAY_S,
            restore_delay_seconds: ON_DELAY_S,
        }),
        "shutdown.stayoff" => Action::ShutdownStayOff(ShutdownStayOff {
            off_delay_seconds: OFF_DELAY_S,
        }),
        "shutdown.stop" => Action::CancelShutdown(Empty {}),
        "test.battery.start.quick" => Action::BatteryTestQuick(Empty {}),
        "test.battery.start.deep" => Action::BatteryTestDeep(Empty {}),
        "test.battery.stop" => Action::CancelTest(Empty {}),
        "beeper.toggle" => Action::BeeperToggle(Empty {}),
        _ => return None,
    })
}

/// upsd's tracking list: id → answer to GET TRACKING.
#[derive(Debug, Default)]
pub struct Tracking {
    entries: Mutex<HashMap<String, (String, Instant)>>,
}

impl Tracking {
    fn set(&self, id: &str, answer: &str) {
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        e.retain(|_, (_, t)| now.duration_since(*t) < TRACKING_KEEP);
        if e.len() >= TRACKING_MAX
            && let Some(oldest) = e
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone())
        {
            e.remove(&oldest);
        }
        let since = e.get(id).map_or(now, |(_, t)| *t);
        e.insert(id.to_string(), (answer.to_string(), since));
    }

    /// What `GET TRACKING id` answers.
    pub fn get(&self, id: &str) -> String {
        let e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        e.get(&id.to_ascii_uppercase())
            .map_or_else(|| "ERR UNKNOWN".to_string(), |(a, _)| a.clone())
    }
}

/// A tracking id shaped like upsd's (a UUID v4, upper case).
fn new_id() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode_upper(b);
    format!(
        "{}-{}-4{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The agent's final answer: Ok, or why not.
async fn finish(mut pending: PendingCommand, timeout: Duration) -> Result<(), String> {
    match pending.finished(timeout).await {
        Ok(r) if r.state == CommandState::Done as i32 => Ok(()),
        Ok(r) => Err(r.message),
        Err(e) => Err(e.to_string()),
    }
}

/// Sends the command and returns the reply lines: with tracking at once
/// (`OK TRACKING id`, the result later under that id), else once the agent
/// answered: `OK`, or upsd's error.
pub async fn run(
    hub: &Arc<Hub>,
    tracking: &Arc<Tracking>,
    ups: &Served,
    cmd: &str,
    track: bool,
    timeout: Duration,
) -> String {
    let Some(action) = action(cmd) else {
        return format!("{}\n", NutError::CmdNotSupported.line());
    };
    let command = Command {
        command_id: hub.new_command_id(),
        dry_run: false,
        action: Some(command::Action::Ups(UpsCommand {
            ups_name: ups.agent_ups.clone(),
            action: Some(action),
        })),
    };
    let pending = match hub.start_command(&ups.node, command) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(ups = ups.name, cmd, "NUT instant command not sent: {e}");
            return format!("{}\n", NutError::DriverNotConnected.line());
        }
    };
    if !track {
        return match finish(pending, timeout).await {
            Ok(()) => "OK\n".into(),
            Err(why) => {
                tracing::warn!(ups = ups.name, cmd, "NUT instant command failed: {why}");
                format!("{}\n", NutError::InstcmdFailed.line())
            }
        };
    }
    let id = new_id();
    tracking.set(&id, "PENDING");
    let (tracking, key) = (tracking.clone(), id.clone());
    tokio::spawn(async move {
        let answer = match finish(pending, timeout).await {
            Ok(()) => "SUCCESS".to_string(),
            Err(why) => {
                tracing::warn!("NUT instant command {key} failed: {why}");
                "ERR FAILED".to_string()
            }
        };
        tracking.set(&key, &answer);
    });
    format!("OK TRACKING {id}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_agents_advertise_has_an_action() {
        for c in [
            "shutdown.return",
            "shutdown.stayoff",
            "shutdown.stop",
            "test.battery.start.quick",
            "test.battery.start.deep",
            "test.battery.stop",
            "beeper.toggle",
        ] {
            assert!(action(c).is_some(), "{c}");
        }
        assert!(action("load.off").is_none());
    }

    #[test]
    fn tracking_answers_like_upsd() {
        let t = Tracking::default();
        let id = new_id();
        assert_eq!(id.len(), 36);
        assert_eq!(t.get(&id), "ERR UNKNOWN");
        t.set(&id, "PENDING");
        assert_eq!(t.get(&id.to_ascii_lowercase()), "PENDING");
        t.set(&id, "SUCCESS");
        assert_eq!(t.get(&id), "SUCCESS");
    }
}

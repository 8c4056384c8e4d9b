//! Telling the collector this node is halting. The agent's unit stops after
//! k3s and the remote filesystems, so when systemd is stopping the system
//! the agent's last words mark the halt's start and its disconnect the
//! machine going down: the collector times each stage by the real halt.

use std::time::Duration;

use nodewarden_common::clock::now_ms;
use nodewarden_proto::v1::{AgentMessage, Halting, agent_message};
use tokio::process::Command;

/// How long systemd may take to say what state it is in.
const ASK_WAIT: Duration = Duration::from_secs(1);

/// The Halting message to send before the stream closes, when systemd is
/// stopping the system (not only this agent: `systemctl stop` of the agent,
/// an upgrade, says "running").
pub async fn if_system_stopping() -> Option<AgentMessage> {
    let out = Command::new("systemctl")
        .arg("is-system-running")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(ASK_WAIT, out).await.ok()?.ok()?;
    // is-system-running exits non-zero for every state but "running".
    let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (state == "stopping").then(|| AgentMessage {
        body: Some(agent_message::Body::Halting(Halting {
            reason: "system shutdown (systemd is stopping the node)".into(),
            timestamp_ms: now_ms(),
        })),
    })
}

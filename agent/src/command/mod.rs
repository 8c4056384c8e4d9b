//! Commands from the collector (power off this node, UPS commands).
//!
//! Until the link is mutually authenticated (mTLS, docs/security.md), an
//! agent cannot tell its collector from a stranger on the LAN, so it refuses
//! every command that changes anything: nothing dangerous without
//! authentication.

use nodewarden_proto::v1::{Command, CommandResult, CommandState, command};

/// Answers a command. Dangerous commands are refused on an unauthenticated link.
pub fn handle(cmd: &Command) -> CommandResult {
    let what = match &cmd.action {
        Some(command::Action::PowerOff(_)) => "poweroff",
        Some(command::Action::Ups(_)) => "UPS command",
        None => {
            return CommandResult {
                command_id: cmd.command_id,
                state: CommandState::Unsupported as i32,
                message: "empty command".into(),
            };
        }
    };
    tracing::warn!(
        command_id = cmd.command_id,
        "refused {what}: the collector link is not authenticated"
    );
    CommandResult {
        command_id: cmd.command_id,
        state: CommandState::Failed as i32,
        message: format!(
            "refused {what}: this agent obeys commands only over an authenticated (mutual TLS) link"
        ),
    }
}

#[cfg(test)]
mod tests {
    use nodewarden_proto::v1::PowerOff;

    use super::*;

    #[test]
    fn poweroff_is_refused_on_an_unauthenticated_link() {
        let cmd = Command {
            command_id: 7,
            dry_run: false,
            action: Some(command::Action::PowerOff(PowerOff {
                reason: "test".into(),
            })),
        };
        let r = handle(&cmd);
        assert_eq!(r.command_id, 7);
        assert_eq!(r.state, CommandState::Failed as i32);
        assert!(r.message.contains("authenticated"));
    }
}

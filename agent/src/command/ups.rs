//! UPS commands from the collector: which UPS, which driver command, and for
//! a dry run exactly what would go to the UPS.

use nodewarden_proto::v1::{UpsCommand, UpsStatus, ups_command};

use crate::ups::config::UpsConfig;
use crate::ups::megatec::protocol::encode_command;
use crate::ups::{UpsCommandKind, UpsHandle};

/// A UPS this agent reads: its settings and its running monitor.
#[derive(Debug, Clone)]
pub struct UpsUnit {
    /// Its `[[ups]]` settings.
    pub config: UpsConfig,
    /// Its running monitor.
    pub handle: UpsHandle,
}

/// The driver command a proto UpsCommand asks for (None: no action set).
pub fn kind_of(cmd: &UpsCommand) -> Option<UpsCommandKind> {
    use ups_command::Action;
    Some(match cmd.action.as_ref()? {
        Action::ShutdownReturn(s) => UpsCommandKind::ShutdownReturn {
            off_delay_s: s.off_delay_seconds,
            restore_delay_s: s.restore_delay_seconds,
        },
        Action::ShutdownStayOff(s) => UpsCommandKind::ShutdownStayOff {
            off_delay_s: s.off_delay_seconds,
        },
        Action::CancelShutdown(_) => UpsCommandKind::CancelShutdown,
        Action::BatteryTestQuick(_) => UpsCommandKind::BatteryTestQuick,
        Action::BatteryTestDeep(_) => UpsCommandKind::BatteryTestDeep,
        Action::CancelTest(_) => UpsCommandKind::CancelTest,
        Action::BeeperToggle(_) => UpsCommandKind::BeeperToggle,
    })
}

/// The UPS `name` names; an empty name means the only one.
pub fn find<'a>(units: &'a [UpsUnit], name: &str) -> Result<&'a UpsUnit, String> {
    if units.is_empty() {
        return Err(
            "this node has no UPS (no [[ups]] in its agent.toml); send UPS commands to the node the UPS is wired to"
                .into(),
        );
    }
    let names = || {
        units
            .iter()
            .map(|u| u.config.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if name.is_empty() {
        return match units {
            [only] => Ok(only),
            _ => Err(format!(
                "this node has several UPSes ({}); name one",
                names()
            )),
        };
    }
    units
        .iter()
        .find(|u| u.config.name == name)
        .ok_or_else(|| format!("no UPS named `{name}` on this node (it has: {})", names()))
}

fn delays(kind: UpsCommandKind) -> String {
    match kind {
        UpsCommandKind::ShutdownReturn {
            off_delay_s,
            restore_delay_s,
        } => format!(" (off in {off_delay_s} s, back on {restore_delay_s} s after mains returns)"),
        UpsCommandKind::ShutdownStayOff { off_delay_s } => {
            format!(" (off in {off_delay_s} s, stays off)")
        }
        _ => String::new(),
    }
}

/// What the command would send, for a dry run: the exact request where the
/// protocol is a plain line (Megatec), the driver request otherwise. Err
/// when the real command would fail the same way.
pub fn describe(
    config: &UpsConfig,
    latest: &UpsStatus,
    kind: UpsCommandKind,
) -> Result<String, String> {
    let identity = latest.identity.as_ref();
    let protocol = match config.protocol.as_str() {
        "auto" => identity.map_or("", |i| i.driver.as_str()),
        p => p,
    };
    let port = identity
        .map(|i| i.port.as_str())
        .filter(|p| !p.is_empty())
        .unwrap_or(config.port.as_str());
    let name = &config.name;
    let nut = kind.nut_name();
    let known = &latest.supported_commands;
    if !known.is_empty() && !known.iter().any(|c| c == nut) {
        return Err(format!(
            "the {protocol} driver for UPS `{name}` does not support {nut} (it supports: {})",
            known.join(", ")
        ));
    }
    match protocol {
        "megatec" => {
            let request = encode_command(kind).map_err(|e| format!("{nut} cannot be sent: {e}"))?;
            let line = String::from_utf8_lossy(&request).replace('\r', "\\r");
            Ok(format!(
                "would send {line} ({nut}{}) to megatec UPS `{name}` on {port}",
                delays(kind)
            ))
        }
        "gpser" => Ok(format!(
            "would send the GPSER request for {nut}{} to gpser UPS `{name}` on {port}",
            delays(kind)
        )),
        "nut" => {
            let sets = match kind {
                UpsCommandKind::ShutdownReturn {
                    off_delay_s,
                    restore_delay_s,
                } => format!(
                    "SET VAR ups.delay.shutdown {off_delay_s}, SET VAR ups.delay.start {restore_delay_s}, then "
                ),
                UpsCommandKind::ShutdownStayOff { off_delay_s } => {
                    format!("SET VAR ups.delay.shutdown {off_delay_s}, then ")
                }
                _ => String::new(),
            };
            Ok(format!(
                "would send {sets}INSTCMD {nut} to upsd for UPS `{name}` at {port}"
            ))
        }
        _ => Ok(format!(
            "would send {nut}{} to UPS `{name}` on {port} (its protocol is not detected yet)",
            delays(kind)
        )),
    }
}

#[cfg(test)]
mod tests {
    use nodewarden_proto::v1::{Empty, ShutdownReturn, UpsIdentity};

    use super::*;

    fn megatec() -> UpsConfig {
        UpsConfig {
            name: "rack".into(),
            protocol: crate::ups::config::UpsProtocol::Megatec,
            port: "/dev/ttyUSB0".into(),
            ..UpsConfig::default()
        }
    }

    #[test]
    fn proto_commands_map_to_driver_commands() {
        let cmd = UpsCommand {
            ups_name: String::new(),
            action: Some(ups_command::Action::ShutdownReturn(ShutdownReturn {
                off_delay_seconds: 30,
                restore_delay_seconds: 600,
            })),
        };
        assert_eq!(
            kind_of(&cmd),
            Some(UpsCommandKind::ShutdownReturn {
                off_delay_s: 30,
                restore_delay_s: 600
            })
        );
        let beep = UpsCommand {
            ups_name: String::new(),
            action: Some(ups_command::Action::BeeperToggle(Empty {})),
        };
        assert_eq!(kind_of(&beep), Some(UpsCommandKind::BeeperToggle));
        assert_eq!(kind_of(&UpsCommand::default()), None);
    }

    #[test]
    fn megatec_dry_run_names_the_exact_bytes() {
        let kind = UpsCommandKind::ShutdownReturn {
            off_delay_s: 30,
            restore_delay_s: 600,
        };
        let text = describe(&megatec(), &UpsStatus::default(), kind).unwrap();
        assert_eq!(
            text,
            "would send S.5R0010\\r (shutdown.return (off in 30 s, back on 600 s after mains returns)) to megatec UPS `rack` on /dev/ttyUSB0"
        );
    }

    #[test]
    fn dry_run_fails_where_the_command_would() {
        let kind = UpsCommandKind::ShutdownReturn {
            off_delay_s: 5,
            restore_delay_s: 0,
        };
        let err = describe(&megatec(), &UpsStatus::default(), kind).unwrap_err();
        assert!(err.contains("12-600 s"), "{err}");
        let gpser = UpsStatus {
            supported_commands: vec!["shutdown.return".into()],
            identity: Some(UpsIdentity {
                driver: "gpser".into(),
                port: "/dev/ttyUSB1".into(),
                ..UpsIdentity::default()
            }),
            ..UpsStatus::default()
        };
        let auto = UpsConfig {
            protocol: crate::ups::config::UpsProtocol::Auto,
            ..megatec()
        };
        let err = describe(&auto, &gpser, UpsCommandKind::BeeperToggle).unwrap_err();
        assert!(
            err.contains("gpser driver") && err.contains("beeper.toggle"),
            "{err}"
        );
    }

    #[test]
    fn an_agent_without_a_ups_says_where_to_send_it() {
        let err = find(&[], "").unwrap_err();
        assert!(err.contains("no UPS"), "{err}");
    }
}

//! `[[ups]]` sections of agent.toml.

use serde::Deserialize;

/// One UPS this agent reads.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpsConfig {
    /// Name shown by `nodewarden ups` and used in events.
    pub name: String,
    /// "auto", "megatec", "gpser" or "nut".
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// Serial device ("/dev/ttyUSB0", "/dev/serial/by-id/...", "auto") or,
    /// for nut, "upsname@host:port".
    pub port: String,
}

fn default_protocol() -> String {
    "auto".into()
}

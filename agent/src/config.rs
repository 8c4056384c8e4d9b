//! agent.toml: what the agent reads, where it sends it.
//!
//! Precedence: built-in defaults, then the file, then NODEWARDEN_* environment
//! variables, then command-line flags (applied by main).

use std::path::{Path, PathBuf};
use std::time::Duration;

use nodewarden_common::config_error::{ConfigError, key_location, parse_toml, read_config};
use nodewarden_common::units::serde_duration;
use serde::Deserialize;

use crate::command::poweroff::{DEFAULT_POWEROFF, DEFAULT_RUN_DIR};
use crate::standalone::StandaloneConfig;
use crate::ups::config::UpsConfig;

/// Default location of the agent's config file.
pub const DEFAULT_PATH: &str = "/etc/nodewarden/agent.toml";
/// Default collector address (the k3s server runs the collector).
pub const DEFAULT_COLLECTOR: &str = "https://127.0.0.1:7150";
/// Where `join` keeps the CA, this node's certificate and its key.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/nodewarden-agent";

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Kubernetes node name; empty means the hostname.
    pub node_name: String,
    /// Where the collector listens: https://HOST:PORT (TLS only; `join` sets it).
    pub collector: String,
    /// The CA, this node's certificate and key (written by `join`).
    pub state_dir: PathBuf,
    /// Time between samples (1s to 1h).
    #[serde(with = "serde_duration")]
    pub sample_interval: Duration,
    /// Longest a sample waits to be sent (1s to 15s): samples taken more
    /// often go out together, fewer sends for the same data. Samples taken
    /// this often or less are each sent as taken.
    #[serde(with = "serde_duration")]
    pub send_interval: Duration,
    /// Samples kept in memory while the collector is unreachable.
    pub buffer_samples: usize,
    /// Prefix for /proc, /sys and /dev (tests point it at fixture trees).
    pub sysroot: PathBuf,
    /// Filesystem whose usage is reported.
    pub filesystem: PathBuf,
    /// tracing filter, e.g. "info" or "nodewarden_agent=debug".
    pub log_level: String,
    /// UPSes wired to this node.
    pub ups: Vec<UpsConfig>,
    /// How commands from the collector are carried out.
    pub commands: CommandsConfig,
    /// What this agent does by itself when it owns a UPS and loses the collector.
    pub standalone: StandaloneConfig,
}

/// `[commands]` in agent.toml.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CommandsConfig {
    /// The command line that powers this node off (no shell).
    pub poweroff: Vec<String>,
    /// Where the ids of poweroffs that ran are kept (tmpfs: /run).
    pub state_dir: PathBuf,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        CommandsConfig {
            poweroff: DEFAULT_POWEROFF.iter().map(|s| s.to_string()).collect(),
            state_dir: PathBuf::from(DEFAULT_RUN_DIR),
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            node_name: String::new(),
            collector: DEFAULT_COLLECTOR.into(),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            sample_interval: Duration::from_secs(5),
            send_interval: Duration::from_secs(5),
            // 12 hours at the default interval, about 3 MB at most.
            buffer_samples: 8640,
            sysroot: PathBuf::from("/"),
            filesystem: PathBuf::from("/"),
            log_level: "info".into(),
            ups: Vec::new(),
            commands: CommandsConfig::default(),
            standalone: StandaloneConfig::default(),
        }
    }
}

impl AgentConfig {
    /// Reads `path`. A missing file at the default path means defaults; a
    /// missing file that was asked for by name is an error.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        let text = read_config(path, explicit)?;
        let mut config: AgentConfig = parse_toml(path, &text)?;
        if let Some(message) = plaintext_problem(&config.collector) {
            let (line, column) = key_location(&text, "collector").unwrap_or((0, 0));
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                key: "collector".into(),
                message,
            });
        }
        config.apply_env(|k| std::env::var(k).ok());
        config.validate(path)?;
        Ok(config)
    }

    /// NODEWARDEN_NODE_NAME, NODEWARDEN_COLLECTOR override the file.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        if let Some(v) = get("NODEWARDEN_NODE_NAME") {
            self.node_name = v;
        }
        if let Some(v) = get("NODEWARDEN_COLLECTOR") {
            self.collector = v;
        }
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |message: String| {
            Err(ConfigError::Semantic {
                path: path.to_path_buf(),
                message,
            })
        };
        if self.sample_interval < Duration::from_secs(1)
            || self.sample_interval > Duration::from_secs(3600)
        {
            return bad(format!(
                "key `sample_interval`: {:?} is outside 1s..1h",
                self.sample_interval
            ));
        }
        // Well inside the collector's offline_after (30 s by default), so a
        // node that is fine never looks silent between two sends.
        if self.send_interval < Duration::from_secs(1)
            || self.send_interval > Duration::from_secs(15)
        {
            return bad(format!(
                "key `send_interval`: {:?} is outside 1s..15s",
                self.send_interval
            ));
        }
        if self.buffer_samples == 0 {
            return bad("key `buffer_samples`: must be at least 1".into());
        }
        if let Some(message) = plaintext_problem(&self.collector) {
            return bad(format!(
                "key `collector` (or NODEWARDEN_COLLECTOR / --collector): {message}"
            ));
        }
        if !self.collector.starts_with("https://") {
            return bad(format!(
                "key `collector`: `{}` must be https://HOST:PORT",
                self.collector
            ));
        }
        let mut names = std::collections::HashSet::new();
        for ups in &self.ups {
            if !names.insert(&ups.name) {
                return bad(format!("[[ups]] name `{}` is used twice", ups.name));
            }
            if let Err(message) = ups.validate() {
                return bad(message);
            }
        }
        if self.commands.poweroff.first().is_none_or(|p| p.is_empty()) {
            return bad("[commands] key `poweroff`: give the command line that powers this node off, e.g. [\"systemctl\", \"poweroff\"]".into());
        }
        let sa = &self.standalone;
        if sa.enabled == Some(true) && self.ups.is_empty() {
            return bad("[standalone] enabled = true needs a [[ups]] on this node: standalone mode commands the UPS this agent reads".into());
        }
        if sa.active(!self.ups.is_empty()) {
            if !(0.0..=100.0).contains(&sa.min_charge_percent) {
                return bad(format!(
                    "[standalone] key `min_charge_percent`: {} is outside 0..100",
                    sa.min_charge_percent
                ));
            }
            // The UPS is told to cut output after off_delay: the exact limits
            // are the protocol's, checked here so a bad value shows at start,
            // not in the middle of a power cut.
            let (off, restore) = (sa.off_delay.as_secs(), sa.restore_delay.as_secs());
            let off = u32::try_from(off).unwrap_or(u32::MAX);
            let restore = u32::try_from(restore).unwrap_or(u32::MAX);
            if let Some(ups) = self.ups.first()
                && ups.protocol == crate::ups::config::UpsProtocol::Megatec
                && let Err(e) = crate::ups::megatec::protocol::encode_shutdown_return(off, restore)
            {
                return bad(format!(
                    "[standalone] keys `off_delay`/`restore_delay` for megatec UPS `{}`: {e}",
                    ups.name
                ));
            }
            if off < 12 {
                return bad(format!(
                    "[standalone] key `off_delay`: {off} s is too short for this node to halt (at least 12s; the default is 2m)"
                ));
            }
        }
        Ok(())
    }
}

/// The agent link is TLS only. tonic would quietly speak plaintext to an
/// http:// address, so such an address is an error, not a choice.
fn plaintext_problem(collector: &str) -> Option<String> {
    collector.strip_prefix("http://").map(|rest| {
        format!(
            "`{collector}` is plaintext, and the agent link is TLS only: write `https://{rest}` (`nodewarden-agent join` sets it)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        let c: AgentConfig = parse_toml(Path::new("a.toml"), "").unwrap();
        assert_eq!(c, AgentConfig::default());
    }

    #[test]
    fn rejects_interval_below_one_second() {
        let c: AgentConfig =
            parse_toml(Path::new("a.toml"), "sample_interval = \"200ms\"").unwrap();
        let err = c.validate(Path::new("a.toml")).unwrap_err().to_string();
        assert!(err.contains("sample_interval"), "{err}");
    }

    #[test]
    fn a_plaintext_collector_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "node_name = \"pi\"\ncollector = \"http://10.0.0.2:7150\"\n",
        )
        .unwrap();
        let err = AgentConfig::load(&path, true).unwrap_err().to_string();
        assert!(err.contains("agent.toml:2:1: key `collector`"), "{err}");
        assert!(err.contains("https://10.0.0.2:7150"), "{err}");
    }

    #[test]
    fn standalone_needs_a_ups_and_a_usable_off_delay() {
        let path = Path::new("a.toml");
        let c: AgentConfig = parse_toml(path, "[standalone]\nenabled = true\n").unwrap();
        let err = c.validate(path).unwrap_err().to_string();
        assert!(err.contains("needs a [[ups]]"), "{err}");
        let text = "[standalone]\noff_delay = \"20m\"\n[[ups]]\nname = \"rack\"\nprotocol = \"megatec\"\nport = \"/dev/ttyUSB0\"\n";
        let c: AgentConfig = parse_toml(path, text).unwrap();
        let err = c.validate(path).unwrap_err().to_string();
        assert!(
            err.contains("off_delay") && err.contains("12-600 s"),
            "{err}"
        );
        // Without a UPS the section is inert, whatever it says.
        let c: AgentConfig = parse_toml(path, "[standalone]\noff_delay = \"1s\"\n").unwrap();
        c.validate(path).unwrap();
    }

    #[test]
    fn poweroff_defaults_to_logind_and_can_be_a_hook() {
        let path = Path::new("a.toml");
        let c = AgentConfig::default();
        assert_eq!(c.commands.poweroff[0], "busctl");
        assert!(c.commands.poweroff.contains(&"PowerOff".to_string()));
        let c: AgentConfig = parse_toml(
            path,
            "[commands]\npoweroff = [\"/usr/local/bin/hook\", \"now\"]\n",
        )
        .unwrap();
        assert_eq!(c.commands.poweroff, ["/usr/local/bin/hook", "now"]);
        let c: AgentConfig = parse_toml(path, "[commands]\npoweroff = []\n").unwrap();
        assert!(
            c.validate(path)
                .unwrap_err()
                .to_string()
                .contains("poweroff")
        );
    }

    #[test]
    fn env_overrides_file() {
        let mut c = AgentConfig::default();
        c.apply_env(|k| (k == "NODEWARDEN_NODE_NAME").then(|| "pi-3".to_string()));
        assert_eq!(c.node_name, "pi-3");
    }
}

//! agent.toml: what the agent reads, where it sends it.
//!
//! Precedence: built-in defaults, then the file, then NODEWARDEN_* environment
//! variables, then command-line flags (applied by main).

use std::path::{Path, PathBuf};
use std::time::Duration;

use nodewarden_proto::config_error::{ConfigError, key_location, parse_toml, read_config};
use nodewarden_proto::units::serde_duration;
use serde::Deserialize;

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
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            node_name: String::new(),
            collector: DEFAULT_COLLECTOR.into(),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            sample_interval: Duration::from_secs(5),
            // 12 hours at the default interval, about 3 MB at most.
            buffer_samples: 8640,
            sysroot: PathBuf::from("/"),
            filesystem: PathBuf::from("/"),
            log_level: "info".into(),
            ups: Vec::new(),
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
    fn env_overrides_file() {
        let mut c = AgentConfig::default();
        c.apply_env(|k| (k == "NODEWARDEN_NODE_NAME").then(|| "pi-3".to_string()));
        assert_eq!(c.node_name, "pi-3");
    }
}

//! collector.toml.
//!
//! Precedence: built-in defaults, then the file, then NODEWARDEN_* environment
//! variables, then command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nodewarden_common::config_error::{ConfigError, parse_toml, read_config};
use nodewarden_common::units::serde_duration;
use serde::Deserialize;

/// The `[events]` table; its rules live with the events (`state::events`).
pub use crate::state::events::EventThresholds;

/// Default location of the collector's config file.
pub const DEFAULT_PATH: &str = "/etc/nodewarden/collector.toml";
/// Default admin socket (the CLI's default too).
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/nodewarden/admin.sock";

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// Where agents connect (gRPC).
    pub listen: SocketAddr,
    /// Unix socket for the CLI's Admin API.
    pub admin_socket: PathBuf,
    /// Members of this group (and root) may operate through the admin socket:
    /// remove nodes, manage join tokens, power actions. Others may only read.
    pub admin_group: String,
    /// Prometheus /metrics; empty string disables it.
    pub metrics_listen: String,
    /// Where history, events and the node registry live.
    pub data_dir: PathBuf,
    /// A node that sent nothing for this long is marked offline.
    #[serde(with = "serde_duration")]
    pub offline_after: Duration,
    /// How long the server gathers samples before one commit (seen by `history`).
    #[serde(with = "serde_duration")]
    pub commit_interval: Duration,
    /// How often the commits are made durable, and only then acked.
    #[serde(with = "serde_duration")]
    pub sync_interval: Duration,
    pub log_level: String,
    pub retention: Retention,
    pub events: EventThresholds,
    /// The power-loss sequence (`[power]`).
    pub power: crate::power::config::PowerConfig,
    /// The Kubernetes API the power sequence cordons and drains through (`[kubernetes]`).
    pub kubernetes: crate::cluster::KubeSettings,
    /// Node conditions, events and board labels in Kubernetes (`[node_health]`).
    pub node_health: crate::cluster::health::HealthSettings,
    /// The NUT-protocol server for NAS boxes and other NUT clients (`[nut_server]`).
    pub nut_server: crate::server::nut::NutServerConfig,
    /// Who may read the status page on `metrics_listen` (`[web]`).
    pub web: crate::server::web::WebConfig,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Raw samples.
    #[serde(with = "serde_duration")]
    pub raw: Duration,
    /// 1-minute rollups and events.
    #[serde(with = "serde_duration")]
    pub rollup: Duration,
}

/// Longest `commit_interval`: what a `history` query sees waits this long at most.
const MAX_COMMIT_INTERVAL: Duration = Duration::from_secs(300);
/// Longest `sync_interval`: acks (and so the agents' buffers) wait this long at most.
const MAX_SYNC_INTERVAL: Duration = Duration::from_secs(3600);

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 7150)),
            admin_socket: PathBuf::from(DEFAULT_ADMIN_SOCKET),
            admin_group: "nodewarden-admin".into(),
            metrics_listen: "0.0.0.0:7151".into(),
            data_dir: PathBuf::from("/var/lib/nodewarden"),
            offline_after: Duration::from_secs(30),
            // Commits without a sync cost next to no writes: history stays
            // 5 s fresh. Each durable commit writes every page changed since
            // the last one, so the bytes written per hour fall with the sync
            // interval (docs/storage.md); SD cards wear with them. Acks wait
            // for the sync; agents hold 12 h of unacked samples.
            commit_interval: Duration::from_secs(5),
            sync_interval: Duration::from_secs(15 * 60),
            log_level: "info".into(),
            retention: Retention::default(),
            events: EventThresholds::default(),
            power: Default::default(),
            kubernetes: Default::default(),
            node_health: Default::default(),
            nut_server: Default::default(),
            web: Default::default(),
        }
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            raw: Duration::from_secs(48 * 3600),
            rollup: Duration::from_secs(30 * 86400),
        }
    }
}

impl CollectorConfig {
    /// Reads `path`; a missing file at the default path means defaults.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        let text = read_config(path, explicit)?;
        let mut config: CollectorConfig = parse_toml(path, &text)?;
        config.apply_env(|k| std::env::var(k).ok());
        config.validate(path)?;
        Ok(config)
    }

    /// NODEWARDEN_DATA_DIR, NODEWARDEN_SOCKET override the file.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        if let Some(v) = get("NODEWARDEN_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = get("NODEWARDEN_SOCKET") {
            self.admin_socket = v.into();
        }
    }

    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |message: String| {
            Err(ConfigError::Semantic {
                path: path.to_path_buf(),
                message,
            })
        };
        if self.retention.raw < Duration::from_secs(3600) {
            return bad("key `retention.raw`: keep at least 1h of raw samples".into());
        }
        if self.retention.rollup < self.retention.raw {
            return bad("key `retention.rollup`: must be at least `retention.raw`".into());
        }
        if self.offline_after < Duration::from_secs(2) {
            return bad("key `offline_after`: must be at least 2s".into());
        }
        if self.commit_interval < Duration::from_millis(10)
            || self.commit_interval > MAX_COMMIT_INTERVAL
        {
            return bad("key `commit_interval`: must be between 10ms and 5m".into());
        }
        if self.sync_interval < self.commit_interval || self.sync_interval > MAX_SYNC_INTERVAL {
            return bad(
                "key `sync_interval`: must be at least `commit_interval` and at most 1h".into(),
            );
        }
        if !self.metrics_listen.is_empty() && self.metrics_listen.parse::<SocketAddr>().is_err() {
            return bad(format!(
                "key `metrics_listen`: `{}` is not an address like 0.0.0.0:7151 (empty disables /metrics)",
                self.metrics_listen
            ));
        }
        let power = self.power.errors();
        if !power.is_empty() {
            return bad(power.join("; "));
        }
        let web = self.web.errors();
        if !web.is_empty() {
            return bad(web.join("; "));
        }
        let nut = self.nut_server.errors();
        if !nut.is_empty() {
            return bad(nut.join("; "));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_defaults() {
        let c: CollectorConfig = parse_toml(Path::new("c.toml"), "").unwrap();
        assert_eq!(c, CollectorConfig::default());
    }

    #[test]
    fn nested_keys_parse_and_bad_ones_are_named() {
        let c: CollectorConfig = parse_toml(
            Path::new("c.toml"),
            "[retention]\nraw = \"24h\"\nrollup = \"90d\"\n",
        )
        .unwrap();
        assert_eq!(c.retention.raw, Duration::from_secs(86400));
        let err =
            parse_toml::<CollectorConfig>(Path::new("c.toml"), "[retention]\nraw = \"24 hours\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.starts_with("c.toml:2:"), "{err}");
        assert!(err.contains("raw"), "{err}");
    }

    #[test]
    fn commits_every_5s_and_syncs_every_15m_by_default_within_bounds() {
        let path = Path::new("c.toml");
        let c = CollectorConfig::default();
        assert_eq!(c.commit_interval, Duration::from_secs(5));
        assert_eq!(c.sync_interval, Duration::from_secs(900));
        assert!(c.validate(path).is_ok());
        let at = |text: &str| {
            parse_toml::<CollectorConfig>(path, text)
                .unwrap()
                .validate(path)
        };
        assert!(at("commit_interval = \"5m\"").is_ok());
        let err = at("commit_interval = \"301s\"").unwrap_err().to_string();
        assert!(
            err.contains("commit_interval") && err.contains("5m"),
            "{err}"
        );
        assert!(at("commit_interval = \"1s\"\nsync_interval = \"1s\"").is_ok());
        let err = at("commit_interval = \"1m\"\nsync_interval = \"30s\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sync_interval"), "{err}");
        let err = at("sync_interval = \"61m\"").unwrap_err().to_string();
        assert!(err.contains("sync_interval") && err.contains("1h"), "{err}");
    }
}

/// The `[nut_server]` table as it parses inside the collector's config file
/// (here, so `server::nut` need not import `config`).
#[cfg(test)]
mod nut_server_tests {
    use std::path::Path;

    use nodewarden_common::config_error::parse_toml;

    use crate::config::CollectorConfig;
    use crate::server::nut::config::UpsmonRole;

    #[test]
    fn a_full_table_parses_and_bad_values_name_key_and_line() {
        let text = "[nut_server]\nlisten = \"0.0.0.0\"\n[nut_server.alias]\nups = \"riello\"\n\
                    [[nut_server.user]]\nname = \"monuser\"\npassword = \"secret\"\nupsmon = \"secondary\"\n";
        let c: CollectorConfig = parse_toml(Path::new("c.toml"), text).unwrap();
        assert_eq!(c.nut_server.listen.map(|a| a.port()), Some(3493));
        assert_eq!(c.nut_server.alias["ups"], "riello");
        assert_eq!(c.nut_server.users[0].upsmon, Some(UpsmonRole::Secondary));
        assert!(c.nut_server.errors().is_empty());
        let bad = text.replace("\"secondary\"", "\"boss\"");
        let err = parse_toml::<CollectorConfig>(Path::new("c.toml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("c.toml:8:"), "{err}");
        assert!(err.contains("upsmon"), "{err}");
        let err =
            parse_toml::<CollectorConfig>(Path::new("c.toml"), "[nut_server]\nlisten = \"nas\"\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.starts_with("c.toml:2:") && err.contains("listen"),
            "{err}"
        );
        let mut twice = c.nut_server.clone();
        twice.users.push(twice.users[0].clone());
        assert!(twice.errors()[0].contains("nut_server.user[1].name"));
    }
}

/// The `[power]` table as it parses inside the collector's config file
/// (here, not in `power::config`, so `power` need not import `config`).
#[cfg(test)]
mod power_tests {
    use std::path::Path;

    use nodewarden_common::config_error::parse_toml;

    use std::time::Duration;

    use crate::config::CollectorConfig;
    use crate::power::config::*;
    use crate::power::machine::Role;

    #[test]
    fn defaults_are_valid_and_quiet() {
        let p = PowerConfig::default();
        assert_eq!(p.errors(), Vec::<String>::new());
        assert_eq!(p.warnings(), Vec::<String>::new());
        assert!(p.enabled);
        assert_eq!(p.grace, Duration::from_secs(30));
    }

    #[test]
    fn a_full_power_table_parses() {
        let c: CollectorConfig = parse_toml(
            Path::new("c.toml"),
            r#"
[power]
grace = "45s"
min_runtime = "6m"
external = ["haproxy", "mysql"]
[power.roles]
pi5 = "server"
nas = "external"
[[power.domain]]
ups = "riello"
owner = "pi5"
nodes = ["pi5", "pi4"]
[power.notify]
exec = ["/usr/local/bin/tell", "--loud"]
webhook = "http://127.0.0.1:9000/hook"
"#,
        )
        .unwrap();
        let p = &c.power;
        assert_eq!(p.grace, Duration::from_secs(45));
        assert_eq!(p.domains[0].owner, "pi5");
        assert_eq!(p.role_override("mysql"), Some(Role::External { order: 2 }));
        assert_eq!(p.role_override("nas"), Some(Role::External { order: 3 }));
        assert_eq!(p.role_override("pi5"), Some(Role::Server));
        assert_eq!(p.role_override("pi4"), None);
        assert_eq!(p.notify.exec, ["/usr/local/bin/tell", "--loud"]);
        assert!(p.errors().is_empty(), "{:?}", p.errors());
    }

    #[test]
    fn unknown_and_mistyped_keys_name_file_line_and_key() {
        let err = parse_toml::<CollectorConfig>(
            Path::new("c.toml"),
            "[power]\ngrace = \"half a minute\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("c.toml:2:"), "{err}");
        assert!(err.contains("grace"), "{err}");
        let err =
            parse_toml::<CollectorConfig>(Path::new("c.toml"), "[power]\n\ngrase = \"30s\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.starts_with("c.toml:3:"), "{err}");
        assert!(err.contains("grase"), "{err}");
    }

    #[test]
    fn impossible_configs_are_rejected_with_what_to_change() {
        let mut p = PowerConfig {
            domains: vec![DomainConfig {
                ups: "riello".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let e = p.errors().join("\n");
        assert!(e.contains("power.domain[0].owner"), "{e}");

        p.domains.clear();
        p.ups_off_delay = Duration::from_secs(20);
        let e = p.errors().join("\n");
        assert!(
            e.contains("power.ups_off_delay")
                && e.contains("raise ups_off_delay to at least 2m00s"),
            "{e}"
        );

        p.ups_off_delay = Duration::from_secs(120);
        p.min_runtime = Duration::from_secs(100);
        let e = p.errors().join("\n");
        assert!(
            e.contains("power.min_runtime") && e.contains("3m30s"),
            "{e}"
        );

        p.min_runtime = Duration::from_secs(300);
        p.roles.insert("pi4".into(), "boss".into());
        assert!(p.errors().join("\n").contains("power.roles.pi4"));
    }

    #[test]
    fn collector_config_validation_reports_power_errors() {
        let mut c = CollectorConfig::default();
        c.power.ups_off_delay = Duration::from_secs(1);
        let err = c.validate(Path::new("c.toml")).unwrap_err().to_string();
        assert!(
            err.starts_with("c.toml: key `power.ups_off_delay`"),
            "{err}"
        );
    }

    #[test]
    fn wake_on_lan_macs_parse_and_a_bad_one_names_its_key() {
        let c: CollectorConfig = parse_toml(
            Path::new("c.toml"),
            "[power]\nwake_broadcast = \"192.168.1.255:9\"\n[power.wake_mac]\nnuc = \"52:54:00:12:34:56\"\n",
        )
        .unwrap();
        assert!(c.power.errors().is_empty(), "{:?}", c.power.errors());
        assert_eq!(
            c.power.settings().wake_macs.get("nuc"),
            Some(&[0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
        );
        let mut p = c.power.clone();
        p.wake_mac.insert("pi4".into(), "52:54:00:12:34".into());
        p.wake_broadcast = "broadcast".into();
        let e = p.errors().join("\n");
        assert!(
            e.contains("key `power.wake_mac.pi4`") && e.contains("not a MAC address"),
            "{e}"
        );
        assert!(e.contains("key `power.wake_broadcast`"), "{e}");
    }

    #[test]
    fn the_defaults_raise_no_warning() {
        let p = PowerConfig::default();
        assert!(p.errors().is_empty(), "{:?}", p.errors());
        assert!(p.warnings().is_empty(), "{:?}", p.warnings());
    }

    #[test]
    fn warnings_flag_a_tight_runtime_floor() {
        let p = PowerConfig {
            min_runtime: Duration::from_secs(220),
            ..Default::default()
        };
        assert!(p.errors().is_empty(), "{:?}", p.errors());
        let w = p.warnings().join("\n");
        assert!(w.contains("drain will be cut short"), "{w}");
    }

    #[test]
    fn the_retry_and_debounce_keys_parse_and_reach_the_machine() {
        let c: CollectorConfig = parse_toml(
            Path::new("c.toml"),
            r#"
[power]
ups_command_attempts = 5
ups_command_retry = "20s"
estimated_confirmations = 4
comm_lost_window = "15s"
uncordon_attempts = 2
"#,
        )
        .unwrap();
        let s = c.power.settings();
        assert_eq!(
            (
                s.ups_command_attempts,
                s.ups_command_retry_ms,
                s.estimated_confirmations,
                s.comm_lost_window_ms,
                s.uncordon_attempts,
                s.halt_time_ms
            ),
            (5, 20_000, 4, 15_000, 2, 90_000)
        );
        let p = PowerConfig {
            ups_command_attempts: 0,
            ..Default::default()
        };
        assert!(p.errors().join("\n").contains("power.ups_command_attempts"));
    }
}

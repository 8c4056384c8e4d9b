//! `[power]` in collector.toml: domains, roles, thresholds, timeouts, UPS
//! delays and notifications, and the checks that reject a config that makes
//! the sequence impossible.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nodewarden_common::units::{format_duration, serde_duration};
use serde::Deserialize;

use super::machine::{
    DEFAULT_COMM_LOST_WINDOW_MS, DEFAULT_ESTIMATED_CONFIRMATIONS, DEFAULT_OFFLINE_AFTER_MS,
    DEFAULT_UNCORDON_ATTEMPTS, DEFAULT_UPS_COMMAND_ATTEMPTS, DEFAULT_UPS_COMMAND_RETRY_MS, Role,
    Settings,
};
use super::wake;

/// The `[power]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PowerConfig {
    /// Run the power sequence at all (false: UPS events are only recorded).
    pub enabled: bool,
    /// The node this collector runs on (powered off last); default: the host name.
    pub collector_node: String,
    /// Time on battery before the sequence starts (flicker filter).
    #[serde(with = "serde_duration")]
    pub grace: Duration,
    /// Start at or below this battery charge, percent (0 disables).
    pub min_charge_percent: f64,
    /// Start at or below this remaining runtime (0 disables).
    #[serde(with = "serde_duration")]
    pub min_runtime: Duration,
    /// Start when the UPS stops answering while on battery.
    pub on_comm_lost: bool,
    /// Longest drain; shortened to the runtime left minus what the poweroffs need.
    #[serde(with = "serde_duration")]
    pub drain_timeout: Duration,
    /// Bounded wait for a worker or external host to confirm and disconnect.
    #[serde(with = "serde_duration")]
    pub agent_confirm_timeout: Duration,
    /// Bounded wait for the servers to confirm and disconnect.
    #[serde(with = "serde_duration")]
    pub servers_timeout: Duration,
    /// How long a node takes from the poweroff command to halted (estimate).
    #[serde(with = "serde_duration")]
    pub halt_time: Duration,
    /// The UPS cuts its output this long after the shutdown-with-return command.
    #[serde(with = "serde_duration")]
    pub ups_off_delay: Duration,
    /// The UPS restores its output this long after mains returns.
    #[serde(with = "serde_duration")]
    pub ups_restore_delay: Duration,
    /// Mains must be stable this long before nodes are uncordoned.
    #[serde(with = "serde_duration")]
    pub mains_stable: Duration,
    /// After mains is stable, uncordon even if some nodes have not come back.
    #[serde(with = "serde_duration")]
    pub return_timeout: Duration,
    /// Tries at the UPS shutdown-with-return command before it counts as failed.
    pub ups_command_attempts: u32,
    /// Wait between two tries at the UPS command.
    #[serde(with = "serde_duration")]
    pub ups_command_retry: Duration,
    /// Consecutive readings an estimated charge/runtime below its floor, or a
    /// lost UPS, must last before it starts the sequence.
    pub estimated_confirmations: u32,
    /// ... or this long, whichever comes first.
    #[serde(with = "serde_duration")]
    pub comm_lost_window: Duration,
    /// Tries at uncordoning a node after an event (30 s apart) before a notice.
    pub uncordon_attempts: u32,
    /// An agent gone at least this long when an outage starts is offline
    /// (skipped); a shorter absence is a reconnect the stage waits for.
    #[serde(with = "serde_duration")]
    pub offline_after: Duration,
    /// Armed from the config file (config management) rather than with
    /// `nodewarden power arm`; false: only what `power arm` recorded counts.
    pub armed: bool,
    /// Hosts outside Kubernetes, in the order they go down (after the servers).
    pub external: Vec<String>,
    /// Role overrides by node name: "server", "worker" or "external".
    pub roles: BTreeMap<String, String>,
    /// Wake-on-LAN MAC addresses by node name, for nodes that can be woken
    /// (x86 boards with WoL on in firmware; Raspberry Pi and Banana Pi
    /// cannot): sent a magic packet when mains is stable and they are not back.
    pub wake_mac: BTreeMap<String, String>,
    /// Where magic packets go: the LAN's broadcast address, port 9.
    pub wake_broadcast: String,
    /// Power domains; none means one domain: every node on the one UPS.
    #[serde(rename = "domain")]
    pub domains: Vec<DomainConfig>,
    /// Where events are announced.
    pub notify: NotifyConfig,
}

/// One `[[power.domain]]`: a UPS and the nodes it powers.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DomainConfig {
    /// Domain name (default: the UPS name).
    pub name: String,
    /// UPS name as its agent calls it.
    pub ups: String,
    /// Node whose agent reads that UPS.
    pub owner: String,
    /// Nodes powered by it (the owner is added if missing).
    pub nodes: Vec<String>,
}

/// `[power.notify]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Program run on each event, with NODEWARDEN_* variables (empty: none).
    pub exec: Vec<String>,
    /// URL that receives a JSON POST on each event (empty: none). http:// only.
    pub webhook: String,
    /// Per attempt.
    #[serde(with = "serde_duration")]
    pub timeout: Duration,
    /// Attempts per event before it is dropped.
    pub attempts: u32,
    /// Events waiting at most; the oldest is dropped beyond it.
    pub queue: usize,
}

impl Default for PowerConfig {
    fn default() -> Self {
        PowerConfig {
            enabled: true,
            collector_node: String::new(),
            grace: Duration::from_secs(30),
            min_charge_percent: 30.0,
            min_runtime: Duration::from_secs(300),
            on_comm_lost: true,
            drain_timeout: Duration::from_secs(120),
            agent_confirm_timeout: Duration::from_secs(30),
            servers_timeout: Duration::from_secs(60),
            // The shipped kubelet shutdownGracePeriod (60 s) and k3s's stop.
            halt_time: Duration::from_secs(90),
            // The UPS host's stage and the collector's halt, with margin.
            ups_off_delay: Duration::from_secs(180),
            // NUT's nutdrv_qx warns that some Megatec firmware stays off
            // after a restore delay under 3 minutes.
            ups_restore_delay: Duration::from_secs(180),
            mains_stable: Duration::from_secs(60),
            return_timeout: Duration::from_secs(600),
            ups_command_attempts: DEFAULT_UPS_COMMAND_ATTEMPTS,
            ups_command_retry: Duration::from_millis(DEFAULT_UPS_COMMAND_RETRY_MS as u64),
            estimated_confirmations: DEFAULT_ESTIMATED_CONFIRMATIONS,
            comm_lost_window: Duration::from_millis(DEFAULT_COMM_LOST_WINDOW_MS as u64),
            uncordon_attempts: DEFAULT_UNCORDON_ATTEMPTS,
            offline_after: Duration::from_millis(DEFAULT_OFFLINE_AFTER_MS as u64),
            armed: false,
            external: Vec::new(),
            roles: BTreeMap::new(),
            wake_mac: BTreeMap::new(),
            wake_broadcast: "255.255.255.255:9".into(),
            domains: Vec::new(),
            notify: NotifyConfig::default(),
        }
    }
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            exec: Vec::new(),
            webhook: String::new(),
            timeout: Duration::from_secs(5),
            attempts: 5,
            queue: 256,
        }
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

fn fmt(d: Duration) -> String {
    format_duration(d)
}

impl PowerConfig {
    /// The machine's thresholds and timeouts.
    pub fn settings(&self) -> Settings {
        Settings {
            grace_ms: ms(self.grace),
            min_charge_percent: self.min_charge_percent,
            min_runtime_ms: ms(self.min_runtime),
            on_comm_lost: self.on_comm_lost,
            drain_timeout_ms: ms(self.drain_timeout),
            poweroff_reserve_ms: ms(self.poweroff_reserve()),
            agent_confirm_timeout_ms: ms(self.agent_confirm_timeout),
            servers_timeout_ms: ms(self.servers_timeout),
            ups_off_delay_ms: ms(self.ups_off_delay),
            ups_restore_delay_ms: ms(self.ups_restore_delay),
            mains_stable_ms: ms(self.mains_stable),
            return_timeout_ms: ms(self.return_timeout),
            ups_command_attempts: self.ups_command_attempts,
            ups_command_retry_ms: ms(self.ups_command_retry),
            halt_time_ms: ms(self.halt_time),
            estimated_confirmations: self.estimated_confirmations,
            comm_lost_window_ms: ms(self.comm_lost_window),
            uncordon_attempts: self.uncordon_attempts,
            offline_after_ms: ms(self.offline_after),
            armed: self.armed,
            wake_macs: self
                .wake_mac
                .iter()
                .filter_map(|(n, m)| Some((n.clone(), wake::parse_mac(m).ok()?)))
                .collect(),
        }
    }

    /// What the poweroffs after the drain need at most: workers, servers,
    /// each external stage, and the last node's halt.
    pub fn poweroff_reserve(&self) -> Duration {
        let external_stages = self.external.len() as u32;
        self.agent_confirm_timeout * (1 + external_stages) + self.servers_timeout + self.halt_time
    }

    /// The role override for `node`, if configured.
    pub fn role_override(&self, node: &str) -> Option<Role> {
        if let Some(i) = self.external.iter().position(|n| n == node) {
            return Some(Role::External {
                order: i as u32 + 1,
            });
        }
        match self.roles.get(node).map(String::as_str) {
            Some("server") => Some(Role::Server),
            Some("worker") => Some(Role::Worker),
            // Unlisted external hosts go after the listed ones.
            Some("external") => Some(Role::External {
                order: self.external.len() as u32 + 1,
            }),
            _ => None,
        }
    }

    /// Errors that make the sequence impossible; each says what to change.
    pub fn errors(&self) -> Vec<String> {
        let mut e = Vec::new();
        if !(0.0..=100.0).contains(&self.min_charge_percent) {
            e.push("key `power.min_charge_percent`: must be between 0 and 100".into());
        }
        for (node, mac) in &self.wake_mac {
            if let Err(why) = wake::parse_mac(mac) {
                e.push(format!("key `power.wake_mac.{node}`: {why}"));
            }
        }
        if self.wake_broadcast.parse::<std::net::SocketAddr>().is_err() {
            e.push(format!(
                "key `power.wake_broadcast`: `{}` is not an address:port (e.g. \"192.168.1.255:9\")",
                self.wake_broadcast
            ));
        }
        for (node, role) in &self.roles {
            if !matches!(role.as_str(), "server" | "worker" | "external") {
                e.push(format!(
                    "key `power.roles.{node}`: `{role}` is not a role; use \"server\", \"worker\" or \"external\""
                ));
            }
        }
        let mut names = BTreeSet::new();
        let mut seen_nodes: BTreeMap<&str, &str> = BTreeMap::new();
        for (i, d) in self.domains.iter().enumerate() {
            let key = format!("power.domain[{i}]");
            if d.ups.is_empty() {
                e.push(format!(
                    "key `{key}.ups`: a domain needs the UPS name its agent reports (see `nodewarden ups`)"
                ));
            }
            if d.owner.is_empty() {
                e.push(format!(
                    "key `{key}.owner`: a domain needs the node whose agent reads its UPS; without it nobody can tell the UPS to cycle"
                ));
            }
            let name = domain_name(d);
            if !names.insert(name.clone()) {
                e.push(format!(
                    "key `{key}.name`: domain `{name}` is defined twice; give each a distinct name"
                ));
            }
            for n in &d.nodes {
                if let Some(other) = seen_nodes.insert(n, &d.ups) {
                    e.push(format!(
                        "key `{key}.nodes`: node `{n}` is also in the domain of UPS `{other}`; a node is powered by one UPS"
                    ));
                }
            }
        }
        if self.ups_off_delay < self.halt_time {
            e.push(format!(
                "key `power.ups_off_delay`: {} is shorter than `power.halt_time` ({}): the UPS would cut the last node before it halts; raise ups_off_delay to at least {}",
                fmt(self.ups_off_delay),
                fmt(self.halt_time),
                fmt(self.halt_time + self.agent_confirm_timeout)
            ));
        }
        if !self.min_runtime.is_zero() && self.min_runtime < self.drain_timeout + self.halt_time {
            e.push(format!(
                "key `power.min_runtime`: {} is below drain_timeout + halt_time ({}): the battery would run out before the nodes are down; raise min_runtime or lower drain_timeout",
                fmt(self.min_runtime),
                fmt(self.drain_timeout + self.halt_time)
            ));
        }
        if self.mains_stable.is_zero() {
            e.push(
                "key `power.mains_stable`: must be at least 1s (a flicker must not uncordon)"
                    .into(),
            );
        }
        if self.ups_command_attempts == 0 || self.uncordon_attempts == 0 {
            e.push(
                "key `power.ups_command_attempts` / `power.uncordon_attempts`: must be at least 1"
                    .into(),
            );
        }
        if self.notify.attempts == 0 || self.notify.queue == 0 {
            e.push("key `power.notify`: `attempts` and `queue` must be at least 1".into());
        }
        if !self.notify.webhook.is_empty() && !self.notify.webhook.starts_with("http://") {
            e.push(format!(
                "key `power.notify.webhook`: `{}` must be an http:// URL (put a TLS proxy in front for https)",
                self.notify.webhook
            ));
        }
        e
    }

    /// Things that will probably go wrong; `nodewarden plan` shows them.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let need = self.drain_timeout + self.poweroff_reserve();
        if !self.min_runtime.is_zero() && self.min_runtime < need {
            w.push(format!(
                "power.min_runtime {} is less than a full drain plus the poweroff waits ({}): the drain will be cut short when the sequence starts at the floor",
                fmt(self.min_runtime),
                fmt(need)
            ));
        }
        if self.ups_off_delay >= self.halt_time
            && self.ups_off_delay < self.halt_time + self.agent_confirm_timeout
        {
            w.push(format!(
                "power.ups_off_delay {} leaves less than agent_confirm_timeout of margin over halt_time {}",
                fmt(self.ups_off_delay),
                fmt(self.halt_time)
            ));
        }
        if self.ups_off_delay > Duration::from_secs(600) {
            w.push("power.ups_off_delay above 10m: Megatec UPSes accept at most 10 minutes".into());
        }
        if !self.ups_restore_delay.as_secs().is_multiple_of(60) {
            w.push(format!(
                "power.ups_restore_delay {}: Megatec UPSes count whole minutes; it will be rounded up",
                fmt(self.ups_restore_delay)
            ));
        }
        if self.min_charge_percent == 0.0 && self.min_runtime.is_zero() {
            w.push("no charge or runtime floor: only the grace and the UPS low-battery flag start the sequence".into());
        }
        w
    }
}

/// A domain's name: its own, else its UPS's.
pub fn domain_name(d: &DomainConfig) -> String {
    if d.name.is_empty() {
        d.ups.clone()
    } else {
        d.name.clone()
    }
}

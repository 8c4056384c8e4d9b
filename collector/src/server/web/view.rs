//! The page's view model: the hub's, store's and orchestrator's values
//! turned into the words and levels a tile shows, by the CLI's own rules
//! (`cli::nodes::node_health`, `cli::ups::status_level`, ...). Pure.

use nodewarden_proto::throttle;
use nodewarden_proto::v1::{Event, NodeInfo, PowerDomain, UpsStatus};

use crate::cli::events::{severity_level, severity_name};
use crate::cli::format::{format_ago, format_bytes_of, format_timestamp};
use crate::cli::nodes::node_health;
use crate::cli::power::{phase_level, ups_line};
use crate::cli::readings::{flag_meaning, meaningful_flags, memory_used_bytes};
use crate::cli::style::Level;
use crate::cli::ups::{charge, runtime, status_level, status_words};
use crate::state::hub::LiveUps;

use super::trend::Trend;

/// One node's tile.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTile {
    pub name: String,
    pub board: String,
    pub role: String,
    pub online: bool,
    /// Why it is offline ("" when online).
    pub offline_reason: String,
    pub last_seen: String,
    /// The worst level of the readings (offline is critical).
    pub level: Level,
    /// "61.2 °C" (the CLI's format) and its level.
    pub temperature: Option<(String, Level)>,
    pub trend: Trend,
    /// Throttle flags active now ("under-voltage"), empty when none.
    pub throttle_now: Vec<&'static str>,
    /// Flags seen since boot but not now.
    pub throttle_since_boot: Vec<&'static str>,
    pub throttle_level: Level,
    /// "1.2/3.7 GiB" and its level.
    pub memory: Option<(String, Level)>,
    /// "0.42 0.30 0.25".
    pub load: Option<String>,
    /// "12 %".
    pub cpu: Option<String>,
}

/// Builds a node's tile; `trend` comes from the page's temperature memory.
pub fn node_tile(node: &NodeInfo, trend: Trend, now_ms: i64) -> NodeTile {
    let health = node_health(node);
    let live = node.latest.as_ref().filter(|_| node.online);
    let (mut now, mut since) = (Vec::new(), Vec::new());
    if let Some(t) = live.and_then(|s| s.throttling.as_ref()) {
        for f in meaningful_flags(t) {
            if t.get_throttled & f.bit != 0 {
                now.push(flag_meaning(f));
            } else if t.get_throttled & (f.bit << throttle::OCCURRED_SHIFT) != 0 {
                since.push(flag_meaning(f));
            }
        }
    }
    NodeTile {
        name: node.name.clone(),
        board: node.board_model.clone(),
        role: node.role.clone(),
        online: node.online,
        offline_reason: node.offline_reason.clone(),
        last_seen: format_ago(node.last_seen_ms, now_ms),
        level: health.worst,
        temperature: health
            .temperature
            .map(|(c, level)| (format!("{c:.1} °C"), level)),
        trend,
        throttle_now: now,
        throttle_since_boot: since,
        throttle_level: health.throttle.map_or(Level::Normal, |t| t.1),
        memory: live
            .and_then(|s| s.memory.as_ref())
            .zip(health.memory)
            .map(|(m, (_, level))| (format_bytes_of(memory_used_bytes(m), m.total_bytes), level)),
        load: live
            .and_then(|s| s.load.as_ref())
            .map(|l| format!("{:.2} {:.2} {:.2}", l.load1, l.load5, l.load15)),
        cpu: live
            .and_then(|s| s.cpu.as_ref())
            .map(|c| format!("{:.0} %", c.usage_percent)),
    }
}

/// One UPS's tile.
#[derive(Debug, Clone, PartialEq)]
pub struct UpsTile {
    pub name: String,
    /// The agent that reads it.
    pub node: String,
    /// Whether that agent is connected (else the reading is old).
    pub agent_online: bool,
    /// "on battery, low battery" or "communication lost: ...".
    pub status: String,
    pub level: Level,
    pub charge: Option<String>,
    pub runtime: Option<String>,
    pub load: Option<String>,
    pub input_voltage: Option<String>,
    pub read_ago: String,
    /// Its newest events, newest first: (time, message).
    pub events: Vec<(String, String)>,
}

/// Events kept on a UPS tile.
const UPS_EVENTS: usize = 3;

/// Builds a UPS tile; `events` is the log, newest first.
pub fn ups_tile(ups: &LiveUps, events: &[Event], now_ms: i64) -> UpsTile {
    let s: &UpsStatus = &ups.status;
    let status = if s.communication_ok {
        status_words(s)
    } else {
        format!("communication lost: {}", s.communication_error)
    };
    UpsTile {
        name: s.ups_name.clone(),
        node: ups.node.clone(),
        agent_online: ups.online,
        status: if status.is_empty() {
            "unknown".into()
        } else {
            status
        },
        level: status_level(s),
        charge: charge(s),
        runtime: runtime(s),
        load: s.load_percent.map(|l| format!("{l:.0} %")),
        input_voltage: s.input_voltage_volts.map(|v| format!("{v:.0} V")),
        read_ago: format_ago(s.timestamp_ms, now_ms),
        events: events
            .iter()
            .filter(|e| e.subject == s.ups_name)
            .take(UPS_EVENTS)
            .map(|e| (format_timestamp(e.timestamp_ms), e.message.clone()))
            .collect(),
    }
}

/// One power domain, as `nodewarden power` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainBox {
    pub name: String,
    /// "riello on node-a", or a note that no UPS reported yet.
    pub ups: String,
    /// "on battery, charge 80%".
    pub ups_state: String,
    pub phase: String,
    pub phase_level: Level,
    pub phase_for: String,
    /// What the sequence does now.
    pub now: String,
    pub reason: String,
    /// "node-a (worker): cordon done, drain running, power -".
    pub nodes: Vec<String>,
    /// (time, "+1m05s", text), oldest first.
    pub timeline: Vec<(String, String, String)>,
}

/// Builds a domain box from the Admin API's message.
pub fn domain_box(d: &PowerDomain, now_ms: i64) -> DomainBox {
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    let start = d.timeline.first().map_or(0, |e| e.at_ms);
    DomainBox {
        name: d.name.clone(),
        ups: if d.ups.is_empty() {
            "no UPS reported yet".into()
        } else {
            format!("{} on {}", d.ups, d.owner)
        },
        ups_state: ups_line(d),
        phase: d.phase.clone(),
        phase_level: phase_level(&d.phase),
        phase_for: format_ago(d.phase_since_ms, now_ms)
            .trim_end_matches(" ago")
            .to_owned(),
        now: if d.held_by.is_empty() {
            d.now.clone()
        } else {
            format!("{}; held by {}", d.now, d.held_by)
        },
        reason: d.reason.clone(),
        nodes: d
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "{} ({}, {}): cordon {}, drain {}, power {}",
                    n.name,
                    n.role,
                    if n.connected { "connected" } else { "offline" },
                    dash(&n.cordon),
                    dash(&n.drain),
                    dash(&n.power)
                )
            })
            .collect(),
        timeline: d
            .timeline
            .iter()
            .map(|e| {
                let offset = std::time::Duration::from_millis((e.at_ms - start).max(0) as u64);
                (
                    format_timestamp(e.at_ms),
                    format!("+{}", nodewarden_common::units::format_duration(offset)),
                    e.text.clone(),
                )
            })
            .collect(),
    }
}

/// One line of the events log.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub time: String,
    pub severity: &'static str,
    pub level: Level,
    pub subject: String,
    pub message: String,
}

/// Builds an events-log line.
pub fn event_row(e: &Event) -> EventRow {
    EventRow {
        time: format_timestamp(e.timestamp_ms),
        severity: severity_name(e.severity()),
        level: severity_level(e.severity()),
        subject: e.subject.clone(),
        message: e.message.clone(),
    }
}

/// Everything the overview shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Overview {
    pub nodes: Vec<NodeTile>,
    pub ups: Vec<UpsTile>,
    pub domains: Vec<DomainBox>,
    /// The power sequence runs (`[power] enabled`); else UPS events are
    /// only recorded.
    pub power_enabled: bool,
    /// Not armed: a power cut is only recorded with what would be done.
    pub observing: bool,
    /// Newest first.
    pub events: Vec<EventRow>,
}

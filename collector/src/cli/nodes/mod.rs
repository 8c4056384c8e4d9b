//! `nodewarden nodes` (one line per node) and `nodewarden node NAME` (one
//! node in full).

use std::time::Duration;

use nodewarden_common::units::format_duration;
use nodewarden_proto::throttle;
use nodewarden_proto::v1::{KubeCondition, NodeInfo, Throttling};

use super::readings::{cpu_temperature_celsius, meaningful_flags, memory_used_ratio};
use super::style::Level;

mod detail;
mod table;

pub use detail::render_node;
pub use table::{render_nodes, render_nodes_to_fit};

/// CPU at or above this is critical (Pi firmware soft-throttles at 80 °C).
pub const TEMP_CRITICAL_CELSIUS: f64 = 80.0;
/// CPU at or above this deserves a look.
pub const TEMP_WARNING_CELSIUS: f64 = 70.0;
/// Memory share in use at or above this deserves a look.
pub const MEMORY_WARNING_RATIO: f64 = 0.9;

/// How worrying a CPU temperature is.
pub fn temperature_level(celsius: f64) -> Level {
    if celsius >= TEMP_CRITICAL_CELSIUS {
        Level::Critical
    } else if celsius >= TEMP_WARNING_CELSIUS {
        Level::Warning
    } else {
        Level::Normal
    }
}

/// How worrying a throttle word is: under-voltage now is critical; any other
/// flag now, or under-voltage earlier since boot, is a warning.
pub fn throttle_level(word: u32) -> Level {
    if word & throttle::UNDER_VOLTAGE != 0 {
        Level::Critical
    } else if throttle::active_now(word).next().is_some()
        || word & (throttle::UNDER_VOLTAGE << throttle::OCCURRED_SHIFT) != 0
    {
        Level::Warning
    } else {
        Level::Normal
    }
}

/// Short flags for a table: flags active now in upper case, flags seen only
/// earlier since boot in lower case ("UV THR", "thr", "ok").
pub fn throttle_summary(throttling: &Throttling) -> String {
    let word = throttling.get_throttled;
    let flags = meaningful_flags(throttling);
    let mut parts: Vec<String> = flags
        .iter()
        .filter(|f| word & f.bit != 0)
        .map(|f| f.short.to_owned())
        .collect();
    parts.extend(
        flags
            .iter()
            .filter(|f| word & f.bit == 0 && word & (f.bit << throttle::OCCURRED_SHIFT) != 0)
            .map(|f| f.short.to_lowercase()),
    );
    if parts.is_empty() {
        "ok".to_owned()
    } else {
        parts.join(" ")
    }
}

/// How worrying each live reading of a node is, by the rules above: the one
/// judgement `nodes` and the web page both show. An offline node's last
/// sample is history, not state, so it has no readings here.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct NodeHealth {
    /// CPU temperature (°C) and its level.
    pub temperature: Option<(f64, Level)>,
    /// The throttle word and its level.
    pub throttle: Option<(u32, Level)>,
    /// Memory in use (0-1) and its level.
    pub memory: Option<(f64, Level)>,
    /// The worst of them; offline is critical.
    pub worst: Level,
}

/// Judges `node`'s live readings.
pub fn node_health(node: &NodeInfo) -> NodeHealth {
    let live = node.latest.as_ref().filter(|_| node.online);
    let temperature = live
        .and_then(cpu_temperature_celsius)
        .map(|c| (c, temperature_level(c)));
    let throttle = live
        .and_then(|s| s.throttling.as_ref())
        .map(|t| (t.get_throttled, throttle_level(t.get_throttled)));
    let memory = live
        .and_then(|s| s.memory.as_ref())
        .and_then(memory_used_ratio)
        .map(|r| {
            let level = if r >= MEMORY_WARNING_RATIO {
                Level::Warning
            } else {
                Level::Normal
            };
            (r, level)
        });
    let worst = if node.online {
        [
            temperature.map(|t| t.1),
            throttle.map(|t| t.1),
            memory.map(|m| m.1),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(Level::Normal)
    } else {
        Level::Critical
    };
    NodeHealth {
        temperature,
        throttle,
        memory,
        worst,
    }
}

/// nodewarden's Kubernetes conditions that are not False ("UnderVoltage",
/// "HighTemperature=Unknown"), "ok" when all are False, "-" when none were
/// written (no Kubernetes API). `nodes`, `power` and `plan` all say it so.
pub fn kube_summary(conditions: &[KubeCondition], taints: &[String]) -> (String, Level) {
    if conditions.is_empty() {
        return ("-".into(), Level::Normal);
    }
    let mut level = Level::Normal;
    let mut parts = Vec::new();
    for c in conditions.iter().filter(|c| c.status != "False") {
        if c.status == "True" {
            level = Level::Critical;
            parts.push(c.r#type.clone());
        } else {
            level = level.max(Level::Warning);
            parts.push(format!("{}={}", c.r#type, c.status));
        }
    }
    if !taints.is_empty() {
        level = level.max(Level::Warning);
        parts.push(format!("tainted({})", taints.len()));
    }
    if parts.is_empty() {
        ("ok".into(), Level::Normal)
    } else {
        (parts.join(","), level)
    }
}

/// The text, or "-" when empty.
fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

/// Uptime as a duration, "-" when unknown.
fn format_uptime(seconds: f64) -> String {
    if seconds.is_finite() && seconds >= 0.0 {
        format_duration(Duration::from_secs_f64(seconds))
    } else {
        "-".to_owned()
    }
}

#[cfg(test)]
pub(crate) mod tests;

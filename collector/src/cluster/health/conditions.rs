//! nodewarden's node conditions: what each says now, when it last changed,
//! and when one must be written. Pure: observations and a clock in, the
//! conditions to write out; the effect loop writes them and reports back.
//!
//! Semantics follow the API's (and node-problem-detector's):
//! `lastTransitionTime` moves only when the status changes,
//! `lastHeartbeatTime` on every write. A status change is written at most
//! once per `min_write_interval` (changes in between fold into the next
//! write), and an unchanged condition only every `heartbeat`, so a flapping
//! sensor costs a bounded number of API writes.

use std::collections::{BTreeMap, VecDeque};

use super::rules::{HIGH_TEMPERATURE_CELSIUS, Observation};

/// One of nodewarden's condition types.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Kind {
    /// Under-voltage now (Raspberry Pi firmware or hwmon alarm).
    UnderVoltage,
    /// The firmware caps the clock or throttles now.
    ThermalThrottling,
    /// The CPU is at or above the critical temperature.
    HighTemperature,
    /// The node is Ready but its nodewarden agent is gone.
    NodewardenAgentDown,
    /// The UPS powering the node is on battery.
    OnBattery,
}

impl Kind {
    /// Every kind, in the order `kubectl describe node` lists ours.
    pub const ALL: [Kind; 5] = [
        Kind::UnderVoltage,
        Kind::ThermalThrottling,
        Kind::HighTemperature,
        Kind::NodewardenAgentDown,
        Kind::OnBattery,
    ];

    /// The condition type as written on the node.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::UnderVoltage => "UnderVoltage",
            Kind::ThermalThrottling => "ThermalThrottling",
            Kind::HighTemperature => "HighTemperature",
            Kind::NodewardenAgentDown => "NodewardenAgentDown",
            Kind::OnBattery => "OnBattery",
        }
    }

    /// The kind a condition type names, if it is one of ours.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// (reason when True, reason when False).
    fn reasons(self) -> (&'static str, &'static str) {
        match self {
            Kind::UnderVoltage => ("UnderVoltageDetected", "NoUnderVoltage"),
            Kind::ThermalThrottling => ("ThrottlingActive", "NotThrottled"),
            Kind::HighTemperature => ("TemperatureHigh", "TemperatureNormal"),
            Kind::NodewardenAgentDown => ("AgentDisconnected", "AgentConnected"),
            Kind::OnBattery => ("UpsOnBattery", "UpsOnMains"),
        }
    }

    /// What the condition is about, for messages ("under-voltage").
    fn what(self) -> &'static str {
        match self {
            Kind::UnderVoltage => "under-voltage",
            Kind::ThermalThrottling => "throttling",
            Kind::HighTemperature => "high CPU temperature",
            Kind::NodewardenAgentDown => "agent down",
            Kind::OnBattery => "on battery",
        }
    }
}

/// A condition's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Status {
    /// The problem is there.
    True,
    /// It is not.
    False,
    /// No current readings to tell.
    Unknown,
}

impl Status {
    /// As written on the node.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }

    /// Parses the API's spelling.
    pub fn parse(s: &str) -> Status {
        match s {
            "True" => Status::True,
            "False" => Status::False,
            _ => Status::Unknown,
        }
    }
}

/// A condition as written (or to be written) on the node.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Condition {
    /// Its type.
    pub kind: Kind,
    /// True, False or Unknown.
    pub status: Status,
    /// One CamelCase word.
    pub reason: String,
    /// What, since when, how often.
    pub message: String,
    /// When the status last changed, unix ms.
    pub transition_ms: i64,
    /// When it was last written, unix ms.
    pub heartbeat_ms: i64,
}

/// How often conditions are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WritePolicy {
    /// An unchanged condition is rewritten (lastHeartbeatTime) this often.
    pub heartbeat_ms: i64,
    /// A node's conditions are written at most once per this.
    pub min_write_interval_ms: i64,
}

/// Rising edges remembered per condition (a day of a sensor flapping every
/// few seconds would be more; the count then reads "at least").
const MAX_RAISED: usize = 4096;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// What one condition has observed.
#[derive(Debug, Clone, Default, PartialEq)]
struct Track {
    status: Option<Status>,
    since_ms: i64,
    /// When it last turned True, within the last 24 h.
    raised: VecDeque<i64>,
    /// The last known (True/False) value, so a reconnect is not an occurrence.
    last_known: Option<bool>,
    detail: String,
}

impl Track {
    fn observe(&mut self, now: i64, status: Status, detail: String) {
        if self.status != Some(status) {
            self.status = Some(status);
            self.since_ms = now;
        }
        if status == Status::True && self.last_known != Some(true) {
            if self.raised.len() == MAX_RAISED {
                self.raised.pop_front();
            }
            self.raised.push_back(now);
        }
        if status != Status::Unknown {
            self.last_known = Some(status == Status::True);
        }
        while self.raised.front().is_some_and(|t| now - t > DAY_MS) {
            self.raised.pop_front();
        }
        self.detail = detail;
    }
}

/// The conditions of one node: observations and what was last written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeConditions {
    tracks: BTreeMap<Kind, Track>,
    written: BTreeMap<Kind, Condition>,
    last_write_ms: Option<i64>,
}

/// RFC 3339 to the second, as the API writes metav1.Time.
pub fn rfc3339(ms: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(ms.div_euclid(1000))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

impl NodeConditions {
    /// Takes what the node already carries (after a collector restart), so
    /// lastTransitionTime survives it.
    pub fn seed(&mut self, existing: Vec<Condition>) {
        if self.last_write_ms.is_none() {
            for c in existing {
                self.written.insert(c.kind, c);
            }
        }
    }

    /// Records one check. `kube_ready`: the node's kubelet reports Ready.
    pub fn observe(&mut self, now: i64, o: &Observation, kube_ready: bool) {
        let unknown = || (Status::Unknown, String::new());
        let hw = |cond: bool, detail: String| {
            if o.agent_online {
                (if cond { Status::True } else { Status::False }, detail)
            } else {
                unknown()
            }
        };
        let temp = o
            .cpu_celsius
            .map(|c| format!("CPU {c:.1} °C (threshold {HIGH_TEMPERATURE_CELSIUS:.0} °C)"))
            .unwrap_or_default();
        let rows = [
            (Kind::UnderVoltage, hw(o.under_voltage, String::new())),
            (
                Kind::ThermalThrottling,
                hw(!o.throttling.is_empty(), o.throttling.join(", ")),
            ),
            (Kind::HighTemperature, hw(o.high_temperature(), temp)),
            (
                Kind::NodewardenAgentDown,
                (
                    if !o.agent_online && kube_ready {
                        Status::True
                    } else {
                        Status::False
                    },
                    String::new(),
                ),
            ),
        ];
        for (kind, (status, detail)) in rows {
            self.tracks
                .entry(kind)
                .or_default()
                .observe(now, status, detail);
        }
        if let Some(ups) = &o.ups {
            let status = if o.on_battery {
                Status::True
            } else {
                Status::False
            };
            self.tracks.entry(Kind::OnBattery).or_default().observe(
                now,
                status,
                format!("UPS {ups}"),
            );
        }
    }

    /// What each observed condition should say now.
    fn desired(&self, kind: Kind, t: &Track) -> (Status, String, String) {
        let status = t.status.unwrap_or(Status::Unknown);
        let (on, off) = kind.reasons();
        let what = kind.what();
        let n = t.raised.len();
        let often = match (n, t.raised.back()) {
            (0, _) | (_, None) => format!("no {what} in the last 24 h"),
            (1, Some(last)) => format!("{what} once in the last 24 h, at {}", rfc3339(*last)),
            (n, Some(last)) => format!(
                "{what} {n} times in the last 24 h, last at {}",
                rfc3339(*last)
            ),
        };
        let detail = if t.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", t.detail)
        };
        match status {
            Status::True => (
                status,
                on.to_string(),
                format!("{what} since {}{detail}; {often}", rfc3339(t.since_ms)),
            ),
            Status::False => (status, off.to_string(), format!("{often}{detail}")),
            Status::Unknown => (
                status,
                "NoCurrentReadings".to_string(),
                format!(
                    "the nodewarden agent is not connected, so there are no current readings; {often}"
                ),
            ),
        }
    }

    /// The conditions to write now, or None when no write is due.
    pub fn due(&self, now: i64, policy: WritePolicy) -> Option<Vec<Condition>> {
        let since_write = self.last_write_ms.map(|t| now - t);
        let mut changed = false;
        let mut out = Vec::new();
        for (kind, t) in &self.tracks {
            let (status, reason, message) = self.desired(*kind, t);
            let prev = self.written.get(kind);
            let same = prev.is_some_and(|p| p.status == status && p.reason == reason);
            changed |= !same;
            out.push(Condition {
                kind: *kind,
                status,
                reason,
                message,
                transition_ms: prev
                    .filter(|p| p.status == status)
                    .map_or(now, |p| p.transition_ms),
                heartbeat_ms: now,
            });
        }
        if out.is_empty() {
            return None;
        }
        let due = match since_write {
            None => true,
            Some(s) => (changed && s >= policy.min_write_interval_ms) || s >= policy.heartbeat_ms,
        };
        due.then_some(out)
    }

    /// The write of `conds` succeeded; returns the conditions whose status
    /// changed (for Events), with the status they had before.
    pub fn written(&mut self, now: i64, conds: Vec<Condition>) -> Vec<(Option<Status>, Condition)> {
        self.last_write_ms = Some(now);
        let mut changed = Vec::new();
        for c in conds {
            let before = self.written.get(&c.kind).map(|p| p.status);
            // A first write of "all is well" is not news; a problem is.
            if before != Some(c.status) && (before.is_some() || c.status == Status::True) {
                changed.push((before, c.clone()));
            }
            self.written.insert(c.kind, c);
        }
        changed
    }

    /// Each condition's status as last observed (not yet written, maybe).
    pub fn observed(&self) -> BTreeMap<Kind, Status> {
        self.tracks
            .iter()
            .filter_map(|(k, t)| Some((*k, t.status?)))
            .collect()
    }

    /// The conditions as last written, for `nodewarden nodes`.
    pub fn current(&self) -> Vec<Condition> {
        self.written.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests;

//! Kubernetes Events on the Node object (core/v1, as the kubelet writes its
//! own): one per condition transition nodewarden writes, and one per step
//! of the power sequence. Pure: the objects; `effects` posts them.

use serde_json::{Value, json};

use super::conditions::{Condition, Status, rfc3339};

/// Where node events live (the kubelet's choice too: nodes have no namespace).
pub const EVENT_NAMESPACE: &str = "default";
/// `source.component` and `reportingComponent`.
pub const COMPONENT: &str = "nodewarden";

/// One event about a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEvent {
    /// The node's name.
    pub node: String,
    /// CamelCase reason (`UnderVoltageDetected`, `CordonedByNodewarden`).
    pub reason: String,
    /// What happened.
    pub message: String,
    /// `Warning` rather than `Normal`.
    pub warning: bool,
}

/// The power sequence's steps, as events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerStep {
    /// Cordoned ahead of a drain.
    Cordoned,
    /// Drained: pods evicted.
    Drained,
    /// Told to power off.
    PoweredOff,
    /// Uncordoned after mains returned (or the sequence was cancelled).
    Uncordoned,
}

impl NodeEvent {
    /// The event for a condition whose status nodewarden changed.
    pub fn transition(node: &str, before: Option<Status>, c: &Condition) -> NodeEvent {
        // Every condition of ours names a problem: True (or not knowing) is the warning.
        let bad = c.status != Status::False;
        let from = before.map_or("unset", Status::as_str);
        NodeEvent {
            node: node.to_string(),
            reason: c.reason.clone(),
            message: format!(
                "{} {} (was {from}): {}",
                c.kind.as_str(),
                c.status.as_str(),
                c.message
            ),
            warning: bad,
        }
    }

    /// The event for a step of the power sequence; `detail` says more.
    pub fn power(node: &str, step: PowerStep, detail: &str) -> NodeEvent {
        let (reason, what, warning) = match step {
            PowerStep::Cordoned => ("CordonedByNodewarden", "cordoned by nodewarden", true),
            PowerStep::Drained => ("DrainedByNodewarden", "drained by nodewarden", true),
            PowerStep::PoweredOff => ("PoweredOffByNodewarden", "powered off by nodewarden", true),
            PowerStep::Uncordoned => ("UncordonedByNodewarden", "uncordoned by nodewarden", false),
        };
        let message = if detail.is_empty() {
            what.to_string()
        } else {
            format!("{what}: {detail}")
        };
        NodeEvent {
            node: node.to_string(),
            reason: reason.into(),
            message,
            warning,
        }
    }

    /// The core/v1 Event object; `seq` makes the name unique per collector run.
    pub fn object(&self, now_ms: i64, seq: u64, host: &str) -> Value {
        let t = rfc3339(now_ms);
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": format!("{}.{:x}{:04x}", self.node, now_ms, seq & 0xffff),
                "namespace": EVENT_NAMESPACE,
            },
            // The kubelet uses the node's name as its uid in node events;
            // `kubectl describe node` looks them up by it.
            "involvedObject": {"kind": "Node", "apiVersion": "v1", "name": self.node, "uid": self.node},
            "reason": self.reason,
            "message": self.message,
            "type": if self.warning { "Warning" } else { "Normal" },
            "source": {"component": COMPONENT, "host": host},
            "reportingComponent": COMPONENT,
            "reportingInstance": host,
            "firstTimestamp": t,
            "lastTimestamp": t,
            "count": 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::health::Kind;

    #[test]
    fn a_transition_event_names_the_condition_and_what_it_was() {
        let c = Condition {
            kind: Kind::UnderVoltage,
            status: Status::True,
            reason: "UnderVoltageDetected".into(),
            message: "under-voltage since x".into(),
            transition_ms: 0,
            heartbeat_ms: 0,
        };
        let e = NodeEvent::transition("pi", Some(Status::False), &c);
        assert!(e.warning);
        assert_eq!(
            e.message,
            "UnderVoltage True (was False): under-voltage since x"
        );
        let o = e.object(1_000, 7, "collector");
        assert_eq!(o["involvedObject"]["kind"], "Node");
        assert_eq!(o["type"], "Warning");
        assert_eq!(o["firstTimestamp"], "1970-01-01T00:00:01Z");
    }

    #[test]
    fn power_steps_read_as_what_nodewarden_did() {
        let e = NodeEvent::power("w1", PowerStep::Uncordoned, "mains is back");
        assert_eq!(e.reason, "UncordonedByNodewarden");
        assert_eq!(e.message, "uncordoned by nodewarden: mains is back");
        assert!(!e.warning);
    }
}

//! Small writes and their reads: node records, UPS statuses and power
//! domain states (events are written here too, read in `events`).

use nodewarden_proto::v1::{Event, NodeInfo, Sample, UpsInfo, UpsStatus};
use prost::Message;
use redb::{Durability, ReadableTable};

use super::{EVENTS, LATEST, NODES, POWER, POWER_ARM, Store, StoreError, UPS};

/// What the collector remembers about a node across restarts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeRecord {
    /// Node name.
    pub name: String,
    /// "server", "worker" or "".
    pub role: String,
    /// Board model from the agent.
    pub board_model: String,
    /// CPU architecture.
    pub arch: String,
    /// Kernel release.
    pub kernel_version: String,
    /// PRETTY_NAME of the OS.
    pub os_name: String,
    /// nodewarden-agent version.
    pub agent_version: String,
    /// First contact, unix ms.
    pub first_seen_ms: i64,
    /// Last message, unix ms.
    pub last_seen_ms: i64,
    /// Whether a stream is open now.
    pub online: bool,
    /// Why it is offline; empty when online.
    pub offline_reason: String,
    /// The agent's sampling interval.
    pub sample_interval_ms: u32,
    /// The newest stored sample.
    pub latest: Option<Sample>,
}

/// One small write: a node's record, a UPS's latest status or an event.
#[derive(Debug, Clone)]
pub enum Record {
    /// Creates or replaces the node's record.
    Node(NodeRecord),
    /// Replaces the latest status of one UPS read by `node`'s agent.
    Ups {
        node: String,
        status: UpsStatus,
        last_change_ms: i64,
    },
    /// Appends to the events log.
    Event(Event),
}

impl Record {
    /// What a newer record replaces: the same node's record or the same
    /// UPS's status. Events replace nothing.
    pub fn replaces(&self) -> Option<(u8, &str, &str)> {
        match self {
            Record::Node(r) => Some((0, r.name.as_str(), "")),
            Record::Ups { node, status, .. } => Some((1, node.as_str(), status.ups_name.as_str())),
            Record::Event(_) => None,
        }
    }
}

/// A record encoded outside the write transaction.
enum Encoded {
    Node {
        name: String,
        bytes: Vec<u8>,
    },
    Ups {
        node: String,
        ups_name: String,
        bytes: Vec<u8>,
    },
    Event {
        ts: i64,
        bytes: Vec<u8>,
    },
}

impl Encoded {
    fn of(record: &Record) -> Encoded {
        match record {
            Record::Node(r) => {
                let info = NodeInfo::from(r.clone());
                Encoded::Node {
                    name: info.name.clone(),
                    bytes: info.encode_to_vec(),
                }
            }
            Record::Ups {
                node,
                status,
                last_change_ms,
            } => Encoded::Ups {
                node: node.clone(),
                ups_name: status.ups_name.clone(),
                bytes: UpsInfo {
                    node: node.clone(),
                    status: Some(status.clone()),
                    last_change_ms: *last_change_ms,
                }
                .encode_to_vec(),
            },
            Record::Event(e) => Encoded::Event {
                ts: e.timestamp_ms,
                bytes: e.encode_to_vec(),
            },
        }
    }
}

impl From<NodeRecord> for NodeInfo {
    fn from(r: NodeRecord) -> NodeInfo {
        NodeInfo {
            name: r.name,
            role: r.role,
            board_model: r.board_model,
            arch: r.arch,
            kernel_version: r.kernel_version,
            os_name: r.os_name,
            agent_version: r.agent_version,
            first_seen_ms: r.first_seen_ms,
            last_seen_ms: r.last_seen_ms,
            online: r.online,
            offline_reason: r.offline_reason,
            latest: r.latest,
            peer_address: String::new(),
            sample_interval_ms: r.sample_interval_ms,
            can_power_off: String::new(),
            k3s_role: String::new(),
            kube_conditions: Vec::new(),
            kube_labels: Default::default(),
            kube_taints: Vec::new(),
        }
    }
}

impl From<NodeInfo> for NodeRecord {
    fn from(i: NodeInfo) -> NodeRecord {
        NodeRecord {
            name: i.name,
            role: i.role,
            board_model: i.board_model,
            arch: i.arch,
            kernel_version: i.kernel_version,
            os_name: i.os_name,
            agent_version: i.agent_version,
            first_seen_ms: i.first_seen_ms,
            last_seen_ms: i.last_seen_ms,
            online: i.online,
            offline_reason: i.offline_reason,
            sample_interval_ms: i.sample_interval_ms,
            latest: i.latest,
        }
    }
}

impl Store {
    /// Creates or replaces a node's record.
    pub fn put_node(&self, record: NodeRecord) -> Result<(), StoreError> {
        self.apply(&[Record::Node(record)])
    }

    /// Writes node records, UPS statuses and events in one transaction, in
    /// the order given. Durable at once when it holds an event; otherwise
    /// (the minute's checkpoint of every node's latest sample, connects and
    /// disconnects) without a sync of its own: the next durable commit, at
    /// most `sync_interval` later, makes it durable. A power cut before
    /// that leaves the previous record, and a restarted collector marks every
    /// node offline until it reconnects anyway.
    pub fn apply(&self, records: &[Record]) -> Result<(), StoreError> {
        let encoded: Vec<Encoded> = records.iter().map(Encoded::of).collect();
        let durability = if records.iter().any(|r| matches!(r, Record::Event(_))) {
            Durability::Immediate
        } else {
            Durability::None
        };
        self.write_with(durability, |txn, _, _| {
            let mut nodes = txn.open_table(NODES)?;
            let mut ups = txn.open_table(UPS)?;
            let mut events = txn.open_table(EVENTS)?;
            for e in &encoded {
                match e {
                    Encoded::Node { name, bytes } => {
                        nodes.insert(name.as_str(), bytes.as_slice())?;
                    }
                    Encoded::Ups {
                        node,
                        ups_name,
                        bytes,
                    } => {
                        ups.insert((node.as_str(), ups_name.as_str()), bytes.as_slice())?;
                    }
                    Encoded::Event { ts, bytes } => {
                        // Several events in one millisecond keep their order.
                        let next = events
                            .range((*ts, 0)..=(*ts, u32::MAX))?
                            .next_back()
                            .transpose()?
                            .map_or(0, |(k, _)| k.value().1.saturating_add(1));
                        events.insert((*ts, next), bytes.as_slice())?;
                    }
                }
            }
            Ok(())
        })?;
        self.counters
            .recorded(records.iter().filter_map(|r| match r {
                Record::Event(e) => Some(e),
                _ => None,
            }));
        Ok(())
    }

    /// Every node ever recorded, by name, each with its newest stored sample.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let file = self.file.clone();
        let decoded = self.read(|txn| {
            let latest = txn.open_table(LATEST)?;
            let mut out = Vec::new();
            for entry in txn.open_table(NODES)?.iter()? {
                let (name, bytes) = entry?;
                let info = NodeInfo::decode(bytes.value());
                let newest = latest.get(name.value())?.map(|g| Sample::decode(g.value()));
                out.push((info, newest));
            }
            Ok(out)
        })?;
        let decode_err = |what: &'static str, e: prost::DecodeError| StoreError::Decode {
            what,
            file: file.clone(),
            detail: e.to_string(),
        };
        let mut nodes = Vec::with_capacity(decoded.len());
        for (info, newest) in decoded {
            let mut record = NodeRecord::from(info.map_err(|e| decode_err("node record", e))?);
            if let Some(sample) = newest.transpose().map_err(|e| decode_err("sample", e))?
                && record
                    .latest
                    .as_ref()
                    .is_none_or(|l| l.timestamp_ms <= sample.timestamp_ms)
            {
                record.latest = Some(sample);
            }
            nodes.push(record);
        }
        Ok(nodes)
    }

    /// Records the latest status of one UPS, read by `node`'s agent.
    pub fn put_ups(
        &self,
        node: &str,
        status: UpsStatus,
        last_change_ms: i64,
    ) -> Result<(), StoreError> {
        self.apply(&[Record::Ups {
            node: node.to_string(),
            status,
            last_change_ms,
        }])
    }

    /// The latest status of every UPS, by node then UPS name.
    pub fn ups(&self) -> Result<Vec<UpsInfo>, StoreError> {
        let raw = self.read(|txn| {
            let mut out = Vec::new();
            for entry in txn.open_table(UPS)?.iter()? {
                out.push(UpsInfo::decode(entry?.1.value()));
            }
            Ok(out)
        })?;
        raw.into_iter()
            .map(|r| {
                r.map_err(|e| StoreError::Decode {
                    what: "UPS status",
                    file: self.file.clone(),
                    detail: e.to_string(),
                })
            })
            .collect()
    }

    /// Saves the state of one power domain (durably: a restart resumes from it).
    pub fn put_power_state(&self, domain: &str, state: &[u8]) -> Result<(), StoreError> {
        self.write(|txn, _, _| {
            txn.open_table(POWER)?.insert(domain, state)?;
            Ok(())
        })
    }

    /// Every saved power domain state, by domain name.
    pub fn power_states(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read(|txn| {
            let mut out = Vec::new();
            for entry in txn.open_table(POWER)?.iter()? {
                let (k, v) = entry?;
                out.push((k.value().to_string(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// The operator's arming record, if one was ever saved.
    pub fn power_arm(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|txn| {
            Ok(txn
                .open_table(POWER_ARM)?
                .get("arm")?
                .map(|v| v.value().to_vec()))
        })
    }

    /// Saves the operator's arming record (durably).
    pub fn put_power_arm(&self, record: &[u8]) -> Result<(), StoreError> {
        self.write(|txn, _, _| {
            txn.open_table(POWER_ARM)?.insert("arm", record)?;
            Ok(())
        })
    }

    /// Forgets a power domain that is no longer configured.
    pub fn delete_power_state(&self, domain: &str) -> Result<(), StoreError> {
        self.write(|txn, _, _| {
            txn.open_table(POWER)?.remove(domain)?;
            Ok(())
        })
    }
}

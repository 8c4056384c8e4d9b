//! Node readings: temperatures, CPU, memory, load, pressure, filesystem,
//! Raspberry Pi throttling. (Owned by the sensors work; this is the
//! interface the link uses.)

use nodewarden_proto::v1::{Capability, Sample};

use crate::sysroot::SysRoot;

/// Static facts about the node, for the Hello message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeFacts {
    pub hostname: String,
    pub board_model: String,
    pub arch: String,
    pub kernel_version: String,
    pub os_name: String,
    pub boot_time_unix_seconds: i64,
    pub capabilities: Vec<Capability>,
}

/// Reads the node. Holds the previous CPU counters so usage is a delta.
pub struct Sensors {
    root: SysRoot,
}

impl Sensors {
    pub fn new(root: SysRoot) -> Self {
        Sensors { root }
    }

    pub fn facts(&self) -> NodeFacts {
        let _ = &self.root;
        NodeFacts::default()
    }

    /// Takes one sample. Never fails: a field that cannot be read is absent.
    pub fn sample(&mut self, seq: u64, timestamp_ms: i64) -> Sample {
        Sample {
            seq,
            timestamp_ms,
            ..Default::default()
        }
    }
}

//! What the store has done since the collector started, for /metrics: failed
//! writes (a full or failing disk), whether the last write committed, and
//! the events it recorded by kind.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nodewarden_proto::v1::{Event, Severity};

/// Counts kept by the store; read with [`Counters::snapshot`].
#[derive(Debug)]
pub(super) struct Counters {
    write_errors: AtomicU64,
    writable: AtomicBool,
    /// Count and newest timestamp (ms) per key.
    events: Mutex<BTreeMap<EventKey, (u64, i64)>>,
}

/// (subject, kind, severity) of a recorded event.
type EventKey = (String, String, i32);

/// The store's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreCounters {
    /// Write transactions that failed since the collector started.
    pub write_errors: u64,
    /// The last write transaction committed (true before the first).
    pub writable: bool,
    /// Events recorded since the collector started, by subject, kind and severity.
    pub events: Vec<EventCount>,
}

/// How many events of one kind about one subject the store recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct EventCount {
    /// The node, UPS or `power:<domain>` the events are about.
    pub subject: String,
    /// The event kind (`ups_on_battery`, `power_shutdown_started`, ...).
    pub kind: String,
    /// How loud the events are.
    pub severity: Severity,
    /// Events recorded.
    pub count: u64,
    /// When the newest of them happened (unix ms).
    pub last_ms: i64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            write_errors: AtomicU64::new(0),
            writable: AtomicBool::new(true),
            events: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Counters {
    /// A write transaction committed (`true`) or failed.
    pub(super) fn wrote(&self, ok: bool) {
        if !ok {
            self.write_errors.fetch_add(1, Ordering::Relaxed);
        }
        self.writable.store(ok, Ordering::Relaxed);
    }

    /// `events` are committed.
    pub(super) fn recorded<'a>(&self, events: impl Iterator<Item = &'a Event>) {
        // Only counts; a poisoned lock cannot leave them inconsistent.
        let mut map = self.events.lock().unwrap_or_else(|p| p.into_inner());
        for e in events {
            let key = (e.subject.clone(), e.kind.clone(), e.severity);
            let (count, last) = map.entry(key).or_insert((0, 0));
            *count += 1;
            *last = (*last).max(e.timestamp_ms);
        }
    }

    /// The counts now.
    pub(super) fn snapshot(&self) -> StoreCounters {
        let map = self.events.lock().unwrap_or_else(|p| p.into_inner());
        StoreCounters {
            write_errors: self.write_errors.load(Ordering::Relaxed),
            writable: self.writable.load(Ordering::Relaxed),
            events: map
                .iter()
                .map(|((subject, kind, severity), (count, last_ms))| EventCount {
                    subject: subject.clone(),
                    kind: kind.clone(),
                    severity: Severity::try_from(*severity).unwrap_or_default(),
                    count: *count,
                    last_ms: *last_ms,
                })
                .collect(),
        }
    }
}

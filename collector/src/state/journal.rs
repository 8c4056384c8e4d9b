//! Node records, UPS statuses and events go to disk from one thread, a
//! transaction per burst. The hub hands them over and goes on: a durable
//! commit (an fsync, tens of milliseconds on an SD card, far more while the
//! disk is busy) never holds up a stream task, so the UPS status right
//! behind an event reaches the hub, the orchestrator and the CLI at once,
//! and no tokio worker blocks on the disk.
//!
//! While the disk refuses writes (full), the thread keeps what it holds and
//! retries with backoff; a newer node record or UPS status replaces the one
//! still waiting, so only events accumulate, up to `MAX_HELD_EVENTS`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::store::{Record, Store};

/// Events held while the disk refuses writes; beyond this the oldest are
/// dropped and the drop is logged (the live state is unaffected).
const MAX_HELD_EVENTS: usize = 100_000;

enum Op {
    Write(Box<Record>),
    /// Answered once everything sent before it is committed (events durably;
    /// see `Store::apply`).
    Flush(Sender<()>),
}

/// The hub's handle on the writing thread.
#[derive(Debug)]
pub struct Journal {
    ops: Option<Sender<Op>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Journal {
    /// Lets the thread write what it holds and waits for it, so the store
    /// is closed when the hub is gone (a restarted hub can open it again).
    fn drop(&mut self) {
        self.ops = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Journal {
    /// Starts the writing thread; it ends when the journal is dropped,
    /// after writing what it holds (or giving up on a failing disk).
    pub fn start(store: Arc<Store>) -> Journal {
        let (ops, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || Writer::new(store).run(rx))
            .inspect_err(|e| {
                // Without the thread nothing below is saved; say so loudly
                // rather than fail the collector.
                tracing::error!(
                    "cannot start the journal thread: {e}; node records and events will not be saved"
                );
            })
            .ok();
        Journal {
            ops: Some(ops),
            thread,
        }
    }

    /// Queues `record`; it is written within milliseconds.
    pub fn write(&self, record: Record) {
        if let Some(ops) = &self.ops {
            let _ = ops.send(Op::Write(Box::new(record)));
        }
    }

    /// Waits (up to `timeout`) until everything queued before this call is
    /// committed: events on disk, node records and UPS statuses with the
    /// next durable commit (`Store::apply`); false if it was not in time.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (tx, rx) = mpsc::channel();
        let Some(ops) = &self.ops else {
            return false;
        };
        if ops.send(Op::Flush(tx)).is_err() {
            return false;
        }
        rx.recv_timeout(timeout).is_ok()
    }
}

struct Writer {
    store: Arc<Store>,
    held: Vec<Record>,
    /// Where the held node record or UPS status for a key sits in `held`.
    slots: HashMap<(u8, String, String), usize>,
    flushes: Vec<Sender<()>>,
    held_events: usize,
    dropped_events: u64,
}

impl Writer {
    fn new(store: Arc<Store>) -> Writer {
        Writer {
            store,
            held: Vec::new(),
            slots: HashMap::new(),
            flushes: Vec::new(),
            held_events: 0,
            dropped_events: 0,
        }
    }

    fn run(mut self, rx: Receiver<Op>) {
        let mut failing: Option<Instant> = None;
        let mut backoff = Duration::from_millis(200);
        // The hub is gone: one last try, then give up.
        let mut closing = false;
        loop {
            if self.held.is_empty() && self.flushes.is_empty() {
                match rx.recv() {
                    Ok(op) => self.take(op),
                    Err(_) => return,
                }
            } else if failing.is_some() {
                // Retry after the backoff, taking in what arrives meanwhile.
                let until = Instant::now() + backoff;
                loop {
                    match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                        Ok(op) => self.take(op),
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => {
                            closing = true;
                            break;
                        }
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            while let Ok(op) = rx.try_recv() {
                self.take(op);
            }
            match self.store.apply(&self.held) {
                Ok(()) => {
                    if failing.take().is_some() {
                        tracing::info!("node records and events are being saved again");
                        backoff = Duration::from_millis(200);
                    }
                    if self.dropped_events > 0 {
                        tracing::warn!(
                            "{} events were dropped while the disk refused writes",
                            self.dropped_events
                        );
                        self.dropped_events = 0;
                    }
                    self.held.clear();
                    self.slots.clear();
                    self.held_events = 0;
                    for f in self.flushes.drain(..) {
                        let _ = f.send(());
                    }
                }
                Err(e) if closing => {
                    tracing::error!(
                        "collector stopping with {} node records and events unsaved: {e}",
                        self.held.len()
                    );
                    return;
                }
                Err(e) => {
                    if failing.is_none() {
                        tracing::error!(
                            "cannot save node records and events: {e}; holding them and retrying"
                        );
                        failing = Some(Instant::now());
                    }
                }
            }
        }
    }

    fn take(&mut self, op: Op) {
        let record = match op {
            Op::Write(r) => *r,
            Op::Flush(tx) => {
                self.flushes.push(tx);
                return;
            }
        };
        if let Some((kind, a, b)) = record.replaces() {
            let key = (kind, a.to_string(), b.to_string());
            if let Some(&i) = self.slots.get(&key) {
                self.held[i] = record;
            } else {
                self.slots.insert(key, self.held.len());
                self.held.push(record);
            }
            return;
        }
        if self.held_events >= MAX_HELD_EVENTS
            && let Some(i) = self.held.iter().position(|r| matches!(r, Record::Event(_)))
        {
            self.held.remove(i);
            self.slots.values_mut().for_each(|s| {
                if *s > i {
                    *s -= 1;
                }
            });
            self.held_events -= 1;
            self.dropped_events += 1;
        }
        self.held_events += 1;
        self.held.push(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NodeRecord, Retention};
    use nodewarden_proto::v1::{Event, UpsStatus};

    fn event(ts: i64, kind: &str) -> Record {
        Record::Event(Event {
            timestamp_ms: ts,
            subject: "pi1".into(),
            kind: kind.into(),
            ..Event::default()
        })
    }

    #[test]
    fn writes_in_order_and_keeps_the_newest_record_per_node_and_ups() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), Retention::default()).unwrap());
        let journal = Journal::start(store.clone());
        for i in 0..50 {
            journal.write(Record::Node(NodeRecord {
                name: "pi1".into(),
                last_seen_ms: i,
                ..NodeRecord::default()
            }));
            journal.write(Record::Ups {
                node: "pi1".into(),
                status: UpsStatus {
                    ups_name: "riello".into(),
                    status: vec![if i % 2 == 0 { "OL" } else { "OB" }.into()],
                    ..UpsStatus::default()
                },
                last_change_ms: i,
            });
            journal.write(event(1000, &format!("e{i}")));
        }
        assert!(journal.flush(Duration::from_secs(10)));
        let nodes = store.nodes().unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].last_seen_ms, 49);
        let ups = store.ups().unwrap();
        assert_eq!(ups.len(), 1);
        assert_eq!(ups[0].last_change_ms, 49);
        assert_eq!(
            ups[0].status.as_ref().unwrap().status,
            vec!["OB".to_string()]
        );
        let kinds: Vec<String> = store
            .events(0, None, 0)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        let expected: Vec<String> = (0..50).map(|i| format!("e{i}")).collect();
        assert_eq!(kinds, expected, "same-millisecond events keep their order");
    }

    #[test]
    fn records_written_before_the_journal_is_dropped_reach_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), Retention::default()).unwrap());
        let journal = Journal::start(store.clone());
        journal.write(event(5, "last_words"));
        drop(journal);
        assert_eq!(store.events(0, None, 0).unwrap().len(), 1);
        // And the journal let go of the store: it can be opened again.
        drop(store);
        Store::open(dir.path(), Retention::default()).expect("the store is free again");
    }
}

//! Power cuts at random byte offsets. The store runs on a simulated disk
//! that takes N bytes of writes and then loses power: the write in flight is
//! torn at byte N, and every 512-byte sector written since the last sync
//! independently made it to the medium or not (a disk with a volatile cache
//! and no ordering between unsynced writes). The writes mix lazy appends
//! with durable ones as the collector's writer does. Reopened on what
//! survived, the store must open, hold every sample a durable commit covered
//! (the agent was acked), hold nothing half-written, and take new samples.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use nodewarden_proto::v1::Event;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{T0, batch, sample};
use crate::store::{NodeRecord, Record, Retention, Store, StoreError};

const SECTOR: usize = 512;
const NODES: [&str; 3] = ["pi-a", "pi-b", "pi-c"];
const INSTANCE: u64 = 7;

#[derive(Debug, Default)]
struct DiskState {
    /// What the medium holds for sure: everything up to the last sync.
    durable: Vec<u8>,
    /// What reads see: `durable` plus the writes not yet synced.
    current: Vec<u8>,
    /// Sectors written since the last sync.
    dirty: BTreeSet<usize>,
    /// Bytes the disk still takes before the power goes.
    budget: u64,
    powered: bool,
}

/// A disk shared by the store (as its redb backend) and the test.
#[derive(Debug, Clone)]
struct Disk(Arc<Mutex<DiskState>>);

fn power_gone() -> io::Error {
    io::Error::other("simulated power cut")
}

impl Disk {
    fn new(image: Vec<u8>, budget: u64) -> Disk {
        Disk(Arc::new(Mutex::new(DiskState {
            durable: image.clone(),
            current: image,
            dirty: BTreeSet::new(),
            budget,
            powered: true,
        })))
    }

    fn state(&self) -> MutexGuard<'_, DiskState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cuts the power now; returns what the medium holds afterwards.
    fn cut(&self, rng: &mut StdRng) -> Vec<u8> {
        let mut s = self.state();
        s.powered = false;
        // The length change may or may not have reached the file system.
        let len = if rng.random() {
            s.current.len()
        } else {
            s.durable.len()
        };
        let mut image = s.durable.clone();
        image.resize(len, 0);
        for &sector in &s.dirty {
            let start = sector * SECTOR;
            let end = (start + SECTOR).min(len).min(s.current.len());
            if start < end && rng.random() {
                image[start..end].copy_from_slice(&s.current[start..end]);
            }
        }
        image
    }
}

impl redb::StorageBackend for Disk {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.state().current.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let s = self.state();
        let start = offset as usize;
        let src = s
            .current
            .get(start..start + out.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        out.copy_from_slice(src);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut s = self.state();
        if !s.powered {
            return Err(power_gone());
        }
        s.current.resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        let mut s = self.state();
        if !s.powered {
            return Err(power_gone());
        }
        let s = &mut *s;
        s.durable.resize(s.current.len(), 0);
        for sector in std::mem::take(&mut s.dirty) {
            let start = sector * SECTOR;
            let end = (start + SECTOR).min(s.current.len());
            if start < end {
                s.durable[start..end].copy_from_slice(&s.current[start..end]);
            }
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut s = self.state();
        if !s.powered {
            return Err(power_gone());
        }
        // The write that crosses the budget is torn where the power went.
        let taken = (data.len() as u64).min(s.budget) as usize;
        s.budget -= taken as u64;
        let start = offset as usize;
        if s.current.len() < start + taken {
            s.current.resize(start + taken, 0);
        }
        s.current[start..start + taken].copy_from_slice(&data[..taken]);
        if taken > 0 {
            s.dirty
                .extend(start / SECTOR..=(start + taken - 1) / SECTOR);
        }
        if taken < data.len() {
            s.powered = false;
            return Err(power_gone());
        }
        Ok(())
    }
}

/// Appends one batch (1-3 new samples per node), and now and then the small
/// lazy and durable writes the collector mixes in; false once a write fails.
fn one_step(
    store: &Store,
    rng: &mut StdRng,
    next: &mut BTreeMap<&str, u64>,
    acked: &mut BTreeMap<&str, u64>,
) -> bool {
    let batches: Vec<_> = NODES
        .iter()
        .map(|&node| {
            let first = next[node];
            let n = rng.random_range(1..=3);
            next.insert(node, first + n);
            let samples = (first..first + n)
                .map(|seq| sample(seq, T0 + seq as i64 * 1000, 40.0 + (seq % 17) as f64))
                .collect();
            batch(node, INSTANCE, samples)
        })
        .collect();
    // As the collector's writer does: most commits lazy, and the streams
    // acked only when a durable one has covered them.
    let durable = rng.random_range(0..4) == 0;
    let stored = if durable {
        store.append(&batches)
    } else {
        store.append_lazily(&batches)
    };
    if stored.is_err() {
        return false;
    }
    if durable {
        for &node in &NODES {
            acked.insert(node, next[node] - 1);
        }
    }
    let other = match rng.random_range(0..10) {
        0 => store.apply(&[Record::Node(NodeRecord {
            name: NODES[rng.random_range(0..NODES.len())].into(),
            online: true,
            last_seen_ms: T0,
            ..Default::default()
        })]),
        1 => store.append_event(Event {
            timestamp_ms: T0,
            message: "an event".into(),
            ..Default::default()
        }),
        2 => store.prune(T0 + 3_600_000),
        3 => store.sync().inspect(|()| {
            for &node in &NODES {
                acked.insert(node, next[node] - 1);
            }
        }),
        _ => Ok(()),
    };
    other.is_ok()
}

/// Every sample through `acked` is there once with its value, the rows run
/// from seq 1 without a hole, and, `just_reopened`, exactly up to the
/// high-water mark: nothing half-stored.
fn check(store: &Store, acked: &BTreeMap<&str, u64>, trial: u64, just_reopened: bool) {
    for &node in &NODES {
        let hw = store.high_water(node, INSTANCE).expect("high water");
        let want = acked.get(node).copied().unwrap_or(0);
        assert!(
            hw >= want,
            "trial {trial}: {node} acked through {want}, high-water {hw} after the cut"
        );
        let got: Vec<(i64, f64)> = match store.history(node, "uptime", T0, T0 + 100_000_000, 0) {
            Ok(h) => h.points.iter().map(|p| (p.0, p.1)).collect(),
            Err(e) if hw == 0 => {
                assert!(
                    matches!(e, StoreError::UnknownNode { .. }),
                    "trial {trial}: {e}"
                );
                Vec::new()
            }
            Err(e) => panic!("trial {trial}: history of {node}: {e}"),
        };
        let stored = got.len() as u64;
        let expected: Vec<(i64, f64)> = (1..=stored)
            .map(|seq| (T0 + seq as i64 * 1000, 1000.0 + seq as f64))
            .collect();
        assert_eq!(
            got, expected,
            "trial {trial}: {node}'s samples after the cut"
        );
        assert!(
            stored >= hw,
            "trial {trial}: {node} has {stored} rows, high-water {hw}"
        );
        if just_reopened {
            assert_eq!(
                stored, hw,
                "trial {trial}: {node}'s rows past its high-water"
            );
        }
    }
}

#[test]
fn a_power_cut_at_any_byte_loses_no_acked_sample_and_corrupts_nothing() {
    let trials: u64 = std::env::var("NW_POWER_CUT_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    for trial in 0..trials {
        let mut rng = StdRng::seed_from_u64(trial);
        // One trial in eight inside the file's creation, the others up to
        // about 150 commits in.
        let budget = if trial % 8 == 0 {
            rng.random_range(0..40_000)
        } else {
            rng.random_range(0..3_000_000)
        };
        let disk = Disk::new(Vec::new(), budget);
        let mut acked = BTreeMap::new();
        let mut next: BTreeMap<&str, u64> = NODES.iter().map(|&n| (n, 1)).collect();
        if let Ok(store) = Store::open_on(disk.clone(), Retention::default()) {
            for _ in 0..300 {
                if !one_step(&store, &mut rng, &mut next, &mut acked) {
                    break;
                }
            }
            let image = disk.cut(&mut rng);
            drop(store);
            let reopened = Store::open_on(Disk::new(image, u64::MAX), Retention::default())
                .unwrap_or_else(|e| panic!("trial {trial} (cut at byte {budget}): reopen: {e}"));
            check(&reopened, &acked, trial, true);
            // And it takes new samples where the agents resume.
            let mut resumed: BTreeMap<&str, u64> = NODES
                .iter()
                .map(|&n| (n, reopened.high_water(n, INSTANCE).unwrap_or(0) + 1))
                .collect();
            let mut acked_after = BTreeMap::new();
            assert!(
                one_step(&reopened, &mut rng, &mut resumed, &mut acked_after),
                "trial {trial}: no write after the reopen"
            );
            check(&reopened, &acked_after, trial, false);
        } else {
            // The power went while the file was being created. `Store::open`
            // creates it under another name and renames it into place once
            // whole (`a_file_torn_while_being_created_is_made_again`), so
            // the next start begins from nothing, having acked nothing.
            assert!(acked.is_empty());
            disk.cut(&mut rng);
        }
    }
}

#[test]
fn a_file_torn_while_being_created_is_made_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    // What a cut at byte 311 of a new file leaves: the start of a header.
    let whole = {
        let d = tempfile::tempdir().expect("tempdir");
        drop(Store::open(d.path(), Retention::default()).expect("open"));
        std::fs::read(d.path().join(crate::store::DB_FILE)).expect("read")
    };
    let torn = dir
        .path()
        .join(crate::store::DB_FILE)
        .with_extension("redb.new");
    std::fs::write(&torn, &whole[..311]).expect("write");
    let store = Store::open(dir.path(), Retention::default())
        .unwrap_or_else(|e| panic!("open after a torn creation: {e}"));
    store
        .append(&[batch("pi-a", INSTANCE, vec![sample(1, T0 + 1000, 40.0)])])
        .expect("append");
    assert_eq!(store.high_water("pi-a", INSTANCE).expect("high water"), 1);
    assert!(!torn.exists(), "the torn file is left behind");
}

/// Bytes the store gives the disk per simulated hour, 10 nodes at a sample
/// every 5 s, committed every 5 s, made durable every `sync_minutes`.
fn bytes_per_hour(sync_minutes: u64) -> u64 {
    let disk = Disk::new(Vec::new(), u64::MAX);
    let store = Store::open_on(disk.clone(), Retention::default()).expect("open");
    let commits_per_sync = sync_minutes * 12;
    let mut written_at_1h = 0;
    for commit in 0..3 * 60 * 12u64 {
        let ts = T0 + commit as i64 * 5000;
        let batches: Vec<_> = (0..10)
            .map(|n| {
                let temp = 40.0 + (commit % 7) as f64;
                batch(
                    &format!("node{n}"),
                    INSTANCE,
                    vec![sample(commit + 1, ts, temp)],
                )
            })
            .collect();
        let stored = if (commit + 1) % commits_per_sync == 0 {
            store.append(&batches)
        } else {
            store.append_lazily(&batches)
        };
        stored.expect("append");
        if commit + 1 == 60 * 12 {
            written_at_1h = disk.state().budget;
        }
    }
    // Hours two and three: past the file's first growth.
    (written_at_1h - disk.state().budget) / 2
}

#[test]
fn the_bytes_written_follow_the_durable_commits_not_the_lazy_ones() {
    let every_minute = bytes_per_hour(1);
    let every_15 = bytes_per_hour(15);
    let every_60 = bytes_per_hour(60);
    eprintln!(
        "bytes per hour, 10 nodes, a lazy commit every 5 s, durable every 1 / 15 / 60 min: \
         {} / {} / {} KiB",
        every_minute / 1024,
        every_15 / 1024,
        every_60 / 1024
    );
    assert!(every_15 * 2 < every_minute, "{every_15} vs {every_minute}");
    assert!(every_60 < every_15, "{every_60} vs {every_15}");
}

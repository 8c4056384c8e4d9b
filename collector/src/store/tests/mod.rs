use std::path::Path;
use std::process::Command;

use nodewarden_proto::v1::{
    Cpu, Event, LoadAverage, Memory, Sample, Severity, Temperature, TemperatureSource, UpsStatus,
};

use super::*;

mod power_cut;

const T0: i64 = 1_699_999_980_000; // a whole minute

fn sample(seq: u64, ts: i64, temp_c: f64) -> Sample {
    Sample {
        seq,
        timestamp_ms: ts,
        temperatures: vec![Temperature {
            source: TemperatureSource::ThermalZone as i32,
            device: "0".into(),
            chip_name: "cpu-thermal".into(),
            millicelsius: (temp_c * 1000.0).round() as i32,
            is_cpu: true,
            ..Default::default()
        }],
        cpu: Some(Cpu {
            usage_percent: 25.0,
            ..Default::default()
        }),
        load: Some(LoadAverage {
            load1: 0.5,
            load5: 0.25,
            load15: 0.125,
        }),
        memory: Some(Memory {
            total_bytes: 4 << 30,
            available_bytes: 3 << 30,
            ..Default::default()
        }),
        uptime_seconds: 1000.0 + seq as f64,
        ..Default::default()
    }
}

/// `n` samples one second apart from `start`, seq from `first_seq`, temp = 40 + i.
fn run(first_seq: u64, start: i64, n: u64) -> Vec<Sample> {
    (0..n)
        .map(|i| sample(first_seq + i, start + i as i64 * 1000, 40.0 + i as f64))
        .collect()
}

fn batch(node: &str, instance: u64, samples: Vec<Sample>) -> NodeBatch {
    NodeBatch {
        node: node.into(),
        instance_id: instance,
        samples,
        gap: None,
    }
}

fn open(dir: &Path) -> Store {
    match Store::open(dir, Retention::default()) {
        Ok(s) => s,
        Err(e) => panic!("open: {e}"),
    }
}

#[test]
fn appended_samples_come_back_as_raw_points_with_their_unit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store
        .append(&[
            batch("pi1", 9, run(1, T0, 5)),
            batch("pi2", 3, run(1, T0, 2)),
        ])
        .expect("append");
    let h = store
        .history("pi1", "cpu_temp", T0, T0 + 10_000, 0)
        .expect("history");
    assert_eq!(h.unit, "celsius");
    assert_eq!(h.resolution_ms, 0);
    let temps: Vec<(i64, f64)> = h.points.iter().map(|p| (p.0, p.1)).collect();
    assert_eq!(
        temps,
        vec![
            (T0, 40.0),
            (T0 + 1000, 41.0),
            (T0 + 2000, 42.0),
            (T0 + 3000, 43.0),
            (T0 + 4000, 44.0)
        ]
    );
    // The range is inclusive at both ends and other nodes do not leak in.
    let h = store
        .history("pi2", "mem_used", T0 + 1000, T0 + 1000, 0)
        .expect("history");
    assert_eq!(
        h.points,
        vec![(T0 + 1000, 1073741824.0, 1073741824.0, 1073741824.0)]
    );
    assert_eq!(store.high_water("pi1", 9).expect("hw"), 5);
    assert_eq!(store.high_water("pi2", 3).expect("hw"), 2);
    assert_eq!(store.high_water("pi2", 4).expect("hw"), 0);
    assert_eq!(store.high_water("nobody", 1).expect("hw"), 0);
}

#[test]
fn resent_samples_at_or_below_the_high_water_are_not_stored_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store
        .append(&[batch("pi1", 1, run(1, T0, 10))])
        .expect("first");
    // An agent that did not see the ack resends 6..=10 and adds 11..=12.
    let mut resend = run(6, T0 + 5000, 7);
    for s in &mut resend {
        // Same seqs, different values: if they were stored the values would show.
        s.temperatures[0].millicelsius = 99_000;
    }
    store.append(&[batch("pi1", 1, resend)]).expect("resend");
    assert_eq!(store.high_water("pi1", 1).expect("hw"), 12);
    let h = store
        .history("pi1", "cpu_temp", T0, T0 + 60_000, 0)
        .expect("history");
    assert_eq!(h.points.len(), 12);
    assert_eq!(h.points[9].1, 49.0, "seq 10 kept its first value");
    assert_eq!(h.points[10].1, 99.0, "seq 11 is new");
    // The rollup counted each sample once.
    let r = store
        .history("pi1", "cpu_temp", T0, T0 + 59_999, 1)
        .expect("rollup");
    assert_eq!(r.points.len(), 1);
    let expected_mean = ((40..=49).sum::<i32>() as f64 + 2.0 * 99.0) / 12.0;
    assert!(
        (r.points[0].1 - expected_mean).abs() < 1e-9,
        "{:?}",
        r.points
    );
}

#[test]
fn a_gap_moves_the_high_water_past_the_lost_samples() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store
        .append(&[batch("pi1", 1, run(1, T0, 3))])
        .expect("append");
    let mut nb = batch("pi1", 1, Vec::new());
    nb.gap = Some((4, 100));
    store.append(&[nb]).expect("gap");
    assert_eq!(store.high_water("pi1", 1).expect("hw"), 100);
    // A later sample below the gap's end is a duplicate, one above is stored.
    store
        .append(&[batch(
            "pi1",
            1,
            vec![sample(50, T0 + 50_000, 1.0), sample(101, T0 + 101_000, 2.0)],
        )])
        .expect("after gap");
    let h = store
        .history("pi1", "cpu_temp", T0, T0 + 200_000, 0)
        .expect("history");
    let ts: Vec<i64> = h.points.iter().map(|p| p.0).collect();
    assert_eq!(ts, vec![T0, T0 + 1000, T0 + 2000, T0 + 101_000]);
    assert_eq!(store.high_water("pi1", 1).expect("hw"), 101);
}

#[test]
fn rollups_hold_min_max_mean_per_minute() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    // Two minutes of 1 Hz samples, committed in 1 s batches like the server does.
    for i in 0..120u64 {
        store
            .append(&[batch("pi1", 1, run(i + 1, T0 + i as i64 * 1000, 1))])
            .expect("append");
    }
    // 2 minutes in 2 points: buckets of a minute come from the rollups.
    let h = store
        .history("pi1", "cpu_temp", T0, T0 + 119_999, 2)
        .expect("history");
    assert_eq!(h.resolution_ms, 60_000);
    // Every sample was 40 + (index within its batch = 0).
    assert_eq!(
        h.points,
        vec![(T0, 40.0, 40.0, 40.0), (T0 + 60_000, 40.0, 40.0, 40.0)]
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store
        .append(&[batch("pi1", 1, run(1, T0, 120))])
        .expect("append");
    let h = store
        .history("pi1", "cpu_temp", T0, T0 + 119_999, 2)
        .expect("history");
    // Minute one holds 40..=99, minute two 100..=159.
    assert_eq!(
        h.points,
        vec![(T0, 69.5, 40.0, 99.0), (T0 + 60_000, 129.5, 100.0, 159.0)]
    );
    // One point for both minutes merges the rollups by count.
    let h = store
        .history("pi1", "cpu_temp", T0, T0 + 119_999, 1)
        .expect("history");
    assert_eq!(h.resolution_ms, 120_000);
    assert_eq!(h.points, vec![(T0, 99.5, 40.0, 159.0)]);
}

#[test]
fn narrow_buckets_are_merged_from_raw_points() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store
        .append(&[batch("pi1", 1, run(1, T0, 30))])
        .expect("append");
    // 30 s into 3 points: 10 s buckets, below a minute, so from raw.
    let h = store
        .history("pi1", "cpu_temp", T0, T0 + 29_999, 3)
        .expect("history");
    assert_eq!(h.resolution_ms, 10_000);
    assert_eq!(
        h.points,
        vec![
            (T0, 44.5, 40.0, 49.0),
            (T0 + 10_000, 54.5, 50.0, 59.0),
            (T0 + 20_000, 64.5, 60.0, 69.0)
        ]
    );
    // Fewer points than asked for: raw, untouched.
    let h = store
        .history("pi1", "cpu_temp", T0, T0 + 29_999, 50)
        .expect("history");
    assert_eq!(h.resolution_ms, 0);
    assert_eq!(h.points.len(), 30);
}

#[test]
fn prune_drops_raw_after_its_retention_and_history_falls_back_to_rollups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let retention = Retention {
        raw: Duration::from_secs(3600),
        rollup: Duration::from_secs(3 * 3600),
    };
    let store = Store::open(dir.path(), retention).expect("open");
    // One sample a minute for 4 hours.
    let samples: Vec<Sample> = (0..240u64)
        .map(|i| sample(i + 1, T0 + i as i64 * 60_000, 30.0 + (i % 10) as f64))
        .collect();
    store.append(&[batch("pi1", 1, samples)]).expect("append");
    for h in 0..4 {
        store
            .append_event(Event {
                timestamp_ms: T0 + h * 3_600_000,
                subject: "pi1".into(),
                kind: "temperature_high".into(),
                severity: Severity::Warning as i32,
                message: format!("hour {h}"),
            })
            .expect("event");
    }
    let now = T0 + 4 * 3_600_000;
    store.prune(now).expect("prune");

    // Raw: only the last hour is left.
    let raw = store
        .history("pi1", "cpu_temp", now - 3_600_000, now, 0)
        .expect("raw");
    assert_eq!(raw.resolution_ms, 0);
    assert_eq!(raw.points.len(), 60);
    assert_eq!(raw.points[0].0, now - 3_600_000);
    // A range from before the raw horizon comes from rollups, which reach back 3 h.
    let old = store.history("pi1", "cpu_temp", T0, now, 0).expect("old");
    assert_eq!(old.resolution_ms, 60_000);
    assert_eq!(old.points.len(), 180);
    assert_eq!(old.points[0].0, now - 3 * 3_600_000);
    let events = store.events(0, None, 0).expect("events");
    let messages: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages, vec!["hour 1", "hour 2", "hour 3"]);
}

#[test]
fn everything_survives_a_reopen_and_nodes_come_back_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        store
            .append(&[batch("pi1", 7, run(1, T0, 3))])
            .expect("append");
        store
            .put_node(NodeRecord {
                name: "pi1".into(),
                role: "server".into(),
                board_model: "Raspberry Pi 4 Model B Rev 1.4".into(),
                arch: "aarch64".into(),
                first_seen_ms: T0,
                last_seen_ms: T0 + 2000,
                online: true,
                sample_interval_ms: 1000,
                ..Default::default()
            })
            .expect("put_node");
        store
            .put_ups(
                "pi1",
                UpsStatus {
                    ups_name: "riello".into(),
                    communication_ok: true,
                    status: vec!["OL".into(), "CHRG".into()],
                    battery_charge_percent: Some(88.0),
                    ..Default::default()
                },
                T0,
            )
            .expect("put_ups");
        store
            .append_event(Event {
                timestamp_ms: T0,
                subject: "pi1".into(),
                kind: "node_online".into(),
                severity: Severity::Info as i32,
                message: "pi1 connected".into(),
            })
            .expect("event");
    }
    let store = open(dir.path());
    assert_eq!(store.high_water("pi1", 7).expect("hw"), 3);
    let nodes = store.nodes().expect("nodes");
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].board_model, "Raspberry Pi 4 Model B Rev 1.4");
    assert!(!nodes[0].online);
    assert_eq!(nodes[0].offline_reason, "collector restarted");
    assert_eq!(nodes[0].latest.as_ref().map(|s| s.seq), Some(3));
    let ups = store.ups().expect("ups");
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].node, "pi1");
    assert_eq!(
        ups[0]
            .status
            .as_ref()
            .and_then(|s| s.battery_charge_percent),
        Some(88.0)
    );
    assert_eq!(store.events(0, Some("pi1"), 10).expect("events").len(), 1);
    // A new node and a new metric after the reopen get fresh ids: nothing mixes.
    let mut s = sample(4, T0 + 3000, 41.5);
    s.uptime_seconds = 0.0;
    s.cpu = Some(Cpu {
        usage_percent: 1.0,
        measured_arm_clock_hertz: 1_800_000_000,
        ..Default::default()
    });
    store
        .append(&[batch("pi1", 7, vec![s]), batch("pi9", 1, run(1, T0, 1))])
        .expect("append after reopen");
    let clock = store
        .history("pi1", "arm_clock", T0, T0 + 10_000, 0)
        .expect("history");
    assert_eq!(clock.points, vec![(T0 + 3000, 1.8e9, 1.8e9, 1.8e9)]);
    let temps = store
        .history("pi1", "cpu_temp", T0, T0 + 10_000, 0)
        .expect("history");
    assert_eq!(temps.points.len(), 4);
    let other = store
        .history("pi9", "cpu_temp", T0, T0 + 10_000, 0)
        .expect("history");
    assert_eq!(other.points, vec![(T0, 40.0, 40.0, 40.0)]);
}

#[test]
fn unknown_metric_lists_what_the_node_has_and_unknown_node_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store
        .append(&[batch("pi1", 1, run(1, T0, 1))])
        .expect("append");
    let h = store
        .history("pi1", "gpu_temp", T0, T0 + 1000, 0)
        .expect("history");
    assert!(h.points.is_empty());
    assert!(h.available_metrics.contains(&"cpu_temp".to_string()));
    assert!(
        h.available_metrics
            .contains(&"temp.cpu-thermal.0".to_string())
    );
    let err = store
        .history("pi7", "cpu_temp", T0, T0 + 1000, 0)
        .expect_err("unknown node");
    assert!(err.to_string().contains("no node named `pi7`"), "{err}");
}

#[test]
fn events_keep_order_within_a_millisecond_and_return_the_newest_last() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    for (i, subject) in ["pi1", "pi2", "pi1", "pi1"].iter().enumerate() {
        store
            .append_event(Event {
                timestamp_ms: T0 + (i as i64 / 2),
                subject: subject.to_string(),
                kind: "node_online".into(),
                severity: Severity::Info as i32,
                message: format!("e{i}"),
            })
            .expect("event");
    }
    let msgs =
        |events: Vec<Event>| -> Vec<String> { events.into_iter().map(|e| e.message).collect() };
    assert_eq!(
        msgs(store.events(0, None, 0).expect("all")),
        vec!["e0", "e1", "e2", "e3"]
    );
    assert_eq!(
        msgs(store.events(0, Some("pi1"), 2).expect("pi1")),
        vec!["e2", "e3"]
    );
    assert_eq!(
        msgs(store.events(T0 + 1, None, 0).expect("since")),
        vec!["e2", "e3"]
    );
}

/// A tmpfs of a few MB, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CI runs as root)"
        );
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_is_reported_and_loses_nothing_already_stored() {
    let disk = SmallDisk::mount("6m");
    let data = disk.dir.path().join("data");
    let store = open(&data);
    // Leave headroom to free later, the way an operator would delete a log.
    let filler = disk.dir.path().join("filler");
    std::fs::write(&filler, vec![0u8; 1 << 20]).expect("filler");

    let mut seq = 0u64;
    let mut acked = 0u64;
    let err = loop {
        let samples: Vec<Sample> = (0..200)
            .map(|_| {
                seq += 1;
                sample(seq, T0 + seq as i64 * 1000, 40.0 + (seq % 50) as f64)
            })
            .collect();
        match store.append(&[batch("pi1", 1, samples)]) {
            Ok(()) => acked = seq,
            Err(e) => break e,
        }
        assert!(seq < 1_000_000, "the 6 MB disk never filled");
    };
    assert!(matches!(err, StoreError::DiskFull { .. }), "{err:?}");
    assert!(err.to_string().contains("is full"), "{err}");
    assert!(acked > 0);
    // /metrics tells the operator: the store is failing.
    let counters = store.counters();
    assert!(counters.write_errors >= 1, "{counters:?}");
    assert!(!counters.writable, "{counters:?}");

    std::fs::remove_file(&filler).expect("free space");
    assert_eq!(store.high_water("pi1", 1).expect("hw"), acked);
    let h = store
        .history("pi1", "cpu_temp", 0, i64::MAX, 0)
        .expect("history after disk full");
    assert_eq!(h.points.len() as u64, acked);
    // With space again, writing resumes where the high-water says.
    store
        .append(&[batch(
            "pi1",
            1,
            vec![sample(acked + 1, T0 + (acked as i64 + 1) * 1000, 1.0)],
        )])
        .expect("append after freeing space");
    assert_eq!(store.high_water("pi1", 1).expect("hw"), acked + 1);
    assert!(
        store.counters().writable,
        "writable again once space is freed"
    );
    drop(store);
    let reopened = open(&data);
    assert_eq!(reopened.high_water("pi1", 1).expect("hw"), acked + 1);
}

#[test]
fn recorded_events_are_counted_by_subject_kind_and_severity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let fresh = store.counters();
    assert_eq!((fresh.write_errors, fresh.writable), (0, true));
    assert!(fresh.events.is_empty());
    let ev = |kind: &str, severity: Severity| Event {
        timestamp_ms: T0,
        subject: "power:rack".into(),
        kind: kind.into(),
        severity: severity as i32,
        ..Default::default()
    };
    store
        .append_event(ev("power_shutdown_started", Severity::Critical))
        .expect("event");
    store
        .apply(&[
            Record::Event(ev("power_shutdown_started", Severity::Critical)),
            Record::Event(ev("power_poweroff_failed", Severity::Critical)),
        ])
        .expect("events");
    let counters = store.counters();
    let counted: Vec<(&str, u64)> = counters
        .events
        .iter()
        .map(|e| {
            assert_eq!(
                (e.subject.as_str(), e.severity),
                ("power:rack", Severity::Critical)
            );
            (e.kind.as_str(), e.count)
        })
        .collect();
    assert_eq!(
        counted,
        [("power_poweroff_failed", 1), ("power_shutdown_started", 2)]
    );
    assert!(counters.events.iter().all(|e| e.last_ms == T0));
}

#[test]
fn the_store_can_be_shared_between_server_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Store>();
}

#[test]
fn the_latest_sample_is_persisted_once_a_minute_per_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        store
            .put_node(NodeRecord {
                name: "pi1".into(),
                online: true,
                ..Default::default()
            })
            .expect("put_node");
        // Seconds 0 and 1 of one minute in two commits, then second 0 of the next.
        store
            .append(&[batch("pi1", 1, run(1, T0, 1))])
            .expect("first");
        store
            .append(&[batch("pi1", 1, run(2, T0 + 1000, 1))])
            .expect("same minute");
        let after_same_minute = {
            drop(store);
            let store = open(dir.path());
            let seq = store.nodes().expect("nodes")[0]
                .latest
                .as_ref()
                .map(|s| s.seq);
            store
                .append(&[batch("pi1", 1, run(3, T0 + 60_000, 1))])
                .expect("next minute");
            seq
        };
        // Only the first sample of a minute is written; seq 2 was not.
        assert_eq!(after_same_minute, Some(1));
    }
    let store = open(dir.path());
    assert_eq!(
        store.nodes().expect("nodes")[0]
            .latest
            .as_ref()
            .map(|s| s.seq),
        Some(3)
    );
    // The rows themselves are all there, whatever the latest sample says.
    let h = store
        .history("pi1", "cpu_temp", T0, T0 + 60_000, 0)
        .expect("history");
    assert_eq!(h.points.len(), 3);
}

#[test]
fn power_state_survives_a_reopen_and_can_be_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store
            .put_power_state("main", b"{\"phase\":\"draining\"}")
            .unwrap();
        store.put_power_state("rack2", b"{}").unwrap();
        store
            .put_power_state("main", b"{\"phase\":\"powering_off\"}")
            .unwrap();
    }
    let store = open(dir.path());
    assert_eq!(
        store.power_states().unwrap(),
        vec![
            ("main".to_string(), b"{\"phase\":\"powering_off\"}".to_vec()),
            ("rack2".to_string(), b"{}".to_vec())
        ]
    );
    store.delete_power_state("rack2").unwrap();
    assert_eq!(store.power_states().unwrap().len(), 1);
}

#[test]
fn the_high_water_an_agent_is_told_is_the_durable_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store
        .append(&[batch("pi1", 9, run(1, T0, 2))])
        .expect("append");
    store
        .append_lazily(&[batch("pi1", 9, run(3, T0 + 2000, 3))])
        .expect("lazy append");
    let h = store
        .history("pi1", "cpu_temp", T0, T0 + 10_000, 0)
        .expect("history");
    assert_eq!(h.points.len(), 5, "lazy commits are seen at once");
    // A reconnecting agent told 5 would drop samples a crash can still take back.
    assert_eq!(store.high_water("pi1", 9).expect("high water"), 2);
    // Sent again, they are duplicates: nothing is stored twice.
    store
        .append_lazily(&[batch("pi1", 9, run(3, T0 + 2000, 3))])
        .expect("resend");
    store.sync().expect("sync");
    assert_eq!(store.high_water("pi1", 9).expect("high water"), 5);
    let h = store
        .history("pi1", "cpu_temp", T0, T0 + 10_000, 0)
        .expect("history");
    assert_eq!(h.points.len(), 5);
}

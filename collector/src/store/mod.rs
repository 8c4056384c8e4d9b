//! Placeholder in-memory store with the API of the real one (the redb-backed
//! store replaces this file at merge).
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use nodewarden_proto::v1::{Event, Sample, UpsInfo, UpsStatus};

#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub raw: Duration,
    pub rollup: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Other(String),
}

#[derive(Debug, Clone, Default)]
pub struct NodeBatch {
    pub node: String,
    pub instance_id: u64,
    pub samples: Vec<Sample>,
    pub gap: Option<(u64, u64)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeRecord {
    pub name: String,
    pub role: String,
    pub board_model: String,
    pub arch: String,
    pub kernel_version: String,
    pub os_name: String,
    pub agent_version: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub online: bool,
    pub offline_reason: String,
    pub sample_interval_ms: u32,
    pub latest: Option<Sample>,
}

#[derive(Debug, Clone, Default)]
pub struct History {
    pub unit: &'static str,
    pub resolution_ms: i64,
    pub points: Vec<(i64, f64, f64, f64)>,
    pub available_metrics: Vec<String>,
}

#[derive(Default)]
struct Inner {
    hw: BTreeMap<(String, u64), u64>,
    series: BTreeMap<(String, String), Vec<(i64, f64)>>,
    nodes: BTreeMap<String, NodeRecord>,
    events: Vec<Event>,
    ups: BTreeMap<(String, String), UpsInfo>,
}

pub struct Store {
    inner: Mutex<Inner>,
}

impl Store {
    pub fn open(_dir: &Path, _retention: Retention) -> Result<Store, StoreError> {
        Ok(Store {
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn append(&self, batch: &[NodeBatch]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for b in batch {
            let key = (b.node.clone(), b.instance_id);
            let mut hw = inner.hw.get(&key).copied().unwrap_or(0);
            if let Some((_, last)) = b.gap {
                hw = hw.max(last);
            }
            for s in &b.samples {
                if s.seq <= hw {
                    continue;
                }
                hw = s.seq;
                for (metric, v) in crate::series::series_of(s) {
                    inner
                        .series
                        .entry((b.node.clone(), metric.to_string()))
                        .or_default()
                        .push((s.timestamp_ms, v));
                }
            }
            inner.hw.insert(key, hw);
        }
        Ok(())
    }

    pub fn high_water(&self, node: &str, instance_id: u64) -> Result<u64, StoreError> {
        Ok(self
            .lock()
            .hw
            .get(&(node.to_string(), instance_id))
            .copied()
            .unwrap_or(0))
    }

    pub fn history(
        &self,
        node: &str,
        metric: &str,
        since_ms: i64,
        until_ms: i64,
        _max_points: u32,
    ) -> Result<History, StoreError> {
        let inner = self.lock();
        let points = inner
            .series
            .get(&(node.to_string(), metric.to_string()))
            .map(|v| {
                v.iter()
                    .filter(|(t, _)| *t >= since_ms && *t <= until_ms)
                    .map(|(t, v)| (*t, *v, *v, *v))
                    .collect()
            })
            .unwrap_or_default();
        Ok(History {
            unit: crate::series::unit_of(metric),
            resolution_ms: 0,
            points,
            available_metrics: vec![],
        })
    }

    pub fn put_node(&self, record: NodeRecord) -> Result<(), StoreError> {
        self.lock().nodes.insert(record.name.clone(), record);
        Ok(())
    }

    pub fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        Ok(self.lock().nodes.values().cloned().collect())
    }

    pub fn append_event(&self, event: Event) -> Result<(), StoreError> {
        self.lock().events.push(event);
        Ok(())
    }

    pub fn events(
        &self,
        since_ms: i64,
        node: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let inner = self.lock();
        let mut v: Vec<Event> = inner
            .events
            .iter()
            .filter(|e| e.timestamp_ms >= since_ms && node.is_none_or(|n| e.subject == n))
            .cloned()
            .collect();
        if v.len() > limit {
            v.drain(..v.len() - limit);
        }
        Ok(v)
    }

    pub fn put_ups(
        &self,
        node: &str,
        status: UpsStatus,
        last_change_ms: i64,
    ) -> Result<(), StoreError> {
        let key = (node.to_string(), status.ups_name.clone());
        self.lock().ups.insert(
            key,
            UpsInfo {
                node: node.to_string(),
                status: Some(status),
                last_change_ms,
            },
        );
        Ok(())
    }

    pub fn ups(&self) -> Result<Vec<UpsInfo>, StoreError> {
        Ok(self.lock().ups.values().cloned().collect())
    }

    pub fn prune(&self, _now_ms: i64) -> Result<(), StoreError> {
        Ok(())
    }
}

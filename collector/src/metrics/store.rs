//! The collector's own health: its store's failed writes and the events it
//! recorded, the latter for alerts on power sequences and for Grafana
//! annotations.

use nodewarden_proto::v1::Severity;

use super::{Exposition, bool_value};
use crate::cli::events::severity_name;
use crate::store::StoreCounters;

/// The exposition of the store's counters.
pub fn render_store(c: &StoreCounters) -> String {
    let mut e = Exposition::default();
    e.counter(
        "nodewarden_store_write_errors_total",
        "Store write transactions that failed since the collector started (disk full or failing).",
        &[],
        c.write_errors as f64,
    );
    e.gauge(
        "nodewarden_store_writable",
        "1 if the store's last write transaction committed, else 0.",
        &[],
        bool_value(c.writable),
    );
    for ev in &c.events {
        // Unspecified is never recorded; "unknown" would only split a series.
        let severity = match ev.severity {
            Severity::Unspecified => "info",
            s => severity_name(s),
        };
        let labels = [
            ("subject", ev.subject.as_str()),
            ("kind", ev.kind.as_str()),
            ("severity", severity),
        ];
        e.counter(
            "nodewarden_events_total",
            "Events recorded since the collector started, by subject (node, UPS or power:<domain>), kind and severity.",
            &labels,
            ev.count as f64,
        );
        // A counter that appears at 1 shows no increase() in Prometheus: the
        // first power_shutdown_started would never alert. The time does.
        e.gauge(
            "nodewarden_event_last_timestamp_seconds",
            "When the newest event of this subject, kind and severity happened (unix time).",
            &labels,
            ev.last_ms as f64 / 1000.0,
        );
    }
    e.finish()
}

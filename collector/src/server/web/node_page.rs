//! `/node/<name>`: the node's tile and its history charts over 1 h, 24 h
//! or 7 d, read through the same store query as `nodewarden history`
//! (raw samples for short windows, rollups for long ones).

use std::fmt::Write as _;

use crate::cli::format::format_bytes;
use crate::store::Store;

use super::chart::{self, Chart};
use super::render::{escape, node_tile, page, path_segment};
use super::view::NodeTile;

/// The windows a node page offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// The last hour (raw samples).
    Hour,
    /// The last day.
    Day,
    /// The last week (rollups).
    Week,
}

impl Range {
    /// All of them, in link order.
    pub const ALL: [Range; 3] = [Range::Hour, Range::Day, Range::Week];

    /// From the `range=` query value; anything else is the last hour.
    pub fn from_query(query: Option<&str>) -> Range {
        let value = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|kv| kv.strip_prefix("range="));
        match value {
            Some("24h") => Range::Day,
            Some("7d") => Range::Week,
            _ => Range::Hour,
        }
    }

    /// "1h", "24h", "7d".
    pub fn label(self) -> &'static str {
        match self {
            Range::Hour => "1h",
            Range::Day => "24h",
            Range::Week => "7d",
        }
    }

    /// Its length in ms.
    pub fn millis(self) -> i64 {
        match self {
            Range::Hour => 3_600_000,
            Range::Day => 86_400_000,
            Range::Week => 7 * 86_400_000,
        }
    }
}

/// Points per chart: about one per two pixels of a laptop-wide chart.
const MAX_POINTS: u32 = 300;

/// Formats a charted value with its unit.
type Format = fn(f64) -> String;

/// The charted metrics: store name, title and value format.
const CHARTS: [(&str, &str, Format); 4] = [
    ("cpu_temp", "CPU temperature", |v| format!("{v:.1} °C")),
    ("cpu_usage", "CPU use", |v| format!("{v:.0} %")),
    ("mem_used", "memory in use", |v| format_bytes(v)),
    ("under_voltage", "under-voltage (1 = under-volted)", |v| {
        format!("{v:.2}")
    }),
];

/// Reads the charts of `node` over `range` ending at `now_ms`. Blocking
/// (store reads): call it off the async workers.
pub fn load_charts(store: &Store, node: &str, range: Range, now_ms: i64) -> Vec<Chart> {
    let since_ms = now_ms - range.millis();
    CHARTS
        .iter()
        .map(|&(metric, title, format)| {
            let points: Vec<(i64, f64)> =
                match store.history(node, metric, since_ms, now_ms, MAX_POINTS) {
                    Ok(h) => h.points.iter().map(|p| (p.0, p.1)).collect(),
                    Err(e) => {
                        tracing::warn!(node, metric, "web: history: {e}");
                        Vec::new()
                    }
                };
            let (lo, hi) = points
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(_, v)| {
                    (lo.min(v), hi.max(v))
                });
            let label = |v: f64| if v.is_finite() { format(v) } else { "-".into() };
            Chart {
                id: format!("chart-{metric}"),
                title: title.into(),
                low_label: label(lo),
                high_label: label(hi),
                points,
                since_ms,
                until_ms: now_ms,
            }
        })
        .collect()
}

/// The node page.
pub fn render(tile: &NodeTile, range: Range, charts: &[Chart]) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<section><h2>node {}</h2><div class=\"tiles\">{}</div></section>",
        escape(&tile.name),
        node_tile(tile)
    );
    body.push_str("<section><h2>history</h2><nav class=\"ranges\">");
    for r in Range::ALL {
        if r == range {
            let _ = write!(body, "<strong>{} (shown)</strong> ", r.label());
        } else {
            let _ = write!(
                body,
                "<a href=\"/node/{}?range={l}\">{l}</a> ",
                path_segment(&tile.name),
                l = r.label()
            );
        }
    }
    body.push_str("</nav><div class=\"charts\">");
    for c in charts {
        body.push_str(&chart::render(c));
    }
    body.push_str("</div></section>");
    page(&format!("nodewarden: {}", tile.name), &body)
}

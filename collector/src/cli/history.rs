//! `nodewarden history NODE METRIC`: a chart and a table of one series.

use std::fmt::Write as _;
use std::time::Duration;

use nodewarden_common::units::format_duration;
use nodewarden_proto::v1::{HistoryPoint, HistoryResponse};

use super::chart::{ChartSpec, render_chart};
use super::format::{Unit, format_timestamp};
use super::style::{Align, Style, Table};

/// How to lay the history out.
#[derive(Debug, Clone, Copy)]
pub struct HistoryLayout {
    /// The window asked for, unix ms.
    pub since_ms: i64,
    /// The window asked for, unix ms.
    pub until_ms: i64,
    /// Terminal width in columns.
    pub width: usize,
    /// Chart rows.
    pub chart_height: usize,
    /// At most this many table rows; more points are merged into rows.
    pub table_rows: usize,
}

/// One table row: a stretch of consecutive points merged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    /// First point's time.
    pub timestamp_ms: i64,
    /// Mean of the points' means.
    pub mean: f64,
    /// Lowest minimum.
    pub min: f64,
    /// Highest maximum.
    pub max: f64,
    /// Points merged into this row.
    pub points: usize,
}

/// Merges `points` into at most `rows` rows of consecutive points, keeping
/// the extremes (a 2 s spike must survive the summary).
pub fn summarise(points: &[HistoryPoint], rows: usize) -> Vec<Row> {
    let rows = rows.max(1);
    let per_row = points.len().div_ceil(rows).max(1);
    points
        .chunks(per_row)
        .map(|chunk| Row {
            timestamp_ms: chunk[0].timestamp_ms,
            mean: chunk.iter().map(|p| p.value).sum::<f64>() / chunk.len() as f64,
            min: chunk.iter().map(|p| p.min).fold(f64::INFINITY, f64::min),
            max: chunk
                .iter()
                .map(|p| p.max)
                .fold(f64::NEG_INFINITY, f64::max),
            points: chunk.len(),
        })
        .collect()
}

/// The unknown-metric answer: what the user can ask for instead.
pub fn render_unknown_metric(response: &HistoryResponse, asked: &str) -> String {
    let mut out = format!(
        "node {} has no metric `{asked}`; available metrics:\n",
        response.node
    );
    for name in &response.available_metrics {
        let _ = writeln!(out, "  {name}");
    }
    out
}

/// Chart, then table, then a one-line summary.
pub fn render_history(response: &HistoryResponse, layout: HistoryLayout, style: Style) -> String {
    let unit = Unit::from_api(&response.unit);
    let points = &response.points;
    let span = Duration::from_millis((layout.until_ms - layout.since_ms).max(0).unsigned_abs());
    let resolution = if response.resolution_ms > 0 {
        format!(
            "{} buckets",
            format_duration(Duration::from_millis(response.resolution_ms.unsigned_abs()))
        )
    } else {
        "raw samples".to_owned()
    };
    let start = format_timestamp(layout.since_ms);
    let mut end = format_timestamp(layout.until_ms);
    if end.get(..10) == start.get(..10) {
        // Same day: the date once is enough.
        end = end.split_off(11);
    }
    let mut out = format!(
        "{} {}, {start} to {end} ({}; {}; {} points)\n",
        style.bold(&response.node),
        style.bold(&response.metric),
        format_duration(span),
        resolution,
        points.len()
    );
    if points.is_empty() {
        out.push_str("no data in this window\n");
        return out;
    }

    let series: Vec<(i64, f64)> = points.iter().map(|p| (p.timestamp_ms, p.value)).collect();
    for line in render_chart(&ChartSpec {
        points: &series,
        unit: &unit,
        since_ms: layout.since_ms,
        until_ms: layout.until_ms,
        width: layout.width,
        height: layout.chart_height,
    }) {
        out.push_str(&line);
        out.push('\n');
    }
    out.push('\n');

    let rows = summarise(points, layout.table_rows);
    let merged = rows.len() < points.len();
    let show_range = merged || response.resolution_ms > 0;
    let mut table = if show_range {
        Table::new(&[
            ("TIME (UTC)", Align::Left),
            ("MEAN", Align::Right),
            ("MIN", Align::Right),
            ("MAX", Align::Right),
        ])
    } else {
        Table::new(&[("TIME (UTC)", Align::Left), ("VALUE", Align::Right)])
    };
    for row in &rows {
        let mut cells = vec![format_timestamp(row.timestamp_ms), unit.format(row.mean)];
        if show_range {
            cells.push(unit.format(row.min));
            cells.push(unit.format(row.max));
        }
        table.row(cells);
    }
    out.push_str(&table.render(style));
    if merged {
        let _ = writeln!(
            out,
            "{} points summarised into {} rows of up to {} (--table-rows N for more)",
            points.len(),
            rows.len(),
            rows.first().map_or(0, |r| r.points)
        );
    }
    let lo = points.iter().map(|p| p.min).fold(f64::INFINITY, f64::min);
    let hi = points
        .iter()
        .map(|p| p.max)
        .fold(f64::NEG_INFINITY, f64::max);
    let mean = points.iter().map(|p| p.value).sum::<f64>() / points.len() as f64;
    let _ = writeln!(
        out,
        "min {}, mean {}, max {}",
        unit.format(lo),
        unit.format(mean),
        unit.format(hi)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_430_000_000;

    fn raw(values: &[f64]) -> Vec<HistoryPoint> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| HistoryPoint {
                timestamp_ms: T0 + i as i64 * 1000,
                value: *v,
                min: *v,
                max: *v,
            })
            .collect()
    }

    #[test]
    fn summary_keeps_the_spike() {
        let mut values = vec![50.0; 100];
        values[37] = 84.5;
        let rows = summarise(&raw(&values), 10);
        assert_eq!(rows.len(), 10);
        assert_eq!(rows[3].max, 84.5);
        assert_eq!(rows[3].points, 10);
        assert!((rows[3].mean - 53.45).abs() < 1e-9);
        assert_eq!(rows.iter().map(|r| r.points).sum::<usize>(), 100);
    }

    #[test]
    fn history_has_chart_table_and_says_what_was_merged() {
        let values: Vec<f64> = (0..120).map(|i| 60.0 + (i % 10) as f64).collect();
        let response = HistoryResponse {
            node: "pi4".into(),
            metric: "cpu_temp".into(),
            unit: "celsius".into(),
            resolution_ms: 0,
            points: raw(&values),
            available_metrics: vec![],
        };
        let layout = HistoryLayout {
            since_ms: T0,
            until_ms: T0 + 120_000,
            width: 80,
            chart_height: 6,
            table_rows: 12,
        };
        let out = render_history(&response, layout, Style::PLAIN);
        assert!(
            out.starts_with(
                "pi4 cpu_temp, 2026-11-23 10:33:20Z to 10:35:20Z (2m00s; raw samples; 120 points)"
            ),
            "{out}"
        );
        assert!(out.contains("69.0 °C ┤"), "top label is the maximum: {out}");
        assert!(
            out.contains("120 points summarised into 12 rows of up to 10"),
            "{out}"
        );
        assert!(
            out.lines()
                .any(|l| l.starts_with("TIME (UTC)") && l.ends_with("MEAN      MIN      MAX")),
            "{out}"
        );
        assert!(
            out.contains("2026-11-23 10:33:20Z  64.5 °C  60.0 °C  69.0 °C"),
            "{out}"
        );
        assert!(
            out.trim_end()
                .ends_with("min 60.0 °C, mean 64.5 °C, max 69.0 °C"),
            "{out}"
        );

        let few = HistoryResponse {
            points: raw(&[1.0, 2.0]),
            unit: "percent".into(),
            ..response.clone()
        };
        let out = render_history(&few, layout, Style::PLAIN);
        assert!(
            out.contains("VALUE") && !out.contains("summarised"),
            "{out}"
        );
        assert!(out.contains("10:33:21Z  2.0 %"), "{out}");
    }

    #[test]
    fn unknown_metric_lists_the_known_ones() {
        let response = HistoryResponse {
            node: "pi4".into(),
            metric: "cpu_tmp".into(),
            available_metrics: vec!["cpu_temp".into(), "cpu_usage".into()],
            ..Default::default()
        };
        let out = render_unknown_metric(&response, "cpu_tmp");
        assert_eq!(
            out,
            "node pi4 has no metric `cpu_tmp`; available metrics:\n  cpu_temp\n  cpu_usage\n"
        );
    }
}

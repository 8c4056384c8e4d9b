//! A line chart in braille characters: each terminal cell holds a 2x4 grid of
//! dots, so an 80-column terminal gets ~140 horizontal points of resolution.

use super::format::{Unit, format_time_of};
use super::style::display_width;

/// Braille bit for the dot at (column 0-1, row 0-3 from the top) of a cell.
const DOT_BITS: [[u8; 4]; 2] = [[0x01, 0x02, 0x04, 0x40], [0x08, 0x10, 0x20, 0x80]];
const BRAILLE_BASE: u32 = 0x2800;

/// What to draw and how big.
#[derive(Debug, Clone)]
pub struct ChartSpec<'a> {
    /// (unix ms, value), in time order.
    pub points: &'a [(i64, f64)],
    /// Unit of the values, for the y-axis labels.
    pub unit: &'a Unit,
    /// Left edge of the x-axis, unix ms.
    pub since_ms: i64,
    /// Right edge of the x-axis, unix ms.
    pub until_ms: i64,
    /// Total width in columns, labels included.
    pub width: usize,
    /// Plot rows (the x-axis takes two more).
    pub height: usize,
}

/// Plot columns for a chart `width` wide, once y-axis labels are placed.
/// The caller asks the server for twice as many points (two dots per cell).
pub fn plot_columns(width: usize) -> usize {
    width.saturating_sub(14).max(10)
}

/// The chart as lines (no trailing newline on the last).
pub fn render_chart(spec: &ChartSpec<'_>) -> Vec<String> {
    let height = spec.height.max(2);
    let finite: Vec<(i64, f64)> = spec
        .points
        .iter()
        .copied()
        .filter(|(_, v)| v.is_finite())
        .collect();
    let (mut lo, mut hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, v)| {
            (lo.min(*v), hi.max(*v))
        });
    if finite.is_empty() {
        (lo, hi) = (0.0, 1.0);
    } else if hi - lo < f64::EPSILON * hi.abs().max(1.0) {
        // A flat line still needs a range; keep it in the middle.
        let pad = (hi.abs() * 0.05).max(0.5);
        (lo, hi) = (lo - pad, hi + pad);
    }
    let labels = [
        spec.unit.format(hi),
        spec.unit.format((hi + lo) / 2.0),
        spec.unit.format(lo),
    ];
    let label_width = labels.iter().map(|l| display_width(l)).max().unwrap_or(0);
    let columns = spec.width.saturating_sub(label_width + 2).max(10);
    let (dots_x, dots_y) = (columns * 2, height * 4);

    let mut cells = vec![vec![0u8; columns]; height];
    let span = (spec.until_ms - spec.since_ms).max(1);
    let to_dot = |(ts, v): (i64, f64)| -> (i64, i64) {
        let x = (ts - spec.since_ms) as f64 / span as f64 * (dots_x - 1) as f64;
        let y = (v - lo) / (hi - lo) * (dots_y - 1) as f64;
        (x.round() as i64, (dots_y - 1) as i64 - y.round() as i64)
    };
    let mut set = |x: i64, y: i64| {
        if (0..dots_x as i64).contains(&x) && (0..dots_y as i64).contains(&y) {
            let (x, y) = (x as usize, y as usize);
            cells[y / 4][x / 2] |= DOT_BITS[x % 2][y % 4];
        }
    };
    // Join neighbours unless the gap between them is much wider than the
    // usual spacing: a missing stretch (node down) must look missing.
    let mut gaps: Vec<i64> = finite.windows(2).map(|w| w[1].0 - w[0].0).collect();
    gaps.sort_unstable();
    let usual_gap = gaps.get(gaps.len() / 2).copied().unwrap_or(0);
    for (i, point) in finite.iter().enumerate() {
        let (x, y) = to_dot(*point);
        set(x, y);
        if let Some(next) = finite.get(i + 1)
            && (next.0 - point.0) <= usual_gap.saturating_mul(3)
        {
            let (nx, ny) = to_dot(*next);
            let steps = (nx - x).abs().max((ny - y).abs());
            for s in 1..steps {
                let f = s as f64 / steps as f64;
                set(
                    x + ((nx - x) as f64 * f).round() as i64,
                    y + ((ny - y) as f64 * f).round() as i64,
                );
            }
        }
    }

    let mut lines = Vec::with_capacity(height + 2);
    for (row, bits) in cells.iter().enumerate() {
        let label = if row == 0 {
            labels[0].as_str()
        } else if row == height / 2 && height > 2 {
            labels[1].as_str()
        } else if row == height - 1 {
            labels[2].as_str()
        } else {
            ""
        };
        let plot: String = bits
            .iter()
            .map(|b| char::from_u32(BRAILLE_BASE + u32::from(*b)).unwrap_or(' '))
            .collect();
        let pad = " ".repeat(label_width - display_width(label));
        let tick = if label.is_empty() { '│' } else { '┤' };
        lines.push(format!(
            "{pad}{label} {tick}{}",
            plot.trim_end_matches('\u{2800}')
        ));
    }
    lines.push(format!(
        "{} └{}",
        " ".repeat(label_width),
        "─".repeat(columns)
    ));

    let (start, middle, end) = (
        format_time_of(spec.since_ms, span),
        format_time_of(spec.since_ms + span / 2, span),
        format_time_of(spec.until_ms, span),
    );
    let mut axis = vec![' '; label_width + 2 + columns];
    let mut place = |text: &str, at: usize| {
        for (i, c) in text.chars().enumerate() {
            if let Some(slot) = axis.get_mut(at + i) {
                *slot = c;
            }
        }
    };
    let origin = label_width + 2;
    place(&start, origin);
    if columns > start.len() + middle.len() + end.len() + 4 {
        place(&middle, origin + columns / 2 - middle.len() / 2);
    }
    place(&end, (origin + columns).saturating_sub(end.len()));
    lines.push(axis.into_iter().collect::<String>().trim_end().to_owned());
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_430_000_000;

    fn rising() -> Vec<(i64, f64)> {
        // Ten minutes of 1 s samples climbing from 50 to 79.95 °C.
        (0..600)
            .map(|i| (T0 + i * 1000, 50.0 + i as f64 * 0.05))
            .collect()
    }

    fn dots_in(line: &str) -> u32 {
        line.chars()
            .filter(|c| ('\u{2800}'..='\u{28ff}').contains(c))
            .map(|c| (c as u32 - BRAILLE_BASE).count_ones())
            .sum()
    }

    #[test]
    fn chart_has_the_asked_size_labels_and_shape() {
        let points = rising();
        let unit = Unit::Celsius;
        let lines = render_chart(&ChartSpec {
            points: &points,
            unit: &unit,
            since_ms: T0,
            until_ms: T0 + 599_000,
            width: 80,
            height: 8,
        });
        assert_eq!(lines.len(), 8 + 2, "plot rows + axis + time labels");
        assert!(lines[0].starts_with("80.0 °C ┤"), "{}", lines[0]);
        assert!(lines[7].starts_with("50.0 °C ┤"), "{}", lines[7]);
        assert!(lines[4].contains("65.0 °C"), "{}", lines[4]);
        assert!(lines.iter().all(|l| display_width(l) <= 80));
        // Rising: the top row is drawn at the right end only, the bottom row
        // at the left end only.
        let top: Vec<char> = lines[0].chars().collect();
        let bottom: Vec<char> = lines[7].chars().collect();
        let first_dot = |cs: &[char]| {
            cs.iter()
                .position(|c| ('\u{2801}'..='\u{28ff}').contains(c))
        };
        assert!(first_dot(&top).unwrap_or(0) > 60, "{}", lines[0]);
        assert!(first_dot(&bottom).unwrap_or(99) < 12, "{}", lines[7]);
        assert!(
            lines[7].chars().count() < 40,
            "bottom row ends early: {}",
            lines[7]
        );
        assert!(
            lines[9].contains("10:33:20") && lines[9].trim_end().ends_with("10:43:19"),
            "{}",
            lines[9]
        );
        // The line is continuous: every plot row has dots.
        assert!(lines[..8].iter().all(|l| dots_in(l) > 0));
    }

    #[test]
    fn a_gap_stays_a_gap() {
        // Two minutes of samples, three minutes missing, two minutes again.
        let mut points: Vec<(i64, f64)> = (0..120).map(|i| (T0 + i * 1000, 40.0)).collect();
        points.extend((300..420).map(|i| (T0 + i * 1000, 40.0)));
        let unit = Unit::Celsius;
        let lines = render_chart(&ChartSpec {
            points: &points,
            unit: &unit,
            since_ms: T0,
            until_ms: T0 + 419_000,
            width: 80,
            height: 4,
        });
        let row = lines
            .iter()
            .find(|l| dots_in(l) > 0)
            .cloned()
            .unwrap_or_default();
        let plot: String = row
            .chars()
            .skip_while(|c| *c != '┤' && *c != '│')
            .skip(1)
            .collect();
        assert!(
            plot.contains("\u{2800}\u{2800}\u{2800}"),
            "blank cells in the gap: {row}"
        );
    }

    #[test]
    fn empty_and_flat_series_do_not_panic() {
        let unit = Unit::Percent;
        let empty = render_chart(&ChartSpec {
            points: &[],
            unit: &unit,
            since_ms: T0,
            until_ms: T0,
            width: 20,
            height: 3,
        });
        assert_eq!(empty.len(), 5);
        let flat = [(T0, 12.0), (T0 + 1000, 12.0)];
        let lines = render_chart(&ChartSpec {
            points: &flat,
            unit: &unit,
            since_ms: T0,
            until_ms: T0 + 1000,
            width: 40,
            height: 3,
        });
        assert!(
            lines[1].contains("12.0 %"),
            "flat line sits mid-chart: {lines:?}"
        );
    }
}

//! History charts as server-drawn SVG: a polyline of the bucket means in a
//! fixed viewBox that scales to any width. Drawn here rather than with a
//! chart library because a polyline is a few dozen lines, needs no script
//! (the chart shows with JavaScript off), adds nothing to download and
//! nothing to the binary that must be kept up to date offline.

use std::fmt::Write as _;

use super::render::escape;
use crate::cli::format::format_time_of;

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 160.0;
const PAD: f64 = 4.0;

/// One chart: a titled series over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Its element id.
    pub id: String,
    /// "CPU temperature".
    pub title: String,
    /// (unix ms, value), oldest first.
    pub points: Vec<(i64, f64)>,
    /// Window start and end, unix ms.
    pub since_ms: i64,
    pub until_ms: i64,
    /// Lowest and highest values, formatted, for the axis labels.
    pub low_label: String,
    pub high_label: String,
}

/// The chart's `<figure>`: SVG polyline plus text labels (time span, range
/// of values, number of points), so it reads without the picture too.
pub fn render(c: &Chart) -> String {
    let mut s = String::with_capacity(64 + c.points.len() * 16);
    let _ = write!(
        s,
        "<figure class=\"chart\" id=\"{}\"><figcaption>{} <small>({} points; low {}, high {})</small></figcaption>",
        escape(&c.id),
        escape(&c.title),
        c.points.len(),
        escape(&c.low_label),
        escape(&c.high_label)
    );
    if c.points.is_empty() {
        s.push_str("<p>no data in this window</p></figure>");
        return s;
    }
    let (lo, hi) = c
        .points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(_, v)| {
            (lo.min(v), hi.max(v))
        });
    // A flat line sits in the middle rather than on an edge.
    let (lo, hi) = if hi - lo < 1e-9 {
        (lo - 1.0, hi + 1.0)
    } else {
        (lo, hi)
    };
    let span = (c.until_ms - c.since_ms).max(1) as f64;
    let x = |t: i64| PAD + (t - c.since_ms) as f64 / span * (WIDTH - 2.0 * PAD);
    let y = |v: f64| PAD + (hi - v) / (hi - lo) * (HEIGHT - 2.0 * PAD);
    let _ = write!(
        s,
        "<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{}\"><polyline class=\"line\" fill=\"none\" stroke=\"currentColor\" stroke-width=\"1.5\" vector-effect=\"non-scaling-stroke\" points=\"",
        escape(&c.title)
    );
    for (i, &(t, v)) in c.points.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{:.1},{:.1}", x(t), y(v));
    }
    let span_ms = c.until_ms - c.since_ms;
    let _ = write!(
        s,
        "\"/></svg><div class=\"axis\"><span>{}</span><span>{}</span></div></figure>",
        format_time_of(c.since_ms, span_ms),
        format_time_of(c.until_ms, span_ms)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(points: Vec<(i64, f64)>) -> Chart {
        Chart {
            id: "c".into(),
            title: "CPU temperature".into(),
            points,
            since_ms: 0,
            until_ms: 1000,
            low_label: "40.0 °C".into(),
            high_label: "60.0 °C".into(),
        }
    }

    fn polyline_points(html: &str) -> Vec<(f64, f64)> {
        let start = html.find("points=\"").unwrap() + 8;
        let end = start + html[start..].find('"').unwrap();
        html[start..end]
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn points_span_the_box_with_high_values_at_the_top() {
        let html = render(&chart(vec![(0, 40.0), (500, 60.0), (1000, 50.0)]));
        let p = polyline_points(&html);
        assert_eq!(p, vec![(4.0, 156.0), (300.0, 4.0), (596.0, 80.0)]);
        assert!(
            html.contains("3 points; low 40.0 °C, high 60.0 °C"),
            "{html}"
        );
    }

    #[test]
    fn a_flat_series_is_drawn_mid_height_and_no_data_says_so() {
        let p = polyline_points(&render(&chart(vec![(0, 5.0), (1000, 5.0)])));
        assert_eq!(p[0].1, 80.0);
        let empty = render(&chart(vec![]));
        assert!(empty.contains("no data in this window") && !empty.contains("<svg"));
    }
}

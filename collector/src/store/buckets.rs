//! Merging points into at most `max_points` time buckets (pure arithmetic).

use super::codec::Agg;

/// One point of a history answer: (unix ms, mean, min, max).
pub type Point = (i64, f64, f64, f64);

/// The bucket width for `max_points` over since..=until, a whole multiple of
/// `step_ms` (the resolution of the data being merged), at least one step.
pub fn bucket_width(since_ms: i64, until_ms: i64, max_points: u32, step_ms: i64) -> i64 {
    let span = until_ms.saturating_sub(since_ms).saturating_add(1).max(1);
    let per_point = ceil_div(span, i64::from(max_points.max(1)));
    let step = step_ms.max(1);
    ceil_div(per_point, step).max(1).saturating_mul(step)
}

/// Division rounding up, for positive operands.
fn ceil_div(a: i64, b: i64) -> i64 {
    a / b + i64::from(a % b != 0)
}

/// Merges time-ordered aggregates into buckets of `width_ms` aligned on
/// `since_ms`; each bucket is stamped with its start, its mean weighted by
/// the number of values behind each input.
pub fn merge(
    items: impl IntoIterator<Item = (i64, Agg)>,
    since_ms: i64,
    width_ms: i64,
) -> Vec<Point> {
    let width = width_ms.max(1);
    let mut out = Vec::new();
    let mut current: Option<(i64, Agg)> = None;
    for (ts, agg) in items {
        let start = since_ms + (ts - since_ms).div_euclid(width) * width;
        match &mut current {
            Some((s, acc)) if *s == start => acc.merge(&agg),
            _ => {
                if let Some((s, acc)) = current.take() {
                    out.push((s, acc.mean(), acc.min, acc.max));
                }
                current = Some((start, agg));
            }
        }
    }
    if let Some((s, acc)) = current {
        out.push((s, acc.mean(), acc.min, acc.max));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn width_is_a_whole_number_of_steps_and_fits_max_points() {
        // 24 h of seconds into 200 points: 432 s each.
        assert_eq!(bucket_width(0, 86_400_000 - 1, 200, 1000), 432_000);
        // Rollups are per minute: 432 s rounds up to 8 minutes.
        assert_eq!(bucket_width(0, 86_400_000 - 1, 200, 60_000), 480_000);
        // Never narrower than the data.
        assert_eq!(bucket_width(0, 10_000, 1000, 1000), 1000);
        for max in [1u32, 7, 200, 999] {
            let w = bucket_width(5, 3_600_004, max, 1000);
            assert!((3_600_000 / w) < i64::from(max) + 1, "max {max}: width {w}");
        }
    }

    #[test]
    fn merge_weights_means_by_count() {
        let items = vec![
            (0, Agg::of(10.0)),
            (
                1000,
                Agg {
                    min: 20.0,
                    max: 40.0,
                    sum: 90.0,
                    count: 3,
                },
            ),
            (2000, Agg::of(5.0)),
            (3500, Agg::of(-1.0)),
        ];
        let points = merge(items, 0, 2000);
        assert_eq!(points, vec![(0, 25.0, 10.0, 40.0), (2000, 2.0, -1.0, 5.0)]);
    }

    #[test]
    fn merge_aligns_on_since_and_skips_empty_buckets() {
        let items = vec![(1_500, Agg::of(1.0)), (9_700, Agg::of(3.0))];
        let points = merge(items, 500, 1000);
        assert_eq!(points, vec![(1_500, 1.0, 1.0, 1.0), (9_500, 3.0, 3.0, 3.0)]);
    }
}

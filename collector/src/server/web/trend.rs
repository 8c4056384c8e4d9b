//! Which way each node's CPU temperature is going: the page remembers one
//! reading per node every half minute for ten minutes, so a tile can say
//! "rising" without a store query per node per render.

use std::collections::{HashMap, VecDeque};

/// Readings are kept this far back.
const WINDOW_MS: i64 = 10 * 60_000;
/// At most one kept reading per node this often.
const SPACING_MS: i64 = 30_000;
/// A trend needs readings at least this far apart.
const MIN_SPAN_MS: i64 = 2 * 60_000;
/// Changes smaller than this over the window are "steady".
const STEADY_CELSIUS: f64 = 1.0;

/// Where a temperature is heading over the last minutes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Trend {
    /// Not enough readings yet.
    #[default]
    Unknown,
    /// Within ±1 °C.
    Steady,
    /// Up by this many °C.
    Rising(f64),
    /// Down by this many °C (positive).
    Falling(f64),
}

impl Trend {
    /// "rising 2.1 °C in 10m" style words (never only an arrow: the page
    /// must read without its glyphs and colours).
    pub fn words(self) -> Option<String> {
        match self {
            Trend::Unknown => None,
            Trend::Steady => Some("steady".into()),
            Trend::Rising(d) => Some(format!("↑ rising {d:.1} °C")),
            Trend::Falling(d) => Some(format!("↓ falling {d:.1} °C")),
        }
    }
}

/// Kept temperature readings per node.
#[derive(Debug, Default)]
pub struct Trends {
    readings: HashMap<String, VecDeque<(i64, f64)>>,
}

impl Trends {
    /// Remembers `celsius` for `node` at `now_ms` (spaced and windowed).
    pub fn observe(&mut self, node: &str, now_ms: i64, celsius: f64) {
        // get_mut first: no String per node per render once it is known.
        let kept = match self.readings.get_mut(node) {
            Some(kept) => kept,
            None => self.readings.entry(node.to_owned()).or_default(),
        };
        while kept.front().is_some_and(|(t, _)| now_ms - t > WINDOW_MS) {
            kept.pop_front();
        }
        if kept.back().is_none_or(|(t, _)| now_ms - t >= SPACING_MS) {
            kept.push_back((now_ms, celsius));
        }
    }

    /// The trend from the oldest kept reading to `celsius` now.
    pub fn trend(&self, node: &str, now_ms: i64, celsius: f64) -> Trend {
        let Some(&(then, old)) = self.readings.get(node).and_then(|k| k.front()) else {
            return Trend::Unknown;
        };
        if now_ms - then < MIN_SPAN_MS {
            return Trend::Unknown;
        }
        let delta = celsius - old;
        if delta >= STEADY_CELSIUS {
            Trend::Rising(delta)
        } else if delta <= -STEADY_CELSIUS {
            Trend::Falling(-delta)
        } else {
            Trend::Steady
        }
    }

    /// Nodes remembered.
    pub fn len(&self) -> usize {
        self.readings.len()
    }

    /// Whether no node is remembered.
    pub fn is_empty(&self) -> bool {
        self.readings.is_empty()
    }

    /// Forgets nodes not in `names` (removed from the registry).
    pub fn retain(&mut self, names: &std::collections::HashSet<&str>) {
        self.readings.retain(|n, _| names.contains(n.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_two_minutes_then_says_which_way() {
        let mut t = Trends::default();
        t.observe("a", 0, 50.0);
        assert_eq!(t.trend("a", 60_000, 60.0), Trend::Unknown);
        assert_eq!(t.trend("a", 180_000, 52.5), Trend::Rising(2.5));
        assert_eq!(t.trend("a", 180_000, 47.0), Trend::Falling(3.0));
        assert_eq!(t.trend("a", 180_000, 50.5), Trend::Steady);
        assert_eq!(t.trend("b", 180_000, 50.5), Trend::Unknown);
        assert_eq!(Trend::Rising(2.5).words().unwrap(), "↑ rising 2.5 °C");
    }

    #[test]
    fn keeps_ten_minutes_spaced_by_half_a_minute() {
        let mut t = Trends::default();
        for s in 0..1200 {
            t.observe("a", s * 1000, s as f64);
        }
        let kept = &t.readings["a"];
        assert_eq!(kept.len(), 20, "{kept:?}");
        assert!(kept.front().unwrap().0 >= 1_199_000 - WINDOW_MS);
        assert!(
            kept.iter()
                .zip(kept.iter().skip(1))
                .all(|(a, b)| b.0 - a.0 == SPACING_MS)
        );
    }
}

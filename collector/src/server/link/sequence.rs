//! The sequence rules of one agent stream, pure: which samples are new and
//! must be stored (and acked), which are a resend of what is already stored,
//! which seqs were lost (a Gap message, or a jump with none), and which
//! batches break the protocol. The stream task only carries out the verdicts.

use nodewarden_proto::v1::Sample;

/// Where a stream stands: the next seq it expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequence {
    expected: u64,
}

/// What to do with a batch of samples.
#[derive(Debug, Clone, PartialEq)]
pub enum Samples {
    /// Everything in it is already stored (a resend): nothing to do.
    Duplicate,
    /// Its seqs do not strictly increase: the stream must close.
    NotIncreasing,
    /// Store these (the already stored ones dropped) and ack through
    /// `through` once committed; `lost` is a jump the agent sent no Gap for.
    Store {
        /// The new samples, in seq order.
        samples: Vec<Sample>,
        /// Seqs skipped before them (first, last), if any.
        lost: Option<(u64, u64)>,
        /// The highest seq of the batch.
        through: u64,
    },
}

/// What to do with a Gap message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// Already past it, or malformed: nothing to do.
    Ignore,
    /// Record seqs `first..=last` as lost, and ack through `last` once stored.
    Record {
        /// The first lost seq not already stored.
        first: u64,
        /// The last lost seq.
        last: u64,
    },
}

impl Sequence {
    /// A stream whose samples are stored through `stored_through`.
    pub fn after(stored_through: u64) -> Self {
        Sequence {
            expected: stored_through + 1,
        }
    }

    /// The next seq expected (what the tests check; the stream needs no more
    /// than the verdicts).
    #[cfg(test)]
    fn expected(&self) -> u64 {
        self.expected
    }

    /// Judges a batch of samples, and moves past it when it is stored.
    pub fn samples(&mut self, mut samples: Vec<Sample>) -> Samples {
        let expected = self.expected;
        samples.retain(|s| s.seq >= expected);
        let Some(first) = samples.first().map(|s| s.seq) else {
            return Samples::Duplicate;
        };
        if !samples.windows(2).all(|w| w[0].seq < w[1].seq) {
            return Samples::NotIncreasing;
        }
        let lost = (first > expected).then(|| (expected, first - 1));
        let through = samples.last().map_or(expected, |s| s.seq);
        self.expected = through + 1;
        Samples::Store {
            samples,
            lost,
            through,
        }
    }

    /// Judges a Gap message for seqs `first..=last`.
    pub fn gap(&mut self, first: u64, last: u64) -> Gap {
        if last < self.expected || first > last {
            return Gap::Ignore;
        }
        let first = first.max(self.expected);
        self.expected = last + 1;
        Gap::Record { first, last }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seqs: &[u64]) -> Vec<Sample> {
        seqs.iter()
            .map(|&seq| Sample {
                seq,
                ..Default::default()
            })
            .collect()
    }

    fn seqs(v: &Samples) -> Vec<u64> {
        match v {
            Samples::Store { samples, .. } => samples.iter().map(|s| s.seq).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn new_samples_are_stored_and_acked_through_the_last() {
        let mut s = Sequence::after(0);
        let v = s.samples(batch(&[1, 2, 3]));
        assert_eq!(seqs(&v), [1, 2, 3]);
        assert!(matches!(
            v,
            Samples::Store {
                lost: None,
                through: 3,
                ..
            }
        ));
        assert_eq!(s.expected(), 4);
    }

    #[test]
    fn a_resend_of_stored_samples_is_a_duplicate_and_moves_nothing() {
        let mut s = Sequence::after(10);
        assert_eq!(s.samples(batch(&[9, 10])), Samples::Duplicate);
        assert_eq!(s.samples(Vec::new()), Samples::Duplicate);
        assert_eq!(s.expected(), 11);
    }

    #[test]
    fn a_batch_overlapping_what_is_stored_keeps_only_the_new_part() {
        let mut s = Sequence::after(10);
        let v = s.samples(batch(&[9, 10, 11, 12]));
        assert_eq!(seqs(&v), [11, 12]);
        assert_eq!(s.expected(), 13);
    }

    #[test]
    fn a_jump_without_a_gap_message_is_recorded_as_lost() {
        let mut s = Sequence::after(10);
        let v = s.samples(batch(&[15, 16]));
        assert!(matches!(
            v,
            Samples::Store {
                lost: Some((11, 14)),
                through: 16,
                ..
            }
        ));
        assert_eq!(s.expected(), 17);
    }

    #[test]
    fn seqs_that_do_not_increase_break_the_protocol() {
        let mut s = Sequence::after(0);
        assert_eq!(s.samples(batch(&[1, 3, 2])), Samples::NotIncreasing);
        assert_eq!(s.samples(batch(&[1, 1])), Samples::NotIncreasing);
        assert_eq!(s.expected(), 1, "nothing was stored");
    }

    #[test]
    fn a_gap_is_recorded_from_what_is_not_stored_and_moves_past_it() {
        let mut s = Sequence::after(10);
        assert_eq!(
            s.gap(5, 20),
            Gap::Record {
                first: 11,
                last: 20
            }
        );
        assert_eq!(s.expected(), 21);
        assert_eq!(
            s.gap(21, 21),
            Gap::Record {
                first: 21,
                last: 21
            }
        );
        assert_eq!(s.expected(), 22);
    }

    #[test]
    fn a_stored_or_malformed_gap_is_ignored() {
        let mut s = Sequence::after(10);
        assert_eq!(s.gap(3, 9), Gap::Ignore);
        assert_eq!(s.gap(12, 11), Gap::Ignore);
        assert_eq!(s.expected(), 11);
        // A gap ending exactly at the last stored seq is already past.
        assert_eq!(s.gap(10, 10), Gap::Ignore);
    }
}

//! Samples waiting for the collector's ack. Bounded: when full, the oldest
//! samples are dropped and the hole is remembered as a gap, so the collector
//! records exactly which samples were lost instead of the user guessing.
//!
//! Samples are held until released (see [`super::pacing`]): at a short
//! sample interval several go out in one message.
//!
//! In memory only: the agent writes nothing to disk in steady state (SD cards).

use std::collections::VecDeque;

use nodewarden_proto::v1::{Gap, Sample};

#[derive(Debug)]
pub struct SampleBuffer {
    capacity: usize,
    /// Unacked samples, seq increasing.
    samples: VecDeque<Sample>,
    /// Dropped ranges not yet acked, oldest first, each with "sent on the
    /// current stream". Every gap's seqs are below every buffered sample's.
    gaps: VecDeque<(Gap, bool)>,
    /// Highest sample seq handed to the current stream.
    sent_through: u64,
    /// Samples up to this seq may go out; later ones are held for a batch.
    released_through: u64,
}

/// What to put on the wire next.
#[derive(Debug, PartialEq)]
pub enum Outgoing {
    Gap(Gap),
    Samples(Vec<Sample>),
}

impl SampleBuffer {
    pub fn new(capacity: usize) -> Self {
        SampleBuffer {
            capacity: capacity.max(1),
            samples: VecDeque::with_capacity(capacity.clamp(1, 256)),
            gaps: VecDeque::new(),
            sent_through: 0,
            released_through: 0,
        }
    }

    /// Adds a sample (seq must increase), held until [`Self::release`];
    /// drops the oldest when full.
    pub fn push(&mut self, sample: Sample) {
        if self.samples.len() >= self.capacity
            && let Some(old) = self.samples.pop_front()
        {
            self.record_drop(&old);
        }
        self.samples.push_back(sample);
    }

    fn record_drop(&mut self, lost: &Sample) {
        if let Some((gap, false)) = self.gaps.back_mut()
            && gap.last_seq + 1 == lost.seq
        {
            gap.last_seq = lost.seq;
            gap.last_timestamp_ms = lost.timestamp_ms;
            return;
        }
        let reason = format!(
            "agent buffer overflow while the collector was unreachable (capacity {} samples)",
            self.capacity
        );
        let gap = Gap {
            first_seq: lost.seq,
            last_seq: lost.seq,
            first_timestamp_ms: lost.timestamp_ms,
            last_timestamp_ms: lost.timestamp_ms,
            reason,
        };
        self.gaps.push_back((gap, false));
    }

    /// Lets every buffered sample go out.
    pub fn release(&mut self) {
        if let Some(last) = self.samples.back() {
            self.released_through = last.seq;
        }
    }

    /// The collector has durably stored (or written off) everything up to `seq`.
    pub fn ack(&mut self, seq: u64) {
        while self.samples.front().is_some_and(|s| s.seq <= seq) {
            self.samples.pop_front();
        }
        while self.gaps.front().is_some_and(|(g, _)| g.last_seq <= seq) {
            self.gaps.pop_front();
        }
    }

    /// A new stream starts and the collector said what it has: everything
    /// after that is sent again, gaps included, held samples too (the
    /// backlog goes at once).
    pub fn restart_stream(&mut self, stored_through: u64) {
        self.ack(stored_through);
        self.release();
        for (_, sent) in &mut self.gaps {
            *sent = false;
        }
        self.sent_through = stored_through;
    }

    /// Next thing to send on the stream, at most `max_batch` released
    /// samples. A gap always goes at once.
    pub fn next_outgoing(&mut self, max_batch: usize) -> Option<Outgoing> {
        if let Some((gap, sent)) = self.gaps.iter_mut().find(|(_, sent)| !*sent) {
            *sent = true;
            return Some(Outgoing::Gap(gap.clone()));
        }
        let start = self.samples.partition_point(|s| s.seq <= self.sent_through);
        let released = self.released_through;
        let batch: Vec<Sample> = self
            .samples
            .range(start..)
            .take_while(|s| s.seq <= released)
            .take(max_batch)
            .cloned()
            .collect();
        self.sent_through = batch.last()?.seq;
        Some(Outgoing::Samples(batch))
    }

    /// Oldest seq held (0 when empty).
    pub fn oldest_seq(&self) -> u64 {
        self.samples.front().map_or(0, |s| s.seq)
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seq: u64) -> Sample {
        Sample {
            seq,
            timestamp_ms: seq as i64 * 1000,
            ..Default::default()
        }
    }

    fn seqs(out: Option<Outgoing>) -> Vec<u64> {
        match out {
            Some(Outgoing::Samples(s)) => s.iter().map(|s| s.seq).collect(),
            other => panic!("expected samples, got {other:?}"),
        }
    }

    #[test]
    fn sends_each_sample_once_per_stream_and_resends_unacked_after_reconnect() {
        let mut b = SampleBuffer::new(10);
        for i in 1..=5 {
            b.push(sample(i));
        }
        b.release();
        assert_eq!(seqs(b.next_outgoing(3)), [1, 2, 3]);
        assert_eq!(seqs(b.next_outgoing(3)), [4, 5]);
        assert_eq!(b.next_outgoing(3), None);
        b.ack(2);
        // Stream broke; the new collector session has stored through 3.
        b.restart_stream(3);
        assert_eq!(seqs(b.next_outgoing(10)), [4, 5]);
        b.ack(5);
        assert!(b.is_empty());
    }

    #[test]
    fn overflow_becomes_one_gap_sent_before_the_samples_after_it() {
        let mut b = SampleBuffer::new(3);
        for i in 1..=7 {
            b.push(sample(i));
        }
        b.release();
        match b.next_outgoing(10) {
            Some(Outgoing::Gap(g)) => {
                assert_eq!((g.first_seq, g.last_seq), (1, 4));
                assert_eq!((g.first_timestamp_ms, g.last_timestamp_ms), (1000, 4000));
                assert!(g.reason.contains("capacity 3"), "{}", g.reason);
            }
            other => panic!("expected a gap first, got {other:?}"),
        }
        assert_eq!(seqs(b.next_outgoing(10)), [5, 6, 7]);
        // Not acked yet, stream restarts: the gap goes out again.
        b.restart_stream(0);
        assert!(matches!(b.next_outgoing(10), Some(Outgoing::Gap(_))));
        b.ack(7);
        assert_eq!(b.next_outgoing(10), None);
    }

    #[test]
    fn drops_after_a_sent_gap_start_a_new_gap() {
        let mut b = SampleBuffer::new(1);
        b.push(sample(1));
        b.push(sample(2)); // drops 1
        assert!(matches!(b.next_outgoing(10), Some(Outgoing::Gap(g)) if g.last_seq == 1));
        b.push(sample(3)); // drops 2 (already sent as a sample? no: not sent yet)
        b.release();
        match b.next_outgoing(10) {
            Some(Outgoing::Gap(g)) => assert_eq!((g.first_seq, g.last_seq), (2, 2)),
            other => panic!("expected a second gap, got {other:?}"),
        }
        assert_eq!(seqs(b.next_outgoing(10)), [3]);
    }

    #[test]
    fn held_samples_wait_for_a_release_and_go_out_together() {
        let mut b = SampleBuffer::new(10);
        b.push(sample(1));
        b.push(sample(2));
        assert_eq!(b.next_outgoing(10), None, "held until released");
        b.release();
        b.push(sample(3));
        assert_eq!(
            seqs(b.next_outgoing(10)),
            [1, 2],
            "3 came after the release"
        );
        assert_eq!(b.next_outgoing(10), None);
        b.push(sample(4));
        b.release();
        assert_eq!(seqs(b.next_outgoing(10)), [3, 4]);
    }

    #[test]
    fn a_new_stream_sends_the_held_backlog_at_once() {
        let mut b = SampleBuffer::new(10);
        for i in 1..=4 {
            b.push(sample(i));
        }
        b.restart_stream(1);
        assert_eq!(seqs(b.next_outgoing(10)), [2, 3, 4]);
    }
}

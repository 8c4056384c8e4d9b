//! When samples go to the collector: each is taken on its own tick, but at a
//! sample interval shorter than `send_interval` they go out together, so no
//! sample waits longer than `send_interval`. One protobuf message, one TLS
//! record, one HTTP/2 frame and one TCP send per batch instead of per
//! sample: at 1 s sampling that send was a third of the agent's CPU per
//! sample (README, figures). What the collector must hear at once does not
//! wait: the first sample, a change in the throttling state (under-voltage,
//! throttling started or stopped), and UPS changes, which have their own
//! message.

use std::time::Duration;

use nodewarden_proto::v1::{Sample, Throttling};

#[derive(Debug)]
pub struct Pacing {
    /// Samples per message in steady state (1 = each sample as taken).
    per_send: u64,
    /// Samples taken since the last send.
    held: u64,
    /// The throttling state of the last sample; `None` before the first.
    last_throttling: Option<Option<Throttling>>,
}

impl Pacing {
    pub fn new(sample_interval: Duration, send_interval: Duration) -> Self {
        // Counted in samples, not timed: a tick a millisecond early must not
        // split a batch.
        let per_send = send_interval.as_millis() / sample_interval.as_millis().max(1);
        Pacing {
            per_send: u64::try_from(per_send).unwrap_or(u64::MAX).max(1),
            held: 0,
            last_throttling: None,
        }
    }

    /// Whether `sample`, just taken, goes now with those held before it.
    pub fn send_now(&mut self, sample: &Sample) -> bool {
        let changed = self.last_throttling.as_ref() != Some(&sample.throttling);
        if changed {
            self.last_throttling = Some(sample.throttling);
        }
        self.held += 1;
        if changed || self.held >= self.per_send {
            self.held = 0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodewarden_proto::v1::ThrottlingSource;

    fn sent(pacing: &mut Pacing, samples: &[Sample]) -> Vec<bool> {
        samples.iter().map(|s| pacing.send_now(s)).collect()
    }

    #[test]
    fn one_second_samples_go_five_at_a_time_the_first_at_once() {
        let mut p = Pacing::new(Duration::from_secs(1), Duration::from_secs(5));
        let quiet = vec![Sample::default(); 11];
        assert_eq!(
            sent(&mut p, &quiet),
            [
                true, false, false, false, false, true, false, false, false, false, true
            ]
        );
    }

    #[test]
    fn no_sample_waits_longer_than_the_send_interval() {
        // 2 s samples, 5 s sends: a third sample would have waited 6 s.
        let mut p = Pacing::new(Duration::from_secs(2), Duration::from_secs(5));
        let quiet = vec![Sample::default(); 5];
        assert_eq!(sent(&mut p, &quiet), [true, false, true, false, true]);
        // Sampling as slow as sending or slower: every sample at once.
        for (sample, send) in [(5, 5), (10, 5), (3, 5)] {
            let mut p = Pacing::new(Duration::from_secs(sample), Duration::from_secs(send));
            assert!(
                sent(&mut p, &quiet).iter().all(|s| *s),
                "{sample} s / {send} s"
            );
        }
    }

    #[test]
    fn a_throttling_change_goes_at_once_both_ways() {
        let mut p = Pacing::new(Duration::from_secs(1), Duration::from_secs(5));
        let calm = Sample {
            throttling: Some(Throttling {
                source: ThrottlingSource::Mailbox as i32,
                get_throttled: 0,
                under_voltage_alarm: false,
            }),
            ..Default::default()
        };
        let mut under_voltage = calm.clone();
        if let Some(t) = under_voltage.throttling.as_mut() {
            t.get_throttled = 0x1_0001;
        }
        let mut recovered = calm.clone();
        if let Some(t) = recovered.throttling.as_mut() {
            t.get_throttled = 0x1_0000;
        }
        let run = [
            calm.clone(),
            calm.clone(),
            under_voltage.clone(),
            under_voltage,
            recovered.clone(),
            recovered.clone(),
            recovered.clone(),
            recovered.clone(),
            recovered,
        ];
        assert_eq!(
            sent(&mut p, &run),
            [true, false, true, false, true, false, false, false, false],
        );
        // The count restarts after each early send: the next batch is full.
        assert!(p.send_now(&run[8]));
    }
}

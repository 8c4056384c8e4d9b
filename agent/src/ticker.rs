//! The sampling tick: a kernel interval timer (timerfd) in the runtime's
//! epoll set, instead of a tokio `Interval`.
//!
//! Why: tokio's timer wheel registers the next tick anew each time, and a
//! timer earlier than the driver's next planned wake-up makes it wake its own
//! epoll through an eventfd, even from the runtime's own thread. That is a
//! write, an extra epoll round and a wheel pass every sample. A timerfd
//! with an interval re-arms itself in the kernel: one readable event and one
//! read per tick. Where timerfd is missing, a tokio `Interval` does the job.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Duration;

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Ticks at once, then every `period`. Ticks missed while the process was
/// stopped are not made up: the next one keeps the original phase.
#[derive(Debug)]
pub struct Ticker {
    kind: Kind,
    first: bool,
}

#[derive(Debug)]
enum Kind {
    Kernel(AsyncFd<Timer>),
    Tokio(tokio::time::Interval),
}

/// `TimerFd` with the raw fd `AsyncFd` asks for; it owns the fd.
#[derive(Debug)]
struct Timer(TimerFd);

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl Ticker {
    /// A ticker for `period`; must be called inside the tokio runtime.
    pub fn new(period: Duration) -> Ticker {
        let kind = match kernel_timer(period) {
            Ok(fd) => Kind::Kernel(fd),
            Err(e) => {
                tracing::debug!("no timerfd ({e}); sampling on a tokio interval");
                let mut interval = tokio::time::interval(period);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                Kind::Tokio(interval)
            }
        };
        Ticker { kind, first: true }
    }

    /// Waits for the next tick; the first returns at once.
    pub async fn tick(&mut self) {
        if std::mem::take(&mut self.first) {
            return;
        }
        match &mut self.kind {
            Kind::Kernel(fd) => loop {
                let Ok(mut ready) = fd.readable().await else {
                    // The registration is gone: cannot happen while the
                    // runtime runs; do not spin if it ever does.
                    std::future::pending::<()>().await;
                    return;
                };
                // Reading takes the expiration count (how many periods
                // passed); one sample is taken however many it says. The
                // read cannot be skipped: the kernel re-arms an interval
                // timerfd only when it is read (timerfd_read forwards the
                // hrtimer), so an unread one never fires again.
                match ready.try_io(|t| t.get_ref().0.wait().map_err(std::io::Error::from)) {
                    Ok(_) => {
                        // Read empties a timerfd until its next expiry, which
                        // epoll reports as a new edge: no need for the
                        // EAGAIN read that would tell tokio so.
                        ready.clear_ready();
                        return;
                    }
                    Err(_would_block) => continue,
                }
            },
            Kind::Tokio(interval) => {
                interval.tick().await;
            }
        }
    }
}

fn kernel_timer(period: Duration) -> std::io::Result<AsyncFd<Timer>> {
    let fd = TimerFd::new(
        ClockId::CLOCK_MONOTONIC,
        TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
    )?;
    fd.set(
        Expiration::Interval(TimeSpec::from_duration(period)),
        TimerSetTimeFlags::empty(),
    )?;
    crate::sensors::syscall::watch_fd(Timer(fd), Interest::READABLE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn ticks_at_once_then_every_period() {
        // Long enough that a busy test machine's scheduling delay (tens of
        // ms) cannot pass for a wrong period.
        let period = Duration::from_millis(100);
        let mut ticker = Ticker::new(period);
        assert!(matches!(ticker.kind, Kind::Kernel(_)), "timerfd on Linux");
        let start = Instant::now();
        ticker.tick().await;
        assert!(start.elapsed() < period / 2, "first tick is immediate");
        for n in 1..=3u32 {
            ticker.tick().await;
            let at = start.elapsed();
            assert!(at >= period * n, "tick {n} early: {at:?}");
            assert!(
                at < period * n + Duration::from_millis(60),
                "tick {n} late: {at:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_stall_gives_one_tick_not_a_burst() {
        let period = Duration::from_millis(20);
        let mut ticker = Ticker::new(period);
        ticker.tick().await;
        // Blocks the runtime thread across several periods, like a stopped
        // process.
        std::thread::sleep(period * 5);
        // Five periods passed: a burst would make them up at once; one
        // overdue tick and then the normal pace gives at most four in the
        // next two and a half periods.
        let start = Instant::now();
        let mut ticks = 0;
        while start.elapsed() < period * 5 / 2 {
            tokio::select! {
                _ = ticker.tick() => ticks += 1,
                _ = tokio::time::sleep(period * 5 / 2 - start.elapsed().min(period * 5 / 2)) => {}
            }
        }
        assert!((1..=4).contains(&ticks), "{ticks} ticks after the stall");
    }
}

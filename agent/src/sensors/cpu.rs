//! CPU usage from /proc/stat deltas, and per-core frequency from cpufreq.

use std::path::PathBuf;

use nodewarden_proto::v1::{Cpu, CpuCore};

use super::ascii;
use super::log_once::LogOnce;
use super::reader::Reader;
use crate::sysroot::SysRoot;

/// One /proc/stat `cpu` line, in USER_HZ ticks since boot. guest and
/// guest_nice are left out: the kernel already counts them in user and nice.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ticks {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl Ticks {
    fn total(&self) -> u64 {
        self.user
            .saturating_add(self.nice)
            .saturating_add(self.system)
            .saturating_add(self.idle)
            .saturating_add(self.iowait)
            .saturating_add(self.irq)
            .saturating_add(self.softirq)
            .saturating_add(self.steal)
    }

    fn idle_all(&self) -> u64 {
        self.idle.saturating_add(self.iowait)
    }
}

/// Busy share between two readings, 0-100. iowait is idle time (as top and
/// node_exporter dashboards count it). Counters that went backwards (iowait
/// can, on some kernels) count as no change rather than a huge one.
fn busy_percent(before: &Ticks, after: &Ticks) -> f32 {
    let total = after.total().saturating_sub(before.total());
    if total == 0 {
        return 0.0;
    }
    let idle = after
        .idle_all()
        .saturating_sub(before.idle_all())
        .min(total);
    ((total - idle) as f64 * 100.0 / total as f64) as f32
}

/// The `cpu` lines of one /proc/stat reading.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StatSnapshot {
    pub all: Ticks,
    /// (N of cpuN, counters), in file order: online CPUs only.
    pub cores: Vec<(u32, Ticks)>,
}

/// Parses the `cpu` lines of /proc/stat into `out` (reusing its vector).
/// False when the aggregate line is missing or a cpu line is malformed.
pub fn parse_stat(text: &str, out: &mut StatSnapshot) -> bool {
    out.cores.clear();
    let mut have_all = false;
    for line in ascii::lines(text) {
        let Some(rest) = line.strip_prefix(b"cpu") else {
            // The cpu lines come first; the rest (intr, ctxt...) is not ours.
            if have_all {
                break;
            }
            continue;
        };
        // "cpu  100 0 ..." is the aggregate, "cpu3 50 0 ..." core 3.
        let (name, counters) = ascii::split_once(rest, b' ').unwrap_or((rest, b""));
        let Some(ticks) = parse_ticks(counters) else {
            return false;
        };
        if name.is_empty() {
            out.all = ticks;
            have_all = true;
        } else {
            let Some(id) = ascii::unsigned(name).and_then(|n| u32::try_from(n).ok()) else {
                return false;
            };
            out.cores.push((id, ticks));
        }
    }
    have_all
}

fn parse_ticks(counters: &[u8]) -> Option<Ticks> {
    let mut values = [0u64; 8];
    let mut n = 0;
    for word in ascii::words(counters) {
        if n < values.len() {
            values[n] = ascii::unsigned(word)?;
        }
        n += 1;
    }
    // Linux 2.6 has had at least user, nice, system, idle; the rest arrived
    // later and are zero when absent.
    if n < 4 {
        return None;
    }
    let [user, nice, system, idle, iowait, irq, softirq, steal] = values;
    Some(Ticks {
        user,
        nice,
        system,
        idle,
        iowait,
        irq,
        softirq,
        steal,
    })
}

/// The `btime` line: boot time, unix seconds.
pub fn parse_btime(text: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Keeps the previous /proc/stat counters so usage is a delta.
#[derive(Debug)]
pub struct CpuReader {
    stat_path: PathBuf,
    ticks_per_second: f64,
    previous: Option<StatSnapshot>,
    current: StatSnapshot,
    /// This sample's frequency of each cpufreq policy, Hz.
    policy_hertz: Vec<u64>,
}

impl CpuReader {
    /// Reads `stat_path` (/proc/stat under the root), counters in
    /// `ticks_per_second` (USER_HZ).
    pub fn new(stat_path: PathBuf, ticks_per_second: u64) -> Self {
        CpuReader {
            stat_path,
            ticks_per_second: ticks_per_second.max(1) as f64,
            previous: None,
            current: StatSnapshot::default(),
            policy_hertz: Vec::new(),
        }
    }

    /// One reading. Usage is the share since the previous call; on the first
    /// call it is the average since boot (the counters start at boot), which
    /// is a real figure rather than a made-up 0. `frequency` says where
    /// each core's scaling_cur_freq is.
    pub fn read(
        &mut self,
        reader: &mut Reader,
        log: &LogOnce,
        frequency: &FrequencyFiles,
    ) -> Option<Cpu> {
        let text = reader.text(&self.stat_path, log)?;
        if !parse_stat(text, &mut self.current) {
            log.garbage(&self.stat_path, "no well-formed cpu lines");
            return None;
        }
        frequency.read(reader, log, &mut self.policy_hertz);
        let zero = Ticks::default();
        let prev = self.previous.as_ref();
        let usage_percent = busy_percent(prev.map_or(&zero, |p| &p.all), &self.current.all);
        let hz = self.ticks_per_second;
        let seconds = |t: u64| t as f64 / hz;
        let mut cores = Vec::with_capacity(self.current.cores.len());
        for (index, &(id, ticks)) in self.current.cores.iter().enumerate() {
            let before = prev
                .and_then(|p| previous_core(p, index, id))
                .unwrap_or(&zero);
            cores.push(CpuCore {
                id,
                usage_percent: busy_percent(before, &ticks),
                frequency_hertz: frequency.of_core(index, id, &self.policy_hertz),
                user_seconds: seconds(ticks.user),
                nice_seconds: seconds(ticks.nice),
                system_seconds: seconds(ticks.system),
                idle_seconds: seconds(ticks.idle),
                iowait_seconds: seconds(ticks.iowait),
                irq_seconds: seconds(ticks.irq),
                softirq_seconds: seconds(ticks.softirq),
                steal_seconds: seconds(ticks.steal),
            });
        }
        let logical_cpus = cores.len() as u32;
        // Keep this reading as the base of the next delta, reusing the old
        // vector for the next parse.
        let mut spent = self.previous.take().unwrap_or_default();
        std::mem::swap(&mut spent, &mut self.current);
        self.previous = Some(spent);
        Some(Cpu {
            usage_percent,
            cores,
            logical_cpus,
            measured_arm_clock_hertz: 0,
        })
    }
}

/// The same core in the previous reading: usually at the same index; a CPU
/// taken offline or brought back shifts the others.
fn previous_core(prev: &StatSnapshot, index: usize, id: u32) -> Option<&Ticks> {
    match prev.cores.get(index) {
        Some((pid, t)) if *pid == id => Some(t),
        _ => prev
            .cores
            .iter()
            .find(|(pid, _)| *pid == id)
            .map(|(_, t)| t),
    }
}

/// Where each core's frequency is read. Cores that share a cpufreq policy
/// (all four cores of a Raspberry Pi: cpuN/cpufreq links to policy0) share
/// one scaling_cur_freq file, read once per sample.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FrequencyFiles {
    /// (N of cpuN, index into `policies`), by N.
    cores: Vec<(u32, usize)>,
    /// scaling_cur_freq of each distinct policy.
    policies: Vec<PathBuf>,
}

impl FrequencyFiles {
    /// Finds cpuN/cpufreq/scaling_cur_freq for every CPU that has one.
    pub fn discover(root: &SysRoot) -> Self {
        let mut found = FrequencyFiles::default();
        let Ok(entries) = std::fs::read_dir(root.join("/sys/devices/system/cpu")) else {
            return found;
        };
        let mut cores: Vec<(u32, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let id: u32 = e.file_name().to_str()?.strip_prefix("cpu")?.parse().ok()?;
                let policy = std::fs::canonicalize(e.path().join("cpufreq")).ok()?;
                let path = policy.join("scaling_cur_freq");
                path.is_file().then_some((id, path))
            })
            .collect();
        cores.sort_by_key(|(id, _)| *id);
        for (id, path) in cores {
            let index = match found.policies.iter().position(|p| *p == path) {
                Some(i) => i,
                None => {
                    found.policies.push(path);
                    found.policies.len() - 1
                }
            };
            found.cores.push((id, index));
        }
        found
    }

    /// Reads every policy's frequency into `hertz` (0 where unreadable).
    fn read(&self, reader: &mut Reader, log: &LogOnce, hertz: &mut Vec<u64>) {
        hertz.clear();
        for path in &self.policies {
            let khz = reader.integer(path, log).filter(|k| *k > 0).unwrap_or(0);
            hertz.push(khz as u64 * 1000);
        }
    }

    /// The frequency of core `id` (at `index` in /proc/stat), 0 if none.
    fn of_core(&self, index: usize, id: u32, hertz: &[u64]) -> u64 {
        let policy = match self.cores.get(index) {
            Some((cid, p)) if *cid == id => Some(*p),
            _ => self
                .cores
                .iter()
                .find(|(cid, _)| *cid == id)
                .map(|(_, p)| *p),
        };
        policy.and_then(|p| hertz.get(p).copied()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 0 100 700 100 0 0 0 0 0\n\
                        cpu0 50 0 50 350 50 0 0 0 0 0\n\
                        cpu1 50 0 50 350 50 0 0 0 0 0\n\
                        intr 12345 0 0\nctxt 999\nbtime 1763900000\n";

    #[test]
    fn parses_cpu_lines_and_btime() {
        let mut s = StatSnapshot::default();
        assert!(parse_stat(STAT, &mut s));
        assert_eq!(s.cores.len(), 2);
        assert_eq!(s.all.idle, 700);
        assert_eq!(s.cores[1].0, 1);
        assert_eq!(parse_btime(STAT), Some(1_763_900_000));
        assert!(!parse_stat("cpu 1 2\n", &mut s));
        assert!(!parse_stat("intr 1\n", &mut s));
        assert!(!parse_stat("cpu 1 2 3 4\ncpuX 1 2 3 4\n", &mut s));
    }

    #[test]
    fn usage_counts_iowait_as_idle_and_survives_backwards_counters() {
        let a = Ticks {
            user: 100,
            idle: 800,
            iowait: 100,
            ..Default::default()
        };
        let b = Ticks {
            user: 175,
            idle: 800 + 20,
            iowait: 100 + 5,
            ..Default::default()
        };
        assert_eq!(busy_percent(&a, &b), 75.0);
        let c = Ticks { iowait: 50, ..b };
        let u = busy_percent(&b, &c);
        assert!((0.0..=100.0).contains(&u), "{u}");
        assert_eq!(busy_percent(&a, &a), 0.0);
    }
}

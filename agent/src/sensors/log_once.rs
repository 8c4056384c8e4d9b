//! Logging a sensor problem once, not on every sample: a missing or garbled
//! file would otherwise fill the journal (and wear the SD card) every 5 s.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// What went wrong with a file, coarse enough that a repeat is recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Problem {
    /// Reading failed with this kind of error.
    Io(io::ErrorKind),
    /// The file was read but its content did not make sense.
    Garbage,
    /// The file could not be opened for lack of permission, with a fix.
    Permission,
}

/// Remembers which (path, problem) pairs were already reported.
#[derive(Debug, Default)]
pub struct LogOnce {
    seen: Mutex<HashSet<(PathBuf, Problem)>>,
}

impl LogOnce {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// True the first time this (path, problem) pair is seen.
    fn first(&self, path: &Path, problem: Problem) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.contains(&(path.to_path_buf(), problem)) {
            return false;
        }
        seen.insert((path.to_path_buf(), problem))
    }

    /// A read failed: warn once per (path, kind of error).
    pub fn read_failed(&self, path: &Path, err: &io::Error) {
        if self.first(path, Problem::Io(err.kind())) {
            tracing::warn!(
                "cannot read {}: {err}; leaving that reading out (reported once)",
                path.display()
            );
        }
    }

    /// A sensor that is expected to be unreadable at times (a thermal zone of
    /// a Wi-Fi card whose interface is down answers EINVAL): note it once at
    /// debug level.
    pub fn not_ready(&self, path: &Path, err: &io::Error) {
        if self.first(path, Problem::Io(err.kind())) {
            tracing::debug!("sensor not ready: {}: {err}", path.display());
        }
    }

    /// The content of `path` did not parse.
    pub fn garbage(&self, path: &Path, what: &str) {
        if self.first(path, Problem::Garbage) {
            tracing::warn!(
                "unexpected content in {}: {what}; leaving that reading out (reported once)",
                path.display()
            );
        }
    }

    /// Permission denied, with the fix the user should apply.
    pub fn permission(&self, path: &Path, fix: &str) {
        if self.first(path, Problem::Permission) {
            tracing::warn!("cannot open {}: permission denied; {fix}", path.display());
        }
    }

    /// How many distinct problems were reported so far.
    pub fn reported(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_and_problem_is_reported_once() {
        let log = LogOnce::new();
        let p = Path::new("/proc/meminfo");
        let enoent = io::Error::from(io::ErrorKind::NotFound);
        log.read_failed(p, &enoent);
        log.read_failed(p, &enoent);
        assert_eq!(log.reported(), 1);
        log.garbage(p, "no MemTotal");
        log.garbage(p, "no MemTotal");
        assert_eq!(log.reported(), 2);
        log.read_failed(Path::new("/proc/stat"), &enoent);
        assert_eq!(log.reported(), 3);
    }
}

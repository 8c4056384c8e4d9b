//! Reading small kernel text files into one reused buffer: sysfs and procfs
//! files are regenerated on every open, so each sample opens, reads and
//! closes them, without allocating and without the size probe std's
//! `read_to_string` does (sysfs reports 4096 for every attribute anyway).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use super::log_once::LogOnce;

/// A reusable read buffer, plus a note that a sensor file vanished (a sign
/// the set of sensors changed and should be discovered again).
#[derive(Debug)]
pub struct Reader {
    buf: Vec<u8>,
    filled: usize,
    /// Set by the hwmon and thermal readers when a discovered sensor file is
    /// gone; cleared by discovery. (Fixed /proc files that are missing are
    /// logged, not rediscovered: that would not bring them back.)
    pub saw_missing: bool,
}

impl Default for Reader {
    fn default() -> Self {
        Self::new()
    }
}

impl Reader {
    /// A reader with a buffer big enough for /proc/stat on a small board.
    pub fn new() -> Self {
        Reader {
            buf: vec![0; 4096],
            filled: 0,
            saw_missing: false,
        }
    }

    /// Reads the whole of `path` into the buffer.
    fn fill(&mut self, path: &Path) -> io::Result<()> {
        self.filled = 0;
        let mut file = File::open(path)?;
        loop {
            if self.filled == self.buf.len() {
                let grown = self.buf.len() * 2;
                self.buf.resize(grown, 0);
            }
            match file.read(&mut self.buf[self.filled..]) {
                Ok(0) => return Ok(()),
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads the whole of `path`; errors are returned, not logged.
    pub fn try_text(&mut self, path: &Path) -> io::Result<&str> {
        self.fill(path)?;
        std::str::from_utf8(&self.buf[..self.filled])
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
    }

    /// Reads `path`; a failure is logged once and gives `None`.
    pub fn text(&mut self, path: &Path, log: &LogOnce) -> Option<&str> {
        if let Err(e) = self.fill(path) {
            log.read_failed(path, &e);
            return None;
        }
        match std::str::from_utf8(&self.buf[..self.filled]) {
            Ok(text) => Some(text),
            Err(_) => {
                log.garbage(path, "not UTF-8 text");
                None
            }
        }
    }

    /// Reads and parses `path` with `parse`; garbage is logged once.
    pub fn parse<T>(
        &mut self,
        path: &Path,
        log: &LogOnce,
        what: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let text = self.text(path, log)?;
        let value = parse(text);
        if value.is_none() {
            log.garbage(path, what);
        }
        value
    }

    /// Reads one integer (a sysfs attribute such as `temp` or
    /// `scaling_cur_freq`).
    pub fn integer(&mut self, path: &Path, log: &LogOnce) -> Option<i64> {
        self.parse(path, log, "expected one integer", |t| t.trim().parse().ok())
    }

    /// Reads one line of text, trimmed (a sysfs `name`, `type` or `label`).
    pub fn line(&mut self, path: &Path, log: &LogOnce) -> Option<String> {
        self.parse(path, log, "expected one line of text", |t| {
            let t = t.trim_matches(|c: char| c.is_whitespace() || c == '\0');
            (!t.is_empty()).then(|| t.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_files_larger_than_the_buffer_and_logs_failures_once() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        let content = "x".repeat(10_000);
        std::fs::write(&big, &content).unwrap();
        let log = LogOnce::new();
        let mut r = Reader::new();
        assert_eq!(r.text(&big, &log).unwrap().len(), 10_000);
        assert!(r.text(&dir.path().join("gone"), &log).is_none());
        assert!(r.text(&dir.path().join("gone"), &log).is_none());
        std::fs::write(&big, "  42\n").unwrap();
        assert_eq!(r.integer(&big, &log), Some(42));
        std::fs::write(&big, "forty-two\n").unwrap();
        assert_eq!(r.integer(&big, &log), None);
        assert_eq!(log.reported(), 2);
        assert!(!r.saw_missing);
    }
}

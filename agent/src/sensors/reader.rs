//! Reading small kernel text files into one reused buffer, without
//! allocating and without the size probe std's `read_to_string` does (sysfs
//! reports 4096 for every attribute anyway).
//!
//! Files on procfs and sysfs stay open between samples and are read again
//! with `pread` at offset 0: both regenerate their text on a read from the
//! start (seq_file restarts at position 0; sysfs.rst: "seek to 0 and read
//! again"), so one system call does what open, read, read and close did.
//! Any other file (the fixture trees tests use) is opened every time, so a
//! test that replaces or removes it is seen at once.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::sys::statfs::{PROC_SUPER_MAGIC, SYSFS_MAGIC, fstatfs};

use super::log_once::LogOnce;

/// A reusable read buffer, the kernel files kept open, and a note that a
/// sensor file vanished (a sign the set of sensors changed and should be
/// discovered again).
#[derive(Debug)]
pub struct Reader {
    buf: Vec<u8>,
    filled: usize,
    /// procfs and sysfs files read before, by path.
    open: HashMap<PathBuf, File>,
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
            open: HashMap::new(),
            saw_missing: false,
        }
    }

    /// Closes every kept file: discovery calls this, so a sensor that was
    /// replaced (a chip unbound and bound again) is opened afresh.
    pub fn close_all(&mut self) {
        self.open.clear();
    }

    /// How many files are kept open.
    #[cfg(test)]
    fn kept_open(&self) -> usize {
        self.open.len()
    }

    /// Reads the whole of `path` into the buffer; `keep` keeps a kernel
    /// file open for the next read (files read every sample; see
    /// [`read_all_at`] for which kernel files qualify).
    fn fill(&mut self, path: &Path, keep: bool) -> io::Result<()> {
        if let Some(file) = self.open.get(path) {
            match read_all_at(file, &mut self.buf, &mut self.filled) {
                Ok(()) => return Ok(()),
                // Closed, then opened again below: a removed device's file
                // answers ENODEV, and the fresh open says what is wrong now
                // (usually "not found", which sends discovery looking).
                Err(_) => {
                    self.open.remove(path);
                }
            }
        }
        let mut file = File::open(path)?;
        if keep && is_kernel_generated(&file) {
            read_all_at(&file, &mut self.buf, &mut self.filled)?;
            self.open.insert(path.to_path_buf(), file);
            return Ok(());
        }
        self.filled = 0;
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
        self.fill(path, true)?;
        std::str::from_utf8(&self.buf[..self.filled])
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
    }

    /// Reads `path`; a failure is logged once and gives `None`.
    pub fn text(&mut self, path: &Path, log: &LogOnce) -> Option<&str> {
        self.text_kept(path, log, true)
    }

    fn text_kept(&mut self, path: &Path, log: &LogOnce, keep: bool) -> Option<&str> {
        if let Err(e) = self.fill(path, keep) {
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
        self.parse_kept(path, log, what, true, parse)
    }

    fn parse_kept<T>(
        &mut self,
        path: &Path,
        log: &LogOnce,
        what: &str,
        keep: bool,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let text = self.text_kept(path, log, keep)?;
        let value = parse(text);
        if value.is_none() {
            log.garbage(path, what);
        }
        value
    }

    /// Reads one integer (a sysfs attribute such as `temp` or
    /// `scaling_cur_freq`).
    pub fn integer(&mut self, path: &Path, log: &LogOnce) -> Option<i64> {
        self.parse(path, log, "expected one integer", |t| {
            super::ascii::signed(t.as_bytes().trim_ascii())
        })
    }

    /// Reads one line of text, trimmed (a sysfs `name`, `type` or `label`);
    /// read at discovery only, so the file is not kept open.
    pub fn line(&mut self, path: &Path, log: &LogOnce) -> Option<String> {
        self.parse_kept(path, log, "expected one line of text", false, |t| {
            let t = t.trim_matches(|c: char| c.is_whitespace() || c == '\0');
            (!t.is_empty()).then(|| t.to_string())
        })
    }
}

/// procfs or sysfs: text the kernel makes on every read from offset 0.
fn is_kernel_generated(file: &File) -> bool {
    fstatfs(file).is_ok_and(|fs| {
        let kind = fs.filesystem_type();
        kind == PROC_SUPER_MAGIC || kind == SYSFS_MAGIC
    })
}

/// Reads `file` from offset 0 to its end into `buf`, growing it as needed.
///
/// A read that leaves room in the buffer got the whole file: a sysfs
/// attribute is one `show()` (sysfs.rst: "the show() method should fill the
/// entire buffer"), and the procfs files sampled (stat, meminfo, loadavg,
/// uptime, pressure) are `single_open` seq_files, generated whole and handed
/// out as far as the buffer goes. That saves the read that would return 0.
fn read_all_at(file: &File, buf: &mut Vec<u8>, filled: &mut usize) -> io::Result<()> {
    *filled = 0;
    loop {
        if *filled == buf.len() {
            let grown = buf.len() * 2;
            buf.resize(grown, 0);
        }
        let room = buf.len() - *filled;
        match file.read_at(&mut buf[*filled..], *filled as u64) {
            Ok(n) if n < room => {
                *filled += n;
                return Ok(());
            }
            Ok(n) => *filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
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

    #[test]
    fn proc_files_stay_open_and_show_fresh_text_on_every_read() {
        let log = LogOnce::new();
        let mut r = Reader::new();
        // /proc/self/schedstat: this thread's CPU time in ns, which grows
        // with the busy loop below.
        let path = Path::new("/proc/thread-self/schedstat");
        let ns = |r: &mut Reader| -> u64 {
            r.parse(path, &log, "ns", |t| {
                t.split_whitespace().next()?.parse().ok()
            })
            .unwrap()
        };
        let before = ns(&mut r);
        assert_eq!(r.kept_open(), 1);
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(20) {
            std::hint::black_box(spin.elapsed());
        }
        let after = ns(&mut r);
        assert_eq!(r.kept_open(), 1, "read again through the same file");
        assert!(after > before, "stale text: {before} then {after}");
        assert!(
            r.text(Path::new("/proc/meminfo"), &log)
                .unwrap()
                .contains("MemTotal:")
        );
        assert_eq!(r.kept_open(), 2);
        r.close_all();
        assert_eq!(r.kept_open(), 0);
    }

    #[test]
    fn ordinary_files_are_reopened_so_a_replaced_or_removed_file_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join("temp");
        std::fs::write(&temp, "41000\n").unwrap();
        let log = LogOnce::new();
        let mut r = Reader::new();
        assert_eq!(r.integer(&temp, &log), Some(41_000));
        assert_eq!(r.kept_open(), 0);
        let new = dir.path().join("temp.new");
        std::fs::write(&new, "42000\n").unwrap();
        std::fs::rename(&new, &temp).unwrap();
        assert_eq!(r.integer(&temp, &log), Some(42_000));
        std::fs::remove_file(&temp).unwrap();
        let err = r.try_text(&temp).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}

//! Usage of the reported filesystem (the root by default), through a
//! descriptor kept open between samples: `fstatvfs` on it skips the path
//! lookup `statvfs` makes every time. Discovery opens it again, so a
//! filesystem mounted over the path later is seen from the next discovery on.

use std::fs::File;
use std::path::PathBuf;

use nodewarden_proto::v1::Filesystem;

use super::log_once::LogOnce;
use super::syscall;

#[derive(Debug)]
pub struct FilesystemReader {
    /// The path under the sysroot.
    path: PathBuf,
    /// What the sample calls it (the configured path).
    mountpoint: String,
    /// `path` opened with O_PATH, once it could be.
    kept: Option<File>,
}

impl FilesystemReader {
    pub fn new(path: PathBuf, mountpoint: String) -> Self {
        FilesystemReader {
            path,
            mountpoint,
            kept: None,
        }
    }

    /// Drops the kept descriptor: the next read opens the path afresh.
    pub fn reopen(&mut self) {
        self.kept = None;
    }

    pub fn read(&mut self, log: &LogOnce) -> Option<Filesystem> {
        if self.kept.is_none() {
            self.kept = syscall::open_path(&self.path).ok();
        }
        let space = match &self.kept {
            Some(file) => syscall::fstatvfs(file).or_else(|_| {
                // Gone or unmounted under us: by path, and open again next time.
                self.kept = None;
                syscall::statvfs(&self.path)
            }),
            None => syscall::statvfs(&self.path),
        };
        match space {
            Ok(space) => Some(Filesystem {
                mountpoint: self.mountpoint.clone(),
                size_bytes: space.size_bytes,
                available_bytes: space.available_bytes,
                free_bytes: space.free_bytes,
            }),
            Err(e) => {
                log.read_failed(&self.path, &e);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_through_the_kept_descriptor_and_reports_a_missing_path() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogOnce::new();
        let mut fs = FilesystemReader::new(dir.path().to_path_buf(), "/data".into());
        let first = fs.read(&log).unwrap();
        assert_eq!(first.mountpoint, "/data");
        assert!(first.size_bytes > 0 && first.available_bytes <= first.size_bytes);
        assert!(fs.kept.is_some(), "descriptor kept for the next sample");
        let by_path = syscall::statvfs(&fs.path).unwrap();
        assert_eq!(fs.read(&log).unwrap().size_bytes, by_path.size_bytes);

        let mut missing = FilesystemReader::new(dir.path().join("nope"), "/nope".into());
        assert_eq!(missing.read(&log), None);
        assert_eq!(missing.read(&log), None);
        assert_eq!(log.reported(), 1, "logged once");
    }
}

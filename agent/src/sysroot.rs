//! One root for every /proc, /sys and /dev path the agent reads, so tests run
//! the real reading code against fixture trees of real boards.

use std::path::{Path, PathBuf};

/// Prefix for kernel interface paths. `/` in production.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysRoot(PathBuf);

impl SysRoot {
    /// The real system.
    pub fn host() -> Self {
        SysRoot(PathBuf::from("/"))
    }

    /// A fixture tree (or any other prefix).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        SysRoot(root.into())
    }

    /// `path` (absolute, e.g. "/proc/meminfo") under this root.
    pub fn join(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        self.0.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// The root itself.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// True for the real system (enables ioctls on /dev files).
    pub fn is_host(&self) -> bool {
        self.0 == Path::new("/")
    }
}

impl Default for SysRoot {
    fn default() -> Self {
        Self::host()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_absolute_paths_under_the_root() {
        let r = SysRoot::at("/fixtures/pi4");
        assert_eq!(
            r.join("/proc/meminfo"),
            PathBuf::from("/fixtures/pi4/proc/meminfo")
        );
        assert_eq!(
            SysRoot::host().join("/sys/class"),
            PathBuf::from("/sys/class")
        );
    }
}

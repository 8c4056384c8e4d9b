//! Size and free space of the configured filesystem (statvfs).

use std::path::Path;

use nodewarden_proto::v1::Filesystem;

use super::log_once::LogOnce;
use super::syscall;

/// statvfs of `path`, reported under the name `mountpoint`.
pub fn read(path: &Path, mountpoint: &str, log: &LogOnce) -> Option<Filesystem> {
    match syscall::statvfs(path) {
        Ok(space) => Some(Filesystem {
            mountpoint: mountpoint.to_string(),
            size_bytes: space.size_bytes,
            available_bytes: space.available_bytes,
            free_bytes: space.free_bytes,
        }),
        Err(e) => {
            log.read_failed(path, &e);
            None
        }
    }
}

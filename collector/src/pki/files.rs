//! Files with tight permissions: keys and secrets 0600, their directory 0700.
//! Written to a temporary name and renamed, so a crash leaves the old file.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of private keys and token hashes.
pub const PRIVATE: u32 = 0o600;
/// Mode of certificates (public).
pub const PUBLIC: u32 = 0o644;

/// Creates `dir` (and parents) with mode 0700, and tightens it if it exists.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Writes `bytes` to `path` with `mode`, atomically.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    // The umask may have narrowed the mode; a public file must stay readable.
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path)
}

/// After `init` or `cert reissue` run as root: the PKI belongs to whoever owns
/// the data directory (the `nodewarden` user in packages), or the collector
/// could not read its own key.
pub fn hand_to_data_dir_owner(paths: &super::PkiPaths) {
    use std::os::unix::fs::MetadataExt;
    let Some(data_dir) = paths.dir.parent() else {
        return;
    };
    let Ok(meta) = std::fs::metadata(data_dir) else {
        return;
    };
    if !nix::unistd::geteuid().is_root() || meta.uid() == 0 {
        return;
    }
    let owner = Some(nix::unistd::Uid::from_raw(meta.uid()));
    let group = Some(nix::unistd::Gid::from_raw(meta.gid()));
    let _ = nix::unistd::chown(&paths.dir, owner, group);
    if let Ok(entries) = std::fs::read_dir(&paths.dir) {
        for e in entries.flatten() {
            let _ = nix::unistd::chown(&e.path(), owner, group);
        }
    }
}

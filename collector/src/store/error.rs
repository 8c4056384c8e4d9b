//! What can go wrong with the store, worded for the operator who reads the log.

use std::path::PathBuf;

/// Every failure of the collector's store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created or read.
    #[error(
        "cannot use data dir {dir}: {source}; create it and give the nodewarden user write access, or set data_dir in the collector config"
    )]
    DataDir {
        /// The data directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another process holds the database.
    #[error(
        "the store {file} is open in another process; only one nodewarden collector may use a data dir (is one already running?)"
    )]
    InUse {
        /// The database file.
        file: PathBuf,
    },
    /// The disk under the data directory is full; what was stored is intact.
    #[error(
        "data dir {dir} is full: {source}; new samples are not being stored (everything stored before is intact). Free space or shorten the retention"
    )]
    DiskFull {
        /// The data directory.
        dir: PathBuf,
        /// The failing write.
        source: std::io::Error,
    },
    /// Reading or writing the database file failed.
    #[error(
        "cannot {action} the store {file}: {detail}; check the disk (dmesg) and the permissions of the data dir"
    )]
    Io {
        /// What the store was doing ("write to", "read").
        action: &'static str,
        /// The database file.
        file: PathBuf,
        /// The engine's description of the failure.
        detail: String,
    },
    /// The database file is damaged beyond what the engine repairs on open.
    #[error(
        "the store {file} is corrupted: {detail}; stop the collector and move the file aside to start a fresh history"
    )]
    Corrupted {
        /// The database file.
        file: PathBuf,
        /// The engine's description.
        detail: String,
    },
    /// A stored record could not be decoded (written by an incompatible version?).
    #[error(
        "a stored {what} in {file} cannot be decoded: {detail}; was the data dir written by a newer nodewarden?"
    )]
    Decode {
        /// Which kind of record.
        what: &'static str,
        /// The database file.
        file: PathBuf,
        /// The decoder's complaint.
        detail: String,
    },
    /// The node has never sent a sample.
    #[error("no node named `{node}` in the store; `nodewarden nodes` lists the known ones")]
    UnknownNode {
        /// The name asked for.
        node: String,
    },
}

impl StoreError {
    /// Maps an engine error, telling a full disk and a damaged file apart from other I/O.
    pub(crate) fn from_engine(
        err: impl Into<redb::Error>,
        action: &'static str,
        file: &std::path::Path,
    ) -> StoreError {
        let file = file.to_path_buf();
        match err.into() {
            redb::Error::Io(source) if is_disk_full(&source) => StoreError::DiskFull {
                dir: file.parent().map(PathBuf::from).unwrap_or_default(),
                source,
            },
            redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
                StoreError::InUse { file }
            }
            redb::Error::Corrupted(detail) => StoreError::Corrupted { file, detail },
            other => StoreError::Io {
                action,
                file,
                detail: other.to_string(),
            },
        }
    }

    /// True when the engine must be reopened before it accepts writes again.
    pub(crate) fn needs_reopen(&self) -> bool {
        matches!(self, StoreError::DiskFull { .. } | StoreError::Io { .. })
    }
}

fn is_disk_full(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::StorageFull
        || err.kind() == std::io::ErrorKind::QuotaExceeded
        || err.raw_os_error() == Some(libc::ENOSPC)
        || err.raw_os_error() == Some(libc::EDQUOT)
}

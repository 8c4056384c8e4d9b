//! The saved form of a machine: `{"version": 1, "machine": {...}}`.
//!
//! The version lets a collector that finds a state it does not understand
//! say so instead of silently starting "on mains" in the middle of an
//! outage. States saved before the version existed (the bare machine) still
//! load: they are version 1's machine without the envelope.

use serde::{Deserialize, Serialize};

use super::Machine;

/// The format [`Machine::to_persisted`] writes.
pub const PERSISTED_VERSION: u64 = 1;

/// Why a saved machine could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Not JSON at all (a torn write, another program's bytes).
    #[error("saved power state is not valid JSON")]
    NotJson(#[source] serde_json::Error),
    /// Written by a newer (or unknown) collector.
    #[error(
        "saved power state has format version {found}, this collector reads up to {PERSISTED_VERSION}; was the collector downgraded?"
    )]
    UnknownVersion {
        /// The version found.
        found: u64,
    },
    /// The envelope's `version` is not a whole number.
    #[error("saved power state has a version that is not a whole number: {0}")]
    BadVersion(String),
    /// The right version, but the machine inside does not fit it.
    #[error("saved power state (format version {version}) does not match that format")]
    Invalid {
        /// The version it claims (0: the unversioned format).
        version: u64,
        /// What did not fit.
        #[source]
        source: serde_json::Error,
    },
}

/// What is written: the machine borrowed, not copied.
#[derive(Serialize)]
struct Envelope<'a> {
    version: u64,
    machine: &'a Machine,
}

/// What is read: the machine is decoded once the version is known.
#[derive(Deserialize)]
struct RawEnvelope {
    version: serde_json::Value,
    machine: Option<serde_json::Value>,
}

impl Machine {
    /// The bytes to save: the current format, with its version.
    pub fn to_persisted(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&Envelope {
            version: PERSISTED_VERSION,
            machine: self,
        })
    }

    /// Restores a saved machine: the current format, or the unversioned one
    /// saved before formats had a version; refuses any other version.
    pub fn from_persisted(bytes: &[u8]) -> Result<Machine, RestoreError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(RestoreError::NotJson)?;
        let versioned = value.as_object().is_some_and(|o| o.contains_key("version"));
        if !versioned {
            return serde_json::from_value(value)
                .map_err(|source| RestoreError::Invalid { version: 0, source });
        }
        let raw: RawEnvelope =
            serde_json::from_value(value).map_err(|source| RestoreError::Invalid {
                version: PERSISTED_VERSION,
                source,
            })?;
        let version = raw
            .version
            .as_u64()
            .ok_or_else(|| RestoreError::BadVersion(raw.version.to_string()))?;
        if version != PERSISTED_VERSION {
            return Err(RestoreError::UnknownVersion { found: version });
        }
        let machine = raw.machine.unwrap_or(serde_json::Value::Null);
        serde_json::from_value(machine).map_err(|source| RestoreError::Invalid { version, source })
    }
}

impl RestoreError {
    /// The error and its causes on one line, for the log and the event.
    pub fn describe(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }
}

//! The words of NUT's network protocol (RFC 9271, docs/net-protocol.txt),
//! pure: a command line split into words, values quoted for replies, and
//! the `ERR` codes upsd sends.

use nodewarden_common::nut::{self, WordError};

/// Longest command line read; upsd's own are well under 1 KiB, so a longer
/// one is garbage or an attack and closes the connection.
pub const MAX_LINE: usize = 4096;
/// Most words in one command (INSTCMD ups cmd value is the longest: 4).
const MAX_WORDS: usize = 16;

/// upsd's `ERR` codes (server/neterr.h), the ones this server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NutError {
    AccessDenied,
    UnknownUps,
    VarNotSupported,
    CmdNotSupported,
    InvalidArgument,
    InstcmdFailed,
    Readonly,
    DataStale,
    DriverNotConnected,
    UnknownCommand,
    UsernameRequired,
    PasswordRequired,
    AlreadyLoggedIn,
    AlreadySetUsername,
    AlreadySetPassword,
    AlreadySslMode,
    FeatureNotConfigured,
    FeatureNotSupported,
    Unknown,
}

impl NutError {
    /// The code as upsd writes it after `ERR `.
    pub fn code(self) -> &'static str {
        match self {
            NutError::AccessDenied => "ACCESS-DENIED",
            NutError::UnknownUps => "UNKNOWN-UPS",
            NutError::VarNotSupported => "VAR-NOT-SUPPORTED",
            NutError::CmdNotSupported => "CMD-NOT-SUPPORTED",
            NutError::InvalidArgument => "INVALID-ARGUMENT",
            NutError::InstcmdFailed => "INSTCMD-FAILED",
            NutError::Readonly => "READONLY",
            NutError::DataStale => "DATA-STALE",
            NutError::DriverNotConnected => "DRIVER-NOT-CONNECTED",
            NutError::UnknownCommand => "UNKNOWN-COMMAND",
            NutError::UsernameRequired => "USERNAME-REQUIRED",
            NutError::PasswordRequired => "PASSWORD-REQUIRED",
            NutError::AlreadyLoggedIn => "ALREADY-LOGGED-IN",
            NutError::AlreadySetUsername => "ALREADY-SET-USERNAME",
            NutError::AlreadySetPassword => "ALREADY-SET-PASSWORD",
            NutError::AlreadySslMode => "ALREADY-SSL-MODE",
            NutError::FeatureNotConfigured => "FEATURE-NOT-CONFIGURED",
            NutError::FeatureNotSupported => "FEATURE-NOT-SUPPORTED",
            NutError::Unknown => "UNKNOWN",
        }
    }

    /// The whole reply line, without its newline.
    pub fn line(self) -> String {
        format!("ERR {}", self.code())
    }
}

/// Why a command line cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("{0}")]
    Words(#[from] WordError),
    #[error("more than {MAX_WORDS} words")]
    TooManyWords,
    #[error("control characters in the line")]
    Control,
}

/// Splits a command line as upsd's parseconf does (`nodewarden_common::nut`),
/// refusing control characters and more words than any command has.
pub fn split_words(line: &str) -> Result<Vec<String>, LineError> {
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(LineError::Control);
    }
    let words = nut::split_words(line)?;
    if words.len() > MAX_WORDS {
        return Err(LineError::TooManyWords);
    }
    Ok(words)
}

/// A value inside "quotes" in a reply (pconf_encode).
pub use nut::quote;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_parseconf() {
        assert_eq!(
            split_words("GET VAR ups ups.status").unwrap(),
            ["GET", "VAR", "ups", "ups.status"]
        );
        assert_eq!(
            split_words(r#"PASSWORD "with space \" and \\""#).unwrap(),
            ["PASSWORD", r#"with space " and \"#]
        );
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
        assert!(matches!(split_words("\"open"), Err(LineError::Words(_))));
        assert_eq!(split_words("A\u{1}B"), Err(LineError::Control));
        assert_eq!(split_words(&"a ".repeat(40)), Err(LineError::TooManyWords));
    }

    #[test]
    fn arbitrary_lines_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        for _ in 0..5000 {
            let n = rng.random_range(0..64);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            let _ = split_words(&String::from_utf8_lossy(&bytes));
        }
    }
}

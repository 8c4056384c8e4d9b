//! Config-file errors that name the file, line and key, shared by the agent
//! and the collector.

use std::path::{Path, PathBuf};

/// A config file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
    #[error("{path}: {message}")]
    Semantic { path: PathBuf, message: String },
}

/// Reads a config file. A missing file that was not named explicitly (the
/// default path) reads as empty, meaning all defaults; a missing file the user
/// named is an error.
pub fn read_config(path: &Path, explicit: bool) -> Result<String, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(String::new()),
        Err(source) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Parses TOML into `T`, turning a toml error into one that names the file,
/// line, column and key.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, column, key) = match e.span() {
            Some(span) => locate(text, span.start),
            None => (0, 0, String::new()),
        };
        let message = e.message().trim().to_string();
        // serde's unknown-field message already quotes the key it found.
        let key = unknown_field(&message).unwrap_or(key);
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            key,
            message,
        }
    })
}

/// 1-based line and column where top-level `key` is set in `text`, for errors
/// about a value that parsed but is not acceptable.
pub fn key_location(text: &str, key: &str) -> Option<(usize, usize)> {
    let mut in_table = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            in_table = true;
        }
        if in_table {
            continue;
        }
        if let Some((k, _)) = trimmed.split_once('=')
            && k.trim().trim_matches('"') == key
        {
            return Some((i + 1, line.len() - trimmed.len() + 1));
        }
    }
    None
}

/// 1-based line and column of byte `offset`, and the key written on that line.
fn locate(text: &str, offset: usize) -> (usize, usize, String) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = offset - line_start + 1;
    let line_text = text[line_start..].lines().next().unwrap_or("");
    let key = match line_text.split_once('=') {
        Some((k, _)) => k.trim().trim_matches('"').to_string(),
        None => line_text
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim()
            .to_string(),
    };
    (line, column, key)
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Demo {
        name: String,
        interval_ms: u32,
    }

    #[test]
    fn names_line_and_key_of_a_bad_value() {
        let text = "name = \"pi\"\ninterval_ms = \"fast\"\n";
        let err = parse_toml::<Demo>(Path::new("/etc/nodewarden/agent.toml"), text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/etc/nodewarden/agent.toml:2:"), "{msg}");
        assert!(msg.contains("key `interval_ms`"), "{msg}");
    }

    #[test]
    fn names_an_unknown_key() {
        let text = "name = \"pi\"\ninterval_ms = 5\nintervall = 3\n";
        let err = parse_toml::<Demo>(Path::new("a.toml"), text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("a.toml:3:"), "{msg}");
        assert!(msg.contains("key `intervall`"), "{msg}");
    }
}

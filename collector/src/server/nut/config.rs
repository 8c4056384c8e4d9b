//! The `[nut_server]` table: where the NUT-protocol server listens, who may
//! log in (as in NUT's upsd.users) and the alias names appliances expect.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use nodewarden_common::units::serde_duration;
use serde::{Deserialize, Deserializer};

/// NUT's IANA port, used when `listen` names only an address.
pub const DEFAULT_PORT: u16 = 3493;

/// `[nut_server]`: off unless `listen` is set.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NutServerConfig {
    /// "0.0.0.0:3493", or an address alone for port 3493; unset disables.
    #[serde(deserialize_with = "listen_addr")]
    pub listen: Option<SocketAddr>,
    /// Connections held at once; more are closed at accept (like upsd's
    /// MAXCONN, but answered: the client sees the close, not a hang).
    pub max_clients: usize,
    /// A client that completes no command line for this long is dropped
    /// (upsd sheds idle clients after 60 s too).
    #[serde(with = "serde_duration")]
    pub idle_timeout: Duration,
    /// Answer STARTTLS with the collector's certificate.
    pub starttls: bool,
    /// Wrong passwords one address may try in a minute before its LOGIN,
    /// PRIMARY, FSD, SET and INSTCMD are refused unchecked.
    pub auth_failures_per_minute: u32,
    /// How long an INSTCMD waits for the agent's answer.
    #[serde(with = "serde_duration")]
    pub instcmd_timeout: Duration,
    /// Users, as in upsd.users (`[[nut_server.user]]`).
    #[serde(rename = "user")]
    pub users: Vec<NutUser>,
    /// Extra names for served UPSes: `ups = "riello"` serves the UPS
    /// `riello` also as `ups` (Synology DSM asks for `ups`).
    pub alias: BTreeMap<String, String>,
}

impl Default for NutServerConfig {
    fn default() -> Self {
        NutServerConfig {
            listen: None,
            max_clients: 256,
            idle_timeout: Duration::from_secs(60),
            starttls: true,
            auth_failures_per_minute: 10,
            instcmd_timeout: Duration::from_secs(15),
            users: Vec::new(),
            alias: BTreeMap::new(),
        }
    }
}

/// One `[[nut_server.user]]`.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NutUser {
    pub name: String,
    /// Compared as given; never logged or printed (Debug hides it).
    pub password: String,
    /// `primary` may also PRIMARY and FSD; both may LOGIN (upsd's rule).
    #[serde(default)]
    pub upsmon: Option<UpsmonRole>,
    /// Instant commands this user may run; "all" for every one.
    #[serde(default)]
    pub instcmds: Vec<String>,
    /// Extra actions: "SET", "FSD" (upsd.users' `actions`).
    #[serde(default)]
    pub actions: Vec<String>,
}

impl std::fmt::Debug for NutUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NutUser")
            .field("name", &self.name)
            .field("password", &"<hidden>")
            .field("upsmon", &self.upsmon)
            .field("instcmds", &self.instcmds)
            .field("actions", &self.actions)
            .finish()
    }
}

/// upsd.users' `upsmon primary|secondary` (and the older master|slave).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UpsmonRole {
    #[serde(alias = "master")]
    Primary,
    #[serde(alias = "slave")]
    Secondary,
}

fn listen_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    if text.is_empty() {
        return Ok(None);
    }
    parse_listen(&text).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "`{text}` is not an address like 0.0.0.0:3493 or 0.0.0.0 (port 3493); empty disables"
        ))
    })
}

/// "addr:port", "[v6]:port" or a bare address (port 3493).
pub fn parse_listen(text: &str) -> Option<SocketAddr> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Some(a);
    }
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, DEFAULT_PORT))
}

/// Names NUT accepts for a UPS or user: upsd.conf section names.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl NutServerConfig {
    /// Problems a parse cannot see, each naming its key.
    pub fn errors(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.max_clients == 0 {
            errors.push("key `nut_server.max_clients`: must be at least 1".into());
        }
        if self.idle_timeout < Duration::from_secs(1) {
            errors.push("key `nut_server.idle_timeout`: must be at least 1s".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let key = format!("nut_server.user[{i}]");
            if !valid_name(&u.name) {
                errors.push(format!(
                    "key `{key}.name`: `{}` must be letters, digits, `_`, `-` or `.`",
                    u.name
                ));
            }
            if !seen.insert(u.name.as_str()) {
                errors.push(format!(
                    "key `{key}.name`: user `{}` is defined twice",
                    u.name
                ));
            }
            if u.password.is_empty() {
                errors.push(format!("key `{key}.password`: must not be empty"));
            }
            for a in &u.actions {
                if !matches!(a.to_ascii_uppercase().as_str(), "SET" | "FSD") {
                    errors.push(format!(
                        "key `{key}.actions`: `{a}` is not an action (SET, FSD)"
                    ));
                }
            }
        }
        for (alias, target) in &self.alias {
            if !valid_name(alias) || !valid_name(target) {
                errors.push(format!(
                    "key `nut_server.alias.{alias}`: names must be letters, digits, `_`, `-` or `.`"
                ));
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_a_bare_address_with_nuts_port() {
        assert_eq!(
            parse_listen("0.0.0.0"),
            Some(SocketAddr::from(([0, 0, 0, 0], 3493)))
        );
        assert_eq!(parse_listen("[::1]").map(|a| a.port()), Some(3493));
        assert_eq!(parse_listen("127.0.0.1:4000").map(|a| a.port()), Some(4000));
        assert_eq!(parse_listen("nas.local"), None);
    }

    #[test]
    fn debug_never_shows_a_password() {
        let u = NutUser {
            name: "monuser".into(),
            password: "secret".into(),
            upsmon: Some(UpsmonRole::Secondary),
            instcmds: vec![],
            actions: vec![],
        };
        assert!(!format!("{u:?}").contains("secret"));
    }
}

//! Who may read the page: loopback peers, any peer when `allow_remote`, or
//! whoever passes HTTP basic auth when a user is configured. Pure over the
//! peer address, the Authorization header and the time; the hyper glue
//! applies it (and runs the slow password check off the async workers).

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::{digest, pbkdf2, rand::SecureRandom};

use super::config::WebConfig;
use crate::server::auth_limit::{self, AuthLimiter};

/// Iterations for new hashes: about 0.1 s on a Raspberry Pi 4, paid once
/// per browser session (accepted headers are remembered), not per request.
pub const DEFAULT_ITERATIONS: u32 = 100_000;
const SCHEME: &str = "pbkdf2-sha256";
const SALT_LEN: usize = 16;
const HASH_LEN: usize = digest::SHA256_OUTPUT_LEN;

/// Wrong passwords one address may send per window before it is answered
/// 429 without a password check: a guesser cannot spend the collector's
/// CPU on PBKDF2 (nor guess fast), and an owner who mistyped waits a
/// minute at most (the NUT server's limiter, with the page's allowance).
pub const MAX_WRONG_PASSWORDS: u32 = 10;
/// The window those are counted in.
pub const WRONG_PASSWORD_WINDOW: Duration = auth_limit::WINDOW;

/// Why a `password_hash` value is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HashError {
    /// Not `pbkdf2-sha256$ITERATIONS$SALT$HASH`.
    #[error(
        "expected pbkdf2-sha256$ITERATIONS$SALT_HEX$HASH_HEX (from `nodewarden web hash-password`)"
    )]
    Shape,
}

/// A PBKDF2-HMAC-SHA256 password hash as stored in collector.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordHash {
    iterations: NonZeroU32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt.
    pub fn new(password: &str, iterations: u32) -> Self {
        let mut salt = vec![0u8; SALT_LEN];
        // The system RNG failing is not something a CLI helper can recover
        // from; a fixed salt would be worse than no hash at all.
        if ring::rand::SystemRandom::new().fill(&mut salt).is_err() {
            panic!("no system random number generator");
        }
        let iterations = NonZeroU32::new(iterations.max(1)).unwrap_or(NonZeroU32::MIN);
        let mut hash = vec![0u8; HASH_LEN];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &salt,
            password.as_bytes(),
            &mut hash,
        );
        PasswordHash {
            iterations,
            salt,
            hash,
        }
    }

    /// Whether `password` is the one hashed (constant time).
    pub fn verify(&self, password: &str) -> bool {
        pbkdf2::verify(
            pbkdf2::PBKDF2_HMAC_SHA256,
            self.iterations,
            &self.salt,
            password.as_bytes(),
            &self.hash,
        )
        .is_ok()
    }
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}${}${}${}",
            self.iterations,
            hex::encode(&self.salt),
            hex::encode(&self.hash)
        )
    }
}

impl FromStr for PasswordHash {
    type Err = HashError;

    fn from_str(s: &str) -> Result<Self, HashError> {
        let mut parts = s.split('$');
        let (Some(SCHEME), Some(iterations), Some(salt), Some(hash), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(HashError::Shape);
        };
        let iterations = iterations
            .parse::<NonZeroU32>()
            .map_err(|_| HashError::Shape)?;
        let salt = hex::decode(salt).map_err(|_| HashError::Shape)?;
        let hash = hex::decode(hash).map_err(|_| HashError::Shape)?;
        if salt.is_empty() || hash.len() != HASH_LEN {
            return Err(HashError::Shape);
        }
        Ok(PasswordHash {
            iterations,
            salt,
            hash,
        })
    }
}

/// What to answer a request for the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it.
    Allow,
    /// 401 with `WWW-Authenticate`: log in first.
    Login,
    /// 403: a remote peer and neither `allow_remote` nor a user configured.
    RemoteRefused,
    /// 429: this address sent [`MAX_WRONG_PASSWORDS`] wrong passwords
    /// within the window; try again after this many seconds.
    TooManyWrong { retry_after_s: u64 },
}

/// The page's access policy, built once from `[web]`.
#[derive(Debug)]
pub struct Access {
    allow_remote: bool,
    login: Option<(String, PasswordHash)>,
    /// SHA-256 of the last Authorization header that verified: PBKDF2 is
    /// slow on purpose, and a browser sends the same header on every request.
    accepted: Mutex<Option<digest::Digest>>,
    /// Wrong passwords per address (IPv6 per /64: one host holds a whole
    /// /64 and could otherwise take a fresh address per guess).
    wrong: Mutex<AuthLimiter>,
}

impl Access {
    /// The policy of `config` (already validated).
    pub fn new(config: &WebConfig) -> Self {
        let login = config
            .password_hash
            .parse::<PasswordHash>()
            .ok()
            .filter(|_| !config.user.is_empty())
            .map(|h| (config.user.clone(), h));
        Access {
            allow_remote: config.allow_remote,
            login,
            accepted: Mutex::new(None),
            wrong: Mutex::new(AuthLimiter::new(MAX_WRONG_PASSWORDS)),
        }
    }

    /// Judges one request from `peer` carrying `authorization` (if any).
    pub fn check(&self, peer: IpAddr, authorization: Option<&[u8]>) -> Verdict {
        self.check_at(peer, authorization, Instant::now())
    }

    /// [`Access::check`] at `now`. May run PBKDF2 (slow on purpose).
    pub fn check_at(&self, peer: IpAddr, authorization: Option<&[u8]>, now: Instant) -> Verdict {
        if let Some(verdict) = self.quick_check_at(peer, authorization, now) {
            return verdict;
        }
        match (&self.login, authorization) {
            (Some((user, hash)), Some(header)) => {
                if self.verified(header, user, hash) {
                    Verdict::Allow
                } else {
                    self.strike(source_of(peer), now);
                    Verdict::Login
                }
            }
            _ => Verdict::Login,
        }
    }

    /// The verdict when it needs no password check: no login configured, no
    /// header, the header that verified last, or an address that used up
    /// its wrong passwords. `None`: PBKDF2 must decide.
    pub fn quick_check(&self, peer: IpAddr, authorization: Option<&[u8]>) -> Option<Verdict> {
        self.quick_check_at(peer, authorization, Instant::now())
    }

    fn quick_check_at(
        &self,
        peer: IpAddr,
        authorization: Option<&[u8]>,
        now: Instant,
    ) -> Option<Verdict> {
        if self.login.is_none() {
            return Some(if self.allow_remote || is_loopback(peer) {
                Verdict::Allow
            } else {
                Verdict::RemoteRefused
            });
        }
        let Some(header) = authorization else {
            return Some(Verdict::Login);
        };
        if self.is_accepted(header) {
            return Some(Verdict::Allow);
        }
        self.refused_until(source_of(peer), now)
            .map(|retry_after_s| Verdict::TooManyWrong { retry_after_s })
    }

    /// The header that verified last (the browser sends it every time).
    fn is_accepted(&self, header: &[u8]) -> bool {
        let seen = digest::digest(&digest::SHA256, header);
        let accepted = self.accepted.lock().unwrap_or_else(|p| p.into_inner());
        accepted
            .as_ref()
            .is_some_and(|a| a.as_ref() == seen.as_ref())
    }

    /// PBKDF2 over the header's password; remembers a header that passes.
    /// Not under the lock: a slow wrong guess must not hold up the owner.
    fn verified(&self, header: &[u8], user: &str, hash: &PasswordHash) -> bool {
        let ok = basic_credentials(header).is_some_and(|(u, p)| u == user && hash.verify(&p));
        if ok {
            let seen = digest::digest(&digest::SHA256, header);
            *self.accepted.lock().unwrap_or_else(|p| p.into_inner()) = Some(seen);
        }
        ok
    }

    /// Seconds `source` must still wait, if it used up its wrong passwords.
    fn refused_until(&self, source: IpAddr, now: Instant) -> Option<u64> {
        let wrong = self.wrong.lock().unwrap_or_else(|p| p.into_inner());
        wrong
            .blocked_for(source, now)
            .map(|left| left.as_secs().max(1))
    }

    /// Counts one wrong password from `source`.
    fn strike(&self, source: IpAddr, now: Instant) {
        let mut wrong = self.wrong.lock().unwrap_or_else(|p| p.into_inner());
        if wrong.failed(source, now) {
            tracing::warn!(
                "web page: {MAX_WRONG_PASSWORDS} wrong passwords from {source} within {}s: \
                 refusing its logins until the minute is over",
                WRONG_PASSWORD_WINDOW.as_secs()
            );
        }
    }
}

/// The address wrong passwords are counted against: IPv4 (and IPv4-mapped)
/// as is, IPv6 by its /64.
fn source_of(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(seg.into())
            }
        },
    }
}

/// 127.0.0.0/8, ::1 and IPv4-mapped loopback.
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// `Basic dXNlcjpwdw==` → ("user", "pw").
fn basic_credentials(header: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(encoded.trim())?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Standard base64 with padding (RFC 4648 §4), all basic auth uses; a
/// dozen lines do not justify a dependency.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut word = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            word |= value(c)? << (18 - 6 * i);
        }
        let produced = chunk.len() - 1;
        out.extend_from_slice(&word.to_be_bytes()[1..=produced]);
    }
    Some(out)
}

#[cfg(test)]
mod tests;

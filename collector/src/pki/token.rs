//! Join tokens, k3s/kubeadm style: `NW1::<sha256 of the CA certificate>::<id>.<secret>`.
//!
//! The CA hash lets a joining agent authenticate the collector before it
//! trusts anything the collector says; the secret authenticates the agent.
//! Only a SHA-256 of the secret is stored.

use serde::{Deserialize, Serialize};

/// Prefix of every token; the version lets the format change later.
pub const PREFIX: &str = "NW1";
/// Default lifetime of a token.
pub const DEFAULT_TTL_MS: i64 = 24 * 3600 * 1000;

/// The parts of a join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Hex SHA-256 of the CA certificate's DER.
    pub ca_hash: String,
    pub id: String,
    pub secret: String,
}

impl JoinToken {
    /// Parses the full token text.
    pub fn parse(text: &str) -> Result<JoinToken, String> {
        let text = text.trim();
        let mut parts = text.split("::");
        let (Some(prefix), Some(ca_hash), Some(cred), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("a join token looks like NW1::<ca-hash>::<id>.<secret>; copy it whole from `nodewarden init` or `nodewarden token create`".into());
        };
        if prefix != PREFIX {
            return Err(format!(
                "join token version `{prefix}` is not {PREFIX}; create a token with this version's `nodewarden token create`"
            ));
        }
        if ca_hash.len() != 64 || !ca_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("the CA hash in the join token is not 64 hex digits; the token was cut or mistyped".into());
        }
        let (id, secret) = split_credential(cred)?;
        Ok(JoinToken {
            ca_hash: ca_hash.to_ascii_lowercase(),
            id,
            secret,
        })
    }

    /// `<id>.<secret>`, what the Join RPC carries.
    pub fn credential(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}::{}::{}.{}", self.ca_hash, self.id, self.secret)
    }
}

/// Splits `<id>.<secret>`.
pub fn split_credential(cred: &str) -> Result<(String, String), String> {
    let Some((id, secret)) = cred.split_once('.') else {
        return Err("the token's credential must be <id>.<secret>".into());
    };
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(id) || !hex(secret) {
        return Err("the token's id and secret must be hex digits".into());
    }
    Ok((id.to_ascii_lowercase(), secret.to_ascii_lowercase()))
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// A stored token: never the secret itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredToken {
    pub id: String,
    pub secret_sha256: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    /// None: unlimited until expiry.
    pub uses_left: Option<u32>,
    pub used: u32,
    #[serde(default)]
    pub description: String,
}

/// Why a token was not accepted. The agent sees only a generic refusal; the
/// collector's log gets the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefused {
    #[error("no such token (never created, or revoked)")]
    Unknown,
    #[error("token expired")]
    Expired,
    #[error("token used up")]
    UsedUp,
    #[error("wrong secret")]
    WrongSecret,
}

/// The token list.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TokenStore {
    pub tokens: Vec<StoredToken>,
}

impl TokenStore {
    /// Makes a token; returns what is stored and the secret (shown once).
    pub fn create(
        &mut self,
        now_ms: i64,
        ttl_ms: i64,
        uses: Option<u32>,
        description: String,
    ) -> Result<(StoredToken, String), ring::error::Unspecified> {
        use ring::rand::SecureRandom;
        let rng = ring::rand::SystemRandom::new();
        let mut id = [0u8; 6];
        let mut secret = [0u8; 16];
        rng.fill(&mut id)?;
        rng.fill(&mut secret)?;
        let secret = hex::encode(secret);
        let stored = StoredToken {
            id: hex::encode(id),
            secret_sha256: sha256_hex(secret.as_bytes()),
            created_ms: now_ms,
            expires_ms: now_ms.saturating_add(ttl_ms),
            uses_left: uses,
            used: 0,
            description,
        };
        self.tokens.push(stored.clone());
        Ok((stored, secret))
    }

    /// Checks a credential and spends one use.
    pub fn redeem(&mut self, id: &str, secret: &str, now_ms: i64) -> Result<(), TokenRefused> {
        let t = self
            .tokens
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or(TokenRefused::Unknown)?;
        if !constant_time_eq(
            t.secret_sha256.as_bytes(),
            sha256_hex(secret.as_bytes()).as_bytes(),
        ) {
            return Err(TokenRefused::WrongSecret);
        }
        if now_ms >= t.expires_ms {
            return Err(TokenRefused::Expired);
        }
        match &mut t.uses_left {
            Some(0) => return Err(TokenRefused::UsedUp),
            Some(n) => *n -= 1,
            None => {}
        }
        t.used += 1;
        Ok(())
    }

    /// Removes a token; false if there was none.
    pub fn revoke(&mut self, id: &str) -> bool {
        let before = self.tokens.len();
        self.tokens.retain(|t| t.id != id);
        self.tokens.len() != before
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_text_round_trips() {
        let t = JoinToken {
            ca_hash: "ab".repeat(32),
            id: "0123456789ab".into(),
            secret: "cd".repeat(16),
        };
        assert_eq!(JoinToken::parse(&t.to_string()).unwrap(), t);
        assert!(JoinToken::parse("NW1::abc::x.y").is_err());
        assert!(JoinToken::parse("K10::x").is_err());
    }

    #[test]
    fn a_token_is_spent_and_expires() {
        let mut s = TokenStore::default();
        let (t, secret) = s.create(1000, 500, Some(1), String::new()).unwrap();
        assert!(!serde_json::to_string(&s).unwrap().contains(&secret));
        assert_eq!(s.redeem(&t.id, "00", 1001), Err(TokenRefused::WrongSecret));
        assert_eq!(s.redeem(&t.id, &secret, 1001), Ok(()));
        assert_eq!(s.redeem(&t.id, &secret, 1002), Err(TokenRefused::UsedUp));
        let (t2, secret2) = s.create(1000, 500, None, String::new()).unwrap();
        assert_eq!(s.redeem(&t2.id, &secret2, 1500), Err(TokenRefused::Expired));
        assert!(s.revoke(&t2.id));
        assert_eq!(s.redeem(&t2.id, &secret2, 1001), Err(TokenRefused::Unknown));
    }
}

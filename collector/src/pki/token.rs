//! Join tokens as the collector keeps them: only a SHA-256 of each secret.
//! The text format is `nodewarden_proto::join_token`.

use serde::{Deserialize, Serialize};

pub use nodewarden_proto::join_token::{JoinToken, PREFIX, split_credential};

/// Default lifetime of a token.
pub const DEFAULT_TTL_MS: i64 = 24 * 3600 * 1000;

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

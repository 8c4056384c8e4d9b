//! Join tokens, k3s/kubeadm style: `NW1::<sha256 of the CA certificate>::<id>.<secret>`.
//!
//! The CA hash lets a joining agent authenticate the collector before it
//! trusts anything the collector says; the secret authenticates the agent.
//! Shared by `nodewarden` (which makes them) and `nodewarden-agent join`.

/// Prefix of every token; the version lets the format change later.
pub const PREFIX: &str = "NW1";
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
            return Err(
                "the CA hash in the join token is not 64 hex digits; the token was cut or mistyped"
                    .into(),
            );
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
}

//! `[web]` in collector.toml: who may read the status page.

use serde::Deserialize;

use super::auth::PasswordHash;

/// `[web]`: the status page on `metrics_listen`. Without `user` it answers
/// loopback peers only, unless `allow_remote` says otherwise.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Answer the page to peers other than loopback without a password
    /// (on a trusted LAN). With `user` set, any peer that logs in may read.
    pub allow_remote: bool,
    /// HTTP basic auth user name; empty means no login.
    pub user: String,
    /// `pbkdf2-sha256$ITERATIONS$SALT$HASH` from `nodewarden web hash-password`.
    pub password_hash: String,
}

impl WebConfig {
    /// Problems, each naming its key; empty when the table is usable.
    pub fn errors(&self) -> Vec<String> {
        let mut errors = Vec::new();
        match (self.user.is_empty(), self.password_hash.is_empty()) {
            (true, false) => {
                errors.push("key `web.user`: set it too, or remove `web.password_hash`".into())
            }
            (false, true) => errors.push(
                "key `web.password_hash`: set it (`nodewarden web hash-password` prints it), or remove `web.user`"
                    .into(),
            ),
            _ => {}
        }
        if !self.password_hash.is_empty()
            && let Err(e) = self.password_hash.parse::<PasswordHash>()
        {
            errors.push(format!("key `web.password_hash`: {e}"));
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_hash_go_together_and_the_hash_must_parse() {
        assert!(WebConfig::default().errors().is_empty());
        let only_user = WebConfig {
            user: "ops".into(),
            ..Default::default()
        };
        assert!(only_user.errors()[0].contains("web.password_hash"));
        let bad = WebConfig {
            user: "ops".into(),
            password_hash: "md5$x".into(),
            ..Default::default()
        };
        assert!(
            bad.errors()[0].contains("pbkdf2-sha256"),
            "{:?}",
            bad.errors()
        );
        let good = WebConfig {
            user: "ops".into(),
            password_hash: PasswordHash::new("pw", 1000).to_string(),
            ..Default::default()
        };
        assert!(good.errors().is_empty(), "{:?}", good.errors());
    }
}

//! `nodewarden token create|list|revoke` and `nodewarden nodes remove`.

use std::process::ExitCode;
use std::time::Duration;

use nodewarden_proto::v1::trust_admin_client::TrustAdminClient;
use nodewarden_proto::v1::{
    CreateTokenRequest, ListTokensRequest, RemoveNodeRequest, RevokeTokenRequest,
};

use super::{CliError, QueryOptions, duration_arg};

/// `nodewarden nodes <action>`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum NodesAction {
    /// Revoke a node's certificates and close its stream; it must join again.
    Remove {
        /// Node name, as in `nodewarden nodes`.
        name: String,
    },
}

/// `nodewarden token <action>`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum TokenCommand {
    /// Make a join token for `nodewarden-agent join`.
    Create {
        /// How long it works (e.g. 30m, 24h, 7d).
        #[arg(long, default_value = "24h", value_parser = duration_arg)]
        ttl: Duration,
        /// How many nodes may join with it; default any number until it expires.
        #[arg(long)]
        uses: Option<u32>,
        /// A note shown by `token list`.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Tokens that exist (never their secrets).
    List,
    /// Delete a token so nobody can join with it.
    Revoke {
        /// The id, as in `nodewarden token list` (the part before the dot).
        id: String,
    },
}

/// A trust action to run against the collector.
#[derive(Debug, Clone)]
pub enum TrustCommand {
    Token(TokenCommand),
    RemoveNode(String),
}

fn iso(ms: i64) -> String {
    super::format::format_timestamp(ms)
}

async fn execute(cmd: TrustCommand, opts: &QueryOptions) -> Result<String, CliError> {
    let channel = super::connect_channel(&opts.socket_path()).await?;
    let mut client = TrustAdminClient::new(channel);
    Ok(match cmd {
        TrustCommand::Token(TokenCommand::Create {
            ttl,
            uses,
            description,
        }) => {
            let r = client
                .create_token(CreateTokenRequest {
                    ttl_ms: ttl.as_millis() as i64,
                    uses: uses.unwrap_or(0),
                    description,
                })
                .await?
                .into_inner();
            format!(
                "{}\n# id {}, expires {}; on each node: nodewarden-agent join <collector-address> <token>\n",
                r.token,
                r.id,
                iso(r.expires_ms)
            )
        }
        TrustCommand::Token(TokenCommand::List) => {
            let r = client.list_tokens(ListTokensRequest {}).await?.into_inner();
            let mut out = format!(
                "{:<14} {:<22} {:<8} {:<6} {}\n",
                "ID", "EXPIRES", "USES", "USED", "DESCRIPTION"
            );
            for t in r.tokens {
                let uses = if t.unlimited {
                    "any".to_string()
                } else {
                    t.uses_left.to_string()
                };
                out.push_str(&format!(
                    "{:<14} {:<22} {:<8} {:<6} {}\n",
                    t.id,
                    iso(t.expires_ms),
                    uses,
                    t.used,
                    t.description
                ));
            }
            out
        }
        TrustCommand::Token(TokenCommand::Revoke { id }) => {
            client
                .revoke_token(RevokeTokenRequest { id: id.clone() })
                .await?;
            format!("token {id} revoked\n")
        }
        TrustCommand::RemoveNode(name) => {
            let r = client
                .remove_node(RemoveNodeRequest { name: name.clone() })
                .await?
                .into_inner();
            format!(
                "node {name} removed: {} certificate(s) revoked{}; to bring it back, join it again with a new token\n",
                r.revoked_certificates,
                if r.disconnected {
                    ", its stream closed"
                } else {
                    ""
                }
            )
        }
    })
}

/// Runs one trust command and prints its answer.
pub async fn run(cmd: TrustCommand, opts: &QueryOptions) -> ExitCode {
    match execute(cmd, opts).await {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("nodewarden: {e}");
            ExitCode::FAILURE
        }
    }
}

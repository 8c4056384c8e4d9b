//! The Join service (agent link port: join with a token, renew with the
//! current certificate) and the TrustAdmin service (admin socket: tokens,
//! node removal).

use std::sync::Arc;

use nodewarden_proto::v1::join_server::Join;
use nodewarden_proto::v1::trust_admin_server::TrustAdmin;
use nodewarden_proto::v1::{
    CreateTokenRequest, CreateTokenResponse, JoinRequest, JoinResponse, ListTokensRequest,
    ListTokensResponse, RemoveNodeRequest, RemoveNodeResponse, RenewRequest, RevokeTokenRequest,
    RevokeTokenResponse, TokenInfo,
};
use tonic::{Request, Response, Status};

use super::auth::{Permission, require};
use crate::pki::{Authority, NodeCert, PkiError, tls, token};
use crate::state::hub::Hub;

/// Join and Renew, on the agent link port.
pub struct JoinService {
    auth: Arc<Authority>,
}

impl JoinService {
    pub fn new(auth: Arc<Authority>) -> Self {
        JoinService { auth }
    }

    fn answer(&self, cert: NodeCert) -> Response<JoinResponse> {
        Response::new(JoinResponse {
            certificate_pem: cert.pem,
            ca_pem: self.auth.ca_pem().to_string(),
            not_before_ms: cert.not_before_ms,
            not_after_ms: cert.not_after_ms,
        })
    }
}

fn sign_error(e: PkiError) -> Status {
    match e {
        PkiError::Refused(m) => Status::invalid_argument(m),
        other => Status::internal(other.to_string()),
    }
}

#[tonic::async_trait]
impl Join for JoinService {
    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown".to_string(), |a| a.to_string());
        let r = request.into_inner();
        if !super::link::valid_node_name(&r.node_name) {
            return Err(Status::invalid_argument(format!(
                "node name `{}` is not a valid Kubernetes node name (lower-case letters, digits, '-' and '.')",
                r.node_name
            )));
        }
        // A join token lets a new node in; it must not let its holder take
        // over a name that already has a certificate (and so its commands and
        // history). Re-joining a node is an operator's decision: remove it first.
        if let Some(existing) = self.auth.live_cert(&r.node_name) {
            tracing::warn!(%peer, node = %r.node_name, serial = %existing.serial, "join refused: the name already holds a certificate");
            return Err(Status::already_exists(format!(
                "node `{}` already holds a valid certificate; if this is the same machine reinstalled, run `nodewarden nodes remove {}` on the collector first, then join again",
                r.node_name, r.node_name
            )));
        }
        let auth = self.auth.clone();
        let credential = r.token.clone();
        let redeemed = tokio::task::spawn_blocking(move || auth.redeem(&credential))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let token_id = match redeemed {
            Ok(id) => id,
            Err(why) => {
                tracing::warn!(%peer, node = %r.node_name, "join refused: {why}");
                // One answer for every refusal: a guesser learns nothing.
                return Err(Status::unauthenticated(
                    "join token refused (unknown, revoked, expired or used up): create a new one with `nodewarden token create` on the collector",
                ));
            }
        };
        let auth = self.auth.clone();
        let node = r.node_name.clone();
        let cert = tokio::task::spawn_blocking(move || auth.sign_node(&r.csr_der, &node))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(sign_error)?;
        tracing::info!(%peer, node = %r.node_name, token = %token_id, "node joined");
        Ok(self.answer(cert))
    }

    async fn renew(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<JoinResponse>, Status> {
        let node = tls::require_node(&self.auth, &request)?;
        let csr = request.into_inner().csr_der;
        let auth = self.auth.clone();
        let n = node.clone();
        let cert = tokio::task::spawn_blocking(move || auth.sign_node(&csr, &n))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(sign_error)?;
        tracing::info!(node = %node, "node certificate renewed");
        Ok(self.answer(cert))
    }
}

/// Token and node management, on the admin socket.
pub struct TrustAdminService {
    auth: Arc<Authority>,
    hub: Arc<Hub>,
}

impl TrustAdminService {
    pub fn new(auth: Arc<Authority>, hub: Arc<Hub>) -> Self {
        TrustAdminService { auth, hub }
    }
}

fn internal(e: PkiError) -> Status {
    Status::internal(e.to_string())
}

#[tonic::async_trait]
impl TrustAdmin for TrustAdminService {
    async fn create_token(
        &self,
        request: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        require(&request, Permission::Operate)?;
        let r = request.into_inner();
        let ttl = if r.ttl_ms > 0 {
            r.ttl_ms
        } else {
            token::DEFAULT_TTL_MS
        };
        let uses = (r.uses > 0).then_some(r.uses);
        let (text, stored) = self
            .auth
            .create_token(ttl, uses, r.description)
            .map_err(internal)?;
        tracing::info!(token = %stored.id, "join token created");
        Ok(Response::new(CreateTokenResponse {
            token: text,
            id: stored.id,
            expires_ms: stored.expires_ms,
        }))
    }

    async fn list_tokens(
        &self,
        request: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        require(&request, Permission::Read)?;
        let tokens = self
            .auth
            .tokens()
            .into_iter()
            .map(|t| TokenInfo {
                id: t.id,
                created_ms: t.created_ms,
                expires_ms: t.expires_ms,
                uses_left: t.uses_left.unwrap_or(0),
                unlimited: t.uses_left.is_none(),
                used: t.used,
                description: t.description,
            })
            .collect();
        Ok(Response::new(ListTokensResponse { tokens }))
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        require(&request, Permission::Operate)?;
        let id = request.into_inner().id;
        if !self.auth.revoke_token(&id).map_err(internal)? {
            return Err(Status::not_found(format!(
                "no token `{id}`; `nodewarden token list` shows them"
            )));
        }
        tracing::info!(token = %id, "join token revoked");
        Ok(Response::new(RevokeTokenResponse {}))
    }

    async fn remove_node(
        &self,
        request: Request<RemoveNodeRequest>,
    ) -> Result<Response<RemoveNodeResponse>, Status> {
        require(&request, Permission::Operate)?;
        let name = request.into_inner().name;
        let was_online = self.hub.node_info(&name).is_some_and(|n| n.online);
        let revoked = self.auth.remove_node(&name).map_err(internal)?;
        if revoked == 0 && self.hub.node_info(&name).is_none() {
            return Err(Status::not_found(format!(
                "no node `{name}`: `nodewarden nodes` lists them"
            )));
        }
        tracing::warn!(node = %name, revoked, "node removed: its certificates are revoked");
        Ok(Response::new(RemoveNodeResponse {
            revoked_certificates: revoked,
            disconnected: was_online,
        }))
    }
}

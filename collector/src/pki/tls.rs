//! The collector's TLS: server config for the agent link, a client verifier
//! that lets only the Join RPC in without a certificate and refuses revoked
//! ones at the handshake, and per-call checks on the peer certificate.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore};

use super::{Authority, PkiError};

/// The crypto provider of every TLS config here: ring (small, no C++ build).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// WebPKI client verification against our CA, plus the revocation list.
#[derive(Debug)]
struct NodeVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: Arc<RwLock<HashSet<String>>>,
}

impl ClientCertVerifier for NodeVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // Join is the one call without a client certificate; the handlers of
        // every other service require one (see `require_node`).
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if let Some((_, serial)) = super::node_identity(end_entity) {
            let revoked = self
                .revoked
                .read()
                .map(|r| r.contains(&serial))
                .unwrap_or(true);
            if revoked {
                return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
            }
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The agent link's server config: our certificate chain, h2, and client
/// certificates checked against our CA and revocation list.
pub fn server_config(auth: &Authority) -> Result<Arc<ServerConfig>, PkiError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    roots
        .add(auth.ca_der().clone())
        .map_err(|e| PkiError::Cert(format!("the CA certificate: {e}")))?;
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| PkiError::Cert(e.to_string()))?;
    let verifier = Arc::new(NodeVerifier {
        inner,
        revoked: auth.revoked(),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Cert(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(auth.server_chain().to_vec(), auth.server_key()?)
        .map_err(|e| PkiError::Cert(format!("the collector's certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The same certificate for plain TLS clients (the NUT server's STARTTLS):
/// no client certificates asked for, no ALPN.
pub fn plain_server_config(auth: &Authority) -> Result<Arc<ServerConfig>, PkiError> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Cert(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(auth.server_chain().to_vec(), auth.server_key()?)
        .map_err(|e| PkiError::Cert(format!("the collector's certificate and key: {e}")))?;
    Ok(Arc::new(config))
}

/// The node a call comes from, by its client certificate (verified at the
/// handshake), or PERMISSION_DENIED/UNAUTHENTICATED.
pub fn require_node<T>(
    auth: &Authority,
    request: &tonic::Request<T>,
) -> Result<String, tonic::Status> {
    let certs = request.peer_certs().ok_or_else(|| {
        tonic::Status::unauthenticated(
            "a client certificate is required: join first (`nodewarden-agent join ADDR TOKEN`)",
        )
    })?;
    let leaf = certs
        .first()
        .ok_or_else(|| tonic::Status::unauthenticated("a client certificate is required"))?;
    let (node, serial) = super::node_identity(leaf).ok_or_else(|| {
        tonic::Status::permission_denied("the client certificate names no nodewarden node")
    })?;
    if auth.is_revoked(&serial) {
        return Err(tonic::Status::permission_denied(format!(
            "the certificate of node `{node}` was revoked (`nodewarden nodes remove`); join again with a new token"
        )));
    }
    Ok(node)
}

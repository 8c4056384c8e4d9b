//! What can go wrong joining, connecting and renewing; each message says
//! what to do about it.

use std::path::PathBuf;

use rustls::pki_types::InvalidDnsNameError;
use rustls::pki_types::pem;
use tonic::codegen::http::uri::InvalidUri;

/// A failure of the node's identity or of the TLS link to the collector.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A file of the identity is missing or unreadable: most likely the node
    /// has not joined.
    #[error(
        "cannot read {}: {source}; has this node joined? run `nodewarden-agent join ADDR TOKEN` (token from `nodewarden token create` on the collector)",
        path.display()
    )]
    NotJoined {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: pem::Error,
    },
    /// A stored certificate (the CA or this node's) is not usable.
    #[error("{}: {source}", path.display())]
    BadCertificate {
        /// The file it came from.
        path: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
    /// The TLS configuration could not be built.
    #[error("{0}")]
    Tls(#[source] rustls::Error),
    /// The state dir could not be created.
    #[error("cannot create {}: {source}", dir.display())]
    CreateDir {
        /// The state dir.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file of the identity could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The certificate's name and validity could not be serialised.
    #[error("{0}")]
    Info(#[source] serde_json::Error),
    /// The stored identity could not be read back after writing it.
    #[error("cannot read back {}", path.display())]
    ReadBack {
        /// `node.json`.
        path: PathBuf,
    },
    /// Renewal needs a joined node.
    #[error("this node has not joined")]
    NotJoinedYet,
    /// A plaintext `http://` address.
    #[error(
        "`{addr}` is plaintext; the agent link is TLS only: give HOST[:PORT] or https://HOST:PORT"
    )]
    Plaintext {
        /// What the user gave.
        addr: String,
    },
    /// Neither `HOST[:PORT]` nor an https URL.
    #[error("`{addr}` is not HOST[:PORT]")]
    NotHostPort {
        /// What the user gave.
        addr: String,
    },
    /// The collector URL does not parse.
    #[error("bad collector address `{url}`: {source}")]
    BadUrl {
        /// The URL.
        url: String,
        /// The parse error.
        #[source]
        source: InvalidUri,
    },
    /// tonic refused the endpoint made from the URL.
    #[error("bad collector address `{url}`: {source}")]
    BadEndpoint {
        /// The URL.
        url: String,
        /// tonic's error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The collector URL is not https.
    #[error("collector address `{url}` must be https://HOST:PORT: the agent link is TLS only")]
    NotHttps {
        /// The URL.
        url: String,
    },
    /// The collector URL names no host.
    #[error("collector address `{url}` has no host")]
    NoHost {
        /// The URL.
        url: String,
    },
    /// The host cannot be checked against a certificate.
    #[error("`{host}` is not a valid host name: {source}")]
    BadHostName {
        /// The host.
        host: String,
        /// rustls's error.
        #[source]
        source: InvalidDnsNameError,
    },
    /// The connection failed; `detail` is the innermost cause, our TLS
    /// explanations included.
    #[error("{detail}")]
    Connect {
        /// What went wrong, in words.
        detail: String,
        /// tonic's error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The join token does not parse.
    #[error("{0}")]
    Token(String),
    /// No key could be generated.
    #[error("cannot make a key: {0}")]
    Key(#[source] rcgen::Error),
    /// No certificate signing request could be made.
    #[error("cannot make a signing request: {0}")]
    SigningRequest(#[source] rcgen::Error),
    /// The collector refused to join this node.
    #[error("the collector refused to join this node: {}", .0.message())]
    JoinRefused(#[source] Box<tonic::Status>),
    /// The collector refused to renew the certificate.
    #[error("the collector refused to renew: {}", .0.message())]
    RenewRefused(#[source] Box<tonic::Status>),
    /// The CA the collector sent does not parse.
    #[error("the collector sent an unreadable CA: {0}")]
    UnreadableCa(#[source] pem::Error),
    /// The CA the collector sent is not the one the token named.
    #[error("the collector sent a CA other than the one in the token; not stored")]
    CaMismatch,
}

//! Checks on the collector's certificate, and what to tell the user when
//! they fail.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore};

/// The crypto provider of every TLS config here: ring (small, no C++ build).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// For `join`, before this node has the CA: the collector's chain must carry
/// a CA whose SHA-256 is the one in the token, and the collector's certificate
/// must verify against that CA for the name dialled, as any other.
#[derive(Debug)]
pub struct FingerprintVerifier {
    ca_hash: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl FingerprintVerifier {
    /// Trusts only a CA whose certificate hashes to `ca_hash` (hex SHA-256).
    pub fn new(ca_hash: &str) -> FingerprintVerifier {
        FingerprintVerifier {
            ca_hash: ca_hash.to_ascii_lowercase(),
            provider: provider(),
        }
    }
}

/// Marks our own refusal so `explain` can tell it from others.
pub const FINGERPRINT_MISMATCH: &str = "nodewarden: CA fingerprint mismatch";

impl ServerCertVerifier for FingerprintVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(ca) = intermediates
            .iter()
            .find(|c| sha256_hex(c.as_ref()) == self.ca_hash)
        else {
            return Err(Error::General(FINGERPRINT_MISMATCH.into()));
        };
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| Error::General(format!("the collector's CA is unusable: {e}")))?;
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| Error::General(e.to_string()))?;
        webpki.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn human_duration(secs: i64) -> String {
    let s = secs.unsigned_abs();
    if s >= 2 * 86_400 {
        format!("{} days", s / 86_400)
    } else if s >= 2 * 3600 {
        format!("{} hours", s / 3600)
    } else if s >= 120 {
        format!("{} minutes", s / 60)
    } else {
        format!("{s} seconds")
    }
}

fn utc(secs: u64) -> String {
    let t = nodewarden_common::units::Utc::from_unix_ms(secs as i64 * 1000);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// A TLS failure, told as what is wrong and how to fix it. `host` is the
/// name or address dialled.
pub fn explain(e: &Error, host: &str) -> String {
    match e {
        Error::General(m) if m == FINGERPRINT_MISMATCH => format!(
            "the collector at {host} does not hold the CA named in the join token (CA fingerprint mismatch): it is not the collector that made this token, or its CA was re-created since; make a token on the right collector (`nodewarden token create`)"
        ),
        Error::InvalidCertificate(CertificateError::NotValidYetContext { time, not_before }) => {
            let skew = not_before.as_secs() as i64 - time.as_secs() as i64;
            format!(
                "the collector's certificate is valid from {}, but this node's clock says {}: the clocks differ by about {}; set this node's time (e.g. `timedatectl set-ntp true`) and try again",
                utc(not_before.as_secs()),
                utc(time.as_secs()),
                human_duration(skew)
            )
        }
        Error::InvalidCertificate(CertificateError::NotValidYet) => {
            "the collector's certificate is not valid yet by this node's clock: the clocks differ; set this node's time (e.g. `timedatectl set-ntp true`)".into()
        }
        Error::InvalidCertificate(CertificateError::ExpiredContext { time, not_after }) => format!(
            "the collector's certificate expired at {} (this node's clock says {}): if the clock is right, re-issue it on the collector (`nodewarden cert reissue`)",
            utc(not_after.as_secs()),
            utc(time.as_secs())
        ),
        Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            expected,
            presented,
        }) => {
            let expected = match expected {
                ServerName::DnsName(d) => d.as_ref().to_string(),
                ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
                other => format!("{other:?}"),
            };
            format!(
                "the collector's certificate is not valid for `{expected}`, the address dialled; it names {}. Dial one of those, or add this one on the collector: `nodewarden cert reissue --san {expected}` (or `nodewarden init --san {expected}` on a new collector), then restart it",
                presented.join(", ")
            )
        }
        Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => format!(
            "the collector at {host} is not signed by the CA this node joined: a different collector, or its CA was re-created (`init --force`); join again with a new token"
        ),
        Error::AlertReceived(alert) => format!(
            "the collector refused this node's certificate ({alert:?}): it was revoked (`nodewarden nodes remove`), expired or is from another CA; join again with a new token"
        ),
        other => format!("TLS with the collector failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_durations_read_well() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(human_duration(7200), "2 hours");
        assert_eq!(human_duration(-90), "90 seconds");
    }
}

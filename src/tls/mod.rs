//! The TLS client: one shared rustls configuration per run, the STARTTLS handshake, and the
//! chain judgement.
//!
//! The handshake itself accepts any certificate (handshake signatures are still verified),
//! because the probe must finish it to *see* the certificate, report its details, and judge
//! it per TLS mode: EOP's opportunistic and encryption-only modes accept a self-signed
//! certificate, the validating modes do not. The chain is then judged after the handshake by
//! rustls's own webpki verifier, against the native roots plus `[tls].ca_file`, read only
//! as far as a chain needs them ([`roots`]).

mod roots;

use std::io;
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::TlsConfig;
use crate::verdict::{Outcome, TlsInfo};

/// The TLS side of a run: built once and shared by every probe.
pub struct TlsClient {
    connector: TlsConnector,
    roots: roots::Roots,
}

impl TlsClient {
    pub fn new(cfg: &TlsConfig) -> TlsClient {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = roots::Roots::new(cfg, provider.clone());
        let accept = Arc::new(AcceptAnyCertificate {
            algorithms: provider.signature_verification_algorithms,
        });
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(accept)
            .with_no_client_auth();
        // Every probe does a full handshake, so the certificate is really presented each time.
        config.resumption = Resumption::disabled();
        TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
            roots,
        }
    }

    /// The handshake over an established SMTP connection. SNI is sent for a DNS name and not
    /// for an IP literal (rustls sends none for `ServerName::IpAddress`).
    pub async fn handshake<S>(
        &self,
        io: S,
        name: ServerName<'static>,
    ) -> Result<TlsStream<S>, (Outcome, String)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.connector.connect(name, io).await.map_err(classify)
    }

    /// Judges a presented chain: trust, validity, signatures, key usage and (with CRLs)
    /// revocation, at `at` (now when `None`). Name errors are returned too; the caller ignores
    /// them where the mode does not check names.
    pub async fn verify_chain(
        &self,
        chain: &[CertificateDer<'static>],
        name: &ServerName<'_>,
        at: Option<UnixTime>,
    ) -> Result<(), rustls::Error> {
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or(rustls::Error::NoCertificatesPresented)?;
        self.roots
            .verify(leaf, intermediates, name, at.unwrap_or_else(UnixTime::now))
            .await
    }
}

/// The negotiated version and cipher suite.
pub fn session_info<S>(stream: &TlsStream<S>) -> TlsInfo {
    let (_, conn) = stream.get_ref();
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        Some(v) => format!("{v:?}"),
        None => "unknown".to_owned(),
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|s| {
            let id = s.suite();
            id.as_str().map_or_else(|| format!("{id:?}"), str::to_owned)
        })
        .unwrap_or_else(|| "unknown".to_owned());
    TlsInfo { version, cipher }
}

/// The certificates the server presented.
pub fn peer_chain<S>(stream: &TlsStream<S>) -> Vec<CertificateDer<'static>> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
        .unwrap_or_default()
}

/// A handshake error as a row of the table: nothing in common (a handshake_failure,
/// protocol_version or insufficient_security alert, or a server hello the client cannot take)
/// is EOP's AlgorithmMismatch; anything else rustls objects to (not a TLS record, another
/// alert, a malformed handshake) is IllegalMessage; EOF and reset are a dropped connection.
fn classify(e: io::Error) -> (Outcome, String) {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        use rustls::AlertDescription as A;
        let outcome = match tls {
            rustls::Error::AlertReceived(
                A::HandshakeFailure | A::ProtocolVersion | A::InsufficientSecurity,
            )
            | rustls::Error::PeerIncompatible(_) => Outcome::NoCommonAlgorithm,
            _ => Outcome::IllegalMessage,
        };
        return (outcome, format!("TLS handshake failed: {tls}"));
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof => (
            Outcome::Closed,
            "connection closed by the server during the TLS handshake".into(),
        ),
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => (
            Outcome::Reset,
            format!("connection reset during the TLS handshake: {e}"),
        ),
        _ => (Outcome::Unexpected, format!("TLS handshake: {e}")),
    }
}

/// Accepts any certificate during the handshake (it is judged afterwards) while still
/// checking the handshake signatures, so the peer must hold the certificate's key.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Used where a provider is needed outside this module (the lab's servers).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::certs::{LeafSpec, Pki, Signer};
    use rustls::CertificateError;

    fn client(pki: &Pki) -> TlsClient {
        TlsClient::new(&TlsConfig {
            extra_roots: vec![pki.root.cert.clone()],
            ..TlsConfig::default()
        })
    }

    fn sources_read(c: &TlsClient) -> usize {
        c.roots.sources_read()
    }

    #[tokio::test]
    async fn ca_file_settles_its_own_chains_without_the_native_store() {
        let pki = Pki::new();
        let c = client(&pki);
        let good = pki.leaf(&LeafSpec::valid("mx.lab.example")).chain;
        let name = ServerName::try_from("mx.lab.example").unwrap();
        assert!(c.verify_chain(&good, &name, None).await.is_ok());
        let other = ServerName::try_from("other.example").unwrap();
        assert!(matches!(
            c.verify_chain(&good, &other, None).await,
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ))
        ));
        assert_eq!(sources_read(&c), 1, "a ca_file chain needs no native store");
    }

    #[tokio::test]
    async fn anything_else_is_judged_against_the_whole_store() {
        let pki = Pki::new();
        let c = client(&pki);
        let expired = pki
            .leaf(&LeafSpec {
                not_before: time::Duration::days(-30),
                not_after: time::Duration::days(-1),
                ..LeafSpec::valid("mx.lab.example")
            })
            .chain;
        let name = ServerName::try_from("mx.lab.example").unwrap();
        assert!(matches!(
            c.verify_chain(&expired, &name, None).await,
            Err(rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            ))
        ));
        assert!(
            sources_read(&c) > 1,
            "a failure is the whole store's answer"
        );
        let stranger = pki
            .leaf(&LeafSpec {
                signer: Signer::Stranger,
                ..LeafSpec::valid("mx.lab.example")
            })
            .chain;
        assert!(matches!(
            c.verify_chain(&stranger, &name, None).await,
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        ));
    }

    #[tokio::test]
    async fn without_ca_file_the_system_store_loads_at_once() {
        let c = TlsClient::new(&TlsConfig::default());
        for _ in 0..200 {
            if sources_read(&c) > 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the system store was not loaded ahead of the first chain");
    }
}

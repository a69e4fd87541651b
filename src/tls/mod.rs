//! The TLS client: one shared rustls configuration per run, the STARTTLS handshake, and the
//! chain judgement.
//!
//! The handshake itself accepts any certificate (handshake signatures are still verified),
//! because the probe must finish it to *see* the certificate, report its details, and judge
//! it per TLS mode: EOP's opportunistic and encryption-only modes accept a self-signed
//! certificate, the validating modes do not. The chain is then judged after the handshake by
//! rustls's own webpki verifier, against the native roots plus `[tls].ca_file`, read only
//! as far as a chain needs them ([`roots`]).
//!
//! The ClientHello is EOP's as far as rustls can send it: TLS 1.2 and 1.3, AES-GCM suites
//! only (no ChaCha20, which EOP never offers), P-256 first among the groups. The suites of
//! EOP's list that rustls lacks are spoken by a second engine ([`openssl_engine`]), used only
//! when rustls agreed on nothing with the server.

mod ocsp;
mod openssl_engine;
mod revocation;
mod roots;
mod stream;

pub use openssl_engine::suites as openssl_suites;
pub use stream::{Engine, HandshakeError, TlsStream};

use std::io;
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::{
    AlertDescription, CipherSuite, ClientConfig, DigitallySignedStruct, PeerMisbehaved,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

use crate::config::{Revocation, TlsConfig};
use crate::verdict::{Outcome, TlsInfo};

/// The TLS side of a run: built once and shared by every probe.
pub struct TlsClient {
    connector: TlsConnector,
    /// Untouched (and unbuilt) unless a server agrees on nothing rustls offers.
    openssl: openssl_engine::OpenSslEngine,
    roots: roots::Roots,
    revocation: Revocation,
    crls: revocation::CrlCache,
    /// Stapled OCSP responses, by leaf, from either engine's handshakes.
    staples: Arc<ocsp::Staples>,
}

/// A chain's judgement, and what of its revocation could not be checked (each a warning,
/// "revocation not checked: …").
#[derive(Debug)]
pub struct Judgement {
    pub result: Result<(), rustls::Error>,
    pub warnings: Vec<String>,
}

/// ring's provider cut down to EOP's ClientHello: its AES-GCM suites (TLS 1.3, and TLS 1.2
/// with ECDHE-ECDSA or ECDHE-RSA), without ChaCha20, and P-256 as the first group, so that
/// a TLS 1.3 key share is P-256's. The signature algorithms stay ring's, for the handshake
/// signatures and the chain judgement alike.
pub fn eop_provider() -> CryptoProvider {
    let ring = rustls::crypto::ring::default_provider();
    let cipher_suites = ring
        .cipher_suites
        .iter()
        .copied()
        .filter(|s| eop_offers(s.suite()))
        .collect();
    let p256 = rustls::crypto::ring::kx_group::SECP256R1;
    let mut kx_groups = vec![p256];
    kx_groups.extend(
        ring.kx_groups
            .iter()
            .copied()
            .filter(|g| g.name() != p256.name()),
    );
    CryptoProvider {
        cipher_suites,
        kx_groups,
        ..ring
    }
}

/// Whether EOP offers a suite that rustls has (ring has no CBC and no RSA key exchange).
fn eop_offers(suite: CipherSuite) -> bool {
    matches!(
        suite,
        CipherSuite::TLS13_AES_256_GCM_SHA384
            | CipherSuite::TLS13_AES_128_GCM_SHA256
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
            | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    )
}

impl TlsClient {
    pub fn new(cfg: &TlsConfig) -> TlsClient {
        let provider = Arc::new(eop_provider());
        let roots = roots::Roots::new(cfg, provider.clone());
        let staples = Arc::new(ocsp::Staples::default());
        let accept = Arc::new(AcceptAnyCertificate {
            algorithms: provider.signature_verification_algorithms,
            staples: staples.clone(),
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
            openssl: openssl_engine::OpenSslEngine::default(),
            roots,
            revocation: cfg.revocation,
            crls: revocation::CrlCache::default(),
            staples,
        }
    }

    /// The handshake over an established SMTP connection, by `engine`. SNI is sent for a
    /// DNS name and not for an IP literal (rustls sends none for `ServerName::IpAddress`).
    /// When rustls fails with [`HandshakeError::no_common_algorithm`], the caller may try
    /// [`Engine::OpenSsl`] over a fresh connection.
    pub async fn handshake<S>(
        &self,
        io: S,
        name: ServerName<'static>,
        engine: Engine,
    ) -> Result<TlsStream<S>, HandshakeError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match engine {
            Engine::Rustls => self
                .connector
                .connect(name, io)
                .await
                .map(TlsStream::Rustls)
                .map_err(classify),
            Engine::OpenSsl => {
                let stream = self.openssl.handshake(io, &name).await?;
                let ssl = stream.ssl();
                if let (Some(staple), Some(leaf)) = (ssl.ocsp_status(), ssl.peer_certificate())
                    && let Ok(leaf) = leaf.to_der()
                {
                    self.staples.put(&leaf, staple);
                }
                Ok(TlsStream::OpenSsl(stream))
            }
        }
    }

    /// Whether the OpenSSL engine has been set up (for tests of the laziness).
    #[cfg(test)]
    fn openssl_built(&self) -> bool {
        self.openssl.built()
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
            .verify_in(leaf, intermediates, name, at.unwrap_or_else(UnixTime::now))
            .await
            .0
    }

    /// [`TlsClient::verify_chain`], and with `fetch` (for the modes that validate, as only
    /// they check revocation in EOP) and `[tls] revocation = "fetch"`, the CRLs the leaf
    /// names: only for a chain that leads to a trusted root (a name error aside), from its
    /// http distribution points in order until one answers.
    pub async fn judge_chain(
        &self,
        chain: &[CertificateDer<'static>],
        name: &ServerName<'_>,
        fetch: bool,
    ) -> Judgement {
        let mut warnings = Vec::new();
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Judgement {
                result: Err(rustls::Error::NoCertificatesPresented),
                warnings,
            };
        };
        let (result, tier) = self
            .roots
            .verify_in(leaf, intermediates, name, UnixTime::now())
            .await;
        let Some(tier) = tier.filter(|_| fetch && self.revocation == Revocation::Fetch) else {
            return Judgement { result, warnings };
        };
        if let Some(staple) = self.staples.get(leaf) {
            match ocsp::revoked(leaf, intermediates, &staple) {
                Ok(true) => {
                    return Judgement {
                        result: Err(rustls::Error::InvalidCertificate(
                            rustls::CertificateError::Revoked,
                        )),
                        warnings,
                    };
                }
                Ok(false) => {}
                Err(why) => warnings.push(format!(
                    "revocation not checked: the stapled OCSP response: {why}"
                )),
            }
        }
        let (http, other) = revocation::distribution_points(leaf);
        let mut failures = Vec::new();
        let mut crl = None;
        for url in &http {
            match self.crls.get(url).await {
                Ok(c) => {
                    crl = Some(c);
                    break;
                }
                Err(e) => failures.push(e),
            }
        }
        let Some(crl) = crl else {
            if !other.is_empty() {
                failures.push(format!("not fetched (not http): {}", other.join(", ")));
            }
            if !failures.is_empty() {
                warnings.push(format!("revocation not checked: {}", failures.join("; ")));
            }
            return Judgement { result, warnings };
        };
        match self
            .roots
            .recheck(tier, leaf, intermediates, name, crl)
            .await
        {
            Ok(()) => {}
            Err(e @ rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)) => {
                return Judgement {
                    result: Err(e),
                    warnings,
                };
            }
            Err(e) => warnings.push(format!(
                "revocation not checked: the CRL from {} could not be used: {e}",
                http.first().map_or("", String::as_str)
            )),
        }
        Judgement { result, warnings }
    }
}

/// The negotiated version, cipher suite and engine.
pub fn session_info<S>(stream: &TlsStream<S>) -> TlsInfo {
    stream.session_info()
}

/// rustls's version and suite (its suite names are IANA's).
fn rustls_session<S>(stream: &tokio_rustls::client::TlsStream<S>) -> (String, String) {
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
            match id.as_str() {
                // rustls names the TLS 1.3 suites TLS13_…; IANA (and OpenSSL) TLS_….
                Some(name) => name
                    .strip_prefix("TLS13_")
                    .map_or_else(|| name.to_owned(), |rest| format!("TLS_{rest}")),
                None => format!("{id:?}"),
            }
        })
        .unwrap_or_else(|| "unknown".to_owned());
    (version, cipher)
}

/// The certificates the server presented.
pub fn peer_chain<S>(stream: &TlsStream<S>) -> Vec<CertificateDer<'static>> {
    stream.peer_chain()
}

/// A handshake error as a row of the table: nothing in common (a handshake_failure,
/// protocol_version or insufficient_security alert, or a server hello naming a suite the client
/// did not offer) is EOP's AlgorithmMismatch, and tells the caller to try the other engine;
/// anything else rustls objects to (not a TLS record, another alert, a malformed handshake) is
/// IllegalMessage; EOF and reset are a dropped connection.
fn classify(e: io::Error) -> HandshakeError {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        let detail = format!("TLS handshake failed: {tls}");
        return if no_common_algorithm(tls) {
            HandshakeError::no_common(detail)
        } else {
            HandshakeError::new(Outcome::IllegalMessage, detail)
        };
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof => HandshakeError::new(
            Outcome::Closed,
            "connection closed by the server during the TLS handshake".into(),
        ),
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => HandshakeError::new(
            Outcome::Reset,
            format!("connection reset during the TLS handshake: {e}"),
        ),
        _ => HandshakeError::new(Outcome::Unexpected, format!("TLS handshake: {e}")),
    }
}

/// The rustls errors that mean "the server took nothing rustls offered": the alerts a server
/// sends when no suite or version is shared, and a hello naming a suite rustls did not offer.
/// A server that chose TLS 1.0 or 1.1 is not one: the OpenSSL engine offers TLS 1.2 only.
fn no_common_algorithm(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::AlertReceived(
            AlertDescription::HandshakeFailure
                | AlertDescription::ProtocolVersion
                | AlertDescription::InsufficientSecurity
        ) | rustls::Error::PeerMisbehaved(PeerMisbehaved::SelectedUnofferedCipherSuite)
    )
}

/// Accepts any certificate during the handshake (it is judged afterwards) while still
/// checking the handshake signatures, so the peer must hold the certificate's key.
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
    /// Where a stapled OCSP response is filed for the chain judgement.
    staples: Arc<ocsp::Staples>,
}

impl std::fmt::Debug for AcceptAnyCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptAnyCertificate")
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !ocsp_response.is_empty() {
            self.staples.put(end_entity, ocsp_response);
        }
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
// A test whose tool is missing says SKIPPED on stderr, as the real-peer tests do.
#[allow(clippy::print_stderr)]
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

    /// The ClientHello the probe sends, as the server reads it off the wire.
    async fn client_hello() -> Vec<u8> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let c = TlsClient::new(&TlsConfig::default());
        let server = async {
            use tokio::io::AsyncReadExt;
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut header = [0u8; 5];
            tcp.read_exact(&mut header).await.unwrap();
            assert_eq!(header[0], 22, "a handshake record");
            let mut body = vec![0u8; usize::from(u16::from_be_bytes([header[3], header[4]]))];
            tcp.read_exact(&mut body).await.unwrap();
            body
            // Dropping the connection fails the client's handshake, which ends it.
        };
        let client = async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("mx.lab.example").unwrap();
            c.handshake(tcp, name, Engine::Rustls).await.err()
        };
        let (hello, _) = tokio::join!(server, client);
        hello
    }

    /// The cipher suites and the extensions of a ClientHello handshake message.
    fn parse_hello(h: &[u8]) -> (Vec<u16>, Vec<(u16, Vec<u8>)>) {
        let u16_at = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        assert_eq!(h[0], 1, "a ClientHello");
        let mut i = 4 + 2 + 32; // type, length, legacy version, random
        i += 1 + usize::from(h[i]); // session id
        let suites_len = usize::from(u16_at(i));
        let suites = (0..suites_len / 2).map(|k| u16_at(i + 2 + 2 * k)).collect();
        i += 2 + suites_len;
        i += 1 + usize::from(h[i]); // compression methods
        let end = i + 2 + usize::from(u16_at(i));
        i += 2;
        let mut extensions = Vec::new();
        while i < end {
            let (kind, len) = (u16_at(i), usize::from(u16_at(i + 2)));
            extensions.push((kind, h[i + 4..i + 4 + len].to_vec()));
            i += 4 + len;
        }
        (suites, extensions)
    }

    #[tokio::test]
    async fn the_client_hello_is_eops() {
        let (suites, extensions) = parse_hello(&client_hello().await);
        let offered: Vec<u16> = suites.into_iter().filter(|s| *s != 0x00ff).collect();
        // TLS 1.3 AES-GCM, then TLS 1.2 ECDHE-ECDSA and ECDHE-RSA with AES-GCM: no ChaCha20
        // (0x1303, 0xcca8, 0xcca9), which EOP never offers.
        assert_eq!(
            offered,
            [0x1302, 0x1301, 0xc02c, 0xc02b, 0xc030, 0xc02f],
            "cipher suites"
        );
        let ext = |kind: u16| {
            extensions
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("extension {kind} is sent"))
        };
        let groups = ext(10);
        assert_eq!(&groups[2..4], &[0x00, 0x17], "secp256r1 is the first group");
        let key_share = ext(51);
        assert_eq!(&key_share[2..4], &[0x00, 0x17], "the key share is P-256's");
        let versions = ext(43);
        assert_eq!(
            &versions[1..],
            &[0x03, 0x04, 0x03, 0x03],
            "TLS 1.3 and 1.2 only"
        );
    }

    /// A TLS 1.2 server limited to `ciphers`, speaking TLS straight away.
    async fn openssl_server(
        ciphers: &str,
    ) -> (std::net::SocketAddr, Vec<CertificateDer<'static>>, Pki) {
        let pki = Pki::new();
        let leaf = pki.leaf(&LeafSpec {
            rsa: true,
            ..LeafSpec::valid("mx.lab.example")
        });
        let acceptor = leaf.openssl_acceptor(ciphers);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let ssl = openssl::ssl::Ssl::new(acceptor.context()).unwrap();
                    let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
                    if std::pin::Pin::new(&mut tls).accept().await.is_ok() {
                        use tokio::io::AsyncReadExt;
                        let _ = tls.read(&mut [0u8; 16]).await;
                    }
                });
            }
        });
        (addr, leaf.chain, pki)
    }

    async fn handshake_with(
        c: &TlsClient,
        addr: std::net::SocketAddr,
        engine: Engine,
    ) -> Result<TlsStream<tokio::net::TcpStream>, HandshakeError> {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("mx.lab.example").unwrap();
        c.handshake(tcp, name, engine).await
    }

    #[tokio::test]
    async fn a_cbc_only_server_is_reached_by_the_openssl_engine() {
        let (addr, chain, pki) = openssl_server("ECDHE-RSA-AES256-SHA384").await;
        let c = client(&pki);
        let refused = handshake_with(&c, addr, Engine::Rustls)
            .await
            .err()
            .unwrap();
        assert!(refused.no_common_algorithm(), "{refused:?}");
        assert_eq!(refused.outcome, Outcome::NoCommonAlgorithm);
        assert!(!c.openssl_built(), "a rustls failure alone builds nothing");
        let tls = handshake_with(&c, addr, Engine::OpenSsl).await.unwrap();
        assert_eq!(
            session_info(&tls),
            TlsInfo {
                version: "TLSv1.2".into(),
                cipher: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384".into(),
                engine: "openssl".into(),
            }
        );
        assert_eq!(peer_chain(&tls), chain, "the chain as sent, leaf first");
        let name = ServerName::try_from("mx.lab.example").unwrap();
        assert!(c.verify_chain(&peer_chain(&tls), &name, None).await.is_ok());
    }

    #[tokio::test]
    async fn tls13_suites_are_named_as_iana_names_them() {
        let pki = Pki::new();
        let config = pki.leaf(&LeafSpec::valid("mx.lab.example")).server_config();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = tokio_rustls::TlsAcceptor::from(config)
                .accept(tcp)
                .await
                .unwrap();
            use tokio::io::AsyncReadExt;
            let _ = tls.read(&mut [0u8; 16]).await;
        });
        let c = client(&pki);
        let tls = handshake_with(&c, addr, Engine::Rustls).await.unwrap();
        let info = session_info(&tls);
        assert_eq!(info.version, "TLSv1.3");
        assert_eq!(info.cipher, "TLS_AES_256_GCM_SHA384");
    }

    #[tokio::test]
    async fn rsa_key_exchange_is_named_as_iana_names_it() {
        let (addr, _, pki) = openssl_server("AES128-GCM-SHA256").await;
        let c = client(&pki);
        let tls = handshake_with(&c, addr, Engine::OpenSsl).await.unwrap();
        assert_eq!(session_info(&tls).cipher, "TLS_RSA_WITH_AES_128_GCM_SHA256");
    }

    #[tokio::test]
    async fn chacha20_fails_in_both_engines() {
        let (addr, _, pki) = openssl_server("ECDHE-RSA-CHACHA20-POLY1305").await;
        let c = client(&pki);
        let refused = handshake_with(&c, addr, Engine::Rustls)
            .await
            .err()
            .unwrap();
        assert!(refused.no_common_algorithm(), "{refused:?}");
        let refused = handshake_with(&c, addr, Engine::OpenSsl)
            .await
            .err()
            .unwrap();
        assert_eq!(refused.outcome, Outcome::NoCommonAlgorithm, "{refused:?}");
        assert!(refused.no_common_algorithm(), "{refused:?}");
    }

    #[tokio::test]
    async fn an_aes_gcm_server_is_rustlss_and_openssl_stays_unbuilt() {
        let (addr, _, pki) = openssl_server("ECDHE-RSA-AES128-GCM-SHA256").await;
        let c = client(&pki);
        let tls = handshake_with(&c, addr, Engine::Rustls).await.unwrap();
        assert_eq!(
            session_info(&tls),
            TlsInfo {
                version: "TLSv1.2".into(),
                cipher: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(),
                engine: "rustls".into(),
            }
        );
        assert!(!c.openssl_built());
        // The OpenSSL engine never offers what rustls has.
        let refused = handshake_with(&c, addr, Engine::OpenSsl)
            .await
            .err()
            .unwrap();
        assert!(refused.no_common_algorithm(), "{refused:?}");
    }

    /// A leaf of `pki` for mx.lab.example naming `urls` as its CRL distribution point.
    fn leaf_with_cdp(
        pki: &Pki,
        serial: u64,
        urls: &[String],
        signer: Signer,
    ) -> Vec<CertificateDer<'static>> {
        pki.leaf(&LeafSpec {
            serial,
            crl_urls: urls.to_vec(),
            signer,
            ..LeafSpec::valid("mx.lab.example")
        })
        .chain
    }

    fn mx() -> ServerName<'static> {
        ServerName::try_from("mx.lab.example").unwrap()
    }

    #[tokio::test]
    async fn a_leaf_its_own_crl_revokes_is_revoked_and_the_crl_is_fetched_once() {
        let pki = Pki::new();
        let crl = crate::lab::http::HttpServer::serve(pki.crl(&[77]).to_vec())
            .await
            .unwrap();
        let urls = [crl.url("/lab.crl")];
        let c = client(&pki);
        let revoked = leaf_with_cdp(&pki, 77, &urls, Signer::Intermediate);
        let j = c.judge_chain(&revoked, &mx(), true).await;
        assert!(
            matches!(
                j.result,
                Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
            ),
            "{j:?}"
        );
        assert!(j.warnings.is_empty(), "{j:?}");
        let good = leaf_with_cdp(&pki, 78, &urls, Signer::Intermediate);
        let j = c.judge_chain(&good, &mx(), true).await;
        assert!(j.result.is_ok() && j.warnings.is_empty(), "{j:?}");
        // A name error does not spare a revoked certificate (the mode may not check names).
        let other = ServerName::try_from("other.example").unwrap();
        let j = c.judge_chain(&revoked, &other, true).await;
        assert!(
            matches!(
                j.result,
                Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
            ),
            "{j:?}"
        );
        assert_eq!(
            crl.hits(),
            1,
            "one fetch, shared until the CRL's nextUpdate"
        );
        assert_eq!(c.crls.len(), 1);
        assert_eq!(c.roots.crl_verifiers(), 1, "one verifier built with it");
    }

    #[tokio::test]
    async fn without_fetching_only_crl_file_counts() {
        let pki = Pki::new();
        let crl = crate::lab::http::HttpServer::serve(pki.crl(&[77]).to_vec())
            .await
            .unwrap();
        let revoked = leaf_with_cdp(&pki, 77, &[crl.url("/lab.crl")], Signer::Intermediate);
        let c = client(&pki);
        let j = c.judge_chain(&revoked, &mx(), false).await;
        assert!(
            j.result.is_ok(),
            "a non-validating mode fetches nothing: {j:?}"
        );
        let off = TlsClient::new(&TlsConfig {
            extra_roots: vec![pki.root.cert.clone()],
            revocation: Revocation::Off,
            ..TlsConfig::default()
        });
        let j = off.judge_chain(&revoked, &mx(), true).await;
        assert!(
            j.result.is_ok(),
            "revocation = \"off\" fetches nothing: {j:?}"
        );
        assert_eq!(crl.hits(), 0);
    }

    #[tokio::test]
    async fn a_strangers_certificate_cannot_make_the_probe_fetch() {
        let pki = Pki::new();
        let crl = crate::lab::http::HttpServer::serve(pki.crl(&[]).to_vec())
            .await
            .unwrap();
        let c = client(&pki);
        for signer in [Signer::Stranger, Signer::SelfSigned] {
            let chain = leaf_with_cdp(&pki, 5, &[crl.url("/x")], signer);
            let j = c.judge_chain(&chain, &mx(), true).await;
            assert!(j.result.is_err() && j.warnings.is_empty(), "{j:?}");
        }
        assert_eq!(crl.hits(), 0);
    }

    #[tokio::test]
    async fn an_unreachable_distribution_point_is_a_warning() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/lab.crl", closed.local_addr().unwrap());
        drop(closed);
        let pki = Pki::new();
        let c = client(&pki);
        let chain = leaf_with_cdp(
            &pki,
            9,
            &[url.clone(), "ldap://ldap.lab.example/crl".into()],
            Signer::Intermediate,
        );
        let j = c.judge_chain(&chain, &mx(), true).await;
        assert!(j.result.is_ok(), "{j:?}");
        assert_eq!(j.warnings.len(), 1, "{j:?}");
        let w = &j.warnings[0];
        assert!(w.starts_with("revocation not checked: "), "{w}");
        assert!(w.contains(&url) && w.contains("ldap://"), "{w}");
    }

    #[tokio::test]
    async fn a_distribution_point_that_serves_no_crl_is_a_warning() {
        let pki = Pki::new();
        let junk = crate::lab::http::HttpServer::serve(b"<html>not here</html>".to_vec())
            .await
            .unwrap();
        let c = client(&pki);
        let chain = leaf_with_cdp(&pki, 9, &[junk.url("/lab.crl")], Signer::Intermediate);
        let j = c.judge_chain(&chain, &mx(), true).await;
        assert!(j.result.is_ok(), "{j:?}");
        assert!(
            j.warnings.len() == 1 && j.warnings[0].contains("not a CRL"),
            "{j:?}"
        );
    }

    #[tokio::test]
    async fn a_certificate_without_distribution_points_is_fine() {
        let pki = Pki::new();
        let c = client(&pki);
        let chain = leaf_with_cdp(&pki, 9, &[], Signer::Intermediate);
        let j = c.judge_chain(&chain, &mx(), true).await;
        assert!(j.result.is_ok() && j.warnings.is_empty(), "{j:?}");
    }

    /// An OCSP response about `leaf` (serial `serial`), signed by the lab intermediate, made
    /// by `openssl ocsp` as a CA's responder would; `None` (and a note) without the tool.
    fn ocsp_response(pki: &Pki, leaf_pem: &str, serial: u64, revoked: bool) -> Option<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name);
        std::fs::write(p("ca.pem"), &pki.intermediate.pem).unwrap();
        std::fs::write(p("ca.key"), pki.intermediate.key_pem()).unwrap();
        std::fs::write(p("leaf.pem"), leaf_pem).unwrap();
        // OpenSSL's CA database: status, expiry, revocation date, serial (hex), file, subject.
        let line = if revoked {
            format!("R\t391231235959Z\t250101000000Z\t{serial:02X}\tunknown\t/CN=mx.lab.example\n")
        } else {
            format!("V\t391231235959Z\t\t{serial:02X}\tunknown\t/CN=mx.lab.example\n")
        };
        std::fs::write(p("index.txt"), line).unwrap();
        let run = |args: &[&str]| {
            std::process::Command::new("openssl")
                .current_dir(dir.path())
                .args(args)
                .output()
        };
        let Ok(out) = run(&[
            "ocsp",
            "-issuer",
            "ca.pem",
            "-cert",
            "leaf.pem",
            "-no_nonce",
            "-reqout",
            "req.der",
        ]) else {
            eprintln!("SKIPPED: `openssl` not found, no OCSP response to staple");
            return None;
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = run(&[
            "ocsp",
            "-index",
            "index.txt",
            "-rsigner",
            "ca.pem",
            "-rkey",
            "ca.key",
            "-CA",
            "ca.pem",
            "-reqin",
            "req.der",
            "-respout",
            "resp.der",
            "-ndays",
            "1",
        ])
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(std::fs::read(p("resp.der")).unwrap())
    }

    /// The judgement of a chain after a rustls handshake with a server stapling `ocsp`.
    async fn judged_with_staple(
        pki: &Pki,
        leaf: &crate::lab::certs::Leaf,
        ocsp: Vec<u8>,
    ) -> Judgement {
        let config = leaf.server_config_with_ocsp(ocsp);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            if let Ok(mut tls) = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await {
                use tokio::io::AsyncReadExt;
                let _ = tls.read(&mut [0u8; 16]).await;
            }
        });
        let c = client(pki);
        let tls = handshake_with(&c, addr, Engine::Rustls).await.unwrap();
        c.judge_chain(&peer_chain(&tls), &mx(), true).await
    }

    #[tokio::test]
    async fn a_stapled_ocsp_response_is_checked() {
        let pki = Pki::new();
        let leaf = pki.leaf(&LeafSpec {
            serial: 0x51,
            ..LeafSpec::valid("mx.lab.example")
        });
        let Some(revoked) = ocsp_response(&pki, &leaf.chain_pem, 0x51, true) else {
            return;
        };
        let j = judged_with_staple(&pki, &leaf, revoked).await;
        assert!(
            matches!(
                j.result,
                Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
            ),
            "{j:?}"
        );
        let good = ocsp_response(&pki, &leaf.chain_pem, 0x51, false).unwrap();
        let j = judged_with_staple(&pki, &leaf, good).await;
        assert!(j.result.is_ok() && j.warnings.is_empty(), "{j:?}");
        // A response signed by anyone but the issuer says nothing.
        let other = Pki::new();
        let forged = ocsp_response(&other, &leaf.chain_pem, 0x51, true).unwrap();
        let j = judged_with_staple(&pki, &leaf, forged).await;
        assert!(j.result.is_ok(), "{j:?}");
        assert!(
            j.warnings.len() == 1
                && j.warnings[0].starts_with("revocation not checked: the stapled OCSP response"),
            "{j:?}"
        );
    }

    #[tokio::test]
    async fn a_hello_naming_a_suite_rustls_lacks_asks_for_the_other_engine() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut tcp, _) = listener.accept().await.unwrap();
            let _ = tcp.read(&mut [0u8; 4096]).await;
            // A TLS 1.2 ServerHello choosing TLS_RSA_WITH_AES_256_GCM_SHA384 (0x009d).
            let mut hello = vec![
                0x16, 0x03, 0x03, 0x00, 0x2a, 0x02, 0x00, 0x00, 0x26, 0x03, 0x03,
            ];
            hello.extend([0x42; 32]);
            hello.extend([0x00, 0x00, 0x9d, 0x00]);
            let _ = tcp.write_all(&hello).await;
            let _ = tcp.read(&mut [0u8; 4096]).await;
        });
        let c = TlsClient::new(&TlsConfig::default());
        let refused = handshake_with(&c, addr, Engine::Rustls)
            .await
            .err()
            .unwrap();
        assert!(
            refused.no_common_algorithm()
                && refused.detail.contains("SelectedUnofferedCipherSuite"),
            "{refused:?}"
        );
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

//! The TLS client: one shared rustls configuration per run, the STARTTLS handshake, and the
//! chain judgement.
//!
//! The handshake itself accepts any certificate (handshake signatures are still verified),
//! because the probe must finish it to *see* the certificate, report its details, and judge
//! it per TLS mode: EOP's opportunistic and encryption-only modes accept a self-signed
//! certificate, the validating modes do not. The chain is then judged after the handshake by
//! rustls's own webpki verifier, against the native roots plus `[tls].ca_file`.

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::TlsConfig;
use crate::verdict::{Outcome, TlsInfo};

/// The TLS side of a run: built once (the root store is loaded once) and shared by every
/// probe.
pub struct TlsClient {
    connector: TlsConnector,
    /// `[tls].ca_file`'s roots alone, when there are any: see [`TlsClient::verify_chain`].
    extra_only: Option<Arc<WebPkiServerVerifier>>,
    /// The verifier against the whole store (native roots plus `ca_file`), `None` until it is
    /// loaded. Reading and parsing the native store (a few hundred PEM files) takes longer
    /// than the connect, SMTP dialogue and handshake of a one-shot probe to a near server, so
    /// it is loaded on a thread of its own: at once when there is no `ca_file` (every chain
    /// will need it), otherwise only when a chain first needs it.
    store: watch::Receiver<Option<Arc<Store>>>,
    /// The loading, until it is started.
    loader: Mutex<Option<Loader>>,
}

/// The whole store's verifier, or why there is none, and what loading the roots ran into.
struct Store {
    webpki: Result<Arc<WebPkiServerVerifier>, String>,
    notes: Vec<String>,
}

/// What loading the whole store needs.
struct Loader {
    ready: watch::Sender<Option<Arc<Store>>>,
    cfg: TlsConfig,
    provider: Arc<CryptoProvider>,
}

impl TlsClient {
    /// The client of a run; the whole store starts loading at once unless `ca_file` is set.
    pub fn new(cfg: &TlsConfig) -> TlsClient {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let extra_only = extra_only(cfg, &provider);
        let (ready, store) = watch::channel(None);
        let loader = Loader {
            ready,
            cfg: cfg.clone(),
            provider: provider.clone(),
        };
        let loader = match extra_only {
            None => {
                loader.start();
                None
            }
            Some(_) => Some(loader),
        };
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
            extra_only,
            store,
            loader: Mutex::new(loader),
        }
    }

    /// The whole store, loading it if that has not started yet.
    async fn store(&self) -> Arc<Store> {
        let not_started = self.loader.lock().expect("loader lock").take();
        if let Some(loader) = not_started {
            loader.start();
        }
        match self.loaded().await {
            Some(store) => store,
            None => Arc::new(Store {
                webpki: Err("the root store could not be loaded".into()),
                notes: Vec::new(),
            }),
        }
    }

    /// Waits until the whole store is loaded; `None` if it never will be.
    async fn loaded(&self) -> Option<Arc<Store>> {
        let mut rx = self.store.clone();
        let store = rx.wait_for(Option::is_some).await.ok()?;
        store.clone()
    }

    /// Problems met while loading the root store, for the log: empty until it is loaded.
    pub fn notes(&self) -> Vec<String> {
        self.store
            .borrow()
            .as_ref()
            .map(|s| s.notes.clone())
            .unwrap_or_default()
    }

    /// The same problems, once the store is loaded (never, if no chain needs it). The future
    /// does not keep the client alive.
    pub fn notes_when_loaded(&self) -> impl Future<Output = Vec<String>> + Send + 'static {
        let mut rx = self.store.clone();
        async move {
            match rx.wait_for(Option::is_some).await {
                Ok(store) => store.as_ref().map(|s| s.notes.clone()).unwrap_or_default(),
                Err(_) => Vec::new(),
            }
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
    /// revocation. Name errors are returned too; the caller ignores them where the mode does
    /// not check names.
    ///
    /// Trust only grows with roots, so a chain that `[tls].ca_file`'s roots alone validate is
    /// valid against the whole store too; and webpki checks the name only once the chain is
    /// valid, so a name error found there is the whole store's answer as well. Only when the
    /// extra roots do not settle it (or there are none) is the native store consulted, as
    /// openssl consults its hash directory only when its CA file does not settle it. The
    /// answer is the same either way; a run whose servers chain to `ca_file` then never waits
    /// for the native store.
    pub async fn verify_chain(
        &self,
        chain: &[CertificateDer<'static>],
        name: &ServerName<'_>,
    ) -> Result<(), rustls::Error> {
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or(rustls::Error::NoCertificatesPresented)?;
        if let Some(extra) = &self.extra_only {
            match extra.verify_server_cert(leaf, intermediates, name, &[], UnixTime::now()) {
                Ok(_) => return Ok(()),
                Err(
                    e @ rustls::Error::InvalidCertificate(
                        CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. },
                    ),
                ) => return Err(e),
                Err(_) => {}
            }
        }
        let store = self.store().await;
        let webpki = store
            .webpki
            .as_ref()
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))?;
        webpki
            .verify_server_cert(leaf, intermediates, name, &[], UnixTime::now())
            .map(|_| ())
    }
}

/// A verifier for `roots`, with the CRLs and revocation policy of every judgement.
fn webpki(
    roots: RootCertStore,
    cfg: &TlsConfig,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, rustls::client::VerifierBuilderError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .with_crls(cfg.crls.iter().cloned())
        // Only a listed revocation fails; a chain without a CRL is not "unknown".
        .allow_unknown_revocation_status()
        .only_check_end_entity_revocation()
        .build()
}

/// A verifier for `[tls].ca_file`'s roots alone, if there are any usable ones.
fn extra_only(
    cfg: &TlsConfig,
    provider: &Arc<CryptoProvider>,
) -> Option<Arc<WebPkiServerVerifier>> {
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(cfg.extra_roots.iter().cloned());
    if added == 0 {
        return None;
    }
    webpki(roots, cfg, provider.clone()).ok()
}

impl Loader {
    /// Loads the store on a thread of its own.
    fn start(self) {
        let job = Arc::new(self);
        let background = job.clone();
        if let Err(e) = std::thread::Builder::new()
            .name("root-store".into())
            .spawn(move || background.load())
        {
            // Without a thread of its own the store is loaded here: slower, never wrong.
            tracing::debug!("no thread for the root store ({e}); loading it now");
            job.load();
        }
    }

    /// The native roots plus `[tls].ca_file`, and the CRLs of `[tls].crl_file`.
    fn load(&self) {
        let mut notes = Vec::new();
        let mut roots = RootCertStore::empty();
        let native = native_roots();
        for e in &native.errors {
            notes.push(format!("native root store: {e}"));
        }
        let (_, skipped) = roots.add_parsable_certificates(native.certs);
        if skipped > 0 {
            notes.push(format!(
                "native root store: {skipped} certificate(s) could not be parsed"
            ));
        }
        for root in &self.cfg.extra_roots {
            if let Err(e) = roots.add(root.clone()) {
                notes.push(format!(
                    "ca_file: a certificate was not usable as a root: {e}"
                ));
            }
        }
        let webpki = webpki(roots, &self.cfg, self.provider.clone())
            .map_err(|e| format!("no trusted roots available: {e}"));
        if let Err(e) = &webpki {
            notes.push(e.clone());
        }
        let _ = self.ready.send(Some(Arc::new(Store { webpki, notes })));
    }
}

/// The system's roots. Where the distribution keeps a bundle file, that file alone is read:
/// rustls-native-certs otherwise also reads every certificate of `/etc/ssl/certs`, the same
/// certificates again (Debian's `update-ca-certificates` writes both), which doubles the
/// most expensive part of a one-shot probe. `SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured
/// as rustls-native-certs honours them; a CA kept only in a hashed directory is trusted
/// through `SSL_CERT_DIR` or `[tls].ca_file`.
fn native_roots() -> rustls_native_certs::CertificateResult {
    const BUNDLES: [&str; 5] = [
        "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Arch, Gentoo
        "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
        "/etc/ssl/ca-bundle.pem",             // openSUSE
        "/etc/pki/tls/cacert.pem",            // OpenELEC
        "/etc/ssl/cert.pem",                  // Alpine, the BSDs
    ];
    let from_env = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    match BUNDLES.iter().map(Path::new).find(|p| p.is_file()) {
        Some(bundle) if !from_env => rustls_native_certs::load_certs_from_paths(Some(bundle), None),
        _ => rustls_native_certs::load_native_certs(),
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

/// A handshake error as a row of the table: any rustls error (an alert, no common version or
/// cipher, not a TLS record) is a failed handshake; EOF and reset are a dropped connection.
fn classify(e: io::Error) -> (Outcome, String) {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return (
            Outcome::HandshakeFailed,
            format!("TLS handshake failed: {tls}"),
        );
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

    fn client(pki: &Pki) -> TlsClient {
        TlsClient::new(&TlsConfig {
            extra_roots: vec![pki.root.cert.clone()],
            ..TlsConfig::default()
        })
    }

    fn loading_started(c: &TlsClient) -> bool {
        c.loader.lock().unwrap().is_none()
    }

    #[tokio::test]
    async fn ca_file_settles_its_own_chains_without_the_native_store() {
        let pki = Pki::new();
        let c = client(&pki);
        let good = pki.leaf(&LeafSpec::valid("mx.lab.example")).chain;
        let name = ServerName::try_from("mx.lab.example").unwrap();
        assert!(c.verify_chain(&good, &name).await.is_ok());
        let other = ServerName::try_from("other.example").unwrap();
        assert!(matches!(
            c.verify_chain(&good, &other).await,
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ))
        ));
        assert!(
            !loading_started(&c),
            "a ca_file chain needs no native store"
        );
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
            c.verify_chain(&expired, &name).await,
            Err(rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            ))
        ));
        assert!(loading_started(&c));
        let stranger = pki
            .leaf(&LeafSpec {
                signer: Signer::Stranger,
                ..LeafSpec::valid("mx.lab.example")
            })
            .chain;
        assert!(matches!(
            c.verify_chain(&stranger, &name).await,
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        ));
    }

    #[tokio::test]
    async fn without_ca_file_the_store_loads_at_once() {
        let c = TlsClient::new(&TlsConfig::default());
        assert!(loading_started(&c));
        c.notes_when_loaded().await;
        assert!(c.store.borrow().is_some());
    }
}

//! The trust store, read only as far as a chain needs it.
//!
//! Reading and parsing a system store costs a few milliseconds: more than the whole SMTP
//! dialogue of a one-shot probe to a near server, and twice that where `SSL_CERT_DIR` points
//! at a directory that holds the bundle's certificates again. So the roots come in tiers,
//! each a superset of the one before:
//!
//! 1. `[tls].ca_file`, if set;
//! 2. plus the system bundle (`SSL_CERT_FILE`, else the distribution's bundle file, else
//!    whatever rustls-native-certs finds);
//! 3. plus the directories of `SSL_CERT_DIR`, if set.
//!
//! A chain is judged against the first tier, then the next only if that one did not settle
//! it, as OpenSSL consults its hash directory only when its CA file does not. Trust only
//! grows with roots, so a chain valid against a tier is valid against every larger one; and
//! webpki checks the name only once the chain is valid, so a name error is final too. Any
//! other failure goes on to the next tier, and the last tier's answer is the answer: the
//! verdict is always the whole store's, however far the store was read.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, RootCertStore};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use tokio::sync::OnceCell;

use crate::config::TlsConfig;

/// Where the distributions keep their bundle, which `update-ca-certificates` and its kin
/// write every root into (`/etc/ssl/certs` then only mirrors it).
const BUNDLES: [&str; 5] = [
    "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Arch, Gentoo
    "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",             // openSUSE
    "/etc/pki/tls/cacert.pem",            // OpenELEC
    "/etc/ssl/cert.pem",                  // Alpine, the BSDs
];

/// Where a tier's additional roots come from.
enum Source {
    /// `[tls].ca_file`, already read at configuration time.
    CaFile(Vec<CertificateDer<'static>>),
    /// A PEM bundle file.
    File(PathBuf),
    /// Directories of PEM files.
    Dirs(Vec<PathBuf>),
    /// rustls-native-certs' own search, where no bundle was found.
    Platform,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::CaFile(_) => f.write_str("ca_file"),
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Dirs(d) => {
                let shown: Vec<String> = d.iter().map(|p| p.display().to_string()).collect();
                f.write_str(&shown.join(":"))
            }
            Source::Platform => f.write_str("the platform's store"),
        }
    }
}

impl Source {
    /// The sources of the system store, as the environment and the distribution set them.
    fn native() -> Vec<Source> {
        let file = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
        let dirs: Vec<PathBuf> = std::env::var_os("SSL_CERT_DIR")
            .map(|d| {
                std::env::split_paths(&d)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let mut sources = Vec::new();
        match file {
            Some(f) => sources.push(Source::File(f)),
            None if dirs.is_empty() => {
                let bundle = BUNDLES.iter().map(PathBuf::from).find(|p| p.is_file());
                sources.push(bundle.map_or(Source::Platform, Source::File));
            }
            None => {}
        }
        if !dirs.is_empty() {
            sources.push(Source::Dirs(dirs));
        }
        sources
    }

    /// Reads the certificates; problems are logged (`tls_roots`), not fatal: a store with
    /// fewer roots makes some chains untrusted, which the verdict then says.
    fn load(&self) -> Vec<CertificateDer<'static>> {
        let result = match self {
            Source::CaFile(certs) => return certs.clone(),
            Source::File(f) => rustls_native_certs::load_certs_from_paths(Some(f), None),
            Source::Dirs(dirs) => {
                let mut all = rustls_native_certs::CertificateResult::default();
                for d in dirs {
                    let r = rustls_native_certs::load_certs_from_paths(None, Some(d));
                    all.certs.extend(r.certs);
                    all.errors.extend(r.errors);
                }
                all
            }
            Source::Platform => rustls_native_certs::load_native_certs(),
        };
        for e in &result.errors {
            tracing::warn!(event = "tls_roots", "root store {self}: {e}");
        }
        result.certs
    }
}

/// One tier: its sources are the first `sources` of the store's list.
struct Tier {
    sources: usize,
    verifier: OnceCell<Result<Built, String>>,
}

/// A tier's roots and its verifier (with `[tls].crl_file`'s CRLs).
#[derive(Clone)]
struct Built {
    roots: Arc<RootCertStore>,
    verifier: Arc<WebPkiServerVerifier>,
}

/// How many verifiers with a fetched CRL are kept.
const MAX_CRL_VERIFIERS: usize = 256;

/// A fetched CRL and the verifier built with it, by tier and CRL.
type CrlVerifiers = HashMap<
    (usize, usize),
    (
        Arc<CertificateRevocationListDer<'static>>,
        Arc<WebPkiServerVerifier>,
    ),
>;

struct Inner {
    sources: Vec<(Source, OnceLock<Vec<CertificateDer<'static>>>)>,
    tiers: Vec<Tier>,
    cfg: TlsConfig,
    provider: Arc<CryptoProvider>,
    with_crl: Mutex<CrlVerifiers>,
}

/// The tiers of a run's trust store; cheap to clone.
#[derive(Clone)]
pub struct Roots(Arc<Inner>);

impl Roots {
    /// The store of `[tls]`. Without a `ca_file`, the first tier (the system bundle) is built
    /// by a task of its own, which runs while the probes wait on the network; with a
    /// `ca_file`, nothing is read until a chain needs it.
    pub fn new(cfg: &TlsConfig, provider: Arc<CryptoProvider>) -> Roots {
        let mut sources = Vec::new();
        if !cfg.extra_roots.is_empty() {
            sources.push(Source::CaFile(cfg.extra_roots.clone()));
        }
        sources.extend(Source::native());
        let tiers = (1..=sources.len())
            .map(|n| Tier {
                sources: n,
                verifier: OnceCell::new(),
            })
            .collect();
        let roots = Roots(Arc::new(Inner {
            sources: sources.into_iter().map(|s| (s, OnceLock::new())).collect(),
            tiers,
            cfg: cfg.clone(),
            provider,
            with_crl: Mutex::new(HashMap::new()),
        }));
        if cfg.extra_roots.is_empty()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let early = roots.clone();
            handle.spawn(async move {
                // Errors surface when a chain needs the tier; this only warms it.
                let _ = early.tier(0).await;
            });
        }
        roots
    }

    /// Judges a chain against the tiers, as the module's documentation says; with the tier
    /// whose roots the chain leads to, if it does (a valid chain with a name error does).
    pub async fn verify_in(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        at: UnixTime,
    ) -> (Result<(), rustls::Error>, Option<TierId>) {
        let untrusted = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let mut answer = Err(untrusted.clone());
        for i in 0..self.0.tiers.len() {
            answer = match self.tier(i).await {
                Ok(b) => b
                    .verifier
                    .verify_server_cert(leaf, intermediates, name, &[], at)
                    .map(|_| ()),
                Err(_) => Err(untrusted.clone()),
            };
            if answer.is_ok() || is_name_error(&answer) {
                return (answer, Some(TierId(i)));
            }
        }
        (answer, None)
    }

    /// Judges a chain that led to `tier` again, with `crl` besides `[tls].crl_file`'s: a
    /// fetched CRL is only ever used for a chain the roots already trust. The verifier is
    /// kept while the CRL is (parsing a large CRL costs more than the rest of a probe).
    pub async fn recheck(
        &self,
        tier: TierId,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        crl: Arc<CertificateRevocationListDer<'static>>,
    ) -> Result<(), rustls::Error> {
        let built = self
            .tier(tier.0)
            .await
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))?;
        // Keyed by the CRL's allocation, which the entry holds, so the key cannot be reused.
        let key = (tier.0, Arc::as_ptr(&crl) as usize);
        let cached = self
            .0
            .with_crl
            .lock()
            .expect("verifier cache lock")
            .get(&key)
            .map(|(_, v)| v.clone());
        let verifier = match cached {
            Some(v) => v,
            None => {
                let v = self
                    .0
                    .verifier(built.roots, vec![CertificateRevocationListDer::clone(&crl)])?;
                let mut cache = self.0.with_crl.lock().expect("verifier cache lock");
                if cache.len() >= MAX_CRL_VERIFIERS {
                    // Refreshed CRLs leave their old entries behind; start again.
                    cache.clear();
                }
                cache.insert(key, (crl, v.clone()));
                v
            }
        };
        let answer = verifier
            .verify_server_cert(leaf, intermediates, name, &[], UnixTime::now())
            .map(|_| ());
        if is_name_error(&answer) {
            return Ok(());
        }
        answer
    }

    /// Tier `i`'s verifier, built (and its sources read) on first use. The build runs on the
    /// calling task: a millisecond for a bundle, once per run. A thread of its own would cost
    /// more than that (a new thread's malloc arena alone doubles a one-shot's system time).
    async fn tier(&self, i: usize) -> Result<Built, String> {
        self.0.tiers[i]
            .verifier
            .get_or_init(|| async { self.0.build(i) })
            .await
            .clone()
    }

    /// How many verifiers with a fetched CRL are kept (for tests of the cache).
    #[cfg(test)]
    pub fn crl_verifiers(&self) -> usize {
        self.0.with_crl.lock().expect("verifier cache lock").len()
    }

    /// How many sources have been read so far (for tests of the laziness).
    #[cfg(test)]
    pub fn sources_read(&self) -> usize {
        self.0
            .sources
            .iter()
            .filter(|(_, c)| c.get().is_some())
            .count()
    }
}

/// A tier that a chain led to.
#[derive(Debug, Clone, Copy)]
pub struct TierId(usize);

/// webpki checks the name only once the chain is valid, so a name error means a valid chain.
fn is_name_error(answer: &Result<(), rustls::Error>) -> bool {
    matches!(
        answer,
        Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ))
    )
}

impl Inner {
    fn build(&self, i: usize) -> Result<Built, String> {
        let mut roots = RootCertStore::empty();
        for (source, certs) in &self.sources[..self.tiers[i].sources] {
            let certs = certs.get_or_init(|| source.load());
            let (_, skipped) = roots.add_parsable_certificates(certs.iter().cloned());
            if skipped > 0 {
                tracing::warn!(
                    event = "tls_roots",
                    "root store {source}: {skipped} certificate(s) could not be used"
                );
            }
        }
        let roots = Arc::new(roots);
        let verifier = self
            .verifier(roots.clone(), Vec::new())
            .map_err(|e| format!("no trusted roots: {e}"))?;
        Ok(Built { roots, verifier })
    }

    /// A verifier over `roots` with `[tls].crl_file`'s CRLs and `extra`.
    fn verifier(
        &self,
        roots: Arc<RootCertStore>,
        extra: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<Arc<WebPkiServerVerifier>, rustls::Error> {
        WebPkiServerVerifier::builder_with_provider(roots, self.provider.clone())
            .with_crls(self.cfg.crls.iter().cloned().chain(extra))
            // Only a listed revocation fails; a chain without a CRL is not "unknown".
            .allow_unknown_revocation_status()
            .only_check_end_entity_revocation()
            .build()
            .map_err(|e| rustls::Error::General(format!("{e}")))
    }
}

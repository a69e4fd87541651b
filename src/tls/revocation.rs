//! Revocation as EOP checks it: the CRLs a certificate's distribution points name, fetched
//! over HTTP and shared by every probe of the run until their nextUpdate.
//!
//! A CRL is fetched only for a chain that already leads to a trusted root, so a stranger's
//! certificate cannot choose a URL the probe fetches; only `http://` (CRLs are signed, and
//! the CAs publish them so), without redirects, at most [`MAX_CRL`] bytes and within
//! [`FETCH_TIMEOUT`]. A source that cannot be reached or read is reported, never a failure:
//! the caller makes it a warning.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use tokio::net::TcpStream;
use tokio::sync::OnceCell;
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};

/// The largest CRL read. Public CAs' CRLs are a few kilobytes to a few hundred; a larger one
/// is not worth a probe's memory.
pub const MAX_CRL: usize = 1 << 20;
/// The whole fetch (name lookup, connect, request, body).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a failed fetch is remembered, so that a dead CDP costs one timeout a minute, not
/// one per probe.
const FAILURE_TTL: Duration = Duration::from_secs(60);
/// How long a CRL without a nextUpdate is kept, and the least any CRL is kept (a CRL past
/// its nextUpdate would otherwise be fetched again by every probe).
const DEFAULT_TTL: Duration = Duration::from_secs(3600);
const MIN_TTL: Duration = Duration::from_secs(60);

/// The run's CRL cache: one entry per URL, fetched once however many probes ask at once.
#[derive(Default)]
pub struct CrlCache {
    entries: Mutex<HashMap<String, Arc<Entry>>>,
}

#[derive(Default)]
struct Entry {
    fetched: OnceCell<Fetched>,
}

struct Fetched {
    result: Result<Arc<CertificateRevocationListDer<'static>>, String>,
    until: SystemTime,
}

impl CrlCache {
    /// The CRL at `url`, from the cache while it is current, else fetched. The same `Arc`
    /// while it is cached, so that what is built from it can be cached by it too.
    pub async fn get(
        &self,
        url: &str,
    ) -> Result<Arc<CertificateRevocationListDer<'static>>, String> {
        let entry = {
            let mut entries = self.entries.lock().expect("CRL cache lock");
            let now = SystemTime::now();
            let stale = entries
                .get(url)
                .and_then(|e| e.fetched.get())
                .is_some_and(|f| f.until <= now);
            if stale {
                entries.remove(url);
            }
            entries.entry(url.to_owned()).or_default().clone()
        };
        let fetched = entry
            .fetched
            .get_or_init(|| async {
                let result = match tokio::time::timeout(FETCH_TIMEOUT, fetch(url)).await {
                    Ok(r) => r,
                    Err(_) => Err(format!(
                        "{url}: no complete answer within {}",
                        crate::config::format_duration(FETCH_TIMEOUT)
                    )),
                };
                let until = match &result {
                    Ok(crl) => cache_until(crl),
                    Err(_) => SystemTime::now() + FAILURE_TTL,
                };
                Fetched {
                    result: result.map(Arc::new),
                    until,
                }
            })
            .await;
        fetched.result.clone()
    }

    /// How many URLs have an entry (for tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.lock().expect("CRL cache lock").len()
    }
}

/// Until the CRL's nextUpdate, at least [`MIN_TTL`] from now.
fn cache_until(crl: &CertificateRevocationListDer<'_>) -> SystemTime {
    let now = SystemTime::now();
    let next = x509_parser::parse_x509_crl(crl.as_ref())
        .ok()
        .and_then(|(_, c)| c.next_update())
        .and_then(|t| u64::try_from(t.timestamp()).ok())
        .map(|secs| UNIX_EPOCH + Duration::from_secs(secs));
    match next {
        Some(t) => t.max(now + MIN_TTL),
        None => now + DEFAULT_TTL,
    }
}

/// The URLs of the certificate's CRL distribution points, in order: the http ones to fetch,
/// and the rest (ldap:, https:…), which the probe does not fetch.
pub fn distribution_points(cert: &CertificateDer<'_>) -> (Vec<String>, Vec<String>) {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return (Vec::new(), Vec::new());
    };
    let mut urls = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() {
            for point in points.iter() {
                if let Some(DistributionPointName::FullName(names)) = &point.distribution_point {
                    for name in names {
                        if let GeneralName::URI(uri) = name {
                            urls.push((*uri).to_owned());
                        }
                    }
                }
            }
        }
    }
    urls.into_iter().partition(|u| {
        u.get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
    })
}

/// One GET, no redirects, the body bounded by [`MAX_CRL`]; DER, or PEM as some CAs serve it.
async fn fetch(url: &str) -> Result<CertificateRevocationListDer<'static>, String> {
    let uri: Uri = url.parse().map_err(|e| format!("{url}: not a URL: {e}"))?;
    let host = uri.host().ok_or_else(|| format!("{url}: no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| format!("{url}: cannot resolve {bare}: {e}"))?
        .collect();
    let mut last = format!("{url}: {bare} has no address");
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(t) => {
                tcp = Some(t);
                break;
            }
            Err(e) => last = format!("{url}: cannot connect to {addr}: {e}"),
        }
    }
    let tcp = tcp.ok_or(last)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let conn = tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or(host, |a| a.as_str());
    let request = Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "connector-probe")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("{url}: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if response.status() != StatusCode::OK {
        conn.abort();
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let body = Limited::new(response.into_body(), MAX_CRL)
        .collect()
        .await
        .map_err(|e| format!("{url}: {e} (at most {MAX_CRL} bytes are read)"))?
        .to_bytes();
    conn.abort();
    let der = if body.starts_with(b"-----BEGIN") {
        CertificateRevocationListDer::from_pem_slice(&body)
            .map_err(|e| format!("{url}: not a CRL: {e}"))?
    } else {
        CertificateRevocationListDer::from(body.to_vec())
    };
    x509_parser::parse_x509_crl(der.as_ref()).map_err(|e| format!("{url}: not a CRL: {e}"))?;
    Ok(der)
}

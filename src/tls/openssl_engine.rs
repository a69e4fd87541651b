//! The second engine: OpenSSL 3, for the suites of EOP's list that rustls does not have.
//!
//! EOP offers, for TLS 1.2, ECDHE-RSA with AES-CBC and RSA key exchange with AES-GCM; rustls
//! has neither. A server that agrees on nothing else (older Exchange servers, appliances) is
//! reached by EOP, so the probe must reach it too. This engine offers exactly those six
//! suites and nothing else, TLS 1.2 only: every suite rustls has is rustls's, and a server
//! that agrees on neither list fails both, as it fails EOP.
//!
//! As with rustls, nothing is verified during the handshake: the chain OpenSSL received is
//! judged afterwards by the same webpki path ([`super::roots`]). The connector is built on
//! the first retry, so a run whose servers all speak rustls's suites never touches OpenSSL.

use std::io;
use std::pin::Pin;
use std::sync::OnceLock;

use openssl::error::ErrorStack;
use openssl::ssl::{
    ErrorCode, SslConnector, SslMethod, SslRef, SslSessionCacheMode, SslVerifyMode, SslVersion,
    StatusType,
};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_openssl::SslStream;

use super::stream::HandshakeError;
use crate::verdict::Outcome;

/// The suites of EOP's TLS 1.2 list that rustls lacks, in EOP's order of preference, with
/// their IANA names (OpenSSL's names are its own).
const SUITES: [(&str, &str); 6] = [
    (
        "ECDHE-RSA-AES256-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    ),
    (
        "ECDHE-RSA-AES128-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    ),
    ("ECDHE-RSA-AES256-SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"),
    ("ECDHE-RSA-AES128-SHA", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
    ("AES256-GCM-SHA384", "TLS_RSA_WITH_AES_256_GCM_SHA384"),
    ("AES128-GCM-SHA256", "TLS_RSA_WITH_AES_128_GCM_SHA256"),
];

/// P-256 first, as EOP is seen to use it; then what rustls offers too.
const GROUPS: &str = "P-256:X25519:P-384";

/// The engine, its connector made on first use.
#[derive(Default)]
pub struct OpenSslEngine {
    connector: OnceLock<Result<SslConnector, String>>,
}

impl OpenSslEngine {
    /// The handshake over an established SMTP connection; SNI for a DNS name only.
    pub async fn handshake<S>(
        &self,
        io: S,
        name: &ServerName<'_>,
    ) -> Result<SslStream<S>, HandshakeError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let connector = self
            .connector
            .get_or_init(|| build().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| {
                HandshakeError::new(
                    Outcome::Unexpected,
                    format!("the OpenSSL engine could not be set up: {e}"),
                )
            })?;
        let host = match name {
            ServerName::DnsName(d) => Some(d.as_ref()),
            _ => None,
        };
        let ssl = connector
            .configure()
            .and_then(|c| {
                c.verify_hostname(false)
                    .use_server_name_indication(host.is_some())
                    .into_ssl(host.unwrap_or(""))
            })
            .map_err(setup_error)?;
        // Ask for a stapled OCSP response, as rustls always does.
        let mut ssl = ssl;
        ssl.set_status_type(StatusType::OCSP).map_err(setup_error)?;
        let mut stream = SslStream::new(ssl, io).map_err(setup_error)?;
        Pin::new(&mut stream).connect().await.map_err(classify)?;
        Ok(stream)
    }

    /// Whether the connector has been built.
    #[cfg(test)]
    pub(super) fn built(&self) -> bool {
        self.connector.get().is_some()
    }
}

fn build() -> Result<SslConnector, ErrorStack> {
    let mut b = SslConnector::builder(SslMethod::tls_client())?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    b.set_max_proto_version(Some(SslVersion::TLS1_2))?;
    let list: Vec<&str> = SUITES.iter().map(|(openssl, _)| *openssl).collect();
    b.set_cipher_list(&list.join(":"))?;
    b.set_groups_list(GROUPS)?;
    // Judged afterwards, as rustls's chains are.
    b.set_verify(SslVerifyMode::NONE);
    // Every probe does a full handshake, so the certificate is really presented each time.
    b.set_session_cache_mode(SslSessionCacheMode::OFF);
    Ok(b.build())
}

fn setup_error(e: ErrorStack) -> HandshakeError {
    HandshakeError::new(
        Outcome::Unexpected,
        format!("the OpenSSL engine could not start a handshake: {e}"),
    )
}

/// A handshake error as a row of the table, as [`super::classify`] does for rustls.
fn classify(e: openssl::ssl::Error) -> HandshakeError {
    if let Some(io) = e.io_error() {
        return match io.kind() {
            io::ErrorKind::UnexpectedEof => closed(),
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => HandshakeError::new(
                Outcome::Reset,
                format!("connection reset during the TLS handshake: {io}"),
            ),
            _ => HandshakeError::new(Outcome::Unexpected, format!("TLS handshake: {io}")),
        };
    }
    // OpenSSL 3 reports a peer that closed mid-handshake as an SSL error of its own.
    let eof = e.ssl_error().is_some_and(|stack| {
        stack
            .errors()
            .iter()
            .any(|r| r.reason() == Some("unexpected eof while reading"))
    });
    if eof || (e.code() == ErrorCode::SYSCALL && e.ssl_error().is_none()) {
        return closed();
    }
    let why = e
        .ssl_error()
        .map(|stack| {
            let reasons: Vec<String> = stack
                .errors()
                .iter()
                .map(|r| r.reason().unwrap_or("unknown").to_owned())
                .collect();
            reasons.join("; ")
        })
        .unwrap_or_else(|| e.to_string());
    let detail = format!("TLS handshake failed (OpenSSL): {why}");
    if why.contains("alert handshake failure")
        || why.contains("alert protocol version")
        || why.contains("alert insufficient security")
        || why.contains("unsupported protocol")
        || why.contains("wrong cipher returned")
    {
        HandshakeError::no_common(detail)
    } else {
        HandshakeError::new(Outcome::IllegalMessage, detail)
    }
}

fn closed() -> HandshakeError {
    HandshakeError::new(
        Outcome::Closed,
        "connection closed by the server during the TLS handshake".into(),
    )
}

/// The negotiated version and suite, the suite in IANA form.
pub(super) fn session(ssl: &SslRef) -> (String, String) {
    let cipher = ssl.current_cipher().map_or_else(
        || "unknown".to_owned(),
        |c| {
            let name = c.name();
            SUITES
                .iter()
                .find(|(openssl, _)| *openssl == name)
                .map(|(_, iana)| (*iana).to_owned())
                .or_else(|| c.standard_name().map(str::to_owned))
                .unwrap_or_else(|| name.to_owned())
        },
    );
    (ssl.version_str().to_owned(), cipher)
}

/// The chain as the server sent it (on a client, OpenSSL's peer chain starts with the leaf).
pub(super) fn chain(ssl: &SslRef) -> Vec<CertificateDer<'static>> {
    ssl.peer_cert_chain()
        .map(|stack| {
            stack
                .iter()
                .filter_map(|c| c.to_der().ok())
                .map(CertificateDer::from)
                .collect()
        })
        .unwrap_or_default()
}

/// The OpenSSL names of the engine's suites, for a lab server limited to one of them.
pub fn suites() -> impl Iterator<Item = (&'static str, &'static str)> {
    SUITES.iter().copied()
}

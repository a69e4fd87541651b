//! What both engines produce: a TLS stream the SMTP dialogue goes on over, and a handshake
//! error that says whether the other engine is worth a try.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::verdict::{Outcome, TlsInfo};

/// Which TLS library handshakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// rustls, for every server that agrees on one of the suites EOP and rustls share.
    Rustls,
    /// OpenSSL, offering only the suites of EOP's list that rustls lacks (AES-CBC with
    /// ECDHE-RSA, and RSA key exchange): used only when rustls agreed on nothing.
    OpenSsl,
}

impl Engine {
    /// The name in the JSON's `tls.engine`.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Rustls => "rustls",
            Engine::OpenSsl => "openssl",
        }
    }
}

/// An established TLS session, whichever engine made it.
// The rustls variant holds its whole connection state inline; it is the common one, made
// once per probe and never moved in a loop, so boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum TlsStream<S> {
    Rustls(tokio_rustls::client::TlsStream<S>),
    OpenSsl(tokio_openssl::SslStream<S>),
}

impl<S> TlsStream<S> {
    pub fn engine(&self) -> Engine {
        match self {
            TlsStream::Rustls(_) => Engine::Rustls,
            TlsStream::OpenSsl(_) => Engine::OpenSsl,
        }
    }

    /// The negotiated version, the suite in IANA form, and the engine.
    pub fn session_info(&self) -> TlsInfo {
        let (version, cipher) = match self {
            TlsStream::Rustls(s) => super::rustls_session(s),
            TlsStream::OpenSsl(s) => super::openssl_engine::session(s.ssl()),
        };
        TlsInfo {
            version,
            cipher,
            engine: self.engine().as_str().to_owned(),
        }
    }

    /// The certificates the server presented, leaf first, as it sent them.
    pub fn peer_chain(&self) -> Vec<CertificateDer<'static>> {
        match self {
            TlsStream::Rustls(s) => s
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
                .unwrap_or_default(),
            TlsStream::OpenSsl(s) => super::openssl_engine::chain(s.ssl()),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TlsStream::Rustls(s) => Pin::new(s).poll_read(cx, buf),
            TlsStream::OpenSsl(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TlsStream::Rustls(s) => Pin::new(s).poll_write(cx, buf),
            TlsStream::OpenSsl(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TlsStream::Rustls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            TlsStream::OpenSsl(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            TlsStream::Rustls(s) => s.is_write_vectored(),
            TlsStream::OpenSsl(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TlsStream::Rustls(s) => Pin::new(s).poll_flush(cx),
            TlsStream::OpenSsl(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TlsStream::Rustls(s) => Pin::new(s).poll_shutdown(cx),
            TlsStream::OpenSsl(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A failed handshake: the row of the table it is, and whether the server merely agreed on
/// nothing the engine offered.
#[derive(Debug, Clone)]
pub struct HandshakeError {
    pub outcome: Outcome,
    pub detail: String,
    no_common_algorithm: bool,
}

impl HandshakeError {
    pub(super) fn new(outcome: Outcome, detail: String) -> HandshakeError {
        HandshakeError {
            outcome,
            detail,
            no_common_algorithm: false,
        }
    }

    pub(super) fn no_common(detail: String) -> HandshakeError {
        HandshakeError {
            outcome: Outcome::NoCommonAlgorithm,
            detail,
            no_common_algorithm: true,
        }
    }

    /// True when the server refused every suite or version rustls offered (a
    /// handshake_failure, protocol_version or insufficient_security alert, or a hello naming
    /// a suite rustls does not have): the server may still agree on one of EOP's suites that
    /// only the OpenSSL engine speaks, so the caller tries that engine on a fresh connection.
    pub fn no_common_algorithm(&self) -> bool {
        self.no_common_algorithm
    }
}

impl From<HandshakeError> for (Outcome, String) {
    fn from(e: HandshakeError) -> (Outcome, String) {
        (e.outcome, e.detail)
    }
}

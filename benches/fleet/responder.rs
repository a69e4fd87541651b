//! The fleet: one lightweight SMTP + STARTTLS server on `0.0.0.0:25` inside the benchmark's
//! network namespace, where the loopback interface owns all of `127.0.0.0/8`, so this one
//! process answers for every `127.x.y.z` a connector points at.
//!
//! It speaks just enough SMTP for a full probe: greeting, EHLO (STARTTLS offered), STARTTLS,
//! the TLS handshake, EHLO again, QUIT. It presents one certificate chain (leaf and
//! intermediate from the lab PKI, ECDSA P-256) for `fleet.test`, `*.fleet.test` and
//! `127.0.0.1`; the root goes to `ca.pem` for the clients' trust stores. Addresses in
//! 127.201.0.0/16 flap (see [`FLAP_PERIOD`]). Connections to [`CBC_ONLY_PREFIX`] are answered
//! by OpenSSL offering only ECDHE-RSA-AES256-SHA384 (TLS 1.2) with an RSA leaf of the same
//! PKI: a server only the probe's second engine can reach.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use connector_probe::lab::certs::{LeafSpec, Pki};
use openssl::ssl::{Ssl, SslAcceptor};
use rustls::ServerConfig;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsAcceptor;

/// The second octet of the /16 whose servers speak only a CBC suite.
pub const CBC_ONLY_PREFIX: u8 = 202;

/// The listen backlog: a cycle opens hundreds of connections within milliseconds.
const BACKLOG: u32 = 4096;
/// Longest command line read; every command here is far shorter.
const MAX_LINE: u64 = 1024;
/// A client that says nothing for this long is dropped.
const IDLE: Duration = Duration::from_secs(30);

const EHLO_PLAIN: &[u8] = b"250-fleet.test\r\n250-PIPELINING\r\n250-SIZE 36700160\r\n\
250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250 8BITMIME\r\n";
const EHLO_TLS: &[u8] =
    b"250-fleet.test\r\n250-PIPELINING\r\n250-SIZE 36700160\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n";

/// Generates the PKI, listens, writes `dir/ca.pem` (the readiness signal), and serves until
/// killed.
pub fn run(dir: &Path) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let pki = Pki::new();
        let leaf = pki.leaf(&LeafSpec {
            names: vec![
                "fleet.test".into(),
                "*.fleet.test".into(),
                "127.0.0.1".into(),
            ],
            ..LeafSpec::valid("fleet.test")
        });
        let tls = leaf.server_config();
        let cbc = pki
            .leaf(&LeafSpec {
                rsa: true,
                names: vec!["fleet.test".into(), "*.fleet.test".into()],
                ..LeafSpec::valid("fleet.test")
            })
            .openssl_acceptor("ECDHE-RSA-AES256-SHA384");
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind("0.0.0.0:25".parse().expect("literal address"))?;
        let listener = socket.listen(BACKLOG)?;
        let tmp = dir.join("ca.pem.tmp");
        std::fs::write(&tmp, &pki.root.pem)?;
        std::fs::rename(&tmp, dir.join("ca.pem"))?;
        loop {
            match listener.accept().await {
                Ok((tcp, _)) => {
                    let tls = Acceptor::pick(&tcp, &tls, &cbc);
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(4 * IDLE, session(tcp, tls)).await;
                    });
                }
                // Out of file descriptors, for instance: let some connections finish.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
}

/// Addresses in 127.201.0.0/16 flap: each refuses sessions for five minutes out of every
/// ten, its phase set by its address, so a flapping fleet's changes are spread over time.
pub const FLAP_PERIOD: Duration = Duration::from_secs(600);

fn down_now(addr: Option<std::net::SocketAddr>) -> bool {
    let Some(std::net::SocketAddr::V4(a)) = addr else {
        return false;
    };
    let [_, second, third, fourth] = a.ip().octets();
    if second != 201 {
        return false;
    }
    let n = u64::from(third) * 250 + u64::from(fourth);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let period = FLAP_PERIOD.as_secs();
    (now + n * 37) % period >= period / 2
}

/// Which TLS server a connection gets, by the address it was made to.
enum Acceptor {
    Rustls(Arc<ServerConfig>),
    CbcOnly(Arc<SslAcceptor>),
}

impl Acceptor {
    fn pick(tcp: &TcpStream, tls: &Arc<ServerConfig>, cbc: &Arc<SslAcceptor>) -> Acceptor {
        match tcp.local_addr().map(|a| a.ip()) {
            Ok(std::net::IpAddr::V4(v4)) if v4.octets()[1] == CBC_ONLY_PREFIX => {
                Acceptor::CbcOnly(cbc.clone())
            }
            _ => Acceptor::Rustls(tls.clone()),
        }
    }
}

async fn session(tcp: TcpStream, tls: Acceptor) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    if down_now(tcp.local_addr().ok()) {
        let mut tcp = tcp;
        tcp.write_all(b"554 5.3.2 fleet.test: flapping, down for now\r\n")
            .await?;
        return tcp.shutdown().await;
    }
    let mut plain = BufReader::new(tcp);
    plain.write_all(b"220 fleet.test ESMTP ready\r\n").await?;
    if !dialogue(&mut plain, false).await? {
        return Ok(());
    }
    let tcp = plain.into_inner();
    match tls {
        Acceptor::Rustls(config) => {
            let mut secure = BufReader::new(TlsAcceptor::from(config).accept(tcp).await?);
            dialogue(&mut secure, true).await?;
        }
        Acceptor::CbcOnly(acceptor) => {
            let ssl = Ssl::new(acceptor.context()).map_err(io::Error::other)?;
            let mut stream = tokio_openssl::SslStream::new(ssl, tcp).map_err(io::Error::other)?;
            std::pin::Pin::new(&mut stream)
                .accept()
                .await
                .map_err(io::Error::other)?;
            dialogue(&mut BufReader::new(stream), true).await?;
        }
    }
    Ok(())
}

/// Answers commands until QUIT or EOF (`false`) or an accepted STARTTLS (`true`).
async fn dialogue<S>(s: &mut BufReader<S>, tls: bool) -> io::Result<bool>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut line = Vec::with_capacity(64);
    loop {
        line.clear();
        let mut limited = (&mut *s).take(MAX_LINE);
        match tokio::time::timeout(IDLE, limited.read_until(b'\n', &mut line)).await {
            Ok(Ok(0)) | Err(_) => return Ok(false),
            Ok(r) => r?,
        };
        let verb: Vec<u8> = line
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .map(u8::to_ascii_uppercase)
            .collect();
        let reply: &[u8] = match (verb.as_slice(), tls) {
            (b"EHLO", false) => EHLO_PLAIN,
            (b"EHLO", true) => EHLO_TLS,
            (b"HELO", _) => b"250 fleet.test\r\n",
            (b"STARTTLS", false) => b"220 2.0.0 Ready to start TLS\r\n",
            (b"NOOP" | b"RSET", _) => b"250 2.0.0 OK\r\n",
            (b"QUIT", _) => b"221 2.0.0 Bye\r\n",
            _ => b"502 5.5.2 Command not recognised\r\n",
        };
        s.write_all(reply).await?;
        s.flush().await?;
        match verb.as_slice() {
            b"QUIT" => {
                s.shutdown().await?;
                return Ok(false);
            }
            b"STARTTLS" if !tls => return Ok(true),
            _ => {}
        }
    }
}

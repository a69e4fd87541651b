//! A scripted SMTP server: each connection plays the same list of steps.
//!
//! The script speaks bytes, not SMTP, so it can be as wrong as a hostile or broken server:
//! send half a greeting and reset, answer STARTTLS and then garbage, drip a reply one byte at
//! a time, or never stop sending.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openssl::ssl::{Ssl, SslAcceptor};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// One step of a script.
#[derive(Clone)]
pub enum Step {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Write these bytes one at a time, pausing between them.
    Drip(Vec<u8>, Duration),
    /// Write this chunk again and again until the client goes away.
    Flood(Vec<u8>),
    /// Read one command line; it must start with this verb, or the connection is closed.
    Expect(&'static str),
    /// Read whatever the client sends next (e.g. a ClientHello) and discard it.
    Drain,
    /// Accept a TLS handshake; later steps run over TLS.
    StartTls(Arc<ServerConfig>),
    /// The same with OpenSSL, for the suites rustls has no server side for (CBC, RSA key
    /// exchange) or that the probe must refuse (ChaCha20).
    StartOpenSsl(Arc<SslAcceptor>),
    Sleep(Duration),
    /// Close the connection (FIN).
    Close,
    /// Abort the connection (RST, via SO_LINGER 0).
    Reset,
    /// Say nothing more; keep the connection open until the client closes it.
    Hang,
}

/// A script and shortcuts for the usual conversation.
#[derive(Clone, Default)]
pub struct Script {
    pub steps: Vec<Step>,
}

pub fn send(s: &str) -> Step {
    Step::Send(s.as_bytes().to_vec())
}

impl Script {
    pub fn new(steps: Vec<Step>) -> Script {
        Script { steps }
    }

    /// Greeting and EHLO of a well-behaved server that offers STARTTLS.
    pub fn greeting() -> Vec<Step> {
        vec![
            send("220 lab.example ESMTP ready\r\n"),
            Step::Expect("EHLO"),
            send(
                "250-lab.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250 8BITMIME\r\n",
            ),
        ]
    }

    /// Greeting and EHLO as in [`Script::greeting`], then STARTTLS answered by `answer`: a
    /// reply and what the server does instead of a clean handshake (or a refusal).
    pub fn answering_starttls(answer: impl IntoIterator<Item = Step>) -> Script {
        let mut steps = Self::greeting();
        steps.push(Step::Expect("STARTTLS"));
        steps.extend(answer);
        Script { steps }
    }

    /// STARTTLS accepted and the handshake made with `tls`.
    pub fn starttls(tls: Arc<ServerConfig>) -> Vec<Step> {
        vec![
            Step::Expect("STARTTLS"),
            send("220 2.0.0 Ready to start TLS\r\n"),
            Step::StartTls(tls),
        ]
    }

    /// EHLO after TLS and QUIT.
    pub fn after_tls() -> Vec<Step> {
        vec![
            Step::Expect("EHLO"),
            send("250-lab.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"),
            Step::Expect("QUIT"),
            send("221 2.0.0 Bye\r\n"),
            Step::Close,
        ]
    }

    /// A complete, healthy STARTTLS conversation.
    pub fn healthy(tls: Arc<ServerConfig>) -> Script {
        let mut steps = Self::greeting();
        steps.extend(Self::starttls(tls));
        steps.extend(Self::after_tls());
        Script { steps }
    }

    /// A complete STARTTLS conversation whose handshake OpenSSL answers with `tls`.
    pub fn healthy_openssl(tls: Arc<SslAcceptor>) -> Script {
        let mut steps = Self::greeting();
        steps.extend([
            Step::Expect("STARTTLS"),
            send("220 2.0.0 Ready to start TLS\r\n"),
            Step::StartOpenSsl(tls),
        ]);
        steps.extend(Self::after_tls());
        Script { steps }
    }
}

/// A running scripted server.
pub struct SmtpServer {
    pub addr: SocketAddr,
    /// Every command line the server received, in order, across connections.
    pub received: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl SmtpServer {
    pub async fn start(script: Script) -> io::Result<SmtpServer> {
        Self::start_on("127.0.0.1:0".parse().expect("literal address"), script).await
    }

    /// Starts on a given address, e.g. to bring a stopped server back on its old port.
    pub async fn start_on(addr: SocketAddr, script: Script) -> io::Result<SmtpServer> {
        Self::start_each(addr, vec![script]).await
    }

    /// Plays `scripts[n]` to the n-th connection, and the last script to every later one: a
    /// server that behaves differently on a second attempt.
    pub async fn start_each(addr: SocketAddr, scripts: Vec<Script>) -> io::Result<SmtpServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let task = tokio::spawn(async move {
            let mut n = 0;
            while let Ok((tcp, _)) = listener.accept().await {
                let script = scripts[n.min(scripts.len().saturating_sub(1))].clone();
                n += 1;
                let log = log.clone();
                tokio::spawn(async move {
                    let _ = play(tcp, &script, &log).await;
                });
            }
        });
        Ok(SmtpServer {
            addr,
            received,
            task,
        })
    }

    pub fn received(&self) -> Vec<String> {
        self.received.lock().expect("log lock").clone()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The connection, before or after STARTTLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    OpenSsl(Box<tokio_openssl::SslStream<TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(t) => t,
            Conn::Tls(t) => t.get_ref().0,
            Conn::OpenSsl(t) => t.get_ref(),
        }
    }
}

async fn play(tcp: TcpStream, script: &Script, log: &Mutex<Vec<String>>) -> io::Result<()> {
    let _ = tcp.set_nodelay(true);
    let mut conn = Conn::Plain(tcp);
    for step in &script.steps {
        match step {
            Step::StartTls(config) => {
                let Conn::Plain(tcp) = conn else {
                    return Err(io::Error::other("STARTTLS twice"));
                };
                conn = Conn::Tls(Box::new(
                    TlsAcceptor::from(config.clone()).accept(tcp).await?,
                ));
            }
            Step::StartOpenSsl(acceptor) => {
                let Conn::Plain(tcp) = conn else {
                    return Err(io::Error::other("STARTTLS twice"));
                };
                let ssl = Ssl::new(acceptor.context()).map_err(io::Error::other)?;
                let mut tls = tokio_openssl::SslStream::new(ssl, tcp).map_err(io::Error::other)?;
                std::pin::Pin::new(&mut tls)
                    .accept()
                    .await
                    .map_err(io::Error::other)?;
                conn = Conn::OpenSsl(Box::new(tls));
            }
            Step::Reset => {
                conn.tcp().set_zero_linger()?;
                return Ok(());
            }
            _ => match &mut conn {
                Conn::Plain(s) => run(s, step, log).await?,
                Conn::Tls(s) => run(s.as_mut(), step, log).await?,
                Conn::OpenSsl(s) => run(s.as_mut(), step, log).await?,
            },
        }
    }
    Ok(())
}

async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    step: &Step,
    log: &Mutex<Vec<String>>,
) -> io::Result<()> {
    match step {
        Step::Send(bytes) => s.write_all(bytes).await?,
        Step::Drip(bytes, pause) => {
            for b in bytes {
                s.write_all(&[*b]).await?;
                tokio::time::sleep(*pause).await;
            }
        }
        Step::Flood(chunk) => loop {
            s.write_all(chunk).await?;
        },
        Step::Expect(verb) => {
            let line = read_line(s).await?;
            log.lock().expect("log lock").push(line.clone());
            if !line.to_ascii_uppercase().starts_with(verb) {
                return Err(io::Error::other(format!("expected {verb}, got {line:?}")));
            }
        }
        Step::Drain => {
            let mut buf = [0u8; 4096];
            if s.read(&mut buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Step::Sleep(d) => tokio::time::sleep(*d).await,
        Step::Close => s.shutdown().await?,
        Step::Hang => {
            let mut buf = [0u8; 4096];
            while s.read(&mut buf).await? > 0 {}
        }
        Step::StartTls(_) | Step::StartOpenSsl(_) | Step::Reset => {
            unreachable!("handled by play")
        }
    }
    Ok(())
}

/// One line from the client, without its line end; bounded, since clients can be wrong too.
async fn read_line<S: AsyncRead + Unpin>(s: &mut S) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 4096 {
        if s.read(&mut byte).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&line)
        .trim_end_matches('\r')
        .to_owned())
}

//! A buffered SMTP connection over any `AsyncRead + AsyncWrite`: a TCP socket, a TLS stream,
//! or `tokio::io::duplex` in tests. Memory is bounded by the parser's caps plus one read
//! chunk; time is bounded by the caller's per-stage timeout.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Command, Parsed, Reply, ReplyError, ReplyParser};

const READ_CHUNK: usize = 4096;

/// Why no reply could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer closed the connection; `partial` bytes of an unfinished reply had arrived.
    #[error("connection closed by the server{}", if *.partial > 0 { " in the middle of a reply" } else { "" })]
    Eof { partial: usize },
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Protocol(#[from] ReplyError),
}

pub struct SmtpStream<S> {
    io: S,
    buf: Vec<u8>,
    parser: ReplyParser,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SmtpStream<S> {
    pub fn new(io: S) -> Self {
        Self {
            io,
            buf: Vec::with_capacity(READ_CHUNK),
            parser: ReplyParser::new(),
        }
    }

    /// Reads one complete reply. Not cancel-safe in meaning (a timed-out read leaves a partial
    /// reply behind), which is fine: the probe abandons the connection after any timeout.
    pub async fn read_reply(&mut self) -> Result<Reply, ReadError> {
        loop {
            if let Parsed::Complete { reply, consumed } = self.parser.parse(&self.buf)? {
                self.buf.drain(..consumed);
                return Ok(reply);
            }
            let before = self.buf.len();
            self.buf.reserve(READ_CHUNK);
            let n = (&mut self.io)
                .take(READ_CHUNK as u64)
                .read_buf(&mut self.buf)
                .await?;
            if n == 0 {
                return Err(ReadError::Eof { partial: before });
            }
        }
    }

    pub async fn send(&mut self, command: &Command) -> io::Result<()> {
        self.io.write_all(command.to_string().as_bytes()).await?;
        self.io.flush().await
    }

    /// Bytes received after the last complete reply. After `220 Ready to start TLS` there must
    /// be none: anything here was sent before the handshake (response injection).
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_inner(self) -> S {
        self.io
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_replies_split_across_writes() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut s = SmtpStream::new(client);
        let writer = tokio::spawn(async move {
            for chunk in [
                &b"220 mx ES"[..],
                b"MTP\r\n250-a\r\n",
                b"250 b\r\n",
                b"221 bye\r\nX",
            ] {
                server.write_all(chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
            server
        });
        assert_eq!(s.read_reply().await.unwrap().summary(), "220 mx ESMTP");
        assert_eq!(s.read_reply().await.unwrap().lines, vec!["a", "b"]);
        assert_eq!(s.read_reply().await.unwrap().code, 221);
        let _server = writer.await.unwrap();
        assert_eq!(s.pending(), b"X");
    }

    #[tokio::test]
    async fn eof_mid_reply_and_before_reply() {
        let (client, mut server) = tokio::io::duplex(64);
        server.write_all(b"220 partial").await.unwrap();
        drop(server);
        let mut s = SmtpStream::new(client);
        assert!(matches!(
            s.read_reply().await,
            Err(ReadError::Eof { partial: 11 })
        ));

        let (client, server) = tokio::io::duplex(64);
        drop(server);
        let mut s = SmtpStream::new(client);
        assert!(matches!(
            s.read_reply().await,
            Err(ReadError::Eof { partial: 0 })
        ));
    }

    #[tokio::test]
    async fn endless_line_is_cut_off_with_bounded_buffer() {
        let (client, mut server) = tokio::io::duplex(8192);
        tokio::spawn(async move {
            let junk = [b'a'; 1024];
            server.write_all(b"220 ").await.unwrap();
            while server.write_all(&junk).await.is_ok() {}
        });
        let mut s = SmtpStream::new(client);
        let err = s.read_reply().await.unwrap_err();
        assert!(
            matches!(err, ReadError::Protocol(ReplyError::LineTooLong { .. })),
            "{err:?}"
        );
        assert!(s.buf.capacity() <= 4 * READ_CHUNK + super::super::reply::MAX_LINE);
    }
}

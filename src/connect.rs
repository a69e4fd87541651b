//! The TCP connect, and how its failures read in the table.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use crate::verdict::{Failure, Outcome, Stage};

/// Connects within `timeout`. Timeout, refusal and unreachability are told apart; a reset
/// reported by `connect` itself means the handshake completed and the server dropped the
/// connection at once: 4.4.318 (the connect row of the table), not a refusal.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, Failure> {
    let attempt = async {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }?;
        socket.connect(addr).await
    };
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => Err(Failure::new(
            Stage::Connect,
            Outcome::ConnectTimeout,
            format!(
                "no answer from {addr} within {} (SYN unanswered)",
                crate::config::format_duration(timeout)
            ),
        )),
        Ok(Ok(stream)) => {
            // Commands are single small writes; Nagle would only add latency.
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(e)) => Err(classify(addr, &e)),
    }
}

fn classify(addr: SocketAddr, e: &io::Error) -> Failure {
    let (stage, outcome, what) = match (e.kind(), e.raw_os_error()) {
        (io::ErrorKind::ConnectionRefused, _) => (
            Stage::Connect,
            Outcome::ConnectRefused,
            "connection refused",
        ),
        (_, Some(libc::EHOSTUNREACH)) | (io::ErrorKind::HostUnreachable, _) => {
            (Stage::Connect, Outcome::HostUnreachable, "host unreachable")
        }
        (_, Some(libc::ENETUNREACH)) | (io::ErrorKind::NetworkUnreachable, _) => (
            Stage::Connect,
            Outcome::NetUnreachable,
            "network unreachable",
        ),
        (_, Some(libc::EACCES | libc::EPERM)) => (
            Stage::Connect,
            Outcome::LocalFirewall,
            "blocked by a local firewall rule",
        ),
        (_, Some(libc::ETIMEDOUT)) | (io::ErrorKind::TimedOut, _) => (
            Stage::Connect,
            Outcome::ConnectTimeout,
            "the kernel gave up waiting for an answer",
        ),
        (io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted, _) => (
            Stage::Connect,
            Outcome::Reset,
            "connection reset right after it was established",
        ),
        _ => (Stage::Connect, Outcome::Unexpected, "connect failed"),
    };
    Failure::new(stage, outcome, format!("{what}: {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_table() {
        let addr: SocketAddr = "127.0.0.1:25".parse().unwrap();
        let cases = [
            (libc::ECONNREFUSED, Stage::Connect, Outcome::ConnectRefused),
            (libc::EHOSTUNREACH, Stage::Connect, Outcome::HostUnreachable),
            (libc::ENETUNREACH, Stage::Connect, Outcome::NetUnreachable),
            (libc::EACCES, Stage::Connect, Outcome::LocalFirewall),
            (libc::EPERM, Stage::Connect, Outcome::LocalFirewall),
            (libc::ETIMEDOUT, Stage::Connect, Outcome::ConnectTimeout),
            (libc::ECONNRESET, Stage::Connect, Outcome::Reset),
            (libc::ECONNABORTED, Stage::Connect, Outcome::Reset),
            (libc::EADDRNOTAVAIL, Stage::Connect, Outcome::Unexpected),
        ];
        for (errno, stage, outcome) in cases {
            let f = classify(addr, &io::Error::from_raw_os_error(errno));
            assert_eq!((f.stage, f.outcome), (stage, outcome), "errno {errno}");
        }
    }
}

//! The TCP connect, and how its failures read in the table.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use crate::verdict::{Failure, Outcome, Stage};

/// Connects within `timeout`, from `source` when given (`source_address`). Timeout, refusal
/// and unreachability are told apart; a reset reported by `connect` itself means the
/// handshake completed and the server dropped the connection at once: 4.4.318 (the connect
/// row of the table), not a refusal. A source address that cannot be bound is this host's
/// problem, not the server's: the `other` row, with the reason.
pub async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> Result<TcpStream, Failure> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| classify(addr, &e))?;
    if let Some(ip) = source {
        bind(&socket, ip, addr)?;
    }
    let attempt = socket.connect(addr);
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

/// Binds `socket` to `ip` (any port) before it connects to `addr`.
fn bind(socket: &TcpSocket, ip: IpAddr, addr: SocketAddr) -> Result<(), Failure> {
    let local = |what: String| {
        Failure::new(
            Stage::Connect,
            Outcome::Unexpected,
            format!("cannot connect to {addr} from source_address {ip}: {what}"),
        )
    };
    if ip.is_ipv4() != addr.is_ipv4() {
        return Err(local(
            "the source address and the server are of different address families (set ip_family to match)".into(),
        ));
    }
    socket.bind(SocketAddr::new(ip, 0)).map_err(|e| {
        let hint = if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
            " (is the address configured on this host?)"
        } else {
            ""
        };
        local(format!("bind failed: {e}{hint}"))
    })
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

    #[tokio::test]
    async fn connects_from_the_source_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let source: IpAddr = "127.0.0.2".parse().unwrap();
        let client = connect(addr, Some(source), Duration::from_secs(5));
        let (client, accepted) = tokio::join!(client, listener.accept());
        assert_eq!(client.unwrap().local_addr().unwrap().ip(), source);
        assert_eq!(accepted.unwrap().1.ip(), source);
    }

    #[tokio::test]
    async fn a_source_address_this_host_lacks_is_a_local_error() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        // TEST-NET-1: never configured here, and bind() sends no packet.
        let source: IpAddr = "192.0.2.77".parse().unwrap();
        let f = connect(addr, Some(source), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!((f.stage, f.outcome), (Stage::Connect, Outcome::Unexpected));
        assert!(
            f.detail.contains("source_address 192.0.2.77"),
            "{}",
            f.detail
        );
        assert!(f.detail.contains("configured on this host"), "{}", f.detail);
        let v6 = connect(addr, Some("::1".parse().unwrap()), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(v6.detail.contains("address families"), "{}", v6.detail);
    }
}

//! A loopback address where connects time out for real.
//!
//! Linux drops an incoming SYN when the listener's accept queue is full. A listener with a
//! backlog of 0 that never accepts holds one connection; once that is made, every further SYN
//! is dropped and the client retransmits until its own timeout, exactly as against a firewall
//! that drops. No root, no namespace, no traffic off the machine.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: TcpListener,
    _fillers: Vec<TcpStream>,
}

impl Blackhole {
    pub async fn start() -> io::Result<Blackhole> {
        let socket = TcpSocket::new_v4()?;
        socket.bind("127.0.0.1:0".parse().expect("literal address"))?;
        let listener = socket.listen(0)?;
        let addr = listener.local_addr()?;
        let mut fillers = Vec::new();
        // Fill the queue until a connect no longer completes quickly.
        for _ in 0..8 {
            match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
                Ok(Ok(s)) => fillers.push(s),
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Ok(Blackhole {
                        addr,
                        _listener: listener,
                        _fillers: fillers,
                    });
                }
            }
        }
        Err(io::Error::other(
            "the accept queue never filled; SYNs are not being dropped",
        ))
    }
}

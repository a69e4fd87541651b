//! A small authoritative DNS server on loopback UDP, with faults per name.
//!
//! Names not in the zone are NXDOMAIN; a name with records of other types answers NODATA;
//! a name can instead be set to answer SERVFAIL or REFUSED, or not at all.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// How a name answers.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Answer from the records (NODATA for a type without records).
    Records(HashMap<RecordType, Vec<RData>>),
    ServFail,
    Refused,
    /// Never answer: the resolver times out.
    Silent,
}

#[derive(Default)]
struct Zone {
    names: HashMap<String, Behaviour>,
}

pub struct DnsServer {
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    task: JoinHandle<()>,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsServer {
    pub async fn start() -> io::Result<DnsServer> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let zone = Arc::new(Mutex::new(Zone::default()));
        let task = tokio::spawn(serve(socket, zone.clone()));
        Ok(DnsServer { addr, zone, task })
    }

    fn records(&self, name: &str, rtype: RecordType, data: RData) {
        let mut zone = self.zone.lock().expect("zone lock");
        let entry = zone
            .names
            .entry(key(name))
            .or_insert_with(|| Behaviour::Records(HashMap::new()));
        if !matches!(entry, Behaviour::Records(_)) {
            *entry = Behaviour::Records(HashMap::new());
        }
        if let Behaviour::Records(map) = entry {
            map.entry(rtype).or_default().push(data);
        }
    }

    /// Adds an A or AAAA record.
    pub fn address(&self, name: &str, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => self.records(name, RecordType::A, RData::A(A(v4))),
            IpAddr::V6(v6) => self.records(name, RecordType::AAAA, RData::AAAA(AAAA(v6))),
        }
    }

    /// Adds an MX record; an `exchange` of "." is a null MX.
    pub fn mx(&self, name: &str, preference: u16, exchange: &str) {
        let exchange = if exchange == "." {
            Name::root()
        } else {
            Name::from_ascii(format!("{}.", key(exchange))).expect("valid MX name")
        };
        self.records(
            name,
            RecordType::MX,
            RData::MX(MX::new(preference, exchange)),
        );
    }

    /// Makes a name exist with no address records (NODATA for A and AAAA).
    pub fn exists(&self, name: &str) {
        self.records(
            name,
            RecordType::TXT,
            RData::TXT(hickory_proto::rr::rdata::TXT::new(vec!["lab".into()])),
        );
    }

    pub fn behave(&self, name: &str, behaviour: Behaviour) {
        self.zone
            .lock()
            .expect("zone lock")
            .names
            .insert(key(name), behaviour);
    }

    pub fn remove(&self, name: &str) {
        self.zone
            .lock()
            .expect("zone lock")
            .names
            .remove(&key(name));
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(socket: UdpSocket, zone: Arc<Mutex<Zone>>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if let Some(reply) = answer(&query, &zone)
            && let Ok(bytes) = reply.to_vec()
        {
            let _ = socket.send_to(&bytes, peer).await;
        }
    }
}

fn answer(query: &Message, zone: &Mutex<Zone>) -> Option<Message> {
    if query.metadata.message_type != MessageType::Query {
        return None;
    }
    let q = query.queries.first()?.clone();
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_query(q.clone());
    let zone = zone.lock().ok()?;
    match zone.names.get(&key(&q.name().to_ascii())) {
        None => reply.metadata.response_code = ResponseCode::NXDomain,
        Some(Behaviour::Silent) => return None,
        Some(Behaviour::ServFail) => reply.metadata.response_code = ResponseCode::ServFail,
        Some(Behaviour::Refused) => reply.metadata.response_code = ResponseCode::Refused,
        Some(Behaviour::Records(map)) => {
            for data in map.get(&q.query_type()).into_iter().flatten() {
                reply.add_answer(Record::from_rdata(q.name().clone(), 60, data.clone()));
            }
        }
    }
    Some(reply)
}

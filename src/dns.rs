//! Resolution through hickory-resolver. This is the only module that reads hickory's errors,
//! and only through its predicates and public fields, turning them into [`Outcome`]s.
//!
//! Decisions: the hosts file is never consulted (EOP resolves through public DNS, and a
//! hosts-file entry on the probe host would hide a 4.4.312); names are queried as FQDNs so
//! no search domain is appended; one resolver (and its cache) is shared by every probe of a
//! run or daemon cycle.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};

use crate::config::{DnsConfig, IpFamily};
use crate::verdict::Outcome;

/// Why a name did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsFailure {
    pub outcome: Outcome,
    pub detail: String,
}

/// An MX host, by preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    pub preference: u16,
    pub name: String,
}

/// What the MX lookup of a domain said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxAnswer {
    /// MX records, sorted by preference (stable for equal preferences).
    Hosts(Vec<MxHost>),
    /// No MX records: the domain itself is the mail host (RFC 5321 §5.1).
    Implicit,
}

pub struct Resolver {
    inner: Result<TokioResolver, String>,
    /// The nameservers asked, for messages ("127.0.0.53:53").
    servers: String,
}

impl Resolver {
    /// A resolver for `[dns]`: the configured nameservers, or the system's `resolv.conf`.
    /// A resolver that cannot be built is not an error here: every lookup then fails with
    /// "no resolver reachable", which is what EOP would see from a host without DNS.
    pub fn new(config: &DnsConfig, timeout: Duration) -> Resolver {
        let resolver_config = if config.nameservers.is_empty() {
            hickory_resolver::system_conf::read_system_conf()
                .map(|(c, _)| c)
                .map_err(|e| format!("cannot read /etc/resolv.conf: {e}"))
        } else {
            Ok(ResolverConfig::from_name_servers(
                config.nameservers.iter().map(name_server).collect(),
            ))
        };
        let servers = match &resolver_config {
            Ok(c) => describe(c.name_servers()),
            Err(_) => "no nameserver".to_owned(),
        };
        let inner = resolver_config.and_then(|c| {
            let mut b = TokioResolver::builder_with_config(c, TokioRuntimeProvider::default());
            let opts: &mut ResolverOpts = b.options_mut();
            opts.timeout = timeout;
            opts.attempts = 1;
            opts.use_hosts_file = ResolveHosts::Never;
            b.build()
                .map_err(|e| format!("cannot build the resolver: {e}"))
        });
        Resolver { inner, servers }
    }

    /// The nameservers this resolver asks, for messages.
    pub fn servers(&self) -> &str {
        &self.servers
    }

    fn resolver(&self) -> Result<&TokioResolver, DnsFailure> {
        self.inner.as_ref().map_err(|e| DnsFailure {
            outcome: Outcome::NoResolver,
            detail: e.clone(),
        })
    }

    /// The addresses of `host` in the wanted families, IPv6 first (EOP prefers IPv6). A and
    /// AAAA are asked together and one answering is enough.
    pub async fn addresses(&self, host: &str, family: IpFamily) -> Result<Vec<IpAddr>, DnsFailure> {
        let resolver = self.resolver()?;
        let name = fqdn(host)?;
        let (a, aaaa) = tokio::join!(
            lookup_family(resolver, &name, RecordType::A, family.wants_v4()),
            lookup_family(resolver, &name, RecordType::AAAA, family.wants_v6()),
        );
        let mut addresses = Vec::new();
        let mut failures = Vec::new();
        for (rtype, result) in [("AAAA", aaaa), ("A", a)] {
            match result {
                None => {}
                Some(Ok(list)) if list.is_empty() => failures.push((rtype, no_data())),
                Some(Ok(list)) => addresses.extend(list),
                Some(Err(f)) => failures.push((rtype, f)),
            }
        }
        if !addresses.is_empty() {
            return Ok(addresses);
        }
        Err(combine(host, &failures))
    }

    /// The MX hosts of `domain`. A null MX (`0 .`, RFC 7505) is a failure: the domain
    /// accepts no mail.
    pub async fn mx(&self, domain: &str) -> Result<MxAnswer, DnsFailure> {
        let resolver = self.resolver()?;
        let lookup = match resolver.mx_lookup(fqdn(domain)?).await {
            Ok(l) => l,
            Err(e) => {
                let f = classify(&e);
                if f.outcome == Outcome::NoData {
                    return Ok(MxAnswer::Implicit);
                }
                return Err(DnsFailure {
                    outcome: f.outcome,
                    detail: format!("MX lookup for {domain}: {}", f.detail),
                });
            }
        };
        let mut hosts: Vec<MxHost> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) => Some(MxHost {
                    preference: mx.preference,
                    name: mx
                        .exchange
                        .to_ascii()
                        .trim_end_matches('.')
                        .to_ascii_lowercase(),
                }),
                _ => None,
            })
            .collect();
        if hosts.is_empty() {
            return Ok(MxAnswer::Implicit);
        }
        if hosts.iter().any(|h| h.name.is_empty()) {
            return Err(DnsFailure {
                outcome: Outcome::NullMx,
                detail: format!("{domain} publishes a null MX (\"0 .\"): it accepts no mail"),
            });
        }
        hosts.sort_by_key(|h| h.preference);
        Ok(MxAnswer::Hosts(hosts))
    }
}

/// One family's addresses (`None` when the family is not wanted). An empty answer counts as
/// NODATA, as a CNAME chain ending nowhere would.
async fn lookup_family(
    resolver: &TokioResolver,
    name: &Name,
    rtype: RecordType,
    wanted: bool,
) -> Option<Result<Vec<IpAddr>, DnsFailure>> {
    if !wanted {
        return None;
    }
    Some(match resolver.lookup(name.clone(), rtype).await {
        Ok(l) => Ok(l
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect()),
        Err(e) => Err(classify(&e)),
    })
}

/// "127.0.0.53:53" or "192.0.2.53:53, [2001:db8::53]:53", without the UDP/TCP duplicates.
fn describe(servers: &[NameServerConfig]) -> String {
    let addrs: std::collections::BTreeSet<String> = servers
        .iter()
        .flat_map(|ns| {
            ns.connections
                .iter()
                .map(move |c| SocketAddr::new(ns.ip, c.port).to_string())
        })
        .collect();
    if addrs.is_empty() {
        return "no nameserver".to_owned();
    }
    addrs.into_iter().collect::<Vec<_>>().join(", ")
}

fn name_server(addr: &SocketAddr) -> NameServerConfig {
    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
    for c in &mut ns.connections {
        c.port = addr.port();
    }
    ns
}

fn fqdn(host: &str) -> Result<Name, DnsFailure> {
    Name::from_ascii(format!("{}.", host.trim_end_matches('.'))).map_err(|e| DnsFailure {
        outcome: Outcome::DnsOther,
        detail: format!("{host:?} is not a DNS name: {e}"),
    })
}

fn no_data() -> DnsFailure {
    DnsFailure {
        outcome: Outcome::NoData,
        detail: "no records (NODATA)".into(),
    }
}

fn rcode_failure(rc: ResponseCode) -> DnsFailure {
    match rc {
        ResponseCode::NXDomain => DnsFailure {
            outcome: Outcome::NxDomain,
            detail: "the name does not exist (NXDOMAIN)".into(),
        },
        ResponseCode::NoError => no_data(),
        ResponseCode::ServFail => DnsFailure {
            outcome: Outcome::ServFail,
            detail: "the resolver answered SERVFAIL".into(),
        },
        ResponseCode::Refused => DnsFailure {
            outcome: Outcome::DnsRefused,
            detail: "the resolver answered REFUSED".into(),
        },
        other => DnsFailure {
            outcome: Outcome::DnsOther,
            detail: format!("the resolver answered {other}"),
        },
    }
}

/// hickory's error, as a row of the table.
fn classify(e: &NetError) -> DnsFailure {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(NoRecords { response_code, .. })) => {
            rcode_failure(*response_code)
        }
        NetError::Dns(DnsError::ResponseCode(rc)) => rcode_failure(*rc),
        NetError::Timeout => DnsFailure {
            outcome: Outcome::DnsTimeout,
            detail: "the resolver did not answer in time".into(),
        },
        NetError::Io(io) => DnsFailure {
            outcome: Outcome::NoResolver,
            detail: format!("no resolver reachable: {io}"),
        },
        NetError::NoConnections => DnsFailure {
            outcome: Outcome::NoResolver,
            detail: "no resolver reachable".into(),
        },
        other => DnsFailure {
            outcome: Outcome::DnsOther,
            detail: other.to_string(),
        },
    }
}

/// One failure for the host from the A and AAAA failures: the most telling outcome (a
/// definite NXDOMAIN over a server failure over a timeout over NODATA), with both details.
fn combine(host: &str, failures: &[(&str, DnsFailure)]) -> DnsFailure {
    let rank = |o: Outcome| match o {
        Outcome::NxDomain => 0,
        Outcome::ServFail => 1,
        Outcome::DnsRefused => 2,
        Outcome::DnsTimeout => 3,
        Outcome::NoResolver => 4,
        Outcome::DnsOther => 5,
        _ => 6,
    };
    let outcome = failures
        .iter()
        .map(|(_, f)| f.outcome)
        .min_by_key(|o| rank(*o))
        .unwrap_or(Outcome::NoData);
    let parts: Vec<String> = failures
        .iter()
        .map(|(t, f)| format!("{t}: {}", f.detail))
        .collect();
    DnsFailure {
        outcome,
        detail: format!("{host}: {}", parts.join("; ")),
    }
}

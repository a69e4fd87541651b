//! One `SmartHosts` entry as Exchange writes it, turned into the smart hosts of the
//! configuration: a name, an address (`[192.0.2.10]` as well), or a range of addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::{Host, SmartHost};

/// The most addresses one range may expand to. A connector is a handful of mail servers;
/// a larger range is more likely an allow-list pasted in the wrong place than servers to probe.
const RANGE_CAP: u128 = 256;

/// What a `SmartHosts` entry stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    One(SmartHost),
    /// A CIDR block or a from-to range, expanded; `what` describes it for the warning.
    Range {
        hosts: Vec<SmartHost>,
        what: String,
    },
}

pub fn parse(entry: &str) -> Result<Parsed, String> {
    if is_type_name(entry) {
        return Err(format!(
            "{entry:?} is a .NET type name, not a host: export again with `ConvertTo-Json -Depth 5`"
        ));
    }
    let text = unbracket(entry.trim());
    if let Some(range) = range(text) {
        let (addresses, what) = range.map_err(|m| format!("{entry:?}: {m}"))?;
        let hosts = addresses
            .into_iter()
            .map(|ip| SmartHost {
                host: Host::Ip(ip),
                port: None,
            })
            .collect();
        return Ok(Parsed::Range { hosts, what });
    }
    SmartHost::parse(text).map(Parsed::One).map_err(|m| {
        if m.contains(text) {
            m
        } else {
            format!("{entry:?}: {m}")
        }
    })
}

/// What a value becomes when `ConvertTo-Json` runs out of depth: `System.Object[]`,
/// `Microsoft.Exchange.Data.SmartHost`.
fn is_type_name(entry: &str) -> bool {
    ["System.", "Microsoft.", "Deserialized."]
        .iter()
        .any(|prefix| entry.starts_with(prefix))
}

/// Exchange writes an IPv4 smart host as `[192.0.2.10]`; the configuration takes brackets
/// only around IPv6.
fn unbracket(text: &str) -> &str {
    match text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        Some(inner) if !inner.contains(':') => inner,
        _ => text,
    }
}

/// The addresses of `192.0.2.0/29` or `192.0.2.1-192.0.2.5`, with a description; `None` when
/// `text` is not a range.
fn range(text: &str) -> Option<Result<(Vec<IpAddr>, String), String>> {
    if let Some((addr, prefix)) = text.split_once('/') {
        return Some(cidr(addr, prefix));
    }
    let (from, to) = text.split_once('-')?;
    let (from, to) = (from.trim().parse().ok()?, to.trim().parse().ok()?);
    Some(from_to(from, to))
}

fn cidr(addr: &str, prefix: &str) -> Result<(Vec<IpAddr>, String), String> {
    let addr: IpAddr = addr
        .trim()
        .parse()
        .map_err(|_| format!("{addr:?} is not an IP address"))?;
    let width = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u32 = match prefix.trim().parse() {
        Ok(p) if p <= width => p,
        _ => return Err(format!("/{prefix} is not a prefix length (0-{width})")),
    };
    let host_bits = width - prefix;
    if host_bits >= 64 {
        return Err(too_many(None));
    }
    let size = 1u128 << host_bits;
    let network = number(addr) & !(size - 1);
    // An IPv4 block of four or more addresses has a network and a broadcast address, and
    // neither is a mail server. /31 and /32 (RFC 3021) and IPv6 have no such addresses.
    let (first, last, note) = if addr.is_ipv4() && host_bits >= 2 {
        (network + 1, network + size - 2, "host addresses")
    } else {
        (network, network + size - 1, "addresses")
    };
    let count = last - first + 1;
    if count > RANGE_CAP {
        return Err(too_many(Some(count)));
    }
    let addresses = span(addr, first, last);
    let what = describe(&addresses, note);
    Ok((addresses, what))
}

fn from_to(from: IpAddr, to: IpAddr) -> Result<(Vec<IpAddr>, String), String> {
    if from.is_ipv4() != to.is_ipv4() {
        return Err("the range mixes IPv4 and IPv6".into());
    }
    let (first, last) = (number(from), number(to));
    if first > last {
        return Err(format!("the range runs backwards ({from} is after {to})"));
    }
    if last - first + 1 > RANGE_CAP {
        return Err(too_many(Some(last - first + 1)));
    }
    let addresses = span(from, first, last);
    let what = describe(&addresses, "addresses");
    Ok((addresses, what))
}

fn too_many(count: Option<u128>) -> String {
    let count = count.map_or_else(|| "far too many".to_owned(), |n| n.to_string());
    format!(
        "the range holds {count} addresses, more than the {RANGE_CAP} an import expands; list the mail servers themselves"
    )
}

fn number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The addresses from `first` to `last`, of `like`'s family; the callers bound the count.
fn span(like: IpAddr, first: u128, last: u128) -> Vec<IpAddr> {
    (first..=last)
        .map(|n| match like {
            // `n` stays within the IPv4 block the range was computed from.
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
        })
        .collect()
}

fn describe(addresses: &[IpAddr], what: &str) -> String {
    match (addresses.first(), addresses.last()) {
        (Some(first), Some(last)) if addresses.len() > 1 => {
            format!("its {} {what}, {first} to {last}", addresses.len())
        }
        (Some(only), _) => format!("the one address {only}"),
        _ => "no address".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entry: &str) -> Vec<String> {
        match parse(entry).unwrap_or_else(|e| panic!("{entry}: {e}")) {
            Parsed::One(h) => vec![h.to_string()],
            Parsed::Range { hosts, .. } => hosts.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn names_and_addresses() {
        assert_eq!(hosts("Mail.Contoso.com"), ["mail.contoso.com"]);
        assert_eq!(hosts("192.0.2.10"), ["192.0.2.10"]);
        assert_eq!(hosts("[192.0.2.10]"), ["192.0.2.10"]);
        assert_eq!(hosts("[2001:db8::1]"), ["[2001:db8::1]"]);
        assert_eq!(hosts("2001:db8::1"), ["[2001:db8::1]"]);
        assert_eq!(hosts("mail-gw.contoso.com"), ["mail-gw.contoso.com"]);
    }

    #[test]
    fn cidr_blocks_expand_to_their_hosts() {
        assert_eq!(hosts("192.0.2.0/30"), ["192.0.2.1", "192.0.2.2"]);
        // Exchange accepts a block written with host bits set.
        assert_eq!(hosts("192.0.2.5/30"), ["192.0.2.5", "192.0.2.6"]);
        assert_eq!(hosts("192.0.2.9/31"), ["192.0.2.8", "192.0.2.9"]);
        assert_eq!(hosts("192.0.2.9/32"), ["192.0.2.9"]);
        assert_eq!(hosts("[192.0.2.0/30]"), ["192.0.2.1", "192.0.2.2"]);
        assert_eq!(hosts("192.0.2.0/24").len(), 254);
        assert_eq!(
            hosts("2001:db8::/126"),
            [
                "[2001:db8::]",
                "[2001:db8::1]",
                "[2001:db8::2]",
                "[2001:db8::3]"
            ]
        );
        match parse("192.0.2.0/29").unwrap() {
            Parsed::Range { what, .. } => {
                assert_eq!(what, "its 6 host addresses, 192.0.2.1 to 192.0.2.6")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn from_to_ranges() {
        assert_eq!(
            hosts("192.0.2.1-192.0.2.3"),
            ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
        );
        assert_eq!(hosts("192.0.2.1 - 192.0.2.1"), ["192.0.2.1"]);
    }

    #[test]
    fn unusable_entries() {
        for bad in [
            "192.0.2.0/23",
            "10.0.0.0/8",
            "2001:db8::/64",
            "::/0",
            "192.0.2.0/33",
            "192.0.2.0/x",
            "mail.contoso.com/24",
            "192.0.2.9-192.0.2.1",
            "192.0.2.1-2001:db8::1",
            "192.0.1.0-192.0.3.0",
            "System.Object[]",
            "Microsoft.Exchange.Data.SmartHost",
            "mail contoso",
            "300.1.1.1",
        ] {
            assert!(parse(bad).is_err(), "{bad} should be rejected");
        }
        let err = parse("192.0.2.0/23").unwrap_err();
        assert!(err.contains("510 addresses"), "{err}");
    }
}

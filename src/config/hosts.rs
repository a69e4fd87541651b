//! Smart host and TLS domain values: parsed once, at load, into types the pipeline trusts.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// A smart host's address part.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name, lower-cased, without a trailing dot.
    Name(String),
    /// An IP literal: DNS is skipped and no SNI is sent.
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            Host::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
        }
    }
}

/// One entry of `smart_hosts`: a host and, for tests and odd setups, a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SmartHost {
    pub host: Host,
    pub port: Option<u16>,
}

impl fmt::Display for SmartHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

impl SmartHost {
    /// Parses `mail.contoso.com`, `192.0.2.10`, `[2001:db8::1]`, `2001:db8::1`, and any of
    /// them with `:port` (IPv6 only in brackets).
    pub fn parse(text: &str) -> Result<SmartHost, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("a smart host must not be empty".into());
        }
        if let Ok(v6) = text.parse::<Ipv6Addr>() {
            return Ok(SmartHost {
                host: Host::Ip(IpAddr::V6(v6)),
                port: None,
            });
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (inside, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("{text:?}: missing ']' after the IPv6 address"))?;
            let addr: Ipv6Addr = inside
                .parse()
                .map_err(|_| format!("{text:?}: {inside:?} is not an IPv6 address"))?;
            let port = match after {
                "" => None,
                p => Some(parse_port(p.strip_prefix(':').ok_or_else(|| {
                    format!("{text:?}: expected ':port' after ']'")
                })?)?),
            };
            (Host::Ip(IpAddr::V6(addr)), port)
        } else {
            let (h, port) = match text.rsplit_once(':') {
                Some((h, p)) => (h, Some(parse_port(p)?)),
                None => (text, None),
            };
            let host = match h.parse::<IpAddr>() {
                Ok(ip) => Host::Ip(ip),
                Err(_) if looks_like_ipv4(h) => {
                    return Err(format!("{h:?} is not a valid IPv4 address"));
                }
                Err(_) => Host::Name(parse_dns_name(h)?),
            };
            (host, port)
        };
        Ok(SmartHost { host, port })
    }
}

fn looks_like_ipv4(h: &str) -> bool {
    h.split('.')
        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{p:?} is not a port (1-65535)")),
        Ok(n) => Ok(n),
    }
}

/// Checks a DNS name (RFC 1123 labels, underscores tolerated) and normalises it.
pub fn parse_dns_name(name: &str) -> Result<String, String> {
    let lower = name.trim_end_matches('.').to_ascii_lowercase();
    if lower.is_empty() {
        return Err(format!("{name:?} is not a host name"));
    }
    if lower.len() > 253 {
        return Err(format!("{name:?} is longer than 253 characters"));
    }
    for label in lower.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "{name:?} is not a valid host name (label {label:?}: letters, digits and '-', 1-63 characters)"
            ));
        }
    }
    Ok(lower)
}

/// `tls_domain`: the name a `domain-validation` connector expects in the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsDomain {
    /// `mail.contoso.com`
    Exact(String),
    /// `*.contoso.com`: any name under `contoso.com`, at any depth (Exchange's
    /// SmtpDomainWithSubdomains); stored without the `*.`.
    Subdomains(String),
}

impl TlsDomain {
    pub fn parse(text: &str) -> Result<TlsDomain, String> {
        match text.strip_prefix("*.") {
            Some(rest) => {
                if rest.contains('*') {
                    return Err(format!("{text:?}: only a leading '*.' wildcard is allowed"));
                }
                let suffix = parse_dns_name(rest)?;
                if !suffix.contains('.') {
                    return Err(format!(
                        "{text:?}: a wildcard must stand under a domain with at least two labels"
                    ));
                }
                Ok(TlsDomain::Subdomains(suffix))
            }
            None if text.contains('*') => Err(format!(
                "{text:?}: a wildcard is allowed only as the whole first label ('*.contoso.com')"
            )),
            None => Ok(TlsDomain::Exact(parse_dns_name(text)?)),
        }
    }
}

impl fmt::Display for TlsDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsDomain::Exact(n) => f.write_str(n),
            TlsDomain::Subdomains(s) => write!(f, "*.{s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Input, and the display and port it must parse to (`None`: rejected).
    type Case<'a> = (&'a str, Option<(&'a str, Option<u16>)>);

    #[test]
    fn smart_host_forms() {
        let cases: &[Case] = &[
            ("mail.contoso.com", Some(("mail.contoso.com", None))),
            ("Mail.Contoso.COM.", Some(("mail.contoso.com", None))),
            (
                "mail.contoso.com:2525",
                Some(("mail.contoso.com:2525", Some(2525))),
            ),
            ("192.0.2.10", Some(("192.0.2.10", None))),
            ("127.0.0.1:25", Some(("127.0.0.1:25", Some(25)))),
            ("[2001:db8::1]", Some(("[2001:db8::1]", None))),
            ("[2001:db8::1]:587", Some(("[2001:db8::1]:587", Some(587)))),
            ("2001:db8::1", Some(("[2001:db8::1]", None))),
            ("", None),
            ("mail.contoso.com:0", None),
            ("mail.contoso.com:99999", None),
            ("mail contoso.com", None),
            ("-bad.contoso.com", None),
            ("300.1.1.1", None),
            ("[2001:db8::1", None),
            ("[nope]:25", None),
            ("a..b", None),
        ];
        for (text, want) in cases {
            let got = SmartHost::parse(text);
            match want {
                Some((display, port)) => {
                    let h = got.unwrap_or_else(|e| panic!("{text:?}: {e}"));
                    assert_eq!(h.to_string(), *display, "{text:?}");
                    assert_eq!(h.port, *port, "{text:?}");
                }
                None => assert!(got.is_err(), "{text:?} should be rejected, got {got:?}"),
            }
        }
    }

    #[test]
    fn tls_domain_forms() {
        assert_eq!(
            TlsDomain::parse("Mail.Contoso.com").unwrap(),
            TlsDomain::Exact("mail.contoso.com".into())
        );
        assert_eq!(
            TlsDomain::parse("*.contoso.com").unwrap(),
            TlsDomain::Subdomains("contoso.com".into())
        );
        for bad in [
            "*.com",
            "mail.*.com",
            "*",
            "m*.contoso.com",
            "",
            "*.*.contoso.com",
        ] {
            assert!(TlsDomain::parse(bad).is_err(), "{bad:?}");
        }
    }
}

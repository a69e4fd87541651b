//! The server certificate: its details (x509-parser), and how the judgement of rustls/webpki
//! and the `tls_domain` rules of the spec read in the table.
//!
//! Details are extracted from the presented chain whatever the verdict, so an admin sees
//! *which* certificate failed. The chain itself (trust, validity, signatures, key usage,
//! revocation against configured CRLs) is judged by rustls's webpki verifier in [`crate::tls`];
//! this module maps its error to an outcome and checks the name against `tls_domain`.

use std::net::IpAddr;
use std::time::Duration;

use rustls::{CertificateError, Error as TlsError};
use rustls_pki_types::CertificateDer;
use serde::Serialize;
use sha1::{Digest, Sha1};
use sha2::Sha256;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::TlsDomain;

/// What is wrong with a presented certificate, by the status names of EOP's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Problem {
    Expired,
    NotYetValid,
    Untrusted,
    Invalid,
    Revoked,
    NameMismatch,
}

impl Problem {
    /// The status EOP's Message starts with.
    pub fn eop_status(self) -> &'static str {
        match self {
            Problem::Expired | Problem::NotYetValid => "CertificateExpired",
            Problem::Untrusted => "UntrustedRoot",
            Problem::Invalid => "CertificateInvalid",
            Problem::Revoked => "CertificateRevoked",
            Problem::NameMismatch => "SubjectMismatch",
        }
    }
}

/// The leaf certificate as `probe --json` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CertificateInfo {
    pub subject: String,
    /// The subject as Windows prints it, as EOP's Message quotes it: `CN=…, O=…, C=…`.
    #[serde(skip)]
    pub windows_subject: String,
    /// DNS names and IP addresses of the subjectAltName extension.
    pub names: Vec<String>,
    pub issuer: String,
    pub not_before: String,
    pub not_after: String,
    /// Whole days from now to `not_after`; negative once expired.
    pub days_left: i64,
    /// SHA-1 of the DER, upper-case hex without separators, as EOP's NDRs print it.
    pub sha1_thumbprint: String,
    /// SHA-256 of the DER, upper-case hex with colons, as `openssl x509 -fingerprint` prints it.
    pub sha256_fingerprint: String,
    /// How many certificates the server presented.
    pub chain_length: usize,
    #[serde(skip)]
    pub common_names: Vec<String>,
    #[serde(skip)]
    pub not_after_unix: i64,
    /// The earliest `not_after` of every certificate presented (blackbox_exporter's
    /// `probe_ssl_earliest_cert_expiry`): an intermediate can expire before the leaf.
    #[serde(skip)]
    pub earliest_expiry_unix: i64,
    /// Issuer and subject are the same name: a self-signed certificate, whatever its
    /// extensions say.
    #[serde(skip)]
    pub self_issued: bool,
}

impl CertificateInfo {
    /// Reads the leaf of `chain`. `None` if there is no certificate or it does not parse.
    pub fn from_chain(
        chain: &[CertificateDer<'_>],
        now: OffsetDateTime,
    ) -> Option<CertificateInfo> {
        let der = chain.first()?;
        let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => names.push(d.to_string()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            names.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        let common_names = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
            .collect();
        let validity = cert.validity();
        let not_after = validity.not_after.to_datetime();
        Some(CertificateInfo {
            subject: cert.subject().to_string(),
            windows_subject: windows_dn(cert.subject()),
            names,
            issuer: cert.issuer().to_string(),
            not_before: rfc3339(validity.not_before.to_datetime()),
            not_after: rfc3339(not_after),
            days_left: (not_after - now).whole_days(),
            sha1_thumbprint: hex(&Sha1::digest(der.as_ref()), ""),
            sha256_fingerprint: hex(&Sha256::digest(der.as_ref()), ":"),
            chain_length: chain.len(),
            common_names,
            self_issued: cert.subject().as_raw() == cert.issuer().as_raw(),
            not_after_unix: not_after.unix_timestamp(),
            earliest_expiry_unix: chain
                .iter()
                .filter_map(|c| X509Certificate::from_der(c.as_ref()).ok())
                .map(|(_, c)| c.validity().not_after.timestamp())
                .min()
                .unwrap_or(not_after.unix_timestamp()),
        })
    }

    /// The subject as EOP's SubjectMismatch message shows it: the common name, else the
    /// first alternative name, else the whole subject.
    pub fn presented_subject(&self) -> String {
        self.common_names
            .first()
            .or(self.names.first())
            .cloned()
            .unwrap_or_else(|| self.subject.clone())
    }

    /// The names `tls_domain` is checked against: the subjectAltName DNS names and the
    /// subject common names. Exchange matches either, so the probe does too.
    pub fn candidate_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for n in self.names.iter().chain(&self.common_names) {
            // The CN usually repeats a subjectAltName; list each name once.
            if !names.iter().any(|m| m.eq_ignore_ascii_case(n)) {
                names.push(n);
            }
        }
        names
    }

    /// The expiry warning, if `not_after` is within `window` of `now`.
    pub fn expiring_within(&self, window: Duration, now: OffsetDateTime) -> Option<String> {
        let left = self.not_after_unix - now.unix_timestamp();
        (left >= 0 && (left as u64) < window.as_secs()).then(|| {
            format!(
                "certificate expires in {} day(s), on {}; from then on Microsoft 365 will fail validation (4.7.320)",
                self.days_left, self.not_after
            )
        })
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn hex(bytes: &[u8], sep: &str) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(sep)
}

/// How a rustls/webpki chain error reads: `None` for a name error (the chain was fine: webpki
/// checks the name last, and the name is judged by [`matches_tls_domain`]). A self-issued leaf
/// that is not trusted is untrusted (EOP's `UntrustedRoot`), whatever webpki objected to first:
/// `openssl req -x509` marks its certificate as a CA, which webpki rejects as a CA used as an
/// end entity before it looks for a trust anchor.
pub fn chain_problem(e: &TlsError, self_issued: bool) -> Option<(Problem, String)> {
    let TlsError::InvalidCertificate(ce) = e else {
        return Some((Problem::Invalid, format!("certificate rejected: {e}")));
    };
    #[allow(deprecated)] // the context-free variants are still produced by some paths
    let problem = match ce {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            return None;
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => Problem::Expired,
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            Problem::NotYetValid
        }
        CertificateError::UnknownIssuer => Problem::Untrusted,
        CertificateError::Revoked => Problem::Revoked,
        _ if self_issued => Problem::Untrusted,
        _ => Problem::Invalid,
    };
    Some((problem, format!("{} ({e})", describe(problem))))
}

/// A problem in words, for people.
pub fn describe(problem: Problem) -> &'static str {
    match problem {
        Problem::Expired => "certificate has expired",
        Problem::NotYetValid => "certificate is not valid yet",
        Problem::Untrusted => {
            "certificate chain does not lead to a trusted root (unknown issuer, self-signed, or a missing intermediate)"
        }
        Problem::Revoked => "certificate has been revoked",
        Problem::Invalid => "certificate is invalid",
        Problem::NameMismatch => "no certificate name matches",
    }
}

/// A distinguished name as Windows prints it (and EOP's Message quotes it): relative names
/// from the most specific to the least, joined by `, `; attributes by their Windows short
/// names, any other as its dotted OID; a value holding `,`, `+`, `=` or `"` in double quotes
/// (an inner quote doubled); the values of a multi-valued relative name joined by ` + `.
pub fn windows_dn(name: &x509_parser::x509::X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let oid = attr.attr_type().to_id_string();
                    let key = match oid.as_str() {
                        "2.5.4.3" => "CN",
                        "2.5.4.11" => "OU",
                        "2.5.4.10" => "O",
                        "2.5.4.7" => "L",
                        "2.5.4.8" => "S",
                        "2.5.4.6" => "C",
                        "1.2.840.113549.1.9.1" => "E",
                        "2.5.4.9" => "STREET",
                        "0.9.2342.19200300.100.1.25" => "DC",
                        _ => oid.as_str(),
                    }
                    .to_owned();
                    let value = attr
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|_| crate::smtp::escape(attr.attr_value().data));
                    format!("{key}={}", quote_dn_value(&value))
                })
                .collect::<Vec<_>>()
                .join(" + ")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(", ")
}

fn quote_dn_value(v: &str) -> String {
    if v.contains([',', '+', '=', '"']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_owned()
    }
}

/// The spec's name rules: an exact `tls_domain` matches a certificate name equal to it, or a
/// wildcard certificate name covering exactly one label (`*.contoso.com` covers
/// `mail.contoso.com`, RFC 6125); a wildcard `tls_domain` (`*.contoso.com`) matches any
/// certificate name under `contoso.com`, at any depth, wildcard names included, but not
/// `contoso.com` itself.
pub fn matches_tls_domain<'a>(
    domain: &TlsDomain,
    mut names: impl Iterator<Item = &'a str>,
) -> bool {
    names.any(|raw| {
        let name = raw.trim_end_matches('.').to_ascii_lowercase();
        match domain {
            TlsDomain::Exact(want) => {
                name == *want
                    || name.strip_prefix("*.").is_some_and(|parent| {
                        parent.contains('.')
                            && !parent.contains('*')
                            && want
                                .split_once('.')
                                .is_some_and(|(label, rest)| !label.is_empty() && rest == parent)
                    })
            }
            TlsDomain::Subdomains(suffix) => name
                .strip_suffix(suffix.as_str())
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|labels| {
                    // One or more labels under the suffix; only the first may be a wildcard.
                    labels.split('.').enumerate().all(|(i, l)| {
                        !l.is_empty() && if l == "*" { i == 0 } else { !l.contains('*') }
                    })
                }),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_written_as_windows_writes_them() {
        let mut params = rcgen::CertificateParams::new(vec!["mail.contoso.com".into()]).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "US");
        dn.push(rcgen::DnType::StateOrProvinceName, "Washington");
        dn.push(rcgen::DnType::LocalityName, "Redmond");
        dn.push(rcgen::DnType::OrganizationName, "Contoso, Ltd.");
        dn.push(rcgen::DnType::OrganizationalUnitName, "IT \"Mail\"");
        dn.push(rcgen::DnType::CommonName, "mail.contoso.com");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (_, x509) = X509Certificate::from_der(cert.der()).unwrap();
        assert_eq!(
            windows_dn(x509.subject()),
            "CN=mail.contoso.com, OU=\"IT \"\"Mail\"\"\", O=\"Contoso, Ltd.\", L=Redmond, S=Washington, C=US"
        );
    }

    #[test]
    fn tls_domain_rules() {
        let exact = TlsDomain::parse("mail.contoso.com").unwrap();
        let sub = TlsDomain::parse("*.contoso.com").unwrap();
        let cases: &[(&TlsDomain, &str, bool)] = &[
            (&exact, "mail.contoso.com", true),
            (&exact, "MAIL.contoso.com.", true),
            (&exact, "*.contoso.com", true),
            (&exact, "other.contoso.com", false),
            (&exact, "contoso.com", false),
            (&exact, "*.mail.contoso.com", false),
            (&exact, "*.com", false),
            (&exact, "mail.contoso.com.evil.net", false),
            (&sub, "mail.contoso.com", true),
            (&sub, "a.b.contoso.com", true),
            (&sub, "*.contoso.com", true),
            (&sub, "*.eu.contoso.com", true),
            (&sub, "contoso.com", false),
            (&sub, "evilcontoso.com", false),
            (&sub, "mail.contoso.com.evil.net", false),
            (&sub, "mail.fabrikam.com", false),
        ];
        for (domain, name, want) in cases {
            assert_eq!(
                matches_tls_domain(domain, std::iter::once(*name)),
                *want,
                "{domain} vs {name}"
            );
        }
    }
}

//! One Exchange connector mapped to `[[connector]]` entries: a smart-host connector gives
//! one entry, an MX-routed connector one entry per recipient domain.

use super::exchange::ExchangeConnector;
use super::hosts::{self, Parsed};
use super::{Finding, names};
use crate::config::{Route, SmartHost, TlsDomain, TlsMode, parse_dns_name};

/// One `[[connector]]` to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub route: Route,
    pub tls: TlsMode,
    pub tls_domain: Option<TlsDomain>,
}

/// An Exchange connector and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// Exchange's name, quoted, or `#n` (its place in the file) when it has none.
    pub label: String,
    /// Type, source, last change: for the comment above the entries.
    pub about: Vec<String>,
    /// Empty when the connector was skipped or could not be imported.
    pub entries: Vec<Entry>,
    pub findings: Vec<Finding>,
}

impl Mapped {
    /// A connector that could not even be read.
    pub fn unreadable(finding: Finding) -> Mapped {
        Mapped {
            label: finding.connector.clone().unwrap_or_default(),
            about: Vec::new(),
            entries: Vec::new(),
            findings: vec![finding],
        }
    }

    pub fn is_failed(&self) -> bool {
        self.findings.iter().any(Finding::is_error)
    }
}

/// A property that cannot be used, and why.
struct Bad(&'static str, String);

pub fn map(c: &ExchangeConnector) -> Mapped {
    let label = format!("{:?}", c.name);
    let mut findings = Vec::new();
    let entries = if let Some((property, why)) = skip_reason(c) {
        findings.push(Finding::note(&label, Some(property), why));
        Vec::new()
    } else {
        entries(c, &label, &mut findings).unwrap_or_else(|Bad(property, message)| {
            findings.push(Finding::error(&label, Some(property), message));
            Vec::new()
        })
    };
    Mapped {
        label,
        about: c.about.clone(),
        entries,
        findings,
    }
}

/// Exchange sends no mail through a disabled connector, and only test mail through one in
/// test mode: probing either would alarm about mail that is not at stake.
fn skip_reason(c: &ExchangeConnector) -> Option<(&'static str, String)> {
    if !c.enabled {
        return Some(("Enabled", "false, so the connector is skipped".into()));
    }
    c.test_mode
        .then(|| ("TestMode", "true, so the connector is skipped".into()))
}

fn entries(
    c: &ExchangeConnector,
    label: &str,
    findings: &mut Vec<Finding>,
) -> Result<Vec<Entry>, Bad> {
    let (tls, tls_domain) = tls(c, label, findings)?;
    let routes = if c.use_mx_record {
        mx_routes(c, label, findings)?
    } else {
        let hosts = smart_hosts(&c.smart_hosts, label, findings)?;
        vec![(names::safe(&c.name), Route::SmartHosts(hosts))]
    };
    Ok(routes
        .into_iter()
        .map(|(name, route)| Entry {
            name,
            route,
            tls,
            tls_domain: tls_domain.clone(),
        })
        .collect())
}

fn tls(
    c: &ExchangeConnector,
    label: &str,
    findings: &mut Vec<Finding>,
) -> Result<(TlsMode, Option<TlsDomain>), Bad> {
    match (c.tls, &c.tls_domain) {
        (TlsMode::DomainValidation, Some(domain)) => TlsDomain::parse(domain)
            .map(|d| (TlsMode::DomainValidation, Some(d)))
            .map_err(|m| Bad("TlsDomain", m)),
        (TlsMode::DomainValidation, None) => Err(Bad(
            "TlsDomain",
            "missing: TlsSettings is DomainValidation, which needs the name the certificate must carry".into(),
        )),
        (mode, Some(domain)) => {
            findings.push(Finding::note(
                label,
                Some("TlsDomain"),
                format!(
                    "{domain:?} left out: Exchange uses it only with DomainValidation, and this connector has {}",
                    mode.as_str()
                ),
            ));
            Ok((mode, None))
        }
        (mode, None) => Ok((mode, None)),
    }
}

fn smart_hosts(
    entries: &[String],
    label: &str,
    findings: &mut Vec<Finding>,
) -> Result<Vec<SmartHost>, Bad> {
    if entries.is_empty() {
        return Err(Bad(
            "SmartHosts",
            "empty, and UseMXRecord is false: there is no server to probe".into(),
        ));
    }
    let mut out: Vec<SmartHost> = Vec::new();
    for entry in entries {
        let hosts = match hosts::parse(entry).map_err(|m| Bad("SmartHosts", m))? {
            Parsed::One(host) => vec![host],
            Parsed::Range { hosts, what } => {
                findings.push(Finding::warning(
                    label,
                    Some("SmartHosts"),
                    format!("{entry:?} expanded to {what}"),
                ));
                hosts
            }
        };
        for host in hosts {
            if !out.contains(&host) {
                out.push(host);
            }
        }
    }
    Ok(out)
}

/// One route per recipient domain, named `<connector>-<domain>`. A wildcard has no MX of
/// its own, so it cannot be probed.
fn mx_routes(
    c: &ExchangeConnector,
    label: &str,
    findings: &mut Vec<Finding>,
) -> Result<Vec<(String, Route)>, Bad> {
    let mut routes: Vec<(String, Route)> = Vec::new();
    for written in &c.recipient_domains {
        if written == "*" || written.starts_with("*.") {
            findings.push(Finding::warning(
                label,
                Some("RecipientDomains"),
                format!("{written:?} is a wildcard, not probeable: skipped"),
            ));
            continue;
        }
        let domain = parse_dns_name(written).map_err(|m| Bad("RecipientDomains", m))?;
        if routes.iter().all(|(_, r)| *r != Route::Mx(domain.clone())) {
            let name = names::safe(&format!("{} {domain}", c.name));
            routes.push((name, Route::Mx(domain)));
        }
    }
    if routes.is_empty() {
        return Err(Bad(
            "RecipientDomains",
            "UseMXRecord is true, but no recipient domain can be probed (a domain without a wildcard is needed)".into(),
        ));
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector(name: &str) -> ExchangeConnector {
        ExchangeConnector {
            name: name.into(),
            enabled: true,
            test_mode: false,
            use_mx_record: false,
            smart_hosts: vec!["mail.contoso.com".into()],
            recipient_domains: Vec::new(),
            tls: TlsMode::Opportunistic,
            tls_domain: None,
            about: Vec::new(),
        }
    }

    fn errors(m: &Mapped) -> Vec<String> {
        m.findings
            .iter()
            .filter(|f| f.is_error())
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn hybrid_connector_with_domain_validation() {
        let mut c = connector("Outbound to 5f1c9e02");
        c.tls = TlsMode::DomainValidation;
        c.tls_domain = Some("mail.contoso.com".into());
        let m = map(&c);
        assert!(m.findings.is_empty(), "{:?}", m.findings);
        assert_eq!(
            m.entries,
            [Entry {
                name: "Outbound-to-5f1c9e02".into(),
                route: Route::SmartHosts(vec![SmartHost::parse("mail.contoso.com").unwrap()]),
                tls: TlsMode::DomainValidation,
                tls_domain: Some(TlsDomain::Exact("mail.contoso.com".into())),
            }]
        );
    }

    #[test]
    fn domain_validation_needs_a_tls_domain() {
        let mut c = connector("a");
        c.tls = TlsMode::DomainValidation;
        let m = map(&c);
        assert!(m.entries.is_empty());
        assert_eq!(errors(&m).len(), 1);
        assert!(errors(&m)[0].contains("connector \"a\": TlsDomain: missing"));
    }

    #[test]
    fn tls_domain_without_domain_validation_is_left_out() {
        let mut c = connector("a");
        c.tls = TlsMode::CertificateValidation;
        c.tls_domain = Some("mail.contoso.com".into());
        let m = map(&c);
        assert_eq!(m.entries[0].tls_domain, None);
        assert_eq!(m.entries[0].tls, TlsMode::CertificateValidation);
        assert!(m.findings[0].to_string().starts_with("note: "));
    }

    #[test]
    fn mx_routing_gives_a_connector_per_domain() {
        let mut c = connector("Fabrikam partner");
        c.use_mx_record = true;
        c.smart_hosts.clear();
        c.recipient_domains = ["fabrikam.com", "*.fabrikam.net", "Fabrikam.co.uk", "*"]
            .map(String::from)
            .to_vec();
        c.tls = TlsMode::CertificateValidation;
        let m = map(&c);
        let got: Vec<(&str, &Route)> = m
            .entries
            .iter()
            .map(|e| (e.name.as_str(), &e.route))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "Fabrikam-partner-fabrikam.com",
                    &Route::Mx("fabrikam.com".into())
                ),
                (
                    "Fabrikam-partner-fabrikam.co.uk",
                    &Route::Mx("fabrikam.co.uk".into())
                ),
            ]
        );
        let warnings: Vec<String> = m.findings.iter().map(ToString::to_string).collect();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("\"*.fabrikam.net\" is a wildcard, not probeable"));
    }

    #[test]
    fn mx_entry_names_stay_valid() {
        let mut c = connector("Fabrikam (TLS)");
        c.use_mx_record = true;
        let long = format!(
            "{}.fabrikam.com",
            ["a".repeat(60), "b".repeat(60), "c".repeat(60)].join(".")
        );
        c.recipient_domains = vec!["fabrikam.com".into(), long];
        let m = map(&c);
        assert_eq!(m.entries[0].name, "Fabrikam-TLS-fabrikam.com");
        assert!(m.entries[1].name.len() <= 128, "{}", m.entries[1].name);
    }

    #[test]
    fn mx_routing_without_a_probeable_domain_fails() {
        let mut c = connector("a");
        c.use_mx_record = true;
        c.recipient_domains = vec!["*.contoso.com".into()];
        let m = map(&c);
        assert!(m.entries.is_empty());
        assert!(errors(&m)[0].contains("RecipientDomains: UseMXRecord is true"));
        c.recipient_domains = vec!["bad domain!".into()];
        assert!(errors(&map(&c))[0].contains("RecipientDomains: "));
    }

    #[test]
    fn ranges_expand_with_a_warning_and_duplicates_go() {
        let mut c = connector("a");
        c.smart_hosts = [
            "192.0.2.0/30",
            "192.0.2.1",
            "Mail.contoso.com",
            "mail.contoso.com",
        ]
        .map(String::from)
        .to_vec();
        let m = map(&c);
        let Route::SmartHosts(hosts) = &m.entries[0].route else {
            panic!("{m:?}")
        };
        let hosts: Vec<String> = hosts.iter().map(ToString::to_string).collect();
        assert_eq!(hosts, ["192.0.2.1", "192.0.2.2", "mail.contoso.com"]);
        assert_eq!(m.findings.len(), 1);
        assert!(m.findings[0].to_string().starts_with(
            "warning: connector \"a\": SmartHosts: \"192.0.2.0/30\" expanded to its 2 host addresses"
        ));
    }

    #[test]
    fn unusable_smart_hosts_fail_the_connector() {
        for bad in [
            vec![],
            vec!["192.0.2.0/16".to_owned()],
            vec!["a..b".to_owned()],
        ] {
            let mut c = connector("a");
            c.smart_hosts = bad.clone();
            let m = map(&c);
            assert!(m.entries.is_empty(), "{bad:?}");
            assert!(
                errors(&m)[0].starts_with("error: connector \"a\": SmartHosts: "),
                "{:?}",
                errors(&m)
            );
        }
    }

    #[test]
    fn disabled_and_test_mode_connectors_are_skipped() {
        let mut disabled = connector("a");
        disabled.enabled = false;
        let mut testing = connector("b");
        testing.test_mode = true;
        for (c, property) in [(disabled, "Enabled"), (testing, "TestMode")] {
            let m = map(&c);
            assert!(m.entries.is_empty());
            assert!(!m.is_failed());
            let note = m.findings[0].to_string();
            assert!(
                note.starts_with("note: ") && note.contains(property),
                "{note}"
            );
        }
    }
}

//! `explain --probe`: probe the line's server now and say whether the condition still holds.
//!
//! The connector is the configured one whose smart host or MX domain matches the line's
//! server, else one built from the line. The new result is read back through
//! [`super::parse`] from the verdict's `eop_status`, so the comparison is between two lines
//! in EOP's own words.

use std::net::IpAddr;

use serde::Serialize;

use crate::config::{
    Config, Connector, Host, Route, SmartHost, TlsDomain, TlsMode, parse_dns_name,
};
use crate::probe::{ProbeContext, probe_connector};
use crate::verdict::Status;

use super::parse::{self, Explained, Kind};
use super::table::Condition;

/// What the probe found against what the line said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Failing with the line's condition.
    Same,
    /// Failing, with another condition.
    Different,
    /// Delivery would work now.
    Ok,
    /// Not probed (an on-prem line, or no server named).
    NotProbed,
}

/// The outcome of `--probe` for one line.
#[derive(Debug, Clone, Serialize)]
pub struct Recheck {
    pub verdict: Verdict,
    /// One sentence: "still failing the same way", "now fails differently: …", "now ok".
    pub summary: String,
    /// The connector probed: a configured one's name, or `from-line`.
    pub connector: Option<String>,
    /// Whether that connector came from the configuration file.
    pub configured: bool,
    pub tls_mode: Option<&'static str>,
    /// The probe's connector status (`ok | warning | degraded | failing`).
    pub status: Option<&'static str>,
    pub eop_status: Option<String>,
    pub condition: Option<Condition>,
}

impl Recheck {
    fn not_probed(why: &str) -> Recheck {
        Recheck {
            verdict: Verdict::NotProbed,
            summary: format!("not probed: {why}"),
            connector: None,
            configured: false,
            tls_mode: None,
            status: None,
            eop_status: None,
            condition: None,
        }
    }
}

/// Probes the server `e` names, with `config`'s settings, and compares.
pub async fn recheck(config: &Config, e: &Explained) -> Recheck {
    if e.kind == Kind::Onprem {
        return Recheck::not_probed(
            "the line comes from on-premises Exchange; its server is that side's next hop, not an Exchange Online connector",
        );
    }
    let (connector, configured) = match configured(config, e) {
        Some(c) => (c.clone(), true),
        None => match from_line(config, e) {
            Ok(c) => (c, false),
            Err(why) => return Recheck::not_probed(&why),
        },
    };
    let ctx = ProbeContext::new(config);
    let verdict = probe_connector(&ctx, &connector).await;
    let mut r = Recheck {
        verdict: Verdict::Ok,
        summary: String::new(),
        connector: Some(connector.name.clone()),
        configured,
        tls_mode: Some(connector.settings.tls.as_str()),
        status: Some(verdict.status.as_str()),
        eop_status: verdict.eop_status.clone(),
        condition: None,
    };
    if verdict.status != Status::Failing {
        r.summary = match verdict.status {
            Status::Ok => "now ok".to_owned(),
            other => format!("now ok (status {})", other.as_str()),
        };
        return r;
    }
    let now = verdict.eop_status.as_deref().and_then(parse::parse);
    r.condition = now.as_ref().map(|n| n.condition);
    let status_text = verdict
        .eop_status
        .clone()
        .or_else(|| verdict.code.map(str::to_owned))
        .unwrap_or_else(|| "failing".to_owned());
    match now {
        Some(n) if n.condition == e.condition => {
            r.verdict = Verdict::Same;
            r.summary = "still failing the same way".to_owned();
        }
        Some(n) => {
            r.verdict = Verdict::Different;
            r.summary = format!(
                "now fails differently: {} ({status_text})",
                n.condition.as_str()
            );
        }
        None => {
            r.verdict = Verdict::Different;
            r.summary = format!("now fails differently: {status_text}");
        }
    }
    r
}

/// The configured connector whose smart host (name or address, and port when both say one)
/// or MX domain matches the line's server.
fn configured<'a>(config: &'a Config, e: &Explained) -> Option<&'a Connector> {
    let server = e.server.as_deref().map(str::to_ascii_lowercase);
    let ip: Option<IpAddr> =
        e.ip.as_deref()
            .or(e.server.as_deref())
            .and_then(|s| s.parse().ok());
    config.connectors.iter().find(|c| match &c.route {
        Route::SmartHosts(hosts) => hosts.iter().any(|h| {
            let port_ok = match (h.port, e.port) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
            let host_ok = match &h.host {
                Host::Name(n) => server.as_deref() == Some(n.as_str()),
                Host::Ip(a) => ip == Some(*a),
            };
            host_ok && port_ok
        }),
        Route::Mx(domain) => server
            .as_deref()
            .is_some_and(|s| s == domain || s.ends_with(&format!(".{domain}"))),
    })
}

/// A connector from what the line says: its server (or address) and port; the TLS mode the
/// condition implies (a subject mismatch only happens under domain validation, with the
/// Expected Subject as TlsDomain; other certificate failures under certificate validation;
/// STARTTLS and TLS failures only when TLS is required), else opportunistic.
fn from_line(config: &Config, e: &Explained) -> Result<Connector, String> {
    let host = match (e.server.as_deref(), e.ip.as_deref()) {
        (Some(s), _) if s.parse::<IpAddr>().is_ok() => Host::Ip(s.parse().expect("checked")),
        (Some(s), _) => Host::Name(parse_dns_name(s).map_err(|m| format!("the server name: {m}"))?),
        (None, Some(ip)) => Host::Ip(
            ip.parse()
                .map_err(|_| format!("{ip:?} is not an address"))?,
        ),
        (None, None) => return Err("the line names no server or address".to_owned()),
    };
    let mut settings = config.defaults.clone();
    let mut tls_domain = None;
    settings.tls = match e.condition {
        Condition::SubjectMismatch => {
            let expected = e
                .certificate
                .as_ref()
                .and_then(|c| c.expected_subject.as_deref())
                .or(e.server.as_deref());
            tls_domain = expected.and_then(|x| TlsDomain::parse(x).ok());
            TlsMode::DomainValidation
        }
        c if c.is_certificate() => TlsMode::CertificateValidation,
        Condition::StarttlsRequired | Condition::TlsNegotiationFailed => TlsMode::EncryptionOnly,
        _ => TlsMode::Opportunistic,
    };
    if settings.tls == TlsMode::DomainValidation && tls_domain.is_none() {
        settings.tls = TlsMode::CertificateValidation;
    }
    // EOP writes 5.4.310 only when it routes by MX and the domain does not exist.
    let route = match (&host, e.condition) {
        (Host::Name(domain), Condition::DomainNonexistent) => Route::Mx(domain.clone()),
        _ => Route::SmartHosts(vec![SmartHost { host, port: e.port }]),
    };
    Ok(Connector {
        name: "from-line".to_owned(),
        route,
        tls_domain,
        settings: settings.into(),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text, Path::new("test.toml")).unwrap()
    }

    fn line(text: &str) -> Explained {
        parse::parse(text).unwrap()
    }

    const CONNECTORS: &str = r#"
[[connector]]
name = "onprem"
smart_hosts = ["mail.contoso.com", "192.0.2.10"]
tls = "domain-validation"
tls_domain = "mail.contoso.com"

[[connector]]
name = "partner"
mx_domain = "fabrikam.com"
tls = "certificate-validation"

[[connector]]
name = "lab"
smart_hosts = ["127.0.0.1:2525"]
"#;

    #[test]
    fn the_configured_connector_is_found_by_smart_host_address_or_mx_domain() {
        let c = config(CONNECTORS);
        let name = |l: &str| configured(&c, &line(l)).map(|c| c.name.clone());
        assert_eq!(
            name("450 4.4.316 Connection refused [Message=Socket error code 10061] [LastAttemptedServerName=MAIL.contoso.com] [LastAttemptedIP=198.51.100.1:25]").as_deref(),
            Some("onprem")
        );
        assert_eq!(
            name("450 4.4.316 Connection refused [Message=Socket error code 10061] [LastAttemptedServerName=###] [LastAttemptedIP=192.0.2.10:25]").as_deref(),
            Some("onprem")
        );
        assert_eq!(
            name("450 4.4.318 Connection was closed abruptly [Message=SuspiciousRemoteServerError] [LastAttemptedServerName=mx2.fabrikam.com] [LastAttemptedIP=198.51.100.2:25]").as_deref(),
            Some("partner")
        );
        assert_eq!(
            name("450 4.4.316 Connection refused [Message=Socket error code 10061] [LastAttemptedServerName=127.0.0.1] [LastAttemptedIP=127.0.0.1:2525]").as_deref(),
            Some("lab")
        );
        // Same address, another port: not that connector.
        assert_eq!(
            name(
                "450 4.4.316 Connection refused [Message=Socket error code 10061] [LastAttemptedServerName=127.0.0.1] [LastAttemptedIP=127.0.0.1:2526]"
            ),
            None
        );
        assert_eq!(
            name(
                "450 4.4.316 Connection refused [Message=Socket error code 10061] [LastAttemptedServerName=mail.tailspin.com]"
            ),
            None
        );
    }

    #[test]
    fn a_connector_from_the_line_takes_the_mode_the_condition_implies() {
        let c = config("");
        let built = |l: &str| from_line(&c, &line(l)).unwrap();
        let mismatch = built(
            "450 4.4.317 Cannot connect to remote server [Message=SubjectMismatch Expected Subject: *.contoso.com. Presented Subject: CN=ex01. Thumbprint: 00.] [LastAttemptedServerName=mail.contoso.com] [LastAttemptedIP=192.0.2.10:25]",
        );
        assert_eq!(mismatch.settings.tls, TlsMode::DomainValidation);
        assert_eq!(
            mismatch.tls_domain,
            Some(TlsDomain::Subdomains("contoso.com".into()))
        );
        assert_eq!(
            mismatch.route,
            Route::SmartHosts(vec![SmartHost {
                host: Host::Name("mail.contoso.com".into()),
                port: Some(25)
            }])
        );
        let expired = built(
            "450 4.4.317 Cannot connect to remote server [Message=CertificateExpired Expected Subject: mail.contoso.com. Presented Subject: CN=mail.contoso.com. Thumbprint: 00.] [LastAttemptedServerName=mail.contoso.com]",
        );
        assert_eq!(expired.settings.tls, TlsMode::CertificateValidation);
        assert_eq!(expired.tls_domain, None);
        let starttls = built(
            "450 4.4.317 Cannot connect to remote server [Message=451 5.7.3 STARTTLS is required to send mail] [LastAttemptedServerName=x.x.x.x] [LastAttemptedIP=192.0.2.10:25]",
        );
        assert_eq!(starttls.settings.tls, TlsMode::EncryptionOnly);
        assert_eq!(
            starttls.route,
            Route::SmartHosts(vec![SmartHost {
                host: Host::Ip("192.0.2.10".parse().unwrap()),
                port: Some(25)
            }])
        );
        let refused = built(
            "450 4.4.316 Connection refused [Message=Socket error code 10061] [LastAttemptedServerName=mail.contoso.com] [LastAttemptedIP=192.0.2.10:25]",
        );
        assert_eq!(refused.settings.tls, TlsMode::Opportunistic);
        let nonexistent = built(
            "550 5.4.310 DNS domain fabrikam.example does not exist [Message=InfoDomainNonexistent] [LastAttemptedServerName=fabrikam.example]",
        );
        assert_eq!(nonexistent.route, Route::Mx("fabrikam.example".into()));
        assert!(
            from_line(
                &c,
                &line("550 5.4.316 Message expired, connection refused(Socket error code 10061)")
            )
            .is_err(),
            "an NDR names no server"
        );
    }
}

//! Step two: the raw file becomes a [`Config`], with defaults applied and contradictions
//! rejected. Errors are a key path and a message; `Config::parse` locates them.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};

use super::hosts::{Host, SmartHost, TlsDomain, parse_dns_name};
use super::locate::KeyPath;
use super::raw::{RawConfig, RawConnector, RawDuration, RawSettings, RawTimeouts};
use super::*;

type Invalid = (KeyPath, String);

/// Upper bounds on durations. Beyond them a value is a typo rather than a policy (`"10000y"`),
/// and the scheduler's and the alerts' clock arithmetic need a bound to be safe.
///
/// A stage timeout: Postfix waits at most 5 minutes for a reply; an hour is far beyond it.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// The interval between probes of one connector: a month.
const MAX_INTERVAL: Duration = Duration::from_secs(30 * 86_400);
/// How early a certificate's expiry is reported: ten years, longer than any public CA issues.
const MAX_EXPIRY_WARNING: Duration = Duration::from_secs(3650 * 86_400);
/// `message_expiration` and `queue_alert_after`: 90 days, the largest `MessageExpiration`
/// Exchange Server accepts (Exchange Online's is at most a few days).
const MAX_QUEUE_TIME: Duration = Duration::from_secs(90 * 86_400);

const DEFAULT_TIMEOUTS: Timeouts = Timeouts {
    dns: Duration::from_secs(10),
    connect: Duration::from_secs(30),
    banner: Duration::from_secs(60),
    command: Duration::from_secs(60),
    tls: Duration::from_secs(30),
};

pub fn validate(mut raw: RawConfig, file: &Path) -> Result<Config, Invalid> {
    let connectors = std::mem::take(&mut raw.connectors);
    let mut config = settings(raw, file)?;
    config.connectors.reserve_exact(connectors.len());
    // A set, not a scan of the connectors so far: that was quadratic, 10 s at 100,000.
    let mut seen: HashSet<&str> = HashSet::with_capacity(connectors.len());
    let shared = Arc::new(config.defaults.clone());
    for (i, rc) in connectors.iter().enumerate() {
        let c = connector_at(rc, &shared, i)?;
        if !seen.insert(rc.name.as_str()) {
            return Err((
                KeyPath::root().key("connector").index(i).key("name"),
                format!(
                    "duplicate connector name {:?}; names must be unique",
                    c.name
                ),
            ));
        }
        config.connectors.push(c);
    }
    Ok(config)
}

/// Everything but the connectors (`raw`'s are not looked at).
pub fn settings(raw: RawConfig, file: &Path) -> Result<Config, Invalid> {
    let root = KeyPath::root();
    let base = file.parent().unwrap_or(Path::new("."));
    let builtin = builtin_settings();
    let defaults = merge(&builtin, &raw.defaults, &root.key("defaults"))?;
    let dns = DnsConfig {
        nameservers: nameservers(&raw.dns.nameservers, &root.key("dns").key("nameservers"))?,
    };
    let tls = tls_config(&raw.tls, base, &root.key("tls"))?;
    let daemon = daemon_config(&raw.daemon, &root.key("daemon"))?;
    Ok(Config {
        source: file.to_owned(),
        defaults,
        dns,
        tls,
        daemon,
        connectors: Vec::new(),
    })
}

/// The `i`th `[[connector]]`, against `defaults`.
pub fn connector_at(
    rc: &RawConnector,
    defaults: &Arc<Settings>,
    i: usize,
) -> Result<Connector, Invalid> {
    connector(rc, defaults, &KeyPath::root().key("connector").index(i))
}

fn builtin_settings() -> Settings {
    Settings {
        helo_name: String::new(),
        port: 25,
        interval: Duration::from_secs(300),
        tls: TlsMode::Opportunistic,
        expiry_warning: Duration::from_secs(14 * 86_400),
        ip_family: IpFamily::Any,
        certificate_failure_code: CertificateFailureCode::CertificateValidationFailed,
        timeouts: DEFAULT_TIMEOUTS,
        bounds: DEFAULT_BOUNDS,
        source_address: None,
    }
}

/// `base` with the overrides of `raw` applied; `at` is where `raw` sits in the file.
fn merge(base: &Settings, raw: &RawSettings, at: &KeyPath) -> Result<Settings, Invalid> {
    let helo_name = match &raw.helo_name {
        Some(h) => helo(h).map_err(|m| (at.key("helo_name"), m))?,
        None if base.helo_name.is_empty() => machine_fqdn(),
        None => base.helo_name.clone(),
    };
    if raw.port == Some(0) {
        return Err((at.key("port"), "port must be between 1 and 65535".into()));
    }
    Ok(Settings {
        helo_name,
        port: raw.port.unwrap_or(base.port),
        interval: bounded(
            raw.interval,
            base.interval,
            at.key("interval"),
            MAX_INTERVAL,
        )?,
        tls: raw.tls.unwrap_or(base.tls),
        expiry_warning: at_most(
            raw.expiry_warning.map_or(base.expiry_warning, |d| d.0),
            at.key("expiry_warning"),
            MAX_EXPIRY_WARNING,
        )?,
        ip_family: raw.ip_family.unwrap_or(base.ip_family),
        certificate_failure_code: raw
            .certificate_failure_code
            .unwrap_or(base.certificate_failure_code),
        timeouts: timeouts(&base.timeouts, raw.timeouts.as_ref(), &at.key("timeouts"))?,
        bounds: Bounds {
            max_mx_hosts: bound(
                raw.max_mx_hosts,
                base.bounds.max_mx_hosts,
                DEFAULT_BOUNDS.max_mx_hosts,
            ),
            max_addresses_per_host: bound(
                raw.max_addresses_per_host,
                base.bounds.max_addresses_per_host,
                DEFAULT_BOUNDS.max_addresses_per_host,
            ),
            max_targets: bound(
                raw.max_targets,
                base.bounds.max_targets,
                DEFAULT_BOUNDS.max_targets,
            ),
        },
        source_address: match raw.source_address.as_deref() {
            None => base.source_address,
            Some(text) => source_address(text).map_err(|m| (at.key("source_address"), m))?,
        },
    })
}

/// `source_address`: an IP address of this host, or "" for the kernel's choice.
fn source_address(text: &str) -> Result<Option<IpAddr>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let ip = text
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map_err(|_| {
            format!("{text:?} is not an IP address (write \"192.0.2.25\" or \"2001:db8::25\"; \"\" lets the kernel choose)")
        })?;
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(format!(
            "{text:?} cannot be a source address; give one of this host's addresses"
        ));
    }
    Ok(Some(ip))
}

/// A bound as written (`0` is the documented default), else the inherited one.
fn bound(raw: Option<usize>, base: usize, default: usize) -> usize {
    match raw {
        Some(0) => default,
        Some(n) => n,
        None => base,
    }
}

fn timeouts(base: &Timeouts, raw: Option<&RawTimeouts>, at: &KeyPath) -> Result<Timeouts, Invalid> {
    let Some(raw) = raw else { return Ok(*base) };
    Ok(Timeouts {
        dns: bounded(raw.dns, base.dns, at.key("dns"), MAX_TIMEOUT)?,
        connect: bounded(raw.connect, base.connect, at.key("connect"), MAX_TIMEOUT)?,
        banner: bounded(raw.banner, base.banner, at.key("banner"), MAX_TIMEOUT)?,
        command: bounded(raw.command, base.command, at.key("command"), MAX_TIMEOUT)?,
        tls: bounded(raw.tls, base.tls, at.key("tls"), MAX_TIMEOUT)?,
    })
}

/// A duration longer than zero and at most `max`; `base` when the file does not set it.
fn bounded(
    raw: Option<RawDuration>,
    base: Duration,
    at: KeyPath,
    max: Duration,
) -> Result<Duration, Invalid> {
    match raw {
        Some(RawDuration(d)) if d.is_zero() => Err((at, "must be longer than zero".into())),
        Some(RawDuration(d)) => at_most(d, at, max),
        None => Ok(base),
    }
}

fn at_most(d: Duration, at: KeyPath, max: Duration) -> Result<Duration, Invalid> {
    if d > max {
        return Err((
            at,
            format!(
                "{} is too long; the most is {}",
                super::format_duration(d),
                super::format_duration(max)
            ),
        ));
    }
    Ok(d)
}

/// An EHLO argument: a domain, or an address literal such as `[192.0.2.1]`.
fn helo(text: &str) -> Result<String, String> {
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        let addr = inner.strip_prefix("IPv6:").unwrap_or(inner);
        return addr
            .parse::<IpAddr>()
            .map(|_| text.to_owned())
            .map_err(|_| format!("{text:?} is not an address literal"));
    }
    parse_dns_name(text)
}

/// The EHLO name when none is configured: the machine's FQDN, as Postfix's `myhostname`
/// would be. A short hostname is completed from `/etc/hosts` without asking DNS.
fn machine_fqdn() -> String {
    let short = hostname();
    if short.contains('.') {
        return short;
    }
    std::fs::read_to_string("/etc/hosts")
        .ok()
        .and_then(|hosts| {
            hosts.lines().find_map(|line| {
                let names: Vec<&str> = line.split('#').next()?.split_whitespace().skip(1).collect();
                names.contains(&short.as_str()).then(|| {
                    names
                        .iter()
                        .find(|n| n.starts_with(&format!("{short}.")))
                        .map(|n| n.to_string())
                })?
            })
        })
        .unwrap_or(short)
}

pub(crate) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length and gethostname NUL-terminates
    // within it (or truncates), which the search for the NUL below tolerates.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase()
    } else {
        String::new()
    };
    parse_dns_name(&name).unwrap_or_else(|_| "localhost".into())
}

fn nameservers(raw: &Option<Vec<String>>, at: &KeyPath) -> Result<Vec<SocketAddr>, Invalid> {
    let Some(list) = raw else {
        return Ok(Vec::new());
    };
    list.iter()
        .enumerate()
        .map(|(i, text)| socket_addr(text, 53).map_err(|m| (at.index(i), m)))
        .collect()
}

/// `1.1.1.1`, `127.0.0.53:5353`, `[2001:db8::53]:53` or a bare IPv6 address.
fn socket_addr(text: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Ok(sa);
    }
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| {
            format!("{text:?} is not an address (write \"192.0.2.53\", \"192.0.2.53:5353\" or \"[2001:db8::53]:53\")")
        })
}

fn tls_config(raw: &super::raw::RawTls, base: &Path, at: &KeyPath) -> Result<TlsConfig, Invalid> {
    let mut tls = TlsConfig::default();
    if let Some(path) = non_empty_path(&raw.ca_file, base) {
        tls.extra_roots = read_pem::<CertificateDer<'static>>(&path, "certificate")
            .map_err(|m| (at.key("ca_file"), m))?;
        tls.ca_file = Some(path);
    }
    if let Some(path) = non_empty_path(&raw.crl_file, base) {
        tls.crls = read_pem::<CertificateRevocationListDer<'static>>(&path, "CRL")
            .map_err(|m| (at.key("crl_file"), m))?;
        tls.crl_file = Some(path);
    }
    tls.revocation = raw.revocation.unwrap_or_default();
    Ok(tls)
}

fn non_empty_path(raw: &Option<String>, base: &Path) -> Option<PathBuf> {
    let text = raw.as_deref().filter(|s| !s.is_empty())?;
    Some(base.join(text))
}

/// Every PEM item of one kind in a file; an unreadable file, a bad block or none at all is an
/// error, because a CA file that silently adds nothing would fail every validation later.
fn read_pem<T: PemObject>(path: &Path, what: &str) -> Result<Vec<T>, String> {
    let items = T::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<Vec<T>, _>>()
        .map_err(|e| format!("{}: bad PEM: {e}", path.display()))?;
    if items.is_empty() {
        return Err(format!("{} holds no PEM {what}", path.display()));
    }
    Ok(items)
}

fn daemon_config(raw: &super::raw::RawDaemon, at: &KeyPath) -> Result<DaemonConfig, Invalid> {
    if raw.concurrency == Some(0) {
        return Err((at.key("concurrency"), "must be at least 1".into()));
    }
    let metrics_listen = match raw.metrics_listen.as_deref() {
        None => Some(SocketAddr::from(([127, 0, 0, 1], 9425))),
        Some("") => None,
        Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
            (
                at.key("metrics_listen"),
                format!(
                    "{text:?} is not an address:port (e.g. \"127.0.0.1:9425\"; empty disables)"
                ),
            )
        })?),
    };
    let state_file = match raw.state_file.as_deref() {
        None => Some(PathBuf::from("/var/lib/connector-probe/state.json")),
        Some("") => None,
        Some(p) => Some(PathBuf::from(p)),
    };
    Ok(DaemonConfig {
        concurrency: raw.concurrency.unwrap_or(256),
        message_expiration: bounded(
            raw.message_expiration,
            Duration::from_secs(24 * 3600),
            at.key("message_expiration"),
            MAX_QUEUE_TIME,
        )?,
        queue_alert_after: bounded(
            raw.queue_alert_after,
            Duration::from_secs(3600),
            at.key("queue_alert_after"),
            MAX_QUEUE_TIME,
        )?,
        metrics_listen,
        state_file,
        max_connections: match raw.max_connections {
            None | Some(0) => DEFAULT_MAX_CONNECTIONS,
            Some(n) => n,
        },
        vantage: vantage(raw.vantage.as_deref()).map_err(|m| (at.key("vantage"), m))?,
        shard: match raw.shard.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(text.parse().map_err(|m| (at.key("shard"), m))?),
        },
    })
}

/// `[daemon] vantage`, or the host name when unset or empty. A label value in every series,
/// so kept to the characters of connector names.
fn vantage(raw: Option<&str>) -> Result<String, String> {
    let text = match raw {
        None | Some("") => return Ok(hostname()),
        Some(t) => t,
    };
    let ok = text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(format!(
            "{text:?} is not a valid vantage name (1-128 of A-Z a-z 0-9 . _ -; \"\" = the host name)"
        ));
    }
    Ok(text.to_owned())
}

fn connector(
    rc: &RawConnector,
    defaults: &Arc<Settings>,
    at: &KeyPath,
) -> Result<Connector, Invalid> {
    let name_ok = !rc.name.is_empty()
        && rc.name.len() <= 128
        && rc
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !name_ok {
        return Err((
            at.key("name"),
            format!(
                "{:?} is not a valid connector name (1-128 of A-Z a-z 0-9 . _ -)",
                rc.name
            ),
        ));
    }
    let merged = merge(defaults, &rc.overrides(), at)?;
    let settings = if merged == **defaults {
        defaults.clone()
    } else {
        Arc::new(merged)
    };
    let route = match (&rc.smart_hosts, &rc.mx_domain) {
        (Some(_), Some(_)) => {
            return Err((
                at.key("mx_domain"),
                "a connector has either smart_hosts or mx_domain, not both".into(),
            ));
        }
        (None, None) => {
            return Err((
                at.key("name"),
                format!(
                    "connector {:?} has neither smart_hosts nor mx_domain; give one",
                    rc.name
                ),
            ));
        }
        (Some(list), None) => {
            Route::SmartHosts(smart_hosts(list, &settings, &at.key("smart_hosts"))?)
        }
        (None, Some(domain)) => {
            Route::Mx(parse_dns_name(domain).map_err(|m| (at.key("mx_domain"), m))?)
        }
    };
    let tls_domain = match (&rc.tls_domain, settings.tls) {
        (Some(d), TlsMode::DomainValidation) => {
            Some(TlsDomain::parse(d).map_err(|m| (at.key("tls_domain"), m))?)
        }
        (Some(_), mode) => {
            return Err((
                at.key("tls_domain"),
                format!(
                    "tls_domain is only used with tls = \"domain-validation\" (this connector has \"{}\"); remove it or change tls",
                    mode.as_str()
                ),
            ));
        }
        (None, TlsMode::DomainValidation) => {
            let key = if rc.tls.is_some() { "tls" } else { "name" };
            return Err((
                at.key(key),
                "tls = \"domain-validation\" needs tls_domain (the name the certificate must carry)".into(),
            ));
        }
        (None, _) => None,
    };
    Ok(Connector {
        name: rc.name.clone(),
        route,
        tls_domain,
        settings,
    })
}

fn smart_hosts(
    list: &[String],
    settings: &Settings,
    at: &KeyPath,
) -> Result<Vec<SmartHost>, Invalid> {
    if list.is_empty() {
        return Err((at.clone(), "smart_hosts must list at least one host".into()));
    }
    let mut hosts: Vec<SmartHost> = Vec::with_capacity(list.len());
    for (i, text) in list.iter().enumerate() {
        let host = SmartHost::parse(text).map_err(|m| (at.index(i), m))?;
        if let Host::Ip(ip) = host.host {
            let family_ok = match ip {
                IpAddr::V4(_) => settings.ip_family.wants_v4(),
                IpAddr::V6(_) => settings.ip_family.wants_v6(),
            };
            if !family_ok {
                return Err((
                    at.index(i),
                    format!(
                        "{text:?} is excluded by ip_family = \"{}\"",
                        settings.ip_family.as_str()
                    ),
                ));
            }
        }
        if hosts.contains(&host) {
            return Err((at.index(i), format!("{text:?} is listed twice")));
        }
        hosts.push(host);
    }
    Ok(hosts)
}

//! Configuration: the TOML file of `interface.md`, read in two steps.
//!
//! [`raw`] mirrors the file with serde (`deny_unknown_fields`, nothing defaulted);
//! [`validate`] turns it into the [`Config`] model below, with `[defaults]` applied to every
//! connector and every contradiction rejected. Errors of either step are located by
//! [`locate`] and carry file, line, column and key.

mod effective;
mod error;
mod hosts;
mod locate;
mod raw;
mod split;
mod validate;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use serde::{Deserialize, Serialize};

pub use error::ConfigError;
pub use hosts::{Host, SmartHost, TlsDomain, parse_dns_name};
use locate::Locator;
pub(crate) use validate::hostname;

/// Where `--config` points when it is not given and `$CONNECTOR_PROBE_CONFIG` is unset.
pub const DEFAULT_PATH: &str = "/etc/connector-probe/connector-probe.toml";
/// The environment variable that names the configuration file.
pub const ENV_VAR: &str = "CONNECTOR_PROBE_CONFIG";

/// EOP's `TlsSettings` on an outbound connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// `$null`: STARTTLS when offered, certificate not judged.
    Opportunistic,
    /// `EncryptionOnly`: STARTTLS required, certificate not judged.
    EncryptionOnly,
    /// `CertificateValidation`: STARTTLS required, chain and validity judged, name not.
    CertificateValidation,
    /// `DomainValidation`: as above, and a name must match `tls_domain`.
    DomainValidation,
}

impl TlsMode {
    /// Whether a missing or refused STARTTLS fails the connector.
    pub fn requires_tls(self) -> bool {
        self != TlsMode::Opportunistic
    }

    /// Whether a certificate problem fails the connector (rather than being a warning).
    pub fn validates_certificate(self) -> bool {
        matches!(
            self,
            TlsMode::CertificateValidation | TlsMode::DomainValidation
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Opportunistic => "opportunistic",
            TlsMode::EncryptionOnly => "encryption-only",
            TlsMode::CertificateValidation => "certificate-validation",
            TlsMode::DomainValidation => "domain-validation",
        }
    }
}

/// Which address families of a smart host are probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    Any,
    Ipv4,
    Ipv6,
}

impl IpFamily {
    pub fn wants_v4(self) -> bool {
        self != IpFamily::Ipv6
    }

    pub fn wants_v6(self) -> bool {
        self != IpFamily::Ipv4
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::Any => "any",
            IpFamily::Ipv4 => "ipv4",
            IpFamily::Ipv6 => "ipv6",
        }
    }
}

/// How a certificate failure is spelled: the documented `4.7.320`, or the `4.4.317` seen in
/// NDRs since about 2023.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum CertificateFailureCode {
    #[serde(rename = "4.7.320")]
    CertificateValidationFailed,
    #[serde(rename = "4.4.317")]
    CannotConnect,
}

impl CertificateFailureCode {
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateFailureCode::CertificateValidationFailed => "4.7.320",
            CertificateFailureCode::CannotConnect => "4.4.317",
        }
    }
}

/// Every wait of the pipeline has its own bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The whole resolve stage (A and AAAA, or MX and its hosts).
    pub dns: Duration,
    pub connect: Duration,
    /// From connect to a complete greeting.
    pub banner: Duration,
    /// Each SMTP command's complete reply (EHLO, STARTTLS, QUIT).
    pub command: Duration,
    /// The TLS handshake.
    pub tls: Duration,
}

/// The settings of `[defaults]`, after every connector's overrides are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub helo_name: String,
    pub port: u16,
    pub interval: Duration,
    pub tls: TlsMode,
    pub expiry_warning: Duration,
    pub ip_family: IpFamily,
    pub certificate_failure_code: CertificateFailureCode,
    pub timeouts: Timeouts,
    pub bounds: Bounds,
    /// The local address probes connect from (`None`: the kernel's choice). Two addresses of
    /// one host make two vantage points.
    pub source_address: Option<IpAddr>,
}

/// How much a DNS answer can make one connector's probe do. EOP tries a handful of hosts, and
/// Postfix caps the same (`smtp_mx_address_limit`); without bounds, a zone with hundreds of
/// MX hosts and thousands of addresses would turn one probe into thousands of connections to
/// addresses of the zone owner's choosing. What the bounds leave out is reported, not probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// MX hosts tried per name, best preference first.
    pub max_mx_hosts: usize,
    /// Addresses tried per host (IPv6 first, as EOP orders them).
    pub max_addresses_per_host: usize,
    /// Targets per connector.
    pub max_targets: usize,
}

/// The bounds `0` stands for: enough for any real hybrid or partner setup (a few MX hosts,
/// each with an IPv6 and an IPv4 address or two), few enough that a hostile zone costs little.
pub const DEFAULT_BOUNDS: Bounds = Bounds {
    max_mx_hosts: 8,
    max_addresses_per_host: 8,
    max_targets: 32,
};

/// Connections in flight across all probes when `[daemon] max_connections` is 0.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// How a connector finds its servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `smart_hosts`: every address of every host, in order.
    SmartHosts(Vec<SmartHost>),
    /// `mx_domain`: the MX hosts of the domain by preference (EOP's `UseMXRecord`).
    Mx(String),
}

/// One outbound connector, fully resolved against `[defaults]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connector {
    pub name: String,
    pub route: Route,
    pub tls_domain: Option<TlsDomain>,
    /// Shared by every connector whose settings are the defaults' (most of them): at
    /// 100,000 connectors a copy each was 23 MB.
    pub settings: Arc<Settings>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnsConfig {
    /// Empty: the system's `resolv.conf`.
    pub nameservers: Vec<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    /// Roots from `ca_file` (and, for the demo, generated ones), added to the native store.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// An extension of `interface.md`: CRLs (PEM) against which chains are checked, so that
    /// revocation can be judged where the admin has revocation data.
    pub crl_file: Option<PathBuf>,
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    /// `[tls] revocation`: whether the CRLs a trusted certificate names are fetched and a
    /// stapled OCSP response is checked (`crl_file` is checked either way).
    pub revocation: Revocation,
}

/// `[tls] revocation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Revocation {
    /// As EOP: the CRLs of the certificate's distribution points (over HTTP), and a stapled
    /// OCSP response.
    #[default]
    Fetch,
    /// Only `crl_file`.
    Off,
}

impl Revocation {
    pub fn as_str(self) -> &'static str {
        match self {
            Revocation::Fetch => "fetch",
            Revocation::Off => "off",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    pub concurrency: usize,
    pub message_expiration: Duration,
    /// When EOP's "Messages have been delayed" alert fires (1 h in EOP); settable for tests.
    pub queue_alert_after: Duration,
    /// `None` disables the HTTP endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// `None` (an empty string in the file) keeps state in memory only.
    pub state_file: Option<PathBuf>,
    /// Connections in flight across all probes.
    pub max_connections: usize,
    /// Where the probes run from: a label on every metric and a field on every event.
    pub vantage: String,
    /// `None`: this daemon probes every connector (see [`crate::shard`]).
    pub shard: Option<crate::shard::ShardSpec>,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from (`<built-in>` for an embedded configuration).
    pub source: PathBuf,
    pub defaults: Settings,
    pub dns: DnsConfig,
    pub tls: TlsConfig,
    pub daemon: DaemonConfig,
    pub connectors: Vec<Connector>,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: None,
            column: None,
            key: None,
            message: format!("cannot read the configuration file: {e}"),
        })?;
        let text = String::from_utf8(text).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: None,
            column: None,
            key: None,
            message: format!(
                "the configuration file is not UTF-8 (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        })?;
        Self::parse(&text, path)
    }

    /// Validates configuration text; `file` names it in errors and base for relative paths.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        Self::parse_with(text, file, true)
    }

    /// [`Config::parse`], with the batched fast path or without it (for the tests that hold
    /// the two to the same result).
    fn parse_with(text: &str, file: &Path, fast: bool) -> Result<Config, ConfigError> {
        // A large file is read in batches of connectors, each validated as it is read
        // (`split`); anything unusual and every error is left to the parse of the whole
        // document, whose errors are the ones located.
        if let Some(config) = fast.then(|| split::load(text, file)).flatten() {
            return Ok(config);
        }
        let locator = Locator::new(text);
        let located =
            |span: Option<std::ops::Range<usize>>, key: Option<String>, message: String| {
                let (line, column) = match span {
                    Some(s) => {
                        let (l, c) = locator.line_col(s.start);
                        (Some(l), Some(c))
                    }
                    None => (None, None),
                };
                ConfigError {
                    file: file.to_owned(),
                    line,
                    column,
                    key,
                    message,
                }
            };
        let raw = toml::from_str::<raw::RawConfig>(text).map_err(|e| {
            let message = e.message().trim().to_owned();
            let Some(span) = e.span() else {
                // toml gives no place for a key nested beyond its recursion limit; the
                // deepest key is where it was reached. Any other error without a place is
                // put at the start of the file, so that every error has one.
                let deepest = locate::deepest_key(text).filter(|_| message.contains("recursion"));
                return match deepest {
                    Some((at, key)) => located(
                        Some(at..at),
                        Some(key),
                        format!("{message}: keys or tables are nested too deeply"),
                    ),
                    None => located(Some(0..0), None, message),
                };
            };
            let key = locator
                .path_at(&span)
                .map(|p| p.to_string())
                .or_else(|| locator.key_on_line(span.start));
            located(Some(span), key, message)
        })?;
        validate::validate(raw, file).map_err(|(path, message)| {
            located(locator.span_of(&path), Some(path.to_string()), message)
        })
    }

    /// The configuration as TOML with every default written out (what `check-config` prints).
    pub fn effective_toml(&self) -> String {
        effective::render(self)
    }

    pub fn connector(&self, name: &str) -> Option<&Connector> {
        self.connectors.iter().find(|c| c.name == name)
    }
}

/// The configuration path: `--config`, else `$CONNECTOR_PROBE_CONFIG`, else [`DEFAULT_PATH`].
pub fn resolve_path(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_owned();
    }
    match std::env::var_os(ENV_VAR) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_PATH),
    }
}

/// A duration as the configuration writes it: `14d`, `5m`, `1h30m`, `1s500ms`. The inverse
/// of the parser, so `check-config` output reads like a hand-written file and loads again.
pub fn format_duration(d: Duration) -> String {
    // Down to the nanosecond, as the parser reads: stopping at milliseconds turned "1500us"
    // into "1ms" and "1ns" into "0s", which the loader then rejects (found by the property tests).
    const UNITS: [(u128, &str); 7] = [
        (86_400_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    let mut left = d.as_nanos();
    if left == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (size, unit) in UNITS {
        if left >= size {
            out.push_str(&format!("{}{unit}", left / size));
            left %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        for (ms, text) in [
            (1_209_600_000u64, "14d"),
            (300_000, "5m"),
            (5_400_000, "1h30m"),
            (1_500, "1s500ms"),
            (0, "0s"),
            (90_061_001, "1d1h1m1s1ms"),
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(format_duration(d), text);
            assert_eq!(humantime::parse_duration(text).unwrap(), d, "{text}");
        }
    }
}

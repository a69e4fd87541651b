//! The configuration as written: serde structs that mirror the TOML, every key optional,
//! unknown keys rejected. Nothing here applies defaults; see `validate`.

use serde::Deserialize;

use super::{CertificateFailureCode, IpFamily, TlsMode};

/// A duration as written in the file ("10s", "5m", "14d", "1h 30m").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawDuration(pub std::time::Duration);

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(text.trim())
            .map(RawDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {text:?} ({e}); write e.g. \"30s\", \"5m\", \"24h\" or \"14d\""
                ))
            })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub defaults: RawSettings,
    #[serde(default)]
    pub dns: RawDns,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub daemon: RawDaemon,
    #[serde(default, rename = "connector")]
    pub connectors: Vec<RawConnector>,
}

/// The settings every connector inherits from `[defaults]` and may override.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub helo_name: Option<String>,
    pub port: Option<u16>,
    pub interval: Option<RawDuration>,
    pub tls: Option<TlsMode>,
    pub expiry_warning: Option<RawDuration>,
    pub ip_family: Option<IpFamily>,
    pub certificate_failure_code: Option<CertificateFailureCode>,
    pub timeouts: Option<RawTimeouts>,
    pub max_mx_hosts: Option<usize>,
    pub max_addresses_per_host: Option<usize>,
    pub max_targets: Option<usize>,
    pub source_address: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub dns: Option<RawDuration>,
    pub connect: Option<RawDuration>,
    pub banner: Option<RawDuration>,
    pub command: Option<RawDuration>,
    pub tls: Option<RawDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    pub nameservers: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca_file: Option<String>,
    pub crl_file: Option<String>,
    pub revocation: Option<super::Revocation>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub concurrency: Option<usize>,
    pub message_expiration: Option<RawDuration>,
    pub queue_alert_after: Option<RawDuration>,
    pub metrics_listen: Option<String>,
    pub state_file: Option<String>,
    pub max_connections: Option<usize>,
    pub vantage: Option<String>,
    pub shard: Option<String>,
}

/// One `[[connector]]`. The inherited settings are repeated here rather than flattened,
/// because serde cannot combine `flatten` with `deny_unknown_fields`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnector {
    pub name: String,
    pub smart_hosts: Option<Vec<String>>,
    pub mx_domain: Option<String>,
    pub tls_domain: Option<String>,
    pub helo_name: Option<String>,
    pub port: Option<u16>,
    pub interval: Option<RawDuration>,
    pub tls: Option<TlsMode>,
    pub expiry_warning: Option<RawDuration>,
    pub ip_family: Option<IpFamily>,
    pub certificate_failure_code: Option<CertificateFailureCode>,
    pub timeouts: Option<RawTimeouts>,
    pub max_mx_hosts: Option<usize>,
    pub max_addresses_per_host: Option<usize>,
    pub max_targets: Option<usize>,
    pub source_address: Option<String>,
}

impl RawConnector {
    /// The connector's own overrides, in the shape of `[defaults]`.
    pub fn overrides(&self) -> RawSettings {
        RawSettings {
            helo_name: self.helo_name.clone(),
            port: self.port,
            interval: self.interval,
            tls: self.tls,
            expiry_warning: self.expiry_warning,
            ip_family: self.ip_family,
            certificate_failure_code: self.certificate_failure_code,
            timeouts: self.timeouts.clone(),
            max_mx_hosts: self.max_mx_hosts,
            max_addresses_per_host: self.max_addresses_per_host,
            max_targets: self.max_targets,
            source_address: self.source_address.clone(),
        }
    }
}

//! Renders a [`Config`] back to TOML with every default written out: what `check-config`
//! prints, and itself a valid configuration file.

use std::fmt::Write;
use std::time::Duration;

use super::{Config, Route, Settings};

fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn dur(d: Duration) -> String {
    quote(&super::format_duration(d))
}

fn list(items: impl IntoIterator<Item = String>) -> String {
    let quoted: Vec<String> = items.into_iter().map(|s| quote(&s)).collect();
    format!("[{}]", quoted.join(", "))
}

fn settings(out: &mut String, table: &str, s: &Settings) {
    let _ = writeln!(out, "helo_name = {}", quote(&s.helo_name));
    let _ = writeln!(out, "port = {}", s.port);
    let _ = writeln!(out, "interval = {}", dur(s.interval));
    let _ = writeln!(out, "tls = {}", quote(s.tls.as_str()));
    let _ = writeln!(out, "expiry_warning = {}", dur(s.expiry_warning));
    let _ = writeln!(out, "ip_family = {}", quote(s.ip_family.as_str()));
    let _ = writeln!(
        out,
        "certificate_failure_code = {}",
        quote(s.certificate_failure_code.as_str())
    );
    let b = &s.bounds;
    let _ = writeln!(out, "max_mx_hosts = {}", b.max_mx_hosts);
    let _ = writeln!(out, "max_addresses_per_host = {}", b.max_addresses_per_host);
    let _ = writeln!(out, "max_targets = {}", b.max_targets);
    let source = s.source_address.map(|a| a.to_string()).unwrap_or_default();
    let _ = writeln!(out, "source_address = {}", quote(&source));
    let t = &s.timeouts;
    let _ = writeln!(out, "\n[{table}.timeouts]");
    let _ = writeln!(out, "dns = {}", dur(t.dns));
    let _ = writeln!(out, "connect = {}", dur(t.connect));
    let _ = writeln!(out, "banner = {}", dur(t.banner));
    let _ = writeln!(out, "command = {}", dur(t.command));
    let _ = writeln!(out, "tls = {}", dur(t.tls));
}

pub fn render(c: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# effective configuration of {}", c.source.display());
    let _ = writeln!(out, "\n[defaults]");
    settings(&mut out, "defaults", &c.defaults);

    let _ = writeln!(out, "\n[dns]");
    let _ = writeln!(
        out,
        "nameservers = {}",
        list(c.dns.nameservers.iter().map(|a| a.to_string()))
    );

    let _ = writeln!(out, "\n[tls]");
    let path = |p: &Option<std::path::PathBuf>| {
        quote(
            &p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        )
    };
    let _ = writeln!(out, "ca_file = {}", path(&c.tls.ca_file));
    let _ = writeln!(out, "crl_file = {}", path(&c.tls.crl_file));
    let _ = writeln!(out, "revocation = {}", quote(c.tls.revocation.as_str()));

    let d = &c.daemon;
    let _ = writeln!(out, "\n[daemon]");
    let _ = writeln!(out, "concurrency = {}", d.concurrency);
    let _ = writeln!(out, "message_expiration = {}", dur(d.message_expiration));
    let _ = writeln!(out, "queue_alert_after = {}", dur(d.queue_alert_after));
    let listen = d.metrics_listen.map(|a| a.to_string()).unwrap_or_default();
    let _ = writeln!(out, "metrics_listen = {}", quote(&listen));
    let _ = writeln!(out, "state_file = {}", path(&d.state_file));
    let _ = writeln!(out, "max_connections = {}", d.max_connections);
    let _ = writeln!(out, "vantage = {}", quote(&d.vantage));
    let shard = d.shard.map(|s| s.to_string()).unwrap_or_default();
    let _ = writeln!(out, "shard = {}", quote(&shard));

    for conn in &c.connectors {
        let _ = writeln!(out, "\n[[connector]]");
        let _ = writeln!(out, "name = {}", quote(&conn.name));
        match &conn.route {
            Route::SmartHosts(hosts) => {
                let _ = writeln!(
                    out,
                    "smart_hosts = {}",
                    list(hosts.iter().map(|h| h.to_string()))
                );
            }
            Route::Mx(domain) => {
                let _ = writeln!(out, "mx_domain = {}", quote(domain));
            }
        }
        if let Some(d) = &conn.tls_domain {
            let _ = writeln!(out, "tls_domain = {}", quote(&d.to_string()));
        }
        settings(&mut out, "connector", &conn.settings);
    }
    out
}

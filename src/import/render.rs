//! The TOML an import writes: `[[connector]]` entries, each under a comment that says which
//! Exchange connector it came from and what the import noticed; or a whole configuration file
//! with those entries.

use std::fmt::Write;

use super::map::{Entry, Mapped};
use crate::config::Route;

/// Above this many smart hosts (an expanded range), one per line.
const HOSTS_PER_LINE: usize = 3;

/// The entries alone, to paste into a configuration or to diff against one.
pub fn fragment(connectors: &[Mapped], source: &str) -> String {
    let mut out = format!(
        "# Outbound connectors imported from Exchange Online ({}) by `connector-probe import exchange`.\n",
        comment(source)
    );
    for m in connectors {
        out.push('\n');
        connector(&mut out, m);
    }
    out
}

/// A configuration file: a header, `[defaults]` for the admin, then the entries.
pub fn config_file(connectors: &[Mapped], source: &str) -> String {
    let mut out = String::from(
        "# connector-probe configuration.
#
# The [[connector]] entries below were imported from Exchange Online. To keep them in step,
# export and import again after changing connectors in Exchange (see the README); importing
# with --force replaces this whole file, [defaults] included. Check the file with
# `connector-probe check-config`. Every key and its default: config/connector-probe.toml.

[defaults]
# Settings every connector inherits. Each imported connector sets its own tls, as Exchange's
# TlsSettings says, so a tls here changes none of them.
# helo_name = \"probe.contoso.com\"   # the EHLO name; default: this machine's FQDN
# interval = \"5m\"                   # how often the daemon probes each connector

",
    );
    out.push_str(&fragment(connectors, source));
    out
}

fn connector(out: &mut String, m: &Mapped) {
    let about = match m.about.as_slice() {
        [] => String::new(),
        about => format!(": {}", about.join(", ")),
    };
    let _ = writeln!(
        out,
        "# Exchange connector {}",
        comment(&format!("{}{about}", m.label))
    );
    for f in &m.findings {
        let _ = writeln!(out, "# {}: {}", f.severity.as_str(), comment(&f.detail()));
    }
    for (i, e) in m.entries.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        entry(out, e);
    }
}

fn entry(out: &mut String, e: &Entry) {
    let _ = writeln!(out, "[[connector]]");
    let _ = writeln!(out, "name = {}", quote(&e.name));
    match &e.route {
        Route::SmartHosts(hosts) => {
            let hosts: Vec<String> = hosts.iter().map(|h| quote(&h.to_string())).collect();
            if hosts.len() > HOSTS_PER_LINE {
                let _ = writeln!(out, "smart_hosts = [\n    {},\n]", hosts.join(",\n    "));
            } else {
                let _ = writeln!(out, "smart_hosts = [{}]", hosts.join(", "));
            }
        }
        Route::Mx(domain) => {
            let _ = writeln!(out, "mx_domain = {}", quote(domain));
        }
    }
    let _ = writeln!(out, "tls = {}", quote(e.tls.as_str()));
    if let Some(domain) = &e.tls_domain {
        let _ = writeln!(out, "tls_domain = {}", quote(&domain.to_string()));
    }
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// Text from the export made safe for a TOML comment, which ends at a line break and may
/// hold no other control character.
fn comment(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

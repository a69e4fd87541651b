//! `explain`'s output: text for people, one JSON object per line for scripts.

use std::fmt::Write;

use serde::Serialize;

use super::parse::{Explained, Kind};
use super::pick::Entry;
use super::recheck::Recheck;

/// One JSON object per entry, one per output line. A recognised line has interface.md's keys
/// (input, kind, code, title, message, mfi_code, condition, stage, server, ip, port, fix)
/// plus its parts and `"recognised": true`; an unrecognised one has the same keys, null, and
/// `"recognised": false`. With `--probe`, `probe` holds the new result.
pub fn json(entries: &[Entry], rechecks: &[Option<Recheck>]) -> String {
    let mut out = String::new();
    for (i, entry) in entries.iter().enumerate() {
        let probe = rechecks.get(i).and_then(Option::as_ref);
        let line = match entry {
            Ok(explained) => serde_json::to_string(&Recognised {
                explained,
                recognised: true,
                probe,
            }),
            Err(input) => serde_json::to_string(&Unrecognised {
                input,
                ..Unrecognised::default()
            }),
        };
        // Serialising these types cannot fail: every map key is a string.
        out.push_str(&line.unwrap_or_default());
        out.push('\n');
    }
    out
}

/// A recognised line: its fields in interface.md's order, then what `--probe` found.
#[derive(Serialize)]
struct Recognised<'a> {
    #[serde(flatten)]
    explained: &'a Explained,
    recognised: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    probe: Option<&'a Recheck>,
}

/// A line not recognised: the documented keys, null.
#[derive(Serialize, Default)]
struct Unrecognised<'a> {
    input: &'a str,
    kind: Option<()>,
    code: Option<()>,
    title: Option<()>,
    message: Option<()>,
    mfi_code: Option<()>,
    condition: Option<()>,
    stage: Option<()>,
    server: Option<()>,
    ip: Option<()>,
    port: Option<()>,
    fix: Option<()>,
    recognised: bool,
}

/// The report for people: each line, then what it means and what to do.
pub fn human(entries: &[Entry], rechecks: &[Option<Recheck>]) -> String {
    let mut out = String::new();
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match entry {
            Ok(e) => explained(&mut out, e),
            Err(input) => {
                let _ = writeln!(out, "{input}");
                let _ = writeln!(
                    out,
                    "  not recognised: no status code that Exchange Online (or on-premises Exchange) writes for delivery through a connector"
                );
            }
        }
        if let Some(Some(r)) = rechecks.get(i) {
            let _ = writeln!(out, "  now:       {}", r.summary);
            if let Some(c) = &r.connector {
                let which = if r.configured {
                    format!("the configured connector {c}")
                } else {
                    "a connector built from the line".to_owned()
                };
                let _ = writeln!(
                    out,
                    "             (probed with {which}, tls {})",
                    r.tls_mode.unwrap_or("?")
                );
            }
        }
    }
    out
}

fn explained(out: &mut String, e: &Explained) {
    let _ = writeln!(out, "{}", e.input);
    let what = match e.kind {
        Kind::Queue => "a queue line from Exchange Online (the connector's queue, LastError)",
        Kind::Ndr => "a non-delivery report from Exchange Online",
        Kind::Trace => "a message-trace reason from Exchange Online",
        Kind::Onprem => {
            "a line from on-premises Exchange's own queue: the on-prem side failed, not Exchange Online's connector"
        }
    };
    let _ = writeln!(out, "  what:      {what}");
    let title = e.title.as_deref().unwrap_or("");
    match &e.mfi_code {
        Some(m) if *m != e.code => {
            let _ = writeln!(
                out,
                "  code:      {} {title} (mail flow intelligence: {m})",
                e.code
            );
        }
        _ => {
            let _ = writeln!(out, "  code:      {} {title}", e.code);
        }
    }
    match e.stage {
        Some(s) => {
            let _ = writeln!(
                out,
                "  condition: {} (probe stage: {s})",
                e.condition.as_str()
            );
        }
        None => {
            let _ = writeln!(out, "  condition: {}", e.condition.as_str());
        }
    }
    let mut server = e.server.clone().unwrap_or_default();
    if let Some(ip) = e.ip.as_ref().filter(|ip| **ip != server) {
        if !server.is_empty() {
            server.push_str(" at ");
        }
        server.push_str(ip);
    }
    if let Some(p) = e.port {
        let _ = write!(server, " port {p}");
    }
    if !server.is_empty() {
        let _ = writeln!(out, "  server:    {}", server.trim());
    }
    if let Some(m) = &e.message {
        // The certificate's parts, the reply and the socket error have lines of their own.
        if e.certificate.is_none() && e.reply.is_none() && e.socket_error.is_none() {
            let _ = writeln!(out, "  message:   {m}");
        }
    }
    if let Some(c) = &e.certificate {
        let _ = writeln!(out, "  certificate status: {}", c.status);
        for (label, v) in [
            ("expected subject", &c.expected_subject),
            ("presented subject", &c.presented_subject),
            ("thumbprint", &c.thumbprint),
        ] {
            if let Some(v) = v {
                let _ = writeln!(out, "    {label}: {v}");
            }
        }
    }
    if let Some(r) = &e.reply {
        let _ = writeln!(out, "  the server replied: {r}");
    }
    if let (Some(n), Some(t)) = (e.socket_error, e.socket_error_text) {
        let _ = writeln!(out, "  socket error: {n} ({t})");
    }
    if let Some(lrt) = e.trace.as_ref().and_then(|t| t.lrt.as_deref()) {
        let _ = writeln!(out, "  last retry: {lrt}");
    }
    let _ = writeln!(out, "  fix:       {}", e.fix);
}

//! Renderings of a verdict: the human report (one line per connector, then its targets) and
//! the JSON of `interface.md`.

use std::fmt::Write;
use std::io;

use crate::escape::escape;
use crate::verdict::{ConnectorVerdict, Status, TargetVerdict};

/// JSON, then a newline: one object for one connector, an array for `--all`. It is written
/// as it is serialised, so ten thousand connectors' report (some 20 MB) is never held in
/// memory as one string.
pub fn write_json<W: io::Write>(
    mut out: W,
    verdicts: &[ConnectorVerdict],
    as_array: bool,
) -> io::Result<()> {
    if as_array {
        serde_json::to_writer_pretty(&mut out, verdicts)?;
    } else {
        serde_json::to_writer_pretty(&mut out, &verdicts[0])?;
    }
    out.write_all(b"\n")?;
    out.flush()
}

/// The report an admin reads at a glance.
pub fn human(verdicts: &[ConnectorVerdict]) -> String {
    let mut out = String::new();
    for v in verdicts {
        connector(&mut out, v);
    }
    out
}

fn connector(out: &mut String, v: &ConnectorVerdict) {
    let headline = match (&v.code, &v.title) {
        (Some(code), Some(title)) => format!("{code} {title}"),
        _ => match v.status {
            Status::Ok => "mail would be delivered".to_owned(),
            Status::Warning => "mail would be delivered, with warnings".to_owned(),
            Status::Degraded => {
                "some targets fail; Microsoft 365 would fail over to the others".to_owned()
            }
            Status::Failing => "no target could be probed".to_owned(),
        },
    };
    let _ = writeln!(
        out,
        "{}  {}  {}  ({}, {} target(s), {:.0} ms)",
        v.connector,
        v.status.as_str().to_uppercase(),
        headline,
        v.tls_mode.as_str(),
        v.targets.len(),
        v.duration_ms
    );
    for t in &v.targets {
        target(out, t);
    }
    let _ = writeln!(out);
}

fn target(out: &mut String, t: &TargetVerdict) {
    let mark = if !t.succeeded() {
        "FAIL"
    } else if t.warnings.is_empty() {
        "ok  "
    } else {
        "WARN"
    };
    let code = t
        .code
        .as_deref()
        .map(|c| format!("{c}  "))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  {mark} {} {}  stage {}  {code}{}",
        escape(&t.host),
        t.endpoint(),
        t.stage,
        escape(&t.detail)
    );
    let timings: Vec<String> = t
        .timings_ms
        .iter()
        .map(|(s, ms)| format!("{s} {ms:.1} ms"))
        .collect();
    if !timings.is_empty() {
        let _ = writeln!(out, "       timings: {}", timings.join(", "));
    }
    if let Some(b) = &t.banner {
        let _ = writeln!(out, "       banner: {}", escape(b));
    }
    if let Some(tls) = &t.tls {
        let _ = writeln!(out, "       tls: {} {}", tls.version, tls.cipher);
    }
    if let Some(c) = &t.certificate {
        let _ = writeln!(out, "       certificate: {}", escape(&c.subject));
        if !c.names.is_empty() {
            let _ = writeln!(out, "         names: {}", escape(c.names.join(", ")));
        }
        let _ = writeln!(out, "         issuer: {}", escape(&c.issuer));
        let _ = writeln!(
            out,
            "         valid: {} to {} ({} day(s) left), chain of {}",
            c.not_before, c.not_after, c.days_left, c.chain_length
        );
        let _ = writeln!(out, "         sha1: {}", c.sha1_thumbprint);
    }
    for w in &t.warnings {
        let _ = writeln!(out, "       warning: {}", escape(w));
    }
    if let (Some(eop), Some((code, _))) = (&t.eop_status, &t.failure) {
        let _ = writeln!(out, "       EOP would show: {}", escape(eop));
        let _ = writeln!(out, "       fix: {}", code.fix());
    }
}

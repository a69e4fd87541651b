//! Renderings of a verdict: the human report (one line per connector, then its targets) and
//! the JSON of `interface.md`.

use std::fmt::Write;
use std::io;
use std::time::Duration;

use crate::escape::escape;
use crate::verdict::{Code, ConnectorVerdict, Status, TargetVerdict};

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

/// The report an admin reads at a glance. `message_expiration` is EOP's queue lifetime (the
/// daemon's setting), after which queued mail comes back to the sender.
pub fn human(verdicts: &[ConnectorVerdict], message_expiration: Duration) -> String {
    let mut out = String::new();
    for v in verdicts {
        connector(&mut out, v, message_expiration);
    }
    out
}

fn connector(out: &mut String, v: &ConnectorVerdict, message_expiration: Duration) {
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
    if let (Some(code), Some(title), Some(eop)) = (v.code, v.title, &v.eop_status) {
        consequences(
            out,
            "  ",
            v.code_kind,
            code,
            title,
            eop,
            v.ndr_line.as_deref(),
            message_expiration,
        );
        if let Some(fix) = v.fix {
            let _ = writeln!(out, "  fix: {fix}");
        }
    }
    for w in &v.warnings {
        let _ = writeln!(out, "  warning: {}", escape(w));
    }
    for t in &v.targets {
        target(out, t, message_expiration);
    }
    let _ = writeln!(out);
}

/// What Microsoft 365 would do, in the admin's terms: the queue line, the alert's code, and
/// the NDR senders get (at once for a code EOP does not queue).
#[allow(clippy::too_many_arguments)] // each is one line of the report
fn consequences(
    out: &mut String,
    indent: &str,
    kind: Option<Code>,
    code: &str,
    title: &str,
    eop: &str,
    ndr_line: Option<&str>,
    message_expiration: Duration,
) {
    let queued = kind.is_none_or(Code::is_queued);
    if queued {
        let _ = writeln!(out, "{indent}Microsoft 365 would queue: {}", escape(eop));
    } else {
        let _ = writeln!(
            out,
            "{indent}Microsoft 365 would bounce at once: {}",
            escape(eop)
        );
    }
    let _ = writeln!(out, "{indent}mail flow intelligence: {code} {title}");
    if let Some(ndr) = ndr_line.filter(|_| queued) {
        let _ = writeln!(
            out,
            "{indent}after {} senders get: {}",
            crate::config::format_duration(message_expiration),
            escape(ndr)
        );
    }
}

fn target(out: &mut String, t: &TargetVerdict, message_expiration: Duration) {
    let mark = if !t.succeeded() {
        "FAIL"
    } else if t.warnings.is_empty() {
        "ok  "
    } else {
        "WARN"
    };
    let code = t.code.map(|c| format!("{c}  ")).unwrap_or_default();
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
    if let (Some(eop), Some(judged), Some(code), Some(title)) =
        (&t.eop_status, &t.failure, t.code, t.title)
    {
        consequences(
            out,
            "       ",
            Some(judged.code),
            code,
            title,
            eop,
            t.ndr_line.as_deref(),
            message_expiration,
        );
        if let Some(fix) = t.fix {
            let _ = writeln!(out, "       fix: {fix}");
        }
    }
}

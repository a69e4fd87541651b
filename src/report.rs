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

/// How [`Stream`] renders each verdict.
#[derive(Debug, Clone, Copy)]
pub enum Format {
    /// The JSON of `interface.md`: one object, or with `as_array` an array of them.
    Json { as_array: bool },
    /// The human report; `message_expiration` as for [`human`].
    Human { message_expiration: Duration },
}

/// A report written verdict by verdict, as the probes end, so that `probe --all` holds no
/// verdict once it is written: the output is the same as [`write_json`]'s or [`human`]'s
/// for the same verdicts in the same order. A reader that went away (a broken pipe, as in
/// `probe --all | head`) ends the writing quietly; any other write error is kept for
/// [`Stream::finish`], and nothing more is written after it.
pub struct Stream<W: io::Write> {
    out: W,
    format: Format,
    written: usize,
    error: Option<io::Error>,
    gone: bool,
}

impl<W: io::Write> Stream<W> {
    pub fn new(out: W, format: Format) -> Stream<W> {
        Stream {
            out,
            format,
            written: 0,
            error: None,
            gone: false,
        }
    }

    /// Writes one verdict, and flushes it, so a reader sees each connector as it finishes.
    pub fn push(&mut self, v: &ConnectorVerdict) {
        if self.gone || self.error.is_some() {
            return;
        }
        let result = self.render(v).and_then(|()| self.out.flush());
        self.written += 1;
        self.keep(result);
    }

    fn render(&mut self, v: &ConnectorVerdict) -> io::Result<()> {
        match self.format {
            Format::Json { as_array: false } => {
                serde_json::to_writer_pretty(&mut self.out, v)?;
                self.out.write_all(b"\n")
            }
            Format::Json { as_array: true } => {
                // As serde_json writes a pretty array: each element on its own lines,
                // indented by two. A JSON string holds no raw newline, so indenting after
                // every newline touches only the layout.
                let text = serde_json::to_string_pretty(v)?;
                let opening: &[u8] = if self.written == 0 {
                    b"[\n  "
                } else {
                    b",\n  "
                };
                self.out.write_all(opening)?;
                self.out.write_all(text.replace('\n', "\n  ").as_bytes())
            }
            Format::Human { message_expiration } => {
                let mut text = String::new();
                connector(&mut text, v, message_expiration);
                self.out.write_all(text.as_bytes())
            }
        }
    }

    fn keep(&mut self, result: io::Result<()>) {
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => self.gone = true,
            Err(e) => self.error = Some(e),
        }
    }

    /// Closes the array (an empty one is `[]`) and reports the first write error.
    pub fn finish(mut self) -> io::Result<()> {
        if !self.gone && self.error.is_none() {
            let closing: &[u8] = match self.format {
                Format::Json { as_array: true } if self.written == 0 => b"[]\n",
                Format::Json { as_array: true } => b"\n]\n",
                _ => b"",
            };
            let result = self.out.write_all(closing).and_then(|()| self.out.flush());
            self.keep(result);
        }
        self.error.map_or(Ok(()), Err)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(name: &str, status: Status) -> ConnectorVerdict {
        let failing = (status == Status::Failing).then_some((
            Code::ConnectionRefused,
            crate::verdict::Condition::ConnectRefused,
        ));
        ConnectorVerdict {
            eop_status: Some("450 4.4.316 \"quoted\"\nand a newline".into()),
            warnings: vec!["a warning".into()],
            ..ConnectorVerdict::sample(name, status, failing)
        }
    }

    fn streamed(format: Format, verdicts: &[ConnectorVerdict]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut stream = Stream::new(&mut out, format);
        for v in verdicts {
            stream.push(v);
        }
        stream.finish().unwrap();
        out
    }

    #[test]
    fn a_streamed_report_is_the_whole_report_written_at_once() {
        let verdicts = [
            verdict("a", Status::Ok),
            verdict("b", Status::Failing),
            verdict("c", Status::Warning),
        ];
        for n in 0..=verdicts.len() {
            let some = &verdicts[..n];
            let mut whole = Vec::new();
            write_json(&mut whole, some, true).unwrap();
            let streamed = streamed(Format::Json { as_array: true }, some);
            assert_eq!(
                String::from_utf8(streamed).unwrap(),
                String::from_utf8(whole).unwrap(),
                "{n} verdict(s)"
            );
        }
        let mut one = Vec::new();
        write_json(&mut one, &verdicts[1..2], false).unwrap();
        assert_eq!(
            streamed(Format::Json { as_array: false }, &verdicts[1..2]),
            one
        );
        let expiration = Duration::from_secs(86_400);
        let human_text = human(&verdicts, expiration);
        let streamed = streamed(
            Format::Human {
                message_expiration: expiration,
            },
            &verdicts,
        );
        assert_eq!(String::from_utf8(streamed).unwrap(), human_text);
    }

    /// A writer that takes `left` bytes, then fails with `kind`.
    struct Failing {
        left: usize,
        kind: io::ErrorKind,
    }

    impl io::Write for Failing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(self.kind.into());
            }
            let n = buf.len().min(self.left);
            self.left -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_reader_that_left_is_quiet_and_a_full_disk_is_reported() {
        let v = verdict("a", Status::Ok);
        for (kind, quiet) in [
            (io::ErrorKind::BrokenPipe, true),
            (io::ErrorKind::StorageFull, false),
        ] {
            let mut stream =
                Stream::new(Failing { left: 10, kind }, Format::Json { as_array: true });
            stream.push(&v);
            stream.push(&v);
            assert_eq!(stream.finish().is_ok(), quiet, "{kind:?}");
        }
    }
}

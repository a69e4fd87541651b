//! The HTML of the status page (every connector, worst first) and of a connector's view.
//! Pure functions of a snapshot and the clock, so the benchmark and the tests call them as
//! the daemon does.

use super::html::{Html, path_segment};
use super::timeline;
use crate::daemon::history::{Entry, Latest, Named};
use crate::verdict::Status;

/// How often the page reloads itself.
pub const REFRESH_SECS: u32 = 30;

/// What the page is rendered against.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// Unix seconds.
    pub now: i64,
    /// EOP's `MessageExpiration`, seconds: when queued mail starts coming back as NDRs.
    pub message_expiration: i64,
}

const STYLE: &str = "<style>
:root{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d2329;background:#f4f6f8}
body{margin:0 auto;padding:16px 24px;max-width:1500px}
h1{font-size:1.35rem;margin:0 0 4px}
h2{font-size:1.05rem;margin:22px 0 8px}
a{color:#0b5cad;text-decoration:none}a:hover{text-decoration:underline}
.sub{color:#5a6570;margin:0 0 14px;font-size:.9rem}
.counts span{display:inline-block;margin-right:10px}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0002;font-size:.86rem}
th,td{padding:6px 8px;border-bottom:1px solid #e3e7eb;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600;white-space:nowrap}
td.code{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:nowrap}
td.line{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.78rem;max-width:520px;overflow-wrap:anywhere;color:#333}
td.num,td.when,td.name{white-space:nowrap}
.b{display:inline-block;min-width:64px;text-align:center;border-radius:10px;padding:1px 8px;color:#fff;font-weight:600;font-size:.78rem}
.b.ok{background:#2f9e5b}.b.warning{background:#d6a300}.b.degraded{background:#e07a1f}.b.failing{background:#cf3129}.b.unknown{background:#8a949e}
tr.failing td:first-child{box-shadow:inset 4px 0 #cf3129}tr.degraded td:first-child{box-shadow:inset 4px 0 #e07a1f}
.late{color:#cf3129;font-weight:600}.soon{color:#b36b00;font-weight:600}.dim{color:#8a949e}
svg.tl{width:180px;height:12px;display:block;background:#eef1f4}
svg.tl-big{width:100%;height:auto;display:block}
.card{background:#fff;box-shadow:0 1px 2px #0002;padding:12px 16px;margin-bottom:14px}
dl{display:grid;grid-template-columns:max-content auto;gap:4px 16px;margin:0}dt{color:#5a6570}dd{margin:0;overflow-wrap:anywhere}
.fix{border-left:4px solid #0b5cad;background:#eaf2fb;padding:10px 14px;margin:12px 0}
.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.8rem;overflow-wrap:anywhere}
ul.t{margin:0;padding-left:18px}
</style>";

fn head(h: &mut Html, title: &str, refresh: bool) {
    h.raw("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    if refresh {
        h.raw("<meta http-equiv=\"refresh\" content=\"")
            .text(REFRESH_SECS)
            .raw("\">");
    }
    h.raw("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>")
        .text(title)
        .raw("</title>")
        .raw(STYLE)
        .raw("</head><body>");
}

/// How bad a connector is, for the order of the rows: failing first, unknown last.
fn rank(status: Option<Status>) -> u8 {
    match status {
        Some(Status::Failing) => 0,
        Some(Status::Degraded) => 1,
        Some(Status::Warning) => 2,
        Some(Status::Ok) => 3,
        None => 4,
    }
}

/// The rows in the page's order: worst first; among failing ones the longest failing first
/// (their NDRs come first); then by name.
pub fn order(entries: &mut [Named]) {
    entries.sort_by(|(an, a), (bn, b)| {
        rank(a.status())
            .cmp(&rank(b.status()))
            .then_with(|| {
                a.failing_since
                    .unwrap_or(i64::MAX)
                    .cmp(&b.failing_since.unwrap_or(i64::MAX))
            })
            .then_with(|| an.cmp(bn))
    });
}

fn badge(h: &mut Html, status: Option<Status>) {
    let name = status.map_or("unknown", Status::as_str);
    h.raw("<span class=\"b ")
        .text(name)
        .raw("\">")
        .text(name)
        .raw("</span>");
}

/// The page of every connector; `entries` in any order.
pub fn list(entries: &mut [Named], cx: &Context) -> String {
    order(entries);
    let mut counts = [0usize; 5];
    for (_, e) in entries.iter() {
        counts[usize::from(rank(e.status()))] += 1;
    }
    let mut h = Html::with_capacity(1024 + entries.len() * 1100);
    let title = if counts[0] > 0 {
        format!("{} failing · connector-probe", counts[0])
    } else {
        "connector-probe".to_owned()
    };
    head(&mut h, &title, true);
    h.raw("<h1>Outbound connectors</h1><p class=\"sub counts\">");
    for (i, label) in ["failing", "degraded", "warning", "ok", "not probed yet"]
        .iter()
        .enumerate()
    {
        h.raw("<span><b>")
            .text(counts[i])
            .raw("</b> ")
            .text(label)
            .raw("</span>");
    }
    h.raw("<span class=\"dim\">· ")
        .text(date_time(cx.now))
        .raw(" · refreshes every ")
        .text(REFRESH_SECS)
        .raw(" s · <a href=\"/api/v1/connectors\">JSON</a> · <a href=\"/metrics\">metrics</a></span></p>");
    h.raw("<table><thead><tr><th>Status</th><th>Connector</th><th>Code</th><th>Queue line (what EOP shows)</th><th>Since</th><th>NDRs</th><th>Certificate expires</th><th>Last probe</th><th>Last 24 h (UTC)</th></tr></thead><tbody>\n");
    for (name, e) in entries.iter() {
        row(&mut h, name, e, cx);
    }
    h.raw("</tbody></table>");
    if entries.is_empty() {
        h.raw("<p class=\"sub\">No connectors are configured.</p>");
    }
    h.raw("</body></html>\n");
    h.finish()
}

fn row(h: &mut Html, name: &str, e: &Entry, cx: &Context) {
    let status = e.status();
    h.raw("<tr class=\"")
        .text(status.map_or("unknown", Status::as_str))
        .raw("\" data-connector=\"")
        .text(name)
        .raw("\"><td>");
    badge(h, status);
    h.raw("</td><td class=\"name\"><a href=\"/connector/")
        .text(path_segment(name))
        .raw("\">")
        .text(name)
        .raw("</a></td><td class=\"code\">");
    let latest = e.latest.as_ref();
    let code = latest.and_then(Latest::code).or_else(|| {
        e.latest
            .is_none()
            .then(|| e.history.last().and_then(|t| t.code.as_deref()))
            .flatten()
    });
    if let Some(code) = code {
        h.text(code);
    }
    h.raw("</td><td class=\"line\">");
    match latest {
        Some(l) => {
            if let Some(line) = l.eop_status() {
                h.text(line);
            }
        }
        None => {
            h.raw("<span class=\"dim\">not probed since the daemon started</span>");
        }
    }
    h.raw("</td><td class=\"when\">");
    since(h, e, cx);
    h.raw("</td><td class=\"when\">");
    ndr(h, e, cx);
    h.raw("</td><td class=\"when\">");
    if let Some(expiry) = latest.and_then(Latest::earliest_expiry) {
        expiry_cell(h, expiry, cx);
    }
    h.raw("</td><td class=\"when\">");
    last_probe(h, e, cx);
    h.raw("</td><td>");
    timeline::render(h, &e.history, cx.now, true);
    h.raw("</td></tr>\n");
}

fn since(h: &mut Html, e: &Entry, cx: &Context) {
    // Failing: since the episode began (what EOP's queue counts from). Otherwise: since the
    // last transition, when it is known.
    let at = match (e.status(), e.failing_since) {
        (Some(Status::Failing), Some(since)) => Some(since),
        _ => e.history.last().map(|t| t.at),
    };
    if let Some(at) = at {
        h.text(ago(cx.now - at))
            .raw("<br><span class=\"dim\">")
            .text(date_time(at))
            .raw("</span>");
    }
}

/// When senders get non-delivery reports: at `failing_since + MessageExpiration` for a code
/// EOP queues, at once for one it does not.
fn ndr(h: &mut Html, e: &Entry, cx: &Context) {
    let (Some(l), Some(since)) = (&e.latest, e.failing_since) else {
        return;
    };
    if l.status != Status::Failing {
        return;
    }
    if !l.queued {
        h.raw("<span class=\"late\">now: EOP does not queue this code</span>");
        return;
    }
    let at = since.saturating_add(cx.message_expiration);
    if at <= cx.now {
        h.raw("<span class=\"late\">being sent, since ")
            .text(ago(cx.now - at))
            .raw("</span>");
    } else {
        let class: &'static str = if at - cx.now < 3600 { "late" } else { "soon" };
        h.raw("<span class=\"")
            .raw(class)
            .raw("\">in ")
            .text(duration(at - cx.now))
            .raw("</span><br><span class=\"dim\">")
            .text(date_time(at))
            .raw("</span>");
    }
}

fn expiry_cell(h: &mut Html, expiry: i64, cx: &Context) {
    let left = expiry - cx.now;
    let class: &'static str = if left < 0 {
        "late"
    } else if left < 30 * 86_400 {
        "soon"
    } else {
        ""
    };
    h.raw("<span class=\"")
        .raw(class)
        .raw("\">")
        .text(date(expiry));
    if left < 0 {
        h.raw("<br>expired ").text(ago(-left));
    } else {
        h.raw("<br>in ").text(duration(left));
    }
    h.raw("</span>");
}

fn last_probe(h: &mut Html, e: &Entry, cx: &Context) {
    let Some(at) = e.last_probe else {
        return;
    };
    h.text(ago(cx.now - at));
    if let Some(l) = &e.latest {
        h.raw("<br><span class=\"dim\">took ")
            .text(millis(f64::from(l.duration_ms)))
            .raw("</span>");
    }
}

/// One connector's view.
pub fn connector(name: &str, e: &Entry, cx: &Context) -> String {
    let mut h = Html::with_capacity(8 * 1024);
    head(&mut h, &format!("{name} · connector-probe"), true);
    h.raw("<p class=\"sub\"><a href=\"/\">← all connectors</a></p><h1>");
    badge(&mut h, e.status());
    h.raw(" ").text(name).raw("</h1>");
    h.raw("<div class=\"card\"><dl>");
    let l = e.latest.as_ref();
    match l {
        None => {
            h.raw("<dt>Latest probe</dt><dd>not probed since the daemon started; the status shown is the last one remembered</dd>");
        }
        Some(l) => {
            if let Some(code) = l.code() {
                h.raw("<dt>Code</dt><dd class=\"mono\">").text(code);
                if let Some(title) = l.title() {
                    h.raw(" · ").text(title);
                }
                h.raw("</dd>");
            }
            if let Some(line) = l.eop_status() {
                h.raw("<dt>Queue line</dt><dd class=\"mono\">")
                    .text(line)
                    .raw("</dd>");
            }
            if let Some(line) = l.ndr_line() {
                h.raw("<dt>NDR line</dt><dd class=\"mono\">")
                    .text(line)
                    .raw("</dd>");
            }
        }
    }
    h.raw("<dt>Since</dt><dd>");
    since(&mut h, e, cx);
    h.raw("</dd>");
    if e.failing_since.is_some() && l.is_some_and(|l| l.status == Status::Failing) {
        h.raw("<dt>NDRs</dt><dd>");
        ndr(&mut h, e, cx);
        h.raw("</dd>");
    }
    h.raw("<dt>Last probe</dt><dd>");
    last_probe(&mut h, e, cx);
    if let Some(l) = l {
        h.raw(" <span class=\"dim\">(started ")
            .text(l.started_at())
            .raw(")</span>");
    }
    h.raw("</dd>");
    if let Some(expiry) = l.and_then(Latest::earliest_expiry) {
        h.raw("<dt>Earliest certificate expiry</dt><dd>");
        expiry_cell(&mut h, expiry, cx);
        h.raw("</dd>");
    }
    h.raw("</dl>");
    if let Some(fix) = l.and_then(Latest::fix) {
        h.raw("<div class=\"fix\"><b>What to fix:</b> ")
            .text(fix)
            .raw("</div>");
    }
    if let Some(l) = l.filter(|l| !l.warnings().is_empty()) {
        h.raw("<h2>Warnings</h2><ul class=\"t\">");
        for w in l.warnings() {
            h.raw("<li>").text(w).raw("</li>");
        }
        h.raw("</ul>");
    }
    h.raw("</div><h2>Last 24 hours (UTC)</h2><div class=\"card\">");
    timeline::render(&mut h, &e.history, cx.now, false);
    h.raw("</div>");
    if let Some(l) = l {
        targets(&mut h, l);
    }
    transitions(&mut h, e);
    h.raw("<p class=\"sub\"><a href=\"/api/v1/connectors\">all connectors as JSON</a></p></body></html>\n");
    h.finish()
}

fn targets(h: &mut Html, l: &Latest) {
    h.raw("<h2>Targets</h2><table><thead><tr><th>Target</th><th>Stage reached</th><th>Code</th><th>Timings</th><th>TLS</th><th>Certificate</th></tr></thead><tbody>");
    for t in &l.targets {
        h.raw("<tr><td><span class=\"mono\">")
            .text(t.endpoint())
            .raw("</span><br><span class=\"dim\">")
            .text(t.host())
            .raw("</span></td><td>")
            .text(t.stage)
            .raw("</td><td class=\"code\">");
        if let Some(code) = t.code() {
            h.text(code);
        }
        if !t.detail().is_empty() {
            h.raw("<div class=\"mono\">").text(t.detail()).raw("</div>");
        }
        for w in t.warnings() {
            h.raw("<div class=\"soon\">").text(w).raw("</div>");
        }
        h.raw("</td><td class=\"num\">");
        for (stage, ms) in t.timings() {
            h.text(stage)
                .raw(" ")
                .text(millis(f64::from(ms)))
                .raw("<br>");
        }
        h.raw("</td><td class=\"mono\">");
        if let Some(tls) = t.tls() {
            h.text(tls);
        }
        h.raw("</td><td>");
        if let Some(c) = t.certificate() {
            h.raw("<dl><dt>Subject</dt><dd class=\"mono cert-subject\">")
                .text(c.subject)
                .raw("</dd><dt>Issuer</dt><dd class=\"mono\">")
                .text(c.issuer)
                .raw("</dd><dt>Not after</dt><dd>")
                .text(&c.not_after)
                .raw(" (")
                .text(c.days_left)
                .raw(" days)</dd></dl>");
        }
        h.raw("</td></tr>");
    }
    h.raw("</tbody></table>");
}

fn transitions(h: &mut Html, e: &Entry) {
    h.raw("<h2>Transitions</h2><table><thead><tr><th>At</th><th>Status</th><th>Code</th></tr></thead><tbody>");
    for t in e.history.iter().rev() {
        h.raw("<tr><td>").text(date_time(t.at)).raw("</td><td>");
        badge(h, Some(t.status));
        h.raw("</td><td class=\"code\">");
        if let Some(code) = &t.code {
            h.text(code);
        }
        h.raw("</td></tr>");
    }
    h.raw("</tbody></table>");
}

/// A page for a connector the daemon does not have.
pub fn not_found(name: &str) -> String {
    let mut h = Html::default();
    head(&mut h, "not found · connector-probe", false);
    h.raw("<p class=\"sub\"><a href=\"/\">← all connectors</a></p><p>No connector is named <b>")
        .text(name)
        .raw("</b>.</p></body></html>\n");
    h.finish()
}

fn utc(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// `2026-11-30 15:04 UTC`.
pub fn date_time(unix: i64) -> String {
    let t = utc(unix);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// `2026-11-30`.
pub fn date(unix: i64) -> String {
    let t = utc(unix);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// `18:00`.
pub fn hour(unix: i64) -> String {
    format!("{:02}:00", utc(unix).hour())
}

/// A length of time as a person reads it: `45 s`, `12 min`, `3 h 20 min`, `2 d 4 h`.
pub fn duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

pub fn ago(secs: i64) -> String {
    format!("{} ago", duration(secs))
}

fn millis(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(duration(-5), "0 s");
        assert_eq!(duration(59), "59 s");
        assert_eq!(duration(600), "10 min");
        assert_eq!(duration(3 * 3600 + 20 * 60 + 5), "3 h 20 min");
        assert_eq!(duration(2 * 86_400 + 4 * 3600), "2 d 4 h");
        assert_eq!(date_time(1_800_000_000), "2027-01-15 08:00 UTC");
    }

    #[test]
    fn worst_first_then_longest_failing_then_name() {
        let e = |status: Option<Status>, since: Option<i64>| {
            let history = status
                .map(|s| crate::daemon::history::Transition {
                    at: 0,
                    status: s,
                    code: None,
                })
                .into_iter()
                .collect();
            Arc::new(Entry {
                failing_since: since,
                history,
                ..Entry::default()
            })
        };
        let mut rows = vec![
            ("b-ok".into(), e(Some(Status::Ok), None)),
            ("new".into(), e(None, None)),
            ("recent".into(), e(Some(Status::Failing), Some(200))),
            ("a-ok".into(), e(Some(Status::Ok), None)),
            ("warn".into(), e(Some(Status::Warning), None)),
            ("old".into(), e(Some(Status::Failing), Some(100))),
            ("half".into(), e(Some(Status::Degraded), None)),
        ];
        order(&mut rows);
        let names: Vec<&str> = rows.iter().map(|(n, _)| &**n).collect();
        assert_eq!(
            names,
            ["old", "recent", "half", "warn", "a-ok", "b-ok", "new"]
        );
    }
}

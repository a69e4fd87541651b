//! One line of text (a queue `LastError`, an NDR line, a message-trace `Reason`, an on-prem
//! queue line) to an [`Explained`]: pure, total (never panics), linear in the line, which is
//! first cut to [`MAX_LINE`] bytes.
//!
//! Lenient by design: people paste these lines with extra spaces (`[Message = …]`), redacted
//! (`x.x.x.x`, `###`), truncated, quoted, or inside a sentence. What the line does not say
//! is left `None`, never guessed.

use serde::Serialize;

use super::table::{self, Condition, Meaning};

/// The longest line read; the rest is cut off (EOP's lines are well under 2 KiB).
pub const MAX_LINE: usize = 8 * 1024;

/// Where the line comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Exchange Online's queue (`Get-QueueMessage`'s `LastError`, the connector alert).
    Queue,
    /// The non-delivery report the sender gets.
    Ndr,
    /// A message trace's `Reason: [{LED=…};…]`.
    Trace,
    /// On-premises Exchange's own queue or NDR: not EOP's connector.
    Onprem,
}

/// A certificate `[Message=…]` read into its parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateParts {
    pub status: String,
    pub expected_subject: Option<String>,
    pub presented_subject: Option<String>,
    pub thumbprint: Option<String>,
}

/// The rest of a message-trace `Reason`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceParts {
    pub msg: Option<String>,
    pub fqdn: Option<String>,
    pub ip: Option<String>,
    /// Last retry time, as written.
    pub lrt: Option<String>,
}

/// What one line says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explained {
    pub input: String,
    pub kind: Kind,
    /// The status code the line starts with, e.g. `450 4.4.317`.
    pub code: String,
    pub title: Option<String>,
    /// The `[Message=…]` (or the NDR's parenthesis) as written.
    pub message: Option<String>,
    /// The mail flow intelligence code for the condition (`450 4.7.320` for a certificate
    /// failure EOP queues under 4.4.317); `None` for on-prem lines.
    pub mfi_code: Option<String>,
    pub condition: Condition,
    pub stage: Option<&'static str>,
    pub server: Option<String>,
    pub ip: Option<String>,
    pub port: Option<u16>,
    pub fix: &'static str,
    pub certificate: Option<CertificateParts>,
    /// The server's own SMTP reply, when the Message is one.
    pub reply: Option<String>,
    pub socket_error: Option<u32>,
    /// What a socket error code means.
    pub socket_error_text: Option<&'static str>,
    pub trace: Option<TraceParts>,
}

/// The line explained, or `None` when it holds no connector code EOP or on-prem Exchange
/// writes.
pub fn parse(line: &str) -> Option<Explained> {
    let input = cap(line.trim()).to_owned();
    let text = normalise(&input);
    if let Some(at) = find_key(&text, "led=") {
        // An empty or mangled LED may leave the code elsewhere in the reason.
        if let Some(e) = parse_trace(&input, &text, at) {
            return Some(e);
        }
    }
    parse_status(&input, &text)
}

/// `line` cut to at most [`MAX_LINE`] bytes, on a character boundary.
pub fn cap(line: &str) -> &str {
    if line.len() <= MAX_LINE {
        return line;
    }
    let mut end = MAX_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

/// Every run of whitespace (tabs, CR, no-break spaces) as one space; the quotes people wrap
/// lines in removed.
fn normalise(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for word in line.split(|c: char| c.is_whitespace() || c == '\u{a0}') {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out.trim_matches(|c| c == '\'' || c == '"' || c == '`')
        .to_owned()
}

fn parse_trace(input: &str, text: &str, at: usize) -> Option<Explained> {
    let led_start = at + "led=".len();
    let led = field_value(&text[led_start..]);
    let field = |key: &str| {
        let key = format!("{{{key}=");
        find_ci(text, &key)
            .map(|i| field_value(&text[i + key.len()..]))
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let trace = TraceParts {
        msg: field("MSG"),
        fqdn: field("FQDN"),
        ip: field("IP"),
        lrt: field("LRT"),
    };
    let mut e = parse_status(input, led)?;
    e.kind = if e.kind == Kind::Onprem {
        Kind::Onprem
    } else {
        Kind::Trace
    };
    if e.server.is_none() {
        e.server = trace.fqdn.as_deref().and_then(server_name);
    }
    if e.ip.is_none() {
        if let Some((ip, port)) = trace.ip.as_deref().and_then(address) {
            e.ip = Some(ip);
            e.port = e.port.or(port);
        }
    }
    if e.server.is_none() {
        e.server = after_label(text, "outboundproxytargethostname:").and_then(server_name);
    }
    e.trace = Some(trace);
    Some(e)
}

/// A trace field's value: up to its closing `}` (or the end of a truncated line).
fn field_value(rest: &str) -> &str {
    let end = rest.find('}').unwrap_or(rest.len());
    rest[..end].trim()
}

/// The word after `label` (matched case-insensitively), if any.
fn after_label<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let i = find_ci(text, label)? + label.len();
    text[i..].split_whitespace().next()
}

/// A status code found in the text: `450 4.4.316`, or an enhanced code alone.
#[derive(Debug, Clone, Copy)]
struct Found<'a> {
    start: usize,
    end: usize,
    basic: Option<&'a str>,
    enhanced: &'a str,
}

/// The first few status codes in `text`, in order.
fn codes(text: &str) -> Vec<Found<'_>> {
    let b = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() && found.len() < 8 {
        let boundary =
            i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b"._:/-".contains(&b[i - 1]));
        if boundary && matches!(b[i], b'2'..=b'5') {
            if let Some(f) = code_at(text, i) {
                i = f.end;
                found.push(f);
                continue;
            }
        }
        i += 1;
    }
    found
}

/// A status code starting at `i`: `ddd`, a space or hyphen, an enhanced code; or an enhanced
/// code alone.
fn code_at(text: &str, i: usize) -> Option<Found<'_>> {
    let b = text.as_bytes();
    let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 3 && matches!(b.get(i + 3), Some(b' ' | b'-')) {
        // The classes need not agree: Exchange writes `550 4.4.7 QUEUE.Expired`.
        if let Some(end) = enhanced_at(b, i + 4) {
            return Some(Found {
                start: i,
                end,
                basic: Some(&text[i..i + 3]),
                enhanced: &text[i + 4..end],
            });
        }
    }
    let end = enhanced_at(b, i)?;
    Some(Found {
        start: i,
        end,
        basic: None,
        enhanced: &text[i..end],
    })
}

/// The end of an enhanced code `c.d{1,3}.d{1,3}` at `i`, class 2, 4 or 5.
fn enhanced_at(b: &[u8], i: usize) -> Option<usize> {
    if !matches!(b.get(i), Some(b'2' | b'4' | b'5')) || b.get(i + 1) != Some(&b'.') {
        return None;
    }
    let mut j = i + 2;
    for part in 0..2 {
        let n = b[j.min(b.len())..]
            .iter()
            .take(4)
            .take_while(|c| c.is_ascii_digit())
            .count();
        if !(1..=3).contains(&n) {
            return None;
        }
        j += n;
        if part == 0 {
            if b.get(j) != Some(&b'.') {
                return None;
            }
            j += 1;
        }
    }
    // Not the start of an IP address or a longer number.
    match b.get(j) {
        Some(c)
            if c.is_ascii_alphanumeric()
                || (*c == b'.' && b.get(j + 1).is_some_and(u8::is_ascii_digit)) =>
        {
            None
        }
        _ => Some(j),
    }
}

/// Markers of on-premises Exchange's own queue lines.
const ONPREM_MARKERS: &[&str] = &[
    "smtpsend.",
    "4.4.395",
    "4.4.397",
    "primary target ip address responded",
    "error communicating with target host",
    "target host responded with error",
    "attempted failover to alternate host",
];

/// The codes on-premises Exchange writes first on its own queue lines (EOP writes 4.4.0
/// only inside a Message).
const ONPREM_CODES: &[&str] = &["4.4.0", "4.4.395", "4.4.397"];

fn parse_status(input: &str, text: &str) -> Option<Explained> {
    let found = codes(text);
    let lower = text.to_ascii_lowercase();
    let eop = found
        .iter()
        .copied()
        .find(|f| table::code(f.enhanced).is_some());
    let onprem_code = found
        .first()
        .filter(|f| ONPREM_CODES.contains(&f.enhanced))
        .map(|f| f.start);
    let onprem_at = ONPREM_MARKERS
        .iter()
        .filter_map(|m| lower.find(m))
        .chain(onprem_code)
        .min();
    match (eop, onprem_at) {
        (Some(f), Some(o)) if o < f.start => parse_onprem(input, text, &found),
        (Some(f), _) => Some(parse_eop(input, text, f)),
        (None, Some(_)) => parse_onprem(input, text, &found),
        (None, None) => None,
    }
}

fn parse_eop(input: &str, text: &str, f: Found<'_>) -> Explained {
    let facts = table::code(f.enhanced).expect("found by its code");
    let code = format!("{} {}", f.basic.unwrap_or(facts.basic), f.enhanced);
    let rest = text[f.end..].trim_start_matches([' ', ':', '-', ',', ';']);
    let fields = brackets(rest);
    let head_end = outside_parens(rest, '[').unwrap_or(rest.len());
    let head = &rest[..head_end];
    let (title, after_title) = title(head, facts.titles, f.enhanced);
    let message = fields
        .iter()
        .find(|(k, _)| k == "message")
        .map(|(_, v)| v.clone())
        .or_else(|| message_after_title(after_title));
    let message = message
        .or_else(|| bare_field(rest, "message=", true))
        .filter(|m| !m.is_empty());
    let server_text = fields
        .iter()
        .find(|(k, _)| k == "lastattemptedservername")
        .map(|(_, v)| v.clone())
        .or_else(|| bare_field(rest, "lastattemptedservername=", false));
    let mut server = server_text.as_deref().and_then(server_name);
    let addr = fields
        .iter()
        .find(|(k, _)| k == "lastattemptedip")
        .map(|(_, v)| v.clone())
        .or_else(|| bare_field(rest, "lastattemptedip=", false))
        .as_deref()
        .and_then(address);
    if server.is_none() && f.enhanced == "5.4.310" {
        server = nonexistent_domain(head).and_then(server_name);
    }
    let read = read_message(facts.meaning, message.as_deref());
    let dane = f.enhanced.starts_with("5.7.");
    // The code the mail flow intelligence alert names: the queue code (an NDR's 5.4.3xx is
    // its 4.4.3xx), except that certificate failures, which EOP now queues under 4.4.317,
    // are 4.7.320; 5.4.310 and the DANE codes are their own.
    let mfi_code = if dane || f.enhanced == "5.4.310" {
        code.clone()
    } else if facts.meaning == Meaning::Read {
        table::mfi_code(read.condition).map_or_else(|| code.clone(), str::to_owned)
    } else if read.condition.is_certificate() {
        "450 4.7.320".to_owned()
    } else {
        format!("450 4.{}", &f.enhanced[2..])
    };
    let kind = if code.starts_with('5') {
        Kind::Ndr
    } else {
        Kind::Queue
    };
    Explained {
        input: input.to_owned(),
        kind,
        code,
        title,
        message,
        mfi_code: Some(mfi_code),
        condition: read.condition,
        stage: read.stage,
        server,
        ip: addr.as_ref().map(|(ip, _)| ip.clone()),
        port: addr.and_then(|(_, p)| p),
        fix: read.condition.fix(),
        certificate: read.certificate,
        reply: read.reply,
        socket_error: read.socket_error.map(|(n, _)| n),
        socket_error_text: read.socket_error.map(|(_, t)| t),
        trace: None,
    }
}

/// `Key=value` written without its brackets: the value is one word, or for the Message
/// (`whole`) everything up to the next field or bracket.
fn bare_field(rest: &str, key: &str, whole: bool) -> Option<String> {
    let i = find_key(rest, key)? + key.len();
    if rest[..i - key.len()].ends_with('[') {
        // Bracketed after all: read (or not) by `brackets`.
        return None;
    }
    let value = &rest[i..];
    let end = if whole {
        let next = find_ci(value, " lastattempted").unwrap_or(value.len());
        value.find('[').unwrap_or(value.len()).min(next)
    } else {
        value.find([' ', ']']).unwrap_or(value.len())
    };
    let v = value[..end].trim();
    (!v.is_empty()).then(|| v.to_owned())
}

/// The first `c` not inside parentheses (a bracket inside an NDR's `(…)` is the server's).
fn outside_parens(s: &str, c: char) -> Option<usize> {
    let mut depth = 0usize;
    for (i, ch) in s.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if ch == c && depth == 0 => return Some(i),
            _ => {}
        }
    }
    None
}

/// The title at the start of `head` and what follows it. A known title is matched
/// case-insensitively; otherwise the title runs to a parenthesis or the end.
fn title<'a>(head: &'a str, titles: &[&str], enhanced: &str) -> (Option<String>, &'a str) {
    let lower = head.to_ascii_lowercase();
    for t in titles {
        if lower.starts_with(&t.to_ascii_lowercase()) {
            return (Some(head[..t.len()].to_owned()), &head[t.len()..]);
        }
    }
    if enhanced == "5.4.310" {
        // "DNS domain fabrikam.example does not exist": the title names the domain.
        if let Some(i) = find_ci(head, "does not exist") {
            let end = i + "does not exist".len();
            return (Some(head[..end].to_owned()), &head[end..]);
        }
    }
    let end = head.find('(').unwrap_or(head.len());
    let t = head[..end].trim().trim_end_matches('.').trim();
    ((!t.is_empty()).then(|| t.to_owned()), &head[end..])
}

/// The Message when it is not in brackets: the NDR's `(…)` (no space before it, except
/// 5.4.318's), or text after `. ` or `: ` as message-trace screens show it.
fn message_after_title(after: &str) -> Option<String> {
    let after = after.trim_start();
    if let Some(inner) = after.strip_prefix('(') {
        return Some(balanced(inner, '(', ')').trim().to_owned());
    }
    let rest = after.trim_start_matches(['.', ':', ',', ';', '-', ' ']);
    let rest = rest.trim_end_matches(['\'', '"', '.', ' ']);
    (!rest.is_empty() && rest.len() < after.len()).then(|| rest.to_owned())
}

/// The text up to the bracket that closes the one just opened (or all of a truncated line).
fn balanced(inner: &str, open: char, close: char) -> &str {
    let mut depth = 0usize;
    for (i, c) in inner.char_indices() {
        if c == open {
            depth += 1;
        } else if c == close {
            if depth == 0 {
                return &inner[..i];
            }
            depth -= 1;
        }
    }
    inner.trim_end_matches(['\'', '"'])
}

/// Every `[Key=Value]` in `rest`, key lower-cased without spaces, value trimmed. A value may
/// hold brackets (an IPv6 `[2001:db8::1]:25`); a truncated one runs to the end.
fn brackets(rest: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(open) = rest[at..].find('[') {
        let start = at + open + 1;
        let inner = balanced(&rest[start..], '[', ']');
        at = (start + inner.len() + 1).min(rest.len());
        if let Some((k, v)) = inner.split_once('=') {
            let key: String = k
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()
                .to_ascii_lowercase();
            if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric()) {
                out.push((key, v.trim().to_owned()));
            }
        }
        if out.len() >= 16 {
            break;
        }
    }
    out
}

/// `fabrikam.example` in `DNS domain fabrikam.example does not exist`.
fn nonexistent_domain(head: &str) -> Option<&str> {
    let i = find_ci(head, "dns domain ")? + "dns domain ".len();
    head[i..].split_whitespace().next()
}

/// A server name as written, or `None` when it is empty or redacted.
fn server_name(v: &str) -> Option<String> {
    let v = v.trim().trim_end_matches('.').trim();
    if redacted(v) {
        return None;
    }
    Some(v.to_owned())
}

fn redacted(v: &str) -> bool {
    v.is_empty()
        || v.contains('#')
        || v.contains('<')
        || (v.contains('*') && !v.starts_with("*."))
        || v.chars().all(|c| matches!(c, 'x' | 'X' | '.' | ':' | '…'))
        || v.eq_ignore_ascii_case("redacted")
        || v.contains("...")
        || v.contains('…')
}

/// `192.0.2.10:25`, `[2001:db8::1]:25`, `2001:db8::1`, `192.0.2.10`: the address as text
/// and the port; `None` when redacted or not an address.
fn address(v: &str) -> Option<(String, Option<u16>)> {
    let v: String = v.chars().filter(|c| !c.is_whitespace()).collect();
    let v = v.trim_end_matches('.');
    if let Ok(ip) = v.parse::<std::net::IpAddr>() {
        return Some((ip.to_string(), None));
    }
    if let Some(rest) = v.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let ip: std::net::Ipv6Addr = inside.parse().ok()?;
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return Some((ip.to_string(), port));
    }
    let (host, port) = v.rsplit_once(':')?;
    let ip: std::net::Ipv4Addr = host.parse().ok()?;
    Some((ip.to_string(), port.parse().ok()))
}

/// What the Message says, with the code's meaning as the default.
struct Read {
    condition: Condition,
    stage: Option<&'static str>,
    certificate: Option<CertificateParts>,
    reply: Option<String>,
    socket_error: Option<(u32, &'static str)>,
}

fn read_message(meaning: Meaning, message: Option<&str>) -> Read {
    let mut read = Read {
        condition: Condition::Other,
        stage: None,
        certificate: None,
        reply: None,
        socket_error: None,
    };
    let m = message.unwrap_or("");
    let lower = m.to_ascii_lowercase();
    read.socket_error = socket_error_code(&lower).map(|n| (n, table::socket_error(n).1));
    let certificate = certificate_parts(m);
    read.condition = match meaning {
        Meaning::Is(c) => c,
        Meaning::Socket => match read.socket_error {
            Some((n, _)) => table::socket_error(n).0,
            None => Condition::ConnectRefused,
        },
        Meaning::Certificate => certificate
            .as_ref()
            .and_then(|c| table::certificate_status(&c.status))
            .unwrap_or(Condition::CertificateInvalid),
        Meaning::Session => session(m, &lower, certificate.as_ref(), &mut read),
        Meaning::Read => match session(m, &lower, certificate.as_ref(), &mut read) {
            Condition::Other => worded(&lower),
            c => c,
        },
    };
    if read.condition.is_certificate() {
        read.certificate = certificate;
    }
    if read.stage.is_none() {
        read.stage = read.condition.stage();
    }
    read
}

/// A Message in words only (`DNS query failed`, `connection refused`).
fn worded(lower: &str) -> Condition {
    if lower.contains("dns query failed") || lower.contains("infodomainnonexistent") {
        Condition::DnsFailed
    } else if lower.contains("timed out") {
        Condition::ConnectTimeout
    } else if lower.contains("refused") {
        Condition::ConnectRefused
    } else if lower.contains("closed abruptly") || lower.contains("connection reset") {
        Condition::ClosedAbruptly
    } else {
        Condition::Other
    }
}

/// 4.4.317's Message: a certificate status, STARTTLS or TLS trouble, a socket error, or the
/// server's reply.
fn session(
    m: &str,
    lower: &str,
    certificate: Option<&CertificateParts>,
    read: &mut Read,
) -> Condition {
    if let Some(c) = certificate.and_then(|c| table::certificate_status(&c.status)) {
        return c;
    }
    // A Message the probe's own table writes reads as the row that writes it.
    if let Some(c) = crate::verdict::table::condition_of_message(m) {
        return c;
    }
    if lower.contains("starttls is required") || lower.contains("must issue a starttls") {
        return Condition::StarttlsRequired;
    }
    if lower.contains("tls negotiation failed") || lower.contains("security status") {
        return Condition::TlsNegotiationFailed;
    }
    if lower.contains("suspiciousremoteservererror") || lower.contains("disconnected abruptly") {
        return Condition::ClosedAbruptly;
    }
    // Exchange's own stand-ins for a connection that never became a session, written as
    // replies: they name the socket's failure, not anything the server said.
    if lower.contains("4.2.1 unable to connect") {
        return Condition::ConnectFailed;
    }
    if lower.contains("4.4.1 connection timed out") {
        return Condition::ConnectTimeout;
    }
    if lower.contains("4.4.2 connection dropped") {
        return Condition::ClosedAbruptly;
    }
    if let Some((n, _)) = read.socket_error {
        return table::socket_error(n).0;
    }
    if let Some(reply) = reply(m) {
        let tls = reply.starts_with("454") || reply.to_ascii_lowercase().contains("tls");
        read.reply = Some(reply);
        if tls {
            read.stage = Some("starttls");
            return Condition::TlsNegotiationFailed;
        }
        return Condition::SessionRejected;
    }
    Condition::Other
}

/// The server's reply in the Message: the whole Message when it starts with a reply code
/// (`421 4.3.2 Service not available`), else from a reply code after a colon
/// (`the server greeted with an error: 554 5.7.1 …`).
fn reply(m: &str) -> Option<String> {
    let starts_reply = |s: &str| {
        let b = s.as_bytes();
        b.len() >= 3
            && matches!(b[0], b'2'..=b'5')
            && b[1].is_ascii_digit()
            && b[2].is_ascii_digit()
            && b.get(3).is_none_or(|c| matches!(c, b' ' | b'-'))
    };
    if starts_reply(m) {
        return Some(m.to_owned());
    }
    let (_, after) = m.split_once(": ")?;
    let after = after.trim_start();
    starts_reply(after).then(|| after.to_owned())
}

/// `Socket error code 10061`, or a bare Winsock code (100xx/110xx) in the Message.
fn socket_error_code(lower: &str) -> Option<u32> {
    if let Some(i) = lower.find("socket error code") {
        let n: String = lower[i + "socket error code".len()..]
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .take(6)
            .collect();
        return n.parse().ok();
    }
    lower
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 5 && (w.starts_with("100") || w.starts_with("110")))
        .and_then(|w| w.parse().ok())
}

/// `<Status> Expected Subject: <x>. Presented Subject: <DN>. Thumbprint: <hex>.`, or the
/// status alone (`SubjectMismatch`, the 2017 form), read into parts.
fn certificate_parts(m: &str) -> Option<CertificateParts> {
    let status: String = m
        .trim_start()
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .take(64)
        .collect();
    table::certificate_status(&status)?;
    let lower = m.to_ascii_lowercase();
    let expected_at = lower.find("expected subject:");
    let presented_at = lower.find("presented subject:");
    let thumb_at = lower.rfind("thumbprint:");
    let part = |start: Option<usize>, label: &str, end: Option<usize>| {
        let s = start? + label.len();
        let e = end.filter(|e| *e >= s).unwrap_or(m.len());
        let v = m[s..e].trim().trim_end_matches('.').trim();
        (!v.is_empty()).then(|| v.to_owned())
    };
    Some(CertificateParts {
        status,
        expected_subject: part(expected_at, "expected subject:", presented_at.or(thumb_at)),
        presented_subject: part(presented_at, "presented subject:", thumb_at),
        thumbprint: part(thumb_at, "thumbprint:", None)
            .map(|t| t.trim_end_matches([']', '.', ' ']).to_owned()),
    })
}

fn parse_onprem(input: &str, text: &str, found: &[Found<'_>]) -> Option<Explained> {
    let lower = text.to_ascii_lowercase();
    let (code, rest) = match found.first() {
        Some(f) => (
            format!("{} {}", f.basic.unwrap_or("451"), f.enhanced),
            &text[f.end..],
        ),
        None => (String::new(), text),
    };
    let rest = rest.trim_start();
    let title_end = rest.find(['.', ';', '[', '"', '\'']).unwrap_or(rest.len());
    let title = rest[..title_end].trim();
    let message = rest[title_end..]
        .trim_start_matches(['.', ';', ' '])
        .trim_end_matches(['\'', '"']);
    let socket = socket_error_code(&lower);
    let condition = if lower.contains("dns query failed")
        || lower.contains("dns domain")
        || lower.contains("smtpsend.dns")
    {
        Condition::DnsFailed
    } else if lower.contains("unable to connect") || lower.contains("failed to connect") {
        socket.map_or(Condition::ConnectFailed, |n| table::socket_error(n).0)
    } else if lower.contains("timed out") || lower.contains("10060") {
        Condition::ConnectTimeout
    } else if lower.contains("refused") || lower.contains("10061") {
        Condition::ConnectRefused
    } else if lower.contains("suspiciousremoteservererror")
        || lower.contains("disconnected abruptly")
        || lower.contains("connection dropped")
    {
        Condition::ClosedAbruptly
    } else if lower.contains("starttls is required") {
        Condition::StarttlsRequired
    } else if lower.contains("certificate") {
        Condition::CertificateInvalid
    } else if lower.contains("tls") {
        Condition::TlsNegotiationFailed
    } else if let Some(n) = socket {
        table::socket_error(n).0
    } else {
        Condition::Other
    };
    let fields = brackets(text);
    let server = fields
        .iter()
        .find(|(k, _)| k == "lastattemptedservername")
        .and_then(|(_, v)| server_name(v));
    let addr = fields
        .iter()
        .find(|(k, _)| k == "lastattemptedip")
        .and_then(|(_, v)| address(v))
        .or_else(|| {
            text.split([' ', '(', ')', '"', '\'', ','])
                .find_map(address)
        });
    if code.is_empty() && !lower.contains("smtpsend.") {
        return None;
    }
    Some(Explained {
        input: input.to_owned(),
        kind: Kind::Onprem,
        code,
        title: (!title.is_empty()).then(|| title.to_owned()),
        message: (!message.is_empty()).then(|| message.to_owned()),
        mfi_code: None,
        condition,
        stage: condition.stage(),
        server,
        ip: addr.as_ref().map(|(ip, _)| ip.clone()),
        port: addr.and_then(|(_, p)| p),
        fix: ONPREM_FIX,
        certificate: None,
        reply: None,
        socket_error: socket,
        socket_error_text: socket.map(|n| table::socket_error(n).1),
        trace: None,
    })
}

/// On-prem lines are about on-prem Exchange's own send connector, not EOP's.
pub const ONPREM_FIX: &str = "This line comes from on-premises Exchange's own queue, not from Exchange Online's outbound connector: the on-premises server failed to deliver to its next hop (often Exchange Online itself, or a smart host). Check that server's send connector (Get-SendConnector), its certificate bound to SMTP, outbound port 25 through the firewall, and Get-Queue | fl LastError on it.";

/// `key` (e.g. `led=`) where it starts a word: not the tail of `FAILED=`.
fn find_key(hay: &str, key: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = find_ci(&hay[from..], key) {
        let at = from + i;
        if at == 0 || !hay.as_bytes()[at - 1].is_ascii_alphanumeric() {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// `needle` (lower-case ASCII) in `hay`, ignoring ASCII case; a byte offset into `hay`.
fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let n = needle.as_bytes();
    hay.as_bytes()
        .windows(n.len().max(1))
        .position(|w| w.eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_queue_line_reads_into_its_parts() {
        let e = parse("450 4.4.316 Connection refused [Message=Socket error code 10061] [LastAttemptedServerName=mail.contoso.com] [LastAttemptedIP=192.0.2.10:25]").unwrap();
        assert_eq!(e.kind, Kind::Queue);
        assert_eq!(e.code, "450 4.4.316");
        assert_eq!(e.title.as_deref(), Some("Connection refused"));
        assert_eq!(e.message.as_deref(), Some("Socket error code 10061"));
        assert_eq!(e.condition, Condition::ConnectRefused);
        assert_eq!(e.stage, Some("connect"));
        assert_eq!(e.server.as_deref(), Some("mail.contoso.com"));
        assert_eq!(e.ip.as_deref(), Some("192.0.2.10"));
        assert_eq!(e.port, Some(25));
        assert_eq!(e.socket_error, Some(10061));
    }

    #[test]
    fn a_certificate_message_reads_into_status_subjects_and_thumbprint() {
        let e = parse("450 4.4.317 Cannot connect to remote server [Message=SubjectMismatch Expected Subject: *.contoso.com. Presented Subject: CN=ExchangeServer01, O=Contoso Ltd., C=US. Thumbprint: D0AC2FC63B9C5798828B45D849BE8D33D2F1E0AA.] [LastAttemptedServerName=mail.contoso.com] [LastAttemptedIP=[2001:db8::1]:25]").unwrap();
        assert_eq!(e.condition, Condition::SubjectMismatch);
        assert_eq!(e.mfi_code.as_deref(), Some("450 4.7.320"));
        let c = e.certificate.unwrap();
        assert_eq!(c.status, "SubjectMismatch");
        assert_eq!(c.expected_subject.as_deref(), Some("*.contoso.com"));
        assert_eq!(
            c.presented_subject.as_deref(),
            Some("CN=ExchangeServer01, O=Contoso Ltd., C=US")
        );
        assert_eq!(
            c.thumbprint.as_deref(),
            Some("D0AC2FC63B9C5798828B45D849BE8D33D2F1E0AA")
        );
        assert_eq!(e.ip.as_deref(), Some("2001:db8::1"));
        assert_eq!(e.port, Some(25));
    }

    #[test]
    fn codes_inside_addresses_and_dates_are_not_codes() {
        assert!(parse("connected to 192.4.4.316 on 2024-05-04").is_none());
        assert!(parse("version 4.4.3160").is_none());
    }

    #[test]
    fn a_cut_line_is_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_LINE);
        assert!(cap(&long).len() <= MAX_LINE);
    }
}

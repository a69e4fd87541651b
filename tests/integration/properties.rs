//! Property tests of the reply parser and the configuration loader: the invariants the fuzz
//! targets check (`invariants`), on generated inputs, a few hundred cases per run so CI
//! exercises them every time. A failure found here or by fuzzing becomes a named test below.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};

use connector_probe::smtp::reply::{MAX_LINE, MAX_REPLY};

use crate::invariants;

/// Few enough cases to keep the suite fast; failures are turned into named tests rather than
/// persisted, so nothing is written next to the sources.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One reply line: mostly well-formed (a bare code, text with a NUL or a high byte now and
/// then, CRLF or a bare LF), sometimes off (a code outside 2xx-5xx, an odd separator, a line
/// end missing).
fn reply_line() -> impl Strategy<Value = Vec<u8>> {
    let text = vec(prop_oneof![16 => 0x20u8..0x7f, 1 => any::<u8>()], 0..40);
    let good = (
        b'2'..=b'5',
        select(vec![&b" "[..], b"-", b"-", b""]),
        select(vec![&b"\r\n"[..], b"\r\n", b"\n"]),
    );
    let odd = (
        b'0'..=b'9',
        select(vec![&b" "[..], b"-", b"", b"\r", b"x"]),
        select(vec![&b"\r\n"[..], b"\n", b"\r", b""]),
    );
    let shape = prop_oneof![9 => good, 1 => odd];
    (shape, vec(b'0'..=b'9', 2), text).prop_map(|((class, sep, end), digits, text)| {
        // A bare code has no text.
        let text = if sep.is_empty() { &[][..] } else { &text };
        [&[class][..], &digits, sep, text, end].concat()
    })
}

/// A byte stream: reply lines, some noise, now and then a long line, and one line (or the text
/// of one) repeated to just under a cap or just past it: an endless line, an endless
/// multi-line reply, or a reply that ends right at the cap.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let long = vec(0x20u8..0x7f, MAX_LINE - 100..MAX_LINE + 100)
        .prop_map(|text| [&b"250 "[..], &text, b"\r\n"].concat());
    let pieces = || {
        vec(
            prop_oneof![18 => reply_line(), 1 => vec(any::<u8>(), 0..16), 1 => long.clone()],
            0..6,
        )
    };
    let flood = prop_oneof![
        reply_line().prop_map(|line| (vec![], line)),
        vec(0x20u8..0x7f, 1..20).prop_map(|text| (b"250 ".to_vec(), text)),
    ];
    let cap = prop_oneof![6 => Just(0), 1 => Just(MAX_LINE), 2 => Just(MAX_REPLY)];
    (pieces(), flood, cap, 0..2usize, pieces()).prop_map(
        |(before, (head, body), cap, past, after)| {
            let times = (cap / body.len()).max(1) + past;
            [before.concat(), head, body.repeat(times), after.concat()].concat()
        },
    )
}

/// Read sizes: mostly tiny (a byte at a time), sometimes a socket read's worth.
fn chunks() -> impl Strategy<Value = Vec<usize>> {
    vec(
        prop_oneof![4 => 1usize..4, 2 => 1usize..100, 1 => 1usize..5000],
        0..6,
    )
}

/// Values for a key, as TOML; those marked `!` are wrong for it.
type Values = &'static [&'static str];
/// The keys of a table, each with its values.
type Keys = &'static [(&'static str, Values)];

const DURATIONS: Values = &[
    "\"30s\"",
    "\"500ms\"",
    "\"1h 30m\"",
    "\"14d\"",
    "\"1ns\"",
    "\"1500us\"",
    "!\"0s\"",
    "!\"forever\"",
    "!30",
];
const SETTINGS: Keys = &[
    (
        "helo_name",
        &[
            "\"probe.example\"",
            "\"[127.0.0.1]\"",
            "\"[IPv6:::1]\"",
            "\"Probe.Example.\"",
            "!\"bad name\"",
        ],
    ),
    ("port", &["25", "2525", "!0", "!65536", "!\"25\""]),
    ("interval", DURATIONS),
    (
        "tls",
        &[
            "\"opportunistic\"",
            "\"encryption-only\"",
            "\"certificate-validation\"",
            "!\"strict\"",
        ],
    ),
    ("expiry_warning", DURATIONS),
    (
        "ip_family",
        &["\"any\"", "\"ipv4\"", "\"ipv6\"", "!\"both\""],
    ),
    (
        "certificate_failure_code",
        &["\"4.7.320\"", "\"4.4.317\"", "!\"5.0.0\""],
    ),
];
const TIMEOUTS: Keys = &[
    ("dns", DURATIONS),
    ("connect", DURATIONS),
    ("banner", DURATIONS),
    ("command", DURATIONS),
    ("tls", DURATIONS),
];
const ROUTES: Keys = &[
    (
        "smart_hosts",
        &[
            "[\"mail.example.com\"]",
            "[\"127.0.0.1:2525\", \"[::1]:25\"]",
            "[\"2001:db8::1\", \"MAIL.example.com.\"]",
            "![]",
            "![\"a b\"]",
        ],
    ),
    (
        "mx_domain",
        &["\"example.com\"", "\"Example.COM.\"", "!\"-bad-\""],
    ),
];
/// `tls_domain` goes with `tls = "domain-validation"` and only with it.
const DOMAIN_VALIDATION: Keys = &[
    ("tls", &["\"domain-validation\""]),
    (
        "tls_domain",
        &["\"mail.example.com\"", "\"*.example.com\"", "!\"*\""],
    ),
];
const DNS: Keys = &[(
    "nameservers",
    &[
        "[\"1.1.1.1\", \"[2001:db8::53]:53\"]",
        "[\"127.0.0.53:5353\"]",
        "[]",
        "![\"resolver\"]",
    ],
)];
const TLS: Keys = &[
    ("ca_file", &["\"\"", "!\"missing.pem\""]),
    ("crl_file", &["\"\"", "!\"missing.pem\""]),
    (
        "revocation",
        &["\"fetch\"", "\"off\"", "!\"ocsp\"", "!true"],
    ),
];
const DAEMON: Keys = &[
    ("concurrency", &["1", "256", "!0", "!-1"]),
    ("message_expiration", DURATIONS),
    ("queue_alert_after", DURATIONS),
    (
        "metrics_listen",
        &[
            "\"\"",
            "\"127.0.0.1:9425\"",
            "\"[::1]:0\"",
            "!\"localhost\"",
        ],
    ),
    ("state_file", &["\"\"", "\"state.json\"", "\"/var/lib/x\""]),
];

/// Every key of every table, with its values.
fn all_keys() -> Vec<(&'static str, Values)> {
    [
        SETTINGS,
        TIMEOUTS,
        ROUTES,
        DOMAIN_VALIDATION,
        DNS,
        TLS,
        DAEMON,
    ]
    .concat()
}

/// One of `values`: in a `clean` file a right one, otherwise any (now and then another key's
/// value, or any string at all).
fn value(values: Values, clean: bool) -> BoxedStrategy<String> {
    let right: Vec<&str> = values
        .iter()
        .filter(|v| !v.starts_with('!'))
        .copied()
        .collect();
    if clean {
        return select(right).prop_map(str::to_owned).boxed();
    }
    let strip = |v: &str| v.trim_start_matches('!').to_owned();
    let other = select(all_keys()).prop_flat_map(|(_, vs)| select(vs.to_vec()));
    prop_oneof![
        8 => select(values.to_vec()).prop_map(strip),
        1 => other.prop_map(strip),
        1 => any::<String>().prop_map(|s| toml::Value::String(s).to_string()),
    ]
    .boxed()
}

/// `key = value` lines, each key at most once: keys of this table (in a file that is not
/// `clean`, now and then of any table).
fn entries(table: Keys, most: usize, clean: bool) -> impl Strategy<Value = String> {
    let own = subsequence(table.to_vec(), 0..=most.min(table.len()));
    let keys = if clean {
        own.boxed()
    } else {
        prop_oneof![9 => own, 1 => subsequence(all_keys(), 0..=most)].boxed()
    };
    keys.prop_flat_map(move |keys| {
        keys.into_iter()
            .map(|(k, vs)| value(vs, clean).prop_map(move |v| format!("{k} = {v}\n")))
            .collect::<Vec<_>>()
    })
    .prop_map(|lines| lines.concat())
}

/// A table: its header and a few entries.
fn table(header: &'static str, keys: Keys, clean: bool) -> impl Strategy<Value = String> {
    entries(keys, 4, clean).prop_map(move |lines| format!("{header}\n{lines}"))
}

/// A `[[connector]]`: a name, a route (in a file that is not `clean`, maybe two or none),
/// settings, maybe domain validation, maybe its own timeouts.
fn connector(clean: bool) -> impl Strategy<Value = String> {
    let route = if clean {
        select(ROUTES.to_vec())
            .prop_flat_map(|(k, vs)| value(vs, true).prop_map(move |v| format!("{k} = {v}\n")))
            .boxed()
    } else {
        entries(ROUTES, 2, false).boxed()
    };
    let names = if clean {
        vec!["\"mail-1\"", "\"Mail_2.x\""]
    } else {
        vec!["\"mail-1\"", "\"Mail_2.x\"", "\"bad name\"", "\"\""]
    };
    let validation = if clean {
        value(&["\"mail.example.com\"", "\"*.example.com\""], true)
            .prop_map(|d| format!("tls = \"domain-validation\"\ntls_domain = {d}\n"))
            .boxed()
    } else {
        entries(DOMAIN_VALIDATION, 2, false).boxed()
    };
    (
        select(names),
        route,
        entries(SETTINGS, 3, clean),
        proptest::option::weighted(0.3, validation),
        proptest::option::weighted(0.2, table("[connector.timeouts]", TIMEOUTS, clean)),
    )
        .prop_map(|(name, route, settings, validation, timeouts)| {
            // The connector's `tls` comes from domain validation when there is one.
            let settings = match validation {
                Some(v) => settings
                    .lines()
                    .filter(|l| !l.starts_with("tls ="))
                    .map(|l| format!("{l}\n"))
                    .chain([v])
                    .collect(),
                None => settings,
            };
            let timeouts = timeouts.unwrap_or_default();
            format!("[[connector]]\nname = {name}\n{route}{settings}{timeouts}")
        })
}

/// A configuration file: each table at most once, then connectors; half of the files use
/// only right values, the others anything, now and then a line of anything. LF or CRLF.
fn config_text() -> impl Strategy<Value = String> {
    any::<bool>().prop_flat_map(|clean| {
        let tables = (
            proptest::option::of(table("[defaults]", SETTINGS, clean)),
            proptest::option::of(table("[defaults.timeouts]", TIMEOUTS, clean)),
            proptest::option::of(table("[dns]", DNS, clean)),
            proptest::option::of(table("[tls]", TLS, clean)),
            proptest::option::of(table("[daemon]", DAEMON, clean)),
        );
        let junk = proptest::option::weighted(0.1, any::<String>())
            .prop_map(move |junk| junk.filter(|_| !clean));
        (tables, vec(connector(clean), 0..3), junk, any::<bool>()).prop_map(
            |((defaults, timeouts, dns, tls, daemon), connectors, junk, crlf)| {
                let text = [defaults, timeouts, dns, tls, daemon, junk]
                    .into_iter()
                    .flatten()
                    .chain(connectors)
                    .collect::<String>();
                if crlf {
                    text.replace('\n', "\r\n")
                } else {
                    text
                }
            },
        )
    })
}

/// Pieces EOP's lines are made of, and the ways people break them, to be strung together.
const EXPLAIN_PIECES: &[&str] = &[
    "450 ",
    "550 ",
    "451 ",
    "4.4.316",
    "4.4.317",
    "4.7.320",
    "5.4.316",
    "5.4.310",
    "4.4.397",
    "4.4.3",
    " Connection refused ",
    " Cannot connect to remote server",
    " Message expired, connection reset ",
    " DNS domain ",
    " does not exist ",
    "[Message=",
    "[Message = ",
    "Socket error code 10061",
    "SubjectMismatch",
    "CertificateExpired",
    " Expected Subject: ",
    ". Presented Subject: CN=",
    ". Thumbprint: ",
    "[LastAttemptedServerName=",
    "[LastAttemptedIP=",
    "[2001:db8::1]:25",
    "192.0.2.10:25",
    "x.x.x.x",
    "###",
    "]",
    "[",
    "(",
    ")",
    "Reason: [{LED=",
    "LED=",
    "};{MSG=",
    "{FQDN=",
    "{IP=",
    "}]",
    "SMTPSEND.",
    "Remote Server returned '",
    "Diagnostic-Code: smtp;",
    "From: a@b\n",
    "quoted-printable\n",
    "=\n",
    "=3D",
    "<p>",
    "&#39;",
    "\n",
    "\n ",
    "\t",
    " ",
    "é",
    "\u{a0}",
];

/// Text for `explain`: EOP-shaped pieces in any order, some arbitrary characters, and now and
/// then one piece repeated past the line cap.
fn explain_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        12 => select(EXPLAIN_PIECES).prop_map(str::to_owned),
        1 => any::<String>(),
    ];
    let long = (select(EXPLAIN_PIECES), 0..3usize).prop_map(|(p, past)| {
        let times = MAX_EXPLAIN_LINE / p.len().max(1) + past;
        p.repeat(times)
    });
    (
        vec(piece, 0..40),
        prop_oneof![9 => Just(String::new()), 1 => long],
    )
        .prop_map(|(pieces, long)| pieces.concat() + &long)
}

const MAX_EXPLAIN_LINE: usize = connector_probe::explain::parse::MAX_LINE;

proptest! {
    #![proptest_config(config())]

    #[test]
    fn explain_holds_its_invariants(text in explain_text()) {
        invariants::explain::check(&text);
    }

    #[test]
    fn explain_holds_its_invariants_on_arbitrary_text(text in any::<String>()) {
        invariants::explain::check(&text);
    }

    #[test]
    fn reply_parser_holds_its_invariants(data in stream(), chunks in chunks()) {
        invariants::reply::check(&data, &chunks);
    }

    #[test]
    fn config_loader_holds_its_invariants(text in config_text()) {
        invariants::config::check(&text);
    }
}

/// Found by `reply_parser_holds_its_invariants`: a reply just under MAX_REPLY followed by a
/// line longer than MAX_LINE was LineTooLong when read at once, ReplyTooLong when read a byte
/// at a time.
#[test]
fn a_long_line_across_the_reply_cap_is_one_error_however_it_is_read() {
    let mut data = b"200-\r\n".repeat(10922);
    data.extend(b"250 ");
    data.extend(std::iter::repeat_n(b' ', 2044));
    data.extend(b"\r\n");
    invariants::reply::check(&data, &[1]);
}

/// Found by the property test once escaping kept UTF-8 letters: the chunk end cut a
/// two-byte letter in half, so the early quote ended in `\xd1` where the whole one read `р`.
#[test]
fn a_letter_cut_by_the_chunk_end_is_still_the_same_line() {
    invariants::reply::check(b"`\xc7\xd1\x80\xf7250 4UV\r\n", &[3]);
}

/// Found by `config_loader_holds_its_invariants`: sub-millisecond durations were rendered
/// rounded down, so `check-config` printed `interval = "0s"`, which does not load.
#[test]
fn sub_millisecond_durations_survive_the_round_trip() {
    invariants::config::check("[defaults]\ninterval = \"1ns\"");
    invariants::config::check("[defaults.timeouts]\nbanner = \"1500us\"");
}

/// The most `explain` reads from stdin, as one line and as many: every line is cut to the cap,
/// the output stays in proportion, and it takes well under a second per megabyte even in a
/// debug build (a quadratic scan would take minutes).
#[test]
fn explain_reads_its_largest_input_quickly_and_in_bounds() {
    use connector_probe::explain::pick::MAX_INPUT;
    let line = "450 4.4.316 Connection refused [Message=Socket error code 10061] [LastAttemptedServerName=mail.contoso.com] [LastAttemptedIP=192.0.2.10:25]";
    let one_line = format!("{line} {}", "[".repeat(MAX_INPUT - line.len() - 1));
    let many_lines = format!("{line}\n").repeat(MAX_INPUT / (line.len() + 1));
    let brackets = "[Message=(".repeat(MAX_INPUT / 10);
    for text in [one_line, many_lines, brackets] {
        let started = std::time::Instant::now();
        invariants::explain::check(&text);
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(20),
            "{} bytes took {took:?}",
            text.len()
        );
    }
}

//! The fast path against the whole-document parse: the same `Result` for every configuration
//! of the repository and for documents written to trip a header scanner; and the scan's cuts.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::*;
use crate::config::Config;

/// Whether the fast path should take a document, or leave it to the whole parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Taken {
    Fast,
    Whole,
}
use Taken::{Fast, Whole};

/// One `[[connector]]` with a smart host, as the fleet benchmark writes them.
fn fleet(n: usize) -> String {
    let mut text = String::new();
    for i in 0..n {
        let _ = writeln!(
            text,
            "[[connector]]\nname = \"fleet-{i:06}\"\nsmart_hosts = [\"127.10.{}.{}\"]",
            i / 250,
            i % 250 + 1
        );
    }
    text
}

/// Documents that a header scanner could get wrong, with the path each should take.
fn tricky() -> Vec<(String, String, Taken)> {
    let docs: Vec<(&str, String, Taken)> = vec![
        ("empty", String::new(), Whole),
        ("only a comment", "# [[connector]]\n".into(), Whole),
        (
            "defaults, then connectors",
            "[defaults]\nport = 2525\n[[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n\
             [[connector]]\nname = \"b\"\nmx_domain = \"example.com\"\nport = 26\n"
                .into(),
            Fast,
        ),
        (
            "defaults and daemon between connectors",
            "[[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n[defaults]\nport = 2525\n\
             [[connector]]\nname = \"b\"\nsmart_hosts = [\"127.0.0.2\"]\n[daemon]\nconcurrency = 3\n\
             [defaults.timeouts]\ndns = \"3s\"\n[[connector]]\nname = \"c\"\nsmart_hosts = [\"127.0.0.3\"]"
                .into(),
            Fast,
        ),
        (
            "connector sub-tables",
            "[[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n[connector.timeouts]\n\
             dns = \"2s\"\n# between\n[[connector]]\nname = \"b\"\nsmart_hosts = [\"127.0.0.2\"]\n\
             [ connector . timeouts ]\nconnect = \"4s\"\n[dns]\nnameservers = [\"127.0.0.53\"]\n"
                .into(),
            Fast,
        ),
        (
            "a sub-table after another table belongs to the last connector",
            "[[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n[defaults]\nport = 2525\n\
             [connector.timeouts]\ndns = \"2s\"\n"
                .into(),
            Whole,
        ),
        (
            "a sub-table before any connector",
            "[connector.timeouts]\ndns = \"2s\"\n[[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n"
                .into(),
            Whole,
        ),
        (
            "the same sub-table twice in one connector",
            "[[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n[connector.timeouts]\n\
             dns = \"2s\"\n[connector.timeouts]\nconnect = \"2s\"\n"
                .into(),
            Whole,
        ),
        (
            "dotted keys",
            "defaults.port = 2525\ndaemon.concurrency = 4\n[[connector]]\nname = \"a\"\n\
             smart_hosts = [\"127.0.0.1\"]\ntimeouts.dns = \"2s\"\n"
                .into(),
            Fast,
        ),
        (
            "dotted connector key at the top",
            "connector.name = \"x\"\n[[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n".into(),
            Whole,
        ),
        (
            "a quoted connector key at the top",
            "\"connector\" = []\n[[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n".into(),
            Whole,
        ),
        (
            "an empty inline array and tables",
            "connector = []\n[[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n".into(),
            Whole,
        ),
        (
            "an inline array of connectors",
            "connector = [\n  { name = \"a\", smart_hosts = [\"127.0.0.1\"] },\n  { name = \"b\", mx_domain = \"example.com\" },\n]\n"
                .into(),
            Whole,
        ),
        (
            "a quoted header",
            "[\"connector\"]\nname = \"x\"\n[[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n".into(),
            Whole,
        ),
        (
            "a quoted array header",
            "[[\"connector\"]]\nname = \"x\"\nsmart_hosts = [\"127.0.0.1\"]\n".into(),
            Whole,
        ),
        (
            "a connector table, not an array",
            "[[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n[connector]\nname = \"b\"\n".into(),
            Whole,
        ),
        (
            "spaces inside the double brackets",
            "[[ connector ]] # one\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n".into(),
            Fast,
        ),
        (
            "spaces between the double brackets",
            "[ [connector] ]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n".into(),
            Whole,
        ),
        (
            "an array of sub-tables",
            "[[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n[[connector.timeouts]]\ndns = \"1s\"\n".into(),
            Whole,
        ),
        (
            "a multi-line array whose lines start with brackets",
            "[[connector]]\nname = \"a\"\nsmart_hosts = [\n[\"127.0.0.1\"],\n[ [\"x\"] ]\n]\n\
             [[connector]]\nname = \"b\"\nsmart_hosts = [\n  \"127.0.0.2\", # ] [\n\"127.0.0.3\",\n]\n"
                .into(),
            Whole,
        ),
        (
            "a multi-line array of hosts",
            "[dns]\nnameservers = [\n  \"127.0.0.53\",\n  # [[connector]]\n  \"127.0.0.54\",\n]\n\
             [[connector]]\nname = \"b\"\nsmart_hosts = [\n  \"127.0.0.2\", # ] [\n\"127.0.0.3\",\n]\n"
                .into(),
            Fast,
        ),
        (
            "multi-line strings holding headers",
            "[daemon]\nstate_file = \"\"\"\n[[connector]]\nname = \"x\"\n[defaults]\n\"\"\"\n\
             [[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n[daemon.x]\n"
                .into(),
            Whole,
        ),
        (
            "multi-line strings holding headers, in a connector too",
            "[daemon]\nstate_file = '''\n[[connector]]\nname = \"x\"\n[defaults]\n'''\n\
             [[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\nhelo_name = \"\"\"\n[defaults]\n\"\"\"\n\
             [[connector]]\nname = \"b\"\nsmart_hosts = [\"127.0.0.2\"]\n"
                .into(),
            Fast,
        ),
        (
            "a path with brackets",
            "[daemon]\nstate_file = '''\n[[connector]]\n[defaults]\n'''\n\
             [[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n"
                .into(),
            Fast,
        ),
        (
            "comments with brackets",
            "# [[connector]]\n[defaults] # [daemon]\nport = 2525 # ]]\n  # [defaults]\n\
             [[connector]] # [x]\nname = \"a\" # [[connector]]\nsmart_hosts = [\"127.0.0.1\"] # ]\n"
                .into(),
            Fast,
        ),
        (
            "an unknown key in a connector",
            "[[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n[[connector]]\nname = \"b\"\nbogus = 1\n".into(),
            Whole,
        ),
        (
            "a connector key in another table",
            "[defaults]\nconnector = 1\n[[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n".into(),
            Whole,
        ),
        (
            "defaults twice, around connectors",
            "[defaults]\nport = 1\n[[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n[defaults]\nport = 2\n".into(),
            Whole,
        ),
        (
            "a duplicate name in different batches",
            format!("{}[[connector]]\nname = \"fleet-000001\"\nmx_domain = \"example.com\"\n", fleet(5)),
            Fast,
        ),
        (
            "a validation error in a connector",
            "[[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n[[connector]]\nname = \"b\"\nport = 0\nsmart_hosts = [\"127.0.0.1\"]\n".into(),
            Fast,
        ),
        (
            "a syntax error in a connector",
            "[[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"\n[[connector]]\nname = \"b\"\n".into(),
            Whole,
        ),
        (
            "an unterminated multi-line string",
            "[[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\nhelo_name = \"\"\"\n[[connector]]\nname = \"b\"\n".into(),
            Whole,
        ),
        (
            "an inline table over lines",
            "[[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\ntimeouts = {\n  dns = \"2s\",\n  connect = \"3s\" }\n[[connector]]\nname = \"b\"\nsmart_hosts = [\"127.0.0.1\"]\n".into(),
            Fast,
        ),
        (
            "a lone carriage return",
            "[[connector]]\rname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n".into(),
            Whole,
        ),
        (
            "a byte-order mark",
            "\u{feff}[[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n[defaults]\nport = 2525\n".into(),
            Fast,
        ),
        (
            "no newline at the end",
            "[defaults]\nport = 2525\n[[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]".into(),
            Fast,
        ),
        (
            "indented headers",
            "  [defaults]\n  port = 2525\n\t[[connector]]\n  name = \"a\"\n  smart_hosts = [\"127.0.0.1\"]\n".into(),
            Fast,
        ),
        (
            "a header followed by a key on its line",
            "[[connector]] name = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n".into(),
            Whole,
        ),
        ("a fleet", fleet(2500), Fast),
    ];
    // Every document again with CRLF line endings: the scan cuts after `\r\n`.
    let crlf: Vec<_> = docs
        .iter()
        .filter(|(name, _, _)| *name != "a lone carriage return")
        .map(|(name, text, taken)| (format!("{name} (CRLF)"), text.replace('\n', "\r\n"), *taken))
        .collect();
    docs.into_iter()
        .map(|(name, text, taken)| (name.to_owned(), text, taken))
        .chain(crlf)
        .collect()
}

/// Every configuration file of the repository, good and bad.
fn corpus() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("config/connector-probe.toml")];
    for dir in ["tests/configs/bad", "fuzz/seeds/config_loader"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    files.sort();
    files
}

/// The whole parse's and the fast path's results, and the fast path's raw configuration with
/// small batches against the whole parse's, so that connectors are split across batches.
fn assert_same(name: &str, text: &str, file: &Path) {
    let whole = Config::parse_with(text, file, false);
    let fast = Config::parse_with(text, file, true);
    assert_eq!(fast, whole, "{name}: the fast path changed the result");
    let raw_whole = toml::from_str::<RawConfig>(text).ok();
    for batch in [1, 2, 3, BATCH] {
        // Where the fast path declines, the whole parse decides; where it answers, the whole
        // parse must have succeeded with the same raw configuration.
        if let Some(raw) = parse_batched(text, batch) {
            assert_eq!(
                format!("{:?}", Some(raw)),
                format!("{raw_whole:?}"),
                "{name}: batches of {batch}"
            );
        }
    }
}

#[test]
fn the_fast_path_gives_the_whole_parse_result_for_every_repository_config() {
    let files = corpus();
    assert!(files.len() >= 40, "{} files", files.len());
    let mut fast = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert_same(&file.display().to_string(), &text, &file);
        fast += usize::from(parse(&text).is_some());
    }
    // 19 of the 48 files reach the fast path (the others fail to parse or have no connector),
    // so the comparison above compared the fast path's results, not the fallback's with itself.
    assert!(fast >= 15, "only {fast} files took the fast path");
}

#[test]
fn the_fast_path_gives_the_whole_parse_result_for_tricky_documents() {
    let file = Path::new("/etc/connector-probe/tricky.toml");
    for (name, text, expected) in tricky() {
        assert_same(&name, &text, file);
        let taken = if parse(&text).is_some() { Fast } else { Whole };
        assert_eq!(taken, expected, "{name}: {text:?}");
    }
}

/// The connector segments of `text`, as text.
fn segments(text: &str) -> Option<Vec<&str>> {
    Some(scan(text)?.into_iter().map(|r| &text[r]).collect())
}

#[test]
fn the_scan_cuts_at_connector_headers_and_nowhere_else() {
    let text = "top = 1\n[defaults]\nx = [\n[1],\n]\n# [[connector]]\n[[connector]]\nname = \"a\"\n\
                s = '''\n[defaults]\n'''\n[connector.timeouts]\n[[connector]] # b\nname = \"b\"\n\
                l = [\n[[\"c\"]],\n]\n\n[daemon]\n[[connector]]\nname = \"c\"";
    assert_eq!(
        segments(text).unwrap(),
        [
            "[[connector]]\nname = \"a\"\ns = '''\n[defaults]\n'''\n[connector.timeouts]\n",
            "[[connector]] # b\nname = \"b\"\nl = [\n[[\"c\"]],\n]\n\n",
            "[[connector]]\nname = \"c\"",
        ]
    );
    let crlf = text.replace('\n', "\r\n");
    assert_eq!(
        segments(&crlf).unwrap(),
        segments(text)
            .unwrap()
            .iter()
            .map(|s| s.replace('\n', "\r\n"))
            .collect::<Vec<_>>()
    );
    let rest = rest(text, &scan(text).unwrap());
    assert_eq!(rest.len(), text.len());
    assert_eq!(
        rest.split_whitespace().collect::<Vec<_>>().join(" "),
        "top = 1 [defaults] x = [ [1], ] # [[connector]] [daemon]"
    );
    assert_eq!(segments("[defaults]\n").unwrap(), Vec::<&str>::new());
    assert_eq!(segments("").unwrap(), Vec::<&str>::new());
}

#[test]
fn the_scan_refuses_what_it_cannot_reason_about() {
    for text in [
        "connector = []\n",
        "connector.name = \"a\"\n",
        "\"connector\".name = \"a\"\n",
        "[defaults]\n'connector' = 1\n",
        "[\"connector\"]\n",
        "[connector]\n",
        "[connector.timeouts]\n",
        "[[connector]]\nname = 1\n[defaults]\n[connector.timeouts]\n",
        "[ [connector] ]\n",
        "[[connector] ]\n",
        "[[connector]] x = 1\n",
        "[[connector]]\nx = [\n",
        "[[connector]]\nx = ]\n",
        "[[connector]]\rx = 1\n",
        "[[connector]]\nx = 1\r",
        "= 1\n",
        "[[connector]]\n= 1\n",
    ] {
        assert_eq!(scan(text), None, "{text:?}");
    }
}

/// Not a timing test: what bounds the memory is that no more than `BATCH` connectors are
/// deserialized at once, so check that a fleet is really read in several batches.
#[test]
fn a_fleet_is_read_in_batches_of_at_most_a_thousand() {
    let text = format!("[defaults]\nport = 2525\n{}", fleet(3000));
    let segments = scan(&text).unwrap();
    assert_eq!(segments.len(), 3000);
    let runs = batches(&segments, BATCH);
    assert_eq!(runs.len(), 3);
    for range in &runs {
        assert_eq!(text[range.clone()].matches("[[connector]]").count(), BATCH);
    }
    let raw = parse(&text).unwrap();
    assert_eq!(raw.connectors.len(), 3000);
    assert_eq!(raw.connectors[2999].name, "fleet-002999");
    // A table between connectors breaks a run: batches never span another table.
    let split = format!("{}[daemon]\n{}", fleet(3), fleet(2));
    assert_eq!(batches(&scan(&split).unwrap(), BATCH).len(), 2);
}

/// Pieces of configuration, good and bad, that the property below strings together in any
/// order: every document it makes must read the same through both paths.
const PIECES: &[&str] = &[
    "[[connector]]\nname = \"a\"\nsmart_hosts = [\"127.0.0.1\"]\n",
    "[[connector]]\nname = \"b\"\nmx_domain = \"example.com\"\n",
    "[[ connector ]] # c\nname = \"c\"\nsmart_hosts = [\n  \"127.0.0.2\",\n]\n",
    "[connector.timeouts]\ndns = \"2s\"\n",
    "timeouts.connect = \"3s\"\n",
    "port = 2526\n",
    "[defaults]\nport = 2525\n",
    "[defaults.timeouts]\nbanner = \"9s\"\n",
    "[daemon]\nconcurrency = 7\n",
    "[daemon]\nstate_file = '''\n[[connector]]\n[defaults]\n'''\n",
    "[dns]\nnameservers = [\n[\"127.0.0.53\"],\n]\n",
    "connector = []\n",
    "defaults.interval = \"1h\"\n",
    "# [[connector]] [defaults]\n",
    "\n",
    "[connector]\n",
    "[tls]\nrevocation = \"off\"\n",
    "helo_name = \"\"\"\n[[connector]]\n\"\"\"\n",
    "name = \"z\"\n",
];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    #[test]
    fn any_arrangement_of_pieces_reads_the_same_both_ways(
        picks in proptest::collection::vec(0..PIECES.len(), 0..12),
        crlf in proptest::bool::ANY,
    ) {
        let mut text: String = picks.iter().map(|&i| PIECES[i]).collect();
        if crlf {
            text = text.replace('\n', "\r\n");
        }
        assert_same("arrangement", &text, Path::new("/etc/connector-probe/p.toml"));
    }
}

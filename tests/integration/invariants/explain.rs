//! `explain` on any text: it reads every line without panicking, says for each whether it was
//! recognised, keeps its output in proportion to its input, and writes JSON with the
//! documented keys and names.

use connector_probe::explain::parse::MAX_LINE;
use connector_probe::explain::{self, render, table};

/// The keys interface.md promises on every object.
const KEYS: [&str; 12] = [
    "input",
    "kind",
    "code",
    "title",
    "message",
    "mfi_code",
    "condition",
    "stage",
    "server",
    "ip",
    "port",
    "fix",
];

const KINDS: [&str; 4] = ["queue", "ndr", "trace", "onprem"];
const STAGES: [&str; 8] = [
    "resolve",
    "connect",
    "banner",
    "ehlo",
    "starttls",
    "tls",
    "certificate",
    "ehlo_tls",
];

/// Explains `text` as stdin would bring it, and checks what comes out.
pub fn check(text: &str) {
    let entries = explain::pick(text);
    assert!(
        entries.len() <= text.lines().count(),
        "more entries ({}) than lines",
        entries.len()
    );
    let human = render::human(&entries, &[]);
    let json = render::json(&entries, &[]);
    // Each entry quotes parts of one capped line, each part at most once in every field that
    // shows it (the input; title and Message; the reply or the certificate's parts; the
    // server; the trace's fields): at most five lines' worth, plus a bounded explanation.
    // JSON escapes a control character in six bytes.
    let per_entry = 5 * MAX_LINE + 8 * 1024;
    let human_bound = entries.len() * per_entry;
    let json_bound = entries.len() * 6 * per_entry;
    assert!(
        human.len() <= human_bound,
        "human output of {} bytes",
        human.len()
    );
    assert!(
        json.len() <= json_bound,
        "JSON output of {} bytes",
        json.len()
    );
    let objects: Vec<&str> = json.lines().collect();
    assert_eq!(objects.len(), entries.len(), "one JSON object per entry");
    for (line, entry) in objects.iter().zip(&entries) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in KEYS {
            assert!(v.get(key).is_some(), "no {key:?} in {line}");
        }
        let input = v["input"].as_str().expect("input is a string");
        assert!(input.len() <= MAX_LINE, "input echoed beyond the cap");
        match entry {
            Ok(e) => {
                assert_eq!(v["recognised"], true);
                assert!(KINDS.contains(&v["kind"].as_str().unwrap_or("")), "{line}");
                let condition = v["condition"].as_str().expect("a condition");
                let facts = table::CONDITIONS
                    .iter()
                    .find(|c| c.name == condition)
                    .unwrap_or_else(|| panic!("unknown condition {condition:?}"));
                if let Some(stage) = e.stage {
                    assert!(STAGES.contains(&stage), "unknown stage {stage:?}");
                }
                if e.kind != explain::Kind::Onprem {
                    assert_eq!(e.stage.is_none(), facts.stage.is_none(), "{line}");
                    assert!(e.mfi_code.is_some(), "an EOP line without mfi_code: {line}");
                }
                assert!(!e.code.is_empty() || e.kind == explain::Kind::Onprem);
                if let Some(ip) = &e.ip {
                    assert!(ip.parse::<std::net::IpAddr>().is_ok(), "ip {ip:?}");
                }
            }
            Err(_) => {
                assert_eq!(v["recognised"], false);
                assert!(v["condition"].is_null());
            }
        }
    }
    assert_eq!(
        explain::exit_code(&entries),
        match entries.iter().filter(|e| e.is_ok()).count() {
            0 => explain::EXIT_NONE,
            n if n == entries.len() => explain::EXIT_ALL,
            _ => explain::EXIT_SOME,
        }
    );
}

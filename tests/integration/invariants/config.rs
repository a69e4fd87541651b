//! The configuration loader, on any text.

use std::path::Path;

use connector_probe::config::Config;

/// Loads `text` as a configuration. An error must point into the text (and name a key
/// whenever the text is TOML at all); a configuration must survive the round trip through
/// `check-config`'s output unchanged.
pub fn check(text: &str) {
    // A bare file name: relative `ca_file` and `crl_file` paths stay relative.
    let file = Path::new("fuzz.toml");
    match Config::parse(text, file) {
        Err(e) => {
            let (Some(line), Some(column)) = (e.line, e.column) else {
                panic!("error without a place: {e}");
            };
            let lines: Vec<&str> = text.split('\n').collect();
            assert!(
                (1..=lines.len()).contains(&line),
                "line out of the text: {e}"
            );
            let width = lines[line - 1].chars().count();
            assert!((1..=width + 1).contains(&column), "column out of line: {e}");
            if text.parse::<toml::Table>().is_ok() {
                assert!(e.key.is_some(), "valid TOML but no key: {e}");
            }
        }
        Ok(config) => {
            let rendered = config.effective_toml();
            let again = Config::parse(&rendered, file)
                .unwrap_or_else(|e| panic!("effective config rejected: {e}\n{rendered}"));
            assert_eq!(again, config, "round trip changed the config:\n{rendered}");
        }
    }
}

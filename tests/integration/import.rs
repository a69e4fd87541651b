//! `import exchange`: real exports (`tests/fixtures/exchange/`) through the binary, with
//! output the configuration loader and `check-config` accept.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use connector_probe::config::{Config, Route, TlsMode};

use crate::util::binary;

fn fixture(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests/fixtures/exchange", name]
        .iter()
        .collect();
    path.display().to_string()
}

fn import(extra: &[&str]) -> Output {
    Command::new(binary())
        .args(["import", "exchange"])
        .args(extra)
        .env_remove("CONNECTOR_PROBE_CONFIG")
        .output()
        .expect("the binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Imports a fixture to stdout and loads what was printed.
fn imported(name: &str, want_exit: i32) -> (Config, String) {
    let out = import(&[&fixture(name)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(want_exit), "{name}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let text = String::from_utf8(out.stdout).expect("UTF-8 on stdout");
    let config = Config::parse(&text, Path::new(name))
        .unwrap_or_else(|e| panic!("{name}: the fragment does not load: {e}\n{text}"));
    (config, err)
}

fn assert_mentions(stderr: &str, expected: &[&str]) {
    for line in expected {
        assert!(stderr.contains(line), "missing {line:?} in:\n{stderr}");
    }
}

fn names(config: &Config) -> Vec<&str> {
    config.connectors.iter().map(|c| c.name.as_str()).collect()
}

fn smart_hosts(config: &Config, name: &str) -> Vec<String> {
    match &config
        .connector(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .route
    {
        Route::SmartHosts(hosts) => hosts.iter().map(ToString::to_string).collect(),
        Route::Mx(domain) => panic!("{name} routes by MX to {domain}"),
    }
}

#[test]
fn powershell_7_export_with_hybrid_partner_disabled_and_test_mode() {
    let (config, err) = imported("ps7-connectors.json", 0);
    assert_eq!(
        names(&config),
        [
            "Outbound-to-5f1c9e02-8f7a-4a5e-9b1e-3d2c7a6b4e10",
            "Fabrikam-partner-TLS-fabrikam.com",
            "Fabrikam-partner-TLS-fabrikam.co.uk",
        ]
    );
    let hybrid = &config.connectors[0];
    assert_eq!(hybrid.settings.tls, TlsMode::DomainValidation);
    assert_eq!(
        hybrid
            .tls_domain
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("mail.contoso.com")
    );
    assert_eq!(smart_hosts(&config, &hybrid.name), ["mail.contoso.com"]);
    let partner = &config.connectors[1];
    assert_eq!(partner.route, Route::Mx("fabrikam.com".into()));
    assert_eq!(partner.settings.tls, TlsMode::CertificateValidation);
    assert_mentions(
        &err,
        &[
            "warning: connector \"Fabrikam partner (TLS)\": RecipientDomains: \"*.fabrikam.net\" is a wildcard, not probeable",
            "note: connector \"Legacy relay (old datacenter)\": Enabled: false",
            "note: connector \"Northwind pilot\": TestMode: true",
        ],
    );
}

#[test]
fn windows_powershell_export_with_bom_integer_enums_and_a_cidr_smart_host() {
    let (config, err) = imported("ps51-bom.json", 0);
    let hybrid = &config.connectors[0];
    assert_eq!(
        hybrid.settings.tls,
        TlsMode::DomainValidation,
        "4 is DomainValidation"
    );
    let pool = config
        .connector("Relay-pool-DMZ")
        .expect("the CIDR connector");
    assert_eq!(
        pool.settings.tls,
        TlsMode::EncryptionOnly,
        "1 is EncryptionOnly"
    );
    assert_eq!(
        smart_hosts(&config, "Relay-pool-DMZ"),
        [
            "192.0.2.1",
            "192.0.2.2",
            "192.0.2.3",
            "192.0.2.4",
            "192.0.2.5",
            "192.0.2.6",
            "mx2.contoso.com"
        ]
    );
    assert!(
        err.contains("connector \"Relay pool (DMZ)\": SmartHosts: \"192.0.2.0/29\" expanded"),
        "{err}"
    );
    let partner = config
        .connector("Fabrikam-partner-TLS-fabrikam.com")
        .expect("the MX connector, from a {value, Count} list");
    assert_eq!(partner.settings.tls, TlsMode::CertificateValidation, "2");
    assert_eq!(config.connectors.len(), 3);
}

#[test]
fn single_object_in_utf16_as_windows_powershell_redirects_it() {
    let (config, _) = imported("ps51-single-utf16.json", 0);
    assert_eq!(config.connectors.len(), 1);
    assert_eq!(
        smart_hosts(&config, &config.connectors[0].name),
        ["mail.contoso.com", "192.0.2.25"]
    );
    let (config, _) = imported("ps7-single.json", 0);
    assert_eq!(config.connectors.len(), 1);
}

#[test]
fn broken_connectors_are_named_and_the_others_still_imported() {
    let (config, err) = imported("broken-among-good.json", 1);
    assert_eq!(
        names(&config),
        [
            "Outbound-to-5f1c9e02-8f7a-4a5e-9b1e-3d2c7a6b4e10",
            "Woodgrove-Bank"
        ]
    );
    assert_mentions(
        &err,
        &[
            "error: connector \"Tailspin (DomainValidation)\": TlsDomain: ",
            "error: connector \"Litware whole range\": SmartHosts: \"198.51.100.0/22\"",
            "error: connector \"Adatum\": TlsSettings: \"Strict\"",
        ],
    );
}

#[test]
fn output_writes_a_whole_configuration_that_check_config_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connector-probe.toml");
    let target = path.to_str().unwrap();
    let out = import(&[&fixture("ps7-connectors.json"), "--output", target]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "the configuration goes to the file");
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(written.contains("\n[defaults]\n"), "{written}");
    let check = Command::new(binary())
        .args(["check-config", "--config", target])
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    let effective = String::from_utf8_lossy(&check.stdout);
    assert!(effective.contains("name = \"Fabrikam-partner-TLS-fabrikam.co.uk\""));
}

#[test]
fn an_existing_file_is_replaced_only_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connector-probe.toml");
    let target = path.to_str().unwrap();
    std::fs::write(&path, "# hand-written\n").unwrap();

    let out = import(&[&fixture("ps7-single.json"), "--output", target]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("exists; give --force"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "# hand-written\n");

    let out = import(&[&fixture("ps7-single.json"), "--output", target, "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let config = Config::load(&path).unwrap();
    assert_eq!(config.connectors.len(), 1);
}

#[test]
fn unusable_input_is_exit_3_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("empty.json", "", "holds no connector"),
        ("array.json", "[]", "holds no connector"),
        ("text.json", "Name : Outbound to contoso\r\n", "not JSON"),
        (
            "disabled.json",
            r#"{"Name": "a", "Enabled": false, "SmartHosts": ["a.contoso.com"]}"#,
            "no connector could be imported",
        ),
        (
            "broken.json",
            r#"[{"Name": "a", "SmartHosts": []}]"#,
            "no connector could be imported",
        ),
    ];
    for (name, text, expected) in cases {
        let input = dir.path().join(name);
        std::fs::write(&input, text).unwrap();
        let output = dir.path().join(format!("{name}.toml"));
        let out = import(&[
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{name}: {err}");
        assert!(err.contains(expected), "{name}: {err}");
        assert!(!output.exists(), "{name}: nothing is written");
        assert!(out.stdout.is_empty(), "{name}");
    }
    let out = import(&["/nonexistent/connectors.json"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).starts_with("error: cannot read /nonexistent/connectors.json"));
}

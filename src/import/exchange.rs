//! Exchange Online's description of its outbound connectors, as
//! `Get-OutboundConnector | ConvertTo-Json -Depth 5` writes it from Windows PowerShell 5.1
//! or PowerShell 7: the file's encoding, the top level, and each connector's properties.

use serde_json::{Map, Value};

use super::json::{self, Enum};
use super::{Finding, ImportError};
use crate::config::TlsMode;

/// Keys under which a serialised `SmartHost` holds its host (a `Hostname` or an `IPAddress`).
const HOST_KEYS: [&str; 4] = ["Domain", "Address", "HostnameString", "IPAddressToString"];
/// Keys under which a serialised `SmtpDomainWithSubdomains` holds its domain; `Address`
/// keeps the `*.` of a wildcard, `Domain` does not.
const DOMAIN_KEYS: [&str; 3] = ["Address", "Domain", "SmtpDomain"];
/// `Microsoft.Exchange.Data.TenantConnectorType`.
const CONNECTOR_TYPES: [(i64, &str); 2] = [(1, "OnPremises"), (2, "Partner")];
/// `Microsoft.Exchange.Data.TenantConnectorSource`.
const CONNECTOR_SOURCES: [(i64, &str); 3] = [(0, "Default"), (1, "Migrated"), (2, "HybridWizard")];

/// One outbound connector, with the properties the import uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeConnector {
    /// `Name`, else `Identity`.
    pub name: String,
    pub enabled: bool,
    pub test_mode: bool,
    pub use_mx_record: bool,
    /// `SmartHosts` entries as written: names, addresses, CIDR ranges.
    pub smart_hosts: Vec<String>,
    /// `RecipientDomains` as written, wildcards included.
    pub recipient_domains: Vec<String>,
    pub tls: TlsMode,
    pub tls_domain: Option<String>,
    /// What the connector is, for the comment above its entries: type, source, last change.
    pub about: Vec<String>,
}

/// The text of an export: UTF-8 with or without a BOM (PowerShell 7, `Out-File -Encoding
/// utf8`), or UTF-16 (what Windows PowerShell 5.1's `>` writes). Text that is not UTF-8 is
/// read with replacement characters and a warning: host names are ASCII either way.
pub fn decode(bytes: &[u8], findings: &mut Vec<Finding>) -> Result<String, ImportError> {
    let text = match bytes {
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes)?,
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes)?,
        [a, 0, ..] if *a != 0 => utf16(bytes, u16::from_le_bytes)?,
        [0, b, ..] if *b != 0 => utf16(bytes, u16::from_be_bytes)?,
        _ => match std::str::from_utf8(bytes) {
            Ok(text) => text.to_owned(),
            Err(e) => {
                findings.push(Finding::file_warning(format!(
                    "the file is not UTF-8 (invalid byte at offset {}); non-ASCII characters are replaced",
                    e.valid_up_to()
                )));
                String::from_utf8_lossy(bytes).into_owned()
            }
        },
    };
    Ok(text.strip_prefix('\u{FEFF}').unwrap_or(&text).to_owned())
}

fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> Result<String, ImportError> {
    if bytes.len() % 2 != 0 {
        return Err(ImportError::NotText(
            "UTF-16 with an odd number of bytes".into(),
        ));
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| unit([pair[0], pair[1]]))
        .collect();
    String::from_utf16(&units).map_err(|_| ImportError::NotText("invalid UTF-16".into()))
}

/// The connectors of an export: one object, or an array of them. Each is read on its own,
/// so one unusable connector leaves the others.
pub fn connectors(text: &str) -> Result<Vec<Result<ExchangeConnector, Finding>>, ImportError> {
    if text.trim().is_empty() {
        return Err(ImportError::Empty);
    }
    let value: Value = super::strict::parse(text).map_err(ImportError::NotJson)?;
    let items = match json::unwrap(&value) {
        Value::Array(items) if items.is_empty() => return Err(ImportError::Empty),
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![&value],
        other => return Err(ImportError::NotConnectors(json::show(other))),
    };
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, item)| connector(item, i + 1))
        .collect())
}

/// A property that cannot be used, and why.
struct Bad(&'static str, String);

fn connector(item: &Value, position: usize) -> Result<ExchangeConnector, Finding> {
    let Some(obj) = json::unwrap(item).as_object() else {
        return Err(Finding::error(
            &format!("#{position}"),
            None,
            format!("{} is not a connector object", json::show(item)),
        ));
    };
    let name = name(obj).map_err(|m| Finding::error(&format!("#{position}"), Some("Name"), m))?;
    read(obj, name.clone()).map_err(|Bad(property, message)| {
        Finding::error(&format!("{name:?}"), Some(property), message)
    })
}

fn name(obj: &Map<String, Value>) -> Result<String, String> {
    ["Name", "Identity"]
        .iter()
        .find_map(|key| json::property(obj, key))
        .ok_or_else(|| "missing: every connector has a Name".to_owned())
        .and_then(|v| json::single(v, &["Name"]))
}

fn read(obj: &Map<String, Value>, name: String) -> Result<ExchangeConnector, Bad> {
    let flag = |key: &'static str, absent: bool| match json::property(obj, key) {
        None => Ok(absent),
        Some(v) => json::boolean(v).map_err(|m| Bad(key, m)),
    };
    let many = |key: &'static str, keys: &[&str]| match json::property(obj, key) {
        None => Ok(Vec::new()),
        Some(v) => json::list(v, keys).map_err(|m| Bad(key, m)),
    };
    let tls_domain = json::property(obj, "TlsDomain")
        .map(|v| json::single(v, &DOMAIN_KEYS).map_err(|m| Bad("TlsDomain", m)))
        .transpose()?;
    Ok(ExchangeConnector {
        name,
        enabled: flag("Enabled", true)?,
        test_mode: flag("TestMode", false)?,
        use_mx_record: flag("UseMXRecord", false)?,
        smart_hosts: many("SmartHosts", &HOST_KEYS)?,
        recipient_domains: many("RecipientDomains", &DOMAIN_KEYS)?,
        tls: tls_mode(json::property(obj, "TlsSettings")).map_err(|m| Bad("TlsSettings", m))?,
        tls_domain,
        about: about(obj),
    })
}

/// `TlsSettings`, a `Microsoft.Exchange.Data.TlsAuthLevel`: `$null` is opportunistic TLS.
/// The numbers are the enum's (EncryptionOnly = 1, CertificateValidation = 2,
/// DomainValidation = 4), which Windows PowerShell 5.1 writes instead of the names.
fn tls_mode(v: Option<&Value>) -> Result<TlsMode, String> {
    let Some(v) = v else {
        return Ok(TlsMode::Opportunistic);
    };
    match json::enumeration(v)? {
        Enum::Number(0) => Ok(TlsMode::Opportunistic),
        Enum::Number(1) => Ok(TlsMode::EncryptionOnly),
        Enum::Number(2) => Ok(TlsMode::CertificateValidation),
        Enum::Number(4) => Ok(TlsMode::DomainValidation),
        Enum::Name(n) if n.is_empty() || n == "null" || n == "none" => Ok(TlsMode::Opportunistic),
        Enum::Name(n) if n == "encryptiononly" => Ok(TlsMode::EncryptionOnly),
        Enum::Name(n) if n == "certificatevalidation" => Ok(TlsMode::CertificateValidation),
        Enum::Name(n) if n == "domainvalidation" => Ok(TlsMode::DomainValidation),
        _ => Err(format!(
            "{} is not a TLS setting (EncryptionOnly or 1, CertificateValidation or 2, DomainValidation or 4, or null)",
            json::show(v)
        )),
    }
}

/// Type, source and last change, each only when the export has it.
fn about(obj: &Map<String, Value>) -> Vec<String> {
    let label = |key, names: &[(i64, &str)]| {
        json::property(obj, key).and_then(|v| json::enum_label(v, names))
    };
    let changed = ["WhenChangedUTC", "WhenChanged"]
        .iter()
        .find_map(|key| json::property(obj, key).and_then(json::date));
    [
        label("ConnectorType", &CONNECTOR_TYPES),
        label("ConnectorSource", &CONNECTOR_SOURCES),
        changed.map(|d| format!("changed {d}")),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn one(v: Value) -> Result<ExchangeConnector, Finding> {
        connectors(&v.to_string()).unwrap().remove(0)
    }

    #[test]
    fn encodings_powershell_writes() {
        let json = "[{\"Name\":\"a\"}]";
        let mut utf8_bom = vec![0xEF, 0xBB, 0xBF];
        utf8_bom.extend_from_slice(json.as_bytes());
        let mut utf16_le = vec![0xFF, 0xFE];
        utf16_le.extend(json.encode_utf16().flat_map(u16::to_le_bytes));
        let utf16_be_no_bom: Vec<u8> = json.encode_utf16().flat_map(u16::to_be_bytes).collect();
        for bytes in [
            json.as_bytes().to_vec(),
            utf8_bom,
            utf16_le,
            utf16_be_no_bom,
        ] {
            let mut findings = Vec::new();
            assert_eq!(decode(&bytes, &mut findings).unwrap(), json);
            assert!(findings.is_empty());
        }
        let mut findings = Vec::new();
        let latin1 = b"[{\"Name\":\"M\xfcller\"}]";
        assert!(
            decode(latin1, &mut findings)
                .unwrap()
                .contains("M\u{FFFD}ller")
        );
        assert_eq!(findings.len(), 1);
        assert!(decode(&[0xFF, 0xFE, 0x41], &mut findings).is_err());
    }

    #[test]
    fn top_level_forms() {
        assert!(matches!(connectors(""), Err(ImportError::Empty)));
        assert!(matches!(connectors(" \r\n"), Err(ImportError::Empty)));
        assert!(matches!(connectors("[]"), Err(ImportError::Empty)));
        assert!(matches!(
            connectors("{\"Name\": "),
            Err(ImportError::NotJson(_))
        ));
        assert!(matches!(
            connectors("\"x\""),
            Err(ImportError::NotConnectors(_))
        ));
        assert_eq!(connectors("{\"Name\": \"a\"}").unwrap().len(), 1);
        assert_eq!(
            connectors("{\"value\": [{\"Name\": \"a\"}, {\"Name\": \"b\"}], \"Count\": 2}")
                .unwrap()
                .len(),
            2
        );
        let read = connectors("[{\"Name\": \"a\"}, 7, {\"Identity\": \"c\"}]").unwrap();
        assert!(read[0].is_ok() && read[2].is_ok());
        let err = read[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("connector #2"), "{err}");
    }

    #[test]
    fn tls_settings_as_names_numbers_and_null() {
        for (v, want) in [
            (json!(null), TlsMode::Opportunistic),
            (json!("EncryptionOnly"), TlsMode::EncryptionOnly),
            (
                json!("certificatevalidation"),
                TlsMode::CertificateValidation,
            ),
            (json!("DomainValidation"), TlsMode::DomainValidation),
            (json!(1), TlsMode::EncryptionOnly),
            (json!(2), TlsMode::CertificateValidation),
            (json!(4), TlsMode::DomainValidation),
            (json!({"value": 4}), TlsMode::DomainValidation),
        ] {
            let c = one(json!({"Name": "a", "TlsSettings": v})).unwrap();
            assert_eq!(c.tls, want, "{v}");
        }
        for bad in [json!(3), json!("Strict"), json!([2])] {
            let err = one(json!({"Name": "a", "TlsSettings": bad}))
                .unwrap_err()
                .to_string();
            assert!(err.contains("connector \"a\": TlsSettings: "), "{err}");
        }
    }

    #[test]
    fn defaults_when_properties_are_absent() {
        let c = one(json!({"Identity": "Partner"})).unwrap();
        assert_eq!(c.name, "Partner");
        assert!(c.enabled && !c.test_mode && !c.use_mx_record);
        assert!(c.smart_hosts.is_empty() && c.recipient_domains.is_empty());
        assert_eq!(c.tls, TlsMode::Opportunistic);
        assert_eq!(c.tls_domain, None);
        let err = one(json!({"SmartHosts": ["a.contoso.com"]}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("connector #1: Name: missing"), "{err}");
    }

    #[test]
    fn unusable_properties_are_named() {
        for (key, v) in [
            ("Enabled", json!("maybe")),
            ("UseMXRecord", json!([])),
            ("SmartHosts", json!([{"Port": 25}])),
            ("TlsDomain", json!(17)),
        ] {
            let mut c = json!({"Name": "Partner"});
            c[key] = v;
            let err = one(c).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("error: connector \"Partner\": {key}: ")),
                "{err}"
            );
        }
    }

    #[test]
    fn about_reads_enum_numbers_and_dates() {
        let c = one(json!({
            "Name": "a",
            "ConnectorType": 1,
            "ConnectorSource": "HybridWizard",
            "WhenChanged": "/Date(1710754887000)/"
        }))
        .unwrap();
        assert_eq!(
            c.about,
            ["OnPremises", "HybridWizard", "changed 2024-03-18T09:41:27Z"]
        );
    }
}

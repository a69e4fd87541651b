//! `import exchange`: `[[connector]]` entries from Exchange Online's own description of its
//! outbound connectors (`Get-OutboundConnector | ConvertTo-Json -Depth 5`).
//!
//! [`exchange()`] reads the export (every encoding and shape PowerShell writes: modules
//! `exchange` and `json`), maps each connector (`map`, `hosts`, `names`) and keeps, for each,
//! the [`Finding`]s that name the connector and the property. A connector that cannot be
//! imported is an error for that connector only. [`Import::fragment`] and
//! [`Import::config_file`] render the TOML and check it with the configuration loader, so
//! an import never hands out a file that `check-config` would reject.

mod exchange;
mod hosts;
mod json;
mod map;
mod names;
mod render;
mod strict;

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError};
pub use map::{Entry, Mapped};

/// Exit code when every connector was imported or deliberately skipped.
pub const EXIT_OK: u8 = 0;
/// Exit code when some connectors could not be imported but others were.
pub const EXIT_PARTIAL: u8 = 1;
/// Exit code when the export is unusable or nothing could be imported.
pub const EXIT_FAILED: u8 = 3;

/// Why the import as a whole failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the file is not text: {0}")]
    NotText(String),
    #[error("the export holds no connector (did Get-OutboundConnector return any?)")]
    Empty,
    #[error("the file is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("expected a connector object or an array of them, found {0}")]
    NotConnectors(String),
    #[error("no connector could be imported")]
    Nothing,
    #[error("{} exists; give --force to replace it", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the generated configuration does not load, which is a bug in the import: {0}")]
    Unloadable(ConfigError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Deliberately not imported, or left out as Exchange itself would ignore it.
    Note,
    /// Imported, but not exactly as written.
    Warning,
    /// The connector could not be imported.
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// Something the admin should know about one connector's import, or about the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// The connector as Exchange names it, quoted, or `#n` when it has no name; `None` for
    /// the file as a whole.
    pub connector: Option<String>,
    /// The Exchange property concerned.
    pub property: Option<&'static str>,
    pub message: String,
}

impl Finding {
    fn at(
        severity: Severity,
        connector: &str,
        property: Option<&'static str>,
        message: impl Into<String>,
    ) -> Finding {
        Finding {
            severity,
            connector: Some(connector.to_owned()),
            property,
            message: message.into(),
        }
    }

    fn note(connector: &str, property: Option<&'static str>, message: impl Into<String>) -> Self {
        Self::at(Severity::Note, connector, property, message)
    }

    fn warning(
        connector: &str,
        property: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        Self::at(Severity::Warning, connector, property, message)
    }

    fn error(connector: &str, property: Option<&'static str>, message: impl Into<String>) -> Self {
        Self::at(Severity::Error, connector, property, message)
    }

    fn file_warning(message: String) -> Finding {
        Finding {
            severity: Severity::Warning,
            connector: None,
            property: None,
            message,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The property and the message, without severity and connector.
    pub fn detail(&self) -> String {
        match self.property {
            Some(p) => format!("{p}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.severity.as_str())?;
        if let Some(c) = &self.connector {
            write!(f, "connector {c}: ")?;
        }
        f.write_str(&self.detail())
    }
}

/// The result of reading an export: every connector with its entries and findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// Findings about the file as a whole (its encoding).
    pub file_findings: Vec<Finding>,
    /// In the export's order.
    pub connectors: Vec<Mapped>,
}

/// Reads an export of `Get-OutboundConnector | ConvertTo-Json` and maps every connector.
pub fn exchange(bytes: &[u8]) -> Result<Import, ImportError> {
    let mut file_findings = Vec::new();
    let text = exchange::decode(bytes, &mut file_findings)?;
    let mut names = names::Names::default();
    let connectors = exchange::connectors(&text)?
        .into_iter()
        .map(|read| match read {
            Ok(c) => {
                let mut mapped = map::map(&c);
                for e in &mut mapped.entries {
                    e.name = names.claim(&e.name);
                }
                mapped
            }
            Err(finding) => Mapped::unreadable(finding),
        })
        .collect();
    Ok(Import {
        file_findings,
        connectors,
    })
}

impl Import {
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.file_findings
            .iter()
            .chain(self.connectors.iter().flat_map(|m| &m.findings))
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.connectors.iter().flat_map(|m| &m.entries)
    }

    /// [`EXIT_OK`], [`EXIT_PARTIAL`] or [`EXIT_FAILED`].
    pub fn exit_code(&self) -> u8 {
        match (
            self.entries().next(),
            self.connectors.iter().any(Mapped::is_failed),
        ) {
            (None, _) => EXIT_FAILED,
            (Some(_), true) => EXIT_PARTIAL,
            (Some(_), false) => EXIT_OK,
        }
    }

    /// One line for the admin: how many entries from how many connectors, what was left.
    pub fn summary(&self) -> String {
        let failed = self.connectors.iter().filter(|m| m.is_failed()).count();
        let skipped = self
            .connectors
            .iter()
            .filter(|m| m.entries.is_empty() && !m.is_failed())
            .count();
        format!(
            "{} [[connector]] entries from {} Exchange connector(s): {skipped} skipped, {failed} not imported",
            self.entries().count(),
            self.connectors.len()
        )
    }

    /// The `[[connector]]` entries with their comments; `source` names the export in them.
    pub fn fragment(&self, source: &str) -> Result<String, ImportError> {
        self.checked(render::fragment(&self.connectors, source))
    }

    /// A whole configuration file: a header, `[defaults]` to fill in, the entries.
    pub fn config_file(&self, source: &str) -> Result<String, ImportError> {
        self.checked(render::config_file(&self.connectors, source))
    }

    fn checked(&self, text: String) -> Result<String, ImportError> {
        if self.entries().next().is_none() {
            return Err(ImportError::Nothing);
        }
        Config::parse(&text, Path::new("<import>")).map_err(ImportError::Unloadable)?;
        Ok(text)
    }
}

/// Writes a generated configuration to `path`. An existing file is an error unless `force`;
/// then it is replaced through a rename, so a daemon reloading on SIGHUP never reads half a
/// file.
pub fn write_config(path: &Path, text: &str, force: bool) -> Result<(), ImportError> {
    let failed = |source| ImportError::Write {
        path: path.to_owned(),
        source,
    };
    if !force {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => ImportError::Exists(path.to_owned()),
                _ => failed(e),
            })?;
        // The file is ours (created exclusively, and O_EXCL never follows a link), so a
        // write that fails half-way (a full disk) removes it rather than leave half a config.
        return file.write_all(text.as_bytes()).map_err(|e| {
            drop(file);
            let _ = std::fs::remove_file(path);
            failed(e)
        });
    }
    // Keep the mode of the file being replaced (a configuration may be readable by few).
    let permissions = std::fs::metadata(path).ok().map(|m| m.permissions());
    crate::files::replace(path, text.as_bytes(), permissions).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIXED: &str = r#"[
        {"Name": "Outbound to 5f1c9e02", "ConnectorType": "OnPremises", "TlsSettings": "DomainValidation",
         "TlsDomain": "mail.contoso.com", "SmartHosts": ["mail.contoso.com"], "Enabled": true},
        {"Name": "Fabrikam partner", "UseMXRecord": true, "RecipientDomains": "{fabrikam.com, *.fabrikam.net}",
         "TlsSettings": 2},
        {"Name": "Old relay", "Enabled": false, "SmartHosts": ["relay.contoso.com"]},
        {"Name": "Broken", "SmartHosts": ["mail..contoso.com"]},
        {"Name": "Relay pool", "SmartHosts": ["[192.0.2.0/29]"], "TlsSettings": 1}
    ]"#;

    #[test]
    fn a_mixed_export_imports_what_it_can() {
        let import = exchange(MIXED.as_bytes()).unwrap();
        let names: Vec<&str> = import.entries().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Outbound-to-5f1c9e02",
                "Fabrikam-partner-fabrikam.com",
                "Relay-pool"
            ]
        );
        assert_eq!(import.exit_code(), EXIT_PARTIAL);
        let findings: Vec<String> = import.findings().map(ToString::to_string).collect();
        assert_eq!(findings.len(), 4, "{findings:#?}");
        assert!(
            findings
                .iter()
                .any(|f| f.starts_with("error: connector \"Broken\": SmartHosts: "))
        );
        assert_eq!(
            import.summary(),
            "3 [[connector]] entries from 5 Exchange connector(s): 1 skipped, 1 not imported"
        );
    }

    #[test]
    fn output_loads_with_the_configuration_loader() {
        let import = exchange(MIXED.as_bytes()).unwrap();
        let fragment = import.fragment("connectors.json").unwrap();
        let config = Config::parse(&fragment, Path::new("f.toml")).unwrap();
        assert_eq!(config.connectors.len(), 3);
        assert!(fragment.contains("# Exchange connector \"Outbound to 5f1c9e02\": OnPremises\n"));
        assert!(fragment.contains("# note: Enabled: false"));
        assert!(fragment.contains("# error: SmartHosts: "));
        let pool = config.connector("Relay-pool").unwrap();
        assert_eq!(pool.settings.tls, crate::config::TlsMode::EncryptionOnly);
        let whole = import.config_file("connectors.json").unwrap();
        assert!(whole.contains("\n[defaults]\n"));
        let again = Config::parse(&whole, Path::new("c.toml")).unwrap();
        assert_eq!(again.connectors, config.connectors);
    }

    #[test]
    fn nothing_imported_is_an_error() {
        let import = exchange(br#"[{"Name": "a", "Enabled": false}]"#).unwrap();
        assert_eq!(import.exit_code(), EXIT_FAILED);
        assert!(matches!(import.fragment("x"), Err(ImportError::Nothing)));
    }

    #[test]
    fn hostile_text_stays_in_its_comment() {
        let import = exchange(
            "[{\"Name\": \"evil\\n[[connector]]\\nname = \\\"x\\\"\", \"ConnectorType\": \"a\\r\\u007fb\", \"SmartHosts\": \"mail.contoso.com\"}]"
                .as_bytes(),
        )
        .unwrap();
        let text = import.fragment("in\nput.json").unwrap();
        let config = Config::parse(&text, Path::new("f.toml")).unwrap();
        assert_eq!(config.connectors.len(), 1);
        assert_eq!(config.connectors[0].name, "evil-connector-name-x");
    }

    #[test]
    fn writing_refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        write_config(&path, "a", false).unwrap();
        assert!(matches!(
            write_config(&path, "b", false),
            Err(ImportError::Exists(_))
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a");
        write_config(&path, "c", true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "c");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

//! The one error a configuration can produce: where it is and what is wrong.

use std::fmt;
use std::path::PathBuf;

/// A configuration error, located as precisely as the source allows.
///
/// Displayed as `FILE:LINE:COLUMN: key `KEY`: MESSAGE`, the form editors and CI logs link to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the configuration came from (`<built-in>` for an embedded one).
    pub file: PathBuf,
    /// 1-based line, when the error has a place in the file.
    pub line: Option<usize>,
    /// 1-based column (in characters), when the error has a place in the file.
    pub column: Option<usize>,
    /// The dotted key path, e.g. `connector[1].timeouts.dns`.
    pub key: Option<String>,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

//! What must hold for any input to the two parsers that read untrusted text: the SMTP reply
//! parser (bytes from a server) and the configuration loader (a file an admin or an import
//! wrote). Shared by the property tests (`properties`, run by `cargo test`) and the cargo-fuzz
//! targets (`fuzz/`), which include one file each by path; so these files use nothing but the
//! library and `toml`. Each check panics, with what it saw, when an invariant breaks.

pub mod config;
pub mod reply;

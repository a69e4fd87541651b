//! What must hold for any input to the parsers that read untrusted text: the SMTP reply
//! parser (bytes from a server), the configuration loader (a file an admin or an import
//! wrote) and `explain` (whatever an admin pastes). Shared by the property tests
//! (`properties`, run by `cargo test`) and the cargo-fuzz targets (`fuzz/`), which include one
//! file each by path; so these files use nothing but the library, `toml` and `serde_json`. Each check panics, with what it saw, when an invariant breaks.

pub mod config;
pub mod explain;
pub mod reply;

//! Any UTF-8 text as a configuration file: see `invariants/config.rs` for what must hold.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/integration/invariants/config.rs"]
mod invariants;

fuzz_target!(|text: &str| invariants::check(text));

//! Any text pasted into `explain`, as stdin brings it: see `invariants/explain.rs` for what
//! must hold.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/integration/invariants/explain.rs"]
mod invariants;

fuzz_target!(|input: &[u8]| {
    // As `explain` reads stdin: invalid UTF-8 replaced, not rejected.
    invariants::check(&String::from_utf8_lossy(input));
});

//! `connector-probe explain`: a queue line, NDR or message-trace reason, read back into the
//! code, the condition, the probe stage that produces it, the server and address, and the fix;
//! with `--probe`, whether the condition still holds.
//!
//! * [`table`]: the conditions (with stage and fix) and EOP's codes, as data.
//! * [`parse`]: one line to an [`Explained`], pure and total.
//! * [`pick`]: the lines of stdin, or the EOP lines of a whole NDR message.
//! * [`render`]: the human text and the JSON objects.
//! * [`recheck`]: what `--probe` does: probe the server now, compare.

pub mod parse;
pub mod pick;
pub mod recheck;
pub mod render;
pub mod table;

pub use parse::{Explained, Kind, parse};
pub use pick::{Entry, pick};
pub use recheck::{Recheck, recheck};
pub use table::Condition;

/// Exit code: every line recognised.
pub const EXIT_ALL: u8 = 0;
/// Exit code: some lines not recognised.
pub const EXIT_SOME: u8 = 1;
/// Exit code: no line recognised (or nothing to explain).
pub const EXIT_NONE: u8 = 3;

/// The entries for lines given as arguments: each argument may hold several lines.
pub fn from_args(args: &[String]) -> Vec<Entry> {
    args.iter().flat_map(|a| pick(a)).collect()
}

/// The documented exit code for these entries.
pub fn exit_code(entries: &[Entry]) -> u8 {
    let recognised = entries.iter().filter(|e| e.is_ok()).count();
    if recognised == 0 {
        EXIT_NONE
    } else if recognised < entries.len() {
        EXIT_SOME
    } else {
        EXIT_ALL
    }
}

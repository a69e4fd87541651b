//! Any bytes from a server, read in any chunks: see `invariants/reply.rs` for what must hold.

#![no_main]

use connector_probe::smtp::reply::{MAX_LINE, MAX_REPLY};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/integration/invariants/reply.rs"]
mod invariants;

fuzz_target!(|input: &[u8]| {
    if let Some((data, chunks)) = decode(input) {
        invariants::check(&data, &chunks);
    }
});

/// Turns the fuzzer's input into the bytes a server sends and the sizes they are read in.
/// The first byte shapes the run, so that short inputs reach what only long ones would:
///
/// * bits 0-3: the largest read, `2^n` bytes (up to 4 KiB, the stream's read size); 0 is a
///   byte at a time. Read sizes come from a generator seeded with the whole byte.
/// * bits 4-7: up to 12, the rest is sent as it is. Otherwise the next two bytes are the
///   lengths of a head and a body, and the body is repeated after the head to just past the
///   line cap (13), just under the reply cap (14) or just past it (15), then the rest follows:
///   an endless line, an endless multi-line reply, a line that crosses the cap. (These runs
///   are long, so they are kept to a few shapes out of 16.)
fn decode(input: &[u8]) -> Option<(Vec<u8>, Vec<usize>)> {
    let (&shape, rest) = input.split_first()?;
    let largest = 1usize << (shape & 0x0f).min(12);
    let mut state = u32::from(shape).wrapping_mul(0x9e37_79b9) | 1;
    let chunks = (0..64)
        .map(|_| {
            // xorshift32: deterministic, so a crash replays from its input alone.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as usize % largest + 1
        })
        .collect();
    let (cap, past) = match shape >> 4 {
        13 => (MAX_LINE, 1),
        14 => (MAX_REPLY, 0),
        15 => (MAX_REPLY, 1),
        _ => return Some((rest.to_vec(), chunks)),
    };
    let (&[head_len, body_len], rest) = rest.split_first_chunk()?;
    let head_end = usize::from(head_len).min(rest.len());
    let body_end = (head_end + usize::from(body_len)).min(rest.len());
    let (head, body, tail) = (
        &rest[..head_end],
        &rest[head_end..body_end],
        &rest[body_end..],
    );
    let times = if body.is_empty() {
        0
    } else {
        cap.saturating_sub(head.len()) / body.len() + past
    };
    Some(([head, &body.repeat(times), tail].concat(), chunks))
}

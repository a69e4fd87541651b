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

/// The caps a run of repeated bytes can be sized against.
const CAPS: [usize; 2] = [MAX_LINE, MAX_REPLY];
/// Bounds one input's data: enough to cross both caps, and no more, since a long input read
/// a byte at a time costs a parse call per byte (about half a second with the sanitizer).
const MOST: usize = MAX_REPLY + 2 * MAX_LINE;

/// Turns the fuzzer's input into the bytes a server sends and the sizes they are read in,
/// so that short inputs reach what only long ones would (an endless line, a flood up to a
/// cap and a line across it):
///
/// * The first byte: bits 0-3 are the largest read, `2^n` bytes (up to 4 KiB, the stream's
///   read size; 0 is a byte at a time). Read sizes come from a generator seeded with it.
/// * Then segments, each `[length, count, bytes...]`: `bytes` sent `count` times. A count
///   under 0xc0 is once; from 0xc0, `k = count - 0xc0`, it is `2^(k/4)` times for `k` under
///   60, and for 60-63 as many times as reach just under the line cap, just past it, just
///   under the reply cap, just past it (counted from the start of the data).
fn decode(input: &[u8]) -> Option<(Vec<u8>, Vec<usize>)> {
    let (&shape, mut rest) = input.split_first()?;
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
    let mut data = Vec::new();
    while let Some((&[length, count], tail)) = rest.split_first_chunk() {
        let (bytes, tail) = tail.split_at(usize::from(length).min(tail.len()));
        rest = tail;
        if bytes.is_empty() {
            continue;
        }
        let times = match count.checked_sub(0xc0) {
            None => 1,
            Some(k @ 0..60) => 1 << (k / 4),
            Some(k) => {
                let cap = CAPS[usize::from(k - 60) / 2];
                let under = cap.saturating_sub(data.len()) / bytes.len();
                // One more copy crosses the cap.
                under + usize::from(k % 2)
            }
        };
        let times = times.min((MOST.saturating_sub(data.len())) / bytes.len());
        data.extend(bytes.repeat(times));
    }
    Some((data, chunks))
}

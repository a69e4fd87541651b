//! The memory allocator, chosen once per process: mimalloc for the daemon (`run`), glibc's
//! for everything else.
//!
//! Measured (benches/RESULTS.md and the README's daemon section): at 100,000 connectors the
//! daemon spent 0.08 ms of its 0.76 ms per probe in glibc's malloc and free (a large,
//! long-lived heap: bins to search, chunks to consolidate), against 0.03 ms in a
//! `probe --all` cycle; with mimalloc its CPU per probe went from 0.72 to 0.60 ms and its
//! steady-state RSS fell by about 30 MB (A/B runs). But a one-shot `probe` paid about
//! 0.8 ms more per run with mimalloc (its per-thread setup), which a command run every
//! minute by a monitoring system should not.
//!
//! The choice is made before `main`, from the process's arguments, by a function in
//! `.init_array` (glibc passes it `argc`, `argv`). Every allocation asks [`MODE`]; the first
//! one made while it is still undecided settles it on glibc, so an allocation can never be
//! freed by the other allocator, whatever order the start-up code runs in.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::{CStr, c_char, c_int};
use std::sync::atomic::{AtomicU8, Ordering};

use mimalloc::MiMalloc;

const UNDECIDED: u8 = 0;
const SYSTEM: u8 = 1;
const MIMALLOC: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(UNDECIDED);

/// mimalloc's `mi_option_purge_delay`: its place in `mi_option_t` of the mimalloc v3
/// sources that `libmimalloc-sys` 0.1.49 builds (the crate does not name it; Cargo.lock pins
/// the version, and a bump must check this number). By default freed pages go back to the
/// system a second later, and only when the thread that freed them allocates again: the
/// blocking thread that parsed a 100,000-connector configuration then sat on 36 MB. 0
/// returns them at once; measured, no CPU cost per probe.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

pub struct Chosen;

impl Chosen {
    fn mimalloc() -> bool {
        match MODE.load(Ordering::Relaxed) {
            MIMALLOC => true,
            SYSTEM => false,
            // First allocation before the choice: glibc, for good (or the choice just made).
            _ => {
                let _ =
                    MODE.compare_exchange(UNDECIDED, SYSTEM, Ordering::Relaxed, Ordering::Relaxed);
                MODE.load(Ordering::Relaxed) == MIMALLOC
            }
        }
    }
}

// SAFETY: each call goes to one allocator, the same for the whole life of the process
// (`MODE` changes at most once, from UNDECIDED, before any allocation has been made).
unsafe impl GlobalAlloc for Chosen {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        unsafe {
            if Self::mimalloc() {
                MiMalloc.alloc(layout)
            } else {
                System.alloc(layout)
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        unsafe {
            if Self::mimalloc() {
                MiMalloc.alloc_zeroed(layout)
            } else {
                System.alloc_zeroed(layout)
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from the same allocator (see above).
        unsafe {
            if Self::mimalloc() {
                MiMalloc.dealloc(ptr, layout)
            } else {
                System.dealloc(ptr, layout)
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`.
        unsafe {
            if Self::mimalloc() {
                MiMalloc.realloc(ptr, layout, new_size)
            } else {
                System.realloc(ptr, layout, new_size)
            }
        }
    }
}

/// Whether the arguments start the daemon: the first one that is not an option is `run`
/// (`connector-probe run --config …`, as the unit file and the container run it).
fn is_daemon(args: impl IntoIterator<Item = &'static [u8]>) -> bool {
    args.into_iter()
        .skip(1)
        .find(|a| !a.starts_with(b"-"))
        .is_some_and(|a| a == b"run")
}

/// Run by glibc before `main`, with the process's arguments.
extern "C" fn choose(argc: c_int, argv: *const *const c_char, _envp: *const *const c_char) {
    if argv.is_null() || argc <= 0 {
        return;
    }
    let args = (0..argc as usize).filter_map(|i| {
        // SAFETY: glibc passes `argc` valid, NUL-terminated strings that live as long as
        // the process.
        let arg = unsafe { *argv.add(i) };
        (!arg.is_null()).then(|| unsafe { CStr::from_ptr(arg) }.to_bytes())
    });
    if is_daemon(args)
        && MODE
            .compare_exchange(UNDECIDED, MIMALLOC, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        // SAFETY: sets one of the allocator's global options, before it has allocated.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) };
    }
}

// glibc only: it passes `argc`, `argv` and `envp` to these functions, musl passes nothing
// (elsewhere every process keeps glibc's, or the system's, allocator).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[used]
#[unsafe(link_section = ".init_array")]
static CHOOSE: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = choose;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_daemon_gets_mimalloc() {
        let daemon = |args: &[&'static str]| is_daemon(args.iter().map(|a| a.as_bytes()));
        assert!(daemon(&["connector-probe", "run", "--config", "x.toml"]));
        assert!(daemon(&["/usr/bin/connector-probe", "run"]));
        assert!(!daemon(&["connector-probe", "probe", "--all"]));
        assert!(!daemon(&["connector-probe", "probe", "--connector", "run"]));
        assert!(!daemon(&["connector-probe"]));
        assert!(!daemon(&["connector-probe", "demo"]));
    }
}

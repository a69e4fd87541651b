//! Standard output and standard error without panics.
//!
//! `print!` panics when stdout is a closed pipe (`probe --all | head -1`), which Rust reports
//! as exit code 101. Everything the crate writes for people goes through here instead: a
//! reader that went away is not an error of ours, any other write failure is returned, and
//! the daemon's log writer reports a lost stdout once and keeps running.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_LOST: AtomicBool = AtomicBool::new(false);

/// Writes `text` to stdout and flushes it. A closed pipe (`EPIPE`) counts as written: the
/// reader had what it wanted, and the exit code should still say what the command found.
pub fn print(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    quiet_pipe(out.write_all(text.as_bytes()).and_then(|()| out.flush()))
}

/// Writes to stdout through `write`, with the same treatment of a closed pipe as [`print`].
pub fn write_stdout(
    write: impl FnOnce(&mut io::BufWriter<io::StdoutLock<'static>>) -> io::Result<()>,
) -> io::Result<()> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    quiet_pipe(write(&mut out).and_then(|()| out.flush()))
}

/// One line on stderr, as `eprintln!` writes it but without its panic: if stderr itself is
/// gone there is nobody left to tell.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::say_line(format_args!($($arg)*))
    };
}

/// What [`say!`] calls.
pub fn say_line(line: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

fn quiet_pipe(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Whether the daemon's stdout failed, so its log and events are being lost.
pub fn stdout_lost() -> bool {
    STDOUT_LOST.load(Ordering::Relaxed)
}

/// Whether stdout is a terminal, for the colours of the text log.
pub fn stdout_is_terminal() -> bool {
    io::stdout().is_terminal()
}

/// The daemon's log writer: stdout until a write fails, then nothing. The failure is said
/// once on stderr and remembered for `/healthz`; without this, tracing prints an error for
/// every event it could not write.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogStdout;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogStdout {
    type Writer = LogStdout;

    fn make_writer(&'a self) -> Self::Writer {
        LogStdout
    }
}

impl Write for LogStdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if stdout_lost() {
            return Ok(buf.len());
        }
        let mut out = io::stdout().lock();
        match out.write_all(buf).and_then(|()| out.flush()) {
            Ok(()) => Ok(buf.len()),
            Err(e) => {
                if !STDOUT_LOST.swap(true, Ordering::Relaxed) {
                    say_line(format_args!(
                        "connector-probe: standard output failed ({e}); log lines and events are lost from now on, state and metrics are kept, and /healthz reports it"
                    ));
                }
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

//! The benchmark's private network namespace and the processes it runs there.
//!
//! The driver moves itself into a new network namespace before it starts any thread, so
//! every thread and child process it makes is inside it, and nothing it does can reach
//! beyond that namespace's loopback. The namespace has no name: it disappears when the last
//! of these processes exits, so an interrupted run leaves nothing behind. Children get
//! `PR_SET_PDEATHSIG`, so they do not outlive the driver either.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// Where the black-holed connectors point: a /16 whose port 25 drops every SYN.
pub const BLACKHOLE_PREFIX: &str = "127.200.0.0/16";

/// Must be called while the process is still single-threaded.
pub fn enter_private_namespace() -> io::Result<()> {
    // SAFETY: unshare only changes this (single) thread's namespace membership.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    run(Command::new("ip").args(["link", "set", "lo", "up"]))?;
    // The namespace's loopback owns all of 127.0.0.0/8; SYNs to the black-holed /16 are
    // dropped, so connects to it time out, as to a firewalled server.
    run(Command::new("iptables").args([
        "-A",
        "INPUT",
        "-d",
        BLACKHOLE_PREFIX,
        "-p",
        "tcp",
        "--dport",
        "25",
        "-j",
        "DROP",
    ]))?;
    raise_fd_limit();
    Ok(())
}

/// Ten thousand connections in flight need more than the usual 1024 descriptors; children
/// inherit the raised limit.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn run(cmd: &mut Command) -> io::Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A command whose process dies with the driver.
pub fn tied(program: &str) -> Command {
    let mut cmd = Command::new(program);
    // SAFETY: prctl is async-signal-safe and touches nothing but the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// A background process, killed and reaped when dropped.
pub struct Background {
    pub child: Child,
}

impl Background {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

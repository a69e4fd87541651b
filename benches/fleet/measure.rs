//! Measuring a process from the outside: wall time from spawn to exit, and CPU and peak RSS
//! from the kernel's own accounting of the child (`wait4`), so nothing the driver does is
//! counted, and nothing the child does is missed.

use std::io::{self, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// One finished process.
pub struct Run {
    /// When it was spawned (wall clock, to line up with timestamps it prints).
    pub spawned_at: SystemTime,
    pub wall: Duration,
    /// User plus system CPU.
    pub cpu: Duration,
    /// Peak resident set size, bytes.
    pub max_rss: u64,
    pub exit_code: Option<i32>,
    pub stdout: Vec<u8>,
}

/// Runs `cmd` to completion, its stdout captured, stdin and stderr closed.
pub fn run(cmd: &mut Command) -> io::Result<Run> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let spawned_at = SystemTime::now();
    let t0 = Instant::now();
    let mut child = cmd.spawn()?;
    let mut out = child.stdout.take().expect("stdout is piped");
    // A ten-thousand-connector report is megabytes: drain it while the child runs.
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        out.read_to_end(&mut buf).map(|_| buf)
    });
    let (status, usage) = wait4(child.id())?;
    let wall = t0.elapsed();
    let stdout = reader
        .join()
        .map_err(|_| io::Error::other("stdout reader panicked"))??;
    Ok(Run {
        spawned_at,
        wall,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        // Linux reports ru_maxrss in KiB.
        max_rss: usage.ru_maxrss as u64 * 1024,
        exit_code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        stdout,
    })
}

/// Reaps the child ourselves (instead of `Child::wait`) to get its resource usage.
fn wait4(pid: u32) -> io::Result<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 only writes through the pointers.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: as above; `pid` is our own unreaped child.
        let r = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut usage) };
        if r >= 0 {
            return Ok((status, usage));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

/// CPU time and peak RSS of a running process, from `/proc`.
pub struct ProcSample {
    pub cpu: Duration,
    pub peak_rss: u64,
}

pub fn sample(pid: u32) -> io::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it are plain numbers.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("unexpected /proc/pid/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    let ticks: u64 =
        fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let peak_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    Ok(ProcSample {
        cpu: Duration::from_nanos(ticks * 1_000_000_000 / hz),
        peak_rss: peak_kib * 1024,
    })
}

/// The median of some durations (the upper middle one for an even count).
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

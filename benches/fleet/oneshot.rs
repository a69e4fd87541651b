//! One-shot checks, process start to exit, against one STARTTLS server (the fleet's
//! `127.0.0.1`): connector-probe and the tools it replaces, run in turn, round after round,
//! so that noise on the machine falls on all of them alike.
//!
//! Two scenarios: the fleet's CA given as a file (`[tls] ca_file`, `-CAfile`), as for a
//! private CA; and the fleet's CA in the system store (`SSL_CERT_FILE` = the system bundle
//! plus the fleet CA), as for a public CA, where every tool reads the system's roots.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::measure::{self, median};

pub const CHECK_SMTP: &str = "/usr/lib/nagios/plugins/check_smtp";

/// Where the tools find the fleet's CA.
pub struct Scenario {
    pub name: &'static str,
    /// connector-probe's configuration for it.
    pub config: PathBuf,
    /// The CA file given on the command line, if any (`-CAfile`, `--tls-ca-path`).
    pub ca_file: Option<PathBuf>,
    /// Environment for every tool (`SSL_CERT_FILE`).
    pub env: Vec<(&'static str, PathBuf)>,
}

/// One tool's command line and its timings, in one scenario.
pub struct Tool {
    pub name: &'static str,
    pub scenario: &'static str,
    /// What it checks, as the report says it.
    pub checks: &'static str,
    pub command: Vec<String>,
    env: Vec<(&'static str, PathBuf)>,
    pub walls: Vec<Duration>,
    pub cpus: Vec<Duration>,
    pub failures: usize,
}

impl Tool {
    pub fn median_wall(&self) -> Duration {
        median(self.walls.clone())
    }

    pub fn median_cpu(&self) -> Duration {
        median(self.cpus.clone())
    }

    pub fn is_probe(&self) -> bool {
        self.name.starts_with("connector-probe")
    }

    pub fn shell_line(&self) -> String {
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", v.display()))
            .collect();
        let mut line = env.join(" ");
        if !line.is_empty() {
            line.push(' ');
        }
        line + &self.command.join(" ")
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.command[0]);
        cmd.args(&self.command[1..]).envs(self.env.iter().cloned());
        cmd
    }

    fn once(&mut self) -> io::Result<()> {
        let run = measure::run(&mut self.command())?;
        self.walls.push(run.wall);
        self.cpus.push(run.cpu);
        if run.exit_code != Some(0) {
            self.failures += 1;
        }
        Ok(())
    }
}

/// The tools present on this machine, in `scenario`; `missing` names the others.
pub fn tools(
    probe: &Path,
    scenario: &Scenario,
    peers: bool,
    missing: &mut Vec<String>,
) -> Vec<Tool> {
    let s = |x: &str| x.to_owned();
    let ca = scenario.ca_file.as_ref().map(|p| p.display().to_string());
    let tool = |name, checks, command: Vec<String>| Tool {
        name,
        scenario: scenario.name,
        checks,
        command,
        env: scenario.env.clone(),
        walls: Vec::new(),
        cpus: Vec::new(),
        failures: 0,
    };
    let mut tools = vec![tool(
        "connector-probe probe",
        "STARTTLS, chain and dates, EHLO after TLS, QUIT",
        vec![
            probe.display().to_string(),
            s("probe"),
            s("--config"),
            scenario.config.display().to_string(),
            s("--connector"),
            s("one"),
        ],
    )];
    if !peers {
        return tools;
    }
    let mut openssl = vec![
        s("openssl"),
        s("s_client"),
        s("-starttls"),
        s("smtp"),
        s("-connect"),
        s("127.0.0.1:25"),
        s("-verify_return_error"),
    ];
    let mut swaks = vec![
        s("swaks"),
        s("--server"),
        s("127.0.0.1"),
        s("--tls"),
        s("--tls-verify"),
        s("--quit-after"),
        s("EHLO"),
    ];
    if let Some(ca) = &ca {
        openssl.extend([s("-CAfile"), ca.clone()]);
        swaks.extend([s("--tls-ca-path"), ca.clone()]);
    }
    let peers = [
        tool(
            "openssl s_client -starttls smtp",
            "STARTTLS, chain and dates (-verify_return_error)",
            openssl,
        ),
        tool(
            "check_smtp -S",
            "STARTTLS (no chain check)",
            vec![s(CHECK_SMTP), s("-H"), s("127.0.0.1"), s("-S")],
        ),
        tool(
            "swaks --tls --quit-after EHLO",
            "STARTTLS, chain and dates (--tls-verify), EHLO after TLS, QUIT",
            swaks,
        ),
    ];
    for t in peers {
        if installed(&t.command[0]) {
            tools.push(t);
        } else if !missing.contains(&t.command[0]) {
            missing.push(t.command[0].clone());
        }
    }
    tools
}

pub fn installed(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// `warmup` untimed rounds, then `runs` timed ones.
pub fn measure(tools: &mut [Tool], warmup: usize, runs: usize) -> io::Result<()> {
    for round in 0..warmup + runs {
        for t in tools.iter_mut() {
            if round < warmup {
                let _ = measure::run(&mut t.command())?;
            } else {
                t.once()?;
            }
        }
    }
    Ok(())
}

//! The `connector-probe` binary: parses arguments, runs the library, maps the outcome to the
//! documented exit code.

// `print!` and `eprintln!` panic on a closed pipe (exit 101); `connector_probe::output` does not.
#![deny(clippy::print_stdout, clippy::print_stderr)]

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use connector_probe::config::{self, Config};
use connector_probe::daemon::{self, LogFormat};
use connector_probe::import::{self, ImportError};
use connector_probe::probe::{ProbeContext, probe_all};
use connector_probe::shard::Shard;
use connector_probe::{demo, explain, report};
use connector_probe::{output, say};

mod allocator;

#[global_allocator]
static ALLOCATOR: allocator::Chosen = allocator::Chosen;

/// `probe` exit code for a bad configuration, an unknown connector or an internal error.
const UNKNOWN: u8 = 3;

#[derive(Parser)]
#[command(
    name = "connector-probe",
    version,
    about = "Predicts the mail flow intelligence code Microsoft 365 would produce for each outbound connector"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon: probe every connector on its interval, log events, serve metrics.
    Run {
        /// Configuration file [default: $CONNECTOR_PROBE_CONFIG, then /etc/connector-probe/connector-probe.toml]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Log lines as JSON objects (for shippers) or as text (for people).
        #[arg(long, value_enum, default_value = "json")]
        log_format: LogFormat,
        /// Probe only shard K of N (0-based): the connectors rendezvous hashing gives it.
        /// Overrides `[daemon] shard`.
        #[arg(long, value_name = "K/N")]
        shard: Option<Shard>,
    },
    /// Probe one connector (or all) once and report.
    Probe {
        /// Configuration file [default: $CONNECTOR_PROBE_CONFIG, then /etc/connector-probe/connector-probe.toml]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The connector to probe.
        #[arg(
            long,
            value_name = "NAME",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        connector: Option<String>,
        /// Probe every connector, concurrently.
        #[arg(long)]
        all: bool,
        /// JSON instead of the human report.
        #[arg(long)]
        json: bool,
    },
    /// Ask a running daemon's /healthz (for container health checks): exit 0 when healthy.
    Health {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate the configuration and print it with every default filled in.
    CheckConfig {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Also list the connectors shard K of N owns (else those of `[daemon] shard`, if set).
        #[arg(long, value_name = "K/N")]
        shard: Option<Shard>,
    },
    /// Run the built-in loopback lab: one server per row of the classification table.
    Demo {
        /// JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Explain a queue line, NDR or message-trace reason: the condition, the stage, the fix.
    Explain {
        /// One JSON object per line instead of the text.
        #[arg(long)]
        json: bool,
        /// Probe the line's server now and say whether the condition still holds.
        #[arg(long)]
        probe: bool,
        /// Configuration file for --probe (a missing one is fine) [default: $CONNECTOR_PROBE_CONFIG, then /etc/connector-probe/connector-probe.toml]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The lines; none: read stdin (one per line, or a whole NDR message).
        #[arg(value_name = "LINE")]
        lines: Vec<String>,
    },
    /// Write [[connector]] entries from a description of the connectors elsewhere.
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
}

#[derive(Subcommand)]
enum ImportSource {
    /// From Exchange Online: the JSON of `Get-OutboundConnector | ConvertTo-Json -Depth 5`.
    Exchange {
        /// The JSON export.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Write a whole configuration file here instead of printing the entries.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Replace the --output file if it exists.
        #[arg(long, requires = "output")]
        force: bool,
    },
}

fn main() -> ExitCode {
    // Usage errors exit 3 ("unknown"), not clap's 2: under the monitoring-plugin convention of
    // `probe`, 2 means a failing connector, and a mistyped check command must not page anyone
    // as if mail were bouncing. `--help` and `--version` still exit 0.
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        let code = if e.use_stderr() { 3 } else { 0 };
        let _ = e.print();
        std::process::exit(code);
    });
    raise_fd_limit();
    match &cli.command {
        Cmd::Run { log_format, .. } => daemon::init_logging(*log_format),
        _ => init_logging(),
    }
    let mut builder = match &cli.command {
        // `probe` is one task: worker threads would only pass its I/O events to it.
        Cmd::Probe { .. } => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            say!("error: cannot start the async runtime: {e}");
            return ExitCode::from(UNKNOWN);
        }
    };
    match cli.command {
        Cmd::Run { config, shard, .. } => {
            let path = config::resolve_path(config.as_deref());
            let code = runtime.block_on(daemon::run(&path, shard));
            // After a forced stop a state write may still hang on the disk; do not wait.
            runtime.shutdown_background();
            code
        }
        Cmd::Probe {
            config,
            connector,
            all,
            json,
        } => runtime.block_on(probe(config, connector, all, json)),
        Cmd::CheckConfig { config, shard } => check_config(config, shard),
        Cmd::Health { config } => health(config),
        Cmd::Demo { json } => runtime.block_on(demo::run(json)),
        Cmd::Explain {
            json,
            probe,
            config,
            lines,
        } => runtime.block_on(explain(json, probe, config, lines)),
        Cmd::Import {
            source:
                ImportSource::Exchange {
                    file,
                    output,
                    force,
                },
        } => match import_exchange(&file, output.as_deref(), force) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                say!("error: {e}");
                ExitCode::from(import::EXIT_FAILED)
            }
        },
    }
}

/// Each probe in flight holds a socket; the soft limit on open files (often 1024) is raised
/// to the hard limit, as servers that hold many connections do.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Diagnostics go to stderr so that stdout stays the report (or JSON) alone.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn load(flag: Option<PathBuf>) -> Result<Config, ExitCode> {
    let path = config::resolve_path(flag.as_deref());
    Config::load(&path).map_err(|e| {
        say!("error: {e}");
        ExitCode::from(UNKNOWN)
    })
}

fn check_config(flag: Option<PathBuf>, shard: Option<Shard>) -> ExitCode {
    let c = match load(flag) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut text = c.effective_toml();
    match connector_probe::shard::select(&c, shard) {
        Ok(Some(shard)) => text.push_str(&shard_listing(&c, shard)),
        Ok(None) => {}
        Err(e) => {
            say!("error: {e}");
            return ExitCode::from(UNKNOWN);
        }
    }
    match output::print(&text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say!("error: cannot write to standard output: {e}");
            ExitCode::from(UNKNOWN)
        }
    }
}

/// The connectors `shard` owns, as TOML comments, so that the output still loads.
fn shard_listing(c: &Config, shard: Shard) -> String {
    let owned: Vec<&str> = c
        .connectors
        .iter()
        .map(|c| c.name.as_str())
        .filter(|name| shard.owns(name))
        .collect();
    let mut out = format!(
        "\n# shard {shard} owns {} of {} connector(s):\n",
        owned.len(),
        c.connectors.len()
    );
    for name in owned {
        out.push_str(&format!("#   {name}\n"));
    }
    out
}

fn health(flag: Option<PathBuf>) -> ExitCode {
    let config = match load(flag) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(listen) = config.daemon.metrics_listen else {
        say!("error: metrics_listen is empty, so the daemon serves no /healthz");
        return ExitCode::from(UNKNOWN);
    };
    match daemon::metrics::check_health(listen, std::time::Duration::from_secs(3)) {
        Ok(()) => {
            let _ = output::print("ok\n");
            ExitCode::SUCCESS
        }
        Err(e) => {
            say!("unhealthy: {e}");
            ExitCode::from(1)
        }
    }
}

async fn probe(flag: Option<PathBuf>, name: Option<String>, all: bool, json: bool) -> ExitCode {
    let config = match load(flag) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let connectors = if all {
        if config.connectors.is_empty() {
            say!("error: {} defines no connector", config.source.display());
            return ExitCode::from(UNKNOWN);
        }
        &config.connectors[..]
    } else {
        let name = name.unwrap_or_default();
        match config.connector(&name) {
            Some(c) => std::slice::from_ref(c),
            None => {
                let known: Vec<&str> = config.connectors.iter().map(|c| c.name.as_str()).collect();
                say!(
                    "error: no connector named {name:?} in {} (known: {})",
                    config.source.display(),
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                );
                return ExitCode::from(UNKNOWN);
            }
        }
    };
    let ctx = ProbeContext::new(&config);
    let format = if json {
        report::Format::Json { as_array: all }
    } else {
        report::Format::Human {
            message_expiration: config.daemon.message_expiration,
        }
    };
    // Each verdict is written as its probe ends and then dropped (see README, "probe --all").
    let mut stream = report::Stream::new(std::io::BufWriter::new(std::io::stdout()), format);
    let mut worst = 0;
    probe_all(&ctx, connectors, config.daemon.concurrency, |v| {
        worst = worst.max(v.status.exit_code());
        stream.push(&v);
    })
    .await;
    if let Err(e) = stream.finish() {
        say!("error: cannot write the report: {e}");
        return ExitCode::from(UNKNOWN);
    }
    ExitCode::from(worst as u8)
}

/// Lines from the arguments or stdin; with `--probe`, the configuration if there is one (a
/// missing file means built-in defaults: the connector is then built from the line).
async fn explain(json: bool, probe: bool, flag: Option<PathBuf>, lines: Vec<String>) -> ExitCode {
    let entries = if lines.is_empty() {
        let mut bytes = Vec::new();
        let stdin = std::io::stdin().lock();
        if let Err(e) = std::io::Read::read_to_end(
            &mut std::io::Read::take(stdin, explain::pick::MAX_INPUT as u64),
            &mut bytes,
        ) {
            say!("error: cannot read standard input: {e}");
            return ExitCode::from(explain::EXIT_NONE);
        }
        explain::pick(&String::from_utf8_lossy(&bytes))
    } else {
        explain::from_args(&lines)
    };
    if entries.is_empty() {
        say!("error: no line to explain (give lines as arguments or on standard input)");
        return ExitCode::from(explain::EXIT_NONE);
    }
    let mut rechecks = Vec::new();
    if probe {
        let path = config::resolve_path(flag.as_deref());
        let config = if path.exists() {
            match load(Some(path)) {
                Ok(c) => c,
                Err(code) => return code,
            }
        } else {
            Config::parse("", Path::new("(built-in defaults)"))
                .expect("the empty configuration is valid")
        };
        for entry in &entries {
            rechecks.push(match entry {
                Ok(e) => Some(explain::recheck(&config, e).await),
                Err(_) => None,
            });
        }
    }
    let text = if json {
        explain::render::json(&entries, &rechecks)
    } else {
        explain::render::human(&entries, &rechecks)
    };
    if let Err(e) = output::print(&text) {
        say!("error: cannot write the report: {e}");
        return ExitCode::from(UNKNOWN);
    }
    ExitCode::from(explain::exit_code(&entries))
}

/// Findings go to stderr, the TOML to stdout or to `output`.
fn import_exchange(file: &Path, output: Option<&Path>, force: bool) -> Result<u8, ImportError> {
    let bytes = std::fs::read(file).map_err(|source| ImportError::Read {
        path: file.to_owned(),
        source,
    })?;
    let imported = import::exchange(&bytes)?;
    {
        // Buffered: an export of 400,000 connectors can have as many findings, and a write
        // per line was a tenth of the import's time. A closed stderr loses them, as `say!`.
        let mut err = std::io::BufWriter::new(std::io::stderr().lock());
        for finding in imported.findings() {
            let _ = std::io::Write::write_fmt(&mut err, format_args!("{finding}\n"));
        }
    }
    let source = file.display().to_string();
    match output {
        None => {
            let text = imported.fragment(&source)?;
            output::print(&text).map_err(|source| ImportError::Write {
                path: PathBuf::from("standard output"),
                source,
            })?;
        }
        Some(path) => {
            let text = imported.config_file(&source)?;
            import::write_config(path, &text, force)?;
            say!("wrote {}", path.display());
        }
    }
    say!("{}", imported.summary());
    Ok(imported.exit_code())
}

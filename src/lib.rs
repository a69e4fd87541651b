//! connector-probe predicts, for each Exchange Online outbound connector, whether Microsoft 365
//! could deliver through it right now and, if not, which "mail flow intelligence" code
//! (`450 4.4.312` … `450 4.7.320`) the admin would see.
//!
//! The pipeline, one module per stage:
//!
//! * [`config`]: the TOML file, parsed in two steps (raw serde structs, then a validated model)
//!   with errors that name file, line, column and key.
//! * [`dns`]: smart host and MX resolution through hickory-resolver; the only module that reads
//!   hickory's errors.
//! * [`connect`]: the TCP connect and its failure modes.
//! * [`smtp`]: the pure reply parser, the commands, and the bounded, timed session.
//! * [`tls`]: the rustls client, STARTTLS handshake, and recovery of rustls errors.
//! * [`certificate`]: certificate details (x509-parser) and the judgement per TLS mode.
//! * [`verdict`]: the classification table of `classification.md` as data, and the connector
//!   verdict built from the targets.
//! * [`probe`]: runs the stages for every target of a connector.
//! * [`clock`]: time arithmetic that stops at the calendar's edges instead of panicking.
//! * [`limits`]: how many probes run at once, and how probes waiting on dead servers make way
//!   for the others.
//! * [`output`]: stdout and stderr without panics; the daemon's log writer.
//! * [`report`]: the human and JSON renderings.
//! * [`escape`]: the one rendering of outside text (replies, DNS, certificates) for people.
//! * [`shard`]: which connectors one daemon of several probes (rendezvous hashing).
//! * [`daemon`]: `run`: the scheduler, persisted state, alert events, metrics, reload.
//! * [`files`]: atomic replacement through fresh, exclusive temporary files; bounded reads.
//! * [`lab`]: scripted SMTP and DNS servers on loopback, used by `demo` and by the tests.
//! * [`demo`]: the built-in lab run, one server per row of the classification table.
//! * [`import`]: `[[connector]]` entries from Exchange Online's own export of its outbound
//!   connectors (`Get-OutboundConnector | ConvertTo-Json`).
//! * [`explain`]: a queue line, NDR or message-trace reason read back into its condition,
//!   stage, server and fix; and, with `--probe`, whether it still holds.

// Output goes through `output`, which cannot panic on a closed pipe as `print!` does.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod certificate;
pub mod clock;
pub mod config;
pub mod connect;
pub mod daemon;
pub mod demo;
pub mod dns;
pub mod escape;
pub mod explain;
pub mod files;
pub mod import;
pub mod lab;
pub mod limits;
pub mod output;
pub mod probe;
pub mod report;
pub mod shard;
pub mod smtp;
pub mod tls;
pub mod verdict;

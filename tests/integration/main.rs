//! The integration suite: one binary, a module per area (as ripgrep does).
//!
//! * `classification`: every row of the classification table, through the real pipeline,
//!   against the lab's scripted servers on loopback.
//! * `resolution`: EOP's resolution order, the names in its line, the DNS bounds, the fallback.
//! * `details`: what a verdict carries beyond its code (EOP status line, certificate details).
//! * `engines`: EOP's cipher suites: the OpenSSL engine for those rustls lacks, none for ChaCha20.
//! * `hostile`: servers that never answer, drip, or flood; the probe's time stays bounded.
//! * `memory`: the same against the binary in its own process; its peak memory stays bounded.
//! * `properties`: the reply parser's, the config loader's and `explain`'s `invariants`, on generated input
//!   (the same checks the fuzz targets in `fuzz/` make).
//! * `revocation`: CRLs from the distribution points a certificate names, over local HTTP.
//! * `cli`: the binary itself: exit codes, JSON, configuration errors.
//! * `explain`: `explain` on the fixture corpus of EOP lines, as a command, and `--probe`.
//! * `daemon`: `run` as a process: events, state, reload, signals, metrics, systemd notify.
//! * `hardening`: closed pipes and stdout, a second SIGTERM, forged state dates and certificate
//!   text, duplicate keys and planted links in an import, a full disk (issue 13).
//! * `import`: `import exchange` on PowerShell exports.
//! * `shards`: `check-config --shard`, the shard from a pod's ordinal, a sharded daemon's
//!   connectors, metric labels and event lines.
//! * `page`: the status page in headless Chromium, its JSON API and its history (issue 16).
//! * `scale`: the state journal, a large configuration in the daemon, `probe --all` streaming
//!   (issue 14).
//! * `peers`: real third-party peers (Postfix, smtp-sink, dnsmasq, iptables) against the binary.

mod classification;
mod cli;
mod daemon;
mod details;
mod engines;
mod explain;
mod hardening;
mod hostile;
mod import;
mod invariants;
mod memory;
mod page;
mod peers;
mod properties;
mod resolution;
mod revocation;
mod scale;
mod shards;
mod util;

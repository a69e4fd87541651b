//! The real-peer suite: the probe against third-party servers, where a scripted fake could be
//! wrong. Each area starts its peers, probes every case through the real binary
//! (`connector-probe probe --json`) and holds status, code, stages, EOP's message and the
//! wall time to what `classification.md` gives.
//!
//! * `postfix`: Postfix `smtpd` with STARTTLS and a certificate matrix.
//! * `sink`: Postfix's `smtp-sink` for SMTP faults.
//! * `dnsmasq`: a real DNS server, for every DNS failure and MX routing.
//! * `firewall`: iptables and policy-routing rules in a network namespace.
//! * `vantages`: daemons as two vantages × two shards, a firewall that admits one vantage,
//!   and a real Prometheus with the shipped rules naming it.
//! * `shipping`: rsyslog reading the daemon's events with the shipped configuration, for
//!   alerting through a log pipeline.
//!
//! A test whose tools (or root) are missing prints "SKIPPED: …" and passes, unless
//! `CONNECTOR_PROBE_REQUIRE_PEERS=1`, which `.ci/run` sets after installing them.
//! Every run uses fresh ports, directories and namespace names and removes them, so runs can
//! follow each other.

mod compare;
mod dnsmasq;
mod firewall;
mod postfix;
mod shipping;
mod sink;
pub mod support;
mod vantages;

//! The loopback lab: servers that misbehave on purpose, for `demo` and for the tests.
//!
//! Everything binds to `127.0.0.1:0`; nothing here sends a packet anywhere else.
//!
//! * [`smtp`]: a scripted SMTP server (send this, expect that, start TLS, reset, hang…).
//! * [`dns`]: a small authoritative DNS server over UDP, with per-name faults
//!   (SERVFAIL, REFUSED, silence).
//! * [`certs`]: a private PKI (root, intermediate, leaves of every kind, CRLs) made with rcgen.
//! * [`http`]: an HTTP server with one body, for CRL distribution points.
//! * [`blackhole`]: a listener whose accept queue is full, so the kernel drops further SYNs
//!   and a connect really times out, without root.

pub mod blackhole;
pub mod certs;
pub mod dns;
pub mod http;
pub mod smtp;

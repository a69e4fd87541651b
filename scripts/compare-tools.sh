#!/usr/bin/env bash
# Regenerates docs/peers-comparison.md: what swaks, check_smtp -S, posttls-finger and
# connector-probe each report for every real-peer case of the test suite.
#
# It runs the ignored test `peers::compare::compare_tools`, which starts the same peers as the
# suite (Postfix smtpd, smtp-sink, dnsmasq, iptables rules) in a network namespace of its own,
# whose resolv.conf points at the peers' dnsmasq, and runs the four tools there. Traffic
# never leaves the namespace's loopback.
#
# Needs root and, on Debian: postfix dnsmasq-base swaks libio-socket-ssl-perl
# libnet-dns-perl monitoring-plugins-basic openssl iproute2 iptables (see .ci/run).
# Takes about four minutes: the timeout cases wait for each tool's timeout.
set -euo pipefail
cd "$(dirname "$0")/.."

export CONNECTOR_PROBE_REQUIRE_PEERS=1
export CONNECTOR_PROBE_COMPARE_OUT="$PWD/docs/peers-comparison.md"
cargo test --locked --test integration peers::compare::compare_tools -- --ignored --exact
echo "wrote $CONNECTOR_PROBE_COMPARE_OUT"

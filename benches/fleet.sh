#!/usr/bin/env bash
# The fleet benchmark (README, "Benchmark"). Builds the benchmark and connector-probe with the
# release settings as the invoking user, then runs the driver as root (it makes a private
# network namespace). Options go to the driver: --sizes, --concurrency, --connect-timeout,
# --one-shot-runs, --no-peers, --no-one-shot, --probe PATH, --output FILE.
#
#   benches/fleet.sh --output benches/RESULTS.md
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v prometheus-blackbox-exporter >/dev/null || missing+=(prometheus-blackbox-exporter)
[ -x /usr/lib/nagios/plugins/check_smtp ] || missing+=(monitoring-plugins-basic)
command -v openssl >/dev/null || missing+=(openssl)
command -v swaks >/dev/null || missing+=(swaks)
command -v iptables >/dev/null || missing+=(iptables)
command -v ip >/dev/null || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
    echo "fleet.sh: not installed: ${missing[*]}" >&2
    echo "fleet.sh: apt-get install ${missing[*]}   (the peers' rows are skipped without them)" >&2
fi

exe=$(cargo bench --locked --bench fleet --no-run --message-format=json-render-diagnostics |
    sed -n 's/.*"target":{[^}]*"name":"fleet".*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
if [ -z "$exe" ]; then
    echo "fleet.sh: could not find the built benchmark" >&2
    exit 1
fi
if [ "$(id -u)" = 0 ]; then
    exec "$exe" "$@"
else
    exec sudo "$exe" "$@"
fi

#!/usr/bin/env bash
# End-to-end comparison of mnemo and etcd on this machine, in one run:
#   1. sequential single-client puts (latency), 2. 64-client puts (throughput),
#   3. 16-client linearizable and serializable ranges, 4. `etcdctl check perf --load=l`
#   (skipped with QUICK=1), with each server's peak RSS.
# Both servers run with their data dirs on the same filesystem, one after the other.
# Needs Debian's etcd-server and etcd-client (installed when missing, as root).
#
# Usage: bash benches/e2e.sh            (figures go to stdout; see docs/benchmarks.md)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    apt-get update -qq && apt-get install -y -qq etcd-server etcd-client >/dev/null
fi
cargo build --release -q --bin mnemo -p mnemo
cargo build --release -q --bin e2e -p mnemo-benches
MNEMO=target/release/mnemo
E2E=target/release/e2e
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mnemo-e2e.XXXXXX")
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_ready() {
    for _ in $(seq 1 100); do
        ETCDCTL_API=3 etcdctl --endpoints="$1" --command-timeout=1s endpoint health >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "server on $1 did not become ready" >&2
    return 1
}

run_one() {
    local name=$1 bin=$2
    local cport pport
    cport=$(free_port); pport=$(free_port)
    local ep="127.0.0.1:$cport"
    "$bin" --name "$name" --data-dir "$WORK/$name" \
        --listen-client-urls "http://$ep" --advertise-client-urls "http://$ep" \
        --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
        --initial-cluster "$name=http://127.0.0.1:$pport" >"$WORK/$name.log" 2>&1 &
    PID=$!
    wait_ready "$ep"
    echo "== $name"
    "$E2E" --endpoint "$ep" --op put --total 5000 --clients 1
    "$E2E" --endpoint "$ep" --op put --total 50000 --clients 64 --key-space 10000
    "$E2E" --endpoint "$ep" --op range --total 50000 --clients 16
    "$E2E" --endpoint "$ep" --op range --total 50000 --clients 16 --serializable
    if [ "${QUICK:-0}" != 1 ]; then
        ETCDCTL_API=3 etcdctl --endpoints="$ep" check perf --load=l 2>&1 | tail -n 6 || true
    fi
    echo "peak_rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")"
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
}

run_one mnemo "$MNEMO"
run_one etcd "$(command -v etcd)"

#!/usr/bin/env bash
# The tools against real servers: mnemo-bench drives mnemo and Debian's etcd 3.4 (both
# started here), including a `compare` run between them; then the README's end-to-end
# run with mnemoutl (bench 100k keys into mnemo, stop, inspect stats, defrag, check,
# restart, data intact), and a snapshot saved by the real etcdctl restored by mnemoutl.
#
# Usage: bash tools/compat/tools.sh [--keep]
#   --keep   keep the scratch directory (data, server logs, outputs).
# Installs Debian's etcd-server and etcd-client when missing (needs root then).
# Environment: KEYS (keys for the end-to-end run, default 100000).
#
# Prints one line per check, then "N passed, M failed"; exits 1 if a check failed.

set -uo pipefail

KEEP=0
case "${1:-}" in
    --keep) KEEP=1 ;;
    "") ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "tools.sh: unknown argument $1" >&2; exit 2 ;;
esac
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
KEYS="${KEYS:-100000}"
export ETCDCTL_API=3

if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
    echo "== installing etcd-server and etcd-client (Debian)"
    if [ "$(id -u)" -ne 0 ]; then
        echo "tools.sh: etcd is missing and installing it needs root" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq etcd-server etcd-client >/dev/null; }; then
        echo "tools.sh: cannot install etcd-server and etcd-client" >&2
        exit 1
    fi
fi
ETCD="$(command -v etcd)"
echo "== $("$ETCD" --version | head -n 1)"

echo "== cargo build --release (mnemo, mnemo-bench, mnemoutl)"
if ! (cd "$ROOT" && cargo build --release -p mnemo -p mnemo-tools --bins); then
    echo "tools.sh: cannot build" >&2
    exit 1
fi
target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$target_dir" in /*) ;; *) target_dir="$ROOT/$target_dir" ;; esac
MNEMO="$target_dir/release/mnemo"
BENCH="$target_dir/release/mnemo-bench"
UTL="$target_dir/release/mnemoutl"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/mnemo-tools.XXXXXX")"
PIDS=()
PASSED=0
FAILED=0

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    wait 2>/dev/null
    if [ "$KEEP" = 1 ]; then echo "== kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# check NAME COMMAND...: runs the command; passes on exit code 0.
check() {
    local name=$1
    shift
    if "$@" >"$TMP/out" 2>"$TMP/err"; then
        PASSED=$((PASSED + 1))
        echo "ok   $name"
    else
        FAILED=$((FAILED + 1))
        echo "FAIL $name: $*"
        sed 's/^/      /' "$TMP/out" "$TMP/err" | tail -n 20
    fi
}

# start NAME BINARY DATA_DIR CLIENT_PORT PEER_PORT: starts a one-member server in the
# background; sets PID.
start() {
    local name=$1 bin=$2 dir=$3 cport=$4 pport=$5
    "$bin" --name "$name" --data-dir "$dir" \
        --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
        --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
        --initial-cluster "$name=http://127.0.0.1:$pport" >>"$TMP/$name.log" 2>&1 </dev/null &
    PID=$!
    PIDS+=("$PID")
    local deadline=$((SECONDS + 60))
    while [ $SECONDS -lt $deadline ]; do
        if etcdctl --endpoints="127.0.0.1:$cport" --dial-timeout=1s --command-timeout=2s \
            endpoint health >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.2
    done
    echo "tools.sh: $name did not start; its log:" >&2
    tail -n 30 "$TMP/$name.log" >&2
    exit 1
}

# stop PID: SIGTERM and wait.
stop() {
    kill -TERM "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}

# json_ok FILE: every run in mnemo-bench's JSON output made requests and had no errors.
json_ok() {
    python3 - "$1" <<'EOF'
import json, sys
runs = json.load(open(sys.argv[1]))["runs"]
assert runs, "no runs"
for r in runs:
    assert r["requests"] > 0, f'{r["name"]}: no requests'
    assert r["errors"] == 0, f'{r["name"]}: {r["errors"]} errors: {r["error_kinds"]}'
print(" ".join(f'{r["name"]}: {r["requests_per_sec"]:.0f}/s' for r in runs))
EOF
}

# bench_clean ARGS...: mnemo-bench ARGS --json; passes when every run made requests and
# none failed, printing each run's throughput.
bench_clean() {
    timeout 300 "$BENCH" --no-progress --json "$@" >"$TMP/bench.json" && json_ok "$TMP/bench.json"
}

MP=$(free_port); MPP=$(free_port); EP=$(free_port); EPP=$(free_port)
start mnemo "$MNEMO" "$TMP/mnemo" "$MP" "$MPP"
MNEMO_PID=$PID
start etcd "$ETCD" "$TMP/etcd" "$EP" "$EPP"
ETCD_PID=$PID

# --- mnemo-bench against both servers ------------------------------------------------

run_bench() {
    local label=$1 ep=$2
    for args in \
        "--clients 16 --conns 4 put --total 3000 --key-space-size 1000" \
        "--clients 8 range 0 --prefix --limit 10 --total 1000" \
        "--clients 8 range 0 --prefix --consistency s --count-only --total 1000" \
        "--clients 4 txn-put --txn-ops 8 --total 500 --key-space-size 1000" \
        "--clients 8 txn-mixed --rw-ratio 4 --total 1000 --key-space-size 1000" \
        "watch --streams 4 --watch-per-stream 25 --watched-key-total 10 --put-total 200 --put-rate 1000" \
        "watch-latency --streams 4 --watchers-per-stream 10 --put-total 100 --put-rate 500" \
        "--clients 4 lease-keepalive --total 1000" \
        "--target-leader put --total 100"; do
        # shellcheck disable=SC2086 # the workload's arguments split on purpose
        check "$label: mnemo-bench $args" bench_clean --endpoints "$ep" $args
        echo "       $(cat "$TMP/out")"
    done
}
echo "== mnemo-bench against mnemo"
run_bench mnemo "127.0.0.1:$MP"
echo "== mnemo-bench against etcd"
run_bench etcd "127.0.0.1:$EP"

echo "== mnemo-bench compare (mnemo, etcd)"
check "compare put" timeout 300 sh -c '"$0" --no-progress --clients 16 --conns 4 compare --a "$1" --a-name mnemo --b "$2" --b-name etcd put --total 5000 --key-space-size 1000' \
    "$BENCH" "127.0.0.1:$MP" "127.0.0.1:$EP"
sed -n '/^Comparison/,$p' "$TMP/out" | sed 's/^/       /'
cp "$TMP/out" "$TMP/compare.txt"
check "compare prints the ratio table" grep -q "requests/sec .* [0-9.]*x$" "$TMP/compare.txt"
stop "$ETCD_PID"

# --- the README's end-to-end run -----------------------------------------------------

echo "== end to end: $KEYS keys, stop, inspect, defrag, check, restart"
check "mnemo-bench put $KEYS keys" timeout 600 "$BENCH" --no-progress --endpoints "127.0.0.1:$MP" \
    --clients 64 --conns 8 put --total "$KEYS" --key-space-size "$KEYS" --sequential-keys --val-size 256
# Half of them deleted, and compacted, so that defrag has space to give back.
check "delete half, compact" sh -c 'etcdctl --endpoints="$0" del "" --from-key >/dev/null &&
    rev=$(etcdctl --endpoints="$0" endpoint status -w json | python3 -c "import json,sys; print(json.load(sys.stdin)[0][\"Status\"][\"header\"][\"revision\"])") &&
    etcdctl --endpoints="$0" compact "$rev" --physical >/dev/null' "127.0.0.1:$MP"
"$BENCH" --no-progress --endpoints "127.0.0.1:$MP" --clients 16 put --total 1000 --key-space-size 1000 \
    --sequential-keys >/dev/null
etcdctl --endpoints="127.0.0.1:$MP" put marker intact >/dev/null
REV=$(etcdctl --endpoints="127.0.0.1:$MP" get marker -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
check "snapshot save (real etcdctl, against mnemo)" etcdctl --endpoints="127.0.0.1:$MP" snapshot save "$TMP/snap.db"
stop "$MNEMO_PID"
check "mnemoutl inspect stats" "$UTL" inspect stats "$TMP/mnemo"
sed 's/^/       /' "$TMP/out" | head -n 12
check "mnemoutl inspect info" "$UTL" inspect info "$TMP/mnemo"
check "mnemoutl inspect wal" "$UTL" inspect wal "$TMP/mnemo"
check "mnemoutl check (before defrag)" "$UTL" check "$TMP/mnemo"
check "mnemoutl defrag" "$UTL" --json defrag "$TMP/mnemo"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); b, a = d["size_before"], d["size_after"]; print(f"       {b} -> {a} bytes"); assert a < b' "$TMP/out" \
    && { PASSED=$((PASSED + 1)); echo "ok   defrag gave space back"; } \
    || { FAILED=$((FAILED + 1)); echo "FAIL defrag gave space back"; }
check "mnemoutl check (after defrag)" "$UTL" check "$TMP/mnemo"
check "mnemoutl map" "$UTL" map "$TMP/mnemo" --output "$TMP/map.svg"
start mnemo "$MNEMO" "$TMP/mnemo" "$MP" "$MPP"
MNEMO_PID=$PID
check "data intact after the restart" sh -c 'test "$(etcdctl --endpoints="$0" get marker --print-value-only)" = intact' "127.0.0.1:$MP"
check "revision intact after the restart" sh -c 'test "$(etcdctl --endpoints="$0" get marker -w json | python3 -c "import json,sys; print(json.load(sys.stdin)[\"header\"][\"revision\"])")" = "$1"' "127.0.0.1:$MP" "$REV"
check "the 1000 keys written after the delete are there" sh -c 'test "$(etcdctl --endpoints="$0" get "" --from-key --limit 1 -w json | python3 -c "import json,sys; print(json.load(sys.stdin)[\"count\"])")" = 1001' "127.0.0.1:$MP"
stop "$MNEMO_PID"

echo "== snapshot saved by etcdctl, restored by mnemoutl"
check "mnemoutl snapshot status" "$UTL" snapshot status "$TMP/snap.db"
echo "       $(cat "$TMP/out")"
RP=$(free_port); RPP=$(free_port)
check "mnemoutl snapshot restore" "$UTL" snapshot restore "$TMP/snap.db" --data-dir "$TMP/restored" \
    --name restored --initial-cluster "restored=http://127.0.0.1:$RPP" \
    --initial-advertise-peer-urls "http://127.0.0.1:$RPP"
start restored "$MNEMO" "$TMP/restored" "$RP" "$RPP"
check "the restored member serves the snapshot's data" sh -c 'test "$(etcdctl --endpoints="$0" get marker --print-value-only)" = intact' "127.0.0.1:$RP"
check "at the snapshot's revision" sh -c 'test "$(etcdctl --endpoints="$0" get marker -w json | python3 -c "import json,sys; print(json.load(sys.stdin)[\"header\"][\"revision\"])")" = "$1"' "127.0.0.1:$RP" "$REV"
check "and accepts writes" etcdctl --endpoints="127.0.0.1:$RP" put after-restore 1

echo
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]

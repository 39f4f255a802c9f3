#!/usr/bin/env bash
# Three-member clusters on 127.0.0.1, mnemo and etcd 3.4 side by side in one run, same
# topology and flags (heartbeat 100 ms, election timeout 1000 ms, etcd's defaults):
#   1. write throughput: mnemo-bench put (100 conns, 100 clients, 8-byte keys, 256-byte
#      values) through all three client URLs, then again with --target-leader;
#   2. peak and current RSS (VmHWM, VmRSS) of each member after the writes, and a check
#      that the members agree (same revision, same `endpoint hashkv`);
#   3. leader failover: kill -9 the leader, time until a put through the two others
#      succeeds (etcdctl, a try every 20 ms), restart the member and wait until it has
#      caught up; repeated --failovers times.
# Then one table with both servers' figures and mnemo/etcd ratios (or --json).
# Needs Debian's etcd-server and etcd-client (installed when missing, as root), jq, python3.
#
# Usage: bash benches/cluster.sh [--total N] [--key-space-size N] [--failovers N] [--json] [--keep]
#                                [--only mnemo|etcd] [--mnemo PATH] [--etcd PATH]
#   --total N       puts per write run (default 50000; each run ~5-15 s here)
#   --key-space-size N  distinct keys written (default 1, as etcd's benchmark tool)
#   --failovers N   leader kills per server (default 3)
#   --json          print one JSON object instead of the table
#   --keep          keep the scratch directory (data dirs, logs, raw mnemo-bench output)
#   --only NAME     run one server only (no ratios)
#   --mnemo PATH    mnemo binary (default: cargo build --release, target/release/mnemo)
#   --etcd PATH     etcd binary (default: etcd on PATH)
# mnemo-bench comes from `cargo build --release -p mnemo-tools` (or MNEMO_BENCH=PATH).
# Progress goes to stderr, the table (or JSON) to stdout. Exits 1 if a server failed a
# step (a member died, a write run had errors, members disagreed, a failover timed out).

set -uo pipefail

TOTAL=50000
KEY_SPACE=1
FAILOVERS=3
JSON=0
KEEP=0
ONLY=""
MNEMO="${MNEMO_BIN:-}"
ETCD=""
while [ $# -gt 0 ]; do
    case "$1" in
        --total) TOTAL="${2:?}"; shift 2 ;;
        --total=*) TOTAL="${1#*=}"; shift ;;
        --key-space-size) KEY_SPACE="${2:?}"; shift 2 ;;
        --key-space-size=*) KEY_SPACE="${1#*=}"; shift ;;
        --failovers) FAILOVERS="${2:?}"; shift 2 ;;
        --failovers=*) FAILOVERS="${1#*=}"; shift ;;
        --json) JSON=1; shift ;;
        --keep) KEEP=1; shift ;;
        --only) ONLY="${2:?}"; shift 2 ;;
        --only=*) ONLY="${1#*=}"; shift ;;
        --mnemo) MNEMO="${2:?}"; shift 2 ;;
        --mnemo=*) MNEMO="${1#*=}"; shift ;;
        --etcd) ETCD="${2:?}"; shift 2 ;;
        --etcd=*) ETCD="${1#*=}"; shift ;;
        -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "cluster.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export ETCDCTL_API=3
log() { echo "$@" >&2; }

if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    log "== installing etcd-server and etcd-client"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq etcd-server etcd-client >/dev/null || exit 1
fi
ETCD="${ETCD:-$(command -v etcd)}"
target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$target_dir" in /*) ;; *) target_dir="$ROOT/$target_dir" ;; esac
if [ -z "$MNEMO" ] || [ -z "${MNEMO_BENCH:-}" ]; then
    log "== cargo build --release (mnemo, mnemo-bench)"
    (cd "$ROOT" && cargo build --release -q -p mnemo --bin mnemo -p mnemo-tools --bin mnemo-bench) || exit 1
fi
MNEMO="${MNEMO:-$target_dir/release/mnemo}"
BENCH="${MNEMO_BENCH:-$target_dir/release/mnemo-bench}"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/mnemo-cbench.XXXXXX")"
declare -A PID CLIENT PEER
cleanup() {
    local n
    for n in "${!PID[@]}"; do kill -KILL "${PID[$n]}" 2>/dev/null; done
    wait 2>/dev/null
    if [ "$KEEP" = 1 ]; then log "== kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=tools/compat/ports.sh
. "$ROOT/tools/compat/ports.sh"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# start SRV BIN NAME: starts member NAME of server SRV in the background.
start() {
    local srv=$1 bin=$2 n=$3
    env -u MNEMO_BENCH -u MNEMO_BIN "$bin" --name "$n" --data-dir "$TMP/$srv/$n" \
        --listen-client-urls "${CLIENT[$n]}" --advertise-client-urls "${CLIENT[$n]}" \
        --listen-peer-urls "${PEER[$n]}" --initial-advertise-peer-urls "${PEER[$n]}" \
        --initial-cluster "$INITIAL" --initial-cluster-state new \
        --initial-cluster-token "cbench-$srv" \
        --heartbeat-interval 100 --election-timeout 1000 \
        --logger zap --log-level warn \
        >>"$TMP/$srv/$n.log" 2>&1 </dev/null &
    PID[$n]=$!
}

# healthy URL SECONDS
healthy() {
    local deadline=$((SECONDS + $2))
    while [ $SECONDS -lt $deadline ]; do
        timeout 5 etcdctl --endpoints="$1" --dial-timeout=1s --command-timeout=2s \
            endpoint health >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}

# The member name whose endpoint reports itself leader (empty if none does).
leader_name() {
    local eps="" n out
    for n in "${!PID[@]}"; do eps="$eps${eps:+,}${CLIENT[$n]}"; done
    out="$(timeout 10 etcdctl --endpoints="$eps" --dial-timeout=1s --command-timeout=2s \
        endpoint status 2>/dev/null)"
    local url
    url="$(printf '%s\n' "$out" | awk -F', ' '$5 == "true" { print $1 }' | head -n 1)"
    for n in m1 m2 m3; do [ "${CLIENT[$n]}" = "$url" ] && echo "$n"; done
}

# put_ok ENDPOINTS KEY VALUE: one short-timeout put.
put_ok() {
    timeout 2 etcdctl --endpoints="$1" --dial-timeout=200ms --command-timeout=200ms \
        put "$2" "$3" >/dev/null 2>&1
}

# revisions: "m1=REV m2=REV m3=REV" from each member's own endpoint status.
revisions() {
    local n r
    for n in m1 m2 m3; do
        r="$(timeout 5 etcdctl --endpoints="${CLIENT[$n]}" --dial-timeout=1s --command-timeout=2s \
            endpoint status -w json 2>/dev/null | jq -r '.[0].Status.header.revision // "?"')"
        printf '%s=%s ' "$n" "${r:-?}"
    done
}

# bench SRV LABEL ARGS...: one mnemo-bench run, its JSON summary in $TMP/SRV/LABEL.json.
bench() {
    local srv=$1 label=$2
    shift 2
    log "   mnemo-bench $*"
    "$BENCH" --json --no-progress "$@" >"$TMP/$srv/$label.raw" 2>"$TMP/$srv/$label.err"
    local rc=$?
    if ! jq -e '.runs[0]' "$TMP/$srv/$label.raw" >"$TMP/$srv/$label.json" 2>/dev/null; then
        log "   mnemo-bench failed (exit $rc): $(tail -n 3 "$TMP/$srv/$label.err")"
        echo null >"$TMP/$srv/$label.json"
        FAILED_STEPS+=("$srv: $label: mnemo-bench exit $rc, no figures")
        return
    fi
    local errs
    errs="$(jq '.errors' "$TMP/$srv/$label.json")"
    log "   $(jq -r '"\(.requests) ok, \(.errors) errors, \(.requests_per_sec|floor)/s, p50 \(.percentiles_secs.p50*10000|round/10) ms, p99 \(.percentiles_secs.p99*10000|round/10) ms"' "$TMP/$srv/$label.json")"
    if [ "$errs" != 0 ]; then
        FAILED_STEPS+=("$srv: $label: $errs errors: $(jq -c '.error_kinds' "$TMP/$srv/$label.json")")
    fi
}

alive_check() {
    local srv=$1 what=$2 n
    for n in m1 m2 m3; do
        if ! kill -0 "${PID[$n]}" 2>/dev/null; then
            FAILED_STEPS+=("$srv: member $n died during $what; log tail: $(tail -n 5 "$TMP/$srv/$n.log" | tr '\n' ' ')")
            log "   member $n is gone (during $what)"
        fi
    done
}

run_server() {
    local srv=$1 bin=$2 n
    mkdir -p "$TMP/$srv"
    PID=()
    for n in m1 m2 m3; do
        CLIENT[$n]="http://127.0.0.1:$(free_port)"
        PEER[$n]="http://127.0.0.1:$(free_port)"
    done
    INITIAL="m1=${PEER[m1]},m2=${PEER[m2]},m3=${PEER[m3]}"
    local eps="${CLIENT[m1]},${CLIENT[m2]},${CLIENT[m3]}"
    log "== $srv ($bin)"
    for n in m1 m2 m3; do start "$srv" "$bin" "$n"; done
    for n in m1 m2 m3; do
        if ! healthy "${CLIENT[$n]}" 60; then
            log "member $n of $srv did not become healthy; its log:"
            tail -n 30 "$TMP/$srv/$n.log" >&2
            FAILED_STEPS+=("$srv: member $n never became healthy")
            return
        fi
    done

    bench "$srv" write_all --endpoints="$eps" --conns=100 --clients=100 \
        put --key-size=8 --val-size=256 --key-space-size="$KEY_SPACE" --total="$TOTAL"
    alive_check "$srv" "the write run"
    bench "$srv" write_leader --endpoints="$eps" --conns=100 --clients=100 --target-leader \
        put --key-size=8 --val-size=256 --key-space-size="$KEY_SPACE" --total="$TOTAL"
    alive_check "$srv" "the --target-leader write run"

    # Memory right after the writes.
    local rss="{}"
    for n in m1 m2 m3; do
        local hwm cur
        hwm="$(awk '/^VmHWM/ {print $2}' "/proc/${PID[$n]}/status" 2>/dev/null)"
        cur="$(awk '/^VmRSS/ {print $2}' "/proc/${PID[$n]}/status" 2>/dev/null)"
        rss="$(jq -c --arg n "$n" --argjson h "${hwm:-null}" --argjson r "${cur:-null}" \
            '. + {($n): {hwm_kib: $h, rss_kib: $r}}' <<<"$rss")"
    done
    log "   RSS (KiB): $rss"

    # The members agree: same revision (waiting for followers to apply), same hashkv.
    local consistent=false revs="" hashes=""
    for _ in $(seq 1 50); do
        revs="$(revisions)"
        [ "$(tr ' ' '\n' <<<"$revs" | grep . | cut -d= -f2 | sort -u | wc -l)" = 1 ] && break
        sleep 0.2
    done
    hashes="$(timeout 10 etcdctl --endpoints="$eps" --command-timeout=5s endpoint hashkv 2>/dev/null \
        | awk -F', ' '{ print $2 }' | sort -u)"
    if [ "$(grep -c . <<<"$hashes")" = 1 ] && [ "$(tr ' ' '\n' <<<"$revs" | grep . | cut -d= -f2 | sort -u | wc -l)" = 1 ]; then
        consistent=true
    else
        FAILED_STEPS+=("$srv: members disagree after the writes: revisions $revs hashkv $(tr '\n' ' ' <<<"$hashes")")
    fi
    log "   revisions $revs hashkv $(tr '\n' ' ' <<<"$hashes")-> consistent=$consistent"

    # Client overhead of one probe put on a healthy cluster (etcdctl start, dial, put).
    local base=() t0
    for i in 1 2 3 4 5; do
        t0=$(now_ms)
        put_ok "$eps" cbench-probe "base$i" && base+=($(( $(now_ms) - t0 )))
    done
    local probe_ms
    probe_ms="$(printf '%s\n' "${base[@]}" | sort -n | sed -n 3p)"
    log "   probe put on a healthy cluster: median ${probe_ms:-?} ms"

    # Failovers.
    local fo=() rejoin=() leaders=() k
    for k in $(seq 1 "$FAILOVERS"); do
        local down=""
        for _ in $(seq 1 50); do down="$(leader_name)"; [ -n "$down" ] && break; sleep 0.2; done
        if [ -z "$down" ]; then
            FAILED_STEPS+=("$srv: failover $k: no leader found")
            break
        fi
        leaders+=("$down")
        local rest="" m
        for m in m1 m2 m3; do [ "$m" != "$down" ] && rest="$rest${rest:+,}${CLIENT[$m]}"; done
        kill -KILL "${PID[$down]}"
        t0=$(now_ms)
        wait "${PID[$down]}" 2>/dev/null
        unset "PID[$down]"
        local ok=0 tries=0
        while [ $(( $(now_ms) - t0 )) -lt 30000 ]; do
            tries=$((tries + 1))
            if put_ok "$rest" cbench-failover "f$k"; then ok=1; break; fi
            sleep 0.02
        done
        local took=$(( $(now_ms) - t0 ))
        if [ "$ok" != 1 ]; then
            FAILED_STEPS+=("$srv: failover $k: no put succeeded within 30 s after killing $down")
            log "   failover $k: killed $down, no put within 30 s"
            break
        fi
        fo+=("$took")
        # Restart the killed member; wait until it serves and has applied the write.
        t0=$(now_ms)
        start "$srv" "$bin" "$down"
        local caught=0
        if healthy "${CLIENT[$down]}" 60; then
            for _ in $(seq 1 300); do
                if [ "$(timeout 5 etcdctl --endpoints="${CLIENT[$down]}" --dial-timeout=1s \
                    --command-timeout=2s get cbench-failover --consistency=s --print-value-only \
                    2>/dev/null)" = "f$k" ]; then caught=1; break; fi
                sleep 0.1
            done
        fi
        local back=$(( $(now_ms) - t0 ))
        log "   failover $k: killed leader $down, put through the others after $took ms ($tries tries); restarted member caught up after $back ms"
        if [ "$caught" != 1 ]; then
            FAILED_STEPS+=("$srv: failover $k: restarted $down did not catch up within 90 s; log tail: $(tail -n 5 "$TMP/$srv/$down.log" | tr '\n' ' ')")
            break
        fi
        rejoin+=("$back")
        # All three healthy before the next kill.
        for m in m1 m2 m3; do healthy "${CLIENT[$m]}" 30 || true; done
    done

    local version
    version="$("$bin" --version 2>/dev/null | head -n 1)"
    local warn_lines panic_lines
    warn_lines="$(cat "$TMP/$srv"/m?.log | grep -cE ' ERROR |"level":"error"' || true)"
    panic_lines="$(cat "$TMP/$srv"/m?.log | grep -cE 'panicked|"level":"(panic|fatal)"' || true)"
    jq -n --arg server "$srv" --arg version "$version" \
        --slurpfile wa "$TMP/$srv/write_all.json" --slurpfile wl "$TMP/$srv/write_leader.json" \
        --argjson rss "$rss" --argjson consistent "$consistent" \
        --argjson probe "${probe_ms:-null}" \
        --argjson fo "$(printf '%s\n' "${fo[@]}" | jq -s 'map(select(. != null))' 2>/dev/null || echo '[]')" \
        --argjson rejoin "$(printf '%s\n' "${rejoin[@]}" | jq -s 'map(select(. != null))' 2>/dev/null || echo '[]')" \
        --argjson leaders "$(printf '%s\n' "${leaders[@]}" | jq -R . | jq -s 'map(select(. != ""))')" \
        --argjson warn "${warn_lines:-0}" --argjson panic "${panic_lines:-0}" \
        '{server: $server, version: $version, write_all: $wa[0], write_leader: $wl[0],
          rss_after_writes: $rss, members_consistent: $consistent, probe_put_ms: $probe,
          failover_ms: $fo, killed_leaders: $leaders, rejoin_ms: $rejoin,
          log_error_lines: $warn, log_panic_lines: $panic}' \
        >"$TMP/$srv.result.json"

    for n in "${!PID[@]}"; do kill -TERM "${PID[$n]}" 2>/dev/null; done
    for n in "${!PID[@]}"; do wait "${PID[$n]}" 2>/dev/null; done
    PID=()
}

FAILED_STEPS=()
uptime >&2
[ "$ONLY" != etcd ] && run_server mnemo "$MNEMO"
[ "$ONLY" != mnemo ] && run_server etcd "$ETCD"

results=()
for s in mnemo etcd; do [ -f "$TMP/$s.result.json" ] && results+=("$TMP/$s.result.json"); done
[ "${#results[@]}" -gt 0 ] || { log "no results"; exit 1; }
failed_json="$(printf '%s\n' "${FAILED_STEPS[@]}" | jq -R . | jq -s 'map(select(. != ""))')"

python3 - "$JSON" "$TOTAL" "$KEY_SPACE" "$failed_json" "${results[@]}" <<'EOF'
import json, statistics, sys

as_json, total, key_space = sys.argv[1] == "1", int(sys.argv[2]), int(sys.argv[3])
failed = json.loads(sys.argv[4])
res = {}
for path in sys.argv[5:]:
    r = json.load(open(path))
    res[r["server"]] = r

def w(r, run, key):
    s = r.get(run)
    if not s:
        return None
    if key == "rps":
        return s["requests_per_sec"]
    if key == "errors":
        return s["errors"]
    return s["percentiles_secs"][key] * 1000

def med(xs):
    return statistics.median(xs) if xs else None

def mem(r, field):
    v = [m[field] for m in r["rss_after_writes"].values() if m.get(field) is not None]
    return (sum(v) / 1024, max(v) / 1024) if v else (None, None)

rows = []  # (label, key, lower_is_better)
def figures(r):
    f = {}
    for run in ("write_all", "write_leader"):
        f[f"{run}.rps"] = w(r, run, "rps")
        f[f"{run}.errors"] = w(r, run, "errors")
        for p in ("p50", "p90", "p99", "p99.9"):
            f[f"{run}.{p}_ms"] = w(r, run, p)
    f["failover.median_ms"] = med(r["failover_ms"])
    f["failover.max_ms"] = max(r["failover_ms"]) if r["failover_ms"] else None
    f["rejoin.median_ms"] = med(r["rejoin_ms"])
    f["probe_put_ms"] = r["probe_put_ms"]
    f["peak_rss.sum_mib"], f["peak_rss.max_mib"] = mem(r, "hwm_kib")
    f["rss.sum_mib"], _ = mem(r, "rss_kib")
    return f

figs = {s: figures(r) for s, r in res.items()}
ratios = {}
if "mnemo" in figs and "etcd" in figs:
    for k, v in figs["mnemo"].items():
        e = figs["etcd"][k]
        if v is not None and e not in (None, 0) and not k.endswith(".errors"):
            ratios[k] = v / e

if as_json:
    print(json.dumps({"total_per_run": total, "key_space_size": key_space, "servers": res, "figures": figs,
                      "ratios_mnemo_over_etcd": ratios, "failed_steps": failed}, indent=2))
    sys.exit(1 if failed else 0)

def fmt(v, unit=""):
    if v is None:
        return "-"
    if unit == "/s":
        return f"{v:,.0f}/s"
    if unit == "MiB":
        return f"{v:,.0f} MiB"
    return f"{v:,.1f} ms" if v < 100 else f"{v:,.0f} ms"

servers = [s for s in ("mnemo", "etcd") if s in figs]
print(f"Three-member cluster on 127.0.0.1, {total} puts per write run (8-byte keys, 256-byte values, 100 conns, 100 clients, key space {key_space})")
for s in servers:
    print(f"  {s}: {res[s]['version']}")
hdr = "| figure | " + " | ".join(servers) + (" | mnemo / etcd |" if ratios else " |")
print()
print(hdr)
print("|---|" + "---:|" * (len(servers) + (1 if ratios else 0)))
def row(label, key, unit=""):
    cells = [fmt(figs[s][key], unit) for s in servers]
    if ratios:
        r = ratios.get(key)
        cells.append(f"{r:.2f}x" if r is not None else "-")
    print(f"| {label} | " + " | ".join(cells) + " |")
for run, name in (("write_all", "put, all 3 endpoints"), ("write_leader", "put, --target-leader")):
    row(f"{name}: throughput", f"{run}.rps", "/s")
    for p in ("p50", "p90", "p99", "p99.9"):
        row(f"{name}: {p}", f"{run}.{p}_ms")
    cells = [str(figs[s][f"{run}.errors"]) if figs[s][f"{run}.errors"] is not None else "-" for s in servers]
    print(f"| {name}: errors | " + " | ".join(cells) + (" | |" if ratios else " |"))
row("failover: kill -9 leader to first put, median", "failover.median_ms")
row("failover: max", "failover.max_ms")
print("| failover: each (ms) | " + " | ".join(", ".join(map(str, res[s]["failover_ms"])) or "-" for s in servers) + (" | |" if ratios else " |"))
row("probe put on a healthy cluster (etcdctl overhead)", "probe_put_ms")
row("restarted member caught up, median", "rejoin.median_ms")
row("peak RSS (VmHWM) after writes, 3 members", "peak_rss.sum_mib", "MiB")
row("peak RSS, largest member", "peak_rss.max_mib", "MiB")
row("RSS (VmRSS) after writes, 3 members", "rss.sum_mib", "MiB")
print("| members agree after writes (revision, hashkv) | " + " | ".join("yes" if res[s]["members_consistent"] else "NO" for s in servers) + (" | |" if ratios else " |"))
print("| server log lines at error level, panics | " + " | ".join(f"{res[s]['log_error_lines']}, {res[s]['log_panic_lines']}" for s in servers) + (" | |" if ratios else " |"))
if failed:
    print()
    print("FAILED steps:")
    for f in failed:
        print("  " + f)
sys.exit(1 if failed else 0)
EOF

#!/usr/bin/env bash
# Three-member compatibility check: the real etcdctl 3.4 (Debian's etcd-client) against a
# cluster of three servers on 127.0.0.1: member list/add/promote/remove, move-leader,
# endpoint status/hashkv/health --cluster, writes after the leader is killed, and a
# second cluster whose peers talk TLS (--peer-auto-tls).
#
# Usage: bash tools/compat/cluster.sh [--server PATH] [--keep]
#   --server PATH  server binary (also: MNEMO_BIN). Default: `cargo build --release` of
#                  mnemo. The script uses etcd's flags only: `--server "$(command -v
#                  etcd)"` runs it against etcd 3.4 itself (Debian's etcd-server).
#   --keep         keep the scratch directory (data and logs).
#
# Prints one line per check, then "N passed, M failed"; exits 1 if a check failed.

set -uo pipefail

SERVER="${MNEMO_BIN:-}"
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --server) SERVER="${2:?--server needs a path}"; shift 2 ;;
        --server=*) SERVER="${1#--server=}"; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "cluster.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
export ETCDCTL_API=3
ETCDCTL="${ETCDCTL:-etcdctl}"
if ! command -v "$ETCDCTL" >/dev/null 2>&1; then
    echo "== installing etcdctl (Debian package etcd-client)"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq etcd-client >/dev/null; }; then
        echo "cluster.sh: cannot install etcd-client" >&2
        exit 1
    fi
fi
if [ -z "$SERVER" ]; then
    echo "== cargo build --release --bin mnemo"
    if ! (cd "$ROOT" && cargo build --release -p mnemo --bin mnemo); then
        echo "cluster.sh: cannot build mnemo" >&2
        exit 1
    fi
    target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
    case "$target_dir" in /*) ;; *) target_dir="$ROOT/$target_dir" ;; esac
    SERVER="$target_dir/release/mnemo"
fi
echo "== server: $SERVER"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/mnemo-cluster.XXXXXX")"
declare -A PID CLIENT PEER
PASSED=0
FAILED=0

cleanup() {
    local n
    for n in "${!PID[@]}"; do
        kill -KILL "${PID[$n]}" 2>/dev/null
    done
    wait 2>/dev/null
    if [ "$KEEP" = 1 ]; then echo "== kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=tools/compat/ports.sh
. "$ROOT/tools/compat/ports.sh"

for n in m1 m2 m3 m4; do
    CLIENT[$n]="http://127.0.0.1:$(free_port)"
    PEER[$n]="http://127.0.0.1:$(free_port)"
done

INITIAL="m1=${PEER[m1]},m2=${PEER[m2]},m3=${PEER[m3]}"
ENDPOINTS="${CLIENT[m1]},${CLIENT[m2]},${CLIENT[m3]}"

# start NAME STATE INITIAL_CLUSTER [FLAGS...]: starts a member in the background.
start() {
    local name="$1" state="$2" initial="$3"
    shift 3
    "$SERVER" --name "$name" --data-dir "$TMP/$name" \
        --listen-client-urls "${CLIENT[$name]}" --advertise-client-urls "${CLIENT[$name]}" \
        --listen-peer-urls "${PEER[$name]}" --initial-advertise-peer-urls "${PEER[$name]}" \
        --initial-cluster "$initial" --initial-cluster-state "$state" \
        --initial-cluster-token compat-cluster "$@" \
        >>"$TMP/$name.log" 2>&1 </dev/null &
    PID[$name]=$!
}

# healthy ENDPOINT SECONDS: waits until the endpoint reports healthy.
healthy() {
    local deadline=$((SECONDS + $2))
    while [ $SECONDS -lt $deadline ]; do
        if timeout 5 "$ETCDCTL" --endpoints="$1" --dial-timeout=1s --command-timeout=2s \
            endpoint health >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

CMD=""
OUT=""
ERR=""
RC=0
# ctl ENDPOINTS ARGS...
ctl() {
    local eps="$1"
    shift
    CMD="etcdctl --endpoints=$eps $*"
    OUT="$(timeout 30 "$ETCDCTL" --endpoints="$eps" --dial-timeout=3s \
        --command-timeout=15s "$@" 2>"$TMP/stderr")"
    RC=$?
    ERR="$(grep -v '^{"level"' "$TMP/stderr")"
}

pass() { PASSED=$((PASSED + 1)); echo "ok    $1"; }
fail() {
    FAILED=$((FAILED + 1))
    echo "FAIL  $1"
    echo "    command:  $CMD"
    echo "    expected: $2"
    echo "    got: exit code $RC, stdout:"
    printf '%s\n' "$OUT" | sed 's/^/      /'
    [ -n "$ERR" ] && printf '    stderr:\n%s\n' "$ERR" | sed 's/^/      /'
}

# expect_match NAME REGEX ENDPOINTS ARGS...: exit code 0 and stdout matching REGEX.
expect_match() {
    local name="$1" re="$2"
    shift 2
    ctl "$@"
    if [ "$RC" -eq 0 ] && [[ "$OUT" =~ $re ]]; then pass "$name"; else fail "$name" "exit 0, stdout matching $re"; fi
}

# expect_err NAME TEXT ENDPOINTS ARGS...: a non-zero exit code and TEXT in stderr.
expect_err() {
    local name="$1" text="$2"
    shift 2
    ctl "$@"
    if [ "$RC" -ne 0 ] && [[ "$ERR" == *"$text"* ]]; then pass "$name"; else fail "$name" "non-zero exit, stderr containing $text"; fi
}

check() {
    local name="$1" what="$2"
    shift 2
    if "$@"; then pass "$name"; else fail "$name" "$what"; fi
}

lines() { printf '%s\n' "$OUT" | grep -c .; }

# sees ENDPOINT KEY VALUE: within 10 s, a serializable read there returns VALUE.
sees() {
    for _ in $(seq 1 100); do
        ctl "$1" get "$2" --consistency=s --print-value-only
        if [ "$OUT" = "$3" ]; then return 0; fi
        sleep 0.1
    done
    return 1
}

# The member id (hex) of the endpoint that `endpoint status` calls leader.
leader_id() {
    ctl "$ENDPOINTS" endpoint status
    printf '%s\n' "$OUT" | awk -F', ' '$5 == "true" { print $2 }' | head -n 1
}

for n in m1 m2 m3; do start "$n" new "$INITIAL"; done
for n in m1 m2 m3; do
    if ! healthy "${CLIENT[$n]}" 60; then
        echo "cluster.sh: member $n did not become healthy; its log:" >&2
        tail -n 30 "$TMP/$n.log" >&2
        exit 1
    fi
done
echo "== 3 members serving: $ENDPOINTS"

# --- membership and status -------------------------------------------------------------

expect_match "member list: three started members" \
    "^([0-9a-f]+, started, m[123], http://127.0.0.1:[0-9]+, http://127.0.0.1:[0-9]+, false"$'\n'"?){3}$" \
    "${CLIENT[m2]}" member list
expect_match "endpoint status --cluster: three rows, one leader" \
    "^([^\n]*, (true|false), false, [0-9]+, [0-9]+, [0-9]+, "$'\n'"?){3}$" \
    "${CLIENT[m1]}" endpoint status --cluster
ctl "${CLIENT[m1]}" endpoint status --cluster
check "endpoint status --cluster: exactly one leader" "one row with IS LEADER true" \
    test "$(printf '%s\n' "$OUT" | awk -F', ' '$5 == "true"' | grep -c .)" -eq 1
# etcdctl 3.4 prints health to stderr.
ctl "${CLIENT[m3]}" endpoint health --cluster
check "endpoint health --cluster" "3 lines '<url> is healthy: successfully committed proposal'" \
    test "$RC" -eq 0 -a "$(printf '%s\n' "$ERR" | grep -c '^http://127.0.0.1:[0-9]* is healthy: successfully committed proposal: took = ')" -eq 3

for i in $(seq 1 30); do
    ctl "${CLIENT[m$(( i % 3 + 1 ))]}" put "k$i" "v$i"
done
expect_match "put through a follower, get through another member" $'^k30\nv30$' \
    "${CLIENT[m2]}" get k30
ctl "${CLIENT[m1]}" endpoint hashkv --cluster
check "endpoint hashkv --cluster: three equal hashes" "3 lines with one hash" \
    test "$(printf '%s\n' "$OUT" | awk -F', ' '{ print $2 }' | sort -u | grep -c .)" -eq 1 -a "$(lines)" -eq 3

# --- learner: add, start, promote, remove ----------------------------------------------

# etcd refuses membership changes ("unhealthy cluster") until every member has been
# connected for 5 s; mnemo does not wait. Retry for a while either way.
for _ in $(seq 1 40); do
    ctl "${CLIENT[m2]}" member add m4 --learner --peer-urls="${PEER[m4]}"
    [[ "$ERR" == *"unhealthy cluster"* ]] || break
    sleep 0.5
done
# etcdctl prints ids with %16x: short ids get leading spaces.
ADD_RE="^Member *[0-9a-f]+ added to cluster *[0-9a-f]+"$'\n\n'"ETCD_NAME=\"m4\""$'\n'"ETCD_INITIAL_CLUSTER=\"[^\"]*m4=${PEER[m4]}[^\"]*\""$'\n'"ETCD_INITIAL_ADVERTISE_PEER_URLS=\"${PEER[m4]}\""$'\n'"ETCD_INITIAL_CLUSTER_STATE=\"existing\"$"
check "member add --learner" "exit 0, stdout matching $ADD_RE" \
    eval '[ "$RC" -eq 0 ] && [[ "$OUT" =~ $ADD_RE ]]'
NEW_ID="$(printf '%s\n' "$OUT" | sed -n 's/^Member *\([0-9a-f]*\) added.*/\1/p')"
NEW_INITIAL="$(printf '%s\n' "$OUT" | sed -n 's/^ETCD_INITIAL_CLUSTER="\(.*\)"$/\1/p')"
expect_match "member list shows the unstarted learner" \
    "(^|"$'\n'")$NEW_ID, unstarted, , ${PEER[m4]}, , true("$'\n'"|$)" \
    "${CLIENT[m1]}" member list
expect_err "promote an unstarted learner" \
    "etcdserver: can only promote a learner member which is in sync with leader" \
    "${CLIENT[m1]}" member promote "$NEW_ID"
start m4 existing "$NEW_INITIAL"
# A learner answers Status and serializable reads only.
learner_up=0
for _ in $(seq 1 300); do
    ctl "${CLIENT[m4]}" endpoint status
    learner_re=', true, [0-9]+, '
    if [ "$RC" -eq 0 ] && [[ "$OUT" =~ $learner_re ]]; then learner_up=1; break; fi
    sleep 0.2
done
check "the learner starts and reports itself a learner" "endpoint status with IS LEARNER true" \
    test "$learner_up" = 1
expect_err "a learner refuses writes" "etcdserver: rpc not supported for learner" \
    "${CLIENT[m4]}" put from-learner v
promoted=0
for _ in $(seq 1 50); do
    ctl "${CLIENT[m3]}" member promote "$NEW_ID"
    if [ "$RC" -eq 0 ]; then promoted=1; break; fi
    sleep 0.2
done
check "member promote" "Member $NEW_ID promoted in cluster ..." \
    test "$promoted" = 1 -a -n "$(printf '%s' "$OUT" | grep "^Member *$NEW_ID promoted in cluster *[0-9a-f]*$")"
expect_match "member list: four voters" \
    "^([0-9a-f]+, started, m[1234], [^\n]*, false"$'\n'"?){4}$" "${CLIENT[m4]}" member list
expect_err "promote a voter" "etcdserver: can only promote a learner member" \
    "${CLIENT[m1]}" member promote "$NEW_ID"
expect_match "member remove" "^Member *$NEW_ID removed from cluster *[0-9a-f]+$" \
    "${CLIENT[m1]}" member remove "$NEW_ID"
kill -KILL "${PID[m4]}" 2>/dev/null
wait "${PID[m4]}" 2>/dev/null
unset 'PID[m4]'
expect_match "member list: three again" "^([^\n]*"$'\n'"?){3}$" "${CLIENT[m1]}" member list
expect_err "remove an unknown member" "etcdserver: member not found" \
    "${CLIENT[m1]}" member remove 1234

# --- move-leader -----------------------------------------------------------------------

OLD_LEADER="$(leader_id)"
ctl "$ENDPOINTS" endpoint status
TARGET="$(printf '%s\n' "$OUT" | awk -F', ' '$5 == "false" { print $2 }' | head -n 1)"
expect_match "move-leader" "^Leadership transferred from $OLD_LEADER to $TARGET$" \
    "$ENDPOINTS" move-leader "$TARGET"
check "the transferee leads" "leader $TARGET" test "$(leader_id)" = "$TARGET"
expect_err "move-leader to an unknown member" "etcdserver: bad leader transferee" \
    "$ENDPOINTS" move-leader 1234

# --- failover ------------------------------------------------------------------------

LEADER="$(leader_id)"
for n in m1 m2 m3; do
    ctl "${CLIENT[$n]}" endpoint status
    id="$(printf '%s\n' "$OUT" | awk -F', ' '{ print $2 }')"
    if [ "$id" = "$LEADER" ]; then DOWN=$n; fi
done
kill -KILL "${PID[$DOWN]}"
wait "${PID[$DOWN]}" 2>/dev/null
unset "PID[$DOWN]"
REST=""
for n in m1 m2 m3; do [ "$n" != "$DOWN" ] && REST="$REST${REST:+,}${CLIENT[$n]}"; done
start_ns=$(date +%s%N)
ok=0
for _ in $(seq 1 300); do
    if timeout 5 "$ETCDCTL" --endpoints="$REST" --dial-timeout=1s --command-timeout=1s \
        put after-failover yes >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.05
done
took_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
check "writes resume after kill -9 of the leader (took ${took_ms} ms)" "a put within 15 s" test "$ok" = 1
expect_match "the write is readable through the other member" $'^after-failover\nyes$' \
    "$REST" get after-failover
start "$DOWN" new "$INITIAL"
if healthy "${CLIENT[$DOWN]}" 60; then pass "the killed leader restarts"; else
    FAILED=$((FAILED + 1)); echo "FAIL  the killed leader restarts"; tail -n 20 "$TMP/$DOWN.log"; fi
check "the restarted member catches up" "its local read sees the write" \
    sees "${CLIENT[$DOWN]}" after-failover yes

# --- peer TLS ----------------------------------------------------------------------------

# A second cluster, t1-t3, runs its peer traffic over TLS (--peer-auto-tls).
for n in t1 t2 t3; do
    CLIENT[$n]="http://127.0.0.1:$(free_port)"
    PEER[$n]="https://127.0.0.1:$(free_port)"
done
TLS_INITIAL="t1=${PEER[t1]},t2=${PEER[t2]},t3=${PEER[t3]}"
for n in t1 t2 t3; do
    start "$n" new "$TLS_INITIAL" --peer-auto-tls
done
tls_up=1
for n in t1 t2 t3; do
    if ! healthy "${CLIENT[$n]}" 60; then
        tls_up=0
        echo "member $n of the TLS cluster did not become healthy; its log:"
        tail -n 20 "$TMP/$n.log"
    fi
done
check "a cluster with https peer URLs and --peer-auto-tls serves" "3 healthy members" \
    test "$tls_up" = 1
expect_match "member list shows the https peer URLs" \
    "^([0-9a-f]+, started, t[123], https://127.0.0.1:[0-9]+, http://127.0.0.1:[0-9]+, false"$'\n'"?){3}$" \
    "${CLIENT[t2]}" member list
expect_match "a write through one member replicates over TLS" "^OK$" "${CLIENT[t1]}" put tls-key v
check "the other members have it" "a serializable read on t3 sees it" \
    sees "${CLIENT[t3]}" tls-key v

echo
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]

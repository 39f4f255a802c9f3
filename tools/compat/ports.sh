# Sourced by the compat and bench scripts. `free_port` prints a TCP port on 127.0.0.1
# that nothing listens on and that no earlier call in the same script returned.
#
# Ports come from below Linux's ephemeral range (32768-60999), so a port found free now
# is not taken later by some connection's local end. The ports handed out are kept in a
# file, not a variable: callers run `$(free_port)`, a subshell. The file lives in the
# sourcing script's scratch directory, "$TMP", which it removes when it exits.
MNEMO_PORTS_FILE="${TMP:?ports.sh needs the scratch directory TMP}/ports"
: >"$MNEMO_PORTS_FILE"

free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 12000))
        grep -qx "$port" "$MNEMO_PORTS_FILE" && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port" >>"$MNEMO_PORTS_FILE"
            echo "$port"
            return
        fi
    done
}

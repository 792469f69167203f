# Sourced by bench/trace.sh and bench/stages.sh: two network namespaces
# joined by a veth pair, with an iperf3 server in the second, and skbtrace
# following the first end.
# Set before calling: NS1 NS2 (netns names), A B (the veth ends), NET (the
# /24 prefix, e.g. 10.231.0), TMP (a scratch directory), SECS (iperf3 run
# length), SKB (the skbtrace binary). veth_pair_up sets SRV_PID.

veth_pair_up() {
    ip netns add "$NS1"; ip netns add "$NS2"
    ip link add "$A" netns "$NS1" type veth peer name "$B" netns "$NS2"
    ip -n "$NS1" addr add "$NET.1/24" dev "$A"; ip -n "$NS2" addr add "$NET.2/24" dev "$B"
    ip -n "$NS1" link set "$A" up; ip -n "$NS2" link set "$B" up
    ip netns exec "$NS2" iperf3 -s -D -I "$TMP/iperf.pid" >/dev/null
    sleep 0.5; SRV_PID=$(cat "$TMP/iperf.pid")
}

# Ends only what veth_pair_up made: its iperf3 server and both netns.
veth_pair_down() {
    if [ -n "${SRV_PID:-}" ]; then kill "$SRV_PID" 2>/dev/null || true; fi
    ip netns del "$NS1" 2>/dev/null || true
    ip netns del "$NS2" 2>/dev/null || true
}

# iperf3 TCP from NS1 to NS2 for SECS seconds: Gbit/s received.
# IPERF_AFFINITY=C,S pins the client to CPU C and the server to S (iperf3
# -A): the untraced rate on 2 vCPUs is bimodal by where the scheduler puts
# the two ends (both on one CPU about 26 Gbit/s, split 10-17; HISTORY.md).
tcp_gbps() {
    ip netns exec "$NS1" iperf3 -c "$NET.2" -t "$SECS" ${IPERF_AFFINITY:+-A "$IPERF_AFFINITY"} -J \
        | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9, 3))'
}

# SPARE_CPU=1 (trace.sh, stages.sh): iperf3's two ends on CPU 0 and
# skbtrace on the other CPUs, through IPERF_AFFINITY and SKB_CPUS.
spare_cpu_from_env() {
    [ -n "${SPARE_CPU:-}" ] || return 0
    local n
    n=$(nproc)
    [ "$n" -ge 2 ] || { echo "SPARE_CPU=1 needs 2 CPUs or more" >&2; exit 2; }
    export IPERF_AFFINITY=0,0 SKB_CPUS="1-$((n - 1))"
}

# The command that starts skbtrace: SKB_CPUS=LIST (taskset -c) keeps it
# on those CPUs; taskset execs it, so $! is skbtrace's own PID.
skb_cmd() {
    if [ -n "${SKB_CPUS:-}" ]; then echo "taskset -c $SKB_CPUS"; fi
}

# Starts `$SKB follow` on A in NS1 in the background, writing JSON to $1
# (more follow options after it), and waits for its ready line; sets
# SKB_PID. Variables exported by the caller reach skbtrace.
follow_start() {
    local out=$1; shift
    # shellcheck disable=SC2046 # skb_cmd is a command and its arguments
    $(skb_cmd) "$SKB" follow --dev "$A" --netns "$NS1" --json "$out" "$@" >/dev/null 2>"$TMP/follow.err" &
    SKB_PID=$!
    for _ in $(seq 100); do grep -q "following packets" "$TMP/follow.err" && return; sleep 0.1; done
    echo "skbtrace did not start:"; cat "$TMP/follow.err"; exit 1
}

# Stops it as Ctrl-C would (outputs flushed) and waits for it. Then writes
# its output to disk: the JSON (0.4-1 GiB per run) would otherwise be
# written back by the kernel during the next runs, untraced ones included,
# and lower the baseline the traced run is divided by.
follow_stop() {
    kill -INT "$SKB_PID"; wait "$SKB_PID" || true; SKB_PID=""
    sync
}

cpu_ticks() { # cpu_ticks PID: user + system clock ticks so far
    awk '{print $14 + $15}' "/proc/$1/stat"
}

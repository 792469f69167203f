#!/usr/bin/env bash
# Benchmarks skbtrace-fwd against the Linux bridge and OVS's userspace
# datapath (datapath_type=netdev), in one run, on one topology:
#
#   ns1 [a1 10.78.1.1] ==veth== [b1] nsf [b2] ==veth== [a2 10.78.1.2] ns2
#   ns1 [d1 10.78.2.1] ==veth========================= [d2 10.78.2.2] ns2   (direct, RTT baseline)
#
# In nsf, b1 and b2 are joined in turn by: a Linux bridge, skbtrace-fwd,
# and an OVS netdev bridge (own ovsdb-server/ovs-vswitchd in a temp dir; no
# kernel module). For each: iperf3 TCP throughput, iperf3 UDP 64-byte
# datagram rate (received), ping RTT p50 (added over the direct pair).
#
# Usage: sudo bench/fwd.sh [--duration SECS] [--rounds N] [--fwd PATH] [--fwd-cpus LIST]
#                          [--fwd-args "ARGS"]
#   skbtrace-fwd runs a queue per CPU with CPU fanout (--fwd-args, default
#   "--queues NCPU --fanout cpu"; "--worker-per-direction" or "" for one
#   queue), its workers pinned to --fwd-cpus as VPP pins its workers:
#   default each queue's worker on the next CPU (1,...,N-1,0), so frames the
#   kernel handed over on CPU c are forwarded on another CPU, where the
#   receiving end runs; --fwd-cpus none leaves them to the scheduler.
#   needs: iproute2, iperf3, ping, jq, openvswitch-switch (binaries only; the
#   system service is not used). Builds skbtrace-fwd --release if --fwd is not
#   given. The three datapaths are measured in turn, --rounds times (default
#   3), and each number is the median over rounds, so background load hits
#   all of them alike. Prints a table and the ratios against the targets;
#   exits 1 when a target is missed.
set -euo pipefail

DUR=10
ROUNDS=3
FWD=""
NCPU=$(nproc)
FWD_CPUS=$(seq -s, 1 $((NCPU - 1)))
FWD_CPUS="${FWD_CPUS:+$FWD_CPUS,}0"
FWD_ARGS="--queues $NCPU --fanout cpu"
[ "$NCPU" -gt 1 ] || FWD_ARGS=""
while [ $# -gt 0 ]; do
    case "$1" in
    --duration) DUR="$2"; shift 2 ;;
    --fwd) FWD="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --fwd-cpus) FWD_CPUS="$2"; shift 2 ;;
    --fwd-args) FWD_ARGS="$2"; shift 2 ;;
    -h | --help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 2; }
for t in ip iperf3 ping jq ovsdb-server ovs-vswitchd ovs-vsctl ovsdb-tool; do
    command -v "$t" >/dev/null || { echo "missing $t (apt-get install iproute2 iperf3 iputils-ping jq openvswitch-switch)" >&2; exit 2; }
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "$FWD" ]; then
    (cd "$ROOT" && cargo build --release -q -p fwd --bins)
    FWD="${CARGO_TARGET_DIR:-$ROOT/target}/release/skbtrace-fwd"
fi
[ -x "$FWD" ] || { echo "no skbtrace-fwd at $FWD" >&2; exit 2; }

TAG="bf$$"
NS1="${TAG}h1"; NS2="${TAG}h2"; NSF="${TAG}f"
TMP="$(mktemp -d /tmp/skbtrace-fwd-bench.XXXXXX)"
PIDS=()

cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    sleep 0.3
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    ip netns del "$NS1" 2>/dev/null
    ip netns del "$NS2" 2>/dev/null
    ip netns del "$NSF" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

ip netns add "$NS1"; ip netns add "$NS2"; ip netns add "$NSF"
for ns in "$NS1" "$NS2" "$NSF"; do ip -n "$ns" link set lo up; done
ip link add "${TAG}a1" netns "$NS1" type veth peer name "${TAG}b1" netns "$NSF"
ip link add "${TAG}a2" netns "$NS2" type veth peer name "${TAG}b2" netns "$NSF"
ip link add "${TAG}d1" netns "$NS1" type veth peer name "${TAG}d2" netns "$NS2"
ip -n "$NS1" addr add 10.78.1.1/24 dev "${TAG}a1"
ip -n "$NS2" addr add 10.78.1.2/24 dev "${TAG}a2"
ip -n "$NS1" addr add 10.78.2.1/24 dev "${TAG}d1"
ip -n "$NS2" addr add 10.78.2.2/24 dev "${TAG}d2"
for l in a1 d1; do ip -n "$NS1" link set "${TAG}$l" up; done
for l in a2 d2; do ip -n "$NS2" link set "${TAG}$l" up; done
for l in b1 b2; do ip -n "$NSF" link set "${TAG}$l" up; done
B1="${TAG}b1"; B2="${TAG}b2"

ip netns exec "$NS2" iperf3 -s -p 5301 >/dev/null 2>&1 &
PIDS+=($!)
sleep 0.5

wait_ping() { # dst: wait until one ping gets through (max 20 s)
    for _ in $(seq 1 40); do
        ip netns exec "$NS1" ping -c 1 -W 0.5 "$1" >/dev/null 2>&1 && return 0
    done
    echo "no connectivity to $1" >&2
    return 1
}

# rtt_p50 DST: median of 1000 pings 2 ms apart, in microseconds.
rtt_p50() {
    ip netns exec "$NS1" ping -n -c 1000 -i 0.002 "$1" |
        sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' | sort -g |
        awk '{a[NR]=$1} END {if (NR==0) {print "nan"; exit} printf "%.1f\n", a[int((NR+1)/2)]*1000}'
}

tcp_gbps() {
    ip netns exec "$NS1" iperf3 -c 10.78.1.2 -p 5301 -t "$DUR" -J |
        jq -r '.end.sum_received.bits_per_second / 1e9 | . * 100 | round / 100' 2>/dev/null || echo nan
}

a2_rx() { ip netns exec "$NS2" cat "/sys/class/net/${TAG}a2/statistics/rx_packets"; }

# 64-byte UDP datagrams sent as fast as iperf3 can: prints two rates in
# kpps: what the datapath delivered to a2 (its rx_packets counter), and what
# the iperf3 server read (lower: on 2 CPUs the receiving process is the
# first to run out of CPU, whichever datapath feeds it).
udp_kpps() {
    local before after json
    before=$(a2_rx)
    json=$(ip netns exec "$NS1" iperf3 -c 10.78.1.2 -p 5301 -u -b 0 -l 64 -t "$DUR" -J) || true
    after=$(a2_rx)
    local secs app
    secs=$(echo "$json" | jq -r '.end.sum.seconds' 2>/dev/null || echo "$DUR")
    app=$(echo "$json" | jq -r '.end.sum | ((.packets - .lost_packets) / .seconds / 1000) | . * 10 | round / 10' 2>/dev/null || echo nan)
    awk -v a="$after" -v b="$before" -v s="$secs" -v app="$app" 'BEGIN { printf "%.1f %s\n", (a - b) / s / 1000, app }'
}

declare -A R    # R[name,metric] = space-separated values, one per round
measure() { # name
    wait_ping 10.78.1.2
    local rtt tcp udp app
    rtt=$(rtt_p50 10.78.1.2)
    tcp=$(tcp_gbps)
    read -r udp app < <(udp_kpps)
    R[$1,rtt]+="$rtt "; R[$1,tcp]+="$tcp "; R[$1,udp]+="$udp "; R[$1,app]+="$app "
    echo "  $1: tcp $tcp Gbit/s, udp64 $udp kpps delivered ($app kpps read by iperf3), rtt p50 $rtt us" >&2
}
median() { echo "$1" | tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : "nan")}'; }

run_bridge() {
    ip -n "$NSF" link add "${TAG}br" type bridge
    ip -n "$NSF" link set "${TAG}br" up
    ip -n "$NSF" link set "$B1" master "${TAG}br"
    ip -n "$NSF" link set "$B2" master "${TAG}br"
    measure bridge
    ip -n "$NSF" link del "${TAG}br"
}

run_fwd() {
    local pin=()
    [ "$FWD_CPUS" = none ] || pin=(--cpus "$FWD_CPUS")
    local extra=()
    read -ra extra <<<"$FWD_ARGS"
    ip netns exec "$NSF" "$FWD" --if "$B1" --if "$B2" "${extra[@]}" "${pin[@]}" >"$TMP/fwd.out" 2>"$TMP/fwd.err" &
    local pid=$!
    PIDS+=("$pid")
    measure fwd
    kill -INT "$pid"
    wait "$pid" || { echo "skbtrace-fwd exited with an error:" >&2; cat "$TMP/fwd.err" >&2; }
    grep '^stats if=' "$TMP/fwd.out" | sed 's/^/    /' >&2 || true
}

DB="unix:$TMP/db.sock"
ovs_start() {
    export OVS_RUNDIR="$TMP" OVS_DBDIR="$TMP" OVS_LOGDIR="$TMP"
    ovsdb-tool create "$TMP/conf.db" /usr/share/openvswitch/vswitch.ovsschema
    ovsdb-server "$TMP/conf.db" --remote="punix:$TMP/db.sock" --unixctl="$TMP/ovsdb.ctl" \
        --log-file="$TMP/ovsdb.log" --no-chdir >/dev/null 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 50); do [ -S "$TMP/db.sock" ] && break; sleep 0.1; done
    ovs-vsctl --db="$DB" --no-wait init
    # Without userspace TSO, OVS would get 64 KiB GSO frames from veth and
    # fail to send them; with it, it forwards them like skbtrace-fwd does.
    ovs-vsctl --db="$DB" --no-wait set Open_vSwitch . other_config:userspace-tso-enable=true
    ip netns exec "$NSF" ovs-vswitchd "$DB" --unixctl="$TMP/vswitchd.ctl" \
        --log-file="$TMP/vswitchd.log" --no-chdir >/dev/null 2>&1 &
    PIDS+=($!)
    ovs-vsctl --db="$DB" --timeout=20 add-br "${TAG}ovs" -- set bridge "${TAG}ovs" datapath_type=netdev
}

run_ovs() {
    ovs-vsctl --db="$DB" --timeout=20 add-port "${TAG}ovs" "$B1" -- add-port "${TAG}ovs" "$B2"
    measure ovs
    ovs-vsctl --db="$DB" --timeout=20 del-port "${TAG}ovs" "$B1" -- del-port "${TAG}ovs" "$B2"
}

echo "kernel $(uname -r), $(nproc) CPUs, $DUR s per iperf3 run, $ROUNDS rounds, skbtrace-fwd ${FWD_ARGS:-(one worker)} on CPU $FWD_CPUS, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
wait_ping 10.78.2.2
ovs_start
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round" >&2
    r=$(rtt_p50 10.78.2.2)
    R[direct,rtt]+="$r "
    echo "  direct: rtt p50 $r us" >&2
    run_bridge
    run_fwd
    run_ovs
done
for k in "${!R[@]}"; do R[$k]=$(median "${R[$k]}"); done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "nan"; else printf "%.2f", a / b }'; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a - b }'; }
TCP_R=$(ratio "${R[fwd,tcp]}" "${R[bridge,tcp]}")
UDP_R=$(ratio "${R[fwd,udp]}" "${R[ovs,udp]}")
UDP_APP_R=$(ratio "${R[fwd,app]}" "${R[ovs,app]}")
ADD_FWD=$(sub "${R[fwd,rtt]}" "${R[direct,rtt]}")
ADD_BR=$(sub "${R[bridge,rtt]}" "${R[direct,rtt]}")
ADD_OVS=$(sub "${R[ovs,rtt]}" "${R[direct,rtt]}")
verdict() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN { ok = (op == ">=") ? (v >= t) : (v <= t); print ok ? "PASS" : "MISS" }'; }

cat <<EOF

| datapath        | TCP Gbit/s | UDP 64 B kpps delivered | UDP 64 B kpps read by app | ping p50 us | added p50 us |
|-----------------|-----------:|------------------------:|--------------------------:|------------:|-------------:|
| direct veth     |            |                         |                           | ${R[direct,rtt]} | 0 |
| Linux bridge    | ${R[bridge,tcp]} | ${R[bridge,udp]} | ${R[bridge,app]} | ${R[bridge,rtt]} | $ADD_BR |
| skbtrace-fwd    | ${R[fwd,tcp]} | ${R[fwd,udp]} | ${R[fwd,app]} | ${R[fwd,rtt]} | $ADD_FWD |
| OVS netdev      | ${R[ovs,tcp]} | ${R[ovs,udp]} | ${R[ovs,app]} | ${R[ovs,rtt]} | $ADD_OVS |

targets:
  TCP skbtrace-fwd / Linux bridge = $TCP_R (>= 0.8)  $(verdict "$TCP_R" 0.8 ">=")
  UDP delivered skbtrace-fwd / OVS netdev = $UDP_R (>= 1.5); read by app: $UDP_APP_R  $(verdict "$UDP_R" 1.5 ">=")
  added ping p50 skbtrace-fwd      = $ADD_FWD us (<= 50)  $(verdict "$ADD_FWD" 50 "<=")
EOF

fails=0
[ "$(verdict "$TCP_R" 0.8 ">=")" = PASS ] || fails=1
[ "$(verdict "$UDP_R" 1.5 ">=")" = PASS ] || fails=1
[ "$(verdict "$ADD_FWD" 50 "<=")" = PASS ] || fails=1
exit $fails

#!/usr/bin/env bash
# Benchmarks of skbtrace follow (the timelines issue). Every number is a
# ratio or a count measured in this run, on this machine:
#   1. iperf3 TCP between two netns over a veth pair: throughput while
#      `skbtrace follow` follows the sender's veth, divided by untraced; and
#      the same with `--probes` limited to two points (what fewer points save).
#   2. the aggregator alone (decode + correlate of recorded events, one core).
#   3. lost events at 100k packets/s and at the highest UDP rate one
#      sender per CPU drives here (tests/examples/udp_blast), while followed.
# Usage: sudo bench/trace.sh [seconds per run, default 10]
#   ONLY=1 (or 2, 3) runs one section; ROUNDS=N repeats section 1 N times
#   (untraced, traced, traced with two points, untraced each round; the
#   ratios use the untraced runs on both sides of the traced ones) and
#   prints the median of the rounds' ratios (on a shared VM take >= 5).
#   Each round also runs iperf3 beside a busy loop at nice 19 (it only gets
#   CPU time nobody else wants): what spending otherwise idle CPU costs
#   iperf3 on this machine, the yardstick for the reader's CPU time, which
#   is printed with it.
#   FOLLOW_ARGS="--nice 0" adds options to every traced run.
#   SKB=PATH follows with that skbtrace binary (e.g. an experiment build).
#   IPERF_AFFINITY=C,S pins iperf3's client and server (iperf3 -A): 0,0
#   takes the scheduler's placement out of the comparison (HISTORY.md).
#   SPARE_CPU=1 runs iperf3's two ends on CPU 0 and skbtrace's process on
#   the other CPUs (taskset): the traced workload keeps every cost the
#   programs add to its packets (they run on CPU 0, in its context), while
#   the reader has a CPU of its own, as on a machine with a core to spare.
#   Without it, on 2 vCPUs, iperf3 uses both and the reader takes its CPU
#   time from them (README: "Where the traced TCP throughput goes").
set -euo pipefail
ONLY=${ONLY:-}
unset SKBTRACE_STOP_AFTER # a stages.sh setting: this bench measures the whole pipeline
FOLLOW_ARGS=${FOLLOW_ARGS:-}
ROUNDS=${ROUNDS:-1}
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib/veth-follow.sh
. bench/lib/veth-follow.sh
spare_cpu_from_env
SECS=${1:-10}
cargo build --release --bins -p tracer >/dev/null
cargo build --release -p tests --example udp_blast >/dev/null
SKB=${SKB:-target/release/skbtrace}
BLAST=target/release/examples/udp_blast
NS1=skbbench1-$$; NS2=skbbench2-$$; A=sbba$$; B=sbbb$$
TMP=$(mktemp -d)
NET=10.231.0
SKB_PID=""; SRV_PID=""; SPIN_PID=""
cleanup() {
    [ -n "$SKB_PID" ] && kill -INT "$SKB_PID" 2>/dev/null || true
    [ -n "$SPIN_PID" ] && kill "$SPIN_PID" 2>/dev/null || true
    veth_pair_down
    rm -rf "$TMP"
}
trap cleanup EXIT
veth_pair_up

start_follow() { # start_follow JSONFILE [follow options]
    # shellcheck disable=SC2086 # FOLLOW_ARGS is a list of options
    follow_start "$@" $FOLLOW_ARGS
}
stop_follow() { follow_stop; }
cores() { # cores TICKS_BEFORE TICKS_AFTER: average cores over one iperf3 run
    python3 -c "print(round(($2 - $1) / $(getconf CLK_TCK) / $SECS, 2))"
}
spin_gbps() { # iperf3 beside a nice-19 busy loop; prints "Gbit/s cores-it-got"
    # shellcheck disable=SC2046 # where skbtrace would run (SPARE_CPU)
    $(skb_cmd) nice -n 19 sh -c 'while :; do :; done' &
    SPIN_PID=$!
    local t0 g
    t0=$(cpu_ticks "$SPIN_PID")
    g=$(tcp_gbps)
    echo "$g $(cores "$t0" "$(cpu_ticks "$SPIN_PID")")"
    kill "$SPIN_PID"; wait "$SPIN_PID" 2>/dev/null || true; SPIN_PID=""
}
summary_field() { # summary_field JSONFILE FIELD
    tail -n 1 "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"
}

FEW=net:net_dev_start_xmit,net:netif_receive_skb
if [ -z "$ONLY" ] || [ "$ONLY" = 1 ]; then
echo "== 1. iperf3 TCP over a veth pair, ${SECS}s per run, $ROUNDS round(s)${SKB_CPUS:+ (iperf3 on CPU 0, skbtrace on CPUs $SKB_CPUS)}"
RATIOS=""
for r in $(seq "$ROUNDS"); do
    base1=$(tcp_gbps)
    start_follow "$TMP/tcp.jsonl"
    t0=$(cpu_ticks "$SKB_PID")
    traced=$(tcp_gbps)
    reader=$(cores "$t0" "$(cpu_ticks "$SKB_PID")")
    stop_follow
    # The same with two points where a TCP segment is first seen (plus the
    # two where packets end): what --probes saves.
    start_follow "$TMP/few.jsonl" --probes "$FEW"
    few=$(tcp_gbps)
    stop_follow
    read -r spin spin_cores < <(spin_gbps)
    base2=$(tcp_gbps)
    base=$(python3 -c "print(($base1+$base2)/2)")
    echo "untraced: $base1 / $base2 Gbit/s   traced: $traced Gbit/s   ratio traced/untraced: $(python3 -c "print(round($traced/$base,3))")  (target >= 0.90)"
    echo "  events $(summary_field "$TMP/tcp.jsonl" events), packets $(summary_field "$TMP/tcp.jsonl" packets), incomplete $(summary_field "$TMP/tcp.jsonl" incomplete), lost $(summary_field "$TMP/tcp.jsonl" lost_events), JSON $(du -m "$TMP/tcp.jsonl" | cut -f1) MiB"
    echo "  --probes $FEW: $few Gbit/s, ratio $(python3 -c "print(round($few/$base,3))"), events $(summary_field "$TMP/few.jsonl" events)"
    echo "  skbtrace's own process used $reader cores (reader and sinks; the programs run in the senders' context); a nice-19 busy loop that got $spin_cores cores left $spin Gbit/s, ratio $(python3 -c "print(round($spin/$base,3))")"
    RATIOS="$RATIOS $(python3 -c "print(f'{$traced/$base}:{$few/$base}:{$spin/$base}')")"
done
# Back-to-back untraced runs differ by a factor of 2 on a shared VM: one
# round says little, the median of many says more.
if [ "$ROUNDS" -gt 1 ]; then
    # shellcheck disable=SC2086 # one argument per round
    python3 - $RATIOS <<'PY'
import statistics, sys
rounds = [tuple(map(float, a.split(":"))) for a in sys.argv[1:]]
med = [round(statistics.median(r[i] for r in rounds), 3) for i in range(3)]
print(f"median of {len(rounds)} rounds: traced/untraced {med[0]} (target >= 0.90), two points {med[1]}, busy loop {med[2]}")
PY
fi
fi

if [ -z "$ONLY" ] || [ "$ONLY" = 2 ]; then
echo
echo "== 2. aggregator alone (cargo bench -p timeline --bench aggregator)"
cargo bench -q -p timeline --bench aggregator 2>/dev/null | tail -n 8
fi

if [ -z "$ONLY" ] || [ "$ONLY" = 3 ]; then
echo
echo "== 3. lost events while following small UDP packets (tests/examples/udp_blast: sendmmsg, paced)"
# Nothing listens on the port: every datagram ends at udp_rcv in a drop
# (NO_SOCKET), a complete timeline of its own. One sender per CPU, each
# asked for its share: one sender thread alone cannot drive 100k pkt/s here
# while its packets are followed.
SENDERS=$(nproc)
for rate in 100000 1000000; do
    start_follow "$TMP/udp.jsonl"
    blasts=()
    for s in $(seq "$SENDERS"); do
        ip netns exec "$NS1" "$BLAST" "$NET.2:9" $((rate / SENDERS)) "$SECS" >"$TMP/blast.$s" &
        blasts+=($!)
    done
    wait "${blasts[@]}"
    stop_follow
    sent=$(cat "$TMP"/blast.* | awk '{n += $2} END {printf "%d packets in '"$SECS"' s (%d pkt/s)", n, n / '"$SECS"'}')
    echo "asked $rate pkt/s from $SENDERS senders: sent $sent; skbtrace events $(summary_field "$TMP/udp.jsonl" events), packets $(summary_field "$TMP/udp.jsonl" packets), lost events $(summary_field "$TMP/udp.jsonl" lost_events)"
    rm -f "$TMP"/blast.*
done
fi

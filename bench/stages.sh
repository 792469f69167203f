#!/usr/bin/env bash
# Where the cost of following a TCP stream goes, stage by stage. The skb
# programs do their work in stages (tracer-ebpf on_skb): entry, locate the
# headers, fingerprint, decide whether the packet is followed, take a
# slot in the CPU's event batch (`reserve`), write the event (`fill`: then
# give it back, so nothing reaches the ring), the batch
# written to the ring 16 events at a time (and the reader then decodes,
# correlates and writes JSON). SKBTRACE_STOP_AFTER=STAGE makes them stop
# after one stage (`decode`: the programs do everything and the reader only
# decodes each event), so each run here adds one stage to the last. Last,
# `stamp`, a yardstick rather than a stage: programs that only timestamp
# each skb and write a header-only event, and a reader that only decodes,
# the least that recording every hop can cost:
#   1. per stage, kernel.bpf_stats: ns per program run and the programs'
#      share of a CPU, and skbtrace's own CPU (the reader);
#   2. per stage, iperf3 TCP throughput between two netns over a veth pair
#      while followed, divided by untraced (the mean of the untraced runs
#      before and after each round's stages), and each stage's median over
#      the rounds. On a shared VM one round says little: keep ROUNDS >= 4.
# Usage: sudo bench/stages.sh [seconds per run, default 8]
#   ROUNDS=N repeats section 2 (default 4); ONLY=1 or ONLY=2 runs one section.
#   SPARE_CPU=1: iperf3 on CPU 0, skbtrace on the other CPUs (as in trace.sh).
set -euo pipefail
ONLY=${ONLY:-}
ROUNDS=${ROUNDS:-4}
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib/veth-follow.sh
. bench/lib/veth-follow.sh
spare_cpu_from_env
SECS=${1:-8}
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces, BPF)" >&2; exit 2; }
for t in ip iperf3 bpftool python3; do
    command -v "$t" >/dev/null || { echo "missing $t (scripts/setup.sh installs it)" >&2; exit 2; }
done
cargo build --release --bins -p tracer >/dev/null
SKB=target/release/skbtrace
STAGES="entry locate fingerprint follow reserve fill decode full stamp"
NS1=skbstage1-$$; NS2=skbstage2-$$; A=sbsa$$; B=sbsb$$
TMP=$(mktemp -d)
NET=10.233.0
SKB_PID=""; SRV_PID=""
STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
    [ -n "$SKB_PID" ] && kill -INT "$SKB_PID" 2>/dev/null && wait "$SKB_PID" 2>/dev/null || true
    sysctl -qw kernel.bpf_stats_enabled="$STATS_WAS" || true
    veth_pair_down
    rm -rf "$TMP"
}
trap cleanup EXIT
veth_pair_up

prog_ids() { bpftool prog show --json | python3 -c 'import json,sys; print(" ".join(str(p["id"]) for p in json.load(sys.stdin)))'; }
start_follow() { # start_follow STAGE: follows A with the programs stopping after STAGE
    local st=$1
    [ "$st" = full ] && st=""
    export SKBTRACE_STOP_AFTER=$st
    follow_start "$TMP/out.json"
    unset SKBTRACE_STOP_AFTER
}
stop_follow() {
    follow_stop
    rm -f "$TMP/out.json"
}

if [ -z "$ONLY" ] || [ "$ONLY" = 1 ]; then
    echo "== 1. cost per program run by stage (kernel.bpf_stats; iperf3 ${SECS}s each)"
    printf '  %-12s %10s %12s %10s %12s %8s\n' stage "ns/run" "runs" "BPF cores" "skbtrace c." "Gbit/s"
    sysctl -qw kernel.bpf_stats_enabled=1
    for st in $STAGES; do
        before=" $(prog_ids) "
        start_follow "$st"
        ours=""
        for id in $(prog_ids); do case "$before" in *" $id "*) ;; *) ours="$ours $id" ;; esac; done
        t0=$(cpu_ticks "$SKB_PID")
        snap0=$(bpftool prog show --json)
        g=$(tcp_gbps)
        snap1=$(bpftool prog show --json)
        t1=$(cpu_ticks "$SKB_PID")
        stop_follow
        python3 - "$st" "$ours" "$g" "$SECS" "$(( t1 - t0 ))" "$(getconf CLK_TCK)" "$snap0" "$snap1" <<'EOF'
import json, sys
st, ours, g, secs, ticks, hz, s0, s1 = sys.argv[1:]
ours = {int(i) for i in ours.split()}
def tot(snap):
    t = n = 0
    for p in json.loads(snap):
        if p["id"] in ours:
            t += p.get("run_time_ns", 0); n += p.get("run_cnt", 0)
    return t, n
(t0, n0), (t1, n1) = tot(s0), tot(s1)
dt, dn = t1 - t0, n1 - n0
print("  %-12s %10.0f %12d %10.3f %12.2f %8s" % (st, dt / max(dn, 1), dn, dt / 1e9 / float(secs),
      int(ticks) / int(hz) / float(secs), g))
EOF
    done
    sysctl -qw kernel.bpf_stats_enabled="$STATS_WAS"
fi

if [ -z "$ONLY" ] || [ "$ONLY" = 2 ]; then
    echo "== 2. iperf3 throughput by stage, followed / untraced (${SECS}s runs, $ROUNDS rounds)"
    for r in $(seq "$ROUNDS"); do
        b0=$(tcp_gbps)
        line=""
        declare -A got=()
        for st in $STAGES; do
            start_follow "$st"
            got[$st]=$(tcp_gbps)
            stop_follow
        done
        b1=$(tcp_gbps)
        for st in $STAGES; do
            ratio=$(python3 -c "print('%.3f' % (${got[$st]} / (($b0 + $b1) / 2)))")
            line="$line $st $ratio"
            echo "$st $ratio" >>"$TMP/ratios"
        done
        echo "  round $r: untraced $b0 / $b1 Gbit/s; ratio by stage:$line"
        unset got
    done
    python3 - "$TMP/ratios" $STAGES <<'EOF'
import statistics, sys
got = {}
for line in open(sys.argv[1]):
    st, r = line.split()
    got.setdefault(st, []).append(float(r))
print("  median over rounds:" + "".join(" %s %.3f" % (st, statistics.median(got[st])) for st in sys.argv[2:]))
EOF
fi

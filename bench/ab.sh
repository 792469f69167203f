#!/usr/bin/env bash
# A/B of two ways of following an iperf3 TCP stream: two skbtrace builds,
# two sets of follow options, or two environments. Each round runs
#   untraced, A, untraced, B, (untraced: the next round's first)
# and divides each traced run by the mean of the untraced runs on both
# sides of it, so the host's drift (untraced runs here differ by up to 2x
# back to back) mostly cancels. At the end: each side's median ratio and
# in how many rounds B came out ahead. This is how the README's
# "X against Y (12 rounds, 9 of 12 ahead)" comparisons are made.
#
# Usage: sudo bench/ab.sh [rounds, default 12] [seconds per run, default 4]
#   SKB_A=PATH SKB_B=PATH   the skbtrace binaries (default: this tree's release build)
#   ARGS_A="..." ARGS_B="..."  extra follow options per side
#   ENV_A="K=V ..." ENV_B="K=V ..."  environment per side (e.g. SKBTRACE_STOP_AFTER=entry)
#   IPERF_AFFINITY=0,0 SKB_CPUS=1   iperf3 on CPU 0, skbtrace on CPU 1 (as bench/trace.sh's SPARE_CPU=1)
# Example: an experiment build against main, same options:
#   sudo SKB_A=target/release/skbtrace SKB_B=/tmp/exp/skbtrace bench/ab.sh 12 4
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-12}
SECS=${2:-4}
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces, BPF)" >&2; exit 2; }
for t in ip iperf3 python3; do
    command -v "$t" >/dev/null || { echo "missing $t (scripts/setup.sh installs it)" >&2; exit 2; }
done
if [ -z "${SKB_A:-}" ] || [ -z "${SKB_B:-}" ]; then
    cargo build --release --bins -p tracer >/dev/null
fi
SKB_A=${SKB_A:-target/release/skbtrace}
SKB_B=${SKB_B:-target/release/skbtrace}
ARGS_A=${ARGS_A:-}; ARGS_B=${ARGS_B:-}; ENV_A=${ENV_A:-}; ENV_B=${ENV_B:-}
NS1=skbab1-$$; NS2=skbab2-$$; A=sbaa$$; B=sbab$$
TMP=$(mktemp -d)
NET=10.234.0
SKB_PID=""; SRV_PID=""
# shellcheck source=bench/lib/veth-follow.sh
. bench/lib/veth-follow.sh
cleanup() {
    [ -n "$SKB_PID" ] && kill -INT "$SKB_PID" 2>/dev/null && wait "$SKB_PID" 2>/dev/null || true
    veth_pair_down
    rm -rf "$TMP"
}
trap cleanup EXIT
veth_pair_up

# Like follow_start (bench/lib), with a binary and an environment per side.
run_side() { # run_side BINARY "ENV" "ARGS": sets G to the Gbit/s
    local bin=$1 envs=$2 args=$3
    # shellcheck disable=SC2086,SC2046
    env $envs $(skb_cmd) "$bin" follow --dev "$A" --netns "$NS1" --json "$TMP/out.json" $args \
        >/dev/null 2>"$TMP/follow.err" &
    SKB_PID=$!
    for _ in $(seq 100); do grep -q "following packets" "$TMP/follow.err" && break; sleep 0.1; done
    grep -q "following packets" "$TMP/follow.err" || { echo "skbtrace did not start:"; cat "$TMP/follow.err"; exit 1; }
    G=$(tcp_gbps)
    follow_stop
    rm -f "$TMP/out.json"
}

echo "== A: $SKB_A ${ENV_A:+[$ENV_A] }$ARGS_A"
echo "== B: $SKB_B ${ENV_B:+[$ENV_B] }$ARGS_B"
echo "== $ROUNDS rounds of untraced / A / untraced / B, iperf3 ${SECS}s each (Gbit/s, then ratios)"
u0=$(tcp_gbps); all=""
for _ in $(seq "$ROUNDS"); do
    run_side "$SKB_A" "$ENV_A" "$ARGS_A"; a=$G; u1=$(tcp_gbps)
    run_side "$SKB_B" "$ENV_B" "$ARGS_B"; b=$G; u2=$(tcp_gbps)
    all="$all $u0:$a:$u1:$b:$u2"
    python3 -c "import sys; u0,a,u1,b,u2=map(float,sys.argv[1].split(':')); print(f'{u0:6.2f} A[{a:6.2f}] {u1:6.2f} B[{b:6.2f}] {u2:6.2f}   {a/((u0+u1)/2):.3f} {b/((u1+u2)/2):.3f}')" "$u0:$a:$u1:$b:$u2"
    u0=$u2
done
# shellcheck disable=SC2086 # one argument per round
python3 - $all <<'EOF'
import statistics as st, sys
ra, rb = [], []
for r in sys.argv[1:]:
    u0, a, u1, b, u2 = map(float, r.split(':'))
    ra.append(a / ((u0 + u1) / 2)); rb.append(b / ((u1 + u2) / 2))
ahead = sum(b > a for a, b in zip(ra, rb))
print(f"median ratio to untraced: A {st.median(ra):.3f}  B {st.median(rb):.3f}  (B ahead in {ahead} of {len(ra)})")
EOF

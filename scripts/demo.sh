#!/usr/bin/env bash
# The demo (the main job): builds a small topology of network namespaces,
# veth pairs, a Linux bridge and the bundled AF_PACKET forwarder, sends
# pings across it, and follows them with skbtrace.
#
#   ns skbdemo-a  [a0 10.250.0.1] --veth-- [f0] ns skbdemo-fwd  skbtrace-fwd [f1] --veth--
#   [b0] ns skbdemo-br  (bridge br0) [b1] --veth-- [c0 10.250.0.2] ns skbdemo-c
#
# Everything it creates is removed on exit, also on Ctrl-C or failure.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bins -p tracer -p fwd
BIN=target/release
OUT=${SKBTRACE_DEMO_OUT:-out}
mkdir -p "$OUT"

NS=(skbdemo-a skbdemo-fwd skbdemo-br skbdemo-c)
FWD_PID=""
cleanup() {
    [ -n "$FWD_PID" ] && kill "$FWD_PID" 2>/dev/null && wait "$FWD_PID" 2>/dev/null || true
    for ns in "${NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM
cleanup

for ns in "${NS[@]}"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # IPv6 router/listener chatter would crowd the demo's output.
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
veth() { # veth NS1 DEV1 NS2 DEV2
    ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"
    ip -n "$1" link set "$2" up
    ip -n "$3" link set "$4" up
}
veth skbdemo-a a0 skbdemo-fwd f0
veth skbdemo-fwd f1 skbdemo-br b0
veth skbdemo-br b1 skbdemo-c c0
ip -n skbdemo-br link add br0 type bridge
ip -n skbdemo-br link set b0 master br0
ip -n skbdemo-br link set b1 master br0
ip -n skbdemo-br link set br0 up
ip -n skbdemo-a addr add 10.250.0.1/24 dev a0
ip -n skbdemo-c addr add 10.250.0.2/24 dev c0

echo "== starting skbtrace-fwd between f0 and f1 (in netns skbdemo-fwd)"
ip netns exec skbdemo-fwd "$BIN/skbtrace-fwd" --if f0 --if f1 2>"$OUT/fwd.err" &
FWD_PID=$!
for _ in $(seq 100); do grep -q "ready" "$OUT/fwd.err" && break; sleep 0.1; done
ip netns exec skbdemo-a ping -c 1 -W 5 10.250.0.2 >/dev/null # warm up ARP

echo "== skbtrace follow --dev a0 --netns skbdemo-a --fwd --duration 6s   (3 pings from A to C)"
# --fwd adds uprobes on skbtrace-fwd's per-frame hooks: each packet's path
# through the forwarder's userspace joins its kernel hops in one timeline.
"$BIN/skbtrace" follow --dev a0 --netns skbdemo-a --fwd --duration 6s \
    --json "$OUT/demo.jsonl" --pcap "$OUT/demo.pcapng" 2> "$OUT/follow.err" &
SKB_PID=$!
for _ in $(seq 300); do
    grep -q "following packets" "$OUT/follow.err" && break
    kill -0 "$SKB_PID" 2>/dev/null || { cat "$OUT/follow.err"; exit 1; }
    sleep 0.1
done
cat "$OUT/follow.err"
ip netns exec skbdemo-a ping -c 3 -i 0.5 10.250.0.2 >/dev/null
wait "$SKB_PID"
echo
echo "== saved: $OUT/demo.jsonl (skbtrace replay $OUT/demo.jsonl [--tui]) and $OUT/demo.pcapng (wireshark/tshark)"

#!/usr/bin/env bash
# Per-event cost of each attached program (kernel.bpf_stats_enabled:
# run_time_ns / run_cnt) while following a ping flood over a veth pair, and
# the attach time of every point (`skbtrace probes`). Runs on the host and,
# through scripts/vm-run.sh, inside the Debian 6.1 guest:
#   sudo bench/probe-cost.sh
#   scripts/vm-run.sh "$PWD/bench/probe-cost.sh"
set -euo pipefail
cd "$(dirname "$0")/.."
SKB=${SKBTRACE:-target/release/skbtrace}
COUNT=${COUNT:-5000}
echo "== kernel $(uname -r)"
"$SKB" probes | tail -n 1
"$SKB" probes --json | python3 -c '
import json,sys
r=json.load(sys.stdin)
for p in r["points"]:
    if p["method"] and not p["via"]:
        print("  attach %-26s %-15s %7.1f ms" % (p["point"], p["method"], p["attach_us"]/1000))
'
NS1=skbcost1-$$; NS2=skbcost2-$$
cleanup() { ip netns del "$NS1" 2>/dev/null || true; ip netns del "$NS2" 2>/dev/null || true; sysctl -qw kernel.bpf_stats_enabled=0 || true; }
trap cleanup EXIT
ip netns add "$NS1"; ip netns add "$NS2"
ip link add ca0 netns "$NS1" type veth peer name cb0 netns "$NS2"
ip -n "$NS1" addr add 10.232.0.1/24 dev ca0; ip -n "$NS2" addr add 10.232.0.2/24 dev cb0
ip -n "$NS1" link set ca0 up; ip -n "$NS2" link set cb0 up
sysctl -qw kernel.bpf_stats_enabled=1
"$SKB" events --dev ca0 --netns "$NS1" > /dev/null 2> /tmp/skbcost.err &
pid=$!
for _ in $(seq 600); do grep -q "following packets" /tmp/skbcost.err && break; sleep 0.1; done
ip netns exec "$NS1" ping -f -c "$COUNT" -q 10.232.0.2 | tail -n 2
bpftool prog show --json | python3 -c '
import json,sys
tot_t=tot_n=0
for p in json.load(sys.stdin):
    n=p.get("name","")
    if n[:3] in ("fe_","kp_","tb_","rt_") and p.get("run_cnt",0)>0:
        print("  cost   %-26s %8d runs %7.0f ns/run" % (n, p["run_cnt"], p["run_time_ns"]/p["run_cnt"]))
        tot_t+=p["run_time_ns"]; tot_n+=p["run_cnt"]
print("  mean over all programs: %.0f ns/run (%d runs)" % (tot_t/max(tot_n,1), tot_n))
'
kill -INT "$pid"; wait "$pid" || true
tail -n 3 /tmp/skbcost.err

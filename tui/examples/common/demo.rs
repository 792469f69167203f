//! Made-up packets for the examples.

use timeline::model::{Hop, Timeline};

/// A veth -> bridge -> veth path with varying latencies; every 7th packet
/// is dropped, every 11th incomplete.
pub fn demo(i: u64) -> Timeline {
    let path: &[(&str, &str, &str, u32)] = &[
        ("veth_xmit", "tracepoint", "veth0", 4026531840),
        ("netif_rx", "tracepoint", "veth1", 4026532201),
        ("__netif_receive_skb_core", "tp_btf", "veth1", 4026532201),
        ("br_handle_frame", "kprobe", "veth1", 4026532201),
        ("br_forward", "kprobe", "br0", 4026532201),
        ("veth_xmit", "tracepoint", "veth2", 4026532201),
        ("ip_rcv", "kprobe", "veth3", 4026532300),
        ("tcp_v4_rcv", "kprobe", "veth3", 4026532300),
    ];
    let start = 1_000_000_000 + i * 350_000;
    let mut ts = start;
    let dropped = i % 7 == 3;
    let hops_n = if dropped { 5 } else { path.len() };
    let hops = path[..hops_n]
        .iter()
        .enumerate()
        .map(|(k, (probe, method, dev, netns))| {
            let delta = if k == 0 {
                0
            } else {
                // A slow softirq hop every few packets.
                let base = 400 + (k as u64 * 130) + (i * 37 % 300);
                if k == 2 && i % 5 == 1 {
                    base + 40_000
                } else {
                    base
                }
            };
            ts += delta;
            Hop {
                probe: probe.to_string(),
                method: method.to_string(),
                dev: dev.to_string(),
                ifindex: 2 + k as u32,
                netns: *netns,
                cpu: (i % 4) as u32,
                pid: 0,
                comm: "swapper/0".into(),
                ts_ns: ts,
                delta_ns: delta,
                len: 98,
                drop_reason: (dropped && k == hops_n - 1).then(|| "NETFILTER_DROP".into()),
                ..Hop::default()
            }
        })
        .collect::<Vec<_>>();
    let us = i * 350;
    Timeline {
        id: i + 1,
        summary: format!("ICMP 10.0.1.1 > 10.0.2.1 echo-request id 7 seq {}", i + 1),
        fingerprint: format!("0x{:016x}", 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i + 1)),
        complete: i % 11 != 5,
        lost_events: false,
        dropped,
        ended_unseen: false,
        start_ns: start,
        wall_start: format!(
            "2025-03-01T10:00:{:02}.{:06}000Z",
            us / 1_000_000,
            us % 1_000_000
        ),
        total_ns: ts - start,
        hops,
    }
}

//! Shows a saved JSON Lines trace in the TUI, the way `skbtrace replay FILE
//! --tui` does, without building the BPF side:
//!
//!     cargo run -p tui --example replay -- trace.jsonl
//!     cargo run -p tui --example replay -- --demo 200 > demo.jsonl
//!
//! `--demo N` writes N made-up packets as JSON Lines instead (for trying the
//! TUI out and for the README capture).

use std::io::Write;

use anyhow::{Context, bail};
use timeline::model::{Hop, Record, Timeline};

fn main() -> anyhow::Result<()> {
    // Also takes `replay FILE --tui`, the real binary's words, so the tmux
    // test can run against this example too.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "replay" && a != "--tui")
        .collect();
    match args.as_slice() {
        [flag, n] if flag == "--demo" => {
            let n: u64 = n.parse().context("--demo takes a packet count")?;
            let mut out = std::io::stdout().lock();
            for i in 0..n {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&Record::Timeline(demo(i)))?
                )?;
            }
            Ok(())
        }
        [file] => {
            let replay = timeline::replay::read_path(file)?;
            tui::run_replay(
                replay.timelines,
                Some(replay.summary),
                tui::Options {
                    source: Some(format!("replay: {file}")),
                    ..tui::Options::default()
                },
            )
        }
        _ => bail!("usage: replay FILE.jsonl | replay --demo N > FILE.jsonl"),
    }
}

/// A veth -> bridge -> veth path with varying latencies; every 7th packet
/// is dropped, every 11th incomplete.
fn demo(i: u64) -> Timeline {
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

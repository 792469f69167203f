//! Aggregator throughput: synthetic ring-buffer records replayed through
//! decode + correlate (+ timeline emission and stats) on one core.
//!
//! `cargo bench -p timeline --bench aggregator [-- PACKETS] [tcp] [every-hop-bytes]`
//!
//! Events carry the packet's bytes on the first hop of each skb only, as
//! the kernel writes them by default (`probes::flags::ELIDED`);
//! `every-hop-bytes`: on every hop, as with `follow --every-hop-bytes`.
//!
//! `tcp`: the path an iperf3 segment takes over a veth pair on a kernel
//! with tracepoints only (5 events per packet, as `bench/trace.sh` sees on
//! this project's host), where per-packet work (summary, JSON record,
//! index clean-up) weighs more than on the default 14-event ICMP path.
//!
//! Prints events/s for three passes over the same bytes, best of 3 runs:
//! memcpy (the floor), decode only (the baseline), decode + correlate (the
//! aggregator); and the aggregator's throughput as a fraction of decode-only,
//! measured in the same run so the ratio holds across machines. No
//! assertions: a number to read, not a test.

use std::hint::black_box;
use std::io::BufWriter;
use std::time::Instant;

use probes::{Event, flags, id, method};
use timeline::decode::{decode, encode, split};
use timeline::sink::{JsonSink, Sink, TextSink};
use timeline::synth::{self, frame};
use timeline::{Correlator, CorrelatorConfig};

/// The tracer's output buffer size (tracer/src/follow.rs).
const OUT_BUF: usize = 256 * 1024;

/// One packet's path over veth -> bridge -> veth -> local delivery, with a
/// tap clone (packet_rcv) freed on the way: 12 events, 2 skbs.
const PATH: &[(u16, u8)] = &[
    (id::IP_OUTPUT, method::KPROBE),
    (id::TP_NET_DEV_START_XMIT, method::TP_BTF),
    (id::VETH_XMIT, method::KPROBE),
    (id::TP_NETIF_RX, method::TP_BTF),
    (id::__NETIF_RECEIVE_SKB_CORE, method::KPROBE),
    (id::PACKET_RCV, method::KPROBE), // clone
    (id::BR_HANDLE_FRAME, method::KPROBE),
    (id::BR_FORWARD, method::KPROBE),
    (id::VETH_XMIT, method::KPROBE),
    (id::IP_RCV, method::KPROBE),
    (id::ICMP_RCV, method::KPROBE),
    (id::TP_CONSUME_SKB, method::TP_BTF),
];

/// A TCP data segment over a veth pair, tracepoints only; tcp:tcp_probe
/// stands in for tcp_queue_rcv and ends the skb's life.
const TCP_PATH: &[(u16, u8)] = &[
    (id::TP_NET_DEV_QUEUE, method::TP_BTF),
    (id::TP_NET_DEV_START_XMIT, method::TP_BTF),
    (id::TP_NETIF_RX, method::TP_BTF),
    (id::TP_NETIF_RECEIVE_SKB, method::TP_BTF),
    (id::TP_TCP_PROBE, method::TP_BTF),
];

/// Events are 500 ns apart (2 M/s), packets interleaved `inflight` at a
/// time, so the correlator's maps hold what they would at that rate.
fn workload(packets: usize, inflight: usize, tcp: bool, every_hop: bool) -> (Vec<u8>, usize) {
    let path = if tcp { TCP_PATH } else { PATH };
    let mut out = Vec::with_capacity(packets * (path.len() + 1) * Event::SIZE);
    let mut n = 0usize;
    let mut ts = 1_000_000_000u64;
    let mut push = |ev: &Event, out: &mut Vec<u8>| {
        out.extend_from_slice(&encode(ev));
        n += 1;
    };
    // Records as the ring buffer hands them out: back to back, 8-aligned.
    debug_assert_eq!(Event::SIZE % 8, 0);
    for batch in (0..packets).step_by(inflight) {
        let end = (batch + inflight).min(packets);
        let frames: Vec<Vec<u8>> = (batch..end)
            .map(|i| {
                if tcp {
                    return frame::tcp4(
                        [10, 0, 1, 1],
                        [10, 0, 2, 1],
                        40000,
                        5201,
                        (i as u32).wrapping_mul(65_483),
                        901,
                        0x10,
                        65_483,
                    );
                }
                frame::icmp4_echo(
                    [10, 0, 1, 1],
                    [10, 0, 2, 1],
                    (i >> 16) as u16,
                    i as u16,
                    true,
                )
            })
            .collect();
        for (step, &(probe, meth)) in path.iter().enumerate() {
            for (k, f) in frames.iter().enumerate() {
                let i = (batch + k) as u64;
                // Addresses recycle like slab objects do.
                let slot = (i % 4096) * 0x100;
                let (skb, head) = (
                    0xffff_8880_0000_0000 + slot,
                    0xffff_8881_0000_0000 + slot * 8,
                );
                ts += 500;
                let fl = if probe == id::TP_CONSUME_SKB || probe == id::TP_TCP_PROBE {
                    flags::END
                } else {
                    0
                };
                let l2 = probe != id::IP_OUTPUT && probe != id::IP_RCV && probe != id::ICMP_RCV;
                let mut ev = synth::event(probe, meth, fl, ts, skb, head, f, l2);
                if step > 0 && !every_hop {
                    ev.flags |= flags::ELIDED;
                    ev.cap_len = 0;
                }
                push(&ev, &mut out);
                if probe == id::PACKET_RCV {
                    // The tap's clone: new skb, same head, freed at once.
                    let clone = skb + 0x80;
                    ts += 500;
                    push(
                        &synth::event(probe, meth, 0, ts, clone, head, f, true),
                        &mut out,
                    );
                    ts += 500;
                    push(
                        &synth::event(
                            id::TP_CONSUME_SKB,
                            method::TP_BTF,
                            flags::END,
                            ts,
                            clone,
                            head,
                            f,
                            true,
                        ),
                        &mut out,
                    );
                }
            }
        }
    }
    (out, n)
}

/// CPU time of this thread: on a shared machine (2 cores, several builds)
/// wall time mostly measures the neighbours.
fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own; the clock id is valid.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Best (CPU seconds, wall seconds) of `runs`.
fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> ((f64, f64), T) {
    let (mut cpu, mut wall) = (f64::MAX, f64::MAX);
    let mut last = None;
    for _ in 0..runs {
        let (t, c) = (Instant::now(), thread_cpu_s());
        let r = f();
        cpu = cpu.min(thread_cpu_s() - c);
        wall = wall.min(t.elapsed().as_secs_f64());
        last = Some(r);
    }
    ((cpu, wall), last.expect("runs > 0"))
}

fn main() {
    let packets: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let tcp = std::env::args().skip(1).any(|a| a == "tcp");
    let every_hop = std::env::args().skip(1).any(|a| a == "every-hop-bytes");
    let (bytes, events) = workload(packets, 256, tcp, every_hop);
    println!(
        "workload ({}, bytes {}): {packets} packets, {events} events ({:.1} per packet), {} MiB of records",
        if tcp {
            "TCP over veth"
        } else {
            "ICMP over a bridge"
        },
        if every_hop {
            "on every hop"
        } else {
            "on the first hop"
        },
        events as f64 / packets as f64,
        bytes.len() >> 20
    );

    // Touch the destination first: the floor is the copy, not page faults.
    let mut dst = vec![1u8; bytes.len()];
    let (t_copy, _) = best_of(3, || {
        dst.copy_from_slice(black_box(&bytes));
        black_box(dst.len())
    });
    drop(dst);

    let (t_decode, _) = best_of(3, || {
        let mut sum = 0u64;
        split(black_box(&bytes), |rec| {
            if let Ok(ev) = decode(rec) {
                sum = sum.wrapping_add(black_box(&ev).ts_ns);
            }
        });
        black_box(sum)
    });

    // `each`: timelines handed out by reference from one reused buffer
    // (poll_each, what the tracer's sinks use); else owned (poll, for
    // callers that keep them, like the TUI) and dropped.
    // `sink`: 0 none, 1 the text sink, 2 the JSON sink (with hop bytes),
    // both writing through a BufWriter (as the tracer's outputs are) to
    // io::sink(): the formatting and buffering cost, not the I/O.
    let run_with = |each: bool, sink: u8| {
        let mut c = Correlator::new(CorrelatorConfig::default());
        let (mut timelines, mut hops) = (0usize, 0usize);
        let mut text = TextSink::new(BufWriter::with_capacity(OUT_BUF, std::io::sink()));
        let mut json = JsonSink::new(BufWriter::with_capacity(OUT_BUF, std::io::sink()));
        let mut seen = |t: &timeline::Timeline| {
            timelines += 1;
            hops += t.hops.len();
            let _ = match sink {
                1 => text.timeline(t),
                2 => json.timeline(t),
                _ => Ok(()),
            };
        };
        let mut i = 0usize;
        split(black_box(&bytes), |rec| {
            if let Ok(ev) = decode(rec) {
                c.push(&ev);
            }
            // The tracer polls on a timer; every 64k events is ~30 ms at 2 M/s.
            if i % 65_536 == 65_535 {
                let now = c.latest_ts();
                if each {
                    c.poll_each(now, &mut seen);
                } else {
                    c.poll(now).iter().for_each(&mut seen);
                }
            }
            i += 1;
        });
        if each {
            c.finish_each(&mut seen);
        } else {
            c.finish().iter().for_each(&mut seen);
        }
        black_box(c.summary());
        (timelines, hops)
    };
    let run = |each: bool| run_with(each, 0);
    let (t_corr, (timelines, hops)) = best_of(3, || run(true));
    let (t_drop, _) = best_of(3, || run(false));
    let (t_text, _) = best_of(3, || run_with(true, 1));
    let (t_json, _) = best_of(3, || run_with(true, 2));

    let rate = |t: f64| events as f64 / t / 1e6;
    println!("M events/s        (thread CPU time)  (wall time)");
    println!(
        "memcpy            {:>8.1}            {:>8.1}",
        rate(t_copy.0),
        rate(t_copy.1)
    );
    println!(
        "decode only       {:>8.1}            {:>8.1}   <- baseline",
        rate(t_decode.0),
        rate(t_decode.1)
    );
    println!(
        "decode+correlate  {:>8.2}            {:>8.2}   (poll_each: timelines by reference)",
        rate(t_corr.0),
        rate(t_corr.1)
    );
    println!(
        "decode+correlate  {:>8.2}            {:>8.2}   (poll: owned timelines, dropped)",
        rate(t_drop.0),
        rate(t_drop.1)
    );
    println!(
        "+ text sink       {:>8.2}            {:>8.2}   (formatting + BufWriter, to io::sink)",
        rate(t_text.0),
        rate(t_text.1)
    );
    println!(
        "+ JSON sink       {:>8.2}            {:>8.2}   (formatting + BufWriter, to io::sink)",
        rate(t_json.0),
        rate(t_json.1)
    );
    println!(
        "decode+correlate / decode-only = {:.4} (CPU) {:.4} (wall); {:.0} ns CPU per event; {timelines} timelines, {hops} hops",
        t_decode.0 / t_corr.0,
        t_decode.1 / t_corr.1,
        t_corr.0 / events as f64 * 1e9
    );
    if timelines != packets || hops != events {
        println!("WARNING: expected {packets} timelines with {events} hops: correlation is off");
    }
}

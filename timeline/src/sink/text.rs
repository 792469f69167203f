//! The default output: one block per packet (summary line with total and
//! marks, then one line per hop), and a summary table at the end.
//!
//! ```text
//! #1 ICMP 10.0.1.1 > 10.0.2.1 echo-request id 7 seq 1  total 84.2us
//!   +0ns      veth_xmit                 kprobe      veth0@ns1          cpu 1  ping:1234
//!   +12.3us   net:netif_rx              tracepoint  veth1@4026532302   cpu 1  ping:1234
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use super::Sink;
use crate::fmt::{duration, write_duration};
use crate::model::{Hop, Summary, Timeline};

/// Writes the text waterfall to `W` (stdout, a file, a Vec in tests).
pub struct TextSink<W: Write> {
    w: W,
    netns_names: HashMap<u32, String>,
}

impl<W: Write> TextSink<W> {
    pub fn new(w: W) -> Self {
        Self {
            w,
            netns_names: HashMap::new(),
        }
    }

    /// netns inode -> name (e.g. from /run/netns); unnamed ones show the inode.
    pub fn with_netns_names(mut self, names: HashMap<u32, String>) -> Self {
        self.netns_names = names;
        self
    }

    pub fn into_inner(self) -> W {
        self.w
    }
}

/// The block for one packet, ending with a newline.
pub fn render_timeline(t: &Timeline, netns_names: &HashMap<u32, String>) -> String {
    let mut s = String::with_capacity(96 * (t.hops.len() + 1));
    let _ = write!(s, "#{} {}  total ", t.id, t.summary);
    write_duration(&mut s, t.total_ns);
    if t.ended_unseen {
        s.push_str("  [incomplete: freed unseen]");
    } else if !t.complete {
        s.push_str("  [incomplete]");
    }
    if t.dropped {
        s.push_str("  [dropped]");
    }
    if t.lost_events {
        s.push_str("  [lost events]");
    }
    s.push('\n');
    for h in &t.hops {
        render_hop(&mut s, h, netns_names);
    }
    s
}

/// Pads what was written to `s` since `start` with spaces to `width`
/// characters (as `{:<width}` would).
fn pad(s: &mut String, start: usize, width: usize) {
    let n = s[start..].chars().count();
    for _ in n..width {
        s.push(' ');
    }
}

// Written piece by piece into `s`: format! per field was most of the cost
// of printing a packet.
fn render_hop(s: &mut String, h: &Hop, netns_names: &HashMap<u32, String>) {
    s.push_str("  ");
    let start = s.len();
    s.push('+');
    write_duration(s, h.delta_ns);
    pad(s, start, 9);
    s.push(' ');
    let start = s.len();
    s.push_str(&h.probe);
    pad(s, start, 25);
    s.push(' ');
    let start = s.len();
    s.push_str(&h.method);
    pad(s, start, 10);
    s.push_str("  ");
    let start = s.len();
    s.push_str(if h.dev.is_empty() { "-" } else { &h.dev });
    match (h.netns, netns_names.get(&h.netns)) {
        (0, _) => {}
        (_, Some(n)) => {
            s.push('@');
            s.push_str(n);
        }
        (ns, None) => {
            let _ = write!(s, "@{ns}");
        }
    }
    pad(s, start, 20);
    s.push_str(" cpu ");
    let start = s.len();
    let _ = write!(s, "{}", h.cpu);
    pad(s, start, 3);
    s.push(' ');
    s.push_str(if h.comm.is_empty() { "-" } else { &h.comm });
    let _ = write!(s, ":{}", h.pid);
    if let Some(r) = &h.drop_reason {
        let _ = write!(s, "  drop: {r}");
    }
    s.push('\n');
}

/// The end-of-trace summary, ending with a newline.
pub fn render_summary(sum: &Summary) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "{} packets ({} complete, {} incomplete, {} dropped), {} events, {} lost events",
        sum.packets, sum.complete, sum.incomplete, sum.dropped, sum.events, sum.lost_events
    );
    if let Some(n) = sum.sample {
        let _ = write!(s, "\n  one packet in {n} followed (--sample {n})");
    }
    if sum.ended_unseen > 0 {
        // Without this a user reads these as losses or timeouts.
        let _ = write!(
            s,
            "\n  {} of the incomplete were freed where no probe fires (their skb came back with a new packet), e.g. merged in a TCP socket's backlog",
            sum.ended_unseen
        );
    }
    s.push('\n');
    if !sum.probes.is_empty() {
        let _ = writeln!(
            s,
            "\n  {:<26} {:<10} {:>10} {:>8}",
            "probe", "method", "events", "lost"
        );
        for p in &sum.probes {
            let _ = writeln!(
                s,
                "  {:<26} {:<10} {:>10} {:>8}",
                p.probe, p.method, p.events, p.lost
            );
        }
    }
    if !sum.hop_pairs.is_empty() {
        let _ = writeln!(
            s,
            "\n  {:<52} {:>7} {:>8} {:>8} {:>8} {:>8}",
            "hop pair", "count", "p50", "p90", "p99", "max"
        );
        for p in &sum.hop_pairs {
            let pair = format!("{} -> {}", p.from, p.to);
            let _ = writeln!(
                s,
                "  {pair:<52} {:>7} {:>8} {:>8} {:>8} {:>8}",
                p.count,
                duration(p.p50_ns),
                duration(p.p90_ns),
                duration(p.p99_ns),
                duration(p.max_ns)
            );
        }
    }
    s
}

impl<W: Write> Sink for TextSink<W> {
    fn timeline(&mut self, t: &Timeline) -> io::Result<()> {
        let mut block = render_timeline(t, &self.netns_names);
        block.push('\n');
        self.w.write_all(block.as_bytes())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    fn finish(&mut self, s: &Summary) -> io::Result<()> {
        self.w.write_all(b"--- summary ---\n")?;
        self.w.write_all(render_summary(s).as_bytes())?;
        self.w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPECTED: &str = "\
#1 ICMP 10.0.1.1 > 10.0.2.1 echo-request id 7 seq 1  total 84.2us
  +0ns      veth_xmit                 kprobe      veth0@4026531840     cpu 1   ping:1234
  +12.3us   net:netif_rx              tracepoint  veth1@ns2            cpu 1   ping:1234
  +34.8us   __netif_receive_skb_core  kprobe      veth1@ns2            cpu 0   swapper/0:0
  +4.90us   ip_rcv                    kprobe      veth1@ns2            cpu 0   swapper/0:0
  +32.2us   skb:consume_skb           tracepoint  veth1@ns2            cpu 0   swapper/0:0

#2 UDP 10.0.1.1:40000 > 10.0.2.1:9 len 12  total 3.40us  [dropped]
  +0ns      udp_rcv                   kprobe      veth1@ns2            cpu 1   ping:1234
  +3.40us   skb:kfree_skb             tracepoint  veth1@ns2            cpu 1   ping:1234  drop: NO_SOCKET

#3 TCP 10.0.1.1:40000 > 10.0.2.1:5201 [S] seq 123 len 0  total 0ns  [incomplete]  [lost events]
  +0ns      veth_xmit                 fentry      veth0@ns2            cpu 1   iperf3:4242

--- summary ---
3 packets (2 complete, 1 incomplete, 1 dropped), 8 events, 2 lost events
";

    #[test]
    fn waterfall_snapshot_with_named_and_unnamed_netns() {
        let (timelines, summary) = crate::synth::demo_timelines();
        let names = HashMap::from([(4026532301, "ns2".to_string())]);
        let mut sink = TextSink::new(Vec::new()).with_netns_names(names);
        for t in &timelines {
            sink.timeline(t).expect("write to Vec");
        }
        sink.finish(&summary).expect("write to Vec");
        let out = String::from_utf8(sink.into_inner()).expect("utf-8");
        assert!(out.starts_with(EXPECTED), "got:\n{out}");
        // Then the per-probe and hop-pair tables.
        let tail = &out[EXPECTED.len()..];
        assert!(
            tail.contains("\n  net:netif_rx               tracepoint          1        2\n"),
            "{tail}"
        );
        let pair = tail
            .lines()
            .find(|l| l.trim_start().starts_with("veth_xmit -> net:netif_rx"))
            .expect("hop pair line");
        let cols: Vec<&str> = pair.split_whitespace().collect();
        assert_eq!(cols[3..], ["1", "12.3us", "12.3us", "12.3us", "12.3us"]);
    }

    #[test]
    fn hop_without_device_or_netns() {
        let t = Timeline {
            id: 9,
            summary: "no data captured".into(),
            complete: true,
            hops: vec![Hop {
                probe: "ip_output".into(),
                method: "kprobe".into(),
                pid: 7,
                ..Default::default()
            }],
            ..Default::default()
        };
        let s = render_timeline(&t, &HashMap::new());
        assert_eq!(
            s,
            "#9 no data captured  total 0ns\n  +0ns      ip_output                 kprobe      -                    cpu 0   -:7\n"
        );
    }

    #[test]
    fn a_packet_freed_unseen_says_so_and_the_summary_counts_it() {
        let t = Timeline {
            id: 3,
            summary: "TCP".into(),
            ended_unseen: true,
            ..Default::default()
        };
        let s = render_timeline(&t, &HashMap::new());
        assert_eq!(s, "#3 TCP  total 0ns  [incomplete: freed unseen]\n");
        let sum = Summary {
            packets: 10,
            complete: 7,
            incomplete: 3,
            ended_unseen: 2,
            ..Default::default()
        };
        let out = render_summary(&sum);
        assert!(
            out.starts_with("10 packets (7 complete, 3 incomplete, 0 dropped), 0 events, 0 lost events\n  2 of the incomplete were freed where no probe fires"),
            "{out}"
        );
        let none = render_summary(&Summary::default());
        assert!(!none.contains("freed"), "{none}");
        assert!(!none.contains("--sample"), "{none}");
        let sampled = render_summary(&Summary {
            sample: Some(10),
            ..Default::default()
        });
        assert!(
            sampled.contains("\n  one packet in 10 followed (--sample 10)"),
            "{sampled}"
        );
    }
}

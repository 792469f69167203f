//! The trace summary: packet counts and per hop-pair latency percentiles
//! (hdrhistogram), accumulated from emitted timelines.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use hdrhistogram::Histogram;

use crate::model::{Hop, HopPairStats, ProbeCount, Summary, Timeline};

/// FNV-1a over probe names: short keys hashed once per hop; SipHash's
/// flooding resistance buys nothing for names we made ourselves.
#[derive(Default, Clone, Copy)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
    /// Pair keys: two indexes, one multiply spreads them.
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A probe seen in some timeline.
struct ProbeEntry {
    name: String,
    method: String,
    hops: u64,
}

/// Accumulates a [`Summary`] from timelines. The [`crate::Correlator`] keeps
/// one and feeds it every timeline it emits; `replay` builds one from a file.
#[derive(Default)]
pub struct Stats {
    packets: u64,
    complete: u64,
    incomplete: u64,
    ended_unseen: u64,
    dropped: u64,
    /// Probe name -> index into `probes`: one string hash per hop, then
    /// pairs are keyed by two small integers.
    index: HashMap<String, u32, BuildHasherDefault<Fnv>>,
    probes: Vec<ProbeEntry>,
    /// (from index << 32 | to index) -> latency histogram.
    pairs: HashMap<u64, Histogram<u64>, BuildHasherDefault<Fnv>>,
    /// Probe id -> index into `probes` (u32::MAX: not yet), for
    /// [`Stats::record_ids`]: the correlator knows each hop's probe id, and
    /// an index lookup is cheaper than hashing the name.
    by_id: Vec<u32>,
}

/// `new(3)` histograms auto-resize on `record` (not on
/// `saturating_record`); clamp only if growing fails.
fn record(h: &mut Histogram<u64>, v: u64) {
    if h.record(v).is_err() {
        h.saturating_record(v);
    }
}

impl Stats {
    pub fn new() -> Self {
        Self::default()
    }

    fn intern(&mut self, name: &str, method: &str) -> u32 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.probes.len() as u32;
        self.probes.push(ProbeEntry {
            name: name.to_string(),
            method: method.to_string(),
            hops: 0,
        });
        self.index.insert(name.to_string(), i);
        i
    }

    pub fn record(&mut self, t: &Timeline) {
        self.record_by(t, |s, h, _| s.intern(&h.probe, &h.method));
    }

    /// [`Stats::record`] for a timeline whose hop `i` came from probe
    /// `id_of(i)`, named as the timeline names it.
    pub(crate) fn record_ids(&mut self, t: &Timeline, id_of: impl Fn(usize) -> u16) {
        self.record_by(t, |s, h, i| {
            let id = id_of(i) as usize;
            match s.by_id.get(id) {
                Some(&x) if x != u32::MAX => x,
                _ => {
                    let x = s.intern(&h.probe, &h.method);
                    if id >= s.by_id.len() {
                        s.by_id.resize(id + 1, u32::MAX);
                    }
                    s.by_id[id] = x;
                    x
                }
            }
        });
    }

    /// Probe `id` is named anew: look its name up again next time.
    pub(crate) fn forget_id(&mut self, id: u16) {
        if let Some(x) = self.by_id.get_mut(id as usize) {
            *x = u32::MAX;
        }
    }

    fn record_by(&mut self, t: &Timeline, mut index: impl FnMut(&mut Self, &Hop, usize) -> u32) {
        self.packets += 1;
        if t.complete {
            self.complete += 1;
        } else {
            self.incomplete += 1;
            self.ended_unseen += t.ended_unseen as u64;
        }
        self.dropped += t.dropped as u64;
        let mut prev: Option<(u32, u64)> = None;
        for (n, h) in t.hops.iter().enumerate() {
            let i = index(self, h, n);
            self.probes[i as usize].hops += 1;
            if let Some((p, ts)) = prev {
                let delta = h.ts_ns.saturating_sub(ts);
                let key = (p as u64) << 32 | i as u64;
                if let Some(hist) = self.pairs.get_mut(&key) {
                    record(hist, delta);
                } else if let Ok(mut hist) = Histogram::new(3) {
                    record(&mut hist, delta);
                    self.pairs.insert(key, hist);
                }
            }
            prev = Some((i, h.ts_ns));
        }
    }

    /// Packets recorded so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Per hop-pair latency: count, p50/p90/p99/max, busiest pair first.
    pub fn hop_pairs(&self) -> Vec<HopPairStats> {
        let name = |i: u64| {
            self.probes
                .get(i as usize)
                .map(|p| p.name.clone())
                .unwrap_or_default()
        };
        let mut v: Vec<HopPairStats> = self
            .pairs
            .iter()
            .map(|(&key, h)| HopPairStats {
                from: name(key >> 32),
                to: name(key & 0xffff_ffff),
                count: h.len(),
                p50_ns: h.value_at_quantile(0.50),
                p90_ns: h.value_at_quantile(0.90),
                p99_ns: h.value_at_quantile(0.99),
                max_ns: h.max(),
            })
            .collect();
        v.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.from.cmp(&b.from))
                .then_with(|| a.to.cmp(&b.to))
        });
        v
    }

    /// The summary with per-probe counts from the tracer (events and lost
    /// as the kernel counted them). `events` is their sum.
    pub fn summary(&self, probes: Vec<ProbeCount>) -> Summary {
        Summary {
            packets: self.packets,
            complete: self.complete,
            incomplete: self.incomplete,
            ended_unseen: self.ended_unseen,
            dropped: self.dropped,
            events: probes.iter().map(|p| p.events).sum(),
            lost_events: probes.iter().map(|p| p.lost).sum(),
            sample: None,
            probes,
            hop_pairs: self.hop_pairs(),
        }
    }

    /// The summary when only timelines are known (a replayed file without
    /// its summary line): events are the hops recorded, losses unknown (0).
    pub fn summary_from_hops(&self) -> Summary {
        let mut probes: Vec<ProbeCount> = self
            .probes
            .iter()
            .map(|p| ProbeCount {
                probe: p.name.clone(),
                method: p.method.clone(),
                events: p.hops,
                lost: 0,
            })
            .collect();
        probes.sort_by(|a, b| b.events.cmp(&a.events).then_with(|| a.probe.cmp(&b.probe)));
        self.summary(probes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tl(hops: &[(&str, u64)]) -> Timeline {
        Timeline {
            hops: hops
                .iter()
                .map(|&(p, ts)| Hop {
                    probe: p.to_string(),
                    method: "tracepoint".into(),
                    ts_ns: ts,
                    ..Hop::default()
                })
                .collect(),
            complete: true,
            ..Timeline::default()
        }
    }

    #[test]
    fn recording_by_probe_id_counts_as_recording_by_name() {
        let a = tl(&[
            ("veth_xmit", 0),
            ("net:netif_rx", 700),
            ("skb:consume_skb", 1500),
        ]);
        let b = tl(&[("veth_xmit", 0), ("skb:consume_skb", 400)]);
        let (mut by_name, mut by_id) = (Stats::new(), Stats::new());
        for _ in 0..3 {
            by_name.record(&a);
            by_name.record(&b);
            by_id.record_ids(&a, |i| [3, 9, 20][i]);
            by_id.record_ids(&b, |i| [3, 20][i]);
        }
        assert_eq!(by_id.hop_pairs(), by_name.hop_pairs());
        assert_eq!(by_id.hop_pairs().len(), 3);
        // A probe renamed after its first timeline is counted under its new name.
        by_id.forget_id(9);
        by_id.record_ids(&tl(&[("veth_xmit", 0), ("netif_rx2", 5)]), |i| [3, 9][i]);
        assert!(by_id.hop_pairs().iter().any(|p| p.to == "netif_rx2"));
    }
}

//! The trace summary: packet counts and per hop-pair latency percentiles
//! (hdrhistogram), accumulated from emitted timelines.

use std::collections::HashMap;

use hdrhistogram::Histogram;

use crate::model::{HopPairStats, ProbeCount, Summary, Timeline};

/// Accumulates a [`Summary`] from timelines. The [`crate::Correlator`] keeps
/// one and feeds it every timeline it emits; `replay` builds one from a file.
#[derive(Default)]
pub struct Stats {
    packets: u64,
    complete: u64,
    incomplete: u64,
    dropped: u64,
    hops: u64,
    /// from probe -> to probe -> latency histogram. Nested so lookups take
    /// `&str` without building a key per hop.
    pairs: HashMap<String, HashMap<String, Histogram<u64>>>,
    /// probe -> (method, hops), for summaries rebuilt from timelines alone.
    probe_hops: HashMap<String, (String, u64)>,
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

    pub fn record(&mut self, t: &Timeline) {
        self.packets += 1;
        if t.complete {
            self.complete += 1;
        } else {
            self.incomplete += 1;
        }
        self.dropped += t.dropped as u64;
        self.hops += t.hops.len() as u64;
        for h in &t.hops {
            match self.probe_hops.get_mut(h.probe.as_str()) {
                Some(c) => c.1 += 1,
                None => {
                    self.probe_hops
                        .insert(h.probe.clone(), (h.method.clone(), 1));
                }
            }
        }
        for w in t.hops.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            let delta = b.ts_ns.saturating_sub(a.ts_ns);
            let tos = match self.pairs.get_mut(a.probe.as_str()) {
                Some(m) => m,
                None => self.pairs.entry(a.probe.clone()).or_default(),
            };
            if let Some(h) = tos.get_mut(b.probe.as_str()) {
                record(h, delta);
            } else if let Ok(mut h) = Histogram::new(3) {
                record(&mut h, delta);
                tos.insert(b.probe.clone(), h);
            }
        }
    }

    /// Packets recorded so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Per hop-pair latency: count, p50/p90/p99/max, busiest pair first.
    pub fn hop_pairs(&self) -> Vec<HopPairStats> {
        let mut v: Vec<HopPairStats> = self
            .pairs
            .iter()
            .flat_map(|(from, tos)| {
                tos.iter().map(move |(to, h)| HopPairStats {
                    from: from.clone(),
                    to: to.clone(),
                    count: h.len(),
                    p50_ns: h.value_at_quantile(0.50),
                    p90_ns: h.value_at_quantile(0.90),
                    p99_ns: h.value_at_quantile(0.99),
                    max_ns: h.max(),
                })
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
            dropped: self.dropped,
            events: probes.iter().map(|p| p.events).sum(),
            lost_events: probes.iter().map(|p| p.lost).sum(),
            probes,
            hop_pairs: self.hop_pairs(),
        }
    }

    /// The summary when only timelines are known (a replayed file without
    /// its summary line): events are the hops recorded, losses unknown (0).
    pub fn summary_from_hops(&self) -> Summary {
        let mut probes: Vec<ProbeCount> = self
            .probe_hops
            .iter()
            .map(|(p, (m, n))| ProbeCount {
                probe: p.clone(),
                method: m.clone(),
                events: *n,
                lost: 0,
            })
            .collect();
        probes.sort_by(|a, b| b.events.cmp(&a.events).then_with(|| a.probe.cmp(&b.probe)));
        self.summary(probes)
    }
}

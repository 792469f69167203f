//! Per hop-pair latency over every packet seen, including the ones the
//! packet list has already evicted: one HDR histogram per (from, to) pair.

use hdrhistogram::Histogram;
use timeline::model::{HopPairStats, Timeline};

/// 60 s: a hop-to-hop latency above this is clamped, which keeps each
/// histogram's memory fixed however odd the input.
const MAX_TRACKED_NS: u64 = 60_000_000_000;

struct Pair {
    from: String,
    to: String,
    hist: Histogram<u64>,
}

/// The histograms, in the order their pair was first seen (which follows the
/// packet path, the order a person reads).
#[derive(Default)]
pub struct PairStats {
    pairs: Vec<Pair>,
    /// Percentiles as of the last `refresh`, so rendering only reads.
    rows: Vec<HopPairStats>,
    dirty: bool,
}

impl PairStats {
    /// Adds every consecutive hop pair of `t`.
    pub fn record(&mut self, t: &Timeline) {
        for w in t.hops.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            // Few distinct pairs exist (tens), so a linear search beats
            // hashing two strings per hop and allocates nothing.
            let idx = match self
                .pairs
                .iter()
                .position(|p| p.from == a.probe && p.to == b.probe)
            {
                Some(i) => i,
                None => match Histogram::new_with_bounds(1, MAX_TRACKED_NS, 3) {
                    Ok(hist) => {
                        self.pairs.push(Pair {
                            from: a.probe.clone(),
                            to: b.probe.clone(),
                            hist,
                        });
                        self.pairs.len() - 1
                    }
                    // Cannot happen with these constant bounds; skipping a
                    // statistic beats failing the UI.
                    Err(_) => continue,
                },
            };
            self.pairs[idx].hist.saturating_record(b.delta_ns);
            self.dirty = true;
        }
    }

    /// Recomputes the percentile rows if anything was recorded since.
    pub fn refresh(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        self.rows
            .resize_with(self.pairs.len(), HopPairStats::default);
        for (row, p) in self.rows.iter_mut().zip(&self.pairs) {
            if row.from != p.from {
                row.from.clone_from(&p.from);
            }
            if row.to != p.to {
                row.to.clone_from(&p.to);
            }
            row.count = p.hist.len();
            row.p50_ns = p.hist.value_at_quantile(0.50);
            row.p90_ns = p.hist.value_at_quantile(0.90);
            row.p99_ns = p.hist.value_at_quantile(0.99);
            row.max_ns = p.hist.max();
        }
    }

    /// The rows as of the last `refresh`.
    pub fn rows(&self) -> &[HopPairStats] {
        &self.rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use timeline::model::Hop;

    fn tl(deltas: &[(&str, u64)]) -> Timeline {
        Timeline {
            hops: deltas
                .iter()
                .map(|(p, d)| Hop {
                    probe: p.to_string(),
                    delta_ns: *d,
                    ..Hop::default()
                })
                .collect(),
            ..Timeline::default()
        }
    }

    #[test]
    fn percentiles_per_pair_in_path_order() {
        let mut s = PairStats::default();
        for i in 1..=100u64 {
            s.record(&tl(&[("a", 0), ("b", i * 1000), ("c", 5)]));
        }
        s.record(&tl(&[("only", 0)]));
        s.refresh();
        let rows = s.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].from.as_str(), rows[0].to.as_str()), ("a", "b"));
        assert_eq!(rows[0].count, 100);
        // HDR with 3 significant digits: within 0.1%.
        assert!(rows[0].p50_ns.abs_diff(50_000) <= 50, "{}", rows[0].p50_ns);
        assert!(rows[0].p99_ns.abs_diff(99_000) <= 99, "{}", rows[0].p99_ns);
        assert!(rows[0].max_ns.abs_diff(100_000) <= 100);
        assert_eq!((rows[1].from.as_str(), rows[1].to.as_str()), ("b", "c"));
        assert_eq!(rows[1].max_ns, 5);
    }
}

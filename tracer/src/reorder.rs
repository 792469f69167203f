//! Puts events back in time order. The kernel writes them in per-CPU
//! batches (tracer-ebpf/src/staging.rs), so records from different CPUs
//! arrive out of order, and the correlator needs order: an skb address
//! reused after a packet ends must not be mistaken for the old packet.
//!
//! Events wait here until a watermark says nothing older can still come:
//! `source::drain` raises it after every CPU's partial batch was flushed.

use probes::Event;

/// Byte offset of `ts_ns` in an [`Event`] record.
const TS_OFFSET: usize = core::mem::offset_of!(Event, ts_ns);

#[derive(Default)]
pub struct Reorder {
    /// Event records back to back, in arrival order.
    bytes: Vec<u8>,
    /// (timestamp, offset in `bytes`, length) per record.
    index: Vec<(u64, u32, u32)>,
    /// `bytes`' previous buffer, reused to compact what is kept.
    spare: Vec<u8>,
}

impl Reorder {
    /// Splits one ring record into its events and keeps them. What does
    /// not split into whole events is kept as one piece, ahead of
    /// everything, for the decoder to report.
    pub fn push_record(&mut self, rec: &[u8]) {
        let rest = timeline::decode::split(rec, |ev| {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&ev[TS_OFFSET..TS_OFFSET + 8]);
            self.keep(u64::from_ne_bytes(ts), ev);
        });
        if !rest.is_empty() || rec.is_empty() {
            self.keep(0, rest);
        }
    }

    fn keep(&mut self, ts: u64, b: &[u8]) {
        self.index
            .push((ts, self.bytes.len() as u32, b.len() as u32));
        self.bytes.extend_from_slice(b);
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Bytes of events waiting.
    pub fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Events waiting that were stamped in `[from, to)`.
    pub fn count_between(&self, from: u64, to: u64) -> usize {
        self.index
            .iter()
            .filter(|&&(ts, _, _)| ts >= from && ts < to)
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Hands `f` every event stamped before `watermark`, oldest first (ties
    /// in arrival order), and keeps the rest. Stops early when `f` says so.
    pub fn release(
        &mut self,
        watermark: u64,
        mut f: impl FnMut(&[u8]) -> std::ops::ControlFlow<()>,
    ) -> std::ops::ControlFlow<()> {
        // Offsets grow with arrival, so this order breaks ties by arrival.
        // Each CPU's batches are already in order: the sort sees long runs.
        self.index.sort_unstable();
        let n = self.index.partition_point(|&(ts, _, _)| ts < watermark);
        let mut flow = std::ops::ControlFlow::Continue(());
        for &(_, off, len) in &self.index[..n] {
            flow = f(&self.bytes[off as usize..(off + len) as usize]);
            if flow.is_break() {
                break;
            }
        }
        // Keep what is newer than the watermark, compacted.
        self.index.drain(..n);
        self.spare.clear();
        for (_, off, len) in &mut self.index {
            let at = self.spare.len() as u32;
            self.spare
                .extend_from_slice(&self.bytes[*off as usize..(*off + *len) as usize]);
            *off = at;
        }
        std::mem::swap(&mut self.bytes, &mut self.spare);
        flow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::ControlFlow;

    fn ev(ts: u64, probe: u16) -> Vec<u8> {
        let mut e: Event = unsafe { core::mem::zeroed() };
        e.version = probes::EVENT_VERSION;
        e.ts_ns = ts;
        e.probe = probe;
        timeline::decode::encode(&e)
    }

    fn batch(evs: &[(u64, u16)]) -> Vec<u8> {
        evs.iter().flat_map(|&(t, p)| ev(t, p)).collect()
    }

    fn released(r: &mut Reorder, wm: u64) -> Vec<(u64, u16)> {
        let mut out = vec![];
        let _ = r.release(wm, |b| {
            let e = timeline::decode::decode(b).unwrap();
            out.push((e.ts_ns, e.probe));
            ControlFlow::Continue(())
        });
        out
    }

    #[test]
    fn batches_from_two_cpus_come_out_in_time_order_up_to_the_watermark() {
        let mut r = Reorder::default();
        // CPU 1's batch arrives first though CPU 0's events are older.
        r.push_record(&batch(&[(20, 1), (40, 1), (60, 1)]));
        r.push_record(&batch(&[(10, 0), (30, 0), (50, 0), (70, 0)]));
        assert_eq!(r.len(), 7);
        assert_eq!(
            released(&mut r, 55),
            vec![(10, 0), (20, 1), (30, 0), (40, 1), (50, 0)]
        );
        assert_eq!(r.len(), 2);
        // Later records can still be older than what is kept.
        r.push_record(&batch(&[(65, 2)]));
        assert_eq!(released(&mut r, u64::MAX), vec![(60, 1), (65, 2), (70, 0)]);
        assert!(r.is_empty());
    }

    #[test]
    fn counts_the_events_waiting_in_a_time_range() {
        let mut r = Reorder::default();
        r.push_record(&batch(&[(10, 0), (20, 0), (30, 0)]));
        r.push_record(&batch(&[(15, 1)]));
        assert_eq!(r.count_between(10, 20), 2);
        assert_eq!(r.count_between(20, 31), 2);
        assert_eq!(r.count_between(31, u64::MAX), 0);
    }

    #[test]
    fn equal_timestamps_keep_their_arrival_order() {
        let mut r = Reorder::default();
        r.push_record(&batch(&[(5, 3), (5, 1)]));
        r.push_record(&batch(&[(5, 2)]));
        assert_eq!(released(&mut r, 6), vec![(5, 3), (5, 1), (5, 2)]);
    }

    #[test]
    fn a_record_of_no_whole_events_is_handed_on_first_for_the_decoder_to_refuse() {
        let mut r = Reorder::default();
        r.push_record(&batch(&[(5, 1)]));
        r.push_record(&[1, 2, 3]);
        let mut sizes = vec![];
        let _ = r.release(1, |b| {
            sizes.push(b.len());
            ControlFlow::Continue(())
        });
        assert_eq!(sizes, vec![3]);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn after_a_stop_from_the_consumer_only_events_past_the_watermark_are_kept() {
        let mut r = Reorder::default();
        r.push_record(&batch(&[(1, 0), (2, 0), (3, 0), (9, 0)]));
        let mut n = 0;
        let flow = r.release(5, |_| {
            n += 1;
            if n == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert!(flow.is_break());
        assert_eq!(n, 2);
        // The consumer is done; what is newer than the watermark stays.
        assert_eq!(r.len(), 1);
    }
}

//! Uprobe events in the correlator: hops in userspace datapaths.
//!
//! A uprobe event has no skb (`skb == 0`, NO_SKB unset, method UPROBE).
//!
//! - **With a fingerprint** (the probe saw the frame's bytes: skbtrace-fwd's
//!   hooks, sendmmsg/recvmmsg iovecs) it joins the packet with that
//!   fingerprint that is open, or whose skbs all ended less than the join
//!   window ago, exactly like a new skb would. It does not make the packet
//!   live, but restarts its join window: the packet is now in user space
//!   and its next skb (the one the program sends) may come a while later.
//!   With no such packet it starts one, held for a join window.
//! - **Without one** (the probe saw a batch: VPP's node functions, or a
//!   plain call such as poll's return) it is *placed by time*: it joins the
//!   packets whose latest hop is at most a join window before it and that
//!   are waiting in user space — their skbs all ended (copied into an
//!   AF_PACKET ring and freed), their last hop is an AF_PACKET receive, or
//!   their last hop is a uprobe of the same process. At most `batch` of
//!   them (the event's `reason`), the most recent first. Such hops carry
//!   `by_time` and the batch size. With no candidate the event is counted
//!   as unattached.

use probes::{Event, id, method};

use super::Correlator;

/// Set on the correlator's own copy of a time-placed event (never by the
/// kernel: the bit is not one of `probes::flags`).
pub(super) const BY_TIME: u8 = 1 << 7;

/// Last hops after which a packet waits in a socket for user space.
fn is_socket_rx(probe: u16) -> bool {
    probe == id::PACKET_RCV || probe == id::TPACKET_RCV
}

impl Correlator {
    pub(super) fn push_user(&mut self, ev: &Event) {
        self.latest_ts = self.latest_ts.max(ev.ts_ns);
        if ev.fingerprint != 0 {
            let pkt = match self.fp_join(ev) {
                Some(p) => p,
                None => self.new_packet(),
            };
            self.append(pkt, ev);
            if let Some(p) = self.packets.get_mut(&pkt)
                && p.live == 0
            {
                p.ended_at = Some(p.ended_at.unwrap_or(0).max(ev.ts_ns));
            }
            return;
        }
        let window = self.cfg.join_window_ns;
        let mut cands: Vec<(u64, u64, u64)> = self
            .packets
            .iter()
            .filter(|(_, p)| p.last_ts <= ev.ts_ns && ev.ts_ns - p.last_ts <= window)
            .filter(|(_, p)| {
                // The window runs from the last hop that was not itself
                // placed by time: else a process that polls more often
                // than the window keeps a packet absorbing its calls for
                // ever (seen with ovs-vswitchd's poll returns).
                let Some(last) = p
                    .events
                    .iter()
                    .filter(|e| e.flags & BY_TIME == 0)
                    .max_by_key(|e| e.ts_ns)
                else {
                    return false;
                };
                if ev.ts_ns.saturating_sub(last.ts_ns) > window {
                    return false;
                }
                let dropped = p.events.iter().any(|e| e.flags & probes::flags::DROP != 0);
                !dropped
                    && (p.live == 0
                        || is_socket_rx(last.probe)
                        || (last.method == method::UPROBE && last.pid == ev.pid))
            })
            .map(|(h, p)| (p.last_ts, p.id, h))
            .collect();
        if cands.is_empty() {
            self.unattached += 1;
            return;
        }
        cands.sort_unstable_by(|a, b| b.cmp(a));
        let mut placed = *ev;
        placed.flags |= BY_TIME;
        for &(_, _, pkt) in cands.iter().take(ev.reason.max(1) as usize) {
            self.append(pkt, &placed);
            if let Some(p) = self.packets.get_mut(&pkt)
                && p.live == 0
            {
                p.ended_at = Some(p.ended_at.unwrap_or(0).max(ev.ts_ns));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Correlator, CorrelatorConfig};
    use probes::{CAPTURE_LEN, EVENT_VERSION, flags};

    const MS: u64 = 1_000_000;

    fn ev(probe: u16, m: u8, ts: u64, skb: u64, fp: u64) -> Event {
        Event {
            version: EVENT_VERSION,
            probe,
            method: m,
            flags: 0,
            cap_len: 0,
            ts_ns: ts,
            skb,
            head: skb ^ 0xff00,
            fingerprint: fp,
            pid: 0,
            tid: 0,
            cpu: 0,
            ifindex: 0,
            netns: 0,
            len: 98,
            mark: 0,
            reason: 0,
            protocol: 0x0800,
            wire_len: Event::SIZE as u16,
            _pad: [0; 4],
            comm: [0; 16],
            dev: [0; 16],
            data: [0; CAPTURE_LEN],
        }
    }

    fn kernel(probe: u16, ts: u64, skb: u64, fp: u64) -> Event {
        ev(probe, method::TP_BTF, ts, skb, fp)
    }

    fn end(ts: u64, skb: u64, fp: u64) -> Event {
        let mut e = kernel(id::TP_CONSUME_SKB, ts, skb, fp);
        e.flags = flags::END;
        e
    }

    fn user(probe: u16, ts: u64, fp: u64, pid: u32, batch: u32) -> Event {
        let mut e = ev(probe, method::UPROBE, ts, 0, fp);
        e.head = 0;
        e.pid = pid;
        e.reason = batch;
        e
    }

    fn corr() -> Correlator {
        let mut c = Correlator::new(CorrelatorConfig::default());
        c.set_probe_name(id::UPROBE_BASE, "skbtrace_fwd_rx");
        c.set_probe_name(id::UPROBE_BASE + 1, "skbtrace_fwd_tx");
        c
    }

    #[test]
    fn a_forwarded_packet_is_one_timeline_kernel_user_kernel() {
        let fp = 0xabcd;
        let mut c = corr();
        // ns1 -> forwarder: skb A lives and is freed after the copy to the ring.
        c.push(&kernel(id::TP_NET_DEV_START_XMIT, 1_000, 0xa, fp));
        c.push(&kernel(id::TP_NETIF_RECEIVE_SKB, 2_000, 0xa, fp));
        c.push(&end(3_000, 0xa, fp));
        // 30 ms later (within the 50 ms window) user space sees it...
        c.push(&user(id::UPROBE_BASE, 30 * MS, fp, 77, 1));
        // ...and 40 ms after that (past A's window, within the uprobe's) sends it.
        c.push(&user(id::UPROBE_BASE + 1, 70 * MS, fp, 77, 1));
        c.push(&kernel(id::TP_NET_DEV_START_XMIT, 75 * MS, 0xb, fp));
        c.push(&kernel(id::TP_NETIF_RECEIVE_SKB, 76 * MS, 0xb, fp));
        c.push(&end(77 * MS, 0xb, fp));
        assert!(c.poll(100 * MS).is_empty(), "held for the join window");
        let out = c.poll(200 * MS);
        assert_eq!(out.len(), 1, "one timeline: {out:?}");
        let t = &out[0];
        assert!(t.complete);
        let probes: Vec<&str> = t.hops.iter().map(|h| h.probe.as_str()).collect();
        assert_eq!(
            probes,
            [
                "net:net_dev_start_xmit",
                "net:netif_receive_skb",
                "skb:consume_skb",
                "skbtrace_fwd_rx",
                "skbtrace_fwd_tx",
                "net:net_dev_start_xmit",
                "net:netif_receive_skb",
                "skb:consume_skb"
            ]
        );
        let rx = &t.hops[3];
        assert_eq!(rx.method, "uprobe");
        assert_eq!(rx.pid, 77);
        assert_eq!(rx.delta_ns, 30 * MS - 3_000);
        assert!(!rx.by_time);
        assert_eq!(t.hops[4].delta_ns, 40 * MS);
    }

    #[test]
    fn an_skb_whose_headers_were_in_fragments_keeps_its_packet_when_pulled() {
        // An AF_PACKET TX-ring skb: only the Ethernet header is linear, so
        // the kernel programs give no fingerprint until ip_rcv pulls the
        // headers into a new head.
        let mut c = corr();
        c.push(&kernel(id::TP_NETIF_RX, 1_000, 0xa, 0));
        let mut pulled = end(2_000, 0xa, 0x77);
        pulled.head = 0x5555;
        c.push(&pulled);
        let out = c.finish();
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].hops.len(), 2);
        assert!(out[0].complete);
    }

    #[test]
    fn a_uprobe_event_too_late_for_the_window_starts_its_own_packet() {
        let fp = 0x1234;
        let mut c = corr();
        c.push(&kernel(id::TP_NETIF_RECEIVE_SKB, 1_000, 0xa, fp));
        c.push(&end(2_000, 0xa, fp));
        c.push(&user(id::UPROBE_BASE, 2_000 + 60 * MS, fp, 5, 1));
        let out = c.finish();
        assert_eq!(out.len(), 2, "{out:?}");
    }

    #[test]
    fn a_batch_hop_is_placed_by_time_on_the_waiting_packets_only() {
        let mut c = corr();
        c.set_probe_name(id::UPROBE_BASE + 2, "vpp:af_packet_input_node_fn_hsw");
        // Two packets copied into an AF_PACKET ring (skbs freed) ...
        for (skb, fp, t) in [(0xa, 1, 1_000), (0xb, 2, 2_000)] {
            c.push(&kernel(id::TP_NETIF_RECEIVE_SKB, t, skb, fp));
            c.push(&end(t + 100, skb, fp));
        }
        // ... one still live in the kernel, not waiting for user space ...
        c.push(&kernel(id::TP_NET_DEV_START_XMIT, 2_500, 0xc, 3));
        // ... and one that arrived after the batch call.
        c.push(&user(id::UPROBE_BASE + 2, 3_000, 0, 9, 2));
        c.push(&kernel(id::TP_NETIF_RECEIVE_SKB, 4_000, 0xd, 4));
        c.push(&end(4_100, 0xd, 4));
        let out = c.finish();
        let with_batch: Vec<_> = out
            .iter()
            .filter(|t| t.hops.iter().any(|h| h.probe.starts_with("vpp:")))
            .collect();
        assert_eq!(with_batch.len(), 2, "{out:#?}");
        for t in with_batch {
            let h = t.hops.iter().find(|h| h.probe.starts_with("vpp:")).unwrap();
            assert!(h.by_time);
            assert_eq!(h.batch, Some(2));
        }
    }

    #[test]
    fn a_batch_hop_with_nothing_waiting_is_unattached() {
        let mut c = corr();
        c.push(&user(id::UPROBE_BASE, 5 * MS, 0, 9, 3));
        assert!(c.finish().is_empty());
        assert_eq!(c.event_counts().2, 1);
    }

    #[test]
    fn calls_placed_by_time_do_not_keep_a_packet_open_for_later_calls() {
        // ovs-vswitchd returns from poll every few milliseconds: each
        // return used to renew the window for the next, and one packet
        // gathered seconds of them.
        let mut c = corr();
        c.set_probe_name(id::UPROBE_BASE + 2, "ovs:poll%return");
        c.push(&kernel(id::TP_NETIF_RECEIVE_SKB, 1_000, 0xa, 7));
        c.push(&end(2_000, 0xa, 7));
        for i in 1..=40u64 {
            c.push(&user(id::UPROBE_BASE + 2, i * 10 * MS, 0, 9, 1));
        }
        let out = c.finish();
        assert_eq!(out.len(), 1, "{out:#?}");
        let polls = out[0].hops.iter().filter(|h| h.by_time).count();
        // The calls at 10, 20, 30, 40 and 50 ms are within the 50 ms
        // window of the free (at 2 us); later ones are not.
        assert_eq!(polls, 5, "{:#?}", out[0].hops);
    }
}

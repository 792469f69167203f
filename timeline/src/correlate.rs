//! The aggregator: raw hop events in, one [`Timeline`] per packet out.
//!
//! # Packet identity (see DESIGN.md)
//!
//! - **skb life.** An skb address is one packet from its first event until
//!   an event with [`flags::END`] (kfree_skb, consume_skb) or a
//!   [`id::TCP_QUEUE_RCV`] or [`id::TCP_ADD_BACKLOG`] event (queued to a
//!   socket or its backlog: the packet arrived; tcp_queue_rcv's tracepoint
//!   stand-in, tcp:tcp_probe, carries END).
//! - **Clones.** An unknown skb address whose `head` is the head of a live
//!   skb is a clone and joins that skb's packet.
//! - **Reuse.** After an END the address is free; a later event for it
//!   starts a new packet. An event for a live address with a different head
//!   *and* a different fingerprint means the old life ended unseen (lost
//!   END): the old packet is closed as incomplete and a new one starts. (A
//!   different head with the same fingerprint is `pskb_expand_head`: same
//!   packet.) So does a MATCH (the filter device saw the address) whose
//!   fingerprint differs from the one the kernel tracked for it: the kernel
//!   frees some skbs where no probe fires (TCP's backlog coalescing of pure
//!   ACKs) and the slab hands skb and head to the flow's next packet. The
//!   hops the address had with those bytes before the MATCH move to the new
//!   packet. Before any MATCH, a fingerprint change that keeps the flow
//!   (addresses, ports) but not the packet (IP id, TCP seq/ack) is the
//!   flow's next packet too ([`probes::fingerprint::Identity`]); other
//!   changes are the same packet (NAT, decapsulation).
//! - **Fingerprint join.** An unknown skb whose non-zero fingerprint equals
//!   that of a packet that is still open, or whose skbs all ended less than
//!   `join_window_ns` ago, joins that packet: a packet that goes through an
//!   AF_PACKET forwarder and comes back as a new skb stays one timeline.
//! - **Out of order.** Events come nearly in time order. An event for an
//!   address that ended, with a timestamp *before* that END, belongs to the
//!   life that ended (kept until its packet is emitted). Hops are sorted by
//!   timestamp when a timeline is emitted.
//! - **Emission** ([`Correlator::poll`]): a packet whose skbs all ended is
//!   held `join_window_ns` after its last END, then emitted `complete`; a
//!   packet with no event for `timeout_ns` is emitted incomplete.
//! - **Not packets.** [`flags::NO_SKB`] events (packet_sendmsg) are counted
//!   per probe and not made into timelines: nothing ties them to one packet
//!   reliably. An END event for an skb nobody saw before, that is not a
//!   drop and joins nothing (e.g. the consume_skb of a packet whose life
//!   ended at tcp_queue_rcv, long after), is counted as unattached; a drop
//!   seen only at kfree_skb still makes a one-hop timeline.
//!
//! # Use
//!
//! ```
//! use timeline::{Correlator, CorrelatorConfig};
//! let mut c = Correlator::new(CorrelatorConfig::default());
//! # let records: Vec<Vec<u8>> = Vec::new();
//! for rec in &records {
//!     if let Ok(ev) = timeline::decode::decode(rec) {
//!         c.push(&ev);
//!     }
//! }
//! // Periodically (e.g. every 100 ms), with CLOCK_MONOTONIC now:
//! c.note_lost(probes::id::VETH_XMIT, 0);
//! for t in c.poll(1_000_000_000) { /* sink.timeline(&t) */ let _ = t; }
//! // On exit:
//! let rest = c.finish();
//! let summary = c.summary();
//! # let _ = (rest, summary);
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};

use probes::fingerprint::Identity;
use probes::{CAPTURE_LEN, Event, flags, id, method};

use crate::decode::cstr;
use crate::fmt::{mono_to_wall_ns, write_rfc3339_ns};
use crate::model::{Hop, ProbeCount, Summary, Timeline};
use crate::names::ProbeNames;
use crate::stats::Stats;
use crate::summarize::summarize_into;

/// Settings of a [`Correlator`].
#[derive(Clone, Debug)]
pub struct CorrelatorConfig {
    /// A packet with no event for this long is emitted as incomplete. Default 2 s.
    pub timeout_ns: u64,
    /// How long a packet whose skbs all ended stays open for a fingerprint
    /// join before it is emitted complete. Default 50 ms.
    pub join_window_ns: u64,
    /// CLOCK_REALTIME - CLOCK_MONOTONIC in ns, for `wall_start`.
    pub mono_to_realtime_ns: i64,
    /// Drop reason number -> name (BTF `enum skb_drop_reason`); a reason
    /// missing here is shown as its number.
    pub drop_reasons: HashMap<u32, String>,
    /// Probe id -> name; kernel probes are named by default, uprobes are
    /// added by the caller.
    pub probe_names: ProbeNames,
    /// Emit only packets with a [`flags::MATCH`] event, i.e. seen where the
    /// filter chose them. For `--sample`: an skb address freed where no probe
    /// looks can carry a packet the sample leaves out for a few hops before
    /// it reaches DEV (where the kernel stops following it); those hops make
    /// no packet of their own.
    pub matched_only: bool,
}

impl Default for CorrelatorConfig {
    fn default() -> Self {
        Self {
            timeout_ns: 2_000_000_000,
            join_window_ns: 50_000_000,
            mono_to_realtime_ns: 0,
            drop_reasons: HashMap::new(),
            probe_names: ProbeNames::default(),
            matched_only: false,
        }
    }
}

/// Keys are kernel addresses, packet ids and fingerprints: already well
/// spread in their middle bits, so one multiply-xorshift is enough and much
/// cheaper than SipHash on the per-event path. Not exposed to untrusted keys
/// that could be chosen to collide.
#[derive(Default, Clone, Copy)]
struct U64Hasher(u64);

impl Hasher for U64Hasher {
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^ (h >> 32)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

type FastMap<V> = HashMap<u64, V, BuildHasherDefault<U64Hasher>>;

/// A live skb address.
#[derive(Clone, Copy, PartialEq, Eq)]
struct LiveSkb {
    pkt: u64,
    head: u64,
    fp: u64,
    /// The fingerprint the kernel keeps for this address (set where the
    /// address was first followed or last flagged MATCH): the kernel
    /// compares against it when it flags MATCH, so user space must too.
    match_fp: u64,
    /// The ethertype last seen (0: unknown).
    proto: u16,
}

/// An address whose life ended, kept while its packet is held so late
/// (reordered) events of that life still find it.
#[derive(Clone, Copy)]
struct EndedSkb {
    pkt: u64,
    end_ts: u64,
}

/// Live skbs sharing one `head` (a packet and its clones).
#[derive(Clone, Copy)]
struct HeadRef {
    pkt: u64,
    refs: u32,
}

/// An event as a packet keeps it until it is emitted: the fields a hop
/// shows, and where its packet bytes are in the packet's `bytes`. Half the
/// size of an [`Event`], whose 128-byte data area most hops leave empty
/// (the kernel sends the bytes where an skb is first seen): the held
/// packets were the reader's largest memory traffic.
#[derive(Clone, Copy)]
struct Rec {
    ts_ns: u64,
    skb: u64,
    head: u64,
    fingerprint: u64,
    pid: u32,
    cpu: u32,
    ifindex: u32,
    netns: u32,
    len: u32,
    reason: u32,
    /// Offset of the packet bytes in `Packet::bytes` (`cap_len` of them).
    data_at: u32,
    probe: u16,
    protocol: u16,
    cap_len: u16,
    method: u8,
    flags: u8,
    comm: [u8; 16],
    dev: [u8; 16],
}

impl Rec {
    fn data<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        let at = self.data_at as usize;
        bytes
            .get(at..at + self.cap_len as usize)
            .unwrap_or_default()
    }

    /// The event again (for hops that move to another packet).
    fn event(&self, bytes: &[u8]) -> Event {
        let mut data = [0u8; CAPTURE_LEN];
        let d = self.data(bytes);
        data[..d.len()].copy_from_slice(d);
        Event {
            version: probes::EVENT_VERSION,
            probe: self.probe,
            method: self.method,
            flags: self.flags,
            cap_len: d.len() as u16,
            ts_ns: self.ts_ns,
            skb: self.skb,
            head: self.head,
            fingerprint: self.fingerprint,
            pid: self.pid,
            tid: 0,
            cpu: self.cpu,
            ifindex: self.ifindex,
            netns: self.netns,
            len: self.len,
            mark: 0,
            reason: self.reason,
            protocol: self.protocol,
            wire_len: probes::wire_len(d.len()) as u16,
            _pad: [0; 4],
            comm: self.comm,
            dev: self.dev,
            data,
        }
    }
}

struct Packet {
    /// The packet id timelines show (handles index `Correlator::packets`).
    id: u64,
    events: Vec<Rec>,
    /// The packet bytes of `events`, back to back.
    bytes: Vec<u8>,
    /// Live skb addresses of this packet.
    live: u32,
    /// Latest END timestamp once `live` dropped to 0.
    ended_at: Option<u64>,
    /// Latest event timestamp (for the timeout).
    last_ts: u64,
    /// Earliest event timestamp (emission order).
    first_ts: u64,
    /// An skb's end was inferred, not seen.
    end_unseen: bool,
    lost: bool,
    /// Addresses, heads and fingerprints this packet registered, to clean
    /// the indexes when it is emitted.
    skbs: Vec<u64>,
    heads: Vec<u64>,
    fps: Vec<u64>,
}

#[derive(Clone, Copy, Default)]
struct ProbeCounter {
    events: u64,
    lost: u64,
    method: u8,
    seen: bool,
}

/// Correlates hop events into per-packet timelines. Single-threaded; feed
/// it from the one task that drains the ring buffer.
pub struct Correlator {
    cfg: CorrelatorConfig,
    next_id: u64,
    packets: Slots<Packet>,
    skbs: FastMap<LiveSkb>,
    ended: FastMap<EndedSkb>,
    heads: FastMap<HeadRef>,
    fps: FastMap<u64>,
    probes: Vec<ProbeCounter>,
    events: u64,
    no_skb: u64,
    unattached: u64,
    latest_ts: u64,
    stats: Stats,
    /// Emitted packets' buffers, reused by new packets.
    spare: Vec<Packet>,
    /// The timeline `poll_each` builds every packet in.
    scratch: Timeline,
    /// `poll`'s list of packets to emit (first timestamp, id, handle),
    /// kept for its capacity.
    done: Vec<(u64, u64, Handle)>,
}

/// Removes `key` from `map` if its value satisfies `pred`.
fn remove_if<V>(map: &mut FastMap<V>, key: u64, pred: impl FnOnce(&V) -> bool) {
    if let std::collections::hash_map::Entry::Occupied(e) = map.entry(key)
        && pred(e.get())
    {
        e.remove();
    }
}

fn set(s: &mut String, v: &str) {
    s.clear();
    s.push_str(v);
}

/// Hops kept per packet; later ones are counted as lost for that timeline.
pub const MAX_HOPS: usize = 1024;

/// Packet buffers kept for reuse (about 2 KiB each). Following iperf3,
/// some 4,000 packets are emitted per poll; keeping fewer than that made
/// every poll free thousands of buffers that the next packets allocated
/// again (a tenth of the reader's profile in malloc and free, though the
/// reader's CPU per event did not drop measurably without it).
const SPARE_PACKETS: usize = 8192;

impl Correlator {
    pub fn new(cfg: CorrelatorConfig) -> Self {
        Self {
            cfg,
            next_id: 1,
            packets: Slots::default(),
            skbs: FastMap::default(),
            ended: FastMap::default(),
            heads: FastMap::default(),
            fps: FastMap::default(),
            probes: Vec::new(),
            events: 0,
            no_skb: 0,
            unattached: 0,
            latest_ts: 0,
            stats: Stats::default(),
            spare: Vec::new(),
            scratch: Timeline::default(),
            done: Vec::new(),
        }
    }

    pub fn config(&self) -> &CorrelatorConfig {
        &self.cfg
    }

    /// Names probe `id` from now on (uprobes), see [`ProbeNames::set`].
    pub fn set_probe_name(&mut self, id: u16, name: impl Into<String>) {
        self.cfg.probe_names.set(id, name);
        self.stats.forget_id(id);
    }

    fn counter(&mut self, probe: u16) -> &mut ProbeCounter {
        let i = probe as usize;
        if i >= self.probes.len() {
            self.probes.resize(i + 1, ProbeCounter::default());
        }
        &mut self.probes[i]
    }

    /// Adds one event. Cheap: no allocation unless a packet starts or its
    /// hop list grows.
    pub fn push(&mut self, ev: &Event) {
        self.events += 1;
        let c = self.counter(ev.probe);
        c.events += 1;
        c.method = ev.method;
        c.seen = true;
        if ev.skb == 0 && ev.flags & flags::NO_SKB == 0 && ev.method == method::UPROBE {
            // A hop in a userspace datapath (user.rs).
            self.push_user(ev);
            return;
        }
        if ev.flags & flags::NO_SKB != 0 || ev.skb == 0 {
            self.no_skb += 1;
            return;
        }
        self.latest_ts = self.latest_ts.max(ev.ts_ns);
        // Queued to a socket: the receive queue, or the backlog of a socket
        // its owner holds (where the segment is often merged into the one
        // before it and freed without a tracepoint).
        let ends = ev.flags & flags::END != 0
            || ev.probe == id::TCP_QUEUE_RCV
            || ev.probe == id::TCP_ADD_BACKLOG;

        let mut moved = Vec::new();
        // A live address.
        if let Some(l) = self.skbs.get(&ev.skb).copied() {
            // The kernel flags MATCH when the filter device sees a tracked
            // address carry a different packet: its old life ended where no
            // probe looks (TCP coalescing frees skbs without a tracepoint),
            // and slab reuse may even hand out the same head.
            // Unless only a length changed (GRO or reassembly grew the
            // packet in place): same flow and same packet halves.
            let rematched = ev.flags & flags::MATCH != 0
                && ev.fingerprint != 0
                && l.match_fp != 0
                && ev.fingerprint != l.match_fp
                && self
                    .identities(&l, l.match_fp, ev)
                    .is_none_or(|(a, b)| a != b);
            // The same before any MATCH: the flow's next packet in the same
            // skb (it may reach DEV only as a copy, through an AF_PACKET
            // forwarder, and never flag this address). NAT or
            // decapsulation would change the flow, not only the packet.
            let next_of_flow = !rematched
                && ev.fingerprint != 0
                && l.fp != 0
                && ev.fingerprint != l.fp
                && self
                    .identities(&l, l.fp, ev)
                    .is_some_and(|(a, b)| a.flow == b.flow && a.packet != b.packet);
            // An address first seen without a fingerprint (headers still in
            // page fragments) that gets one once they are pulled into a new
            // head is the same packet.
            let got_fp = l.fp == 0 && ev.fingerprint != 0;
            // An address that went from IP to not IP (a netlink skb, say) or
            // from a known non-IP protocol to IP (ARP, then a ping): the old
            // packet was freed where no probe looks and slab reuse handed
            // out the same skb and head. Not headers that became readable.
            let was_ip = l.fp != 0 || is_ip(l.proto);
            let ip_now = ev.fingerprint != 0 || is_ip(ev.protocol);
            // IPv4 to IPv6 or back, both parsed (fingerprinted): no packet
            // changes version in place short of NAT64, rare next to skbs
            // reused after a free no probe saw.
            let family_changed = if was_ip {
                !ip_now
                    || (l.fp != 0
                        && ev.fingerprint != 0
                        && is_ip(ev.protocol)
                        && is_ip(l.proto)
                        && ev.protocol != l.proto)
            } else {
                l.proto != 0 && ip_now
            };
            let reused = rematched
                || next_of_flow
                || family_changed
                || (ev.head != 0
                    && l.head != 0
                    && ev.head != l.head
                    && !got_fp
                    && !(ev.fingerprint != 0 && ev.fingerprint == l.fp));
            if !reused {
                if ev.head != l.head && ev.head != 0 {
                    // pskb_expand_head: same packet, new buffer.
                    self.unref_head(l.head);
                    self.ref_head(ev.head, l.pkt);
                }
                let mut n = l;
                n.head = ev.head;
                if ev.protocol != 0 {
                    n.proto = ev.protocol;
                }
                if ev.fingerprint != 0 {
                    n.fp = ev.fingerprint;
                    if ev.flags & flags::MATCH != 0 || n.match_fp == 0 {
                        n.match_fp = ev.fingerprint;
                    }
                }
                // Most hops change nothing: no second lookup for them.
                if n != l
                    && let Some(s) = self.skbs.get_mut(&ev.skb)
                {
                    *s = n;
                }
                self.append(l.pkt, ev);
                if ends {
                    self.end_skb(ev.skb, ev.ts_ns, false);
                }
                return;
            }
            // Hops this address had since it began carrying these bytes,
            // before the filter device told us: they are the new packet's.
            if rematched {
                self.take_hops_of(l.pkt, ev.skb, ev.fingerprint, l.match_fp, &mut moved);
            }
            // The old life ended without us seeing it.
            self.end_skb(ev.skb, ev.ts_ns, true);
            // This event starts the new life: it is not a late event of the
            // life just ended (whose end we date to this very event).
            self.ended.remove(&ev.skb);
        }

        // A late event of a life that already ended.
        if let Some(e) = self.ended.get(&ev.skb).copied()
            && ev.ts_ns <= e.end_ts
            && self.packets.contains_key(&e.pkt)
        {
            self.append(e.pkt, ev);
            return;
        }

        // A clone of a live skb, else a copy of a recent packet, else new.
        // A clone carries the same bytes: a head shared with a packet of
        // other bytes is a buffer reused after a free no probe saw.
        let joined = self
            .heads
            .get(&ev.head)
            .filter(|_| ev.head != 0)
            .map(|h| h.pkt)
            .filter(|pkt| {
                let p = self.packets.get(pkt);
                if ev.fingerprint == 0 {
                    // No fingerprint: a clone whose headers are not linear
                    // (still IP), or not IP at all, which no clone of an IP
                    // packet can be (a netlink skb in a reused buffer).
                    is_ip(ev.protocol) || p.is_none_or(|p| p.fps.is_empty())
                } else {
                    // An IP event sharing the head of a non-IP packet: the
                    // buffer was freed where no probe looks and reused.
                    p.is_none_or(|p| {
                        (p.fps.is_empty() && !p.events.iter().any(shows_non_ip))
                            || p.fps.contains(&ev.fingerprint)
                    })
                }
            })
            .or_else(|| self.fp_join(ev));
        let pkt = match joined {
            Some(p) => p,
            None if ends && ev.flags & flags::DROP == 0 => {
                self.unattached += 1;
                return;
            }
            None => self.new_packet(),
        };
        for e in &moved {
            self.append(pkt, e);
        }
        self.append(pkt, ev);
        if ends {
            if let Some(p) = self.packets.get_mut(&pkt) {
                p.skbs.push(ev.skb);
                if p.live == 0 {
                    p.ended_at = Some(p.ended_at.unwrap_or(0).max(ev.ts_ns));
                }
            }
            self.ended.insert(
                ev.skb,
                EndedSkb {
                    pkt,
                    end_ts: ev.ts_ns,
                },
            );
        } else {
            self.skbs.insert(
                ev.skb,
                LiveSkb {
                    pkt,
                    head: ev.head,
                    fp: ev.fingerprint,
                    match_fp: ev.fingerprint,
                    proto: ev.protocol,
                },
            );
            if ev.head != 0 {
                self.ref_head(ev.head, pkt);
            }
            if let Some(p) = self.packets.get_mut(&pkt) {
                p.live += 1;
                p.ended_at = None;
                p.skbs.push(ev.skb);
            }
        }
    }

    /// The identities (see [`probes::fingerprint::Identity`]) of the bytes
    /// with fingerprint `fp` that live address `l` carried, from its last
    /// event that captured them, and of `ev`'s. Runs only when an
    /// address's fingerprint changes.
    fn identities(&self, l: &LiveSkb, fp: u64, ev: &Event) -> Option<(Identity, Identity)> {
        let p = self.packets.get(&l.pkt)?;
        let prev = p
            .events
            .iter()
            .rev()
            .find(|e| e.skb == ev.skb && e.fingerprint == fp && e.cap_len > 0)?;
        Some((
            identity(prev.data(&p.bytes), prev.flags, prev.protocol)?,
            identity(captured(ev), ev.flags, ev.protocol)?,
        ))
    }

    /// Moves out of packet `pkt` the events of address `skb` with
    /// fingerprint `fp` that came after its last event with `tracked_fp`
    /// (none without such an event), and forgets `fp` as one of the
    /// packet's fingerprints if no event keeps it.
    fn take_hops_of(&mut self, pkt: u64, skb: u64, fp: u64, tracked_fp: u64, out: &mut Vec<Event>) {
        let Some(p) = self.packets.get_mut(&pkt) else {
            return;
        };
        // Only hops after one the kernel's tracked bytes vouch for: the old
        // packet keeps at least that one.
        let Some(last_tracked) = p
            .events
            .iter()
            .rposition(|e| e.skb == skb && e.fingerprint == tracked_fp)
        else {
            return;
        };
        let mut i = last_tracked + 1;
        while i < p.events.len() {
            if p.events[i].skb == skb && p.events[i].fingerprint == fp {
                let e = p.events.remove(i);
                out.push(e.event(&p.bytes));
            } else {
                i += 1;
            }
        }
        if out.is_empty() {
            return;
        }
        p.last_ts = p.events.iter().map(|e| e.ts_ns).max().unwrap_or(p.first_ts);
        if !p.events.iter().any(|e| e.fingerprint == fp) {
            p.fps.retain(|&f| f != fp);
            if self.fps.get(&fp) == Some(&pkt) {
                self.fps.remove(&fp);
            }
        }
    }

    fn fp_join(&self, ev: &Event) -> Option<u64> {
        if ev.fingerprint == 0 {
            return None;
        }
        let pkt = *self.fps.get(&ev.fingerprint)?;
        let p = self.packets.get(&pkt)?;
        match p.ended_at {
            Some(end) if p.live == 0 && ev.ts_ns > end.saturating_add(self.cfg.join_window_ns) => {
                None
            }
            _ => Some(pkt),
        }
    }

    fn new_packet(&mut self) -> Handle {
        let id = self.next_id;
        self.next_id += 1;
        let mut p = self.spare.pop().unwrap_or_else(|| Packet {
            id: 0,
            events: Vec::with_capacity(8),
            bytes: Vec::with_capacity(2 * CAPTURE_LEN),
            live: 0,
            ended_at: None,
            last_ts: 0,
            first_ts: u64::MAX,
            end_unseen: false,
            lost: false,
            skbs: Vec::with_capacity(2),
            heads: Vec::with_capacity(1),
            fps: Vec::with_capacity(1),
        });
        p.id = id;
        self.packets.insert(p)
    }

    fn append(&mut self, pkt: u64, ev: &Event) {
        let Some(p) = self.packets.get_mut(&pkt) else {
            return;
        };
        // A packet that loops (or an skb that lives for ever) must not grow
        // without bound: keep the first MAX_HOPS hops, and say the timeline
        // is missing some.
        if p.events.len() < MAX_HOPS {
            let data = captured(ev);
            let data_at = p.bytes.len() as u32;
            p.bytes.extend_from_slice(data);
            p.events.push(Rec {
                ts_ns: ev.ts_ns,
                skb: ev.skb,
                head: ev.head,
                fingerprint: ev.fingerprint,
                pid: ev.pid,
                cpu: ev.cpu,
                ifindex: ev.ifindex,
                netns: ev.netns,
                len: ev.len,
                reason: ev.reason,
                data_at,
                probe: ev.probe,
                protocol: ev.protocol,
                cap_len: data.len() as u16,
                method: ev.method,
                flags: ev.flags,
                comm: ev.comm,
                dev: ev.dev,
            });
        } else {
            p.lost = true;
        }
        p.last_ts = p.last_ts.max(ev.ts_ns);
        p.first_ts = p.first_ts.min(ev.ts_ns);
        // Index each fingerprint once per packet: one hash insert per
        // packet, not per event.
        if ev.fingerprint != 0 && !p.fps.contains(&ev.fingerprint) {
            p.fps.push(ev.fingerprint);
            self.fps.insert(ev.fingerprint, pkt);
        }
    }

    fn ref_head(&mut self, head: u64, pkt: u64) {
        let e = self.heads.entry(head).or_insert(HeadRef { pkt, refs: 0 });
        if e.pkt != pkt {
            // A stale head of another packet: the buffer was reused.
            *e = HeadRef { pkt, refs: 0 };
        }
        e.refs += 1;
        if let Some(p) = self.packets.get_mut(&pkt)
            && !p.heads.contains(&head)
        {
            p.heads.push(head);
        }
    }

    fn unref_head(&mut self, head: u64) {
        if let Some(h) = self.heads.get_mut(&head) {
            h.refs = h.refs.saturating_sub(1);
            if h.refs == 0 {
                self.heads.remove(&head);
            }
        }
    }

    /// Ends the life of live address `skb` at `ts`.
    fn end_skb(&mut self, skb: u64, ts: u64, unseen: bool) {
        let Some(l) = self.skbs.remove(&skb) else {
            return;
        };
        if l.head != 0 {
            self.unref_head(l.head);
        }
        // An inferred end has no known time: nothing can be placed before
        // it, and the packet's own last event stands for it.
        if !unseen {
            self.ended.insert(
                skb,
                EndedSkb {
                    pkt: l.pkt,
                    end_ts: ts,
                },
            );
        }
        if let Some(p) = self.packets.get_mut(&l.pkt) {
            p.live = p.live.saturating_sub(1);
            p.end_unseen |= unseen;
            let ts = if unseen { p.last_ts } else { ts };
            if p.live == 0 {
                p.ended_at = Some(p.ended_at.unwrap_or(0).max(ts));
            }
        }
    }

    /// Registers an attached probe and its method (a `probes::method`
    /// code), so the summary lists it even if it never fires: a probe with
    /// 0 events is worth seeing. Optional.
    pub fn note_attached(&mut self, probe: u16, method: u8) {
        let c = self.counter(probe);
        c.method = method;
        c.seen = true;
    }

    /// Records a probe's cumulative lost-event counter (from the kernel's
    /// per-probe stats). When it grew since the last call, every packet
    /// still open (a live skb) is marked `lost_events`: the lost event may
    /// have been one of its hops. Call it before [`Correlator::poll`]; losses
    /// are attributed at the granularity of these calls.
    pub fn note_lost(&mut self, probe: u16, lost_total: u64) {
        let c = self.counter(probe);
        if lost_total > c.lost {
            c.lost = lost_total;
            c.seen = true;
            // Only packets with a live skb: one whose skbs all ended is
            // done, and marking every held packet would flag up to a join
            // window's worth of finished packets per loss.
            for p in self.packets.values_mut().filter(|p| p.live > 0) {
                p.lost = true;
            }
        }
    }

    /// Emits the packets that are done at monotonic time `now_ns`: ended
    /// and past the join window (complete), or silent for `timeout_ns`
    /// (incomplete). Sorted by start time. Every emitted timeline is also
    /// added to [`Correlator::summary`].
    ///
    /// Allocates each timeline; [`Correlator::poll_each`] does not.
    pub fn poll(&mut self, now_ns: u64) -> Vec<Timeline> {
        let mut out = Vec::new();
        self.poll_each(now_ns, |t| out.push(t.clone()));
        out
    }

    /// Like [`Correlator::poll`], but hands each timeline to `f` by
    /// reference, built in one buffer reused from packet to packet: the
    /// steady state allocates nothing per hop. The way to feed sinks:
    /// `c.poll_each(now, |t| if let Err(e) = sink.timeline(t) { ... })`.
    pub fn poll_each(&mut self, now_ns: u64, f: impl FnMut(&Timeline)) {
        let (timeout, join) = (self.cfg.timeout_ns, self.cfg.join_window_ns);
        let mut done = std::mem::take(&mut self.done);
        done.clear();
        done.extend(
            self.packets
                .iter()
                .filter(|(_, p)| match p.ended_at {
                    Some(end) if p.live == 0 => end.saturating_add(join) <= now_ns,
                    _ => p.last_ts.saturating_add(timeout) <= now_ns,
                })
                .map(|(h, p)| (p.first_ts, p.id, h)),
        );
        self.emit(&mut done, f);
        self.done = done;
    }

    /// Emits everything still open (packets whose skbs all ended are
    /// complete, the rest incomplete). For the end of a trace.
    pub fn finish(&mut self) -> Vec<Timeline> {
        let mut out = Vec::new();
        self.finish_each(|t| out.push(t.clone()));
        out
    }

    /// [`Correlator::finish`] through a callback, as [`Correlator::poll_each`].
    pub fn finish_each(&mut self, f: impl FnMut(&Timeline)) {
        let mut all: Vec<(u64, u64, Handle)> = self
            .packets
            .iter()
            .map(|(h, p)| (p.first_ts, p.id, h))
            .collect();
        self.emit(&mut all, f);
    }

    /// Packets currently open or held.
    pub fn open_packets(&self) -> usize {
        self.packets.len()
    }

    /// The highest event timestamp seen: a `now` for [`Correlator::poll`]
    /// when replaying a recording.
    pub fn latest_ts(&self) -> u64 {
        self.latest_ts
    }

    /// Emits packets `ids` = (first timestamp, id, handle), in that order.
    fn emit(&mut self, ids: &mut [(u64, u64, Handle)], mut f: impl FnMut(&Timeline)) {
        ids.sort_unstable();
        let mut t = std::mem::take(&mut self.scratch);
        for &(_, _, id) in ids.iter() {
            let Some(mut p) = self.packets.remove(&id) else {
                continue;
            };
            // One lookup each (entry, not get then remove): these indexes
            // are cold by the time a packet is emitted.
            for skb in &p.skbs {
                remove_if(&mut self.skbs, *skb, |l| l.pkt == id);
                remove_if(&mut self.ended, *skb, |e| e.pkt == id);
            }
            for h in &p.heads {
                remove_if(&mut self.heads, *h, |r| r.pkt == id);
            }
            for fp in &p.fps {
                remove_if(&mut self.fps, *fp, |&pkt| pkt == id);
            }
            if !self.cfg.matched_only || p.events.iter().any(|e| e.flags & flags::MATCH != 0) {
                self.build(p.id, &mut p, &mut t);
                self.stats.record_ids(&t, |i| p.events[i].probe);
                f(&t);
            }
            // Keep the buffers: a packet's hop list is kilobytes, and
            // allocating it afresh per packet costs more than the rest of
            // the per-packet work.
            if self.spare.len() < SPARE_PACKETS {
                p.events.clear();
                p.bytes.clear();
                p.skbs.clear();
                p.heads.clear();
                p.fps.clear();
                p.live = 0;
                p.ended_at = None;
                p.last_ts = 0;
                p.first_ts = u64::MAX;
                p.end_unseen = false;
                p.lost = false;
                self.spare.push(p);
            }
        }
        self.scratch = t;
    }

    /// The only place Strings are built: once per hop of an emitted
    /// packet, into `t`'s existing Strings and Vecs (reused by `poll_each`).
    fn build(&self, id: u64, p: &mut Packet, t: &mut Timeline) {
        p.events.sort_by_key(|e| e.ts_ns);
        let start = p.events.first().map_or(0, |e| e.ts_ns);
        let end = p.events.last().map_or(0, |e| e.ts_ns);
        let mut prev = start;
        // Dropped means the path ends in a drop; a copy dropped on the way
        // (the original of a frame an AF_PACKET forwarder took) keeps its
        // reason on its hop but does not mark the packet.
        let dropped = p.events.last().is_some_and(|e| e.flags & flags::DROP != 0);
        t.hops.truncate(p.events.len());
        for (i, e) in p.events.iter().enumerate() {
            if i == t.hops.len() {
                t.hops.push(Hop::default());
            }
            let h = &mut t.hops[i];
            let drop = e.flags & flags::DROP != 0;
            set(&mut h.probe, &self.cfg.probe_names.name(e.probe));
            set(&mut h.method, method::kind(e.method));
            set(&mut h.dev, cstr(&e.dev));
            set(&mut h.comm, cstr(&e.comm));
            h.ifindex = e.ifindex;
            h.netns = e.netns;
            h.cpu = e.cpu;
            h.pid = e.pid;
            h.ts_ns = e.ts_ns;
            h.delta_ns = e.ts_ns - prev;
            h.len = e.len;
            h.drop_reason = if drop {
                let mut r = h.drop_reason.take().unwrap_or_default();
                r.clear();
                match self.cfg.drop_reasons.get(&e.reason) {
                    Some(n) => r.push_str(n),
                    None => {
                        let _ = write!(r, "{}", e.reason);
                    }
                }
                Some(r)
            } else {
                None
            };
            h.data.clear();
            h.data.extend_from_slice(e.data(&p.bytes));
            // Where the bytes start: nothing to say for a hop without them.
            h.l2 = e.flags & flags::L2 != 0 && !h.data.is_empty();
            h.by_time = e.flags & user::BY_TIME != 0;
            h.batch = (e.method == method::UPROBE && e.reason > 0).then_some(e.reason);
            prev = e.ts_ns;
        }
        // The longest capture (the first of them): a hop that saw only the
        // linear Ethernet header of a fragmented skb says less.
        let longest = p.events.iter().map(|e| e.cap_len).max().unwrap_or(0);
        match p
            .events
            .iter()
            .find(|e| e.cap_len > 0 && e.cap_len == longest)
        {
            Some(e) => summarize_into(
                &mut t.summary,
                e.data(&p.bytes),
                e.flags & flags::L2 != 0,
                e.protocol,
            ),
            None => set(&mut t.summary, "no data captured"),
        }
        let fp = p
            .events
            .iter()
            .map(|e| e.fingerprint)
            .find(|&f| f != 0)
            .unwrap_or(0);
        // `0x{fp:016x}` without core::fmt, whose padding was a visible
        // part of the reader's profile at tens of thousands of packets a
        // second.
        let mut digits = [0u8; 16];
        // 8 bytes into 16 hex digits: the sizes match, so it cannot fail.
        let _ = hex::encode_to_slice(fp.to_be_bytes(), &mut digits);
        t.fingerprint.clear();
        t.fingerprint.push_str("0x");
        t.fingerprint
            .push_str(std::str::from_utf8(&digits).unwrap_or_default());
        t.wall_start.clear();
        write_rfc3339_ns(
            &mut t.wall_start,
            mono_to_wall_ns(start, self.cfg.mono_to_realtime_ns),
        );
        t.id = id;
        t.complete = p.live == 0 && p.ended_at.is_some() && !p.end_unseen;
        t.ended_unseen = p.end_unseen;
        t.lost_events = p.lost;
        t.dropped = dropped;
        t.start_ns = start;
        t.total_ns = end - start;
    }

    /// Events and lost events per probe, in probe id order.
    pub fn probe_counts(&self) -> Vec<ProbeCount> {
        self.probes
            .iter()
            .enumerate()
            .filter(|(_, c)| c.seen)
            .map(|(i, c)| ProbeCount {
                probe: self.cfg.probe_names.name(i as u16).into_owned(),
                method: method::kind(c.method).to_string(),
                events: c.events,
                lost: c.lost,
            })
            .collect()
    }

    /// Events pushed, NO_SKB events among them, and END events that joined
    /// no packet.
    pub fn event_counts(&self) -> (u64, u64, u64) {
        (self.events, self.no_skb, self.unattached)
    }

    /// The statistics of every timeline emitted so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The trace summary: emitted timelines plus per-probe event/lost counts.
    pub fn summary(&self) -> Summary {
        let mut s = self.stats.summary(self.probe_counts());
        s.events = self.events;
        s
    }
}

#[cfg(test)]
mod tests;

mod slots;
mod user;

use slots::{Handle, Slots};

/// The packet bytes an event carries.
fn captured(ev: &Event) -> &[u8] {
    &ev.data[..(ev.cap_len as usize).min(CAPTURE_LEN)]
}

/// The identity halves of an event's captured bytes.
fn identity(data: &[u8], fl: u8, protocol: u16) -> Option<Identity> {
    let (et, off, _) = crate::summarize::locate_l3(data, fl & flags::L2 != 0, protocol)?;
    probes::fingerprint::identity_from_l3(et, data.get(off..)?)
}

/// The event's captured bytes are of a protocol that is not IP (ARP). Only
/// real bytes count: an event without them may report a stale ethertype (an
/// AF_PACKET TX-ring skb before its headers are linear).
fn shows_non_ip(e: &Rec) -> bool {
    e.fingerprint == 0 && e.cap_len > 0 && e.protocol != 0 && !is_ip(e.protocol)
}

fn is_ip(ethertype: u16) -> bool {
    ethertype == 0x0800 || ethertype == 0x86dd
}

//! The ABI shared by skbtrace's eBPF programs and its user space.
//!
//! Everything here is `#[repr(C)]` with explicit padding so both sides agree
//! on the layout byte for byte; `EVENT_VERSION` changes whenever a layout does.
#![no_std]

pub mod fingerprint;

/// Bumped on any change to [`Event`] or [`Config`].
pub const EVENT_VERSION: u16 = 4;

/// Bytes of packet data copied into each event (from the L2 header when the
/// skb has one, else from the L3 header).
pub const CAPTURE_LEN: usize = 128;

/// Bytes of events in one ring-buffer record at most: the kernel writes
/// events in per-CPU batches, and a record is one or more events back to
/// back, each [`Event::wire_len`] bytes long.
pub const BATCH_BYTES: usize = 4096;
const _: () = assert!(BATCH_BYTES.is_power_of_two());

/// An event's bytes before `data`: what every event in a record carries.
pub const EVENT_HEADER: usize = core::mem::offset_of!(Event, data);

/// The bytes an event takes in a record with `cap_len` bytes of packet
/// data: the header and the data rounded up to 8, so every event in a
/// record starts 8-byte aligned.
pub const fn wire_len(cap_len: usize) -> usize {
    EVENT_HEADER + ((cap_len + 7) & !7)
}

/// Number of slots in the per-probe statistics array. Probe ids are below it.
pub const MAX_PROBES: u32 = 128;

/// How an event's program was attached.
pub mod method {
    pub const FENTRY: u8 = 1;
    pub const KPROBE: u8 = 2;
    pub const TP_BTF: u8 = 3;
    pub const RAW_TP: u8 = 4;
    pub const UPROBE: u8 = 5;

    /// The method as a user reads it (tp_btf and raw_tracepoint are both
    /// "tracepoint"; `detail` tells them apart).
    pub const fn kind(m: u8) -> &'static str {
        match m {
            FENTRY => "fentry",
            KPROBE => "kprobe",
            TP_BTF | RAW_TP => "tracepoint",
            UPROBE => "uprobe",
            _ => "unknown",
        }
    }

    pub const fn detail(m: u8) -> &'static str {
        match m {
            FENTRY => "fentry",
            KPROBE => "kprobe",
            TP_BTF => "tp_btf",
            RAW_TP => "raw_tracepoint",
            UPROBE => "uprobe",
            _ => "unknown",
        }
    }
}

/// Bits of [`Event::flags`].
pub mod flags {
    /// `data` starts at the Ethernet header; otherwise at the L3 header.
    pub const L2: u8 = 1 << 0;
    /// The probe fired with no skb (e.g. packet_sendmsg): only task fields are valid.
    pub const NO_SKB: u8 = 1 << 1;
    /// This event ends the skb's life (kfree_skb, consume_skb).
    pub const END: u8 = 1 << 2;
    /// This event is the first one of a packet: the filter matched here.
    pub const MATCH: u8 = 1 << 3;
    /// The skb is a drop (kfree_skb); `reason` holds the drop reason.
    pub const DROP: u8 = 1 << 4;
    /// The packet bytes were left out (`cap_len` 0): an earlier event of
    /// this skb carried the same packet (same fingerprint) with its bytes.
    /// Unless `Config::every_hop_bytes` is set, the programs copy bytes
    /// only where an skb is first followed or its fingerprint changes.
    pub const ELIDED: u8 = 1 << 5;
}

/// Probe ids: one per attach target (a kernel function or a tracepoint).
/// The user-space catalog maps logical points onto these.
pub mod id {
    // Kernel functions (fentry or kprobe).
    pub const VETH_XMIT: u16 = 0;
    pub const NETIF_RX: u16 = 1;
    pub const __NETIF_RX: u16 = 2;
    pub const BR_HANDLE_FRAME: u16 = 3;
    pub const __NETIF_RECEIVE_SKB_CORE: u16 = 4;
    pub const TCP_QUEUE_RCV: u16 = 5;
    pub const __DEV_QUEUE_XMIT: u16 = 6;
    pub const DEV_HARD_START_XMIT: u16 = 7;
    pub const IP_RCV: u16 = 8;
    pub const IP_OUTPUT: u16 = 9;
    pub const IP_FINISH_OUTPUT2: u16 = 10;
    pub const PACKET_RCV: u16 = 11;
    pub const TPACKET_RCV: u16 = 12;
    pub const PACKET_SENDMSG: u16 = 13;
    pub const BR_FORWARD: u16 = 14;
    pub const IP_LOCAL_DELIVER: u16 = 15;
    pub const TCP_V4_RCV: u16 = 16;
    pub const ICMP_RCV: u16 = 17;
    pub const UDP_RCV: u16 = 18;
    pub const IP_FORWARD: u16 = 19;
    pub const TCP_ADD_BACKLOG: u16 = 20;
    pub const FUNC_COUNT: u16 = 21;

    // Tracepoints (tp_btf or raw_tracepoint).
    pub const TP_NET_DEV_QUEUE: u16 = 32;
    pub const TP_NET_DEV_START_XMIT: u16 = 33;
    pub const TP_NET_DEV_XMIT: u16 = 34;
    pub const TP_NETIF_RX: u16 = 35;
    pub const TP_NETIF_RECEIVE_SKB: u16 = 36;
    pub const TP_KFREE_SKB: u16 = 37;
    pub const TP_CONSUME_SKB: u16 = 38;
    pub const TP_TCP_PROBE: u16 = 39;
    pub const TP_END: u16 = 40;

    /// Userspace probes (uprobes) start here.
    pub const UPROBE_BASE: u16 = 48;

    /// The kernel function or tracepoint a probe id stands for.
    pub const fn name(id: u16) -> Option<&'static str> {
        Some(match id {
            VETH_XMIT => "veth_xmit",
            NETIF_RX => "netif_rx",
            __NETIF_RX => "__netif_rx",
            BR_HANDLE_FRAME => "br_handle_frame",
            __NETIF_RECEIVE_SKB_CORE => "__netif_receive_skb_core",
            TCP_QUEUE_RCV => "tcp_queue_rcv",
            __DEV_QUEUE_XMIT => "__dev_queue_xmit",
            DEV_HARD_START_XMIT => "dev_hard_start_xmit",
            IP_RCV => "ip_rcv",
            IP_OUTPUT => "ip_output",
            IP_FINISH_OUTPUT2 => "ip_finish_output2",
            PACKET_RCV => "packet_rcv",
            TPACKET_RCV => "tpacket_rcv",
            PACKET_SENDMSG => "packet_sendmsg",
            BR_FORWARD => "br_forward",
            IP_LOCAL_DELIVER => "ip_local_deliver",
            TCP_V4_RCV => "tcp_v4_rcv",
            ICMP_RCV => "icmp_rcv",
            UDP_RCV => "udp_rcv",
            IP_FORWARD => "ip_forward",
            TCP_ADD_BACKLOG => "tcp_add_backlog",
            TP_NET_DEV_QUEUE => "net:net_dev_queue",
            TP_NET_DEV_START_XMIT => "net:net_dev_start_xmit",
            TP_NET_DEV_XMIT => "net:net_dev_xmit",
            TP_NETIF_RX => "net:netif_rx",
            TP_NETIF_RECEIVE_SKB => "net:netif_receive_skb",
            TP_KFREE_SKB => "skb:kfree_skb",
            TP_CONSUME_SKB => "skb:consume_skb",
            TP_TCP_PROBE => "tcp:tcp_probe",
            _ => return None,
        })
    }
}

/// Struct field offsets read from BTF in user space (no CO-RE in Rust eBPF).
/// A value of `u32::MAX` means "not present on this kernel".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offsets {
    pub skb_len: u32,
    pub skb_data: u32,
    pub skb_head: u32,
    pub skb_mac_header: u32,
    pub skb_network_header: u32,
    pub skb_transport_header: u32,
    pub skb_dev: u32,
    pub skb_protocol: u32,
    pub skb_mark: u32,
    pub dev_ifindex: u32,
    pub dev_name: u32,
    pub dev_nd_net: u32,
    pub net_ns_inum: u32,
    /// sk_buff.data_len: bytes in page fragments (linear = len - data_len).
    pub skb_data_len: u32,
    /// task_struct.comm (16 bytes), read straight from the current task.
    pub task_comm: u32,
    pub _pad: u32,
}

/// Global configuration handed to the programs at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub version: u16,
    /// Non-zero: only packets first seen with this ifindex (in `filter_netns`) start a track.
    pub filter_enabled: u16,
    pub filter_ifindex: u32,
    /// netns inode number of the filter device.
    pub filter_netns: u32,
    /// Waiting bytes from which every event wakes the reader (a quarter of
    /// the ring): below it, only every 256 KiB crossed does.
    pub wake_all_bytes: u32,
    /// 0: the programs do all their work. Otherwise a [`stage`]: they stop
    /// after it and write no event (`bench/stages.sh` measures what each
    /// stage costs this way); [`stage::DECODE`] stops the reader instead.
    pub stop_after: u32,
    /// Non-zero: every event carries its packet bytes (a pcapng wants
    /// each hop's); otherwise see [`flags::ELIDED`].
    pub every_hop_bytes: u32,
    /// Follow one packet in this many, see [`sampled`]; 0 or 1: all.
    pub sample_every: u32,
    pub offsets: Offsets,
}

/// Whether `--sample N` follows the packet with fingerprint `fp`: one in
/// `every`, chosen by a hash of the fingerprint, so a copy of a followed
/// packet (same bytes, same fingerprint) is followed too and its timeline
/// stays whole. Packets without a fingerprint (not IP) are always
/// followed: they are few, and nothing else could choose them consistently.
#[inline(always)]
pub fn sampled(fp: u64, every: u32) -> bool {
    if every <= 1 || fp == 0 {
        return true;
    }
    // The fingerprint's last step is a multiply, which leaves its low bits
    // weak: mix the high bits down before taking the remainder.
    let x = (fp ^ (fp >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (x >> 32).is_multiple_of(every as u64)
}

/// The stages of the skb programs, in order, for [`Config::stop_after`].
pub mod stage {
    /// Entered and counted, nothing else.
    pub const ENTRY: u32 = 1;
    /// Device, netns and headers located, packet bytes read.
    pub const LOCATE: u32 = 2;
    /// Fingerprint computed.
    pub const FINGERPRINT: u32 = 3;
    /// Followed or not decided (the tracking tables updated).
    pub const FOLLOW: u32 = 4;
    /// A slot in this CPU's event batch taken, then given back unwritten.
    pub const RESERVE: u32 = 5;
    /// The event written in full into its batch slot, then given back:
    /// everything but the batch's trip through the ring buffer.
    pub const FILL: u32 = 6;
    /// Not a kernel stage: the programs do all their work, and the reader
    /// decodes each event and drops it (no correlation, no output).
    pub const DECODE: u32 = 7;
    /// Not one of the stages above: a yardstick. The programs do nothing but
    /// timestamp every skb they see and write a header-only event (probe,
    /// skb address) through the batches and the ring, and the reader only
    /// decodes: what recording every hop costs at the least, with no
    /// header reads, fingerprint, follow decision or correlation.
    pub const STAMP: u32 = 8;

    /// Names as `SKBTRACE_STOP_AFTER` takes them, in stage order, then the
    /// yardstick.
    pub const NAMES: [(&str, u32); 8] = [
        ("entry", ENTRY),
        ("locate", LOCATE),
        ("fingerprint", FINGERPRINT),
        ("follow", FOLLOW),
        ("reserve", RESERVE),
        ("fill", FILL),
        ("decode", DECODE),
        ("stamp", STAMP),
    ];

    /// The `SKBTRACE_STOP_AFTER` name of a stage value.
    pub fn name(stage: u32) -> Option<&'static str> {
        NAMES.iter().find(|&&(_, v)| v == stage).map(|&(n, _)| n)
    }
}

/// One hop of one packet, as written to the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub version: u16,
    pub probe: u16,
    pub method: u8,
    pub flags: u8,
    /// Bytes of `data` that are valid.
    pub cap_len: u16,
    /// bpf_ktime_get_ns (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    pub skb: u64,
    pub head: u64,
    pub fingerprint: u64,
    /// Thread group id (the process id a user sees).
    pub pid: u32,
    pub tid: u32,
    pub cpu: u32,
    pub ifindex: u32,
    pub netns: u32,
    pub len: u32,
    pub mark: u32,
    /// Drop reason for kfree_skb; batch size for userspace batch probes.
    pub reason: u32,
    /// skb->protocol in host byte order.
    pub protocol: u16,
    /// Bytes this event takes in its ring record: [`wire_len`]`(cap_len)`
    /// for the skb programs, whose events are only as long as their data;
    /// `Event::SIZE` for the uprobes'.
    pub wire_len: u16,
    pub _pad: [u8; 4],
    pub comm: [u8; 16],
    pub dev: [u8; 16],
    pub data: [u8; CAPTURE_LEN],
}

impl Event {
    pub const SIZE: usize = core::mem::size_of::<Event>();
}

/// Programs that can be in the middle of an event on one CPU at once
/// beyond the outermost (softirq, hardirq, NMI).
pub const STAGE_NESTED: usize = 4;

/// Events in one staged batch at most: [`BATCH_BYTES`] of the shortest.
pub const STAGE_EVENTS: usize = 64;
const _: () = assert!(STAGE_EVENTS * EVENT_HEADER >= BATCH_BYTES);

/// One CPU's staged events (the STAGE per-CPU map; tracer-ebpf's
/// staging.rs explains the protocol). User space reads it to learn, without
/// interrupting the CPU, which events are still waiting there.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Stage {
    /// Bytes of events staged in `buf`.
    pub off: u32,
    /// Programs in the middle of an event on this CPU.
    pub depth: u32,
    /// Events staged in `buf`.
    pub count: u32,
    pub _pad: u32,
    /// The probe of each staged event, to count them lost if the ring is full.
    pub probes: [u16; STAGE_EVENTS],
    /// Events back to back. A batch is written out once it holds more than
    /// `BATCH_BYTES - Event::SIZE`, so a whole event always fits after it.
    pub buf: [u8; BATCH_BYTES + Event::SIZE],
    pub nested: [Event; STAGE_NESTED],
}

/// CPUs whose batches `skbtrace_snapshot` copies for the reader; on a
/// machine with more, the reader flushes every CPU instead.
pub const SNAP_CPUS: usize = 1024;

/// One CPU's batch state, as `skbtrace_snapshot` copies it: the word that
/// holds `Stage::off` and `Stage::depth`, and the first staged event's
/// timestamp, each read with one 8-byte load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StageSnap {
    pub off_depth: u64,
    pub first_ts: u64,
}

impl StageSnap {
    /// `Stage::off` (the word's low half on a little-endian machine, high
    /// on a big-endian one: the load keeps memory order).
    pub fn off(&self) -> u32 {
        let b = self.off_depth.to_ne_bytes();
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
    }

    pub fn depth(&self) -> u32 {
        let b = self.off_depth.to_ne_bytes();
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]])
    }
}

/// Where `first_ts` is in a Stage: 8-byte aligned, so one load reads it.
pub const STAGE_FIRST_TS: usize =
    core::mem::offset_of!(Stage, buf) + core::mem::offset_of!(Event, ts_ns);
const _: () = assert!(STAGE_FIRST_TS.is_multiple_of(8));
// `off` and `depth` share the first 8 bytes, which the snapshot loads at once.
const _: () = assert!(core::mem::offset_of!(Stage, off) == 0);
const _: () = assert!(core::mem::offset_of!(Stage, depth) == 4);

/// Per-probe counters, kept per CPU in the kernel and summed in user space.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeStats {
    /// Times the program ran.
    pub hits: u64,
    /// Events written to the ring buffer.
    pub emitted: u64,
    /// Events that matched but could not be written (ring buffer full).
    pub lost: u64,
}

// Layout checks: a change here must bump EVENT_VERSION.
const _: () = assert!(core::mem::size_of::<Event>() == 112 + CAPTURE_LEN);
const _: () = assert!(core::mem::size_of::<Event>().is_multiple_of(8));
const _: () = assert!(core::mem::size_of::<Config>() == 28 + 64);
const _: () = assert!(core::mem::size_of::<ProbeStats>() == 24);
const _: () = assert!(core::mem::offset_of!(Stage, buf).is_multiple_of(8));
const _: () = assert!(EVENT_HEADER == 112);
const _: () = assert!(wire_len(CAPTURE_LEN) == Event::SIZE);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] structs of integers with no implicit padding;
    // every bit pattern is a valid value.
    unsafe impl aya::Pod for super::Config {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ProbeStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Event {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::StageSnap {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_keeps_about_one_in_n_and_always_the_unfingerprinted() {
        assert!(sampled(0, 7), "no fingerprint: always followed");
        assert!((1..1000u64).all(|fp| sampled(fp, 0) && sampled(fp, 1)));
        // Real fingerprints of one flow's packets: only the IP id differs,
        // which is where a weak low-bit choice would show.
        for n in [2u32, 4, 10, 100] {
            let kept = (0..20_000u32)
                .map(|id| fingerprint::ipv4(0x0a00_0001, 0x0a00_0002, 6, id as u16, 60, [1, 2, 3]))
                .filter(|&fp| sampled(fp, n))
                .count();
            let want = 20_000 / n as usize;
            assert!(
                kept > want * 8 / 10 && kept < want * 12 / 10,
                "1 in {n}: kept {kept} of 20000"
            );
        }
    }
}

//! skbtrace's kernel side: thin entry points per probe point and attach
//! method, all calling `on_skb`, which filters, fingerprints and emits one
//! [`Event`], staged per CPU and written to the ring buffer in batches
//! (staging.rs).
//!
//! Rust emits no CO-RE relocations, so every struct field is read through
//! offsets that user space took from the running kernel's BTF (`CONFIG`).
#![no_std]
#![no_main]

use core::{ffi::c_void, mem::MaybeUninit};

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
        generated,
    },
    macros::{btf_tracepoint, fentry, kprobe, map, raw_tracepoint},
    maps::{PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, FEntryContext, ProbeContext, RawTracePointContext},
};
use probes::{
    CAPTURE_LEN, Config, EVENT_VERSION, Event, MAX_PROBES, Offsets, ProbeStats, fingerprint, flags,
    id, method, stage,
};

/// Filled in by user space at load time (it lives in .rodata).
#[unsafe(no_mangle)]
static CONFIG: Config = Config {
    version: 0,
    filter_enabled: 0,
    filter_ifindex: 0,
    filter_netns: 0,
    wake_all_bytes: 0,
    stop_after: 0,
    every_hop_bytes: 0,
    sample_every: 0,
    offsets: Offsets {
        skb_len: 0,
        skb_data: 0,
        skb_head: 0,
        skb_mac_header: 0,
        skb_network_header: 0,
        skb_transport_header: 0,
        skb_dev: 0,
        skb_protocol: 0,
        skb_mark: 0,
        dev_ifindex: 0,
        dev_name: 0,
        dev_nd_net: 0,
        net_ns_inum: 0,
        skb_data_len: 0,
        task_comm: 0,
        _pad: 0,
    },
};

/// User space resizes it with `EbpfLoader::set_max_entries`.
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 24, 0);

#[map]
static STATS: PerCpuArray<ProbeStats> = PerCpuArray::with_max_entries(MAX_PROBES, 0);

macro_rules! cfg {
    ($($f:ident).+) => {
        {
            // SAFETY: CONFIG is a plain static; read_volatile stops the
            // compiler from folding the placeholders user space overwrites.
            #[allow(unused_unsafe)]
            let v = unsafe { core::ptr::read_volatile(&raw const CONFIG.$($f).+) };
            v
        }
    };
}

/// Wake the reader once per this much written while it sleeps: a wakeup
/// per event costs more than the event. User space also drains on a
/// 100 ms tick, so a quiet trace is still shown promptly.
const WAKEUP_BYTES: u64 = 256 * 1024;

/// The footprint in the ring of a record of `bytes` bytes: rounded up to
/// 8, plus the ring's 8-byte header.
pub(crate) const fn record_bytes(bytes: usize) -> u64 {
    (bytes as u64 + 8 + 7) & !7
}

/// A whole event's footprint in the ring (the uprobes write those).
pub(crate) const RECORD_BYTES: u64 = record_bytes(size_of::<Event>());

/// Forces a wakeup only for the record that carries the waiting data past a
/// multiple of WAKEUP_BYTES. Waking on every record past the threshold (as
/// this did before) raised an irq_work, a self-IPI and, in a VM, an exit,
/// for each event until the reader caught up: 6% of both CPUs following
/// iperf3. A crossing can be missed (another CPU reserved a record between
/// this one's reserve and submit), so once a quarter of the ring waits,
/// every record wakes the reader again: losing events costs more than IPIs.
///
/// `rec` is the record's footprint in the ring; `pending` says it is not
/// in the ring yet (written with `output`, not reserved).
#[inline(always)]
pub(crate) fn wakeup_flags(rec: u64, pending: bool) -> u64 {
    let avail = EVENTS.query(BPF_RB_AVAIL_DATA as u64) + if pending { rec } else { 0 };
    let all = cfg!(wake_all_bytes) as u64;
    if avail >= WAKEUP_BYTES && (avail & (WAKEUP_BYTES - 1) < rec || (all != 0 && avail >= all)) {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Reads a kernel value. No branch on the helper's result: it zero-fills
/// the destination when the address faults, and every branch here would
/// double the paths the verifier walks (see `on_skb`).
#[inline(always)]
pub(crate) fn read<T: Copy>(addr: u64) -> T {
    let mut v = MaybeUninit::<T>::uninit();
    // SAFETY: the helper checks the address and always writes `v`.
    unsafe {
        generated::bpf_probe_read_kernel(
            v.as_mut_ptr().cast(),
            size_of::<T>() as u32,
            addr as *const c_void,
        );
        v.assume_init()
    }
}

/// Per-CPU scratch that `forget` passes values through.
#[map]
static SCRATCH: PerCpuArray<[u64; 16]> = PerCpuArray::with_max_entries(1, 0);

/// The bytes of the skb at hand, from its capture start: one helper read
/// per event gives the Ethernet type, the fingerprint's headers and the
/// event's data (three reads before).
#[map]
static PKT: PerCpuArray<[u8; CAPTURE_LEN]> = PerCpuArray::with_max_entries(1, 0);

/// Reads CAPTURE_LEN bytes at `addr` into PKT: true when they were read
/// (the helper zero-fills them when the address faults).
#[inline(always)]
fn read_pkt(buf: *mut [u8; CAPTURE_LEN], addr: u64) -> bool {
    // SAFETY: `buf` is this CPU's PKT slot, CAPTURE_LEN bytes long.
    unsafe {
        generated::bpf_probe_read_kernel(buf.cast(), CAPTURE_LEN as u32, addr as *const c_void) == 0
    }
}

/// Leaves `v` unchanged, but passed through map memory, so the verifier
/// knows nothing of it afterwards (it tracks values stored on the stack,
/// not in maps). Placed between the stages of `on_skb`, it lets the paths
/// of one stage (header layouts, protocols: each a different set of known
/// values) meet as one state before the next stage, instead of multiplying
/// with its paths. Kernel 6.1 walked 550k-770k instructions per program
/// without this (4 s each under qemu, minutes for the larger ones); its
/// state pruning is much weaker than 6.18's. A store and a load cost less
/// than the helper call that did this before (copying `v` onto itself with
/// bpf_probe_read_kernel). False, and `v` untouched, only if the per-CPU
/// slot is missing, which does not happen; the caller then emits nothing,
/// so no path with `v` still known goes on.
#[inline(always)]
fn forget<T: Copy>(v: &mut T) -> bool {
    const { assert!(size_of::<T>() % 8 == 0 && size_of::<T>() <= size_of::<[u64; 16]>()) };
    let Some(p) = SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    // Word by word, in place: a copy of the whole T would be one more T on
    // the 512-byte stack.
    let (v, p) = ((v as *mut T).cast::<u64>(), p.cast::<u64>());
    for i in 0..size_of::<T>() / 8 {
        // SAFETY: T spans size_of::<T>() / 8 words (checked above) and the
        // per-CPU slot is larger; only this CPU uses it while the program
        // runs (no preemption inside it).
        unsafe { core::ptr::write_volatile(p.add(i), *v.add(i)) };
    }
    for i in 0..size_of::<T>() / 8 {
        // SAFETY: as above.
        unsafe { *v.add(i) = core::ptr::read_volatile(p.add(i)) };
    }
    true
}

const NO_HEADER: u16 = 0xffff;

#[inline(always)]
pub(crate) fn bump(probe: u16, f: impl FnOnce(&mut ProbeStats)) {
    if let Some(s) = STATS.get_ptr_mut(probe as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        f(unsafe { &mut *s });
    }
}

// Which skbs and fingerprints are followed: see tracked.rs.
mod tracked;
// Userspace datapaths (uprobes): see uprobe.rs.
mod uprobe;
// Events are written to the ring in per-CPU batches: see staging.rs.
mod staging;

/// What the first stage of `on_skb` learns about an skb.
#[derive(Clone, Copy)]
#[repr(C)]
struct Skb {
    /// The skb's address as a plain number: the stage's `forget` turns a
    /// tp_btf/fentry argument (a trusted pointer, which the verifier will
    /// not let `tracked` hash) into one at no extra cost.
    addr: u64,
    dev: u64,
    head: u64,
    data: u64,
    /// The L3 header.
    l3: u64,
    /// Capture start: the Ethernet header when `l2`, else the L3 header.
    start: u64,
    /// End of the linear data: bytes past it live in page fragments (an
    /// AF_PACKET TX ring's zero-copy skb keeps only the Ethernet header
    /// linear), and the head buffer there holds an earlier packet's bytes.
    lin_end: u64,
    len: u32,
    data_len: u32,
    ifindex: u32,
    netns: u32,
    ethertype: u32,
    l2: u32,
    /// Where the L3 header starts in PKT (0, 14 or 18).
    l3_off: u32,
    /// PKT holds the bytes from `start`.
    cap_ok: u32,
}

/// One sk_buff (or net_device, net) field at `off`. With `BTF`, `base`
/// is a pointer the verifier typed from BTF (a tp_btf or fentry argument,
/// or a pointer read through one): a plain load, which the JIT guards with
/// an exception-table entry, so a fault gives 0 as the helper would. It
/// costs a few ns where a `bpf_probe_read_kernel` call costs tens: 9 calls
/// fewer per emitted event. The offsets come from read-only CONFIG, so the
/// verifier knows them and checks each load against BTF.
#[inline(always)]
fn field<T: Copy, const BTF: bool>(base: u64, off: u32) -> T {
    if BTF {
        // SAFETY: see above; the verifier rejects the program, rather than
        // letting it run, if the access does not match a BTF field.
        unsafe { core::ptr::read_volatile((base + off as u64) as *const T) }
    } else {
        read(base + off as u64)
    }
}

/// Device, namespace and header positions of an skb. Reads through a null
/// `dev` or `nd_net` fault and give 0, so they need no branch.
#[inline(always)]
fn locate<const BTF: bool>(skb: u64) -> Option<Skb> {
    let dev: u64 = field::<_, BTF>(skb, cfg!(offsets.skb_dev));
    let net: u64 = field::<_, BTF>(dev, cfg!(offsets.dev_nd_net));
    let netns: u32 = field::<_, BTF>(net, cfg!(offsets.net_ns_inum));
    let ifindex: u32 = field::<_, BTF>(dev, cfg!(offsets.dev_ifindex));
    let proto_off = cfg!(offsets.skb_protocol);
    let (mac_off, nh_off) = (
        cfg!(offsets.skb_mac_header),
        cfg!(offsets.skb_network_header),
    );
    let (head, data, len, data_len, proto_be, nh, mac): (u64, u64, u32, u32, u16, u16, u16) = if BTF
    {
        // Each load must stay inside one BTF member, and each is cheap.
        (
            field::<_, true>(skb, cfg!(offsets.skb_head)),
            field::<_, true>(skb, cfg!(offsets.skb_data)),
            field::<_, true>(skb, cfg!(offsets.skb_len)),
            field::<_, true>(skb, cfg!(offsets.skb_data_len)),
            field::<_, true>(skb, proto_off),
            field::<_, true>(skb, nh_off),
            field::<_, true>(skb, mac_off),
        )
    } else {
        // Fields that sit side by side in sk_buff (they do on every
        // kernel we know) are read together: a helper call costs
        // ~25 ns. The offsets are constants to the verifier, so it
        // walks only the arm that applies.
        let (head, data): (u64, u64) =
            read_pair(skb, cfg!(offsets.skb_head), cfg!(offsets.skb_data));
        let (len, data_len): (u32, u32) =
            read_pair(skb, cfg!(offsets.skb_len), cfg!(offsets.skb_data_len));
        // protocol, transport_header, network_header, mac_header.
        let (proto_be, nh, mac) = if nh_off == proto_off + 4 && mac_off == proto_off + 6 {
            let [p, _, n, m]: [u16; 4] = read(skb + proto_off as u64);
            (p, n, m)
        } else {
            (
                read::<u16>(skb + proto_off as u64),
                read(skb + nh_off as u64),
                read(skb + mac_off as u64),
            )
        };
        (head, data, len, data_len, proto_be, nh, mac)
    };
    let proto = u16::from_be(proto_be);
    // Without a MAC header nothing at head+0xffff is worth reading.
    let eth = if mac != NO_HEADER {
        head + mac as u64
    } else {
        head
    };
    let buf = PKT.get_ptr_mut(0)?;
    let eth_ok = read_pkt(buf, eth);
    // SAFETY: this CPU's PKT slot, just written.
    let b = unsafe { &*buf };
    let eth_type = u16::from_be_bytes([b[12], b[13]]);
    let vlan = eth_type == 0x8100 || eth_type == 0x88a8;
    // The Ethernet header is trusted when the network header lies after it,
    // or, when both point at the same place (packet_snd builds skbs so,
    // until eth_type_trans or __netif_receive_skb_core set them), when its
    // ethertype agrees with skb->protocol.
    let l2 = mac != NO_HEADER
        && (nh == NO_HEADER || nh >= mac.wrapping_add(14) || eth_type == proto || vlan);
    let (l3, ethertype, start, l3_off, cap_ok) = if !l2 {
        let l3 = if nh != NO_HEADER {
            head + nh as u64
        } else {
            data
        };
        // The capture starts at L3: read again from there.
        (l3, proto, l3, 0, read_pkt(buf, l3))
    } else if vlan {
        (
            eth + 18,
            u16::from_be_bytes([b[16], b[17]]),
            eth,
            18,
            eth_ok,
        )
    } else {
        (eth + 14, eth_type, eth, 14, eth_ok)
    };
    Some(Skb {
        addr: skb,
        dev,
        head,
        data,
        l3,
        start,
        lin_end: data + len.saturating_sub(data_len) as u64,
        len,
        data_len,
        ifindex,
        netns,
        ethertype: ethertype as u32,
        l2: l2 as u32,
        l3_off,
        cap_ok: cap_ok as u32,
    })
}

/// Two sk_buff fields of one type at offsets `a` and `b`: one read when `b`
/// directly follows `a`. The offsets are constants to the verifier, so it
/// walks only the arm that applies.
#[inline(always)]
fn read_pair<T: Copy>(skb: u64, a: u32, b: u32) -> (T, T) {
    if b as usize == a as usize + size_of::<T>() {
        let [x, y]: [T; 2] = read(skb + a as u64);
        (x, y)
    } else {
        (read(skb + a as u64), read(skb + b as u64))
    }
}

/// Bytes of the L4 header the fingerprint uses (see `fingerprint::l4_words`).
#[inline(always)]
fn l4_needed(proto: u8) -> u64 {
    match proto {
        fingerprint::IPPROTO_TCP => 12,
        fingerprint::IPPROTO_UDP | fingerprint::IPPROTO_ICMP | fingerprint::IPPROTO_ICMPV6 => 8,
        _ => 0,
    }
}

#[inline(always)]
fn be32(b: &[u8; CAPTURE_LEN], i: usize) -> u32 {
    match b.get(i..i + 4) {
        Some(&[x0, x1, x2, x3]) => u32::from_be_bytes([x0, x1, x2, x3]),
        _ => 0,
    }
}

#[inline(always)]
fn l4_bytes(b: &[u8; CAPTURE_LEN], i: usize) -> [u8; 16] {
    match b.get(i..i + 16) {
        Some(w) => {
            let mut out = [0u8; 16];
            out.copy_from_slice(w);
            out
        }
        None => [0; 16],
    }
}

/// The packet's fingerprint from its headers in PKT (`s.l3_off` on), 0
/// when it is not IP, was not read, or its headers are not all in the
/// linear data (see `Skb::lin_end`).
#[inline(always)]
fn compute_fingerprint(s: &Skb) -> u64 {
    let Some(buf) = PKT.get_ptr(0) else {
        return 0;
    };
    // SAFETY: this CPU's PKT slot, written by `locate`.
    let b = unsafe { &*buf };
    // Always 0, 14 or 18; the bound is for the verifier.
    let off = s.l3_off as usize;
    if s.cap_ok == 0 || off > 18 {
        return 0;
    }
    match s.ethertype {
        0x0800 => {
            let v = b[off];
            if v >> 4 != 4 {
                return 0;
            }
            // Loaded again, volatile: from `v` LLVM knows the version
            // nibble and masks the length with 0xfc, which the verifier
            // cannot bound below 252; this way the mask is 0x3c.
            // SAFETY: in bounds (off <= 18).
            let ihl = ((unsafe { core::ptr::read_volatile(&b[off]) } & 0xf) as usize) * 4;
            let proto = b[off + 9];
            if s.l3 + (ihl as u64) + l4_needed(proto) > s.lin_end || ihl < 20 {
                return 0;
            }
            fingerprint::ipv4(
                be32(b, off + 12),
                be32(b, off + 16),
                proto,
                u16::from_be_bytes([b[off + 4], b[off + 5]]),
                u16::from_be_bytes([b[off + 2], b[off + 3]]),
                fingerprint::l4_words(proto, &l4_bytes(b, off + ihl)),
            )
        }
        0x86dd => {
            let next = b[off + 6];
            if b[off] >> 4 != 6 || s.l3 + 40 + l4_needed(next) > s.lin_end {
                return 0;
            }
            let w = |i: usize| be32(b, off + i);
            fingerprint::ipv6(
                [w(8), w(12), w(16), w(20)],
                [w(24), w(28), w(32), w(36)],
                w(0),
                next,
                u16::from_be_bytes([b[off + 4], b[off + 5]]),
                fingerprint::l4_words(next, &l4_bytes(b, off + 40)),
            )
        }
        _ => 0,
    }
}

/// Whether the programs are told to stop after stage `st` (see
/// `Config::stop_after`). CONFIG is read-only, so the verifier knows the
/// answer and drops the branch: a full run pays nothing for it.
#[inline(always)]
fn stopped_after(st: u32) -> bool {
    cfg!(stop_after) == st
}

/// The common path of every skb probe, in four stages: locate the headers,
/// fingerprint, decide whether the packet is followed, write the event.
/// Each stage's result goes through `forget`, so the verifier's paths
/// through one stage do not multiply with the next stage's.
#[inline(always)]
fn on_skb<const BTF: bool>(skb: u64, probe: u16, meth: u8, extra: u8, reason: u32) {
    bump(probe, |s| s.hits += 1);
    if skb == 0 {
        return;
    }
    if stopped_after(stage::ENTRY) {
        return;
    }
    if stopped_after(stage::STAMP) {
        stamp_only(skb, probe, meth, extra);
        return;
    }
    let Some(mut s) = locate::<BTF>(skb) else {
        return;
    };
    if !forget(&mut s) {
        return;
    }
    if stopped_after(stage::LOCATE) {
        return;
    }

    let mut fp = compute_fingerprint(&s);
    // Only the points where an AF_PACKET TX-ring skb is first seen (the
    // probe id is a constant per program, so the others lose this code).
    let tx_ring_point = matches!(
        probe,
        id::VETH_XMIT
            | id::DEV_HARD_START_XMIT
            | id::TP_NET_DEV_START_XMIT
            | id::NETIF_RX
            | id::__NETIF_RX
            | id::TP_NETIF_RX
            | id::TP_KFREE_SKB
            | id::TP_CONSUME_SKB
    );
    if !tx_ring_point {
    } else if fp == 0 && s.data_len != 0 && s.l2 != 0 {
        // Headers in page fragments: an AF_PACKET TX-ring skb, fingerprinted
        // by the uprobe that saw its frame (uprobe.rs).
        fp = uprobe::tx_ring_fingerprint(skb, s.head, s.start, s.len, extra & flags::END != 0);
    } else if extra & flags::END != 0 {
        uprobe::forget_tx(skb);
    }
    if !forget(&mut fp) {
        return;
    }
    if stopped_after(stage::FINGERPRINT) {
        return;
    }

    let Some(fl) = follow(fp, &s, extra) else {
        return;
    };
    let mut fl = fl as u64;
    if !forget(&mut fl) {
        return;
    }
    let fl = fl as u8;
    if stopped_after(stage::FOLLOW) {
        return;
    }

    let Some(slot) = begin_or_lose(probe) else {
        return;
    };
    if stopped_after(stage::RESERVE) {
        staging::abandon(slot);
        return;
    }
    let ev = slot.ev;
    // SAFETY: `ev` points at this CPU's staging slot (staging.rs), owned
    // until commit; every field but ts_ns (stamped by begin) is written here.
    unsafe {
        write_header(
            ev,
            probe,
            meth,
            fl | if s.l2 != 0 { flags::L2 } else { 0 },
            skb,
        );
        (*ev).head = s.head;
        (*ev).fingerprint = fp;
        let pid_tgid = bpf_get_current_pid_tgid();
        (*ev).pid = (pid_tgid >> 32) as u32;
        (*ev).tid = pid_tgid as u32;
        (*ev).cpu = bpf_get_smp_processor_id();
        (*ev).ifindex = s.ifindex;
        (*ev).netns = s.netns;
        (*ev).len = s.len;
        (*ev).mark = field::<_, BTF>(skb, cfg!(offsets.skb_mark));
        (*ev).reason = reason;
        (*ev).protocol = s.ethertype as u16;
        (*ev)._pad = [0; 4];
        if BTF {
            // Plain loads instead of helper calls (see `field`): the
            // task's comm through bpf_get_current_task_btf cut the
            // programs' ns per run to 0.87 of bpf_get_current_comm's
            // (median of 12 interleaved iperf3 rounds on 6.18); `s.dev`
            // is a plain number by now, so the device is read again
            // through the typed skb argument.
            let task = generated::bpf_get_current_task_btf() as u64;
            (*ev).comm = name16(task, cfg!(offsets.task_comm));
            let dev: u64 = field::<_, true>(skb, cfg!(offsets.skb_dev));
            (*ev).dev = name16(dev, cfg!(offsets.dev_name));
        } else {
            // Both helpers fill their buffer whatever happens (zeros on failure).
            generated::bpf_get_current_comm((&raw mut (*ev).comm).cast(), 16);
            generated::bpf_probe_read_kernel(
                (&raw mut (*ev).dev).cast(),
                16,
                (s.dev + cfg!(offsets.dev_name) as u64) as *const c_void,
            );
        }
        // Bytes from the capture start to the end of the linear data (past
        // it the head buffer holds stale bytes), copied from PKT, where
        // `locate` read them; none when an earlier event of this skb
        // carried the same packet (`follow` flags that), unless asked for
        // every hop's.
        let avail = s.lin_end.saturating_sub(s.start);
        let cap = if avail > CAPTURE_LEN as u64 {
            CAPTURE_LEN as u16
        } else {
            avail as u16
        };
        (*ev).cap_len = 0;
        if fl & flags::ELIDED != 0 && cfg!(every_hop_bytes) != 0 {
            (*ev).flags &= !flags::ELIDED;
        }
        if (*ev).flags & flags::ELIDED == 0
            && let Some(buf) = PKT.get_ptr(0)
        {
            let (src, dst) = (buf.cast::<u64>(), (&raw mut (*ev).data).cast::<u64>());
            for i in 0..CAPTURE_LEN / 8 {
                dst.add(i)
                    .write_unaligned(core::ptr::read_unaligned(src.add(i)));
            }
            // (Zeros when the read failed: the helper zero-fills.)
            if s.cap_ok != 0 {
                (*ev).cap_len = cap;
            }
        }
    }
    if stopped_after(stage::FILL) {
        staging::abandon(slot);
        return;
    }
    staging::commit(slot, probe);
}

/// A batch slot for `probe`'s event, or the event counted lost.
#[inline(always)]
fn begin_or_lose(probe: u16) -> Option<staging::Slot> {
    let slot = staging::begin();
    if slot.is_none() {
        bump(probe, |s| s.lost += 1);
    }
    slot
}

/// `SKBTRACE_STOP_AFTER=stamp` (see `stage::STAMP`): a timestamp and the
/// skb's address, written as a header-only event; the other header fields
/// keep whatever the batch slot held (the reader only decodes).
#[inline(always)]
fn stamp_only(skb: u64, probe: u16, meth: u8, extra: u8) {
    let Some(slot) = begin_or_lose(probe) else {
        return;
    };
    let ev = slot.ev;
    // SAFETY: `ev` is this CPU's staging slot, owned until commit.
    unsafe {
        write_header(ev, probe, meth, extra, skb);
        (*ev).cap_len = 0;
    }
    staging::commit(slot, probe);
}

/// The fields every event starts with, the same in on_skb, stamp_only and
/// on_sendmsg.
///
/// # Safety
/// `ev` must be this CPU's staging slot, owned until commit.
#[inline(always)]
unsafe fn write_header(ev: *mut Event, probe: u16, meth: u8, fl: u8, skb: u64) {
    unsafe {
        (*ev).version = EVENT_VERSION;
        (*ev).probe = probe;
        (*ev).method = meth;
        (*ev).flags = fl;
        (*ev).skb = skb;
    }
}

/// A 16-byte name (`comm`, `net_device.name`) at `off` in a BTF-typed
/// object: two plain 8-byte loads, each inside the char[16] member.
#[inline(always)]
fn name16(base: u64, off: u32) -> [u8; 16] {
    let words: [u64; 2] = [field::<_, true>(base, off), field::<_, true>(base, off + 8)];
    // SAFETY: any 16 bytes are a valid [u8; 16].
    unsafe { core::mem::transmute::<[u64; 2], [u8; 16]>(words) }
}

/// Whether this skb is followed: seen on the filter device, or already
/// followed at this address, or a copy (same fingerprint) of a followed
/// packet. Returns the event's flags, None to emit nothing.
#[inline(always)]
fn follow(fp: u64, s: &Skb, extra: u8) -> Option<u8> {
    let mut fl = extra;
    let skb = s.addr;
    let on_dev = cfg!(filter_enabled) == 0
        || (s.ifindex == cfg!(filter_ifindex) && s.netns == cfg!(filter_netns));
    // `--sample N`: a packet first seen on DEV starts a track only if its
    // fingerprint is chosen; the others cost no more than this decision.
    let matched = on_dev && probes::sampled(fp, cfg!(sample_every));
    match tracked::skb_get(skb) {
        None => {
            if matched {
                fl |= flags::MATCH;
                tracked::fp_insert(fp);
            } else if !tracked::fp_contains(fp) {
                // Neither seen on the filter device nor a copy of a packet that was.
                return None;
            }
            if extra & flags::END == 0 {
                tracked::skb_insert(skb, fp);
            }
        }
        Some(old_fp) => {
            // A tracked address seen on the filter device with other bytes:
            // its previous life ended where no probe sees it (TCP coalescing
            // frees skbs without a tracepoint) and this is a new packet; or
            // it had no fingerprint before (an ARP packet's stale entry, a
            // TX-ring skb whose headers were not linear). Either way these
            // bytes are followed from here, copies included: without the
            // TRACKED_FP entry a userspace datapath's uprobes drop the frame.
            if matched && fp != 0 && fp != old_fp {
                fl |= flags::MATCH;
                tracked::fp_insert(fp);
                tracked::skb_insert(skb, fp);
            } else if on_dev && fp != 0 && fp != old_fp {
                // A new packet at a followed address, one the sample leaves
                // out: the address is not followed any more.
                tracked::skb_remove(skb);
                return None;
            } else if fp != 0 && fp == old_fp {
                // The bytes the address was followed with: the event that
                // recorded them carried them (the None arm, or MATCH here).
                fl |= flags::ELIDED;
            }
            if extra & flags::END != 0 {
                tracked::skb_remove(skb);
            }
        }
    }
    Some(fl)
}

/// For functions that take `struct sk_buff **`.
#[inline(always)]
fn deref(pp: u64) -> u64 {
    if pp == 0 { 0 } else { read(pp) }
}

// One fentry and one kprobe program per kernel function: `$arg` is the
// argument that holds the skb, `$pp` says it is a `struct sk_buff **`.
macro_rules! func_probe {
    ($fe:ident, $kp:ident, $id:expr, $arg:expr, $pp:expr) => {
        #[fentry]
        pub fn $fe(ctx: FEntryContext) -> u32 {
            let p: u64 = ctx.arg($arg);
            // A `struct sk_buff **` argument is a plain number to the verifier.
            on_skb::<{ !$pp }>(if $pp { deref(p) } else { p }, $id, method::FENTRY, 0, 0);
            0
        }

        #[kprobe]
        pub fn $kp(ctx: ProbeContext) -> u32 {
            let p: u64 = ctx.arg($arg).unwrap_or(0);
            on_skb::<false>(if $pp { deref(p) } else { p }, $id, method::KPROBE, 0, 0);
            0
        }
    };
}

func_probe!(fe_veth_xmit, kp_veth_xmit, id::VETH_XMIT, 0, false);
func_probe!(fe_netif_rx, kp_netif_rx, id::NETIF_RX, 0, false);
func_probe!(
    fe_dunder_netif_rx,
    kp_dunder_netif_rx,
    id::__NETIF_RX,
    0,
    false
);
func_probe!(
    fe_br_handle_frame,
    kp_br_handle_frame,
    id::BR_HANDLE_FRAME,
    0,
    true
);
func_probe!(fe_nrsc, kp_nrsc, id::__NETIF_RECEIVE_SKB_CORE, 0, true);
func_probe!(
    fe_tcp_queue_rcv,
    kp_tcp_queue_rcv,
    id::TCP_QUEUE_RCV,
    1,
    false
);
func_probe!(
    fe_dev_queue_xmit,
    kp_dev_queue_xmit,
    id::__DEV_QUEUE_XMIT,
    0,
    false
);
func_probe!(
    fe_dev_hard_start_xmit,
    kp_dev_hard_start_xmit,
    id::DEV_HARD_START_XMIT,
    0,
    false
);
func_probe!(fe_ip_rcv, kp_ip_rcv, id::IP_RCV, 0, false);
func_probe!(fe_ip_output, kp_ip_output, id::IP_OUTPUT, 2, false);
func_probe!(
    fe_ip_finish_output2,
    kp_ip_finish_output2,
    id::IP_FINISH_OUTPUT2,
    2,
    false
);
func_probe!(fe_packet_rcv, kp_packet_rcv, id::PACKET_RCV, 0, false);
func_probe!(fe_tpacket_rcv, kp_tpacket_rcv, id::TPACKET_RCV, 0, false);
func_probe!(fe_br_forward, kp_br_forward, id::BR_FORWARD, 1, false);
func_probe!(
    fe_ip_local_deliver,
    kp_ip_local_deliver,
    id::IP_LOCAL_DELIVER,
    0,
    false
);
func_probe!(fe_tcp_v4_rcv, kp_tcp_v4_rcv, id::TCP_V4_RCV, 0, false);
func_probe!(fe_icmp_rcv, kp_icmp_rcv, id::ICMP_RCV, 0, false);
func_probe!(fe_udp_rcv, kp_udp_rcv, id::UDP_RCV, 0, false);
func_probe!(fe_ip_forward, kp_ip_forward, id::IP_FORWARD, 0, false);
// tcp_add_backlog(sk, skb, reason): the socket is busy (its owner holds the
// lock) and the segment waits in its backlog, often merged into the
// segment before it and freed where no probe looks.
func_probe!(
    fe_tcp_add_backlog,
    kp_tcp_add_backlog,
    id::TCP_ADD_BACKLOG,
    1,
    false
);

/// packet_sendmsg(struct socket *, struct msghdr *, size_t) has no skb yet:
/// it records who sent how much. Shown only when no device filter is set,
/// since nothing ties it to a device before the skb exists.
#[inline(always)]
fn on_sendmsg(meth: u8, len: u64) {
    let probe = id::PACKET_SENDMSG;
    bump(probe, |s| s.hits += 1);
    if cfg!(filter_enabled) != 0 {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        bump(probe, |s| s.lost += 1);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: exclusively owned ring-buffer slot; every field is written.
    unsafe {
        core::ptr::write_bytes(ev, 0, 1);
        write_header(ev, probe, meth, flags::NO_SKB, 0);
        // A whole event per record.
        (*ev).wire_len = size_of::<Event>() as u16;
        (*ev).ts_ns = bpf_ktime_get_ns();
        let pid_tgid = bpf_get_current_pid_tgid();
        (*ev).pid = (pid_tgid >> 32) as u32;
        (*ev).tid = pid_tgid as u32;
        (*ev).cpu = bpf_get_smp_processor_id();
        (*ev).len = len as u32;
        (*ev).comm = bpf_get_current_comm().unwrap_or_default();
    }
    entry.submit(wakeup_flags(RECORD_BYTES, false));
    bump(probe, |s| s.emitted += 1);
}

#[fentry]
pub fn fe_packet_sendmsg(ctx: FEntryContext) -> u32 {
    on_sendmsg(method::FENTRY, ctx.arg(2));
    0
}

#[kprobe]
pub fn kp_packet_sendmsg(ctx: ProbeContext) -> u32 {
    on_sendmsg(method::KPROBE, ctx.arg(2).unwrap_or(0));
    0
}

// One tp_btf and one raw_tracepoint program per tracepoint. Both see the
// tracepoint's own arguments; the skb is argument 0 unless `skb_arg` says.
macro_rules! tp_probe {
    ($tb:ident, $rt:ident, $id:expr, $extra:expr, $reason_arg:expr) => {
        tp_probe!($tb, $rt, $id, $extra, $reason_arg, skb_arg = 0);
    };
    ($tb:ident, $rt:ident, $id:expr, $extra:expr, $reason_arg:expr, skb_arg = $skb:expr) => {
        #[btf_tracepoint]
        pub fn $tb(ctx: BtfTracePointContext) -> u32 {
            let reason: u64 = if $reason_arg > 0 {
                ctx.arg($reason_arg)
            } else {
                0
            };
            on_skb::<true>(ctx.arg($skb), $id, method::TP_BTF, $extra, reason as u32);
            0
        }

        #[raw_tracepoint]
        pub fn $rt(ctx: RawTracePointContext) -> u32 {
            let reason: u64 = if $reason_arg > 0 {
                ctx.arg($reason_arg)
            } else {
                0
            };
            on_skb::<false>(ctx.arg($skb), $id, method::RAW_TP, $extra, reason as u32);
            0
        }
    };
}

tp_probe!(
    tb_net_dev_queue,
    rt_net_dev_queue,
    id::TP_NET_DEV_QUEUE,
    0,
    0
);
tp_probe!(
    tb_net_dev_start_xmit,
    rt_net_dev_start_xmit,
    id::TP_NET_DEV_START_XMIT,
    0,
    0
);
tp_probe!(tb_net_dev_xmit, rt_net_dev_xmit, id::TP_NET_DEV_XMIT, 0, 0);
tp_probe!(tb_netif_rx, rt_netif_rx, id::TP_NETIF_RX, 0, 0);
tp_probe!(
    tb_netif_receive_skb,
    rt_netif_receive_skb,
    id::TP_NETIF_RECEIVE_SKB,
    0,
    0
);
// kfree_skb(skb, location, reason): the packet is dropped here.
tp_probe!(
    tb_kfree_skb,
    rt_kfree_skb,
    id::TP_KFREE_SKB,
    flags::END | flags::DROP,
    2
);
tp_probe!(
    tb_consume_skb,
    rt_consume_skb,
    id::TP_CONSUME_SKB,
    flags::END,
    0
);
// tcp_probe(sk, skb), first thing in tcp_rcv_established: the segment
// reached its socket, where its life as a packet ends (as at
// tcp_queue_rcv). Marked END: TCP frees these skbs with __kfree_skb, which
// has no tracepoint, so nothing later would close them, and their
// addresses would stay followed until the LRU map evicts them.
tp_probe!(
    tb_tcp_probe,
    rt_tcp_probe,
    id::TP_TCP_PROBE,
    flags::END,
    0,
    skb_arg = 1
);

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

/// Never attached: user space runs it on each CPU in turn (test run) to
/// write that CPU's partial batch (staging.rs).
#[raw_tracepoint]
pub fn skbtrace_flush(_ctx: RawTracePointContext) -> i32 {
    staging::flush()
}

/// Never attached: user space runs it on its own CPU, with the number of
/// CPUs as the first argument, to learn which CPUs' batches are old
/// (staging.rs).
#[raw_tracepoint]
pub fn skbtrace_snapshot(ctx: RawTracePointContext) -> i32 {
    staging::snapshot(ctx.arg(0))
}

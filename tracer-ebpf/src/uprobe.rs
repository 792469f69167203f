//! Uprobe programs: userspace datapaths (skbtrace-fwd's per-frame hooks,
//! the libc calls an AF_PACKET program sends and receives with, VPP's node
//! functions) joined into the kernel's per-packet timelines.
//!
//! Where a probe sees a frame's bytes it reads them from user memory,
//! computes the same fingerprint the kernel programs compute, and emits an
//! [`Event`] (method UPROBE, no skb) only for packets the kernel side already
//! tracks (their fingerprint is in TRACKED_FP), or for every frame when no
//! filter is set. Where a probe sees only a batch (a VPP node function), it
//! emits one fingerprint-less event carrying the batch size; user space
//! places it by time.
//!
//! One program per calling convention, attached once per symbol: the attach
//! cookie carries the probe id (bits 0..16) and, for batch probes, the offset
//! of a u16 vector count in the frame argument (bits 16..32).
//!
//! Verifier notes: headers are read with fixed-size `bpf_probe_read_user_buf`
//! calls at computed addresses, never by indexing a buffer with a variable
//! offset; loops over batches are bounded by [`MAX_BATCH`].

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
        bpf_probe_read_user, bpf_probe_read_user_buf, generated::bpf_get_attach_cookie,
    },
    macros::{map, uprobe, uretprobe},
    maps::{HashMap, LruHashMap, PerCpuArray},
    programs::{ProbeContext, RetProbeContext},
};
use probes::{CAPTURE_LEN, EVENT_VERSION, Event, MAX_PROBES, fingerprint, flags, method};

use crate::{CONFIG, EVENTS, bump, read, tracked};

/// Frames looked at per sendmmsg/recvmmsg call; the rest of a larger batch
/// is counted in the event's `reason` (batch size) but not fingerprinted.
const MAX_BATCH: u32 = 8;

/// `struct msghdr` (x86-64): msg_iov at 16, msg_iovlen at 24.
const MSGHDR_IOV: u64 = 16;
const MSGHDR_IOVLEN: u64 = 24;
/// `struct mmsghdr`: a msghdr (56 bytes) then msg_len, padded to 64.
const MMSGHDR_SIZE: u64 = 64;
const MMSGHDR_LEN: u64 = 56;

/// What a receive call's entry left for its return probe.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct RecvArgs {
    /// msghdr, mmsghdr array or buffer, by kind.
    ptr: u64,
}

/// Cookie bit: the hooked frame is queued on an AF_PACKET TX ring (see
/// [`TxFifo`]).
const COOKIE_TX_RING: u64 = 1 << 32;

/// Frames a thread queued on a TX ring, in ring order, not yet seen as skbs.
const TX_FIFO_LEN: u32 = 16;

#[derive(Clone, Copy)]
#[repr(C)]
pub struct TxEntry {
    fp: u64,
    /// The frame's first 8 bytes (destination MAC, 2 bytes of the source).
    mac8: u64,
    len: u32,
    _pad: u32,
}

/// A TPACKET TX-ring skb keeps only the Ethernet header linear (the rest
/// are the ring's pages), so the kernel programs cannot fingerprint it. The
/// uprobe on the hook that writes the frame into the ring knows the
/// fingerprint; the kernel takes it when that thread's kick turns the frame
/// into an skb (same thread, ring order), checked against length and MACs.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct TxFifo {
    e: [TxEntry; TX_FIFO_LEN as usize],
    head: u32,
    tail: u32,
}

/// pid_tgid -> frames it queued on a TX ring.
#[map]
static TX_FIFO: LruHashMap<u64, TxFifo> = LruHashMap::with_max_entries(1024, 0);

/// An all-zero TxFifo to insert from (too big for the BPF stack); never written.
#[map]
static TX_FIFO_ZERO: PerCpuArray<TxFifo> = PerCpuArray::with_max_entries(1, 0);

/// skb -> the fingerprint a TX-ring skb was given (its later hops, until
/// its headers are pulled into linear data).
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Given {
    fp: u64,
    head: u64,
}

#[map]
static TX_GIVEN: LruHashMap<u64, Given> = LruHashMap::with_max_entries(4096, 0);

/// The skb's life ended: its address and head may be reused by another
/// packet.
#[inline(always)]
pub(crate) fn forget_tx(skb: u64) {
    // A lookup takes no lock; a delete of a missing key would (and nearly
    // every skb that ends was never a TX-ring one).
    // SAFETY: map lookup; only the presence is used.
    if unsafe { TX_GIVEN.get(&skb) }.is_some() {
        let _ = TX_GIVEN.remove(&skb);
    }
}

/// Queues a TX-ring frame's fingerprint for the kernel side (every frame,
/// tracked or not, so the queue stays in ring order).
#[inline(always)]
fn push_tx(frame: u64, len: u32) {
    let (_, fp) = frame_fingerprint(frame);
    let mac8: u64 = user(frame);
    let key = bpf_get_current_pid_tgid();
    if TX_FIFO.get_ptr_mut(&key).is_none() {
        let Some(zero) = TX_FIFO_ZERO.get_ptr(0) else {
            return;
        };
        // SAFETY: a valid map value pointer; the helper copies it.
        let _ = TX_FIFO.insert(&key, unsafe { &*zero }, 0);
    }
    let Some(q) = TX_FIFO.get_ptr_mut(&key) else {
        return;
    };
    // SAFETY: a map value only this thread writes (keyed by its pid_tgid).
    unsafe {
        let t = (*q).tail;
        let i = (t % TX_FIFO_LEN) as usize;
        if i < TX_FIFO_LEN as usize {
            (*q).e[i] = TxEntry {
                fp,
                mac8,
                len,
                _pad: 0,
            };
        }
        (*q).tail = t.wrapping_add(1);
        if (*q).tail.wrapping_sub((*q).head) > TX_FIFO_LEN {
            (*q).head = (*q).tail.wrapping_sub(TX_FIFO_LEN);
        }
    }
}

/// For the kernel programs: the fingerprint of a TX-ring skb whose headers
/// are not linear, from the frame this thread queued (0 if none matches).
/// `eth` is its (linear) Ethernet header, `len` its skb->len.
#[inline(always)]
pub(crate) fn tx_ring_fingerprint(skb: u64, head: u64, eth: u64, len: u32, ending: bool) -> u64 {
    // SAFETY: map lookup; the value is copied out.
    if let Some(g) = unsafe { TX_GIVEN.get(&skb) }.copied()
        && g.head == head
    {
        if ending {
            let _ = TX_GIVEN.remove(&skb);
        }
        return g.fp;
    }
    let key = bpf_get_current_pid_tgid();
    let Some(q) = TX_FIFO.get_ptr_mut(&key) else {
        return 0;
    };
    let mac8: u64 = read(eth);
    let mut fp = 0;
    // SAFETY: this thread's own map value.
    unsafe {
        for _ in 0..4 {
            let h = (*q).head;
            if h == (*q).tail {
                break;
            }
            (*q).head = h.wrapping_add(1);
            let i = (h % TX_FIFO_LEN) as usize;
            if i >= TX_FIFO_LEN as usize {
                break;
            }
            let e = (*q).e[i];
            // skb->len counts the Ethernet (and VLAN) header before
            // eth_type_trans, not after.
            let len_ok = e.len == len || e.len == len + 14 || e.len == len + 18;
            if len_ok && e.mac8 == mac8 {
                fp = e.fp;
                break;
            }
        }
    }
    if fp != 0 && !ending {
        let _ = TX_GIVEN.insert(&skb, &Given { fp, head }, 0);
    }
    fp
}

/// pid_tgid -> the receive buffer of the call in progress on that thread.
#[map]
static RECV_ARGS: HashMap<u64, RecvArgs> = HashMap::with_max_entries(4096, 0);

#[inline(always)]
fn cookie<C: EbpfContext>(ctx: &C) -> u64 {
    // SAFETY: the helper only reads the attach cookie of the running program.
    unsafe { bpf_get_attach_cookie(ctx.as_ptr()) }
}

#[inline(always)]
fn probe_id(cookie: u64) -> u16 {
    let id = (cookie & 0xffff) as u16;
    if (id as u32) < MAX_PROBES {
        id
    } else {
        (MAX_PROBES - 1) as u16
    }
}

#[inline(always)]
fn user<T: Copy + Default>(addr: u64) -> T {
    if addr == 0 {
        return T::default();
    }
    // SAFETY: bpf_probe_read_user checks the address; a fault yields Err.
    unsafe { bpf_probe_read_user(addr as *const T) }.unwrap_or_default()
}

/// The frame's ethertype and fingerprint (0 when not IPv4/IPv6).
#[inline(always)]
fn frame_fingerprint(frame: u64) -> (u16, u64) {
    let mut eth = [0u8; 18];
    // SAFETY: helper-checked user read into a stack buffer.
    if unsafe { bpf_probe_read_user_buf(frame as *const u8, &mut eth) }.is_err() {
        return (0, 0);
    }
    let mut ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    let mut l3 = frame + 14;
    if ethertype == 0x8100 || ethertype == 0x88a8 {
        ethertype = u16::from_be_bytes([eth[16], eth[17]]);
        l3 += 4;
    }
    let mut l4 = [0u8; 16];
    let fp = match ethertype {
        0x0800 => {
            let mut ip = [0u8; 20];
            // SAFETY: as above.
            if unsafe { bpf_probe_read_user_buf(l3 as *const u8, &mut ip) }.is_err()
                || ip[0] >> 4 != 4
            {
                return (ethertype, 0);
            }
            let ihl = ((ip[0] & 0xf) as u64) * 4;
            // SAFETY: as above; a short frame leaves l4 zeroed, as in the kernel programs.
            let _ = unsafe { bpf_probe_read_user_buf((l3 + ihl) as *const u8, &mut l4) };
            let proto = ip[9];
            fingerprint::ipv4(
                u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]),
                u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]),
                proto,
                u16::from_be_bytes([ip[4], ip[5]]),
                u16::from_be_bytes([ip[2], ip[3]]),
                fingerprint::l4_words(proto, &l4),
            )
        }
        0x86dd => {
            let mut ip = [0u8; 40];
            // SAFETY: as above.
            if unsafe { bpf_probe_read_user_buf(l3 as *const u8, &mut ip) }.is_err() {
                return (ethertype, 0);
            }
            // SAFETY: as above.
            let _ = unsafe { bpf_probe_read_user_buf((l3 + 40) as *const u8, &mut l4) };
            let w = |i: usize| u32::from_be_bytes([ip[i], ip[i + 1], ip[i + 2], ip[i + 3]]);
            let next = ip[6];
            fingerprint::ipv6(
                [w(8), w(12), w(16), w(20)],
                [w(24), w(28), w(32), w(36)],
                w(0),
                next,
                u16::from_be_bytes([ip[4], ip[5]]),
                fingerprint::l4_words(next, &l4),
            )
        }
        _ => 0,
    };
    (ethertype, fp)
}

/// Fills the task and time fields every uprobe event has.
///
/// # Safety
/// `ev` points at an exclusively owned, reserved ring-buffer slot.
#[inline(always)]
unsafe fn fill_common(ev: *mut Event, probe: u16) {
    // SAFETY: the caller's contract; every field is written by the caller or here.
    unsafe {
        core::ptr::write_bytes(ev, 0, 1);
        (*ev).version = EVENT_VERSION;
        (*ev).probe = probe;
        (*ev).method = method::UPROBE;
        // A whole event per record, whatever `cap_len` says.
        (*ev).wire_len = size_of::<Event>() as u16;
        (*ev).ts_ns = bpf_ktime_get_ns();
        let pid_tgid = bpf_get_current_pid_tgid();
        (*ev).pid = (pid_tgid >> 32) as u32;
        (*ev).tid = pid_tgid as u32;
        (*ev).cpu = bpf_get_smp_processor_id();
        (*ev).comm = bpf_get_current_comm().unwrap_or_default();
    }
}

/// One frame of `len` bytes at user address `frame`: fingerprint it and
/// emit it if its packet is tracked (or nothing is filtered).
#[inline(always)]
fn on_frame(probe: u16, frame: u64, len: u32, ifindex: u32, batch: u32) {
    bump(probe, |s| s.hits += 1);
    if frame == 0 || len < 14 {
        return;
    }
    let (ethertype, fp) = frame_fingerprint(frame);
    if cfg!(filter_enabled) != 0 && !tracked::fp_contains(fp) {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        bump(probe, |s| s.lost += 1);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: exclusively owned ring-buffer slot of size_of::<Event>().
    unsafe {
        fill_common(ev, probe);
        (*ev).flags = flags::L2;
        (*ev).fingerprint = fp;
        (*ev).ifindex = ifindex;
        (*ev).len = len;
        (*ev).reason = batch;
        (*ev).protocol = ethertype;
        (*ev).cap_len = if len as usize > CAPTURE_LEN {
            CAPTURE_LEN as u16
        } else {
            len as u16
        };
        // A fixed-size read; a frame near the end of its mapping falls back
        // to the first 64 bytes (enough for the headers).
        let data = &mut (*ev).data;
        if bpf_probe_read_user_buf(frame as *const u8, data).is_err() {
            *data = [0; CAPTURE_LEN];
            if bpf_probe_read_user_buf(frame as *const u8, &mut data[..64]).is_ok() {
                if (*ev).cap_len > 64 {
                    (*ev).cap_len = 64;
                }
            } else {
                (*ev).cap_len = 0;
            }
        }
    }
    entry.submit(crate::wakeup_flags(crate::RECORD_BYTES, false));
    bump(probe, |s| s.emitted += 1);
}

/// The frame a msghdr describes: its first iovec, or the second when the
/// first is a virtio-net header (10 or 12 bytes) in front of the frame.
#[inline(always)]
fn msghdr_frame(msg: u64) -> (u64, u64) {
    let iov: u64 = user(msg + MSGHDR_IOV);
    let iovlen: u64 = user(msg + MSGHDR_IOVLEN);
    if iov == 0 || iovlen == 0 {
        return (0, 0);
    }
    let base: u64 = user(iov);
    let len: u64 = user(iov + 8);
    if len < 14 && iovlen > 1 {
        return (user(iov + 16), user(iov + 24));
    }
    (base, len)
}

/// A batch-only hop (no frame bytes visible): emitted with fingerprint 0
/// and the batch size; user space places it by time.
#[inline(always)]
fn on_batch(probe: u16, batch: u32) {
    bump(probe, |s| s.hits += 1);
    if batch == 0 {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        bump(probe, |s| s.lost += 1);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: exclusively owned ring-buffer slot.
    unsafe {
        fill_common(ev, probe);
        (*ev).reason = batch;
    }
    entry.submit(crate::wakeup_flags(crate::RECORD_BYTES, false));
    bump(probe, |s| s.emitted += 1);
}

/// `f(const u8 *frame, u32 len, ...)`: skbtrace-fwd's skbtrace_fwd_rx/tx
/// (ifindex in the third argument) and any function shaped like them.
#[uprobe]
pub fn up_frame(ctx: ProbeContext) -> u32 {
    let c = cookie(&ctx);
    let probe = probe_id(c);
    let frame: u64 = ctx.arg(0).unwrap_or(0);
    let len: u64 = ctx.arg(1).unwrap_or(0);
    let ifindex: u64 = ctx.arg(2).unwrap_or(0);
    if c & COOKIE_TX_RING != 0 && frame != 0 {
        push_tx(frame, len as u32);
    }
    on_frame(probe, frame, len as u32, ifindex as u32, 1);
    0
}

/// `sendto(fd, buf, len, flags, addr, addrlen)` / `send(fd, buf, len, flags)`.
/// VPP's `sendto(fd, NULL, 0, ...)` tx-ring kick carries no frame: counted only.
#[uprobe]
pub fn up_sendto(ctx: ProbeContext) -> u32 {
    let probe = probe_id(cookie(&ctx));
    let buf: u64 = ctx.arg(1).unwrap_or(0);
    let len: u64 = ctx.arg(2).unwrap_or(0);
    on_frame(probe, buf, len as u32, 0, 1);
    0
}

/// `sendmsg(fd, const struct msghdr *msg, flags)`.
#[uprobe]
pub fn up_sendmsg(ctx: ProbeContext) -> u32 {
    let probe = probe_id(cookie(&ctx));
    let msg: u64 = ctx.arg(1).unwrap_or(0);
    let (frame, len) = msghdr_frame(msg);
    on_frame(probe, frame, len as u32, 0, 1);
    0
}

/// `sendmmsg(fd, struct mmsghdr *vec, unsigned vlen, flags)`: one event per
/// frame (the first MAX_BATCH), each carrying the batch size.
#[uprobe]
pub fn up_sendmmsg(ctx: ProbeContext) -> u32 {
    let probe = probe_id(cookie(&ctx));
    let vec: u64 = ctx.arg(1).unwrap_or(0);
    let vlen: u64 = ctx.arg(2).unwrap_or(0);
    let vlen = vlen as u32;
    for i in 0..MAX_BATCH {
        if i >= vlen {
            break;
        }
        let (frame, len) = msghdr_frame(vec + i as u64 * MMSGHDR_SIZE);
        on_frame(probe, frame, len as u32, 0, vlen);
    }
    0
}

#[inline(always)]
fn save_recv(ptr: u64) {
    let key = bpf_get_current_pid_tgid();
    let _ = RECV_ARGS.insert(&key, &RecvArgs { ptr }, 0);
}

#[inline(always)]
fn take_recv() -> u64 {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: map lookup; the value is copied out before the remove.
    let ptr = unsafe { RECV_ARGS.get(&key) }.map_or(0, |a| a.ptr);
    let _ = RECV_ARGS.remove(&key);
    ptr
}

/// Entry of `recvfrom(fd, buf, len, ...)`, `recvmsg(fd, msg, flags)` and
/// `recvmmsg(fd, vec, vlen, flags, timeout)`: remember the buffer argument
/// for the return probe (the frame is only there once the call returns).
#[uprobe]
pub fn up_recv_entry(ctx: ProbeContext) -> u32 {
    let p: u64 = ctx.arg(1).unwrap_or(0);
    save_recv(p);
    0
}

/// Return of `recvfrom`: the return value is the frame length.
#[uretprobe]
pub fn ur_recvfrom(ctx: RetProbeContext) -> u32 {
    let probe = probe_id(cookie(&ctx));
    let buf = take_recv();
    let n: i64 = ctx.ret();
    if n > 0 {
        on_frame(probe, buf, n as u32, 0, 1);
    }
    0
}

/// Return of `recvmsg`: the frame is in the msghdr's iovec.
#[uretprobe]
pub fn ur_recvmsg(ctx: RetProbeContext) -> u32 {
    let probe = probe_id(cookie(&ctx));
    let msg = take_recv();
    let n: i64 = ctx.ret();
    if n > 0 {
        let (frame, cap) = msghdr_frame(msg);
        let len = if (n as u64) < cap { n as u64 } else { cap };
        on_frame(probe, frame, len as u32, 0, 1);
    }
    0
}

/// Return of `recvmmsg`: the return value is the number of messages; each
/// mmsghdr's msg_len is its frame's length.
#[uretprobe]
pub fn ur_recvmmsg(ctx: RetProbeContext) -> u32 {
    let probe = probe_id(cookie(&ctx));
    let vec = take_recv();
    let n: i64 = ctx.ret();
    if n <= 0 || vec == 0 {
        return 0;
    }
    let n = n as u32;
    for i in 0..MAX_BATCH {
        if i >= n {
            break;
        }
        let m = vec + i as u64 * MMSGHDR_SIZE;
        let (frame, _) = msghdr_frame(m);
        let len: u32 = user(m + MMSGHDR_LEN);
        on_frame(probe, frame, len, 0, n);
    }
    0
}

/// A function that handles a vector of packets it does not show us one by
/// one (a VPP node function `fn(vm, node, frame)`): the batch size is a u16
/// at the offset in cookie bits 16..32 of the frame (third argument); a
/// NULL frame (an input node) counts as a batch of one call.
#[uprobe]
pub fn up_batch(ctx: ProbeContext) -> u32 {
    let c = cookie(&ctx);
    let probe = probe_id(c);
    let off = (c >> 16) & 0xffff;
    let frame: u64 = ctx.arg(2).unwrap_or(0);
    let n: u16 = if frame == 0 { 0 } else { user(frame + off) };
    on_batch(probe, n as u32);
    0
}

/// Return of a function whose return value is the number of packets it
/// handled (VPP's input node functions return n_rx_packets).
#[uretprobe]
pub fn ur_batch(ctx: RetProbeContext) -> u32 {
    let probe = probe_id(cookie(&ctx));
    let n: u64 = ctx.ret();
    on_batch(probe, n as u32);
    0
}

/// A plain call marker (generic `--uprobe PATH:SYM` on a function whose
/// arguments are not known): one fingerprint-less event per call, placed
/// by time in user space.
#[uprobe]
pub fn up_call(ctx: ProbeContext) -> u32 {
    on_batch(probe_id(cookie(&ctx)), 1);
    0
}

/// The return of such a function.
#[uretprobe]
pub fn ur_call(ctx: RetProbeContext) -> u32 {
    on_batch(probe_id(cookie(&ctx)), 1);
    0
}

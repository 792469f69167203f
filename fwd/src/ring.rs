//! One AF_PACKET queue: a SOCK_RAW ETH_P_ALL socket bound to an interface,
//! with a TPACKET_V3 RX ring and a TX ring in one mapping, plus an optional
//! "doorbell" socket that makes poll() wake per packet.
//!
//! Memory layout facts used here come from `linux/if_packet.h`:
//! `struct tpacket_block_desc` is 48 bytes and the first packet of a block
//! starts right after it; `struct tpacket3_hdr` is 48 bytes, a TX frame's
//! data starts at TPACKET_ALIGN(sizeof(tpacket3_hdr)) = 48, and an RX
//! frame's virtio-net header sits right before `tp_mac`.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::direct::DirectTx;
use crate::frame::{VNET_HDR_LEN, VlanTag};
use crate::sys::{self, Mmap, SysError, SysResult};

/// Size of `struct tpacket_block_desc` (and BLK_PLUS_PRIV(0)).
pub const BLOCK_DESC_LEN: usize = 48;
/// TPACKET_ALIGN(sizeof(struct tpacket3_hdr)).
pub const TP3_HDR_LEN: usize = 48;
const SLL_LEN: usize = 20;

// Offsets inside struct tpacket_block_desc.
const BD_STATUS: usize = 8;
const BD_NUM_PKTS: usize = 12;
const BD_FIRST_PKT: usize = 16;
const BD_BLK_LEN: usize = 20;

// Offsets inside struct tpacket3_hdr.
const H_NEXT: usize = 0;
const H_SNAPLEN: usize = 12;
const H_LEN: usize = 16;
const H_STATUS: usize = 20;
const H_MAC: usize = 24;
const H_VLAN_TCI: usize = 32;
const H_VLAN_TPID: usize = 36;

/// `enum tpacket_versions` value (libc exposes it only as an enum).
const TPACKET_V3: libc::c_int = 2;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_SENDING: u32 = 2;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// Ring geometry and socket options, the same for every queue.
#[derive(Clone, Debug)]
pub struct RingConfig {
    pub block_size: u32,
    pub block_count: u32,
    pub frame_size: u32,
    pub tx_frames: u32,
    pub block_timeout_ms: u32,
    pub qdisc_bypass: bool,
    pub vnet_hdr: bool,
    /// Read packets out of the block the kernel is still filling (see `RxRing`).
    pub peek: bool,
    /// A per-packet wakeup socket next to the ring (only useful with `peek`).
    pub doorbell: bool,
    /// A send socket for large frames (see `direct`); only with `vnet_hdr`
    /// (the caller's rule: without it no frame is large).
    pub direct: bool,
}

impl RingConfig {
    /// Checks the geometry the kernel would otherwise reject with a bare EINVAL.
    pub fn validate(&self) -> Result<(), String> {
        let page = sys::page_size() as u32;
        if self.block_size == 0 || !self.block_size.is_multiple_of(page) {
            return Err(format!(
                "--block-size {} must be a non-zero multiple of the page size ({page})",
                self.block_size
            ));
        }
        if self.block_count == 0 {
            return Err("--block-count must be at least 1".into());
        }
        if self.frame_size < 256 || !self.frame_size.is_multiple_of(16) {
            return Err(format!(
                "--frame-size {} must be a multiple of 16 and at least 256",
                self.frame_size
            ));
        }
        if self.block_size < self.frame_size + 128 {
            return Err(format!(
                "--block-size {} must exceed --frame-size {} by at least 128 bytes so any accepted frame fits in one block",
                self.block_size, self.frame_size
            ));
        }
        if self.tx_frames == 0 {
            return Err("--tx-frames must be at least 1".into());
        }
        let rx = self.block_size as u64 * self.block_count as u64;
        if rx > 1 << 32 {
            return Err(format!("RX ring of {rx} bytes is too large (max 4 GiB)"));
        }
        Ok(())
    }

    fn tx_geometry(&self) -> (u32, u32, u32) {
        let page = sys::page_size() as u32;
        let block = self.frame_size.div_ceil(page) * page;
        let per_block = block / self.frame_size;
        let blocks = self.tx_frames.div_ceil(per_block);
        (block, blocks, per_block * blocks)
    }

    /// Bytes of the TX ring.
    pub fn tx_bytes(&self) -> usize {
        let (tb, tn, _) = self.tx_geometry();
        tb as usize * tn as usize
    }

    /// Bytes of RX plus TX ring per queue socket.
    pub fn ring_bytes(&self) -> usize {
        self.block_size as usize * self.block_count as usize + self.tx_bytes()
    }

    /// Largest frame (virtio header included) a TX slot carries.
    pub fn tx_room(&self) -> usize {
        self.frame_size as usize - TP3_HDR_LEN
    }
}

/// How a fanout group picks the queue socket for a frame (also the
/// forwarder's `--fanout` values; the doc comments are their help).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum FanoutMode {
    /// By flow hash: each flow stays on one queue.
    #[default]
    Hash,
    /// By the CPU the kernel handled the frame on (CPU N to queue N mod
    /// --queues): for frames from a veth peer, the CPU the sender ran on.
    Cpu,
}

impl FanoutMode {
    fn kernel(self) -> u32 {
        match self {
            FanoutMode::Hash => libc::PACKET_FANOUT_HASH,
            FanoutMode::Cpu => libc::PACKET_FANOUT_CPU,
        }
    }

    /// The mode as `--fanout` takes it.
    pub fn name(self) -> &'static str {
        match self {
            FanoutMode::Hash => "hash",
            FanoutMode::Cpu => "cpu",
        }
    }
}

/// A fanout group shared by the queue sockets of one interface.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fanout {
    pub id: Option<u16>,
    pub mode: FanoutMode,
}

impl Fanout {
    pub fn new(mode: FanoutMode) -> Fanout {
        Fanout { id: None, mode }
    }
}

fn join_fanout(fd: &OwnedFd, group: &mut Fanout, what: &str) -> SysResult<()> {
    let mode = group.mode.kernel();
    match group.id {
        Some(id) => {
            let arg: u32 = id as u32 | (mode << 16);
            sys::set_packet_opt(fd, libc::PACKET_FANOUT, &arg, what)
        }
        None => {
            // Let the kernel pick an id no other process in this netns uses,
            // then read it back for the other queues.
            let flags = libc::PACKET_FANOUT_FLAG_UNIQUEID;
            let arg: u32 = (mode | flags) << 16;
            sys::set_packet_opt(fd, libc::PACKET_FANOUT, &arg, what)?;
            let got: u32 = sys::get_packet_opt(fd.as_raw_fd(), libc::PACKET_FANOUT, what)?;
            group.id = Some((got & 0xffff) as u16);
            Ok(())
        }
    }
}

/// The sockets and rings of one (interface, queue).
pub struct Queue {
    /// Shared with the TX ring, which kicks through it: in
    /// --worker-per-direction mode the RX and TX rings of one socket belong
    /// to two threads.
    pub fd: Arc<OwnedFd>,
    pub doorbell: Option<OwnedFd>,
    pub rx: RxRing,
    pub tx: TxRing,
    /// Sends large frames by copy (with virtio-net headers only: without
    /// them no frame is large).
    pub direct: Option<DirectTx>,
}

impl Queue {
    /// Builds the socket: options first (the kernel refuses most of them once
    /// rings exist), then rings and mmap, then bind (so nothing is captured
    /// before the ring is ready), then fanout (which needs a bound socket).
    pub fn open(
        ifname: &str,
        ifindex: u32,
        cfg: &RingConfig,
        fanout: Option<(&mut Fanout, &mut Fanout)>,
        promisc: bool,
    ) -> SysResult<Queue> {
        let ctx = |s: &str| format!("{s} on {ifname}");
        let (fanout_ring, fanout_bell) = match fanout {
            Some((a, b)) => (Some(a), Some(b)),
            None => (None, None),
        };

        // The doorbell is bound first: the kernel hands a packet to the
        // newest ETH_P_ALL socket first, so the ring has the frame by the time
        // the doorbell rings.
        let doorbell = if cfg.doorbell {
            let d = sys::packet_socket()?;
            sys::set_packet_opt(
                &d,
                libc::PACKET_IGNORE_OUTGOING,
                &1i32,
                &ctx("PACKET_IGNORE_OUTGOING"),
            )?;
            // Smallest buffer the kernel allows: once one packet is queued the
            // rest are dropped before being cloned, so the doorbell costs
            // almost nothing under load.
            sys::set_sock_opt_int(&d, libc::SOL_SOCKET, libc::SO_RCVBUF, 0, &ctx("SO_RCVBUF"))?;
            sys::attach_one_byte_filter(&d)?;
            sys::bind_all(&d, ifindex, ifname)?;
            if let Some(g) = fanout_bell {
                join_fanout(&d, g, &ctx("PACKET_FANOUT (doorbell)"))?;
            }
            Some(d)
        } else {
            None
        };

        let fd = sys::packet_socket()?;
        sys::set_packet_opt(
            &fd,
            libc::PACKET_VERSION,
            &TPACKET_V3,
            &ctx("PACKET_VERSION TPACKET_V3"),
        )?;
        if cfg.vnet_hdr {
            sys::set_packet_opt(&fd, libc::PACKET_VNET_HDR, &1i32, &ctx("PACKET_VNET_HDR"))?;
        }
        // A TX frame the kernel cannot send is skipped (status back to
        // AVAILABLE) instead of stopping the ring with WRONG_FORMAT.
        sys::set_packet_opt(&fd, libc::PACKET_LOSS, &1i32, &ctx("PACKET_LOSS"))?;
        if cfg.qdisc_bypass {
            sys::set_packet_opt(
                &fd,
                libc::PACKET_QDISC_BYPASS,
                &1i32,
                &ctx("PACKET_QDISC_BYPASS"),
            )?;
        }
        // Our own transmissions (and anything else leaving the interface)
        // never come back into the RX ring: no forwarding loops.
        sys::set_packet_opt(
            &fd,
            libc::PACKET_IGNORE_OUTGOING,
            &1i32,
            &ctx("PACKET_IGNORE_OUTGOING"),
        )?;
        // Every frame in flight is charged to the send buffer until the
        // kernel frees it; the default (~200 KiB) would hold only three GSO
        // frames. Room for the whole TX ring.
        let want = i32::try_from(cfg.tx_bytes().saturating_mul(2)).unwrap_or(i32::MAX);
        sys::set_send_buffer(&fd, want);

        let rx_req = libc::tpacket_req3 {
            tp_block_size: cfg.block_size,
            tp_block_nr: cfg.block_count,
            tp_frame_size: cfg.frame_size,
            tp_frame_nr: (cfg.block_size / cfg.frame_size) * cfg.block_count,
            tp_retire_blk_tov: cfg.block_timeout_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        sys::set_packet_opt(&fd, libc::PACKET_RX_RING, &rx_req, &ctx("PACKET_RX_RING"))?;
        let (tx_block, tx_blocks, tx_frames) = cfg.tx_geometry();
        let tx_req = libc::tpacket_req3 {
            tp_block_size: tx_block,
            tp_block_nr: tx_blocks,
            tp_frame_size: cfg.frame_size,
            tp_frame_nr: tx_frames,
            tp_retire_blk_tov: 0,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        sys::set_packet_opt(&fd, libc::PACKET_TX_RING, &tx_req, &ctx("PACKET_TX_RING"))?;
        let rx_bytes = cfg.block_size as usize * cfg.block_count as usize;
        let map = Mmap::map(&fd, rx_bytes + tx_block as usize * tx_blocks as usize)?;

        sys::bind_all(&fd, ifindex, ifname)?;
        if let Some(g) = fanout_ring {
            join_fanout(&fd, g, &ctx("PACKET_FANOUT"))?;
        }
        if promisc {
            sys::add_promisc(&fd, ifindex, ifname)?;
        }

        let direct = if cfg.direct {
            Some(DirectTx::open(ifindex, ifname, cfg.qdisc_bypass)?)
        } else {
            None
        };

        let map = Arc::new(map);
        let fd = Arc::new(fd);
        Ok(Queue {
            direct,
            rx: RxRing {
                map: map.clone(),
                base: map.ptr(),
                block_size: cfg.block_size as usize,
                block_count: cfg.block_count as usize,
                cur: 0,
                off: 0,
                seen: 0,
                peek: cfg.peek,
                vnet: cfg.vnet_hdr,
            },
            tx: TxRing {
                // SAFETY: the TX ring starts right after the RX ring inside the
                // same mapping of rx_bytes + tx bytes.
                base: unsafe { map.ptr().add(rx_bytes) },
                map,
                sock: fd.clone(),
                block_size: tx_block as usize,
                per_block: (tx_block / cfg.frame_size) as usize,
                frame_size: cfg.frame_size as usize,
                frames: tx_frames as usize,
                head: 0,
                pending: 0,
                vnet: cfg.vnet_hdr,
            },
            fd,
            doorbell,
        })
    }
}

/// PACKET_STATISTICS: (packets seen, packets dropped, queue freezes) since
/// the previous call (the kernel resets them on read).
pub fn kernel_stats(fd: RawFd) -> SysResult<(u32, u32, u32)> {
    // struct tpacket_stats_v3 { tp_packets, tp_drops, tp_freeze_q_cnt }.
    let s: [u32; 3] = sys::get_packet_opt(fd, libc::PACKET_STATISTICS, "PACKET_STATISTICS")?;
    Ok((s[0], s[1], s[2]))
}

fn load_acquire(p: *const u8) -> u32 {
    // SAFETY: callers pass a 4-byte aligned address inside the live ring
    // mapping; the kernel updates the word concurrently, hence the atomic.
    unsafe { AtomicU32::from_ptr(p as *mut u32).load(Ordering::Acquire) }
}

fn store_release(p: *mut u8, v: u32) {
    // SAFETY: as in load_acquire; the release orders our earlier writes to
    // the frame before the status change the kernel looks at.
    unsafe { AtomicU32::from_ptr(p as *mut u32).store(v, Ordering::Release) }
}

fn read_u32(p: *const u8) -> u32 {
    // SAFETY: callers pass an aligned address inside the live mapping; the
    // volatile read keeps the compiler from caching kernel-written memory.
    unsafe { std::ptr::read_volatile(p as *const u32) }
}

fn read_u16(p: *const u8) -> u16 {
    // SAFETY: as read_u32, for a 2-byte aligned field.
    unsafe { std::ptr::read_volatile(p as *const u16) }
}

fn write_u32(p: *mut u8, v: u32) {
    // SAFETY: as read_u32, for a field user space owns at this point.
    unsafe { std::ptr::write_volatile(p as *mut u32, v) }
}

/// One received frame, borrowed from the RX ring until the next call.
pub struct RxFrame<'a> {
    /// The Ethernet frame as captured (`tp_snaplen` bytes from `tp_mac`).
    pub data: &'a [u8],
    /// Length on the wire (`tp_len`); larger than `data` when truncated.
    pub wire_len: u32,
    pub vnet: Option<[u8; VNET_HDR_LEN]>,
    pub vlan: Option<VlanTag>,
}

/// Result of looking for the next frame.
pub enum RxNext<'a> {
    Frame(RxFrame<'a>),
    /// Kernel metadata out of bounds: the rest of the block was skipped.
    Corrupt,
    Empty,
}

/// The TPACKET_V3 RX ring.
///
/// Blocks are handed to user space when full or when the retire timer
/// (tp_retire_blk_tov, in jiffies: 4 ms at HZ=250) fires, which alone would
/// add milliseconds of latency at low rates — what seed 000 measured through
/// VPP. With `peek`, packets are also read out of the block the kernel is
/// still filling: the kernel writes a V3 packet header's tp_status as 0 when
/// it reserves the slot and ORs in TP_STATUS_USER after the copy, then fills
/// tp_len/tp_snaplen/tp_mac. Every block is zeroed as far as the kernel
/// used it before it is given back (fresh ring memory is zeroed by the
/// kernel), so a header anywhere in an open block is complete exactly when
/// TP_STATUS_USER, tp_snaplen and tp_mac are all non-zero. Zeroing only the
/// first 32 KiB, as before, left a frame whose header lay past it (one
/// after a 64 KiB GSO frame) waiting for the block to close: for the next
/// frame, or the retire timer. That relies on x86's ordered stores, hence
/// x86 only.
pub struct RxRing {
    #[allow(dead_code)] // keeps the mapping alive as long as `base` is used
    map: Arc<Mmap>,
    base: *mut u8,
    block_size: usize,
    block_count: usize,
    cur: usize,
    /// Offset of the next packet in the current block (0: not started).
    off: usize,
    /// Packets of the current block already handed out.
    seen: u32,
    peek: bool,
    vnet: bool,
}

// SAFETY: the ring is used by the one worker thread that owns it; the raw
// pointer refers to a mapping kept alive by `map`.
unsafe impl Send for RxRing {}

impl RxRing {
    fn block(&self) -> *mut u8 {
        // SAFETY: cur < block_count, so the offset stays inside the mapping.
        unsafe { self.base.add(self.cur * self.block_size) }
    }

    /// Gives the current block back to the kernel and moves to the next.
    fn release(&mut self) {
        let blk = self.block();
        if self.peek {
            // Zero what this round wrote (see the type's doc). A pass over
            // every byte forwarded, on lines the worker has just read: TCP
            // through the forwarder was as fast as with 32 KiB zeroed (6
            // alternating runs).
            let used = (read_u32(unsafe_add(blk, BD_BLK_LEN)) as usize).min(self.block_size);
            if used > BLOCK_DESC_LEN {
                // SAFETY: [BLOCK_DESC_LEN, used) lies inside this block, which
                // user space owns until the status store below.
                unsafe { std::ptr::write_bytes(blk.add(BLOCK_DESC_LEN), 0, used - BLOCK_DESC_LEN) };
            }
        }
        store_release(unsafe_add(blk, BD_STATUS), TP_STATUS_KERNEL);
        self.cur = (self.cur + 1) % self.block_count;
        self.off = 0;
        self.seen = 0;
    }

    /// The next frame, if one is ready. Frames are returned in ring order.
    pub fn next_frame(&mut self) -> RxNext<'_> {
        loop {
            let blk = self.block();
            let closed = load_acquire(unsafe_add(blk, BD_STATUS)) & TP_STATUS_USER != 0;
            if closed {
                let n = read_u32(unsafe_add(blk, BD_NUM_PKTS));
                if self.seen >= n {
                    self.release();
                    continue;
                }
                if self.off == 0 {
                    self.off = read_u32(unsafe_add(blk, BD_FIRST_PKT)) as usize;
                }
                return match self.parse(blk, true) {
                    Some(raw) => RxNext::Frame(raw.into_frame()),
                    None => {
                        self.release();
                        RxNext::Corrupt
                    }
                };
            }
            if !self.peek {
                return RxNext::Empty;
            }
            if self.off == 0 {
                self.off = BLOCK_DESC_LEN;
            }
            // The block was zeroed (release), so a header the kernel has
            // not finished reads as not ready.
            return match self.parse(blk, false) {
                Some(raw) => RxNext::Frame(raw.into_frame()),
                None => RxNext::Empty,
            };
        }
    }

    /// Reads the packet at `self.off`. In a closed block every packet up to
    /// num_pkts is complete; in an open one only a finished header counts.
    /// None: bounds broken (closed) or not ready (open).
    fn parse(&mut self, blk: *mut u8, closed: bool) -> Option<RawFrame> {
        let off = self.off;
        if off + TP3_HDR_LEN + SLL_LEN > self.block_size {
            return None;
        }
        let h = unsafe_add(blk, off);
        let status = load_acquire(unsafe_add(h, H_STATUS));
        let snaplen = read_u32(unsafe_add(h, H_SNAPLEN)) as usize;
        let mac = read_u16(unsafe_add(h, H_MAC)) as usize;
        if !closed && (status & TP_STATUS_USER == 0 || snaplen == 0 || mac == 0) {
            return None;
        }
        let wire_len = read_u32(unsafe_add(h, H_LEN));
        let next = read_u32(unsafe_add(h, H_NEXT)) as usize;
        let room = self.block_size - off;
        let vnet_room = if self.vnet { VNET_HDR_LEN } else { 0 };
        if mac < TP3_HDR_LEN + SLL_LEN + vnet_room
            || mac + snaplen > room
            || (next != 0 && next > room)
        {
            return None;
        }
        self.seen += 1;
        self.off = off + next;
        let vlan = (status & TP_STATUS_VLAN_VALID != 0).then(|| VlanTag {
            tpid: if status & TP_STATUS_VLAN_TPID_VALID != 0 {
                read_u16(unsafe_add(h, H_VLAN_TPID))
            } else {
                0x8100
            },
            tci: read_u32(unsafe_add(h, H_VLAN_TCI)) as u16,
        });
        let vnet = self.vnet.then(|| {
            let mut b = [0u8; VNET_HDR_LEN];
            // SAFETY: mac >= header + sll + VNET_HDR_LEN was checked, so the
            // 10 bytes before tp_mac are inside this packet's slot.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    h.add(mac - VNET_HDR_LEN),
                    b.as_mut_ptr(),
                    VNET_HDR_LEN,
                )
            };
            b
        });
        Some(RawFrame {
            data: unsafe_add(h, mac),
            len: snaplen,
            wire_len,
            vnet,
            vlan,
        })
    }
}

/// A bounds-checked frame location, before it is borrowed as a slice.
struct RawFrame {
    data: *const u8,
    len: usize,
    wire_len: u32,
    vnet: Option<[u8; VNET_HDR_LEN]>,
    vlan: Option<VlanTag>,
}

impl RawFrame {
    /// Borrows the frame for as long as the ring is borrowed.
    fn into_frame<'a>(self) -> RxFrame<'a> {
        // SAFETY: parse() checked [data, data + len) lies inside the current
        // block. The kernel does not write to a completed packet's bytes
        // again until the block is released, which needs `&mut RxRing`; the
        // caller ties 'a to its borrow of the ring, so the slice dies first.
        let data = unsafe { std::slice::from_raw_parts(self.data, self.len) };
        RxFrame {
            data,
            wire_len: self.wire_len,
            vnet: self.vnet,
            vlan: self.vlan,
        }
    }
}

fn unsafe_add(p: *mut u8, off: usize) -> *mut u8 {
    // SAFETY: callers only pass offsets that stay inside the ring mapping
    // (block index < block_count, offsets < block_size checked by callers).
    unsafe { p.add(off) }
}

/// The TX ring: fixed-size frame slots the kernel sends in order.
pub struct TxRing {
    #[allow(dead_code)] // keeps the mapping alive as long as `base` is used
    map: Arc<Mmap>,
    base: *mut u8,
    /// The socket the ring belongs to, kicked to send; shared with the
    /// RX ring's worker in --worker-per-direction mode.
    sock: Arc<OwnedFd>,
    block_size: usize,
    per_block: usize,
    frame_size: usize,
    frames: usize,
    head: usize,
    pending: u32,
    vnet: bool,
}

// SAFETY: as for RxRing: one owning thread, mapping kept alive by `map`.
unsafe impl Send for TxRing {}

impl TxRing {
    fn slot(&self, i: usize) -> *mut u8 {
        unsafe_add(
            self.base,
            (i / self.per_block) * self.block_size + (i % self.per_block) * self.frame_size,
        )
    }

    /// Bytes of frame data (virtio header included) one slot holds.
    pub fn room(&self) -> usize {
        self.frame_size - TP3_HDR_LEN
    }

    pub fn vnet(&self) -> bool {
        self.vnet
    }

    /// The data area of the next free slot, or None when the ring is full.
    pub fn reserve(&mut self) -> Option<&mut [u8]> {
        let h = self.slot(self.head);
        let st = load_acquire(unsafe_add(h, H_STATUS));
        // AVAILABLE (possibly with timestamp bits) or WRONG_FORMAT (a frame
        // the kernel refused; PACKET_LOSS makes that rare) are ours to reuse.
        if st & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING) != 0 {
            return None;
        }
        let room = self.room();
        // SAFETY: the slot's data area [48, frame_size) is inside the mapping
        // and owned by user space while its status is AVAILABLE.
        Some(unsafe { std::slice::from_raw_parts_mut(h.add(TP3_HDR_LEN), room) })
    }

    /// Hands the reserved slot, holding `len` bytes, to the kernel.
    pub fn commit(&mut self, len: usize) {
        let h = self.slot(self.head);
        write_u32(unsafe_add(h, H_NEXT), 0);
        write_u32(unsafe_add(h, H_SNAPLEN), len as u32);
        write_u32(unsafe_add(h, H_LEN), len as u32);
        store_release(unsafe_add(h, H_STATUS), TP_STATUS_SEND_REQUEST);
        self.head = (self.head + 1) % self.frames;
        self.pending += 1;
    }

    pub fn pending(&self) -> u32 {
        self.pending
    }

    /// Kicks the kernel to send what was committed. Err(errno) on failure;
    /// on EAGAIN/ENOBUFS (socket send buffer full) the frames stay pending
    /// so the next flush kicks again.
    pub fn flush(&mut self) -> Result<(), i32> {
        if self.pending == 0 {
            return Ok(());
        }
        match sys::kick_tx(self.sock.as_raw_fd()) {
            // The kernel stops early, yet reports success, when the send
            // buffer fills after it sent at least one frame (possible when
            // net.core.wmem_max capped the buffer we asked for). It sends in
            // ring order, so all are gone once the last one committed has
            // left SEND_REQUEST; until then, report a stall so the caller
            // kicks again and no large frame overtakes the leftovers.
            Ok(()) if self.last_committed_waiting() => Err(libc::EAGAIN),
            Ok(()) => {
                self.pending = 0;
                Ok(())
            }
            Err(e) => {
                if e != libc::EAGAIN && e != libc::ENOBUFS {
                    self.pending = 0;
                }
                Err(e)
            }
        }
    }

    /// True when the frame committed last is still waiting to be sent.
    fn last_committed_waiting(&self) -> bool {
        let last = self.slot((self.head + self.frames - 1) % self.frames);
        load_acquire(unsafe_add(last, H_STATUS)) & TP_STATUS_SEND_REQUEST != 0
    }

    /// True when the next slot is free.
    pub fn has_room(&self) -> bool {
        let st = load_acquire(unsafe_add(self.slot(self.head), H_STATUS));
        st & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING) == 0
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}

/// Converts a SysError for callers that want the errno.
pub fn errno_of(e: &SysError) -> i32 {
    e.errno().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RingConfig {
        RingConfig {
            block_size: 256 * 1024,
            block_count: 32,
            frame_size: 2048 * 33,
            tx_frames: 128,
            block_timeout_ms: 1,
            qdisc_bypass: true,
            vnet_hdr: true,
            peek: true,
            doorbell: true,
            direct: true,
        }
    }

    #[test]
    fn validates_geometry() {
        assert!(cfg().validate().is_ok());
        let bad_page = RingConfig {
            block_size: 100_000,
            ..cfg()
        };
        assert!(bad_page.validate().unwrap_err().contains("page size"));
        let small_block = RingConfig {
            block_size: 65536,
            ..cfg()
        };
        assert!(small_block.validate().unwrap_err().contains("--frame-size"));
        let odd_frame = RingConfig {
            frame_size: 2050,
            ..cfg()
        };
        assert!(odd_frame.validate().is_err());
        let no_tx = RingConfig {
            tx_frames: 0,
            ..cfg()
        };
        assert!(no_tx.validate().is_err());
    }

    const BLOCK: usize = 256 * 1024;
    /// Where the kernel puts a frame in its slot (header, sockaddr_ll and
    /// virtio-net header before it, aligned).
    const MAC: usize = 80;

    /// Two RX blocks in plain memory, read the way the worker reads them.
    fn fake_rx() -> RxRing {
        let map = Arc::new(Mmap::anonymous(2 * BLOCK));
        RxRing {
            base: map.ptr(),
            map,
            block_size: BLOCK,
            block_count: 2,
            cur: 0,
            off: 0,
            seen: 0,
            peek: true,
            vnet: true,
        }
    }

    /// Plays tpacket_rcv for one frame of `len` bytes at `off` in block
    /// `blk` of `rx`, as far as `done` (false: the slot reserved, the copy
    /// not finished). Returns where the next frame goes.
    fn kernel_writes(rx: &RxRing, blk: usize, off: usize, len: usize, done: bool) -> usize {
        let next = (MAC + len).next_multiple_of(16);
        let b = unsafe_add(rx.base, blk * BLOCK);
        let h = unsafe_add(b, off);
        // At reservation: the slot's length and the block's counters.
        write_u32(unsafe_add(h, H_NEXT), next as u32);
        write_u32(
            unsafe_add(b, BD_NUM_PKTS),
            read_u32(unsafe_add(b, BD_NUM_PKTS)) + 1,
        );
        write_u32(unsafe_add(b, BD_BLK_LEN), (off + next) as u32);
        if done {
            // A payload that reads as a finished header wherever one might
            // land: every u32 is 97 (status USER, a 97-byte frame at 97).
            for i in (0..len / 4 * 4).step_by(4) {
                write_u32(unsafe_add(h, MAC + i), 97);
            }
            write_u32(unsafe_add(h, H_STATUS), TP_STATUS_USER);
            write_u32(unsafe_add(h, H_LEN), len as u32);
            write_u32(unsafe_add(h, H_SNAPLEN), len as u32);
            write_u32(unsafe_add(h, H_MAC), MAC as u32);
        }
        off + next
    }

    fn closes(rx: &RxRing, blk: usize) {
        let b = unsafe_add(rx.base, blk * BLOCK);
        write_u32(unsafe_add(b, BD_FIRST_PKT), BLOCK_DESC_LEN as u32);
        store_release(unsafe_add(b, BD_STATUS), TP_STATUS_USER);
    }

    fn frame_len(rx: &mut RxRing) -> Option<usize> {
        match rx.next_frame() {
            RxNext::Frame(f) => Some(f.data.len()),
            RxNext::Empty => None,
            RxNext::Corrupt => panic!("corrupt"),
        }
    }

    /// Takes both blocks through one round, each filled with frames of
    /// `len` bytes, so that the next round writes over used memory.
    fn one_round(rx: &mut RxRing, len: usize) {
        for blk in 0..2 {
            let mut at = BLOCK_DESC_LEN;
            while at + MAC + len < BLOCK {
                at = kernel_writes(rx, blk, at, len, true);
                assert_eq!(frame_len(rx), Some(len));
            }
            closes(rx, blk);
        }
        assert_eq!(frame_len(rx), None);
        reopens(rx, 0);
    }

    /// Plays prb_open_block on block `blk`, which the worker gave back.
    fn reopens(rx: &RxRing, blk: usize) {
        let b = unsafe_add(rx.base, blk * BLOCK);
        assert_eq!(read_u32(unsafe_add(b, BD_STATUS)), TP_STATUS_KERNEL);
        write_u32(unsafe_add(b, BD_NUM_PKTS), 0);
        write_u32(unsafe_add(b, BD_BLK_LEN), BLOCK_DESC_LEN as u32);
    }

    #[test]
    fn peek_reads_a_frame_behind_a_gso_frame_before_the_block_closes() {
        let mut rx = fake_rx();
        one_round(&mut rx, 1500);
        let at = kernel_writes(&rx, 0, BLOCK_DESC_LEN, 65_000, true);
        let end = kernel_writes(&rx, 0, at, 98, true);
        assert!(at > 32 * 1024, "the second frame starts past 32 KiB");
        // Both while the kernel still owns the block: the second must not
        // wait for the block to close (the next frame, or the retire timer).
        assert_eq!(frame_len(&mut rx), Some(65_000));
        assert_eq!(frame_len(&mut rx), Some(98));
        // A slot reserved but not yet copied is not a frame, though round
        // 1's bytes there would pass for a finished header.
        kernel_writes(&rx, 0, end, 1500, false);
        assert_eq!(frame_len(&mut rx), None);
    }

    #[test]
    fn peek_never_takes_stale_bytes_for_a_header() {
        let mut rx = fake_rx();
        // Round 1: a large frame whose payload fills the place where round
        // 2's second header will be, then a small one.
        let at = kernel_writes(&rx, 0, BLOCK_DESC_LEN, 65_000, true);
        kernel_writes(&rx, 0, at, 1500, true);
        closes(&rx, 0);
        assert_eq!(frame_len(&mut rx), Some(65_000));
        assert_eq!(frame_len(&mut rx), Some(1500));
        // The worker gives block 0 back and waits in block 1, which is
        // handed over empty only so that it moves on to block 0 again.
        assert_eq!(frame_len(&mut rx), None);
        closes(&rx, 1);
        assert_eq!(frame_len(&mut rx), None);
        reopens(&rx, 0);
        // Round 2 in block 0.
        let at2 = kernel_writes(&rx, 0, BLOCK_DESC_LEN, 20_000, true);
        assert!(
            at2 > BLOCK_DESC_LEN + MAC && at2 < at,
            "inside round 1's payload"
        );
        assert_eq!(frame_len(&mut rx), Some(20_000));
        // Round 1's payload there was zeroed, not read as a header, even
        // once the kernel has reserved the slot.
        assert_eq!(frame_len(&mut rx), None);
        kernel_writes(&rx, 0, at2, 700, false);
        assert_eq!(frame_len(&mut rx), None);
    }

    #[test]
    fn tx_geometry_covers_requested_slots() {
        let page = sys::page_size() as u32;
        // A GSO-sized slot needs whole pages: one slot per block.
        let (block, blocks, frames) = cfg().tx_geometry();
        assert_eq!(block % page, 0);
        assert_eq!(block / cfg().frame_size, 1);
        assert_eq!((blocks, frames), (128, 128));
        // Small slots share blocks; never fewer slots than asked for.
        let small = RingConfig {
            frame_size: 2048,
            tx_frames: 5,
            ..cfg()
        };
        let (block, blocks, frames) = small.tx_geometry();
        assert_eq!(frames, (block / 2048) * blocks);
        assert!(frames >= 5);
        assert_eq!(small.tx_room(), 2048 - TP3_HDR_LEN);
    }
}

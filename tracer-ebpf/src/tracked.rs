//! Which packets are followed: skb addresses and fingerprints, kept in
//! direct-mapped tables (array maps, one slot per hash value) instead of LRU
//! hash maps.
//!
//! Why: an LRU hash insert into a full map evicts under the LRU's locks, and
//! the fingerprint table is always full (nothing says when a fingerprint is
//! no longer needed). Measured following an iperf3 stream on 6.18
//! (bpf_stats): the first hop of each packet, which inserts into both maps,
//! cost 1.9-2.0 us against 0.9 us for a hop that only looks up. An array
//! slot lookup is inlined by the verifier into a few instructions.
//!
//! The price is collisions: a new entry overwrites whatever shared its slot.
//! With 2^16 address slots and 2^17 fingerprint slots an entry lives about
//! two seconds at 30k new packets/s, far longer than a packet crosses the
//! host (the LRU maps it replaces kept fingerprints half a second at that
//! rate). An skb whose address entry was overwritten is still followed
//! through its fingerprint; one without a fingerprint (not IP) may lose its
//! later hops.
//!
//! Slots are written without locks. A fingerprint slot is one aligned u64
//! (BPF stores of 8 bytes are atomic). An address slot is two words, so a
//! reader checks the address again after reading the fingerprint, and a
//! writer clears the address first: a torn slot reads as empty.

use aya_ebpf::{macros::map, maps::Array};

const SKB_SLOTS: u32 = 1 << 16;
const FP_SLOTS: u32 = 1 << 17;

#[derive(Clone, Copy)]
#[repr(C)]
pub struct SkbSlot {
    skb: u64,
    fp: u64,
}

/// skb address -> the fingerprint it had when it was last seen followed.
#[map]
static TRACKED: Array<SkbSlot> = Array::with_max_entries(SKB_SLOTS, 0);

/// Fingerprints of followed packets, so a copy of one (a new skb built by
/// AF_PACKET, skb_copy, a userspace datapath) is followed too.
#[map]
static TRACKED_FP: Array<u64> = Array::with_max_entries(FP_SLOTS, 0);

#[inline(always)]
fn skb_index(skb: u64) -> u32 {
    // sk_buffs come from a slab (256-byte stride); a multiplicative hash
    // spreads the address bits over the index.
    (skb.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 48) as u32 & (SKB_SLOTS - 1)
}

#[inline(always)]
fn fp_index(fp: u64) -> u32 {
    // A fingerprint is already a hash.
    (fp ^ (fp >> 32)) as u32 & (FP_SLOTS - 1)
}

/// A volatile load: another program on this CPU (an interrupt) or on
/// another CPU may write the slot; also used by staging.rs.
#[inline(always)]
pub(crate) fn load<T: Copy>(p: *const T) -> T {
    // SAFETY: callers pass a pointer into a live map value.
    unsafe { core::ptr::read_volatile(p) }
}

/// A volatile store; an aligned store of up to 8 bytes is not torn.
#[inline(always)]
pub(crate) fn store<T: Copy>(p: *mut T, v: T) {
    // SAFETY: as in load.
    unsafe { core::ptr::write_volatile(p, v) }
}

/// The fingerprint recorded for a followed skb address.
#[inline(always)]
pub fn skb_get(skb: u64) -> Option<u64> {
    let s = TRACKED.get_ptr_mut(skb_index(skb))?;
    // SAFETY: a valid map value pointer.
    let (a, f) = unsafe { (&raw mut (*s).skb, &raw mut (*s).fp) };
    if skb == 0 || load(a) != skb {
        return None;
    }
    let fp = load(f);
    if load(a) != skb {
        return None;
    }
    Some(fp)
}

#[inline(always)]
pub fn skb_insert(skb: u64, fp: u64) {
    if let Some(s) = TRACKED.get_ptr_mut(skb_index(skb)) {
        // SAFETY: a valid map value pointer.
        let (a, f) = unsafe { (&raw mut (*s).skb, &raw mut (*s).fp) };
        store(a, 0);
        store(f, fp);
        store(a, skb);
    }
}

#[inline(always)]
pub fn skb_remove(skb: u64) {
    if let Some(s) = TRACKED.get_ptr_mut(skb_index(skb)) {
        // SAFETY: a valid map value pointer.
        let a = unsafe { &raw mut (*s).skb };
        if load(a) == skb {
            store(a, 0);
        }
    }
}

/// Follows packets with fingerprint `fp` (0, no fingerprint, is ignored).
#[inline(always)]
pub fn fp_insert(fp: u64) {
    if fp == 0 {
        return;
    }
    if let Some(p) = TRACKED_FP.get_ptr_mut(fp_index(fp)) {
        store(p, fp);
    }
}

/// Whether `fp` belongs to a followed packet (0 never does).
#[inline(always)]
pub fn fp_contains(fp: u64) -> bool {
    fp != 0
        && TRACKED_FP
            .get_ptr(fp_index(fp))
            .is_some_and(|p| load(p) == fp)
}

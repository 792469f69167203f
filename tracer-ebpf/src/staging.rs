//! Events are staged per CPU and written to the ring buffer in batches of
//! up to `BATCH_BYTES`, one record per batch (the record is the events back
//! to back, each as long as its `wire_len`: the header, plus the packet
//! bytes only when the event carries them; user space splits it by
//! `wire_len`).
//!
//! Why: following iperf3 on 6.18, reserving and submitting a ring record
//! was about half of an event's cost in the kernel. Every reserve takes the
//! ring's lock and reads the consumer position, and every submit publishes
//! the producer position; those cache lines move between the CPUs that
//! write and the CPU that reads, once per event. A batch pays that once.
//!
//! A batch waits until it is full, so user space flushes each CPU's
//! partial batch every tick: it runs `skbtrace_flush` on each CPU
//! (BPF_PROG_TEST_RUN with BPF_F_TEST_RUN_ON_CPU). Records from different
//! CPUs then arrive out of time order, and user space sorts them: see
//! `tracer::source` for how a flush tells it which events are complete.
//!
//! Nesting: a program can interrupt another on the same CPU (a softirq
//! over process context, the flush's IPI over anything, a softirq over the
//! flush when user space flushes its own CPU). `depth` counts
//! the programs in the middle of an event on this CPU. Only the outermost
//! writes to the batch; a nested one writes its event to `nested` and
//! outputs it alone at once. The flush refuses to touch a CPU whose depth
//! is not 0 (user space retries, and until one succeeds holds back events
//! newer than that CPU's last flush). Each event takes its
//! timestamp after raising `depth`, which is what lets a successful flush
//! vouch for every event stamped before it started.
//!
//! Flushing costs the CPU an interrupt, so user space first reads every
//! CPU's `off`, `depth` and first stamp (through [`snapshot`], run on its
//! own CPU: no interrupt) and flushes only CPUs whose batch is old.
//! What the read vouches for on a CPU: when `off` and `depth` (one 8-byte
//! word, loaded at once) are both 0, every event stamped before the read;
//! otherwise every event stamped before the first event's `ts_ns` (at the
//! start of `buf`). That slot is written only by an outermost program into
//! an empty batch, so when it was stamped nothing older was staged or in
//! flight on that CPU, whatever moment of the batch's life the read caught.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::BPF_RB_NO_WAKEUP,
    helpers::{bpf_ktime_get_ns, generated::bpf_map_lookup_percpu_elem},
    macros::map,
    maps::{Array, PerCpuArray},
};
use probes::{
    BATCH_BYTES, CAPTURE_LEN, Event, SNAP_CPUS, STAGE_EVENTS, STAGE_FIRST_TS,
    STAGE_NESTED as NESTED, Stage, StageSnap, wire_len,
};

use crate::{
    EVENTS, bump, record_bytes,
    tracked::{load, store},
    wakeup_flags,
};

#[map]
static STAGE: PerCpuArray<Stage> = PerCpuArray::with_max_entries(1, 0);

/// Every CPU's batch state, copied by [`snapshot`] for the reader.
#[map]
static SNAP: Array<[StageSnap; SNAP_CPUS]> = Array::with_max_entries(1, 0);

/// Bytes of `Stage::buf`.
const BUF: usize = BATCH_BYTES + Event::SIZE;

/// A staged event being written: from [`begin`] to [`commit`].
pub struct Slot {
    st: *mut Stage,
    depth: u32,
    pub ev: *mut Event,
}

/// A slot for one event, its `ts_ns` already stamped; None when nesting
/// is deeper than anything the kernel does (counted lost by the caller).
/// The slot has room for a whole `Event`; `commit` keeps only `wire_len`.
#[inline(always)]
pub fn begin() -> Option<Slot> {
    let st = STAGE.get_ptr_mut(0)?;
    // SAFETY: this CPU's STAGE value; fields are reached by raw pointers.
    unsafe {
        let depth = load(&raw const (*st).depth);
        if depth as usize > NESTED {
            return None;
        }
        store(&raw mut (*st).depth, depth + 1);
        let ev = if depth == 0 {
            // Below BATCH_BYTES - Event::SIZE between batches (commit writes
            // a batch out past it); the mask tells the verifier so, and
            // that the slot is 8-byte aligned.
            let off = load(&raw const (*st).off) as usize & (BATCH_BYTES - 8);
            (&raw mut (*st).buf).cast::<u8>().add(off).cast::<Event>()
        } else {
            &raw mut (*st).nested[(depth as usize - 1) & (NESTED - 1)]
        };
        // After `depth` is raised: see the module doc.
        (*ev).ts_ns = bpf_ktime_get_ns();
        Some(Slot { st, depth, ev })
    }
}

/// The slot's event is complete: a nested one goes to the ring now, an
/// outermost one when its batch is full. Sets its `wire_len` from its
/// `cap_len`.
#[inline(always)]
pub fn commit(slot: Slot, probe: u16) {
    let Slot { st, depth, ev } = slot;
    // SAFETY: as in begin.
    unsafe {
        let cap = (*ev).cap_len as usize;
        let wire = wire_len(if cap > CAPTURE_LEN { CAPTURE_LEN } else { cap });
        // The verifier bounds the rounding up to 8 loosely (up to 246), so
        // the bound is checked again, after a volatile read that keeps the
        // compiler (which knows better) from dropping the check.
        let wire = core::ptr::read_volatile(&wire);
        let wire = if wire > Event::SIZE {
            Event::SIZE
        } else {
            wire
        };
        (*ev).wire_len = wire as u16;
        if depth != 0 {
            let bytes = core::slice::from_raw_parts(ev.cast::<u8>(), wire);
            if EVENTS
                .output::<[u8]>(bytes, wakeup_flags(record_bytes(wire), true))
                .is_ok()
            {
                bump(probe, |s| s.emitted += 1);
            } else {
                bump(probe, |s| s.lost += 1);
            }
        } else {
            bump(probe, |s| s.emitted += 1);
            let count = load(&raw const (*st).count);
            store(
                &raw mut (*st).probes[count as usize & (STAGE_EVENTS - 1)],
                probe,
            );
            let off = load(&raw const (*st).off) as usize + wire;
            if off > BATCH_BYTES - Event::SIZE {
                output(st, off, count + 1, wakeup_flags(record_bytes(off), true));
                store(&raw mut (*st).off, 0);
                store(&raw mut (*st).count, 0);
            } else {
                store(&raw mut (*st).off, off as u32);
                store(&raw mut (*st).count, count + 1);
            }
        }
        store(&raw mut (*st).depth, depth);
    }
}

/// Gives the slot back unwritten (`SKBTRACE_STOP_AFTER=reserve`).
#[inline(always)]
pub fn abandon(slot: Slot) {
    // SAFETY: as in begin.
    unsafe { store(&raw mut (*slot.st).depth, slot.depth) }
}

/// Writes the first `len` staged bytes (`count` events) as one record;
/// when the ring is full they are counted lost instead of emitted.
///
/// # Safety
/// `st` is this CPU's STAGE value.
#[inline(always)]
unsafe fn output(st: *mut Stage, len: usize, count: u32, flags: u64) {
    // Never past `buf`: commit and flush stage at most BUF bytes; the
    // check is what the verifier sees.
    if len == 0 || len > BUF {
        return;
    }
    // SAFETY: len <= BUF, the length of `buf`.
    let bytes = unsafe { core::slice::from_raw_parts((&raw const (*st).buf).cast::<u8>(), len) };
    if EVENTS.output::<[u8]>(bytes, flags).is_err() {
        // Indexed, not iterated: the verifier cannot bound a slice iterator.
        for i in 0..STAGE_EVENTS {
            if i >= count as usize {
                break;
            }
            // SAFETY: i < STAGE_EVENTS.
            let probe = unsafe { (*st).probes[i] };
            bump(probe, |s| {
                s.emitted = s.emitted.wrapping_sub(1);
                s.lost += 1;
            });
        }
    }
}

/// Writes this CPU's partial batch: 0 when done (or nothing was staged),
/// 1 when a program is in the middle of an event here (try again).
#[inline(always)]
pub fn flush() -> i32 {
    let Some(st) = STAGE.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's STAGE value.
    unsafe {
        if load(&raw const (*st).depth) != 0 {
            return 1;
        }
        // Held like an event's: when user space flushes its own CPU, the
        // test run is in process context with interrupts on, and a softirq
        // on their way out runs skb programs here. Seeing depth 0 they would
        // append to the batch this is writing out (and lose the event when
        // `off` is reset) or write it out twice; seeing 1 they write their
        // events straight to the ring.
        store(&raw mut (*st).depth, 1);
        let off = load(&raw const (*st).off) as usize;
        if off != 0 {
            // User space reads right after the flush; no wakeup needed.
            output(
                st,
                off,
                load(&raw const (*st).count),
                BPF_RB_NO_WAKEUP as u64,
            );
            store(&raw mut (*st).off, 0);
            store(&raw mut (*st).count, 0);
        }
        store(&raw mut (*st).depth, 0);
    }
    0
}

/// Copies the batch state of CPUs `0..cpus` into SNAP. User space runs it
/// on its own CPU (a test run, no interrupt anywhere) and then reads SNAP,
/// instead of reading STAGE itself: the kernel copies a map value for a
/// system call with no promise that a word is read at once, and a read of
/// `off` from before a commit with `depth` from after it would look like
/// an idle CPU with nothing staged while an event waits in the batch.
/// Here each word is one load.
#[inline(always)]
pub fn snapshot(cpus: u64) -> i32 {
    let Some(out) = SNAP.get_ptr_mut(0) else {
        return 1;
    };
    let key = 0u32;
    for cpu in 0..SNAP_CPUS {
        if cpu as u64 >= cpus {
            break;
        }
        // SAFETY: STAGE is a per-CPU array map (the static is its
        // definition); the helper returns CPU `cpu`'s value or null.
        let st = unsafe {
            bpf_map_lookup_percpu_elem(
                (&raw const STAGE).cast_mut().cast::<c_void>(),
                (&raw const key).cast::<c_void>(),
                cpu as u32,
            )
        }
        .cast::<u8>();
        let snap = if st.is_null() {
            // Unknown (not a CPU number the kernel has): reads as a program
            // in flight with nothing vouched for, so that CPU is flushed.
            StageSnap {
                off_depth: u64::MAX,
                first_ts: 0,
            }
        } else {
            // SAFETY: a live per-CPU value of size_of::<Stage>() bytes;
            // both words are 8-byte aligned in it (probes checks).
            unsafe {
                StageSnap {
                    off_depth: load(st.cast::<u64>()),
                    first_ts: load(st.add(STAGE_FIRST_TS).cast::<u64>()),
                }
            }
        };
        // SAFETY: cpu < SNAP_CPUS, inside the one SNAP value.
        unsafe { store(&raw mut (*out)[cpu], snap) };
    }
    0
}

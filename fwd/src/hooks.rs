//! Attach points for uprobes: called once per forwarded frame with the
//! frame's bytes, so `skbtrace` (or bpftrace) can fingerprint it.
//!
//! They are real, separate functions (`#[inline(never)]`, `#[no_mangle]`,
//! C ABI: frame in rdi, len in esi, ifindex in edx on x86-64) whose bodies are
//! an empty asm statement. With no uprobe attached a call costs a few
//! nanoseconds; the asm keeps the optimizer from deleting the call or
//! merging the two functions into one address.

/// A frame read from the RX ring of interface `ifindex` (Ethernet header
/// first, `len` bytes, virtio-net header not included).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn skbtrace_fwd_rx(frame: *const u8, len: u32, ifindex: u32) {
    // SAFETY: the asm is empty: it reads no memory and clobbers nothing; it
    // only marks the arguments as used.
    unsafe {
        std::arch::asm!(
            "/* skbtrace_fwd_rx {0} {1:e} {2:e} */",
            in(reg) frame,
            in(reg) len,
            in(reg) ifindex,
            options(nostack, preserves_flags)
        )
    }
}

/// A frame about to be sent on interface `ifindex`: written to its TX ring
/// (before the kick), or about to go out by `sendmsg` from the RX ring.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn skbtrace_fwd_tx(frame: *const u8, len: u32, ifindex: u32) {
    // SAFETY: as in skbtrace_fwd_rx.
    unsafe {
        std::arch::asm!(
            "/* skbtrace_fwd_tx {0} {1:e} {2:e} */",
            in(reg) frame,
            in(reg) len,
            in(reg) ifindex,
            options(nostack, preserves_flags)
        )
    }
}

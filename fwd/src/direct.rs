//! Large frames sent straight from the RX ring with `sendmsg`.
//!
//! A frame sent through the TX ring is copied twice: by us into the ring
//! slot, and by the kernel out of it (a TX-ring skb's pages are user memory
//! marked zero-copy, and veth copies them before handing the skb to the
//! peer: `skb_copy_ubufs`, seen in `perf record` of a TCP run). A frame sent
//! with `sendmsg` from where it already lies in the RX ring is copied once,
//! by the kernel. For a 64 KiB GSO frame the saved copy is worth far more
//! than the syscall, for a 64-byte frame it is not, so only frames of at
//! least [`DIRECT_MIN`] bytes go this way; small frames keep the batched
//! TX ring.
//!
//! The socket is a second AF_PACKET socket per (interface, queue), bound
//! with protocol 0 so it never receives, with the same virtio-net header and
//! qdisc-bypass settings as the ring socket. A socket with a TX ring cannot
//! do this: its `sendmsg` only kicks the ring.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::frame::{VNET_HDR_LEN, VnetHdr};
use crate::sys::{self, SysResult};

/// Frames at least this long (Ethernet header on) are sent by `sendmsg`.
/// Roughly where one syscall costs what copying the frame once costs.
pub const DIRECT_MIN: usize = 8 * 1024;

/// Send buffer: frames in flight are charged to it until the peer frees
/// them; room for a few dozen 64 KiB frames.
const SNDBUF: i32 = 4 << 20;

/// How a direct send ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    Ok,
    /// The send buffer is full (frames still in flight): nothing was sent,
    /// the caller uses the TX ring instead.
    Busy,
    /// The kernel refused or dropped the frame (errno).
    Failed(i32),
}

pub struct DirectTx {
    fd: OwnedFd,
}

impl DirectTx {
    /// A send socket on `ifindex` that takes a virtio-net header first.
    pub fn open(ifindex: u32, ifname: &str, qdisc_bypass: bool) -> SysResult<DirectTx> {
        let ctx = |s: &str| format!("{s} on {ifname} (send socket)");
        let fd = sys::packet_socket()?;
        sys::set_packet_opt(&fd, libc::PACKET_VNET_HDR, &1i32, &ctx("PACKET_VNET_HDR"))?;
        if qdisc_bypass {
            sys::set_packet_opt(
                &fd,
                libc::PACKET_QDISC_BYPASS,
                &1i32,
                &ctx("PACKET_QDISC_BYPASS"),
            )?;
        }
        sys::set_send_buffer(&fd, SNDBUF);
        sys::bind_send_only(&fd, ifindex, ifname)?;
        Ok(DirectTx { fd })
    }

    /// Sends `frame` (a complete Ethernet frame) with virtio-net header
    /// `vnet` (already checked by `VnetHdr::for_tx`), without blocking.
    pub fn send(&self, vnet: VnetHdr, frame: &[u8]) -> Sent {
        let mut hb = [0u8; VNET_HDR_LEN];
        vnet.write(&mut hb);
        let iov = [
            libc::iovec {
                iov_base: hb.as_mut_ptr().cast(),
                iov_len: VNET_HDR_LEN,
            },
            libc::iovec {
                iov_base: frame.as_ptr() as *mut libc::c_void,
                iov_len: frame.len(),
            },
        ];
        // SAFETY: msghdr is plain old data; all-zero is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = iov.len();
        // SAFETY: msg points at two live iovecs over `hb` and `frame`, which
        // outlive the call; the kernel only reads them.
        let rc = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, libc::MSG_DONTWAIT) };
        if rc >= 0 {
            return Sent::Ok;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) => Sent::Busy,
            e => Sent::Failed(e.unwrap_or(libc::EIO)),
        }
    }
}

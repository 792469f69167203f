//! Thin, checked wrappers over the AF_PACKET system calls the forwarder needs.
//!
//! Everything that touches a raw fd or a kernel struct lives here, so the rest
//! of the crate deals in `OwnedFd`s and `Result`s.

use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use thiserror::Error;

/// An error from a system call, with what was being attempted.
#[derive(Debug, Error)]
#[error("{what}: {source}")]
pub struct SysError {
    pub what: String,
    #[source]
    pub source: io::Error,
}

impl SysError {
    pub fn last(what: impl Into<String>) -> SysError {
        SysError {
            what: what.into(),
            source: io::Error::last_os_error(),
        }
    }

    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

pub type SysResult<T> = Result<T, SysError>;

/// `socket(AF_PACKET, SOCK_RAW, 0)`: protocol 0 so that nothing is queued
/// before the rings exist; `bind` later sets ETH_P_ALL.
pub fn packet_socket() -> SysResult<OwnedFd> {
    // SAFETY: plain syscall with constant arguments; the returned fd is
    // checked and then owned exactly once.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(SysError::last(
            "socket(AF_PACKET, SOCK_RAW) (needs CAP_NET_RAW: run as root)",
        ));
    }
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(fd, SOL_PACKET, opt, &val)` for any plain-old-data value.
pub fn set_packet_opt<T: Copy>(
    fd: &OwnedFd,
    opt: libc::c_int,
    val: &T,
    what: &str,
) -> SysResult<()> {
    // SAFETY: `val` points to a live, initialized T of the size we pass.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            opt,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(SysError::last(format!("setsockopt({what})")));
    }
    Ok(())
}

pub fn set_sock_opt_int(
    fd: &OwnedFd,
    level: libc::c_int,
    opt: libc::c_int,
    val: libc::c_int,
    what: &str,
) -> SysResult<()> {
    // SAFETY: `val` is a live c_int and we pass its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&val as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(SysError::last(format!("setsockopt({what})")));
    }
    Ok(())
}

/// Sets the send buffer to `bytes`: SO_SNDBUFFORCE (needs CAP_NET_ADMIN),
/// else SO_SNDBUF, which net.core.wmem_max caps. Best effort: the default
/// buffer works, only with fewer frames in flight.
pub fn set_send_buffer(fd: &OwnedFd, bytes: i32) {
    if set_sock_opt_int(
        fd,
        libc::SOL_SOCKET,
        libc::SO_SNDBUFFORCE,
        bytes,
        "SO_SNDBUFFORCE",
    )
    .is_err()
    {
        let _ = set_sock_opt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, bytes, "SO_SNDBUF");
    }
}

/// `getsockopt(fd, SOL_PACKET, opt)` into a plain-old-data value.
pub fn get_packet_opt<T: Copy + Default>(fd: RawFd, opt: libc::c_int, what: &str) -> SysResult<T> {
    let mut val = T::default();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `val` is a live T and `len` its size; the kernel writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            opt,
            (&mut val as *mut T).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(SysError::last(format!("getsockopt({what})")));
    }
    Ok(val)
}

/// Pending socket error (SO_ERROR), which also clears it. 0 when none.
pub fn take_socket_error(fd: RawFd) -> i32 {
    let mut err: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` is a live c_int and `len` its size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 { 0 } else { err }
}

/// Binds a packet socket to one interface for all protocols.
pub fn bind_all(fd: &OwnedFd, ifindex: u32, ifname: &str) -> SysResult<()> {
    bind(fd, ifindex, libc::ETH_P_ALL as u16, ifname)
}

/// Binds a packet socket to one interface with protocol 0: it sends on that
/// interface and receives nothing (no receive hook is registered).
pub fn bind_send_only(fd: &OwnedFd, ifindex: u32, ifname: &str) -> SysResult<()> {
    bind(fd, ifindex, 0, ifname)
}

fn bind(fd: &OwnedFd, ifindex: u32, protocol: u16, ifname: &str) -> SysResult<()> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is a live sockaddr_ll and we pass its exact size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(SysError::last(format!("bind AF_PACKET socket to {ifname}")));
    }
    Ok(())
}

/// Interface index by name in the current network namespace; None when it does not exist.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

fn ifreq_for(name: &str) -> Option<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
        return None;
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Some(ifr)
}

/// MTU and IFF_UP/IFF_RUNNING of an interface, through a throwaway socket.
pub fn link_info(name: &str) -> SysResult<(u32, bool)> {
    let mut ifr = ifreq_for(name).ok_or_else(|| SysError {
        what: format!("interface name {name:?}"),
        source: io::Error::from_raw_os_error(libc::EINVAL),
    })?;
    // SAFETY: plain syscall; the fd is checked and owned below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(SysError::last("socket(AF_INET) for ioctl"));
    }
    // SAFETY: raw is a fresh, valid descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: SIOCGIFMTU reads and writes an ifreq that lives across the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut ifr) } < 0 {
        return Err(SysError::last(format!("SIOCGIFMTU {name}")));
    }
    // SAFETY: the kernel filled the ifru_mtu member of the union for SIOCGIFMTU.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu } as u32;
    // SAFETY: as above, for SIOCGIFFLAGS.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) } < 0 {
        return Err(SysError::last(format!("SIOCGIFFLAGS {name}")));
    }
    // SAFETY: the kernel filled the ifru_flags member for SIOCGIFFLAGS.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags } as i32;
    Ok((mtu, flags & libc::IFF_UP != 0))
}

/// Puts the interface in promiscuous mode for as long as `fd` stays open
/// (a packet-socket membership: the kernel drops it when the socket closes,
/// even after a crash).
pub fn add_promisc(fd: &OwnedFd, ifindex: u32, ifname: &str) -> SysResult<()> {
    // SAFETY: packet_mreq is plain old data; all-zero is a valid value.
    let mut mr: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mr.mr_ifindex = ifindex as i32;
    mr.mr_type = libc::PACKET_MR_PROMISC as u16;
    set_packet_opt(
        fd,
        libc::PACKET_ADD_MEMBERSHIP,
        &mr,
        &format!("PACKET_ADD_MEMBERSHIP promisc on {ifname}"),
    )
}

/// Attaches a classic BPF program that accepts every packet but keeps only
/// its first byte: the doorbell socket needs to know a packet came, not what
/// it was.
pub fn attach_one_byte_filter(fd: &OwnedFd) -> SysResult<()> {
    let mut insns = [libc::sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 1,
    }]; // BPF_RET|BPF_K 1
    let prog = libc::sock_fprog {
        len: insns.len() as u16,
        filter: insns.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `insns`, both live across the call, and we pass prog's size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(SysError::last("setsockopt(SO_ATTACH_FILTER)"));
    }
    Ok(())
}

/// Drains a doorbell socket without copying anything out.
pub fn drain(fd: RawFd) {
    let mut byte = 0u8;
    for _ in 0..64 {
        // SAFETY: we hand the kernel a 1-byte buffer that lives across the call.
        let n = unsafe {
            libc::recv(
                fd,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            break;
        }
    }
}

/// `sendto(fd, NULL, 0, MSG_DONTWAIT)`: asks the kernel to transmit every
/// TX-ring frame marked TP_STATUS_SEND_REQUEST.
pub fn kick_tx(fd: RawFd) -> Result<(), i32> {
    // SAFETY: a NULL buffer of length 0 with a NULL address is the documented
    // TX_RING kick; nothing is read from user memory but the ring itself.
    let rc = unsafe {
        libc::sendto(
            fd,
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    } else {
        Ok(())
    }
}

/// A shared, read-write mapping of a packet socket's rings, unmapped on drop.
pub struct Mmap {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory shared with the kernel; the owner
// (one worker thread) is the only user-space accessor. Moving it between
// threads is fine.
unsafe impl Send for Mmap {}

// SAFETY: a shared `&Mmap` only hands out the address and length; all
// access to the memory goes through the rings, each owned by one thread.
unsafe impl Sync for Mmap {}

impl Mmap {
    pub fn map(fd: &OwnedFd, len: usize) -> SysResult<Mmap> {
        Mmap::new(fd.as_raw_fd(), len, libc::MAP_SHARED | libc::MAP_POPULATE).map_err(|source| {
            SysError {
                what: format!("mmap packet rings ({len} bytes)"),
                source,
            }
        })
    }

    /// Zeroed private memory in place of a socket's rings, for tests that
    /// play the kernel's part.
    #[cfg(test)]
    pub fn anonymous(len: usize) -> Mmap {
        Mmap::new(-1, len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS).expect("anonymous mmap")
    }

    /// A read-write mapping of `len` bytes of `fd` (-1 with MAP_ANONYMOUS).
    fn new(fd: RawFd, len: usize, flags: libc::c_int) -> io::Result<Mmap> {
        // SAFETY: a new mapping chosen by the kernel, of memory nothing else
        // refers to (a packet socket's rings, or anonymous); the result is
        // checked against MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mmap { ptr: p.cast(), len })
    }

    pub fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; no references into
        // the mapping outlive the owner (the rings borrow it).
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

pub fn page_size() -> usize {
    // SAFETY: sysconf with a constant name has no memory effects.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as usize } else { 4096 }
}

/// CPUs this process may run on (sched_getaffinity), in ascending order.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; the kernel fills at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid cpu_set_t of the size passed.
    if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CPU_ISSET only reads the set.
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Pins the calling thread to one CPU.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: as in allowed_cpus; CPU_SET writes inside the set (cpu is
    // below CPU_SETSIZE, checked by the caller against allowed_cpus).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: a valid cpu_set_t of the size passed; 0 is this thread.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

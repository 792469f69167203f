//! The data path: one thread per queue index, owning that queue's socket on
//! every interface. A frame read from interface A's RX ring is copied into
//! interface B's TX ring by the same thread, so rings need no locks.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::bridge::{Dest, MacTable};
use crate::direct::{self, DirectTx, Sent};
use crate::frame::{self, ETH_HLEN, VLAN_HLEN, VNET_HDR_LEN, VnetHdr};
use crate::hooks;
use crate::ring::{self, Queue, RxFrame, RxNext, RxRing, TxRing};
use crate::stats::{self, Counters};
use crate::sys;

/// Frames read from one RX ring before looking at the others (fairness).
const RX_BUDGET: usize = 256;
/// Frames committed to a TX ring before a kick even mid-burst, so the
/// kernel starts sending while we keep copying.
const TX_BATCH: u32 = 64;
/// How long poll() sleeps at most, so a stop request is seen promptly.
const POLL_TIMEOUT_MS: i32 = 100;
const KSTATS_EVERY: Duration = Duration::from_millis(500);

/// An interface the forwarder uses, shared by all threads.
#[derive(Debug)]
pub struct Port {
    pub name: String,
    pub ifindex: u32,
    /// Refreshed by the control thread: frames above it are dropped unless GSO.
    pub mtu: AtomicU32,
    pub up: AtomicBool,
}

/// State shared by the workers and the control thread.
pub struct Shared {
    pub ports: Vec<Port>,
    /// `[port][worker slot]`: each worker publishes its own counters.
    pub stats: Vec<Vec<stats::Shared>>,
    pub stop: Arc<AtomicBool>,
    /// None: two ports patched together. Some: MAC-learning bridge.
    pub bridge: Option<MacTable>,
    pub busy_poll: Duration,
}

#[derive(Debug, Error)]
pub enum WorkerError {
    #[error(
        "interface {0} disappeared (deleted, or moved to another network namespace); stopping. Recreate it and start skbtrace-fwd again"
    )]
    Gone(String),
    #[error("poll failed: {0}")]
    Poll(std::io::Error),
}

pub struct Worker {
    /// Which stats slot this worker publishes to (`Shared::stats[port][slot]`).
    slot: usize,
    shared: Arc<Shared>,
    /// Per port, indexed alike: None for a port this worker does not read
    /// from, or does not send to.
    rx: Vec<Option<RxPort>>,
    tx: Vec<Option<TxPort>>,
    counters: Vec<Counters>,
}

/// What a worker reads one port through.
struct RxPort {
    fd: Arc<OwnedFd>,
    bell: Option<OwnedFd>,
    ring: RxRing,
}

/// What a worker sends on one port through: its TX ring, and its send
/// socket for large frames.
struct TxPort {
    ring: TxRing,
    direct: Option<DirectTx>,
}

impl Queue {
    fn split(self) -> (RxPort, TxPort) {
        (
            RxPort {
                fd: self.fd,
                bell: self.doorbell,
                ring: self.rx,
            },
            TxPort {
                ring: self.tx,
                direct: self.direct,
            },
        )
    }
}

impl Worker {
    /// A worker for both directions: `queues[p]` is this queue's socket on
    /// port p.
    pub fn new(slot: usize, shared: Arc<Shared>, queues: Vec<Queue>) -> Worker {
        let (rx, tx) = queues
            .into_iter()
            .map(|q| {
                let (r, t) = q.split();
                (Some(r), Some(t))
            })
            .unzip();
        Worker::with(slot, shared, rx, tx)
    }

    /// Two workers for one queue of a two-port patch, one per direction:
    /// the first reads port 0 and sends to port 1, the second the reverse.
    /// Each RX ring has one reader and each TX ring one writer, as in
    /// [`Worker::new`], so the rings still need no locks.
    pub fn per_direction(
        slots: [usize; 2],
        shared: Arc<Shared>,
        queues: [Queue; 2],
    ) -> [Worker; 2] {
        let [(rx0, tx0), (rx1, tx1)] = queues.map(Queue::split);
        [
            Worker::with(
                slots[0],
                shared.clone(),
                vec![Some(rx0), None],
                vec![None, Some(tx1)],
            ),
            Worker::with(
                slots[1],
                shared,
                vec![None, Some(rx1)],
                vec![Some(tx0), None],
            ),
        ]
    }

    fn with(
        slot: usize,
        shared: Arc<Shared>,
        rx: Vec<Option<RxPort>>,
        tx: Vec<Option<TxPort>>,
    ) -> Worker {
        Worker {
            slot,
            shared,
            counters: vec![Counters::default(); rx.len()],
            rx,
            tx,
        }
    }

    pub fn run(mut self) -> Result<(), WorkerError> {
        let res = self.run_loop();
        // Whatever happened, send what is queued and publish final numbers.
        for d in 0..self.tx.len() {
            self.flush(d);
        }
        self.read_kernel_stats();
        self.publish();
        res
    }

    fn run_loop(&mut self) -> Result<(), WorkerError> {
        // pollfds: ring fd of each port, then the doorbells that exist.
        let mut pfds: Vec<libc::pollfd> = Vec::new();
        let mut owner: Vec<usize> = Vec::new();
        for (p, r) in self.rx.iter().enumerate() {
            if let Some(r) = r {
                pfds.push(libc::pollfd {
                    fd: r.fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
                owner.push(p);
            }
        }
        let rings = pfds.len();
        for (p, r) in self.rx.iter().enumerate() {
            if let Some(b) = r.as_ref().and_then(|r| r.bell.as_ref()) {
                pfds.push(libc::pollfd {
                    fd: b.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
                owner.push(p);
            }
        }
        let mut last_work = Instant::now();
        let mut last_kstats = Instant::now();
        loop {
            if self.shared.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let mut work = 0;
            for p in 0..self.rx.len() {
                work += self.rx_burst(p);
            }
            let mut stalled = false;
            for d in 0..self.tx.len() {
                stalled |= self.flush(d);
            }
            if work > 0 {
                self.publish();
                last_work = Instant::now();
                continue;
            }
            // Idle: keep polling for a while before sleeping in poll(). A
            // sleeping thread takes tens of microseconds to wake (more in a
            // VM, where the idle vCPU halts), the whole latency budget. The
            // yield hands the CPU to anything else runnable, so polling only
            // burns time nobody wants.
            let now = Instant::now();
            if now.duration_since(last_work) < self.shared.busy_poll {
                // SAFETY: sched_yield has no arguments and no memory effects.
                unsafe { libc::sched_yield() };
                continue;
            }
            if now.duration_since(last_kstats) >= KSTATS_EVERY {
                self.read_kernel_stats();
                self.publish();
                last_kstats = now;
            }
            let timeout = if stalled { 1 } else { POLL_TIMEOUT_MS };
            // SAFETY: pfds is a live, correctly sized array of pollfd.
            let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(WorkerError::Poll(e));
            }
            for (i, pfd) in pfds.iter_mut().enumerate() {
                if pfd.revents == 0 {
                    continue;
                }
                let p = owner[i];
                if pfd.revents & libc::POLLERR != 0 {
                    self.socket_error(p, pfd.fd)?;
                }
                if i >= rings && pfd.revents & libc::POLLIN != 0 {
                    sys::drain(pfd.fd);
                }
                pfd.revents = 0;
            }
            // Something woke us: look again right away, and keep looking for
            // a moment in case the doorbell rang before the ring was written.
            last_work = Instant::now();
        }
    }

    /// A socket reported an error: the link went down (the kernel unhooks
    /// the socket and hooks it back when the link comes up) or the interface
    /// is gone for good.
    fn socket_error(&mut self, p: usize, fd: RawFd) -> Result<(), WorkerError> {
        let err = sys::take_socket_error(fd);
        let port = &self.shared.ports[p];
        if sys::ifindex(&port.name) != Some(port.ifindex) {
            return Err(WorkerError::Gone(port.name.clone()));
        }
        if err != 0 && port.up.swap(false, Ordering::Relaxed) {
            log::warn!(
                "{}: {} (link down); forwarding resumes when it is up again",
                port.name,
                std::io::Error::from_raw_os_error(err)
            );
        }
        Ok(())
    }

    fn rx_burst(&mut self, p: usize) -> usize {
        let Worker {
            rx,
            tx,
            counters,
            shared,
            ..
        } = self;
        let mut out = Out { tx, counters };
        let Some(rx) = rx[p].as_mut() else {
            return 0;
        };
        let mut n = 0;
        while n < RX_BUDGET {
            match rx.ring.next_frame() {
                RxNext::Empty => break,
                RxNext::Corrupt => {
                    out.counters[p].rx_packets += 1;
                    out.counters[p].drop_malformed += 1;
                    n += 1;
                }
                RxNext::Frame(f) => {
                    n += 1;
                    forward(p, &f, &mut out, shared);
                }
            }
        }
        n
    }

    /// Kicks port d's TX ring. Returns true when it must be kicked again
    /// (the socket's send buffer was full).
    fn flush(&mut self, d: usize) -> bool {
        let Some(tx) = self.tx[d].as_mut() else {
            return false;
        };
        match tx.ring.flush() {
            Ok(()) => false,
            Err(e) if e == libc::EAGAIN || e == libc::ENOBUFS => true,
            Err(_) => {
                self.counters[d].tx_kick_errors += 1;
                false
            }
        }
    }

    fn read_kernel_stats(&mut self) {
        for (p, r) in self.rx.iter().enumerate() {
            // Only the RX ring's reader asks: the kernel resets the numbers
            // on each read.
            let Some(r) = r else { continue };
            if let Ok((_, drops, freezes)) = ring::kernel_stats(r.fd.as_raw_fd()) {
                self.counters[p].drop_kernel += drops as u64;
                self.counters[p].kernel_freezes += freezes as u64;
            }
        }
    }

    fn publish(&self) {
        for (p, c) in self.counters.iter().enumerate() {
            self.shared.stats[p][self.slot].publish(c);
        }
    }
}

/// The ways out of a worker: per port, its TX ring and send socket, and
/// its counters.
struct Out<'a> {
    tx: &'a mut [Option<TxPort>],
    counters: &'a mut [Counters],
}

/// Checks one received frame and copies it to its destination port(s).
fn forward(p: usize, f: &RxFrame<'_>, out: &mut Out<'_>, shared: &Shared) {
    hooks::skbtrace_fwd_rx(
        f.data.as_ptr(),
        f.data.len() as u32,
        shared.ports[p].ifindex,
    );
    let c = &mut out.counters[p];
    c.rx_packets += 1;
    c.rx_bytes += f.wire_len as u64;
    if (f.data.len() as u64) < f.wire_len as u64 {
        c.drop_truncated += 1;
        return;
    }
    if f.data.len() < ETH_HLEN {
        c.drop_malformed += 1;
        return;
    }
    let out_len = f.data.len() + if f.vlan.is_some() { VLAN_HLEN } else { 0 };
    let vnet = match f.vnet.map(|b| VnetHdr::parse(&b)) {
        None => None,
        Some(h) => {
            let h = if f.vlan.is_some() {
                h.shifted_for_vlan()
            } else {
                h
            };
            match h.for_tx(out_len) {
                Ok(h) => Some(h),
                Err(_) => {
                    c.drop_malformed += 1;
                    return;
                }
            }
        }
    };
    match &shared.bridge {
        None => send(p, 1 - p, f, out_len, vnet, out, shared),
        Some(table) => {
            let src = frame::src_mac(f.data);
            let dst = frame::dst_mac(f.data);
            match table.learn_and_lookup(p as u16, &src, &dst) {
                Dest::Port(d) => send(p, d as usize, f, out_len, vnet, out, shared),
                Dest::Filter => out.counters[p].filtered += 1,
                Dest::Flood => {
                    for d in 0..out.tx.len() {
                        if d != p {
                            send(p, d, f, out_len, vnet, out, shared);
                        }
                    }
                }
            }
        }
    }
}

/// Sends one frame received on port p out of port d: by `sendmsg` from the
/// RX ring when it is large, else (or when that socket is busy) copied
/// into d's TX ring.
fn send(
    p: usize,
    d: usize,
    f: &RxFrame<'_>,
    out_len: usize,
    vnet: Option<VnetHdr>,
    out: &mut Out<'_>,
    shared: &Shared,
) {
    let port = &shared.ports[d];
    let gso = vnet.is_some_and(|h| h.is_gso());
    if !gso && out_len > frame::max_plain_frame(port.mtu.load(Ordering::Relaxed)) {
        out.counters[p].drop_oversized += 1;
        return;
    }
    let Some(TxPort { ring, direct }) = out.tx[d].as_mut() else {
        // A worker per direction only reads frames bound for the port it
        // sends to; nothing else can get here.
        out.counters[p].drop_send_error += 1;
        return;
    };
    let mut hooked = false;
    if let (Some(sock), Some(h)) = (direct.as_ref(), vnet)
        && out_len >= direct::DIRECT_MIN
        && f.vlan.is_none()
        // Frames already in the ring go first: a large frame must not
        // overtake a small one queued before it.
        && ring.flush().is_ok()
    {
        hooks::skbtrace_fwd_tx(f.data.as_ptr(), out_len as u32, port.ifindex);
        hooked = true;
        let c = &mut out.counters[d];
        match sock.send(h, f.data) {
            Sent::Ok => {
                c.tx_packets += 1;
                c.tx_bytes += out_len as u64;
                c.tx_direct += 1;
                return;
            }
            Sent::Failed(_) => {
                c.drop_send_error += 1;
                return;
            }
            // Its send buffer is full of frames still in flight; the ring
            // has its own.
            Sent::Busy => {}
        }
    }
    let vlen = if ring.vnet() { VNET_HDR_LEN } else { 0 };
    if vlen + out_len > ring.room() {
        out.counters[p].drop_oversized += 1;
        return;
    }
    if !ring.has_room() {
        // Completions may be waiting on a kick; try once more after one.
        if ring.flush().is_err() || !ring.has_room() {
            out.counters[d].drop_ring_full += 1;
            return;
        }
    }
    let Some(slot) = ring.reserve() else {
        out.counters[d].drop_ring_full += 1;
        return;
    };
    if vlen > 0 {
        let mut hb = [0u8; VNET_HDR_LEN];
        vnet.unwrap_or_default().write(&mut hb);
        slot[..VNET_HDR_LEN].copy_from_slice(&hb);
    }
    let n = frame::copy_with_vlan(f.data, f.vlan, &mut slot[vlen..]);
    if !hooked {
        hooks::skbtrace_fwd_tx(slot[vlen..].as_ptr(), n as u32, port.ifindex);
    }
    ring.commit(vlen + n);
    let c = &mut out.counters[d];
    c.tx_packets += 1;
    c.tx_bytes += n as u64;
    if ring.pending() >= TX_BATCH
        && let Err(e) = ring.flush()
        && e != libc::EAGAIN
        && e != libc::ENOBUFS
    {
        c.tx_kick_errors += 1;
    }
}

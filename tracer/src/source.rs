//! Draining the ring buffer: tokio's AsyncFd wakes us when the kernel has
//! written records (no busy polling); SIGINT/SIGTERM and the deadline stop
//! the loop so the caller can flush its outputs and detach.

use std::ops::ControlFlow;
use std::os::fd::AsRawFd;
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The consumer said it has enough (e.g. --count reached).
    Done,
    Deadline,
    Interrupted,
    Terminated,
}

/// The event reader's scheduling priority (`--nice`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReaderNice {
    /// Background ([`AutoNice::IDLE`]) while the reader keeps up, raised
    /// to [`AutoNice::BOOST`] while it falls behind (see [`AutoNice`]).
    Auto,
    /// One nice value throughout.
    Fixed(i32),
}

impl std::str::FromStr for ReaderNice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(ReaderNice::Auto);
        }
        match s.parse::<i32>() {
            Ok(n) if (-20..=19).contains(&n) => Ok(ReaderNice::Fixed(n)),
            _ => Err(format!(
                "`{s}` is neither `auto` nor a nice value from -20 to 19"
            )),
        }
    }
}

/// The reader's priority under `--nice auto`: a feedback loop on how much
/// of the ring is waiting to be read.
///
/// Why: a reader that preempts the traced workload takes its CPU at the
/// worst moments. Following iperf3 over veth on 2 CPUs, a reader at nice
/// 19 (it runs in the CPUs' idle gaps) kept up and left iperf3 more of its
/// untraced throughput than one at -10. But when the workload leaves no
/// idle time (2 UDP senders at 100k packets/s), a reader at nice 19 lost
/// 40% of the events and one at -10 lost none. So the reader starts in the
/// background and is raised as soon as a quarter of the ring waits (3x
/// from a loss); it goes back to the background after `hold` with less
/// waiting. Falling behind again soon after going back doubles `hold` (up
/// to a minute), so a workload that saturates the CPUs keeps the reader
/// raised instead of testing the background every second.
///
/// The samples come from a thread of its own (see [`drain`]): a reader
/// starved in the background could not notice that it is behind.
#[derive(Debug)]
pub struct AutoNice {
    behind_bytes: u64,
    boosted: bool,
    /// The last pass that found the reader behind.
    last_behind_ns: u64,
    /// When the reader last went back to the background.
    idle_since_ns: Option<u64>,
    hold_ns: u64,
}

impl AutoNice {
    /// While the reader keeps up.
    pub const IDLE: i32 = 19;
    /// While it falls behind: above the workload's usual 0.
    pub const BOOST: i32 = -10;
    pub const MIN_HOLD_NS: u64 = 1_000_000_000;
    pub const MAX_HOLD_NS: u64 = 64_000_000_000;
    /// Back in the background this long without falling behind: the load
    /// that needed a long hold is gone.
    pub const CALM_NS: u64 = 30_000_000_000;

    pub fn new(ring_bytes: u64) -> Self {
        AutoNice {
            behind_bytes: (ring_bytes / 4).max(1),
            boosted: false,
            last_behind_ns: 0,
            idle_since_ns: None,
            hold_ns: Self::MIN_HOLD_NS,
        }
    }

    /// Bytes waiting that count as falling behind.
    pub fn behind_bytes(&self) -> u64 {
        self.behind_bytes
    }

    pub fn boosted(&self) -> bool {
        self.boosted
    }

    pub fn hold_ns(&self) -> u64 {
        self.hold_ns
    }

    /// With `waiting` bytes in the ring at monotonic `now_ns`: the nice
    /// value to switch the reader to, if it changes.
    pub fn sample(&mut self, waiting: u64, now_ns: u64) -> Option<i32> {
        if waiting >= self.behind_bytes {
            self.last_behind_ns = now_ns;
            if self.boosted {
                return None;
            }
            match self.idle_since_ns.map(|t| now_ns.saturating_sub(t)) {
                Some(d) if d >= Self::CALM_NS => self.hold_ns = Self::MIN_HOLD_NS,
                // Going back to the background did not last.
                Some(d) if d < self.hold_ns => {
                    self.hold_ns = (self.hold_ns * 2).min(Self::MAX_HOLD_NS)
                }
                _ => {}
            }
            self.boosted = true;
            return Some(Self::BOOST);
        }
        if self.boosted && now_ns.saturating_sub(self.last_behind_ns) >= self.hold_ns {
            self.boosted = false;
            self.idle_since_ns = Some(now_ns);
            return Some(Self::IDLE);
        }
        None
    }
}

/// The ring's consumer and producer positions, mapped read-only: the
/// bytes waiting are their difference. (aya keeps its own mapping private.)
struct RingPositions {
    map: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is only read, through atomics.
unsafe impl Send for RingPositions {}

impl RingPositions {
    fn map(fd: std::os::fd::RawFd) -> std::io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        // The consumer page, then the producer page; a read-only mapping
        // of a BPF ring buffer may start at any of its pages.
        let len = 2 * page;
        // SAFETY: a fresh shared read-only mapping of `fd`; checked below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(RingPositions { map, len })
    }

    fn waiting(&self) -> u64 {
        let pos = |off: usize| {
            // SAFETY: both positions are aligned u64s inside the mapping,
            // written by the kernel (producer) and aya (consumer).
            unsafe {
                (*(self.map.cast::<u8>().add(off) as *const std::sync::atomic::AtomicU64))
                    .load(std::sync::atomic::Ordering::Acquire)
            }
        };
        let (cons, prod) = (pos(0), pos(self.len / 2));
        prod.saturating_sub(cons)
    }
}

impl Drop for RingPositions {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `map` mapped.
        unsafe { libc::munmap(self.map, self.len) };
    }
}

/// Sets thread `tid`'s nice value (Linux: per thread), warning once when
/// it cannot.
fn set_nice_or_warn(what: &str, tid: libc::pid_t, nice: i32, warned: &mut bool) {
    // SAFETY: setpriority takes plain integers and touches no memory.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if r != 0 {
        if !*warned {
            log::warn!(
                "could not set the {what}'s nice value to {nice} ({}); under full CPU load events may be lost",
                std::io::Error::last_os_error()
            );
        }
        *warned = true;
    } else {
        log::debug!("{what} now at nice {nice}");
    }
}

/// How often the `--nice auto` monitor samples the ring: at 120 MB/s of
/// events (500k events/s) a quarter of a 16 MiB ring fills in 33 ms.
const MONITOR_EVERY: Duration = Duration::from_millis(5);

/// Runs `AutoNice` for reader thread `tid` until `stop`, on a thread of its
/// own at the boosted priority, so it runs however starved the reader is.
fn spawn_monitor(
    positions: RingPositions,
    ring_bytes: u64,
    tid: libc::pid_t,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("skbtrace-nice".into())
        .spawn(move || {
            let mut warned = false;
            // SAFETY: gettid has no preconditions.
            let me = unsafe { libc::gettid() };
            set_nice_or_warn("ring monitor", me, AutoNice::BOOST, &mut warned);
            let mut auto = AutoNice::new(ring_bytes);
            let start = std::time::Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let waiting = positions.waiting();
                let now = start.elapsed().as_nanos() as u64;
                log::trace!("{waiting} bytes waiting");
                if let Some(n) = auto.sample(waiting, now) {
                    log::debug!("{waiting} bytes waiting: event reader to nice {n}");
                    set_nice_or_warn("event reader", tid, n, &mut warned);
                }
                std::thread::sleep(MONITOR_EVERY);
            }
        })
}

/// Stops the monitor thread when `drain` returns, however it returns.
struct Monitor {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sets the calling thread's priority per `nice`, and for `auto` starts
/// the thread that adjusts it.
fn start_priority(nice: ReaderNice, fd: std::os::fd::RawFd, ring_bytes: u64) -> Option<Monitor> {
    let mut warned = false;
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    match nice {
        ReaderNice::Fixed(n) => {
            set_nice_or_warn("event reader", tid, n, &mut warned);
            None
        }
        ReaderNice::Auto => {
            let started = RingPositions::map(fd).and_then(|pos| {
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                spawn_monitor(pos, ring_bytes, tid, stop.clone()).map(|t| Monitor {
                    stop,
                    thread: Some(t),
                })
            });
            match started {
                Ok(m) => {
                    set_nice_or_warn("event reader", tid, AutoNice::IDLE, &mut warned);
                    Some(m)
                }
                Err(e) => {
                    // Without the monitor the reader could starve: stay raised.
                    log::warn!(
                        "cannot watch the ring buffer's fill level ({e}); the event reader stays at nice {}",
                        AutoNice::BOOST
                    );
                    set_nice_or_warn("event reader", tid, AutoNice::BOOST, &mut warned);
                    None
                }
            }
        }
    }
}

/// Calls `on_record` for each ring-buffer record and `on_tick` every
/// `tick` until one says stop, the deadline passes, or a signal arrives.
/// The calling thread's priority follows `nice` (see [`AutoNice`]);
/// `ring_bytes` is the ring's size.
pub async fn drain(
    ring: RingBuf<MapData>,
    ring_bytes: u64,
    duration: Option<Duration>,
    tick: Duration,
    nice: ReaderNice,
    mut on_record: impl FnMut(&[u8]) -> ControlFlow<()>,
    mut on_tick: impl FnMut() -> ControlFlow<()>,
) -> anyhow::Result<Stop> {
    let _monitor = start_priority(nice, ring.as_raw_fd(), ring_bytes);
    // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged,
    // for as long as the AsyncFd owns the RingBuf.
    let mut fd = unsafe { AsyncFd::register(ring) }
        .map_err(|e| anyhow::anyhow!("watching the ring buffer for events: {e}"))?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let deadline = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = sigint.recv() => return Ok(Stop::Interrupted),
            _ = sigterm.recv() => return Ok(Stop::Terminated),
            _ = &mut deadline => return Ok(Stop::Deadline),
            _ = ticker.tick() => {
                // The programs wake us only for batches (see wakeup_flags
                // in tracer-ebpf): collect what trickled in meanwhile.
                let ring = fd.get_mut();
                while let Some(item) = ring.next() {
                    if on_record(&item).is_break() {
                        return Ok(Stop::Done);
                    }
                }
                if on_tick().is_break() {
                    return Ok(Stop::Done);
                }
            }
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                let ring = guard.get_inner_mut();
                while let Some(item) = ring.next() {
                    if on_record(&item).is_break() {
                        return Ok(Stop::Done);
                    }
                }
                guard.clear_ready();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RING: u64 = 16 << 20;
    const S: u64 = 1_000_000_000;

    #[test]
    fn nice_parses_auto_and_numbers_in_range() {
        assert_eq!("auto".parse(), Ok(ReaderNice::Auto));
        assert_eq!("-10".parse(), Ok(ReaderNice::Fixed(-10)));
        assert_eq!("19".parse(), Ok(ReaderNice::Fixed(19)));
        assert!("20".parse::<ReaderNice>().is_err());
        assert!("-21".parse::<ReaderNice>().is_err());
        assert!("fast".parse::<ReaderNice>().is_err());
    }

    #[test]
    fn raised_while_a_quarter_waits_and_back_after_the_hold() {
        let mut a = AutoNice::new(RING);
        assert_eq!(a.behind_bytes(), RING / 4);
        assert_eq!(a.sample(RING / 4 - 1, S), None, "keeping up");
        assert_eq!(a.sample(RING / 4, S), Some(AutoNice::BOOST));
        assert!(a.boosted());
        // Still behind half a second later: no change, and the hold
        // counts from this sample.
        assert_eq!(a.sample(RING / 2, S + S / 2), None);
        assert_eq!(a.sample(0, 2 * S), None, "within the hold");
        assert_eq!(a.sample(0, S + S / 2 + S), Some(AutoNice::IDLE));
        assert!(!a.boosted());
        assert_eq!(a.sample(0, 10 * S), None);
    }

    #[test]
    fn falling_behind_soon_after_going_back_doubles_the_hold_up_to_the_cap() {
        let mut a = AutoNice::new(RING);
        let mut t = S;
        let mut holds = vec![];
        for _ in 0..10 {
            assert_eq!(a.sample(RING, t), Some(AutoNice::BOOST));
            holds.push(a.hold_ns() / S);
            t += a.hold_ns();
            assert_eq!(a.sample(0, t), Some(AutoNice::IDLE));
            // Behind again within the hold.
            t += S / 10;
        }
        assert_eq!(holds, [1, 2, 4, 8, 16, 32, 64, 64, 64, 64]);
        // Calm for long: the next boost starts from the shortest hold.
        t += AutoNice::CALM_NS;
        assert_eq!(a.sample(RING, t), Some(AutoNice::BOOST));
        assert_eq!(a.hold_ns(), AutoNice::MIN_HOLD_NS);
    }

    #[test]
    fn falling_behind_after_a_while_keeps_the_hold() {
        let mut a = AutoNice::new(RING);
        assert_eq!(a.sample(RING, S), Some(AutoNice::BOOST));
        assert_eq!(a.sample(0, 2 * S), Some(AutoNice::IDLE));
        assert_eq!(a.sample(RING, 2 * S + S / 2), Some(AutoNice::BOOST));
        assert_eq!(a.hold_ns(), 2 * S);
        assert_eq!(a.sample(0, 4 * S + S / 2), Some(AutoNice::IDLE));
        // Behind 10 s later: neither soon (doubles) nor calm (resets).
        assert_eq!(a.sample(RING, 14 * S + S / 2), Some(AutoNice::BOOST));
        assert_eq!(a.hold_ns(), 2 * S);
    }
}

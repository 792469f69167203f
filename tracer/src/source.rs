//! Draining the ring buffer: tokio's AsyncFd wakes us when the kernel has
//! written records (no busy polling); SIGINT/SIGTERM and the deadline stop
//! the loop so the caller can flush its outputs and detach.

use std::ops::ControlFlow;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aya::maps::{Array, MapData, RingBuf};
use aya::programs::{ProgramError, RawTracePoint, RawTracePointRunOptions, TestRun};
use probes::{SNAP_CPUS, StageSnap};
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
/// background, is raised as soon as a quarter of the ring waits, and goes
/// back as soon as it has caught up (a 64th of the ring waits: about one
/// wakeup batch).
///
/// It used to stay raised for a second or more after catching up (longer
/// when it kept falling behind). Following iperf3 that kept it at -10
/// 13% of the time (half of it when the text waterfall was rendered too),
/// preempting iperf3 on every wakeup, for a reader that keeps up at 19
/// with the CPUs' idle time (0 events lost in 8 runs).
/// Dropping back at once costs a workload that saturates the CPUs two
/// setpriority calls per catch-up; three quarters of the ring stay free
/// for the at most 30 ms the monitor needs to raise it again (see
/// [`AutoNice::next_sample`]).
///
/// The samples come from a thread of its own (see [`drain`]): a reader
/// starved in the background could not notice that it is behind.
#[derive(Debug)]
pub struct AutoNice {
    behind_bytes: u64,
    caught_up_bytes: u64,
    boosted: bool,
}

impl AutoNice {
    /// While the reader keeps up.
    pub const IDLE: i32 = 19;
    /// While it falls behind: above the workload's usual 0.
    pub const BOOST: i32 = -10;
    /// Sampling period near the threshold or while raised: at 120 MB/s of
    /// events (500k events/s) a quarter of a 16 MiB ring fills in 33 ms.
    pub const FAST: Duration = Duration::from_millis(5);
    /// Sampling period while little waits. The monitor runs at `BOOST`, so
    /// each of its wakeups preempts whatever runs on its CPU (the traced
    /// workload, usually): waking every 5 ms cost iperf3 about 5% of its
    /// throughput even with no events (see the README). From a sixteenth
    /// of the ring to full takes 25 ms only at over 600 MB/s of events.
    pub const SLOW: Duration = Duration::from_millis(25);

    pub fn new(ring_bytes: u64) -> Self {
        AutoNice {
            behind_bytes: (ring_bytes / 4).max(1),
            caught_up_bytes: ring_bytes / 64,
            boosted: false,
        }
    }

    /// Bytes waiting that count as falling behind.
    pub fn behind_bytes(&self) -> u64 {
        self.behind_bytes
    }

    /// Bytes waiting, at most, that count as caught up.
    pub fn caught_up_bytes(&self) -> u64 {
        self.caught_up_bytes
    }

    pub fn boosted(&self) -> bool {
        self.boosted
    }

    /// How long the monitor may sleep after seeing `waiting` bytes: briefly
    /// while the reader is raised or a sixteenth of the ring waits, else
    /// [`Self::SLOW`].
    pub fn next_sample(&self, waiting: u64) -> Duration {
        if self.boosted || waiting >= self.behind_bytes / 4 {
            Self::FAST
        } else {
            Self::SLOW
        }
    }

    /// With `waiting` bytes in the ring: the nice value to switch the
    /// reader to, if it changes.
    pub fn sample(&mut self, waiting: u64) -> Option<i32> {
        if !self.boosted && waiting >= self.behind_bytes {
            self.boosted = true;
            return Some(Self::BOOST);
        }
        if self.boosted && waiting <= self.caught_up_bytes {
            self.boosted = false;
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

    fn pos(&self, off: usize) -> u64 {
        // SAFETY: both positions are aligned u64s inside the mapping,
        // written by the kernel (producer) and aya (consumer).
        unsafe {
            (*(self.map.cast::<u8>().add(off) as *const std::sync::atomic::AtomicU64))
                .load(std::sync::atomic::Ordering::Acquire)
        }
    }

    /// Where the reader is: everything before it has been read.
    fn consumer(&self) -> u64 {
        self.pos(0)
    }

    /// Where the next record will be reserved: everything before it is
    /// reserved, though a record may still be being written (busy).
    fn producer(&self) -> u64 {
        self.pos(self.len / 2)
    }

    fn waiting(&self) -> u64 {
        self.producer().saturating_sub(self.consumer())
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

/// Runs `AutoNice` for reader thread `tid` until `stop`, on a thread of its
/// own at the boosted priority, so it runs however starved the reader is.
fn spawn_monitor(
    positions: RingPositions,
    unread: Arc<AtomicU64>,
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
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Events moved out of the ring but not yet handed on are
                // as much behind as those still in it.
                let waiting = positions.waiting() + unread.load(Ordering::Relaxed);
                log::trace!("{waiting} bytes waiting");
                if let Some(n) = auto.sample(waiting) {
                    log::debug!("{waiting} bytes waiting: event reader to nice {n}");
                    set_nice_or_warn("event reader", tid, n, &mut warned);
                }
                std::thread::sleep(auto.next_sample(waiting));
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
fn start_priority(
    nice: ReaderNice,
    fd: std::os::fd::RawFd,
    ring_bytes: u64,
    unread: Arc<AtomicU64>,
) -> Option<Monitor> {
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
                spawn_monitor(pos, unread, ring_bytes, tid, stop.clone()).map(|t| Monitor {
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

/// What ends a drain besides its callbacks: SIGINT and SIGTERM, caught
/// from the moment this is made, and an optional deadline (counted from
/// the start of the drain). Callers make it before they say they are
/// ready, so a Ctrl-C right after that always ends in a clean stop
/// (outputs flushed, programs detached), never in the default action.
pub struct Stops {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    after: Option<Duration>,
}

impl Stops {
    pub fn catch(rt: &tokio::runtime::Runtime, after: Option<Duration>) -> anyhow::Result<Self> {
        let _in_rt = rt.enter();
        Ok(Stops {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            after,
        })
    }
}

/// Gets each CPU's staged events into the ring, and tracks up to when each
/// CPU's events are known to be there (see tracer-ebpf/src/staging.rs).
///
/// It reads every CPU's batch state first (`skbtrace_snapshot`, run on the
/// reader's own CPU), which interrupts nobody. A CPU
/// with nothing staged, or whose batch is younger than [`FLUSH_AFTER`]
/// (under load batches fill in microseconds), is left alone. Only a CPU
/// holding older events is made to write them out: `skbtrace_flush` runs
/// there by BPF_PROG_TEST_RUN, which costs that CPU an interrupt.
pub struct Flusher<'a> {
    prog: &'a RawTracePoint,
    /// None where the program could not be loaded (see session.rs).
    snapshot: Option<&'a RawTracePoint>,
    snap: Array<&'a MapData, [StageSnap; SNAP_CPUS]>,
    cpus: Vec<u32>,
    /// Per CPU (same order as `cpus`): every event stamped before this is
    /// in the ring. 0 until the first flush: nothing is vouched for yet.
    flushed_at: Vec<u64>,
    /// Flushes run on a CPU (each one an interrupt there).
    interrupts: u64,
    warned: bool,
}

impl Drop for Flusher<'_> {
    fn drop(&mut self) {
        log::debug!("{} interrupts to flush staged events", self.interrupts);
    }
}

/// A CPU's staged events are flushed once the oldest is this old.
pub const FLUSH_AFTER: Duration = Duration::from_millis(10);

/// What a read of one CPU's batch state made at `t0` vouches for: every
/// event of that CPU stamped before the returned time is in the ring.
fn vouched_by_stage(st: &StageSnap, t0: u64) -> u64 {
    if st.off() == 0 && st.depth() == 0 {
        t0
    } else {
        st.first_ts.min(t0)
    }
}

impl<'a> Flusher<'a> {
    pub fn new(
        prog: &'a RawTracePoint,
        snapshot: Option<&'a RawTracePoint>,
        snap: Array<&'a MapData, [StageSnap; SNAP_CPUS]>,
    ) -> anyhow::Result<Self> {
        let cpus =
            aya::util::online_cpus().map_err(|(what, e)| anyhow::anyhow!("reading {what}: {e}"))?;
        Ok(Flusher {
            prog,
            snapshot,
            snap,
            flushed_at: vec![0; cpus.len()],
            cpus,
            interrupts: 0,
            warned: false,
        })
    }

    /// Gets staged events into the ring (every CPU's when `all`, else only
    /// old ones) and returns the time (CLOCK_MONOTONIC ns) before which
    /// every event of every CPU is in the ring. A CPU that stays busy keeps
    /// its older time, so it holds events back but never lets them out of
    /// order.
    fn flush(&mut self, all: bool) -> u64 {
        let t0 = now_mono_ns();
        let stages = if all {
            None
        } else {
            match self.read_stages() {
                Ok(v) => v,
                Err(e) => {
                    if !self.warned {
                        self.warned = true;
                        log::warn!(
                            "cannot read the CPUs' staged events ({}); flushing every CPU every {} ms",
                            e,
                            RELEASE_EVERY.as_millis()
                        );
                    }
                    None
                }
            }
        };
        let flush_after = FLUSH_AFTER.as_nanos() as u64;
        for (i, &cpu) in self.cpus.iter().enumerate() {
            if let Some(st) = stages.as_ref().and_then(|v| v.get(cpu as usize)) {
                let v = vouched_by_stage(st, t0);
                if t0.saturating_sub(v) < flush_after {
                    self.flushed_at[i] = self.flushed_at[i].max(v);
                    continue;
                }
            }
            // A CPU is busy only for the length of one event, but under a
            // flood it is busy often: a few quick retries usually get in.
            for attempt in 1..=8 {
                let t = now_mono_ns();
                self.interrupts += 1;
                match self.prog.test_run(RawTracePointRunOptions {
                    args: [0; 12],
                    cpu: Some(cpu),
                }) {
                    Ok(r) if r.return_value == 0 => {
                        self.flushed_at[i] = t;
                        break;
                    }
                    Ok(_) if attempt == 8 => {
                        log::debug!(
                            "CPU {cpu} was in the middle of an event at each of 8 flushes; its events since {:.3} s ago wait",
                            t.saturating_sub(self.flushed_at[i]) as f64 / 1e9
                        );
                    }
                    Ok(_) => std::hint::spin_loop(),
                    Err(e) => {
                        // ENXIO: the CPU went offline. Programs cannot run
                        // there, and its batch waits for it to come back.
                        let offline = matches!(&e, ProgramError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::ENXIO));
                        if offline {
                            self.flushed_at[i] = t;
                        } else if !self.warned {
                            self.warned = true;
                            log::warn!(
                                "cannot flush CPU {cpu}'s event batch ({}); events wait up to {} s to be put in order",
                                crate::session::error_line(&e),
                                FLUSH_GIVE_UP.as_secs()
                            );
                        }
                        break;
                    }
                }
            }
        }
        self.flushed_at.iter().copied().min().unwrap_or(0)
    }

    /// Every CPU's batch state, indexed by CPU number; None when there is
    /// no snapshot program, or a CPU's number is past what it copies.
    fn read_stages(&self) -> Result<Option<Box<[StageSnap]>>, String> {
        let n = self.cpus.iter().max().map_or(0, |&c| c as usize + 1);
        let Some(snapshot) = self.snapshot.filter(|_| n <= SNAP_CPUS) else {
            return Ok(None);
        };
        let mut args = [0u64; 12];
        args[0] = n as u64;
        match snapshot.test_run(RawTracePointRunOptions { args, cpu: None }) {
            Ok(r) if r.return_value == 0 => {}
            Ok(r) => return Err(format!("the snapshot program returned {}", r.return_value)),
            Err(e) => return Err(crate::session::error_line(&e)),
        }
        let all = self
            .snap
            .get(&0, 0)
            .map_err(|e| crate::session::error_line(&e))?;
        Ok(Some(all[..n].into()))
    }

    /// The CPU known to have written its events to the ring least
    /// recently, and up to when (0: never yet).
    fn laggard(&self) -> (u32, u64) {
        self.cpus
            .iter()
            .copied()
            .zip(self.flushed_at.iter().copied())
            .min_by_key(|&(_, t)| t)
            .unwrap_or((0, 0))
    }
}

/// How often each CPU's partial batch is flushed and the events up to the
/// flush are handed on: what an event waits at most while traffic flows.
pub const RELEASE_EVERY: Duration = Duration::from_millis(25);

/// When flushes keep failing, events older than this are handed on anyway,
/// and a warning says their order is not confirmed. Generous, so that a
/// virtual CPU its host descheduled has time to run again.
const FLUSH_GIVE_UP: Duration = Duration::from_secs(3);

/// How long a release waits for records that other CPUs are still writing
/// (a few microseconds, unless a virtual CPU is descheduled); past it the
/// watermark stays where it was until the next release.
const CATCH_UP_LIMIT: Duration = Duration::from_millis(5);

/// The watermark after a release that started at `now`: every CPU was
/// flushed after `flushed_before` (see [`Flusher::flush`]), and the reader
/// `caught_up` with every record reserved by then. It never goes back, and
/// past [`FLUSH_GIVE_UP`] events are handed on whatever the flushes did.
fn next_watermark(prev: u64, flushed_before: u64, caught_up: bool, now: u64) -> u64 {
    let give_up = now.saturating_sub(FLUSH_GIVE_UP.as_nanos() as u64);
    confirmed_watermark(prev, flushed_before, caught_up).max(give_up)
}

/// The part of [`next_watermark`] that flushes and reads vouch for: events
/// before it come out in order.
fn confirmed_watermark(prev: u64, flushed_before: u64, caught_up: bool) -> u64 {
    let vouched = if caught_up { flushed_before } else { 0 };
    prev.max(vouched)
}

fn now_mono_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Calls `on_record` with each event, in time order, and `on_tick` every
/// `tick` with the time (CLOCK_MONOTONIC ns) up to which every event has
/// been handed over, until one says stop or one of `stops` comes. When a
/// signal or the deadline stops it, the events still in the kernel's
/// batches are handed over first. The calling thread's priority follows
/// `nice` (see [`AutoNice`]); `ring_bytes` is the ring's size.
#[allow(clippy::too_many_arguments)]
pub async fn drain(
    ring: RingBuf<MapData>,
    mut flusher: Flusher<'_>,
    ring_bytes: u64,
    stops: Stops,
    tick: Duration,
    nice: ReaderNice,
    mut on_record: impl FnMut(&[u8]) -> ControlFlow<()>,
    mut on_tick: impl FnMut(u64) -> ControlFlow<()>,
) -> anyhow::Result<Stop> {
    let Stops {
        int: mut sigint,
        term: mut sigterm,
        after: duration,
    } = stops;
    // Bytes in `pending`, for the `--nice auto` monitor.
    let unread = Arc::new(AtomicU64::new(0));
    let _monitor = start_priority(nice, ring.as_raw_fd(), ring_bytes, unread.clone());
    // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged,
    // for as long as the AsyncFd owns the RingBuf.
    let mut fd = unsafe { AsyncFd::register(ring) }
        .map_err(|e| anyhow::anyhow!("watching the ring buffer for events: {e}"))?;
    let deadline = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut releaser = tokio::time::interval(RELEASE_EVERY.min(tick));
    releaser.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = crate::reorder::Reorder::default();
    // Nothing is known to be complete until every CPU has been flushed.
    let mut watermark = 0;
    // Events handed on past the confirmed watermark (see FLUSH_GIVE_UP).
    let (mut unconfirmed, mut warned_unconfirmed) = (0u64, false);
    let positions = RingPositions::map(fd.as_raw_fd())
        .map_err(|e| anyhow::anyhow!("mapping the ring buffer's positions: {e}"))?;
    let take = |ring: &mut RingBuf<MapData>, pending: &mut crate::reorder::Reorder| {
        while let Some(item) = ring.next() {
            pending.push_record(&item);
        }
        unread.store(pending.bytes() as u64, Ordering::Relaxed);
    };
    // Flushes the kernel's batches and hands on everything up to then.
    let mut release = |fd: &mut AsyncFd<RingBuf<MapData>>,
                       pending: &mut crate::reorder::Reorder,
                       watermark: &mut u64,
                       last: bool| {
        let now = now_mono_ns();
        let flushed_before = flusher.flush(last);
        // The flushed batches are reserved before `end`, but reading stops
        // at a record another CPU is still writing, and the records behind
        // it (a flushed batch among them) would stay unread while the
        // watermark passes their events. So read up to `end`.
        let end = positions.producer();
        let deadline = Instant::now() + CATCH_UP_LIMIT;
        let caught_up = loop {
            take(fd.get_mut(), pending);
            if positions.consumer() >= end {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            std::thread::yield_now();
        };
        if !caught_up {
            log::debug!(
                "a ring record stayed busy for {CATCH_UP_LIMIT:?}; its events wait for the next release"
            );
        }
        let confirmed = confirmed_watermark(*watermark, flushed_before, caught_up);
        *watermark = if last {
            // Nothing comes after this: hand on everything read.
            u64::MAX
        } else {
            next_watermark(*watermark, flushed_before, caught_up, now)
        };
        if !last && *watermark > confirmed {
            // Given up waiting: say so rather than hand on quietly what
            // may come out of order.
            let n = pending.count_between(confirmed, *watermark);
            if n > 0 {
                unconfirmed += n as u64;
                let (cpu, at) = flusher.laggard();
                let why = if !caught_up {
                    "a ring record stayed half-written".to_string()
                } else if at == 0 {
                    format!("CPU {cpu}'s batch of events could not be flushed yet")
                } else {
                    format!(
                        "CPU {cpu}'s batch of events could not be flushed since {:.1} s ago",
                        now.saturating_sub(at) as f64 / 1e9
                    )
                };
                if !warned_unconfirmed {
                    warned_unconfirmed = true;
                    log::warn!(
                        "{why}: {n} events older than {} s are handed on without waiting further, and may come out of time order (usually a machine short of CPU; RUST_LOG=tracer=debug says more)",
                        FLUSH_GIVE_UP.as_secs()
                    );
                } else {
                    log::debug!("{why}: {n} more events handed on unconfirmed");
                }
            }
        }
        let flow = pending.release(*watermark, &mut on_record);
        unread.store(pending.bytes() as u64, Ordering::Relaxed);
        flow
    };
    let stopped = loop {
        tokio::select! {
            _ = sigint.recv() => break Stop::Interrupted,
            _ = sigterm.recv() => break Stop::Terminated,
            _ = &mut deadline => break Stop::Deadline,
            _ = releaser.tick() => {
                if release(&mut fd, &mut pending, &mut watermark, false).is_break() {
                    return Ok(Stop::Done);
                }
            }
            _ = ticker.tick() => {
                if on_tick(watermark.min(now_mono_ns())).is_break() {
                    return Ok(Stop::Done);
                }
            }
            guard = fd.readable_mut() => {
                // The programs wake us once per batch of records (see
                // wakeup_flags in tracer-ebpf): move them out of the ring.
                let mut guard = guard?;
                take(guard.get_inner_mut(), &mut pending);
                guard.clear_ready();
            }
        }
    };
    // What the kernel still holds, and what waits here, is handed on.
    let _ = release(&mut fd, &mut pending, &mut watermark, true);
    if unconfirmed > 0 {
        log::warn!("{unconfirmed} events in all were handed on before their order was confirmed");
    }
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RING: u64 = 16 << 20;
    const MS: u64 = 1_000_000;

    /// A CPU's batch state as `skbtrace_snapshot` copies it: the two
    /// words loaded from a Stage the way the program loads them.
    fn stage(n: u32, depth: u32, first_ts: u64) -> StageSnap {
        // SAFETY: Stage is plain integers; all zeroes is a valid value.
        let mut st: Box<probes::Stage> = Box::new(unsafe { core::mem::zeroed() });
        st.off = n * probes::EVENT_HEADER as u32;
        st.count = n;
        st.depth = depth;
        let at = core::mem::offset_of!(probes::Event, ts_ns);
        st.buf[at..at + 8].copy_from_slice(&first_ts.to_ne_bytes());
        let p = (&raw const *st).cast::<u8>();
        // SAFETY: both words lie inside the Stage, 8-byte aligned (probes
        // checks the offsets; a Box of Stage is aligned for it).
        unsafe {
            StageSnap {
                off_depth: p.cast::<u64>().read(),
                first_ts: p.add(probes::STAGE_FIRST_TS).cast::<u64>().read(),
            }
        }
    }

    #[test]
    fn a_read_of_the_staged_events_vouches_up_to_the_oldest_still_staged() {
        let t0 = 900 * MS;
        // Nothing staged, nothing in flight: everything before the read.
        assert_eq!(vouched_by_stage(&stage(0, 0, 3 * MS), t0), t0);
        // Events staged: up to the first of the batch.
        assert_eq!(vouched_by_stage(&stage(5, 0, 850 * MS), t0), 850 * MS);
        // A program in flight with an empty batch: its event may be older
        // than the read, so only what the first slot says (here a stale stamp).
        assert_eq!(vouched_by_stage(&stage(0, 1, 3 * MS), t0), 3 * MS);
        // A batch started after the read began vouches for the read only.
        assert_eq!(vouched_by_stage(&stage(2, 0, 901 * MS), t0), t0);
        // What the snapshot writes for a CPU it cannot look up: nothing
        // vouched for, so the reader flushes it.
        let unknown = StageSnap {
            off_depth: u64::MAX,
            first_ts: 0,
        };
        assert_eq!(vouched_by_stage(&unknown, t0), 0);
        // The word splits back into `off` and `depth`.
        let s = stage(3, 2, 0);
        assert_eq!((s.off(), s.depth()), (3 * probes::EVENT_HEADER as u32, 2));
    }

    #[test]
    fn the_watermark_moves_only_to_what_a_flush_and_a_full_read_vouch_for() {
        let start = 50_000 * MS;
        // Before every CPU has been flushed once, nothing is vouched for:
        // events stamped just before the reader started must wait too.
        let give_up = FLUSH_GIVE_UP.as_nanos() as u64;
        assert_eq!(next_watermark(0, 0, true, start), start - give_up);
        assert_eq!(confirmed_watermark(0, 0, true), 0);
        // A flush and a read up to the producer position vouch for it.
        assert_eq!(next_watermark(0, start, true, start + 1), start);
        // Records still being written behind the read: keep the old mark.
        assert_eq!(
            next_watermark(start, start + 25 * MS, false, start + 26 * MS),
            start
        );
        // Never backwards, even when a busy CPU holds an older flush time.
        assert_eq!(
            next_watermark(start, start - 5 * MS, true, start + MS),
            start
        );
        // After FLUSH_GIVE_UP without progress, old events go on anyway
        // (and the caller warns: past the confirmed mark).
        assert_eq!(
            next_watermark(start, start, false, start + give_up + 1000 * MS),
            start + 1000 * MS
        );
        assert_eq!(confirmed_watermark(start, start + 9 * MS, false), start);
    }

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
    fn raised_while_a_quarter_waits_and_back_once_caught_up() {
        let mut a = AutoNice::new(RING);
        assert_eq!(a.behind_bytes(), RING / 4);
        assert_eq!(a.caught_up_bytes(), RING / 64);
        assert_eq!(a.sample(RING / 4 - 1), None, "keeping up");
        assert_eq!(a.sample(RING / 4), Some(AutoNice::BOOST));
        assert!(a.boosted());
        // Still behind, or catching up but not there yet: no change.
        assert_eq!(a.sample(RING / 2), None);
        assert_eq!(a.sample(RING / 64 + 1), None);
        assert_eq!(a.sample(RING / 64), Some(AutoNice::IDLE));
        assert!(!a.boosted());
        // Between the two thresholds in the background: stays there.
        assert_eq!(a.sample(RING / 8), None);
        assert!(!a.boosted());
    }

    #[test]
    fn a_saturated_machine_raises_the_reader_each_time_it_falls_behind() {
        let mut a = AutoNice::new(RING);
        for _ in 0..100 {
            assert_eq!(a.sample(RING), Some(AutoNice::BOOST));
            assert_eq!(a.sample(0), Some(AutoNice::IDLE));
        }
    }

    #[test]
    fn samples_rarely_while_little_waits_and_often_near_the_threshold_or_raised() {
        let mut a = AutoNice::new(RING);
        assert_eq!(a.next_sample(0), AutoNice::SLOW);
        assert_eq!(a.next_sample(RING / 16 - 1), AutoNice::SLOW);
        assert_eq!(a.next_sample(RING / 16), AutoNice::FAST);
        assert_eq!(a.sample(RING / 4), Some(AutoNice::BOOST));
        // Raised: watched closely until it has caught up, however little waits.
        assert_eq!(a.next_sample(RING / 32), AutoNice::FAST);
        assert_eq!(a.sample(0), Some(AutoNice::IDLE));
        assert_eq!(a.next_sample(0), AutoNice::SLOW);
    }

    #[test]
    fn a_tiny_ring_still_has_both_thresholds() {
        let mut a = AutoNice::new(4096);
        assert_eq!(a.sample(1024), Some(AutoNice::BOOST));
        assert_eq!(a.sample(64), Some(AutoNice::IDLE));
    }
}

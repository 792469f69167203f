//! Draining the ring buffer: tokio's AsyncFd wakes us when the kernel has
//! written records (no busy polling); SIGINT/SIGTERM and the deadline stop
//! the loop so the caller can flush its outputs and detach.

use std::ops::ControlFlow;
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

/// Sets the calling thread's nice value (Linux: per thread).
fn set_thread_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: gettid and setpriority take plain integers and touch no memory.
    let r = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Calls `on_record` for each ring-buffer record and `on_tick` every
/// `tick` until one says stop, the deadline passes, or a signal arrives.
/// The calling thread runs at `nice`: when the traced workload fills every
/// CPU, a reader at the workload's priority falls behind and the ring
/// overflows (2 x 50k pkt/s of UDP on 2 CPUs lost 5-13% of events at nice
/// 0 and none at -10; iperf3's throughput while followed did not change).
pub async fn drain(
    ring: RingBuf<MapData>,
    duration: Option<Duration>,
    tick: Duration,
    nice: i32,
    mut on_record: impl FnMut(&[u8]) -> ControlFlow<()>,
    mut on_tick: impl FnMut() -> ControlFlow<()>,
) -> anyhow::Result<Stop> {
    if let Err(e) = set_thread_nice(nice) {
        log::warn!(
            "could not set the event reader's nice value to {nice} ({e}); under full CPU load events may be lost"
        );
    }
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

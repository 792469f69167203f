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

/// Calls `on_record` for each ring-buffer record and `on_tick` every
/// `tick` until one says stop, the deadline passes, or a signal arrives.
pub async fn drain(
    ring: RingBuf<MapData>,
    duration: Option<Duration>,
    tick: Duration,
    mut on_record: impl FnMut(&[u8]) -> ControlFlow<()>,
    mut on_tick: impl FnMut() -> ControlFlow<()>,
) -> anyhow::Result<Stop> {
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

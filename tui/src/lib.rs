//! skbtrace's latency waterfall: a packet list, the selected packet's
//! per-hop waterfall, hop-pair latency percentiles over all packets and a
//! status line, drawn with ratatui from plain [`timeline::model`] data.
//!
//! [`run`] shows a live source fed through a channel; [`run_replay`] shows a
//! saved trace. Both own the terminal until the user quits and restore it on
//! every exit path, panics included.

pub mod app;
mod export;
mod render;
mod stats;
mod term;
#[doc(hidden)]
pub mod text;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossterm::event::{self, Event, KeyEventKind};
use timeline::model::{Summary, Timeline};

pub use app::{Action, App, ExportFormat, SortBy};
pub use export::export;
pub use render::KEYS;

/// What a live source sends the TUI.
#[derive(Debug)]
pub enum Input {
    /// One finished packet.
    Timeline(Timeline),
    /// Source counters, sent about once a second.
    Status(Status),
    /// The source has nothing more; the TUI stays up until the user quits.
    End,
}

/// The source's state for the status line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Status {
    pub events_per_sec: f64,
    /// Ring-buffer records lost, per probe.
    pub lost_per_probe: Vec<(String, u64)>,
    /// (probe, attach method) of every attached probe.
    pub probes: Vec<(String, String)>,
    /// `live: veth1` or `replay: FILE`.
    pub source: String,
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Packets kept in the list; older ones are evicted but stay counted in
    /// the statistics.
    pub max_packets: usize,
    /// Where `e` writes its files.
    pub export_dir: PathBuf,
    /// Shown in the status line until a [`Status`] names the source
    /// (`replay: FILE` for [`run_replay`], which gets no Status).
    pub source: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_packets: 10_000,
            export_dir: PathBuf::from("."),
            source: None,
        }
    }
}

/// Longest wait for a key before looking at the channel again: the bound on
/// how stale the screen can get.
const TICK: Duration = Duration::from_millis(50);
/// Longest time spent draining the channel before drawing and reading keys,
/// so a burst never makes the UI unresponsive.
const DRAIN_BUDGET: Duration = Duration::from_millis(30);

/// Runs the TUI until the user quits; returns when q/SIGINT/SIGTERM. Never blocks on `rx`.
///
/// SIGINT, SIGTERM and SIGHUP are handled while it runs; after it returns
/// they terminate the process (exit status 130) instead of being ignored.
/// A panic on any thread restores the terminal and makes it return an error.
pub fn run(rx: Receiver<Input>, opts: Options) -> anyhow::Result<()> {
    let app = App::new(&opts);
    event_loop(app, Some(rx), &opts)
}

/// Shows a saved trace (all its packets, and its summary when it has one)
/// until the user quits.
pub fn run_replay(
    timelines: Vec<Timeline>,
    summary: Option<Summary>,
    opts: Options,
) -> anyhow::Result<()> {
    let app = App::replay(timelines, summary, &opts);
    event_loop(app, None, &opts)
}

/// What one [`drain`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Inputs taken from the channel.
    pub received: usize,
    /// Stopped at the time budget with input still waiting.
    pub more: bool,
    /// The sender is gone: the source ended.
    pub disconnected: bool,
}

/// Takes what the channel holds into `app` without ever waiting on it,
/// stopping after `budget` so keys stay responsive during a burst.
pub fn drain(app: &mut App, rx: &Receiver<Input>, budget: Duration) -> Drained {
    let started = Instant::now();
    let mut d = Drained::default();
    loop {
        match rx.try_recv() {
            Ok(Input::Timeline(t)) => app.push(t),
            Ok(Input::Status(s)) => app.set_status(s),
            Ok(Input::End) => app.end_of_source(),
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Disconnected) => {
                app.end_of_source();
                d.disconnected = true;
                break;
            }
        }
        d.received += 1;
        // Checking the clock every 256 inputs keeps its cost out of the
        // per-packet path.
        if d.received % 256 == 0 && started.elapsed() >= budget {
            d.more = true;
            break;
        }
    }
    d
}

/// One loop selecting over data (drained with try_recv), keys (polled with a
/// short timeout) and ticks; draws only when something changed.
fn event_loop(mut app: App, rx: Option<Receiver<Input>>, opts: &Options) -> anyhow::Result<()> {
    let stop = term::StopSignals::register().context("cannot install SIGINT/SIGTERM handlers")?;
    let mut guard = term::TerminalGuard::enter().context("cannot set up the terminal")?;
    let mut rx = rx;
    let mut redraw = true;
    loop {
        if stop.flag.load(Ordering::Relaxed) {
            break;
        }
        if term::panicked() {
            anyhow::bail!("stopped: a thread panicked (its message is above)");
        }
        let mut more = false;
        if let Some(r) = &rx {
            let d = drain(&mut app, r, DRAIN_BUDGET);
            redraw |= d.received > 0 || d.disconnected;
            more = d.more;
            if d.disconnected {
                rx = None;
            }
        }
        if redraw {
            app.refresh();
            guard
                .terminal
                .draw(|f| f.render_widget(&app, f.area()))
                .context("cannot draw")?;
            redraw = false;
        }
        let timeout = if more { Duration::ZERO } else { TICK };
        // Nobody is left to see it; ends as `q` does.
        if guard.hung_up_while_waiting(timeout) {
            break;
        }
        // Asked even without input: a resize comes as a signal, which
        // crossterm turns into an event.
        if !event::poll(Duration::ZERO).context("cannot read terminal events")? {
            continue;
        }
        // Handle every event already queued before drawing again.
        loop {
            match event::read().context("cannot read terminal events")? {
                Event::Key(k) if k.kind != KeyEventKind::Release => match app.on_key(k) {
                    Action::Quit => return Ok(()),
                    Action::Export(fmt) => {
                        let msg = match export(&app, fmt, &opts.export_dir) {
                            Ok((path, n)) => format!("exported {n} packets to {}", path.display()),
                            Err(e) => format!("export failed: {e:#}"),
                        };
                        app.set_message(msg);
                    }
                    Action::None => {}
                },
                // ratatui resizes its buffers on the next draw.
                Event::Resize(..) => {}
                _ => {}
            }
            redraw = true;
            // Events crossterm already read come first; a terminal that
            // hung up meanwhile must not reach its poll (see hung_up_while_waiting).
            if guard.hung_up_while_waiting(Duration::ZERO)
                || !event::poll(Duration::ZERO).context("cannot read terminal events")?
            {
                break;
            }
        }
    }
    Ok(())
}

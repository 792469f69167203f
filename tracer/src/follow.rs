//! `skbtrace follow`: the whole pipeline. Kernel probes -> ring buffer ->
//! decode -> correlate -> sinks (text, JSON Lines, pcapng, TUI).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use anyhow::Context;
use timeline::sink::{JsonSink, PcapSink, Sink, Tee, TextSink};
use timeline::{Correlator, CorrelatorConfig, Summary, Timeline};

use crate::netdev::Target;
use crate::session::{Session, SessionOptions, mono_to_realtime_ns};
use crate::source::{ReaderNice, Stop, Stops, drain};

pub struct FollowOptions {
    pub target: Target,
    /// Stop after this many complete packets.
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    /// An unfinished packet with no new hop for this long ends as incomplete.
    pub timeout: Duration,
    pub ring_bytes: u32,
    /// Which kernel probe points to attach.
    pub probes: crate::select::Selection,
    /// Priority of the thread that drains the ring (see `source::AutoNice`).
    pub nice: ReaderNice,
    /// Print the text waterfall to stdout.
    pub text: bool,
    /// `-` for stdout.
    pub json: Option<PathBuf>,
    pub pcap: Option<PathBuf>,
    pub snaplen: u32,
    /// Every event carries its packet bytes (also whenever `pcap` is set).
    pub every_hop_bytes: bool,
    /// Follow one packet in this many (`--sample`); 1: all.
    pub sample_every: u32,
    /// Live TUI: timelines and status go here instead of stdout.
    pub tui: Option<Sender<tui::Input>>,
    /// Set by the TUI when the user quits.
    pub stop: Arc<AtomicBool>,
    /// Userspace probes (--uprobe, --fwd, --ovs, --vpp), see uprobes.rs.
    pub uprobes: crate::uprobes::Plan,
}

/// Output files opened before anything is attached, so a bad path is an
/// error up front; removed again if starting fails (no half-written files).
pub struct Outputs {
    pub sinks: Tee,
    created: Vec<PathBuf>,
    armed: bool,
}

impl Outputs {
    pub fn open(opts: &FollowOptions) -> anyhow::Result<Outputs> {
        let mut o = Outputs {
            sinks: Tee::new(),
            created: vec![],
            armed: true,
        };
        let netns = crate::netdev::netns_name_map();
        // Rendering the waterfall costs a fifth of skbtrace's user-space
        // time under load; into /dev/null nobody reads it.
        if opts.text
            && opts.tui.is_none()
            && opts.json.as_deref() != Some(Path::new("-"))
            && !stdout_is_dev_null()
        {
            o.sinks.push(
                TextSink::new(BufWriter::with_capacity(OUT_BUF, std::io::stdout()))
                    .with_netns_names(netns),
            );
        }
        if let Some(p) = &opts.json {
            if p == Path::new("-") {
                o.sinks.push(JsonSink::new(BufWriter::with_capacity(
                    OUT_BUF,
                    std::io::stdout(),
                )));
            } else {
                let f = o.create(p)?;
                o.sinks
                    .push(JsonSink::new(BufWriter::with_capacity(OUT_BUF, f)));
            }
        }
        if let Some(p) = &opts.pcap {
            let f = o.create(p)?;
            let sink = PcapSink::new(BufWriter::with_capacity(OUT_BUF, f), opts.snaplen)
                .with_context(|| format!("writing the pcapng header to {}", p.display()))?;
            o.sinks.push(sink);
        }
        if let Some(tx) = &opts.tui {
            o.sinks.push(TuiSink(tx.clone()));
        }
        Ok(o)
    }

    fn create(&mut self, p: &Path) -> anyhow::Result<File> {
        let f = File::create(p)
            .with_context(|| format!("cannot write {}: choose a writable path", p.display()))?;
        self.created.push(p.to_path_buf());
        Ok(f)
    }

    /// Tracing started: the files are ours to keep from now on.
    pub fn keep(&mut self) {
        self.armed = false;
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        if self.armed {
            for p in &self.created {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// How often the kernel's per-probe counters are read while following.
const STATS_EVERY: Duration = Duration::from_millis(100);

/// Output buffers: sinks are flushed every drain tick (25 ms) anyway, so
/// a large buffer only saves write calls (several per tick at 8 KiB).
const OUT_BUF: usize = 256 * 1024;

/// Whether stdout is the null device (`> /dev/null`).
fn stdout_is_dev_null() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(fd) = std::io::stdout().as_fd().try_clone_to_owned() else {
        return false;
    };
    let (Ok(out), Ok(null)) = (File::from(fd).metadata(), std::fs::metadata("/dev/null")) else {
        return false;
    };
    out.file_type().is_char_device()
        && null.file_type().is_char_device()
        && out.rdev() == null.rdev()
}

struct TuiSink(Sender<tui::Input>);

impl Sink for TuiSink {
    fn timeline(&mut self, t: &Timeline) -> std::io::Result<()> {
        // The TUI may have quit already; the trace still ends cleanly.
        let _ = self.0.send(tui::Input::Timeline(t.clone()));
        Ok(())
    }
    fn finish(&mut self, _s: &Summary) -> std::io::Result<()> {
        let _ = self.0.send(tui::Input::End);
        Ok(())
    }
}

pub struct FollowResult {
    pub stop: Stop,
    pub summary: Summary,
    pub bad_records: u64,
}

/// Validates outputs, attaches, follows until stopped, flushes, detaches.
pub fn follow(opts: FollowOptions) -> anyhow::Result<FollowResult> {
    let mut outputs = Outputs::open(&opts)?;
    // Symbols are resolved before anything is attached: bad input fails first.
    let (uprobe_points, uprobe_notes) = crate::uprobes::resolve(&opts.uprobes)?;
    let mut session = Session::start(&SessionOptions {
        target: Some(opts.target.clone()),
        ring_bytes: opts.ring_bytes,
        probes: opts.probes.clone(),
        // A pcapng has a packet block per hop, each with that hop's bytes.
        every_hop_bytes: opts.every_hop_bytes || opts.pcap.is_some(),
        sample_every: opts.sample_every,
    })?;
    let uprobes = crate::uprobes::start(
        &mut session,
        &uprobe_points,
        &uprobe_notes,
        opts.tui.is_some(),
    )?;
    let mut exit_watch = crate::uprobes::ExitWatch::new(&opts.uprobes);
    outputs.keep();
    let ring = session.take_ring()?;

    let cfg = CorrelatorConfig {
        timeout_ns: opts.timeout.as_nanos() as u64,
        mono_to_realtime_ns: mono_to_realtime_ns() as i64,
        drop_reasons: session.drop_reasons.clone(),
        // A packet copied into a userspace datapath's socket waits there
        // for the process to run: hold it long enough for its uprobe hops.
        join_window_ns: if uprobe_points.is_empty() {
            CorrelatorConfig::default().join_window_ns
        } else {
            crate::uprobes::USER_JOIN_WINDOW_NS
        },
        matched_only: opts.sample_every > 1,
        ..CorrelatorConfig::default()
    };
    let corr = RefCell::new(Correlator::new(cfg));
    for u in uprobes.iter().filter(|u| u.attached) {
        corr.borrow_mut().set_probe_name(u.id, u.name.clone());
        corr.borrow_mut()
            .note_attached(u.id, probes::method::UPROBE);
    }
    let sinks = RefCell::new(std::mem::take(&mut outputs.sinks));

    let probes_attached: Vec<(String, String)> = session
        .methods()
        .into_iter()
        .map(|(p, m)| (p, m.to_string()))
        .collect();
    let rt = crate::runtime()?;
    let stops = Stops::catch(&rt, opts.duration)?;
    if opts.tui.is_none() {
        let sample = if opts.sample_every > 1 {
            format!(
                " one in {}, chosen by fingerprint (--sample);",
                opts.sample_every
            )
        } else {
            String::new()
        };
        eprintln!(
            "skbtrace: following packets first seen on {} (ifindex {}, netns {});{sample} {} probe points attached. Ctrl-C to stop.",
            opts.target.dev,
            opts.target.ifindex,
            opts.target.netns_label,
            session.report.attached()
        );
    }

    let decode_only = matches!(
        session.stop_after,
        probes::stage::DECODE | probes::stage::STAMP
    );
    let complete = RefCell::new(0u64);
    let mut bad = 0u64;
    // Events the reader only decoded (SKBTRACE_STOP_AFTER=decode|stamp).
    let mut decoded = 0u64;
    let sink_error: RefCell<Option<std::io::Error>> = RefCell::new(None);
    // Sinks see timelines by reference (poll_each): no copy per packet.
    let emit_one = |t: &Timeline| {
        if t.complete {
            *complete.borrow_mut() += 1;
        }
        if sink_error.borrow().is_none()
            && let Err(e) = sinks.borrow_mut().timeline(t)
        {
            *sink_error.borrow_mut() = Some(e);
        }
    };
    let enough =
        || sink_error.borrow().is_some() || opts.count.is_some_and(|c| *complete.borrow() >= c);
    let tui_source = if opts.sample_every > 1 {
        format!("live: {}, 1 in {}", opts.target.dev, opts.sample_every)
    } else {
        format!("live: {}", opts.target.dev)
    };
    let mut last_status = Instant::now();
    let mut last_events = 0u64;
    let mut last_stats = Instant::now();
    // Losses per probe as last read, for the TUI's status line.
    let mut lost_per_probe: Vec<(String, u64)> = vec![];
    let stop = rt.block_on(drain(
        ring,
        session.flusher()?,
        u64::from(opts.ring_bytes),
        stops,
        // Timelines are emitted each time events are handed on, so a
        // finished packet reaches the output up to 75 ms sooner than with a
        // 100 ms tick. (It did not measurably cut the reader's CPU.)
        crate::source::RELEASE_EVERY,
        opts.nice,
        |bytes| {
            match timeline::decode::decode(bytes) {
                // The reader's share of the cost, for bench/stages.sh.
                Ok(ev) if decode_only => {
                    std::hint::black_box(&ev);
                    decoded += 1;
                }
                Ok(ev) => corr.borrow_mut().push(&ev),
                Err(e) => {
                    bad += 1;
                    if bad == 1 {
                        log::warn!("dropping a malformed event record: {e}");
                    }
                }
            }
            ControlFlow::Continue(())
        },
        |handed_until| {
            if opts.stop.load(Ordering::Relaxed) {
                return ControlFlow::Break(());
            }
            for (pid, comm) in exit_watch.exited() {
                let msg = format!(
                    "skbtrace: traced process {pid} ({comm}) exited: its uprobes are gone; the trace goes on for the kernel and the other probes"
                );
                if opts.tui.is_none() {
                    eprintln!("{msg}");
                }
                log::warn!("{msg}");
            }
            if last_stats.elapsed() >= STATS_EVERY
                && let Ok(stats) = session.stats()
            {
                last_stats = Instant::now();
                lost_per_probe.clear();
                let mut c = corr.borrow_mut();
                for (id, s) in stats {
                    c.note_lost(id, s.lost);
                    if s.lost > 0 {
                        lost_per_probe
                            .push((probes::id::name(id).unwrap_or("?").to_string(), s.lost));
                    }
                }
            }
            // Timeouts count from what has been handed over, not from
            // now: newer events may still be in the kernel's batches.
            corr.borrow_mut().poll_each(handed_until, emit_one);
            if sink_error.borrow().is_none()
                && let Err(e) = sinks.borrow_mut().flush()
            {
                *sink_error.borrow_mut() = Some(e);
            }
            if let Some(tx) = &opts.tui
                && last_status.elapsed() >= Duration::from_secs(1)
            {
                let (events, _, _) = corr.borrow().event_counts();
                let rate = (events - last_events) as f64 / last_status.elapsed().as_secs_f64();
                last_events = events;
                last_status = Instant::now();
                let _ = tx.send(tui::Input::Status(tui::Status {
                    events_per_sec: rate,
                    lost_per_probe: lost_per_probe.clone(),
                    probes: probes_attached.clone(),
                    source: tui_source.clone(),
                }));
            }
            if enough() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    ))?;

    // Whatever is still open ends here, as incomplete.
    corr.borrow_mut().finish_each(emit_one);
    let stats = session.stats().unwrap_or_default();
    if session.stop_after != 0 {
        // What a stage run did, since it makes no timelines to count.
        let (runs, written) = stats
            .iter()
            .fold((0, 0), |(r, w), (_, s)| (r + s.hits, w + s.emitted));
        let stage = probes::stage::name(session.stop_after).unwrap_or("?");
        log::warn!(
            "SKBTRACE_STOP_AFTER={stage}: the programs ran {runs} times and wrote {written} events; the reader decoded {decoded}"
        );
    }
    for (id, s) in &stats {
        corr.borrow_mut().note_lost(*id, s.lost);
    }
    let mut summary = corr.borrow().summary();
    summary.sample = (opts.sample_every > 1).then_some(opts.sample_every);
    sinks
        .borrow_mut()
        .finish(&summary)
        .context("writing the summary")?;
    if let Some(e) = sink_error.into_inner() {
        return Err(anyhow::Error::new(e).context("writing timelines"));
    }
    // Detach before returning: the caller may keep running (TUI).
    drop(session);
    Ok(FollowResult {
        stop,
        summary,
        bad_records: bad,
    })
}

/// Netns inode -> name, for text output of replays too.
pub fn netns_names() -> HashMap<u32, String> {
    crate::netdev::netns_name_map()
}

pub fn flush_stdout() {
    let _ = std::io::stdout().flush();
}

//! The `skbtrace` command line.

use std::io::Write;
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use probes::{Event, flags};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use timeline::decode::{cstr, decode};

use tracer::follow::{FollowOptions, follow};
use tracer::netdev;
use tracer::select;
use tracer::session::{AttachReport, Session, SessionOptions};
use tracer::source::{ReaderNice, Stop, Stops, drain};

const EXAMPLES: &str = "\
Examples:
  skbtrace follow --dev veth1                     per-packet latency timelines of packets seen on veth1
  skbtrace follow --dev veth0 --netns ns1 --count 10 --json out.jsonl --pcap out.pcapng
  skbtrace follow --dev veth1 --tui               the live latency waterfall
  skbtrace replay out.jsonl [--tui]               look at a saved trace again (no root needed)
  skbtrace probes                                 which probe points attach on this kernel, and how
  skbtrace events --dev veth1                     raw hop events, one line each

Exit codes: 0 done (also after Ctrl-C), 1 runtime error, 2 usage error.
";

#[derive(Parser)]
#[command(
    name = "skbtrace",
    version,
    about = "Follow packets through the Linux kernel and userspace datapaths, hop by hop",
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Follow every packet first seen on DEV (both directions) through the
    /// kernel, wherever it goes next, and show each one's hops and latency.
    #[command(after_help = "Examples:
  skbtrace follow --dev veth1
  skbtrace follow --dev veth0 --netns ns1 --count 5
  skbtrace follow --dev veth0 --netns ns1 --duration 30s --json trace.jsonl --pcap trace.pcapng
  skbtrace follow --dev veth1 --json - | jq .total_ns
  skbtrace follow --dev veth1 --tui
  skbtrace follow --dev veth1 --probes net:netif_receive_skb,tcp_*   fewer points: less overhead
  skbtrace follow --dev veth1 --skip-probes net:net_dev_queue
  skbtrace follow --dev eth0 --sample 100 --json busy.jsonl   one packet in 100: busy links
  skbtrace follow --dev veth0 --netns ns1 --fwd        through skbtrace-fwd (its per-frame hooks)
  skbtrace follow --dev veth0 --netns ns1 --ovs        through ovs-vswitchd (netdev datapath)
  skbtrace follow --dev eth0 --uprobe libc:sendmmsg --pid 1234")]
    Follow {
        #[command(flatten)]
        filter: FilterArgs,
        /// Stop after N complete packets.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this long (500ms, 8s, 2m).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// End a packet's timeline as incomplete after this long without a new hop.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
        timeout: Duration,
        /// Write JSON Lines timelines to FILE (`-` for stdout, replacing the text output).
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Write a pcapng with one interface per probe point and one packet per hop.
        #[arg(long, value_name = "FILE")]
        pcap: Option<PathBuf>,
        /// Bytes of each packet kept in the pcapng (at most 128 are captured).
        #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(14..=128))]
        snaplen: u32,
        /// Copy the packet's bytes at every hop into the JSON (implied by
        /// --pcap). By default only hops where skbtrace first sees an skb,
        /// or sees its fingerprint change, carry them: later hops of the
        /// same packet rarely differ but for TTL, MACs and checksums, and
        /// leaving them out makes each event half as large.
        #[arg(long)]
        every_hop_bytes: bool,
        /// Follow one packet in N, chosen by a hash of its fingerprint, so a
        /// followed packet's copies are followed too and its timeline stays
        /// whole. At high packet rates this cuts the overhead: the other
        /// packets cost only the decision not to follow them. 1 follows
        /// every packet.
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        sample: u32,
        /// The live latency waterfall instead of text.
        #[arg(long)]
        tui: bool,
        /// Packets kept in the TUI list (older ones still count in the statistics).
        #[arg(long, default_value_t = 10_000)]
        tui_max_packets: usize,
        #[command(flatten)]
        ring: RingArgs,
        #[command(flatten)]
        probes: ProbeArgs,
        #[command(flatten)]
        uprobes: tracer::uprobes::UprobeArgs,
    },
    /// Re-render a saved JSON Lines trace as the text waterfall and summary
    /// (or in the TUI); no root or kernel needed.
    #[command(
        after_help = "Examples:\n  skbtrace replay trace.jsonl\n  skbtrace replay trace.jsonl --tui"
    )]
    Replay {
        /// A file written by `skbtrace follow --json FILE`.
        file: PathBuf,
        #[arg(long)]
        tui: bool,
    },
    /// Attach every probe point and print, for this kernel, the method used
    /// for each and why better methods were not available; then detach.
    #[command(after_help = "Example:\n  skbtrace probes --json | jq '.points[] | {point, method}'")]
    Probes {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print raw hop events for packets first seen on DEV, wherever they go
    /// next.
    #[command(
        after_help = "Examples:\n  skbtrace events --dev veth1\n  skbtrace events --dev veth0 --netns ns1 --count 50 --duration 10s"
    )]
    Events {
        #[command(flatten)]
        filter: FilterArgs,
        /// Stop after N events.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this long (500ms, 8s, 2m).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// One JSON object per event instead of a table (for scripts).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        ring: RingArgs,
        #[command(flatten)]
        probes: ProbeArgs,
    },
}

#[derive(clap::Args)]
struct FilterArgs {
    /// Device a packet must first be seen on.
    #[arg(long)]
    dev: String,
    /// Network namespace of DEV: a name from `ip netns list`, a path
    /// (/proc/PID/ns/net) or an inode number. Default: skbtrace's own.
    #[arg(long)]
    netns: Option<String>,
}

#[derive(clap::Args)]
struct ProbeArgs {
    /// Attach only these kernel probe points (comma-separated, `*` and `?`
    /// glob): function names (veth_xmit, ip_*) or tracepoints, with or
    /// without category (net:netif_rx, netif_rx). Fewer points cost less per
    /// packet. skb:kfree_skb and skb:consume_skb, where packets end, stay
    /// attached. `skbtrace probes` lists the points.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = select::parse_only)]
    probes: Vec<String>,
    /// Do not attach these kernel probe points (same names as --probes),
    /// not even as another point's tracepoint stand-in.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = select::parse_skip)]
    skip_probes: Vec<String>,
}

impl ProbeArgs {
    fn selection(self) -> select::Selection {
        select::Selection {
            only: self.probes,
            skip: self.skip_probes,
        }
    }
}

#[derive(clap::Args)]
struct RingArgs {
    /// Ring buffer size in MiB (a power of two).
    #[arg(long, default_value_t = 16, value_parser = parse_ring_mib)]
    ring_mib: u32,
    /// Priority of the thread that reads events: `auto` runs it in the
    /// background (nice 19) while it keeps up and raises it to -10 (above
    /// the traced workload's usual 0) while it falls behind; a number
    /// (-20..19) fixes it.
    #[arg(long, default_value = "auto", allow_negative_numbers = true)]
    nice: ReaderNice,
}

fn parse_ring_mib(s: &str) -> Result<u32, String> {
    let v: u32 = s.parse().map_err(|e| format!("{e}"))?;
    if !v.is_power_of_two() || v > 1024 {
        return Err("must be a power of two between 1 and 1024".into());
    }
    Ok(v)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    // clap exits with 2 on usage errors by itself.
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed pipe (`skbtrace ... | head`) is the reader's choice, not an error.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("skbtrace: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Follow {
            filter,
            count,
            duration,
            timeout,
            json,
            pcap,
            snaplen,
            every_hop_bytes,
            sample,
            tui,
            tui_max_packets,
            ring,
            probes,
            uprobes,
        } => {
            // Validate input before attaching anything.
            let target = netdev::resolve(&filter.dev, filter.netns.as_deref())?;
            let base = FollowOptions {
                target,
                count,
                duration,
                timeout,
                ring_bytes: ring.ring_mib << 20,
                probes: probes.selection(),
                nice: ring.nice,
                text: true,
                json,
                pcap,
                snaplen,
                every_hop_bytes,
                sample_every: sample,
                tui: None,
                stop: Arc::new(AtomicBool::new(false)),
                uprobes: uprobes.plan()?,
            };
            if tui {
                follow_tui(base, tui_max_packets)
            } else {
                let r = follow(base)?;
                if r.summary.lost_events > 0 {
                    eprintln!(
                        "skbtrace: {} events were lost: the ring buffer was full (their packets say lost_events). A larger --ring-mib absorbs longer bursts; a reader short of CPU keeps up at a fixed --nice (e.g. -15)",
                        r.summary.lost_events
                    );
                }
                if r.bad_records > 0 {
                    eprintln!(
                        "skbtrace: {} malformed event records were dropped",
                        r.bad_records
                    );
                }
                Ok(())
            }
        }
        Cmd::Replay { file, tui } => cmd_replay(&file, tui),
        Cmd::Probes { json } => cmd_probes(json),
        Cmd::Events {
            filter,
            count,
            duration,
            json,
            ring,
            probes,
        } => cmd_events(filter, count, duration, json, ring, probes),
    }
}

fn cmd_probes(json: bool) -> anyhow::Result<()> {
    let session = Session::start(&SessionOptions {
        target: None,
        ring_bytes: 1 << 20,
        probes: select::Selection::all(),
        every_hop_bytes: false,
        sample_every: 1,
    })?;
    let report = &session.report;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, report)?;
        writeln!(out)?;
    } else {
        print_probe_table(&mut out, report)?;
    }
    Ok(())
}

fn print_probe_table(out: &mut impl Write, r: &AttachReport) -> std::io::Result<()> {
    let c = &r.capabilities;
    writeln!(out, "kernel {}", r.kernel)?;
    writeln!(
        out,
        "kprobes: {}  vmlinux BTF: {}  tracefs: {}  modules: {}",
        if c.kprobe_pmu {
            "yes"
        } else {
            "no (CONFIG_KPROBES off)"
        },
        if c.vmlinux_btf { "yes" } else { "no" },
        c.tracefs
            .as_ref()
            .map_or("not mounted".into(), |p| p.display().to_string()),
        c.module_btf
            .iter()
            .map(|(m, s)| format!(
                "{m}={}",
                serde_json::to_value(s)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            ))
            .collect::<Vec<_>>()
            .join(" ")
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<26} {:<40} {:<15} {:>9}  WHY NOT BETTER",
        "POINT", "ATTACHED TO", "METHOD", "ATTACH"
    )?;
    for p in &r.points {
        let target = match (&p.via, &p.symbol) {
            (Some(via), _) => format!("{via} (nearest tracepoint)"),
            (None, Some(s)) => match &p.module {
                Some(m) => format!("{s} [{m}]"),
                None => s.clone(),
            },
            (None, None) => "-".into(),
        };
        let method = p.method.unwrap_or("UNAVAILABLE");
        let time = if p.method.is_some() && p.via.is_none() {
            format!("{:.1}ms", p.attach_us as f64 / 1000.0)
        } else {
            "-".into()
        };
        let why: Vec<String> = p
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.method, s.reason))
            .collect();
        writeln!(
            out,
            "{:<26} {:<40} {:<15} {:>9}  {}",
            p.point,
            target,
            method,
            time,
            why.first().map_or("", |s| s)
        )?;
        for w in why.iter().skip(1) {
            writeln!(out, "{:<26} {:<40} {:<15} {:>9}  {}", "", "", "", "", w)?;
        }
    }
    writeln!(out)?;
    let insns: Vec<u32> = r.points.iter().filter_map(|p| p.verified_insns).collect();
    write!(
        out,
        "{} of {} points attached in {} ms",
        r.attached(),
        r.points.len(),
        r.total_attach_ms
    )?;
    if let Some(max) = insns.iter().max() {
        write!(
            out,
            "; the verifier walked {} instructions for {} programs (largest {max})",
            insns.iter().map(|&n| n as u64).sum::<u64>(),
            insns.len()
        )?;
    }
    writeln!(out)?;
    Ok(())
}

fn cmd_events(
    filter: FilterArgs,
    count: Option<u64>,
    duration: Option<Duration>,
    json: bool,
    ring: RingArgs,
    probes: ProbeArgs,
) -> anyhow::Result<()> {
    // Validate input before attaching anything.
    let target = netdev::resolve(&filter.dev, filter.netns.as_deref())?;
    let mut session = Session::start(&SessionOptions {
        target: Some(target.clone()),
        ring_bytes: ring.ring_mib << 20,
        probes: probes.selection(),
        // Raw events show each hop's bytes.
        every_hop_bytes: true,
        sample_every: 1,
    })?;
    let methods: std::collections::HashMap<String, &'static str> =
        session.methods().into_iter().collect();
    let (nice, ring_bytes) = (ring.nice, u64::from(ring.ring_mib) << 20);
    let ring = session.take_ring()?;
    let session_drop_reasons = session.drop_reasons.clone();
    let rt = tracer::runtime()?;
    let stops = Stops::catch(&rt, duration)?;
    eprintln!(
        "skbtrace: following packets first seen on {} (ifindex {}, netns {} inode {}); {} points attached. Ctrl-C to stop.",
        target.dev,
        target.ifindex,
        target.netns_label,
        target.netns_inode,
        session.report.attached()
    );
    let out = std::cell::RefCell::new(std::io::BufWriter::new(std::io::stdout().lock()));
    if !json {
        writeln!(
            out.borrow_mut(),
            "{:>14} {:<26} {:<14} {:<24} {:>7} {:>3} {:<22} {:<18} {:>5}",
            "TIME(us)",
            "PROBE",
            "METHOD",
            "DEV@NETNS",
            "IFINDEX",
            "CPU",
            "TASK",
            "SKB",
            "LEN"
        )?;
    }
    let mut first_ts = None;
    let mut n = 0u64;
    let mut bad = 0u64;
    let stop = rt.block_on(drain(
        ring,
        session.flusher()?,
        ring_bytes,
        stops,
        Duration::from_millis(200),
        nice,
        |bytes| {
            let ev = match decode(bytes) {
                Ok(ev) => ev,
                Err(e) => {
                    bad += 1;
                    if bad == 1 {
                        eprintln!("skbtrace: dropping a malformed event: {e}");
                    }
                    return ControlFlow::Continue(());
                }
            };
            let t0 = *first_ts.get_or_insert(ev.ts_ns);
            let _ = if json {
                print_event_json(&mut *out.borrow_mut(), &ev, &methods, &session_drop_reasons)
            } else {
                print_event(
                    &mut *out.borrow_mut(),
                    &ev,
                    t0,
                    &methods,
                    &session_drop_reasons,
                )
            };
            n += 1;
            if count.is_some_and(|c| n >= c) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
        |_| {
            let _ = out.borrow_mut().flush();
            ControlFlow::Continue(())
        },
    ))?;
    out.borrow_mut().flush()?;
    drop(out);
    print_stats(&session, n, stop)?;
    Ok(())
}

fn print_event(
    out: &mut impl Write,
    ev: &Event,
    t0: u64,
    methods: &std::collections::HashMap<String, &'static str>,
    drop_reasons: &std::collections::HashMap<u32, String>,
) -> std::io::Result<()> {
    let probe = probes::id::name(ev.probe).unwrap_or("?");
    let method = methods
        .get(probe)
        .copied()
        .unwrap_or(probes::method::detail(ev.method));
    let dev = if ev.flags & flags::NO_SKB != 0 {
        "-".to_string()
    } else {
        format!("{}@{}", cstr(&ev.dev), ev.netns)
    };
    let mut extra = String::new();
    if ev.flags & flags::DROP != 0 {
        let reason = drop_reasons
            .get(&ev.reason)
            .cloned()
            .unwrap_or_else(|| ev.reason.to_string());
        extra = format!(" drop_reason={reason}");
    }
    if ev.flags & flags::MATCH != 0 {
        extra.push_str(" (first seen)");
    }
    writeln!(
        out,
        "{:>14.3} {:<26} {:<14} {:<24} {:>7} {:>3} {:<22} 0x{:016x} {:>5}{}",
        ev.ts_ns.saturating_sub(t0) as f64 / 1000.0,
        probe,
        method,
        dev,
        ev.ifindex,
        ev.cpu,
        format!("{}:{}", cstr(&ev.comm), ev.pid),
        ev.skb,
        ev.len,
        extra
    )
}

fn print_event_json(
    out: &mut impl Write,
    ev: &Event,
    methods: &std::collections::HashMap<String, &'static str>,
    drop_reasons: &std::collections::HashMap<u32, String>,
) -> std::io::Result<()> {
    let probe = probes::id::name(ev.probe).unwrap_or("?");
    let data: String = ev.data[..ev.cap_len as usize]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let v = serde_json::json!({
        "ts_ns": ev.ts_ns,
        "probe": probe,
        "method": probes::method::kind(ev.method),
        "attach": methods.get(probe).copied().unwrap_or(probes::method::detail(ev.method)),
        "dev": cstr(&ev.dev),
        "ifindex": ev.ifindex,
        "netns": ev.netns,
        "cpu": ev.cpu,
        "pid": ev.pid,
        "tid": ev.tid,
        "comm": cstr(&ev.comm),
        "skb": format!("0x{:x}", ev.skb),
        "head": format!("0x{:x}", ev.head),
        "len": ev.len,
        "protocol": ev.protocol,
        "mark": ev.mark,
        "fingerprint": format!("0x{:016x}", ev.fingerprint),
        "l2": ev.flags & flags::L2 != 0,
        "match": ev.flags & flags::MATCH != 0,
        "end": ev.flags & flags::END != 0,
        "drop_reason": (ev.flags & flags::DROP != 0).then(|| {
            drop_reasons.get(&ev.reason).cloned().unwrap_or_else(|| ev.reason.to_string())
        }),
        "data": data,
    });
    writeln!(out, "{v}")
}

fn print_stats(session: &Session, shown: u64, stop: Stop) -> anyhow::Result<()> {
    let stats = session.stats()?;
    let lost: u64 = stats.iter().map(|(_, s)| s.lost).sum();
    eprintln!("skbtrace: stopped ({stop:?}); {shown} events shown; {lost} lost");
    eprintln!(
        "{:<26} {:>10} {:>10} {:>8}",
        "PROBE", "RUNS", "EVENTS", "LOST"
    );
    for (id, s) in stats {
        eprintln!(
            "{:<26} {:>10} {:>10} {:>8}",
            probes::id::name(id).unwrap_or("?"),
            s.hits,
            s.emitted,
            s.lost
        );
    }
    Ok(())
}

fn follow_tui(mut opts: FollowOptions, max_packets: usize) -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    opts.tui = Some(tx);
    let stop = opts.stop.clone();
    let source = format!("live: {}", opts.target.dev);
    // The tracer runs on its own thread; the terminal belongs to the TUI.
    let tracer = std::thread::spawn(move || follow(opts));
    let ui = tui::run(
        rx,
        tui::Options {
            max_packets,
            source: Some(source),
            ..tui::Options::default()
        },
    );
    stop.store(true, Ordering::Relaxed);
    let traced = tracer
        .join()
        .map_err(|_| anyhow::anyhow!("the tracing thread panicked"))?;
    ui?;
    traced.map(|_| ())
}

fn cmd_replay(file: &Path, tui: bool) -> anyhow::Result<()> {
    let replay = timeline::replay::read_path(file)
        .with_context(|| format!("reading the trace {}", file.display()))?;
    if tui {
        return tui::run_replay(
            replay.timelines,
            Some(replay.summary),
            tui::Options {
                source: Some(format!("replay: {}", file.display())),
                ..tui::Options::default()
            },
        );
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let names = tracer::follow::netns_names();
    for t in &replay.timelines {
        out.write_all(timeline::sink::text::render_timeline(t, &names).as_bytes())?;
    }
    out.write_all(timeline::sink::text::render_summary(&replay.summary).as_bytes())?;
    if replay.summary_recomputed {
        writeln!(
            out,
            "(the trace has no summary line, it was interrupted: summary recomputed from its packets)"
        )?;
    }
    out.flush()?;
    Ok(())
}

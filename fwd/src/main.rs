//! skbtrace-fwd: forwards frames between interfaces over AF_PACKET
//! TPACKET_V3 rings, the way a VPP host-interface does.

use std::collections::HashSet;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};

use fwd::bridge::MacTable;
use fwd::ring::{Fanout, FanoutMode, Queue, RingConfig};
use fwd::stats::{self, Counters};
use fwd::sys;
use fwd::worker::{Port, Shared, Worker, WorkerError};

const GSO_FRAME_SIZE: u32 = 2048 * 33;
const PLAIN_FRAME_SIZE: u32 = 2048;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum RxMode {
    /// Read frames out of the block the kernel is still filling, woken per
    /// packet by a doorbell socket: microseconds of added latency (x86 only).
    Peek,
    /// Classic TPACKET_V3: wait for the kernel to close a block (full, or
    /// after --block-timeout-ms, rounded up to a jiffy). Milliseconds of
    /// latency at low packet rates.
    Block,
}

/// Forward Ethernet frames between interfaces through AF_PACKET TPACKET_V3
/// rings, like a VPP host-interface. Two --if: a patch cable. More: a
/// MAC-learning bridge.
#[derive(Debug, Parser)]
#[command(
    name = "skbtrace-fwd",
    version,
    after_help = "\
Examples:
  # Patch veth ends b1 and b2 together (run in the namespace that holds them):
  skbtrace-fwd --if b1 --if b2

  # Same, in a namespace, in the background, stats every 5 s; stop with SIGINT/SIGTERM:
  ip netns exec fwd skbtrace-fwd --if b1 --if b2 --stats-interval 5 &

  # A three-port learning bridge with two queues (fanout) per interface:
  skbtrace-fwd --if b1 --if b2 --if b3 --queues 2

  # Pin the worker to CPU 1 (as VPP pins its workers):
  skbtrace-fwd --if b1 --if b2 --cpus 1

  # A thread per direction: b1 -> b2 on CPU 1, b2 -> b1 on CPU 0:
  skbtrace-fwd --if b1 --if b2 --worker-per-direction --cpus 1,0

  # A queue per CPU, each worker on another CPU than the one whose frames it
  # takes: it runs beside the receiving application, not the sender:
  skbtrace-fwd --if b1 --if b2 --queues 2 --fanout cpu --cpus 1,0

  # Peers with offloads turned off (ethtool -K <peer> tx off tso off gso off):
  skbtrace-fwd --if b1 --if b2 --cksum-gso-disable

Stats go to stdout as `stats ...` key=value lines on exit, on SIGUSR1
(kill -USR1 <pid>) and every --stats-interval seconds. Frames are offered to
uprobes at the symbols skbtrace_fwd_rx and skbtrace_fwd_tx
(frame pointer, length, ifindex)."
)]
struct Args {
    /// Interface to forward on (give at least two). Must exist in the
    /// current network namespace.
    #[arg(long = "if", value_name = "IFACE", required = true)]
    ifaces: Vec<String>,

    /// Queues per interface: one socket each, joined in a PACKET_FANOUT
    /// group (see --fanout), and one worker thread per queue (two with
    /// --worker-per-direction).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    queues: u32,

    /// How frames are spread over the queues (needs --queues 2 or more).
    /// With `cpu`, a queue per CPU and each queue's worker pinned to
    /// another CPU than its number (`--queues 2 --cpus 1,0` on two CPUs),
    /// a frame is forwarded beside the application receiving it rather
    /// than beside its sender, so the send that delivers it wakes that
    /// application on its own CPU: a TCP stream is then forwarded as fast
    /// wherever the scheduler puts its two ends. A flow whose sender moves
    /// to another CPU changes queue, and a few frames may be reordered.
    #[arg(long, value_enum, default_value_t = FanoutMode::Hash)]
    fanout: FanoutMode,

    /// RX ring block size in bytes (multiple of the page size; must hold
    /// the largest frame).
    #[arg(long, default_value_t = 256 * 1024)]
    block_size: u32,

    /// RX ring blocks per queue.
    #[arg(long, default_value_t = 32)]
    block_count: u32,

    /// Frame slot size in bytes: the largest frame forwarded (virtio-net
    /// header and 48-byte ring header included). Default 67584 (a 64 KiB
    /// GSO frame), 2048 with --cksum-gso-disable. Larger frames are counted
    /// as drop_oversized.
    #[arg(long)]
    frame_size: Option<u32>,

    /// TX ring frame slots per queue.
    #[arg(long, default_value_t = 128)]
    tx_frames: u32,

    /// Milliseconds after which the kernel hands over a partly filled RX
    /// block (rounded up to a jiffy).
    #[arg(long, default_value_t = 1)]
    block_timeout_ms: u32,

    /// Send through the qdisc layer instead of straight to the driver
    /// (PACKET_QDISC_BYPASS is on by default).
    #[arg(long)]
    qdisc_bypass_disable: bool,

    /// Do not use PACKET_VNET_HDR: GSO and checksum-offloaded frames are then
    /// not forwarded correctly, so turn offloads off on the peers.
    #[arg(long)]
    cksum_gso_disable: bool,

    /// Send every frame through the TX ring. By default frames of 8 KiB
    /// and more (GSO frames) are sent with sendmsg straight from the RX
    /// ring, which saves one copy of each (the TX ring stays the path for
    /// small frames, where batching one kick over many frames wins).
    #[arg(long)]
    tx_ring_only: bool,

    /// How frames are taken from the RX ring.
    #[arg(long, value_enum, default_value_t = default_rx_mode())]
    rx_mode: RxMode,

    /// Microseconds a worker keeps polling its rings (yielding the CPU to
    /// anything runnable) after the last frame before it sleeps in poll().
    /// Waking a sleeping thread costs tens of microseconds (more in a VM);
    /// 0 sleeps at once: least CPU, most latency.
    #[arg(long, default_value_t = 2500)]
    busy_poll_us: u64,

    /// Print stats every this many seconds (0: only on exit and SIGUSR1).
    #[arg(long, default_value_t = 0)]
    stats_interval: u64,

    /// Bridge mode: seconds before a MAC address not seen is forgotten.
    #[arg(long, default_value_t = 300)]
    mac_age: u32,

    /// Two interfaces only: two worker threads per queue, one per
    /// direction (the first reads the first --if and sends to the second),
    /// instead of one thread for both. A TCP stream's data and its ACKs then
    /// no longer wait for each other's bursts; it costs a second busy-polling
    /// thread.
    #[arg(long)]
    worker_per_direction: bool,

    /// Pin worker threads to these CPUs, like VPP's corelist-workers: the
    /// Nth worker runs on the Nth CPU of the list (wrapping). Workers are
    /// numbered by queue, and with --worker-per-direction the first
    /// direction before the second within a queue. A list such as `1`,
    /// `0,2` or `2-3`. Unpinned, the scheduler moves a worker between CPUs,
    /// and frames it sent from two CPUs reach a veth peer through two
    /// per-CPU backlogs, out of order: TCP counts that as loss.
    #[arg(long, value_name = "LIST", value_parser = parse_cpu_list)]
    cpus: Option<CpuList>,
}

/// A parsed --cpus value (a newtype, so clap takes it as one value).
#[derive(Clone, Debug, PartialEq, Eq)]
struct CpuList(Vec<usize>);

impl std::fmt::Display for CpuList {
    /// `0,2,3`: the CPUs, comma-separated.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            write!(f, "{}{c}", if i == 0 { "" } else { "," })?;
        }
        Ok(())
    }
}

/// `1`, `0,2`, `2-3,6`: CPU numbers in the order given.
fn parse_cpu_list(s: &str) -> Result<CpuList, String> {
    let num = |t: &str| {
        t.trim()
            .parse::<usize>()
            .map_err(|_| format!("`{t}` is not a CPU number (want a list like 1 or 0,2 or 2-3)"))
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("`{part}`: the range runs backwards"));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    Ok(CpuList(out))
}

fn default_rx_mode() -> RxMode {
    if cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
        RxMode::Peek
    } else {
        RxMode::Block
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(|buf, rec| {
            writeln!(
                buf,
                "skbtrace-fwd: {}: {}",
                rec.level().as_str().to_lowercase(),
                rec.args()
            )
        })
        .init();
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("skbtrace-fwd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.ifaces.len() < 2 {
        bail!("give at least two interfaces: --if A --if B");
    }
    let mut seen = HashSet::new();
    for i in &args.ifaces {
        if !seen.insert(i) {
            bail!("interface {i} is given twice");
        }
    }
    if args.ifaces.len() > u16::MAX as usize {
        bail!("too many interfaces");
    }
    if args.fanout != FanoutMode::Hash && args.queues < 2 {
        bail!(
            "--fanout {} spreads frames over queues: give --queues 2 or more",
            args.fanout.name()
        );
    }
    if args.worker_per_direction && args.ifaces.len() != 2 {
        bail!(
            "--worker-per-direction needs exactly two --if (a patch); with {} the forwarder is a bridge, where a frame from any port may go to any other",
            args.ifaces.len()
        );
    }
    if args.rx_mode == RxMode::Peek && default_rx_mode() != RxMode::Peek {
        bail!("--rx-mode peek relies on x86 store ordering; use --rx-mode block on this machine");
    }

    let mut ports = Vec::new();
    for name in &args.ifaces {
        let ifindex = sys::ifindex(name).with_context(|| {
            format!("interface {name} not found in this network namespace (check `ip link show {name}`, or run under `ip netns exec NS`)")
        })?;
        let (mtu, up) =
            sys::link_info(name).with_context(|| format!("reading MTU and flags of {name}"))?;
        if !up {
            log::warn!("{name} is down; forwarding starts when it is up (ip link set {name} up)");
        }
        ports.push(Port {
            name: name.clone(),
            ifindex,
            mtu: AtomicU32::new(mtu),
            up: AtomicBool::new(up),
        });
    }

    if let Some(CpuList(cpus)) = &args.cpus {
        let allowed = sys::allowed_cpus().context("reading this process's CPU affinity")?;
        if let Some(c) = cpus.iter().find(|c| !allowed.contains(c)) {
            bail!(
                "--cpus: CPU {c} is not available to this process (allowed: {})",
                CpuList(allowed)
            );
        }
    }

    let vnet = !args.cksum_gso_disable;
    let cfg = RingConfig {
        block_size: args.block_size,
        block_count: args.block_count,
        frame_size: args.frame_size.unwrap_or(if vnet {
            GSO_FRAME_SIZE
        } else {
            PLAIN_FRAME_SIZE
        }),
        tx_frames: args.tx_frames,
        block_timeout_ms: args.block_timeout_ms,
        qdisc_bypass: !args.qdisc_bypass_disable,
        vnet_hdr: vnet,
        peek: args.rx_mode == RxMode::Peek,
        doorbell: args.rx_mode == RxMode::Peek,
        direct: vnet && !args.tx_ring_only,
    };
    if let Err(e) = cfg.validate() {
        bail!("{e}");
    }
    if vnet && cfg.frame_size < GSO_FRAME_SIZE {
        log::warn!(
            "--frame-size {} is below a 64 KiB GSO frame: large TCP segments from veth peers will be dropped as oversized",
            cfg.frame_size
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let usr1 = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second Ctrl-C while shutting down exits at once.
        signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())
            .context("installing signal handler")?;
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handler")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, usr1.clone())
        .context("installing SIGUSR1 handler")?;

    let nq = args.queues as usize;
    let np = ports.len();
    let per_queue_workers = if args.worker_per_direction { 2 } else { 1 };
    // The queue of each worker, in worker (and stats slot) order.
    let slot_queue: Vec<usize> = (0..nq)
        .flat_map(|q| std::iter::repeat_n(q, per_queue_workers))
        .collect();
    let shared = Arc::new(Shared {
        stats: (0..np)
            .map(|_| {
                slot_queue
                    .iter()
                    .map(|_| stats::Shared::default())
                    .collect()
            })
            .collect(),
        ports,
        stop: stop.clone(),
        bridge: (np > 2).then(|| MacTable::new(args.mac_age, 64 * 1024)),
        busy_poll: Duration::from_micros(args.busy_poll_us),
    });

    // Open every socket before starting any thread, so a setup error leaves
    // nothing running.
    let mut groups = vec![(Fanout::new(args.fanout), Fanout::new(args.fanout)); np];
    let mut per_queue: Vec<Vec<Queue>> = Vec::with_capacity(nq);
    for q in 0..nq {
        let mut socks = Vec::with_capacity(np);
        for (p, port) in shared.ports.iter().enumerate() {
            let fan = (nq > 1).then(|| {
                let (a, b) = &mut groups[p];
                (a, b)
            });
            let s = Queue::open(&port.name, port.ifindex, &cfg, fan, q == 0)
                .with_context(|| format!("setting up queue {q} of {}", port.name))?;
            socks.push(s);
        }
        per_queue.push(socks);
    }

    let mut ready: Vec<(String, Worker)> = Vec::new();
    for (q, socks) in per_queue.into_iter().enumerate() {
        let slot = ready.len();
        if args.worker_per_direction {
            let Ok(pair) = <[Queue; 2]>::try_from(socks) else {
                unreachable!("checked above: two interfaces");
            };
            let [a, b] = Worker::per_direction([slot, slot + 1], shared.clone(), pair);
            ready.push((format!("fwd-q{q}-0to1"), a));
            ready.push((format!("fwd-q{q}-1to0"), b));
        } else {
            ready.push((
                format!("fwd-q{q}"),
                Worker::new(slot, shared.clone(), socks),
            ));
        }
    }
    let mut workers: Vec<JoinHandle<Result<(), WorkerError>>> = Vec::new();
    for (slot, (name, w)) in ready.into_iter().enumerate() {
        let cpu = args.cpus.as_ref().map(|CpuList(c)| c[slot % c.len()]);
        let h = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                if let Some(cpu) = cpu
                    && let Err(e) = sys::pin_current_thread(cpu)
                {
                    log::warn!("{name}: could not pin to CPU {cpu}: {e}; it runs unpinned");
                }
                w.run()
            })
            .context("starting worker thread")?;
        workers.push(h);
    }
    let names: Vec<&str> = shared.ports.iter().map(|p| p.name.as_str()).collect();
    log::info!(
        "ready: {} {} ({} queue{}{}{}{}, {:?} rx, ring {}x{} B blocks, frame {} B, {} tx slots, large frames by {}, qdisc bypass {}, vnet hdr {}); pid {}",
        if np == 2 { "patching" } else { "bridging" },
        names.join(if np == 2 { " <-> " } else { ", " }),
        nq,
        if nq == 1 { "" } else { "s" },
        if args.worker_per_direction {
            ", a worker per direction"
        } else {
            ""
        },
        args.cpus
            .as_ref()
            .map_or(String::new(), |c| format!(" on CPU {c}")),
        if nq > 1 {
            format!(", fanout {}", args.fanout.name())
        } else {
            String::new()
        },
        args.rx_mode,
        cfg.block_count,
        cfg.block_size,
        cfg.frame_size,
        cfg.tx_frames,
        if cfg.direct { "sendmsg" } else { "tx ring" },
        on_off(cfg.qdisc_bypass),
        on_off(cfg.vnet_hdr),
        std::process::id()
    );

    let start = Instant::now();
    let mut last_stats = start;
    let mut last_monitor = start;
    let mut failure: Option<String> = None;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
        if usr1.swap(false, Ordering::Relaxed) {
            print_stats(&shared, &slot_queue, "signal", start.elapsed());
        }
        if args.stats_interval > 0
            && last_stats.elapsed() >= Duration::from_secs(args.stats_interval)
        {
            last_stats = Instant::now();
            print_stats(&shared, &slot_queue, "interval", start.elapsed());
        }
        if last_monitor.elapsed() >= Duration::from_millis(500) {
            last_monitor = Instant::now();
            if let Some(msg) = monitor_links(&shared) {
                failure = Some(msg);
                break;
            }
            if let Some(t) = &shared.bridge {
                t.tick(start.elapsed().as_secs() as u32);
                t.age();
            }
        }
        if workers.iter().any(|h| h.is_finished()) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in workers {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failure.get_or_insert_with(|| e.to_string());
            }
            Err(_) => {
                failure.get_or_insert_with(|| "a worker thread panicked".into());
            }
        }
    }
    print_stats(&shared, &slot_queue, "exit", start.elapsed());
    match failure {
        Some(msg) => {
            log::error!("{msg}");
            Ok(ExitCode::FAILURE)
        }
        None => {
            log::info!("stopped");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// Watches the interfaces: MTU changes, link up/down, and disappearance
/// (returned as the message to stop with).
fn monitor_links(shared: &Shared) -> Option<String> {
    for port in &shared.ports {
        if sys::ifindex(&port.name) != Some(port.ifindex) {
            return Some(WorkerError::Gone(port.name.clone()).to_string());
        }
        match sys::link_info(&port.name) {
            Ok((mtu, up)) => {
                if port.mtu.swap(mtu, Ordering::Relaxed) != mtu {
                    log::info!("{}: MTU is now {mtu}", port.name);
                }
                let was = port.up.swap(up, Ordering::Relaxed);
                if was && !up {
                    log::warn!(
                        "{}: link down; forwarding resumes when it is up again",
                        port.name
                    );
                } else if !was && up {
                    log::info!("{}: link up; forwarding", port.name);
                }
            }
            Err(e) => log::debug!("{}: {e}", port.name),
        }
    }
    None
}

/// Prints one `stats` header line, then one line per interface and queue
/// and one `queue=all` line per interface.
fn print_stats(shared: &Shared, slot_queue: &[usize], reason: &str, elapsed: Duration) {
    let nq = slot_queue.last().map_or(0, |q| q + 1);
    let mut out = String::new();
    out.push_str(&format!(
        "stats reason={reason} elapsed_s={:.3}\n",
        elapsed.as_secs_f64()
    ));
    for (p, port) in shared.ports.iter().enumerate() {
        let mut per_queue = vec![Counters::default(); nq];
        for (slot, &q) in slot_queue.iter().enumerate() {
            per_queue[q].add(&shared.stats[p][slot].load());
        }
        let mut total = Counters::default();
        for (q, c) in per_queue.iter().enumerate() {
            total.add(c);
            if nq > 1 {
                out.push_str(&format!(
                    "stats if={} ifindex={} queue={q} {}\n",
                    port.name,
                    port.ifindex,
                    c.logfmt()
                ));
            }
        }
        out.push_str(&format!(
            "stats if={} ifindex={} queue=all {} drops={}\n",
            port.name,
            port.ifindex,
            total.logfmt(),
            total.drops()
        ));
    }
    let mut so = std::io::stdout().lock();
    let _ = so.write_all(out.as_bytes());
    let _ = so.flush();
}

#[cfg(test)]
mod tests {
    use super::{CpuList, parse_cpu_list};

    #[test]
    fn cpu_lists_parse_like_taskset() {
        assert_eq!(parse_cpu_list("1"), Ok(CpuList(vec![1])));
        assert_eq!(parse_cpu_list("0,2"), Ok(CpuList(vec![0, 2])));
        assert_eq!(parse_cpu_list("2-4,7"), Ok(CpuList(vec![2, 3, 4, 7])));
        assert!(parse_cpu_list("3-1").unwrap_err().contains("backwards"));
        assert!(
            parse_cpu_list("a")
                .unwrap_err()
                .contains("not a CPU number")
        );
        assert!(parse_cpu_list("").is_err());
        assert_eq!(CpuList(vec![0, 2, 3]).to_string(), "0,2,3");
    }
}

//! Loading the eBPF object and attaching every catalog point by the best
//! method the running kernel allows, recording why better ones were not
//! used. Dropping a [`Session`] detaches and unloads everything.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use anyhow::{Context, bail};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, FEntry, KProbe, RawTracePoint};
use aya::{Btf, Ebpf, EbpfLoader};
use probes::{Config, EVENT_VERSION, MAX_PROBES, ProbeStats};
use serde::Serialize;

use crate::btf::KernelBtf;
use crate::caps::Capabilities;
use crate::catalog::{self, FuncPoint, TracePoint};
use crate::kallsyms::Kallsyms;
use crate::netdev::Target;

/// The eBPF object built by build.rs (empty when built without the eBPF toolchain).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-ebpf.o"));

/// `SKBTRACE_EBPF_OBJECT` loads another build of the programs instead (for
/// comparing builds, e.g. their verifier cost on an older kernel).
pub fn ebpf_object() -> anyhow::Result<&'static [u8]> {
    if let Some(path) = std::env::var_os("SKBTRACE_EBPF_OBJECT") {
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "reading the eBPF object named by SKBTRACE_EBPF_OBJECT ({})",
                path.to_string_lossy()
            )
        })?;
        return Ok(Vec::leak(bytes));
    }
    if EBPF_OBJECT.is_empty() {
        bail!(
            "this skbtrace was built without its eBPF programs (bpf-linker or rust-src was missing at build time): run scripts/setup.sh, then `cargo build --release` again"
        );
    }
    Ok(EBPF_OBJECT)
}

#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub method: &'static str,
    pub reason: String,
}

/// How one point was attached (or why it could not be).
#[derive(Clone, Debug, Serialize)]
pub struct PointReport {
    /// The function or `category:tracepoint`.
    pub point: String,
    /// What was attached: the kallsyms name (may be `f.constprop.0`) or the tracepoint.
    pub symbol: Option<String>,
    pub module: Option<String>,
    /// fentry | kprobe | tp_btf | raw_tracepoint; None when nothing worked.
    pub method: Option<&'static str>,
    /// For a point reached through a tracepoint: which one.
    pub via: Option<String>,
    /// Load + attach time of this point's program.
    pub attach_us: u64,
    /// Instructions the verifier walked to accept the program (kernel 5.16+):
    /// what makes loading slow on an old kernel or an emulated machine.
    pub verified_insns: Option<u32>,
    /// Better methods that were not used, and why.
    pub skipped: Vec<Skipped>,
    pub about: &'static str,
}

impl PointReport {
    /// A point not attached yet, with nothing tried.
    fn new(point: String, about: &'static str) -> Self {
        PointReport {
            point,
            symbol: None,
            module: None,
            method: None,
            via: None,
            attach_us: 0,
            verified_insns: None,
            skipped: vec![],
            about,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct AttachReport {
    pub kernel: String,
    pub capabilities: Capabilities,
    pub points: Vec<PointReport>,
    pub total_attach_ms: u64,
}

impl AttachReport {
    pub fn attached(&self) -> usize {
        self.points.iter().filter(|p| p.method.is_some()).count()
    }
}

/// The program that writes out each CPU's partial event batch.
const FLUSH_PROG: &str = "skbtrace_flush";
/// The program that copies every CPU's batch state for the reader.
const SNAPSHOT_PROG: &str = "skbtrace_snapshot";

pub struct SessionOptions {
    pub target: Option<Target>,
    /// Ring buffer size in bytes (power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// Which kernel probe points to attach (`--probes`, `--skip-probes`).
    pub probes: crate::select::Selection,
    /// Every event carries its packet bytes (see `probes::flags::ELIDED`).
    pub every_hop_bytes: bool,
    /// Follow one packet in this many (`probes::sampled`); 1: all.
    pub sample_every: u32,
}

pub struct Session {
    // Keeps the programs attached; dropping it detaches and unloads them.
    ebpf: Ebpf,
    pub report: AttachReport,
    pub drop_reasons: HashMap<u32, String>,
    pub offsets: probes::Offsets,
    /// `SKBTRACE_STOP_AFTER` (0 when unset).
    pub stop_after: u32,
}

/// Formats an error with its sources, shortened to one readable line: a
/// verifier log can be thousands of lines; its start names the syscall and
/// its end says what the verifier refused, so both are kept.
pub fn error_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    if s.len() > 400 {
        // The whole verifier log, for RUST_LOG=debug.
        log::debug!("{s}");
    }
    let s = s.replace('\n', " ");
    const HEAD: usize = 160;
    const TAIL: usize = 240;
    if s.len() > HEAD + TAIL + 5 {
        let mut head = HEAD;
        while !s.is_char_boundary(head) {
            head -= 1;
        }
        let mut tail = s.len() - TAIL;
        while !s.is_char_boundary(tail) {
            tail += 1;
        }
        format!("{} ... {}", &s[..head], s[tail..].trim_start())
    } else {
        s
    }
}

fn is_permission_error(msg: &str) -> bool {
    msg.contains("Operation not permitted")
        || msg.contains("Permission denied")
        || msg.contains("EPERM")
}

/// `SKBTRACE_STOP_AFTER=STAGE` makes the skb programs stop after that
/// stage and write no events: how `bench/stages.sh` measures what each
/// stage of the per-event work costs. Unset or empty: the programs do it all.
pub fn stop_after_from_env() -> anyhow::Result<u32> {
    let v = std::env::var_os("SKBTRACE_STOP_AFTER").map(|v| v.to_string_lossy().into_owned());
    let st = parse_stop_after(v.as_deref())?;
    if st != 0 {
        log::warn!(
            "SKBTRACE_STOP_AFTER={}: a benchmark setting; events stop at that stage and no timelines are made",
            v.unwrap_or_default()
        );
    }
    Ok(st)
}

fn parse_stop_after(v: Option<&str>) -> anyhow::Result<u32> {
    let Some(v) = v.filter(|v| !v.is_empty()) else {
        return Ok(0);
    };
    match probes::stage::NAMES.iter().find(|(n, _)| *n == v) {
        Some(&(_, st)) => Ok(st),
        None => bail!(
            "SKBTRACE_STOP_AFTER=`{v}` is not a stage; use one of {} (or unset it)",
            probes::stage::NAMES.map(|(n, _)| n).join(", ")
        ),
    }
}

impl Session {
    pub fn start(opts: &SessionOptions) -> anyhow::Result<Session> {
        crate::caps::check_privileges().map_err(anyhow::Error::msg)?;
        let stop_after = stop_after_from_env()?;
        let object = ebpf_object()?;
        let kbtf = KernelBtf::load()?;
        let mut caps = Capabilities::detect();
        let offsets = kbtf
            .offsets()
            .context("reading struct offsets from the kernel's BTF")?;
        let drop_reasons = crate::btf::drop_reasons(&kbtf);
        let kallsyms = Kallsyms::read().context("reading /proc/kallsyms")?;
        caps.refine_builtin(&kallsyms);
        let aya_btf = Btf::from_sys_fs().context("parsing /sys/kernel/btf/vmlinux with aya")?;

        let config = Config {
            version: EVENT_VERSION,
            filter_enabled: opts.target.is_some() as u16,
            filter_ifindex: opts.target.as_ref().map_or(0, |t| t.ifindex),
            filter_netns: opts.target.as_ref().map_or(0, |t| t.netns_inode),
            wake_all_bytes: opts.ring_bytes / 4,
            stop_after,
            every_hop_bytes: opts.every_hop_bytes as u32,
            sample_every: opts.sample_every,
            offsets,
        };
        let mut ebpf = EbpfLoader::new()
            .override_global("CONFIG", &config, true)
            .map_max_entries("EVENTS", opts.ring_bytes)
            .load(object)
            .context("loading skbtrace's eBPF object (maps and globals)")?;

        // Never attached; see `source::Flusher`.
        program_mut::<RawTracePoint>(&mut ebpf, FLUSH_PROG)
            .and_then(|p| p.load().map_err(|e| error_line(&e)))
            .map_err(|e| anyhow::anyhow!("loading the event-batch flush program: {e}"))?;
        // Needs bpf_map_lookup_percpu_elem (Linux 5.19); without it the
        // reader flushes every CPU at each release instead.
        if let Err(e) = program_mut::<RawTracePoint>(&mut ebpf, SNAPSHOT_PROG)
            .and_then(|p| p.load().map_err(|e| error_line(&e)))
        {
            log::info!(
                "no event-batch snapshot program ({e}): every CPU is flushed every {} ms",
                crate::source::RELEASE_EVERY.as_millis()
            );
        }

        let started = Instant::now();
        let mut points = Vec::new();
        let mut fentry_blocked: Option<String> = None;
        let sel = &opts.probes;
        let mut tp_needed: BTreeSet<u16> = catalog::TRACEPOINTS
            .iter()
            .filter(|t| sel.tracepoint(t))
            .map(|t| t.id)
            .collect();
        let mut fallbacks: Vec<(usize, u16)> = Vec::new();

        for f in catalog::FUNCTIONS.iter().filter(|f| sel.function(f)) {
            let mut r = attach_function(
                &mut ebpf,
                f,
                &caps,
                &kbtf,
                &aya_btf,
                &kallsyms,
                &mut fentry_blocked,
            );
            if r.method.is_none()
                && let Some(fb) = f.fallback
                && let Some(tp) = catalog::tracepoint(fb)
            {
                if sel.fallback(tp) {
                    tp_needed.insert(fb);
                    fallbacks.push((points.len(), fb));
                } else {
                    r.skipped.push(Skipped {
                        method: "tracepoint",
                        reason: format!("{} is skipped (--skip-probes)", tp.full_name()),
                    });
                }
            }
            points.push(r);
        }
        let mut tp_method: HashMap<u16, (&'static str, u64)> = HashMap::new();
        for id in tp_needed {
            let Some(tp) = catalog::tracepoint(id) else {
                continue;
            };
            let r = attach_tracepoint(&mut ebpf, tp, &aya_btf);
            if let Some(m) = r.method {
                tp_method.insert(id, (m, r.attach_us));
            }
            points.push(r);
        }
        for (i, fb) in fallbacks {
            let Some(tp) = catalog::tracepoint(fb) else {
                continue;
            };
            let p = &mut points[i];
            match tp_method.get(&fb) {
                Some((m, _)) => {
                    p.method = Some(m);
                    p.via = Some(tp.full_name());
                }
                None => p.skipped.push(Skipped {
                    method: "tracepoint",
                    reason: format!("{} could not be attached either", tp.full_name()),
                }),
            }
        }
        let report = AttachReport {
            kernel: caps.kernel.clone(),
            capabilities: caps,
            points,
            total_attach_ms: started.elapsed().as_millis() as u64,
        };
        if report.attached() == 0 {
            // Say why here: `skbtrace probes` needs a point to attach too.
            bail!(
                "no probe point could be attached on this kernel. Reasons given:\n  {}",
                nothing_attached_why(&report.points).join("\n  ")
            );
        }
        Ok(Session {
            ebpf,
            report,
            drop_reasons,
            offsets,
            stop_after,
        })
    }

    /// The ring buffer the programs write events to (can be taken once).
    pub fn take_ring(&mut self) -> anyhow::Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .context("the EVENTS ring buffer was already taken")?;
        Ok(RingBuf::try_from(map)?)
    }

    /// Flushes the programs' per-CPU event batches for `source::drain`.
    pub fn flusher(&self) -> anyhow::Result<crate::source::Flusher<'_>> {
        let p: &RawTracePoint = self
            .ebpf
            .program(FLUSH_PROG)
            .context("no flush program in the eBPF object")?
            .try_into()?;
        let snapshot: Option<&RawTracePoint> = self
            .ebpf
            .program(SNAPSHOT_PROG)
            .and_then(|p| <&RawTracePoint>::try_from(p).ok())
            .filter(|p| p.fd().is_ok());
        let snap = self.ebpf.map("SNAP").context("no SNAP map")?;
        crate::source::Flusher::new(p, snapshot, aya::maps::Array::try_from(snap)?)
    }

    /// Per-probe counters summed over CPUs, for probes that ran.
    pub fn stats(&self) -> anyhow::Result<Vec<(u16, ProbeStats)>> {
        let map = self.ebpf.map("STATS").context("no STATS map")?;
        let arr: PerCpuArray<&MapData, ProbeStats> = PerCpuArray::try_from(map)?;
        let mut out = Vec::new();
        for id in 0..MAX_PROBES {
            let per_cpu = arr.get(&id, 0)?;
            let mut sum = ProbeStats::default();
            for s in per_cpu.iter() {
                sum.hits += s.hits;
                sum.emitted += s.emitted;
                sum.lost += s.lost;
            }
            if sum.hits > 0 {
                out.push((id as u16, sum));
            }
        }
        Ok(out)
    }

    /// The loaded eBPF object, to attach more programs (uprobes) into the
    /// same maps.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// The method each attached probe id uses (for labelling events).
    pub fn methods(&self) -> Vec<(String, &'static str)> {
        self.report
            .points
            .iter()
            .filter_map(|p| p.method.map(|m| (p.point.clone(), m)))
            .collect()
    }
}

fn attach_function(
    ebpf: &mut Ebpf,
    f: &FuncPoint,
    caps: &Capabilities,
    kbtf: &KernelBtf,
    aya_btf: &Btf,
    kallsyms: &Kallsyms,
    fentry_blocked: &mut Option<String>,
) -> PointReport {
    let mut r = PointReport::new(f.func.to_string(), f.about);
    let Some(sym) = kallsyms.resolve(f.func) else {
        let why = format!(
            "{} is not in /proc/kallsyms (not in this kernel, or its module is not loaded)",
            f.func
        );
        r.skipped.push(Skipped {
            method: "fentry",
            reason: why.clone(),
        });
        r.skipped.push(Skipped {
            method: "kprobe",
            reason: why,
        });
        return r;
    };
    r.symbol = Some(sym.name.clone());
    r.module = sym.module.clone();

    // Rung 1: fentry.
    let fentry_skip = if let Some(why) = fentry_blocked.as_ref() {
        Some(why.clone())
    } else if let Some(m) = &sym.module {
        Some(format!(
            "in module {m}: aya 0.14's FEntry::load does not pass the module's BTF object, so trampolines reach only vmlinux functions"
        ))
    } else if sym.name != f.func {
        Some(format!(
            "only {} is in kallsyms: a trampoline needs the exact function",
            sym.name
        ))
    } else if !kbtf.has_func(f.func) {
        Some(format!("vmlinux BTF does not describe {}", f.func))
    } else {
        None
    };
    match fentry_skip {
        Some(reason) => r.skipped.push(Skipped {
            method: "fentry",
            reason,
        }),
        None => {
            let t = Instant::now();
            match load_fentry(ebpf, f.fentry_prog, f.func, aya_btf) {
                Ok(n) => {
                    r.method = Some("fentry");
                    r.verified_insns = n;
                    r.attach_us = t.elapsed().as_micros() as u64;
                    return r;
                }
                Err(e) => {
                    let mut reason = format!("loading failed: {e}");
                    if is_permission_error(&reason) {
                        // Same answer for every function: don't ask again.
                        reason = "the kernel refuses fentry programs (BPF_PROG_LOAD: Operation not permitted)".into();
                        *fentry_blocked = Some(reason.clone());
                    }
                    r.skipped.push(Skipped {
                        method: "fentry",
                        reason,
                    });
                }
            }
        }
    }

    // Rung 2: kprobe.
    if !caps.kprobe_pmu {
        r.skipped.push(Skipped {
            method: "kprobe",
            reason: "CONFIG_KPROBES is off: no kprobe PMU in /sys/bus/event_source/devices".into(),
        });
    } else {
        let t = Instant::now();
        match load_kprobe(ebpf, f.kprobe_prog, &sym.name) {
            Ok(n) => {
                r.method = Some("kprobe");
                r.verified_insns = n;
                r.attach_us = t.elapsed().as_micros() as u64;
                return r;
            }
            Err(e) => r.skipped.push(Skipped {
                method: "kprobe",
                reason: format!("attach failed: {e}"),
            }),
        }
    }
    if f.fallback.is_none() {
        r.skipped.push(Skipped {
            method: "tracepoint",
            reason: "no tracepoint fires at or next to this function".into(),
        });
    }
    r
}

fn program_mut<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("program {name} is missing from the eBPF object"))?;
    p.try_into()
        .map_err(|e: aya::programs::ProgramError| error_line(&e))
}

/// Logs how long the verifier took and how much it walked; returns the
/// latter. Seen with `RUST_LOG=tracer=info` while a slow load is running.
pub(crate) fn log_loaded(
    prog: &str,
    started: Instant,
    info: Result<aya::programs::ProgramInfo, aya::programs::ProgramError>,
) -> Option<u32> {
    let n = info.ok().and_then(|i| i.verified_instruction_count());
    log::info!(
        "loaded {prog} in {} ms ({} instructions verified)",
        started.elapsed().as_millis(),
        n.map_or("?".into(), |n| n.to_string())
    );
    n
}

fn load_fentry(ebpf: &mut Ebpf, prog: &str, func: &str, btf: &Btf) -> Result<Option<u32>, String> {
    let p: &mut FEntry = program_mut(ebpf, prog)?;
    let t = Instant::now();
    p.load(func, btf).map_err(|e| error_line(&e))?;
    let n = log_loaded(prog, t, p.info());
    p.attach().map_err(|e| error_line(&e))?;
    Ok(n)
}

fn load_kprobe(ebpf: &mut Ebpf, prog: &str, symbol: &str) -> Result<Option<u32>, String> {
    let p: &mut KProbe = program_mut(ebpf, prog)?;
    let t = Instant::now();
    p.load().map_err(|e| error_line(&e))?;
    let n = log_loaded(prog, t, p.info());
    p.attach(symbol, 0).map_err(|e| error_line(&e))?;
    Ok(n)
}

fn attach_tracepoint(ebpf: &mut Ebpf, tp: &TracePoint, btf: &Btf) -> PointReport {
    let mut r = PointReport::new(tp.full_name(), tp.about);
    r.symbol = Some(tp.full_name());
    r.skipped.push(Skipped {
        method: "fentry",
        reason: "a tracepoint, not a function".into(),
    });
    let t = Instant::now();
    let tb = (|| -> Result<Option<u32>, String> {
        let p: &mut BtfTracePoint = program_mut(ebpf, tp.tp_btf_prog)?;
        p.load(tp.name, btf).map_err(|e| error_line(&e))?;
        let n = log_loaded(tp.tp_btf_prog, t, p.info());
        p.attach().map_err(|e| error_line(&e))?;
        Ok(n)
    })();
    match tb {
        Ok(n) => {
            r.method = Some("tp_btf");
            r.verified_insns = n;
            r.attach_us = t.elapsed().as_micros() as u64;
            return r;
        }
        Err(e) => r.skipped.push(Skipped {
            method: "tp_btf",
            reason: e,
        }),
    }
    let t = Instant::now();
    let rt = (|| -> Result<Option<u32>, String> {
        let p: &mut RawTracePoint = program_mut(ebpf, tp.raw_tp_prog)?;
        p.load().map_err(|e| error_line(&e))?;
        let n = log_loaded(tp.raw_tp_prog, t, p.info());
        p.attach(tp.name).map_err(|e| error_line(&e))?;
        Ok(n)
    })();
    match rt {
        Ok(n) => {
            r.method = Some("raw_tracepoint");
            r.verified_insns = n;
            r.attach_us = t.elapsed().as_micros() as u64;
        }
        Err(e) => r.skipped.push(Skipped {
            method: "raw_tracepoint",
            reason: e,
        }),
    }
    r
}

/// The distinct reasons the points give for not attaching (at most 6):
/// each method's refusal, not the stand-ins' echo of a tracepoint's.
fn nothing_attached_why(points: &[PointReport]) -> Vec<String> {
    let mut why: Vec<String> = Vec::new();
    for sk in points
        .iter()
        .flat_map(|p| &p.skipped)
        .filter(|s| !s.reason.ends_with("either"))
    {
        let line = format!("{}: {}", sk.method, sk.reason);
        if !why.contains(&line) {
            why.push(line);
        }
    }
    why.truncate(6);
    why
}

/// Offset to add to bpf_ktime_get_ns (CLOCK_MONOTONIC) for CLOCK_REALTIME.
pub fn mono_to_realtime_ns() -> i128 {
    use nix::time::{ClockId, clock_gettime};
    let m1 = clock_gettime(ClockId::CLOCK_MONOTONIC).ok();
    let r = clock_gettime(ClockId::CLOCK_REALTIME).ok();
    let m2 = clock_gettime(ClockId::CLOCK_MONOTONIC).ok();
    match (m1, r, m2) {
        (Some(m1), Some(r), Some(m2)) => {
            let ns = |t: nix::sys::time::TimeSpec| {
                t.tv_sec() as i128 * 1_000_000_000 + t.tv_nsec() as i128
            };
            ns(r) - (ns(m1) + ns(m2)) / 2
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::{PointReport, Skipped, error_line, nothing_attached_why, parse_stop_after};

    #[test]
    fn stop_after_takes_stage_names_in_order_and_rejects_others() {
        assert_eq!(parse_stop_after(None).unwrap(), 0);
        assert_eq!(parse_stop_after(Some("")).unwrap(), 0);
        let got: Vec<u32> = [
            "entry",
            "locate",
            "fingerprint",
            "follow",
            "reserve",
            "fill",
            "decode",
            "stamp",
        ]
        .iter()
        .map(|n| parse_stop_after(Some(n)).unwrap())
        .collect();
        assert_eq!(got, [1, 2, 3, 4, 5, 6, 7, 8]);
        // The exit report names the stage back from its value.
        assert_eq!(probes::stage::name(8), Some("stamp"));
        assert_eq!(probes::stage::name(0), None);
        let e = parse_stop_after(Some("write")).unwrap_err().to_string();
        assert!(
            e.contains("`write` is not a stage") && e.contains("entry, locate"),
            "{e}"
        );
    }

    fn point(name: &str, skipped: &[(&'static str, &str)]) -> PointReport {
        let mut p = PointReport::new(name.into(), "");
        p.skipped = skipped
            .iter()
            .map(|&(method, reason)| Skipped {
                method,
                reason: reason.into(),
            })
            .collect();
        p
    }

    #[test]
    fn nothing_attached_names_each_refusal_once_and_not_the_echoes() {
        let kp = ("kprobe", "CONFIG_KPROBES is off");
        let points = [
            point(
                "veth_xmit",
                &[
                    kp,
                    (
                        "tracepoint",
                        "net:net_dev_start_xmit could not be attached either",
                    ),
                ],
            ),
            point("netif_rx", &[kp]),
            point(
                "net:netif_rx",
                &[(
                    "tp_btf",
                    "Verifier output: R9 max value is outside of the allowed memory range",
                )],
            ),
        ];
        assert_eq!(
            nothing_attached_why(&points),
            [
                "kprobe: CONFIG_KPROBES is off",
                "tp_btf: Verifier output: R9 max value is outside of the allowed memory range",
            ]
        );
    }

    #[test]
    fn a_long_verifier_log_keeps_its_start_and_its_verdict() {
        let log = format!(
            "BPF_PROG_LOAD failed. Verifier output:\n0: R1=ctx()\n{}R2 pointer multiplication prohibited\nprocessed 206 insns",
            "1: (79) r8 = *(u64 *)(r1 +0)\n".repeat(200)
        );
        let line = error_line(&std::io::Error::other(log));
        assert!(line.starts_with("BPF_PROG_LOAD failed."), "{line}");
        assert!(line.contains(" ... "), "{line}");
        assert!(
            line.ends_with("R2 pointer multiplication prohibited processed 206 insns"),
            "{line}"
        );
        assert!(!line.contains('\n') && line.len() < 420, "{line}");
        let short = error_line(&std::io::Error::other("no such device"));
        assert_eq!(short, "no such device");
    }
}

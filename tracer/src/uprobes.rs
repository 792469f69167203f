//! Uprobes on userspace datapaths, joined into the kernel's per-packet
//! timelines.
//!
//! - `--uprobe PATH:GLOB[%return]`: symbols are read with blazesym from the
//!   file's .symtab/.dynsym and from its debug file (found by build id under
//!   /usr/lib/debug/.build-id, or by .gnu_debuglink next to it, in .debug/,
//!   or under /usr/lib/debug). A glob attaches every match. With `--pid`, a
//!   bare library name (`libc`) is found in /proc/PID/maps and the probe only
//!   fires in that process.
//! - Presets: `--fwd` (skbtrace-fwd's per-frame hooks), `--ovs`
//!   (ovs-vswitchd: its netdev functions when it has symbols, always the libc
//!   calls it moves packets with), `--vpp` (VPP's af_packet plugin node
//!   functions, all CPU variants).
//!
//! Attachment is by file offset, computed here from the binary's program
//! headers: aya 0.14's own symbol lookup fails on stripped binaries.
//!
//! Which eBPF program a symbol gets depends on what it can see: a frame
//! (fingerprinted, joins the packet's timeline exactly) or only a batch
//! size / a call (placed in timelines by time and process).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use aya::Ebpf;
use aya::programs::UProbe;
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope};
use blazesym::SymType;
use blazesym::inspect::Inspector;
use blazesym::inspect::source::{Elf, Source};
use object::{Object, ObjectSegment};
use probes::MAX_PROBES;
use probes::id::UPROBE_BASE;
use serde::Serialize;

/// How many uprobe attach points fit in the probe id space.
pub const MAX_UPROBES: usize = (MAX_PROBES as usize) - UPROBE_BASE as usize;

/// The correlator's join window when uprobes are attached: a packet whose
/// skbs all ended (copied into an AF_PACKET socket) is held this long for
/// the datapath process to pick it up (it may be descheduled, or woken
/// late under emulation), instead of the kernel-only 50 ms.
pub const USER_JOIN_WINDOW_NS: u64 = 500_000_000;

/// Where the batch size sits in a VPP `vlib_frame_t` (u16 frame_flags,
/// flags, scalar_offset, vector_offset, aux_offset, then n_vectors; VPP
/// 21.01 and later).
pub const VPP_N_VECTORS_OFFSET: u16 = 10;

/// What a probed function shows, which decides its eBPF program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Kind {
    /// `f(const u8 *frame, u32 len, u32 ifindex)`: skbtrace-fwd's rx hook.
    Frame,
    /// The same, for a frame just written to an AF_PACKET TX ring
    /// (skbtrace_fwd_tx): its fingerprint is also handed to the kernel
    /// programs for the zero-copy skb the ring's kick builds.
    RingTx,
    /// `sendto(fd, buf, len, ...)`, `send(fd, buf, len, flags)`.
    SendTo,
    /// `sendmsg(fd, msghdr *, flags)`.
    SendMsg,
    /// `sendmmsg(fd, mmsghdr *, vlen, flags)`.
    SendMmsg,
    /// `recvfrom`/`recv`: frame seen at return.
    RecvFrom,
    /// `recvmsg`: frame seen at return.
    RecvMsg,
    /// `recvmmsg`: frames seen at return.
    RecvMmsg,
    /// A function taking a vector it does not show: the batch size is a u16
    /// at `offset` in its third argument (VPP tx node functions).
    Batch { offset: u16 },
    /// A function returning how many packets it handled (VPP input nodes).
    BatchRet,
    /// Any other function: one time-placed hop per call.
    Call,
    /// Its return.
    CallRet,
}

impl Kind {
    /// The kind for a symbol name, when nothing more specific is known.
    pub fn for_symbol(name: &str, ret: bool) -> Kind {
        let base = name.split('@').next().unwrap_or(name);
        let base = base.trim_start_matches("__").trim_start_matches("libc_");
        match base {
            "skbtrace_fwd_rx" => Kind::Frame,
            "skbtrace_fwd_tx" => Kind::RingTx,
            "sendto" | "send" => Kind::SendTo,
            "sendmsg" => Kind::SendMsg,
            "sendmmsg" => Kind::SendMmsg,
            "recvfrom" | "recv" => Kind::RecvFrom,
            "recvmsg" => Kind::RecvMsg,
            "recvmmsg" => Kind::RecvMmsg,
            _ if ret => Kind::CallRet,
            _ => Kind::Call,
        }
    }

    /// (program attached at the function, entry program it also needs).
    /// Receive calls see their frame at return and keep their buffer
    /// argument from the entry.
    fn programs(self) -> (&'static str, Option<&'static str>) {
        match self {
            Kind::Frame | Kind::RingTx => ("up_frame", None),
            Kind::SendTo => ("up_sendto", None),
            Kind::SendMsg => ("up_sendmsg", None),
            Kind::SendMmsg => ("up_sendmmsg", None),
            Kind::RecvFrom => ("ur_recvfrom", Some("up_recv_entry")),
            Kind::RecvMsg => ("ur_recvmsg", Some("up_recv_entry")),
            Kind::RecvMmsg => ("ur_recvmmsg", Some("up_recv_entry")),
            Kind::Batch { .. } => ("up_batch", None),
            Kind::BatchRet => ("ur_batch", None),
            Kind::Call => ("up_call", None),
            Kind::CallRet => ("ur_call", None),
        }
    }

    /// Sees frame bytes (fingerprinted hops) rather than batches or calls.
    pub fn sees_frames(self) -> bool {
        !matches!(
            self,
            Kind::Batch { .. } | Kind::BatchRet | Kind::Call | Kind::CallRet
        )
    }

    fn cookie_extra(self) -> u64 {
        match self {
            Kind::Batch { offset } => (offset as u64) << 16,
            // tracer-ebpf/src/uprobe.rs COOKIE_TX_RING
            Kind::RingTx => 1 << 32,
            _ => 0,
        }
    }
}

/// One requested probe: a file (or a library name with a pid) and a glob.
#[derive(Clone, Debug)]
pub struct Request {
    /// A path, or a bare library name (`libc`) looked up in /proc/PID/maps.
    pub target: String,
    pub glob: String,
    /// `%return`: a return probe.
    pub ret: bool,
    /// Fires only in this process.
    pub pid: Option<u32>,
    /// None: chosen from the symbol name ([`Kind::for_symbol`]).
    pub kind: Option<Kind>,
    /// A missing match is an error (else a note).
    pub required: bool,
    /// Prefix of hop names (`ovs:`, `vpp:`); empty for --uprobe.
    pub label: String,
}

/// What to attach and which processes to watch.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub requests: Vec<Request>,
    /// Processes whose exit is reported (the trace goes on).
    pub watch: Vec<(u32, String)>,
    /// Said once at start (what a preset found, what it could not).
    pub notes: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }
}

/// The command-line options for userspace probes (`skbtrace follow`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct UprobeArgs {
    /// Also probe userspace function(s): PATH:SYMBOL_GLOB, `%return` appended
    /// for a return probe (repeatable). Symbols come from .symtab/.dynsym and
    /// debug files (/usr/lib/debug, build id, .gnu_debuglink); a glob
    /// attaches every match. With --pid, PATH may be a library name (libc).
    #[arg(long = "uprobe", value_name = "PATH:GLOB")]
    pub uprobe: Vec<String>,
    /// Scope the uprobes to this process (and find libraries in its /proc/PID/maps).
    #[arg(long)]
    pub pid: Option<u32>,
    /// Follow packets through skbtrace-fwd (its skbtrace_fwd_rx/tx hooks).
    #[arg(long)]
    pub fwd: bool,
    /// Follow packets through ovs-vswitchd (netdev functions when it has
    /// symbols, else the libc calls it sends and receives with).
    #[arg(long)]
    pub ovs: bool,
    /// Follow packets through VPP's af_packet plugin (host-interfaces).
    #[arg(long)]
    pub vpp: bool,
}

impl UprobeArgs {
    /// What to attach: presets first, then --uprobe specs.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        let mut plan = Plan::default();
        let mut add = |p: Plan| {
            plan.requests.extend(p.requests);
            plan.watch.extend(p.watch);
            plan.notes.extend(p.notes);
        };
        if self.fwd {
            add(preset_fwd(self.pid)?);
        }
        if self.ovs {
            add(preset_ovs(self.pid)?);
        }
        if self.vpp {
            add(preset_vpp(self.pid)?);
        }
        if let Some(pid) = self.pid {
            match comm_of(pid) {
                None => anyhow::bail!("--pid {pid}: no such process (check it with `ps -p {pid}`)"),
                Some(c) => {
                    if !plan.watch.iter().any(|(p, _)| *p == pid) {
                        plan.watch.push((pid, c));
                    }
                }
            }
        }
        for spec in &self.uprobe {
            plan.requests.push(parse_spec(spec, self.pid)?);
        }
        Ok(plan)
    }
}

/// Parses `PATH:GLOB` or `PATH:GLOB%return`.
pub fn parse_spec(spec: &str, pid: Option<u32>) -> anyhow::Result<Request> {
    let (body, ret) = match spec.strip_suffix("%return") {
        Some(b) => (b, true),
        None => (spec, false),
    };
    let Some((target, glob)) = body.rsplit_once(':') else {
        anyhow::bail!(
            "--uprobe {spec}: expected PATH:SYMBOL (e.g. /usr/sbin/ovs-vswitchd:netdev_send, libc:sendmmsg with --pid, /lib/x86_64-linux-gnu/libc.so.6:recvmmsg%return)"
        );
    };
    if target.is_empty() || glob.is_empty() {
        anyhow::bail!("--uprobe {spec}: both PATH and SYMBOL are needed (PATH:SYMBOL)");
    }
    Ok(Request {
        target: target.to_string(),
        glob: glob.to_string(),
        ret,
        pid,
        kind: None,
        required: true,
        label: String::new(),
    })
}

/// `*` and `?` glob match.
pub fn glob_match(pat: &str, s: &str) -> bool {
    let (p, s) = (pat.as_bytes(), s.as_bytes());
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The `n` names closest to `glob` (its literal part): names containing it
/// first, then by edit distance.
pub fn closest<'a>(glob: &str, names: impl Iterator<Item = &'a str>, n: usize) -> Vec<String> {
    let lit: String = glob.chars().filter(|c| *c != '*' && *c != '?').collect();
    let lit = lit.to_lowercase();
    let mut scored: Vec<(usize, &str)> = names
        .map(|name| {
            let l = name.to_lowercase();
            let d = if !lit.is_empty() && l.contains(&lit) {
                l.len() - lit.len()
            } else {
                1000 + levenshtein(&lit, &l)
            };
            (d, name)
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(n)
        .map(|(_, s)| s.to_string())
        .collect()
}

/// A function symbol and the file offset a uprobe attaches at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    pub name: String,
    pub addr: u64,
    pub offset: u64,
}

/// The functions of one ELF file and where they came from.
#[derive(Clone, Debug, Default)]
pub struct SymbolTable {
    pub symbols: Vec<Symbol>,
    /// Files read: the binary and any debug file.
    pub sources: Vec<PathBuf>,
    /// Debug files looked for and not found (for "install ..." hints).
    pub debug_missing: Vec<PathBuf>,
}

/// ELF virtual address -> file offset, from the PT_LOAD segments.
struct Segments(Vec<(u64, u64, u64)>);

impl Segments {
    fn offset(&self, addr: u64) -> Option<u64> {
        self.0
            .iter()
            .find(|(a, size, _)| addr >= *a && addr < a + size)
            .map(|(a, _, off)| addr - a + off)
    }
}

/// Debug files for `path`: by build id, then by .gnu_debuglink.
fn debug_candidates(path: &Path, obj: &object::File<'_>) -> Vec<PathBuf> {
    let root = Path::new("/usr/lib/debug");
    let mut out = Vec::new();
    if let Ok(Some(id)) = obj.build_id()
        && id.len() > 1
    {
        let hex: String = id.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
        out.push(
            root.join(".build-id")
                .join(&hex[..2])
                .join(format!("{}.debug", &hex[2..])),
        );
    }
    if let Ok(Some((name, _crc))) = obj.gnu_debuglink() {
        let name = String::from_utf8_lossy(name).into_owned();
        let dir = path.parent().unwrap_or(Path::new("/"));
        out.push(dir.join(&name));
        out.push(dir.join(".debug").join(&name));
        out.push(root.join(dir.strip_prefix("/").unwrap_or(dir)).join(&name));
    }
    out.retain(|p| p != path);
    out
}

/// Reads the function symbols of `path` and of its debug file.
pub fn read_symbols(path: &Path) -> anyhow::Result<SymbolTable> {
    use anyhow::Context;
    let data = std::fs::read(path).with_context(|| {
        format!(
            "cannot read {}: check the path (and that skbtrace runs as root)",
            path.display()
        )
    })?;
    let obj = object::File::parse(&*data).with_context(|| {
        format!(
            "{} is not an ELF binary or shared library a uprobe can attach to",
            path.display()
        )
    })?;
    let segs = Segments(
        obj.segments()
            .filter_map(|s| {
                let (off, fsize) = s.file_range();
                (fsize > 0).then_some((s.address(), fsize, off))
            })
            .collect(),
    );
    let mut table = SymbolTable::default();
    let inspector = Inspector::new();
    let mut by_name: BTreeMap<String, Symbol> = BTreeMap::new();
    let mut files = vec![path.to_path_buf()];
    for cand in debug_candidates(path, &obj) {
        if cand.exists() {
            files.push(cand);
        } else {
            table.debug_missing.push(cand);
        }
    }
    for (i, file) in files.iter().enumerate() {
        let mut elf = Elf::new(file.clone());
        elf.debug_syms = false;
        let src = Source::Elf(elf);
        let mut found = false;
        let r = inspector.for_each(&src, |s| {
            if s.sym_type == SymType::Function && s.addr != 0 {
                let name = s.name.split('@').next().unwrap_or(&s.name).to_string();
                // A debug file's own offsets are of that file: map the
                // address through the binary's segments.
                let offset = segs
                    .offset(s.addr)
                    .or(if i == 0 { s.file_offset } else { None });
                if let Some(offset) = offset {
                    found = true;
                    by_name.entry(name.clone()).or_insert(Symbol {
                        name,
                        addr: s.addr,
                        offset,
                    });
                }
            }
            ControlFlow::Continue(())
        });
        match r {
            Ok(()) if found || i == 0 => table.sources.push(file.clone()),
            Ok(()) => {}
            Err(e) if i == 0 => {
                return Err(anyhow::anyhow!(
                    "reading the symbols of {}: {e}",
                    path.display()
                ));
            }
            Err(e) => log::warn!("ignoring debug file {}: {e}", file.display()),
        }
    }
    table.symbols = by_name.into_values().collect();
    Ok(table)
}

/// One line of /proc/PID/maps that maps a file.
fn maps_paths(pid: u32) -> anyhow::Result<Vec<String>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| {
        anyhow::anyhow!(
            "no process {pid} to probe ({e}): check the pid with `ps -p {pid}` (it may have exited)"
        )
    })?;
    let mut out: Vec<String> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with('/'))
        .map(String::from)
        .collect();
    out.dedup();
    Ok(out)
}

/// A path as seen from skbtrace: through /proc/PID/root when the process
/// lives in another mount namespace (a container).
fn via_root(pid: u32, path: &str) -> PathBuf {
    let own = PathBuf::from(path);
    let theirs = PathBuf::from(format!("/proc/{pid}/root{path}"));
    if theirs.exists() {
        // Same file both ways when the process shares our root.
        let same = std::fs::metadata(&own)
            .ok()
            .zip(std::fs::metadata(&theirs).ok())
            .is_some_and(|(a, b)| {
                use std::os::unix::fs::MetadataExt;
                a.dev() == b.dev() && a.ino() == b.ino()
            });
        if same { own } else { theirs }
    } else {
        own
    }
}

/// Finds library `name` (`libc`, `libc.so.6`, `af_packet_plugin.so`) in
/// the process's mappings.
pub fn find_in_maps(pid: u32, name: &str) -> anyhow::Result<PathBuf> {
    let paths = maps_paths(pid)?;
    let base = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
    let hit = paths.iter().find(|p| base(p) == name).or_else(|| {
        paths.iter().find(|p| {
            let b = base(p);
            b.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('-'))
        })
    });
    match hit {
        Some(p) => Ok(via_root(pid, p.trim_end_matches(" (deleted)"))),
        None => {
            let libs: Vec<String> = paths.iter().map(|p| base(p)).collect();
            let near = closest(name, libs.iter().map(String::as_str), 5);
            anyhow::bail!(
                "process {pid} has no library {name} mapped; closest: {}. Give the full path instead.",
                if near.is_empty() {
                    "none".to_string()
                } else {
                    near.join(", ")
                }
            )
        }
    }
}

/// The executable of a process.
pub fn process_exe(pid: u32) -> anyhow::Result<PathBuf> {
    let link = std::fs::read_link(format!("/proc/{pid}/exe")).map_err(|e| {
        anyhow::anyhow!("cannot read /proc/{pid}/exe ({e}): is process {pid} running?")
    })?;
    let s = link.to_string_lossy();
    // Replaced on disk since it started (a rebuild): the running inode is
    // only reachable through /proc/PID/exe.
    if s.ends_with(" (deleted)") {
        return Ok(PathBuf::from(format!("/proc/{pid}/exe")));
    }
    let p = via_root(pid, &s);
    Ok(if p.exists() {
        p
    } else {
        PathBuf::from(format!("/proc/{pid}/exe"))
    })
}

/// Pids whose comm is `comm`, lowest first.
pub fn pids_by_comm(comm: &str) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_end() == comm)
            {
                out.push(pid);
            }
        }
    }
    out.sort_unstable();
    out
}

pub fn comm_of(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_string())
}

/// The pid to trace for a preset: the one given (checked), else the only
/// process called one of `comms`.
fn preset_pid(what: &str, comms: &[&str], pid: Option<u32>) -> anyhow::Result<u32> {
    if let Some(p) = pid {
        if comm_of(p).is_none() {
            anyhow::bail!("--pid {p}: no such process (check it with `ps -p {p}`)");
        }
        return Ok(p);
    }
    let mut all: Vec<u32> = comms.iter().flat_map(|c| pids_by_comm(c)).collect();
    all.sort_unstable();
    all.dedup();
    match all.as_slice() {
        [] => anyhow::bail!(
            "--{what}: no {} process is running: start it first, or give --pid PID",
            comms.join(" / ")
        ),
        [p] => Ok(*p),
        many => anyhow::bail!(
            "--{what}: {} processes are running ({}): pick one with --pid PID",
            comms.join(" / "),
            many.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `--fwd`: skbtrace-fwd's hooks. The binary of a running skbtrace-fwd (or
/// of `--pid`), else the one installed next to skbtrace, else on PATH.
pub fn preset_fwd(pid: Option<u32>) -> anyhow::Result<Plan> {
    let mut plan = Plan::default();
    let running = match pid {
        Some(p) => vec![p],
        None => pids_by_comm("skbtrace-fwd"),
    };
    let mut exes: Vec<PathBuf> = Vec::new();
    for &p in &running {
        let e = process_exe(p)?;
        if !exes.contains(&e) {
            exes.push(e);
        }
    }
    if exes.is_empty() {
        let own = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("skbtrace-fwd")));
        let on_path = std::env::var_os("PATH").and_then(|ps| {
            std::env::split_paths(&ps)
                .map(|d| d.join("skbtrace-fwd"))
                .find(|p| p.exists())
        });
        match own.filter(|p| p.exists()).or(on_path) {
            Some(p) => {
                plan.notes.push(format!(
                    "--fwd: no skbtrace-fwd is running yet; probing {} (every process started from it)",
                    p.display()
                ));
                exes.push(p);
            }
            None => anyhow::bail!(
                "--fwd: skbtrace-fwd is neither running nor installed next to skbtrace or on PATH: build it (cargo build --bins) or give --uprobe PATH:skbtrace_fwd_*"
            ),
        }
    }
    for &p in &running {
        plan.watch.push((p, comm_of(p).unwrap_or_default()));
    }
    // Every running skbtrace-fwd binary (several builds may run at once).
    for exe in &exes {
        for sym in ["skbtrace_fwd_rx", "skbtrace_fwd_tx"] {
            plan.requests.push(Request {
                target: exe.to_string_lossy().into_owned(),
                glob: sym.to_string(),
                ret: false,
                pid,
                kind: None,
                required: true,
                label: String::new(),
            });
        }
    }
    Ok(plan)
}

/// `--ovs`: ovs-vswitchd. Its netdev functions when its binary has
/// symbols (batch hops); always the libc calls it sends and receives
/// AF_PACKET frames with (frame hops), scoped to its pid.
pub fn preset_ovs(pid: Option<u32>) -> anyhow::Result<Plan> {
    let pid = preset_pid("ovs", &["ovs-vswitchd"], pid)?;
    let mut plan = Plan::default();
    plan.watch
        .push((pid, comm_of(pid).unwrap_or_else(|| "ovs-vswitchd".into())));
    let exe = process_exe(pid)?;
    let syms = read_symbols(&exe)?;
    let has = |n: &str| syms.symbols.iter().any(|s| s.name == n);
    if has("netdev_linux_send") {
        // netdev_linux_send(netdev, qid, struct dp_packet_batch *batch, ...):
        // batch->count (a size_t) is at offset 0.
        plan.requests.push(Request {
            target: exe.to_string_lossy().into_owned(),
            glob: "netdev_linux_send".into(),
            ret: false,
            pid: Some(pid),
            kind: Some(Kind::Batch { offset: 0 }),
            required: false,
            label: "ovs:".into(),
        });
        plan.requests.push(Request {
            target: exe.to_string_lossy().into_owned(),
            glob: "netdev_linux_rxq_recv".into(),
            ret: true,
            pid: Some(pid),
            kind: Some(Kind::CallRet),
            required: false,
            label: "ovs:".into(),
        });
        plan.notes.push(format!(
            "--ovs: {} has symbols: probing netdev_linux_send and netdev_linux_rxq_recv too",
            exe.display()
        ));
    } else {
        plan.notes.push(format!(
            "--ovs: {} is stripped (no netdev_* symbols{}): following it through the libc calls it moves packets with",
            exe.display(),
            hint_debug_package(&exe, &syms)
                .map(|h| format!("; for them {h}"))
                .unwrap_or_default()
        ));
    }
    let libc = find_in_maps(pid, "libc.so.6").or_else(|_| find_in_maps(pid, "libc"))?;
    for (sym, ret) in [
        ("sendmmsg", false),
        ("sendmsg", false),
        ("sendto", false),
        ("recvmmsg", false),
        ("recvmsg", false),
        ("recvfrom", false),
        ("poll", true),
    ] {
        plan.requests.push(Request {
            target: libc.to_string_lossy().into_owned(),
            glob: sym.to_string(),
            ret,
            pid: Some(pid),
            kind: None,
            required: sym != "recvfrom",
            label: "ovs:".into(),
        });
    }
    Ok(plan)
}

/// Where VPP keeps its plugins when it is not running.
const VPP_PLUGIN_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/vpp_plugins",
    "/usr/lib/vpp_plugins",
    "/usr/lib64/vpp_plugins",
];

/// `--vpp`: the af_packet plugin's node functions in the vpp process (all
/// CPU variants: `_hsw`, `_icl`, `_skx`, ...). They handle vectors, so their
/// hops carry the batch size and are placed by time.
pub fn preset_vpp(pid: Option<u32>) -> anyhow::Result<Plan> {
    let pid = preset_pid("vpp", &["vpp_main", "vpp"], pid)?;
    let plugin = find_in_maps(pid, "af_packet_plugin.so").or_else(|e| {
        VPP_PLUGIN_DIRS
            .iter()
            .map(|d| Path::new(d).join("af_packet_plugin.so"))
            .find(|p| p.exists())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{e}; and af_packet_plugin.so is in none of {}: is the af_packet plugin enabled in startup.conf?",
                    VPP_PLUGIN_DIRS.join(", ")
                )
            })
    })?;
    vpp_plan(pid, &plugin)
}

/// The VPP plan for a given plugin file (separate for tests).
pub fn vpp_plan(pid: u32, plugin: &Path) -> anyhow::Result<Plan> {
    let syms = read_symbols(plugin)?;
    let mut plan = Plan::default();
    plan.watch
        .push((pid, comm_of(pid).unwrap_or_else(|| "vpp".into())));
    let want = [
        ("af_packet_input_node_fn*", Kind::BatchRet, true),
        (
            "af_packet_device_class_tx_fn*",
            Kind::Batch {
                offset: VPP_N_VECTORS_OFFSET,
            },
            false,
        ),
    ];
    let missing: Vec<&str> = want
        .iter()
        .filter(|(g, _, _)| !syms.symbols.iter().any(|s| glob_match(g, &s.name)))
        .map(|(g, _, _)| *g)
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "--vpp: {} has no symbol matching {} (a stripped plugin); {}",
            plugin.display(),
            missing.join(" or "),
            hint_debug_package(plugin, &syms).unwrap_or_else(|| {
                let looked: Vec<String> = syms
                    .debug_missing
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                format!(
                    "install VPP's debug symbols (vpp-dbg from fd.io, or the distribution's -dbgsym package) so they land under /usr/lib/debug{}",
                    if looked.is_empty() {
                        String::new()
                    } else {
                        format!(" (looked for {})", looked.join(", "))
                    }
                )
            })
        );
    }
    for (glob, kind, ret) in want {
        plan.requests.push(Request {
            target: plugin.to_string_lossy().into_owned(),
            glob: glob.to_string(),
            ret,
            pid: Some(pid),
            kind: Some(kind),
            required: true,
            label: "vpp:".into(),
        });
    }
    Ok(plan)
}

/// "install X" for a binary whose debug file is missing: the package that
/// owns it (dpkg) plus its -dbgsym, and where the debug file is expected.
pub fn hint_debug_package(path: &Path, syms: &SymbolTable) -> Option<String> {
    let owner = std::process::Command::new("dpkg-query")
        .arg("-S")
        .arg(path)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .and_then(|l| l.split(':').next())
                .map(|s| s.trim().to_string())
        });
    debug_hint_text(owner.as_deref(), path, &syms.debug_missing)
}

/// The text of [`hint_debug_package`] (pure, for tests).
pub fn debug_hint_text(owner: Option<&str>, path: &Path, missing: &[PathBuf]) -> Option<String> {
    let is_vpp = path.to_string_lossy().contains("vpp");
    let pkg = match (owner, is_vpp) {
        (Some(o), true) => Some(format!(
            "install vpp-dbg (fd.io packages) or {o}-dbgsym (Debian/Ubuntu debug archive)"
        )),
        (None, true) => Some("install vpp-dbg (fd.io packages) or vpp-plugin-core-dbgsym".into()),
        (Some(o), false) => Some(format!("install {o}-dbgsym (or {o}-dbg)")),
        (None, false) => None,
    }?;
    let want = missing
        .first()
        .map(|p| format!(", which puts {}", p.display()))
        .unwrap_or_default();
    Some(format!("{pkg}{want}"))
}

/// One resolved attach point.
#[derive(Clone, Debug, Serialize)]
pub struct Resolved {
    pub id: u16,
    /// The hop name: label + symbol (+ `%return`).
    pub name: String,
    pub symbol: String,
    pub path: PathBuf,
    pub offset: u64,
    pub kind: Kind,
    pub ret: bool,
    pub pid: Option<u32>,
}

/// Resolves every request to attach points, with ids from UPROBE_BASE.
/// Errors say what was not found and what is close.
pub fn resolve(plan: &Plan) -> anyhow::Result<(Vec<Resolved>, Vec<String>)> {
    let mut out: Vec<Resolved> = Vec::new();
    let mut notes = Vec::new();
    let mut tables: HashMap<PathBuf, SymbolTable> = HashMap::new();
    for r in &plan.requests {
        let path = if r.target.contains('/') {
            let p = PathBuf::from(&r.target);
            if !p.exists() {
                anyhow::bail!(
                    "--uprobe {}:{}: {} does not exist: give the path of a binary or shared library{}",
                    r.target,
                    r.glob,
                    p.display(),
                    if r.pid.is_some() {
                        ""
                    } else {
                        " (or a library name such as libc together with --pid)"
                    }
                );
            }
            p
        } else if let Some(pid) = r.pid {
            find_in_maps(pid, &r.target)?
        } else {
            anyhow::bail!(
                "--uprobe {}:{}: `{}` is not a path: give the full path, or --pid PID to find the library in that process",
                r.target,
                r.glob,
                r.target
            );
        };
        if let Some(pid) = r.pid
            && comm_of(pid).is_none()
        {
            anyhow::bail!("--pid {pid}: no such process (check it with `ps -p {pid}`)");
        }
        if !tables.contains_key(&path) {
            tables.insert(path.clone(), read_symbols(&path)?);
        }
        let table = &tables[&path];
        let matches: Vec<&Symbol> = table
            .symbols
            .iter()
            .filter(|s| glob_match(&r.glob, &s.name))
            .collect();
        if matches.is_empty() {
            let near = closest(&r.glob, table.symbols.iter().map(|s| s.name.as_str()), 8);
            let mut msg = format!(
                "no function matching `{}` in {} ({} function symbols read from {})",
                r.glob,
                path.display(),
                table.symbols.len(),
                table
                    .sources
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" + ")
            );
            if near.is_empty() {
                msg.push_str("; it has no function symbols at all (stripped)");
            } else {
                let _ = write!(msg, "; closest: {}", near.join(", "));
            }
            if let Some(h) = hint_debug_package(&path, table) {
                let _ = write!(msg, "; for full symbols {h}");
            }
            if r.required {
                anyhow::bail!(msg);
            }
            notes.push(msg);
            continue;
        }
        for s in matches {
            // Aliases (sendmmsg, __sendmmsg) share an address: attach once.
            if out
                .iter()
                .any(|o| o.path == path && o.offset == s.offset && o.ret == r.ret && o.pid == r.pid)
            {
                continue;
            }
            if out.len() >= MAX_UPROBES {
                anyhow::bail!(
                    "more than {MAX_UPROBES} uprobe attach points (`{}` in {} matched many): narrow the glob",
                    r.glob,
                    path.display()
                );
            }
            let kind = r.kind.unwrap_or_else(|| Kind::for_symbol(&s.name, r.ret));
            let ret = r.ret || matches!(kind, Kind::BatchRet | Kind::CallRet);
            out.push(Resolved {
                id: UPROBE_BASE + out.len() as u16,
                name: format!(
                    "{}{}{}",
                    r.label,
                    s.name,
                    if r.ret && kind != Kind::BatchRet {
                        "%return"
                    } else {
                        ""
                    }
                ),
                symbol: s.name.clone(),
                path: path.clone(),
                offset: s.offset,
                kind,
                ret,
                pid: r.pid,
            });
        }
    }
    Ok((out, notes))
}

/// How one uprobe attach point went.
#[derive(Clone, Debug, Serialize)]
pub struct UprobeReport {
    pub id: u16,
    pub name: String,
    pub path: String,
    pub offset: u64,
    pub pid: Option<u32>,
    pub program: &'static str,
    pub attached: bool,
    pub error: Option<String>,
    pub attach_us: u64,
}

fn load_once<'a>(
    ebpf: &'a mut Ebpf,
    name: &str,
    loaded: &mut Vec<String>,
) -> Result<&'a mut UProbe, String> {
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("program {name} is missing from the eBPF object"))?;
    let p: &mut UProbe = prog
        .try_into()
        .map_err(|e: aya::programs::ProgramError| crate::session::error_line(&e))?;
    if !loaded.iter().any(|l| l == name) {
        let t = Instant::now();
        p.load().map_err(|e| crate::session::error_line(&e))?;
        crate::session::log_loaded(name, t, p.info());
        loaded.push(name.to_string());
    }
    Ok(p)
}

fn attach_one(ebpf: &mut Ebpf, r: &Resolved, loaded: &mut Vec<String>) -> Result<(), String> {
    let scope = match r.pid.and_then(NonZeroU32::new) {
        Some(p) => UProbeScope::OneProcess(p),
        None => UProbeScope::AllProcesses,
    };
    let (main, entry) = r.kind.programs();
    // A return-kind program at a symbol the user asked to probe at entry
    // still needs the return probe (receives see the frame at return).
    if let Some(e) = entry {
        let p = load_once(ebpf, e, loaded)?;
        p.attach(
            UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(r.offset),
                cookie: Some(r.id as u64),
            },
            &r.path,
            scope,
        )
        .map_err(|e| crate::session::error_line(&e))?;
    }
    let p = load_once(ebpf, main, loaded)?;
    p.attach(
        UProbeAttachPoint {
            location: UProbeAttachLocation::AbsoluteOffset(r.offset),
            cookie: Some(r.id as u64 | r.kind.cookie_extra()),
        },
        &r.path,
        scope,
    )
    .map_err(|e| crate::session::error_line(&e))?;
    Ok(())
}

/// Attaches every resolved point into the session's eBPF object (same
/// maps as the kernel programs).
pub fn attach(ebpf: &mut Ebpf, points: &[Resolved]) -> Vec<UprobeReport> {
    let mut loaded = Vec::new();
    points
        .iter()
        .map(|r| {
            let t = Instant::now();
            let res = attach_one(ebpf, r, &mut loaded);
            UprobeReport {
                id: r.id,
                name: r.name.clone(),
                path: r.path.display().to_string(),
                offset: r.offset,
                pid: r.pid,
                program: r.kind.programs().0,
                attached: res.is_ok(),
                error: res.err(),
                attach_us: t.elapsed().as_micros() as u64,
            }
        })
        .collect()
}

/// Attaches the resolved points into a started session and says what was
/// attached (to stderr unless `quiet`). Fails when nothing could be.
pub fn start(
    session: &mut crate::session::Session,
    points: &[Resolved],
    notes: &[String],
    quiet: bool,
) -> anyhow::Result<Vec<UprobeReport>> {
    let reports = attach(session.ebpf_mut(), points);
    if !quiet {
        for n in notes {
            eprintln!("skbtrace: {n}");
        }
        for r in &reports {
            let scope = r
                .pid
                .map(|p| format!("pid {p}"))
                .unwrap_or_else(|| "all processes".into());
            match &r.error {
                None => eprintln!(
                    "skbtrace: uprobe {} at {}+{:#x} ({scope}, {})",
                    r.name, r.path, r.offset, r.program
                ),
                Some(e) => eprintln!("skbtrace: uprobe {} at {} FAILED: {e}", r.name, r.path),
            }
        }
    }
    if !reports.is_empty() && reports.iter().all(|r| !r.attached) {
        let first = reports
            .iter()
            .find_map(|r| r.error.clone())
            .unwrap_or_default();
        anyhow::bail!(
            "no uprobe could be attached (first error: {first}); the kernel needs CONFIG_UPROBE_EVENTS and the target file must be readable"
        );
    }
    Ok(reports)
}

/// Watches traced processes; says once when one exits.
pub struct ExitWatch {
    watch: Vec<(u32, String, bool)>,
}

impl ExitWatch {
    pub fn new(plan: &Plan) -> ExitWatch {
        ExitWatch {
            watch: plan
                .watch
                .iter()
                .map(|(p, c)| (*p, c.clone(), false))
                .collect(),
        }
    }

    /// Processes that exited since the last call.
    pub fn exited(&mut self) -> Vec<(u32, String)> {
        let mut out = Vec::new();
        for (pid, comm, gone) in &mut self.watch {
            if !*gone && comm_of(*pid).as_deref() != Some(comm.as_str()) {
                *gone = true;
                out.push((*pid, comm.clone()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_vpp_cpu_variants_and_nothing_else() {
        let g = "af_packet_input_node_fn*";
        for s in [
            "af_packet_input_node_fn",
            "af_packet_input_node_fn_hsw",
            "af_packet_input_node_fn_icl",
            "af_packet_input_node_fn_skx",
        ] {
            assert!(glob_match(g, s), "{s}");
        }
        assert!(!glob_match(g, "af_packet_input_node"));
        assert!(!glob_match(g, "xaf_packet_input_node_fn"));
        assert!(glob_match("send?msg", "sendmmsg"));
        assert!(!glob_match("send?msg", "sendmsg"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
    }

    #[test]
    fn specs_parse_with_return_and_reject_missing_parts() {
        let r = parse_spec("/lib/libc.so.6:recv*%return", None).unwrap();
        assert_eq!(
            (r.target.as_str(), r.glob.as_str(), r.ret),
            ("/lib/libc.so.6", "recv*", true)
        );
        let r = parse_spec("libc:sendmmsg", Some(7)).unwrap();
        assert_eq!((r.target.as_str(), r.pid, r.ret), ("libc", Some(7), false));
        for bad in ["nocolon", ":sym", "/bin/x:", "/bin/x:%return"] {
            let e = parse_spec(bad, None).unwrap_err().to_string();
            assert!(e.contains("PATH:SYMBOL"), "{bad}: {e}");
        }
    }

    #[test]
    fn closest_names_prefer_containing_then_edit_distance() {
        let names = [
            "sendmmsg",
            "sendmsg",
            "recvmmsg",
            "af_packet_input_node_fn_hsw",
            "main",
        ];
        let c = closest("sendmmsgx", names.iter().copied(), 2);
        assert_eq!(c, vec!["sendmmsg", "sendmsg"]);
        let c = closest("input_node*", names.iter().copied(), 1);
        assert_eq!(c, vec!["af_packet_input_node_fn_hsw"]);
    }

    #[test]
    fn kinds_follow_what_the_function_shows() {
        assert_eq!(Kind::for_symbol("sendmmsg", false), Kind::SendMmsg);
        assert_eq!(Kind::for_symbol("__sendmmsg", false), Kind::SendMmsg);
        assert_eq!(
            Kind::for_symbol("recvmmsg@@GLIBC_2.12", false),
            Kind::RecvMmsg
        );
        assert_eq!(Kind::for_symbol("skbtrace_fwd_rx", false), Kind::Frame);
        assert_eq!(Kind::for_symbol("skbtrace_fwd_tx", false), Kind::RingTx);
        assert_eq!(Kind::RingTx.cookie_extra(), 1 << 32);
        assert_eq!(Kind::for_symbol("poll", true), Kind::CallRet);
        assert_eq!(Kind::for_symbol("netdev_send", false), Kind::Call);
        assert!(Kind::RecvMmsg.sees_frames() && !Kind::BatchRet.sees_frames());
        assert_eq!(
            Kind::Batch { offset: 10 }.cookie_extra(),
            10 << 16,
            "the eBPF side reads the offset from cookie bits 16..32"
        );
    }

    #[test]
    fn debug_hints_name_the_package_and_the_file() {
        let miss = vec![PathBuf::from("/usr/lib/debug/.build-id/ab/cdef.debug")];
        let h = debug_hint_text(
            Some("vpp-plugin-core"),
            Path::new("/usr/lib/x86_64-linux-gnu/vpp_plugins/af_packet_plugin.so"),
            &miss,
        )
        .unwrap();
        assert!(
            h.contains("vpp-dbg") && h.contains("vpp-plugin-core-dbgsym"),
            "{h}"
        );
        assert!(h.contains("/usr/lib/debug/.build-id/ab/cdef.debug"), "{h}");
        let h = debug_hint_text(
            Some("openvswitch-switch"),
            Path::new("/usr/sbin/ovs-vswitchd"),
            &[],
        )
        .unwrap();
        assert!(h.contains("openvswitch-switch-dbgsym"), "{h}");
        assert!(debug_hint_text(None, Path::new("/tmp/x"), &[]).is_none());
    }

    #[test]
    fn symbols_of_this_test_binary_resolve_to_file_offsets() {
        // The test binary itself is an unstripped ELF: its functions have
        // .symtab entries and PT_LOAD-mapped offsets.
        let exe = std::env::current_exe().unwrap();
        let t = read_symbols(&exe).unwrap();
        assert!(t.symbols.len() > 100, "{}", t.symbols.len());
        let main = t.symbols.iter().find(|s| s.name == "main").expect("main");
        assert!(main.offset > 0 && main.offset < std::fs::metadata(&exe).unwrap().len());
    }

    #[test]
    fn libc_is_found_in_our_own_maps_and_a_missing_library_lists_what_is_there() {
        let me = std::process::id();
        let p = find_in_maps(me, "libc").unwrap();
        assert!(p.to_string_lossy().contains("libc"), "{}", p.display());
        let t = read_symbols(&p).unwrap();
        for f in ["sendmmsg", "recvmmsg", "sendmsg", "sendto", "poll"] {
            assert!(t.symbols.iter().any(|s| s.name == f), "{f} not in libc");
        }
        let e = find_in_maps(me, "libnosuchthing").unwrap_err().to_string();
        assert!(
            e.contains("no library libnosuchthing") && e.contains("closest"),
            "{e}"
        );
        let e = find_in_maps(u32::MAX - 1, "libc").unwrap_err().to_string();
        assert!(e.contains("no process"), "{e}");
    }

    /// A stand-in for VPP's af_packet_plugin.so: hidden (non-exported)
    /// node functions in CPU variants, like CLIB_MARCH_FN's, built with gcc.
    fn fake_plugin(dir: &Path) -> Option<PathBuf> {
        let src = dir.join("p.c");
        let so = dir.join("af_packet_plugin.so");
        let mut c = String::new();
        for f in [
            "af_packet_input_node_fn",
            "af_packet_input_node_fn_hsw",
            "af_packet_input_node_fn_icl",
            "af_packet_input_node_fn_skx",
            "af_packet_device_class_tx_fn",
            "af_packet_device_class_tx_fn_skx",
            "af_packet_create_if",
        ] {
            let _ = writeln!(
                c,
                "__attribute__((visibility(\"hidden\"), used, noinline)) unsigned long {f}(void *vm, void *node, void *frame) {{ return (unsigned long)frame; }}"
            );
        }
        std::fs::write(&src, c).ok()?;
        let ok = std::process::Command::new("gcc")
            .args(["-shared", "-fPIC", "-O1", "-g", "-o"])
            .arg(&so)
            .arg(&src)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(so)
    }

    fn sh(cmd: &str, args: &[&str], dir: &Path) {
        let st = std::process::Command::new(cmd)
            .args(args)
            .current_dir(dir)
            .status()
            .unwrap();
        assert!(st.success(), "{cmd} {args:?}");
    }

    #[test]
    fn vpp_node_functions_resolve_from_the_plugin_or_its_debuglink_file() {
        let tmp = tempfile::tempdir().unwrap();
        let Some(so) = fake_plugin(tmp.path()) else {
            eprintln!("SKIP vpp plugin test: gcc is not installed");
            return;
        };
        let me = std::process::id();
        let names = |pts: &[Resolved]| -> Vec<(String, Kind, u64)> {
            pts.iter()
                .map(|r| (r.name.clone(), r.kind, r.offset))
                .collect()
        };
        // With symbols: every CPU variant of both node functions.
        let plan = vpp_plan(me, &so).unwrap();
        let (pts, notes) = resolve(&plan).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        let got = names(&pts);
        let inputs: Vec<_> = got.iter().filter(|g| g.1 == Kind::BatchRet).collect();
        let txs: Vec<_> = got
            .iter()
            .filter(|g| g.1 == Kind::Batch { offset: 10 })
            .collect();
        assert_eq!(inputs.len(), 4, "{got:?}");
        assert_eq!(txs.len(), 2, "{got:?}");
        assert!(
            got.iter().all(|g| g.0.starts_with("vpp:af_packet_")),
            "{got:?}"
        );
        assert!(!got.iter().any(|g| g.0.contains("create_if")), "{got:?}");
        assert!(
            pts.iter().all(|p| p.pid == Some(me)),
            "scoped to the vpp pid"
        );

        // Stripped, with the symbols in a .gnu_debuglink file in .debug/.
        std::fs::create_dir(tmp.path().join(".debug")).unwrap();
        sh(
            "objcopy",
            &[
                "--only-keep-debug",
                "af_packet_plugin.so",
                ".debug/af_packet_plugin.so.debug",
            ],
            tmp.path(),
        );
        sh("strip", &["--strip-all", "af_packet_plugin.so"], tmp.path());
        let bare = read_symbols(&so).unwrap();
        assert!(
            !bare
                .symbols
                .iter()
                .any(|s| s.name.starts_with("af_packet_")),
            "strip removed the hidden functions"
        );
        sh(
            "objcopy",
            &[
                "--add-gnu-debuglink=.debug/af_packet_plugin.so.debug",
                "af_packet_plugin.so",
            ],
            tmp.path(),
        );
        let t = read_symbols(&so).unwrap();
        assert!(
            t.sources
                .iter()
                .any(|p| p.ends_with(".debug/af_packet_plugin.so.debug")),
            "{:?}",
            t.sources
        );
        let (pts2, _) = resolve(&vpp_plan(me, &so).unwrap()).unwrap();
        let mut a = names(&pts);
        let mut b = names(&pts2);
        a.sort_by(|x, y| (&x.0, x.2).cmp(&(&y.0, y.2)));
        b.sort_by(|x, y| (&x.0, x.2).cmp(&(&y.0, y.2)));
        assert_eq!(
            a, b,
            "the debug file gives the same functions at the same offsets"
        );

        // Stripped and no debug file: say which package to install.
        std::fs::remove_dir_all(tmp.path().join(".debug")).unwrap();
        let e = vpp_plan(me, &so).unwrap_err().to_string();
        assert!(
            e.contains("no symbol matching af_packet_input_node_fn*") && e.contains("vpp-dbg"),
            "{e}"
        );
        assert!(
            e.contains(".debug/af_packet_plugin.so.debug"),
            "where it looked: {e}"
        );
    }

    #[test]
    fn a_missing_symbol_lists_the_closest_ones() {
        let exe = std::env::current_exe().unwrap();
        let p = find_in_maps(std::process::id(), "libc").unwrap();
        let plan = Plan {
            requests: vec![Request {
                target: p.to_string_lossy().into_owned(),
                glob: "sendmmsgg".into(),
                ret: false,
                pid: None,
                kind: None,
                required: true,
                label: String::new(),
            }],
            ..Plan::default()
        };
        let e = resolve(&plan).unwrap_err().to_string();
        assert!(e.contains("no function matching `sendmmsgg`"), "{e}");
        assert!(e.contains("closest: sendmmsg"), "{e}");
        let _ = exe;
    }
}

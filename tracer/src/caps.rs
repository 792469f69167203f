//! What the running kernel and this process can do, checked at start.

use std::path::{Path, PathBuf};

use serde::Serialize;

pub const TRACEFS: &str = "/sys/kernel/tracing";

#[derive(Clone, Debug, Serialize)]
pub struct Capabilities {
    pub kernel: String,
    /// /sys/bus/event_source/devices/kprobe exists: CONFIG_KPROBES=y.
    pub kprobe_pmu: bool,
    pub uprobe_pmu: bool,
    pub vmlinux_btf: bool,
    /// Modules whose BTF skbtrace looks for (veth, bridge) and whether each
    /// is there: present only when the module is loaded (or built in: then
    /// its types are in vmlinux and no file exists).
    pub module_btf: Vec<(String, ModuleState)>,
    /// Where tracefs is mounted, if it is.
    pub tracefs: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleState {
    BuiltIn,
    LoadedWithBtf,
    LoadedNoBtf,
    NotLoaded,
}

impl Capabilities {
    pub fn detect() -> Capabilities {
        let kernel = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let module_btf = ["veth", "bridge"]
            .iter()
            .map(|m| (m.to_string(), module_state(&kernel, m)))
            .collect();
        Capabilities {
            kprobe_pmu: Path::new("/sys/bus/event_source/devices/kprobe").exists(),
            uprobe_pmu: Path::new("/sys/bus/event_source/devices/uprobe").exists(),
            vmlinux_btf: Path::new(crate::btf::VMLINUX_BTF).exists(),
            tracefs: ensure_tracefs(),
            module_btf,
            kernel,
        }
    }
}

impl Capabilities {
    /// A module compiled into the kernel may leave no trace in /sys/module;
    /// its functions in kallsyms without a `[module]` tag prove it is built in.
    pub fn refine_builtin(&mut self, k: &crate::kallsyms::Kallsyms) {
        for (m, state) in &mut self.module_btf {
            let probe_fn = match m.as_str() {
                "veth" => "veth_xmit",
                "bridge" => "br_handle_frame",
                _ => continue,
            };
            if *state == ModuleState::NotLoaded
                && k.resolve(probe_fn).is_some_and(|s| s.module.is_none())
            {
                *state = ModuleState::BuiltIn;
            }
        }
    }
}

fn module_state(kernel: &str, m: &str) -> ModuleState {
    let loaded = Path::new("/sys/module").join(m).join("initstate").exists();
    let builtin = Path::new("/sys/module").join(m).exists() && !loaded
        || std::fs::read_to_string(format!("/lib/modules/{kernel}/modules.builtin"))
            .map(|s| s.lines().any(|l| l.ends_with(&format!("/{m}.ko"))))
            .unwrap_or(false);
    if builtin {
        ModuleState::BuiltIn
    } else if !loaded {
        ModuleState::NotLoaded
    } else if Path::new("/sys/kernel/btf").join(m).exists() {
        ModuleState::LoadedWithBtf
    } else {
        ModuleState::LoadedNoBtf
    }
}

/// Returns where tracefs is, mounting it at /sys/kernel/tracing when it is
/// not mounted anywhere (aya finds tracepoint ids and, without the perf
/// PMUs, kprobe/uprobe events there).
fn ensure_tracefs() -> Option<PathBuf> {
    if let Some(p) = tracefs_mount() {
        return Some(p);
    }
    let target = Path::new(TRACEFS);
    let r = nix::mount::mount(
        Some("tracefs"),
        target,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    );
    match r {
        Ok(()) => Some(target.to_path_buf()),
        Err(e) => {
            log::warn!("tracefs is not mounted and mounting it at {TRACEFS} failed: {e}");
            None
        }
    }
}

fn tracefs_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_src, dst, kind) = (f.next()?, f.next()?, f.next()?);
        (kind == "tracefs").then(|| PathBuf::from(dst))
    })
}

/// Linux capability numbers (linux/capability.h).
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Checks this process may load tracing programs: CAP_BPF and CAP_PERFMON,
/// or CAP_SYS_ADMIN. The error names what is missing and what to do.
pub fn check_privileges() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |c: u32| eff & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    let mut missing = vec![];
    if !has(CAP_BPF) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) {
        missing.push("CAP_PERFMON");
    }
    Err(format!(
        "skbtrace needs {} (or CAP_SYS_ADMIN) to load tracing programs: run it as root (sudo skbtrace ...) or grant them with `setcap cap_bpf,cap_perfmon,cap_net_admin+ep $(which skbtrace)`",
        missing.join(" and ")
    ))
}

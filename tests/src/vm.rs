//! Runs a script inside Debian's 6.1 kernel booted under qemu, so the tests
//! can prove kprobe and fentry attachment on a kernel that has them (the
//! host kernel has no kprobes and refuses fentry).
//!
//! How the guest is made (see tests/VM.md for the measurements behind it):
//! - virtme-ng (`virtme-run --save-initramfs`) builds the small initramfs
//!   that loads the virtio and 9p modules and mounts the host's `/`
//!   read-only over 9p as the guest root, so host-built binaries and the
//!   repository are visible at the same paths.
//! - qemu is started directly rather than through `vng --exec`: vng's init
//!   runs udev and systemd-tmpfiles, which under software emulation cost
//!   8-15 s per boot; our own busybox init (`INIT` below) does only what the
//!   tests need. The kernel is booted as an uncompressed ELF through its
//!   PVH entry, which skips the BIOS and the xz decompression (3-4 s).
//! - Software emulation (TCG): /dev/kvm exists but a stock guest kernel
//!   hangs there.
//! - Script stdout, stderr and exit status travel over their own
//!   virtio-serial ports into files, apart from the kernel console.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// What the guest script left behind.
#[derive(Debug, Clone)]
pub struct GuestOutput {
    /// The script's exit status.
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    /// From starting qemu until it exited.
    pub boot_and_run: Duration,
    /// The guest kernel's console (warnings and worse, plus the init's
    /// `skbtrace-vm:` setup lines): where an oops or a failed modprobe shows.
    pub console: String,
}

/// Guest size, overridable with SKBTRACE_VM_CPUS / SKBTRACE_VM_MEMORY /
/// SKBTRACE_VM_CPU_MODEL (for measuring; see tests/VM.md). Memory is only
/// touched as used.
fn guest_size() -> (String, String, String) {
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    (
        var("SKBTRACE_VM_CPUS", "2"),
        var("SKBTRACE_VM_MEMORY", "2G"),
        var("SKBTRACE_VM_CPU_MODEL", "max"),
    )
}

/// PID 1 in the guest. Busybox only (static, one binary read over 9p):
/// every exec of a dynamically linked tool costs a round of 9p reads under
/// emulation. `@BUSYBOX@` is replaced by the host's busybox path.
const INIT: &str = r#"#!@BUSYBOX@ sh
# skbtrace guest init: mounts, modules, then the job's run.sh; powers off.
B=@BUSYBOX@
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev 2>/dev/null
log() { echo "<3>skbtrace-vm: $*" > /dev/kmsg; }
try() { "$@" || log "FAILED: $*"; }
$B mkdir -p /dev/pts /dev/shm
try $B mount -t devpts devpts /dev/pts
try $B mount -t tmpfs shm /dev/shm
# /run must be writable for ip netns (/run/netns) and our job copy.
try $B mount -t tmpfs -o mode=755 run /run
job=
for a in $($B cat /proc/cmdline); do
  case $a in skbtrace.job=*) job=${a#skbtrace.job=} ;; esac
done
# The job dir lives in the host's /tmp: copy it before /tmp is covered.
$B mkdir -p /run/job && try $B cp -a "$job"/. /run/job/
try $B mount -t tmpfs -o mode=1777 tmp /tmp
try $B mount -t tracefs tracefs /sys/kernel/tracing
try $B mount -t debugfs debugfs /sys/kernel/debug
try $B mount -t bpf bpf /sys/fs/bpf
try $B mount -t cgroup2 cgroup2 /sys/fs/cgroup
try $B ip link set lo up
$B hostname skbtrace-vm
# veth and bridge are modules on 6.1; load them so their BTF is present.
try modprobe -a veth bridge
ulimit -l unlimited
out=; err=; ret=
for p in /sys/class/virtio-ports/*; do
  case $($B cat "$p/name") in
    skbtrace.out) out=/dev/${p##*/} ;;
    skbtrace.err) err=/dev/${p##*/} ;;
    skbtrace.ret) ret=/dev/${p##*/} ;;
  esac
done
if [ -z "$out" ] || [ -z "$err" ] || [ -z "$ret" ]; then
  log "FAILED: virtio-serial ports missing"
else
  log "running script"
  /bin/bash /run/job/run.sh < /dev/null > "$out" 2> "$err"
  echo $? > "$ret"
fi
$B sync
echo o > /proc/sysrq-trigger
$B sleep 30
"#;

/// Newest installed Debian 6.1 kernel image (`/boot/vmlinuz-6.1*`), or
/// `SKBTRACE_VM_KERNEL` when set.
pub fn guest_kernel() -> Option<PathBuf> {
    if let Some(k) = std::env::var_os("SKBTRACE_VM_KERNEL") {
        return Some(PathBuf::from(k));
    }
    let mut best: Option<(Vec<u64>, PathBuf)> = None;
    for entry in fs::read_dir("/boot").ok()?.flatten() {
        let name = entry.file_name();
        let Some(release) = name.to_str().and_then(|n| n.strip_prefix("vmlinuz-")) else {
            continue;
        };
        if !(release == "6.1" || release.starts_with("6.1.") || release.starts_with("6.1-")) {
            continue;
        }
        let key = version_key(release);
        if best.as_ref().is_none_or(|(k, _)| key > *k) {
            best = Some((key, entry.path()));
        }
    }
    best.map(|(_, p)| p)
}

/// Numeric parts of a release string, for "newest" ordering
/// (6.1.0-56-amd64 -> [6, 1, 0, 56, 64]).
fn version_key(release: &str) -> Vec<u64> {
    release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Boots Debian's 6.1 kernel (newest /boot/vmlinuz-6.1*) under qemu with
/// software emulation, as root, with the host's filesystem read-only at the
/// same paths, runs `script` (a bash script text) inside, and returns its
/// exit status and output. `env` is exported inside the guest.
///
/// Before the script runs the guest has: tracefs at /sys/kernel/tracing,
/// debugfs, bpffs, cgroup2, veth and bridge loaded, lo up, writable tmpfs
/// at /run and /tmp, HOME=/tmp, RLIMIT_MEMLOCK unlimited; the working
/// directory is the host's current directory (read-only).
///
/// Guests run one at a time (per process and across processes): two
/// emulated guests on a 2-core host only slow each other past their
/// timeouts. `timeout` counts from when this guest starts.
///
/// Panics with a clear message when qemu, virtme-ng, busybox or the kernel
/// is missing, when the guest does not finish within `timeout` (qemu is
/// killed), or when it dies without reporting the script's status (kernel
/// panic); the message carries the console's tail.
pub fn run_in_guest(script: &str, env: &[(&str, &str)], timeout: Duration) -> GuestOutput {
    let setup = Setup::find();
    let _serial = lock_guests();
    let job = JobDir::new();
    let res = job.run(&setup, script, env, timeout);
    match res {
        Ok(out) => out,
        Err(msg) => panic!("run_in_guest: {msg}"),
    }
}

/// Host-side pieces the guest needs, found once per call.
struct Setup {
    kernel: PathBuf,
    qemu: PathBuf,
    busybox: PathBuf,
    virtme_run: PathBuf,
}

impl Setup {
    fn find() -> Setup {
        let kernel = guest_kernel().unwrap_or_else(|| {
            panic!(
                "run_in_guest: no Debian 6.1 kernel in /boot (vmlinuz-6.1*): \
                 install it with `apt-get install -y linux-image-amd64` (Debian 12), \
                 or point SKBTRACE_VM_KERNEL at one"
            )
        });
        let release = kernel
            .file_name()
            .and_then(OsStr::to_str)
            .and_then(|n| n.strip_prefix("vmlinuz-"))
            .unwrap_or_default()
            .to_string();
        let moddir = Path::new("/lib/modules").join(&release);
        if release.is_empty() || !moddir.join("modules.dep").exists() {
            panic!(
                "run_in_guest: kernel {} has no modules in {} (modules.dep missing): \
                 reinstall with `apt-get install --reinstall -y linux-image-{release}`",
                kernel.display(),
                moddir.display()
            );
        }
        let qemu = which("qemu-system-x86_64").unwrap_or_else(|| {
            panic!(
                "run_in_guest: qemu-system-x86_64 not found: `apt-get install -y qemu-system-x86`"
            )
        });
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| {
                panic!("run_in_guest: busybox not found: `apt-get install -y busybox-static`")
            });
        let virtme_run = which("virtme-run").unwrap_or_else(|| {
            panic!(
                "run_in_guest: virtme-run (virtme-ng) not found on PATH: \
                 `pip install virtme-ng` (or `pip install --break-system-packages virtme-ng`)"
            )
        });
        Setup {
            kernel,
            qemu,
            busybox,
            virtme_run,
        }
    }
}

fn which(cmd: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
}

/// Cache for the uncompressed kernel and the initramfs, shared by test
/// processes: both take a second or so to make and never change for a
/// given kernel file.
fn cache_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join("skbtrace-vm-cache");
    fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    Ok(dir)
}

static GUESTS: Mutex<()> = Mutex::new(());

/// Holds the in-process mutex and an flock on the cache dir's lock file.
struct GuestLock {
    _inproc: std::sync::MutexGuard<'static, ()>,
    _file: Option<File>,
}

fn lock_guests() -> GuestLock {
    // A panicking guest test poisons the mutex; the next one may still run.
    let inproc = GUESTS.lock().unwrap_or_else(|p| p.into_inner());
    let file = cache_dir()
        .ok()
        .and_then(|d| File::create(d.join("boot.lock")).ok());
    if let Some(f) = &file {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor we own; released when it is closed.
        let busy = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0;
        if busy {
            eprintln!("run_in_guest: another process's guest is running; waiting for it");
            // SAFETY: as above, blocking this time.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        }
    }
    GuestLock {
        _inproc: inproc,
        _file: file,
    }
}

/// Writes `path` by renaming a private temporary file into place, so
/// concurrent processes filling the cache never see a half-written file.
fn publish(path: &Path, make: impl FnOnce(&Path) -> Result<(), String>) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let res = make(&tmp).and_then(|()| {
        fs::rename(&tmp, path).map_err(|e| format!("rename to {}: {e}", path.display()))
    });
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Cache key of a file: name, size and mtime.
fn file_key(path: &Path) -> Result<String, String> {
    let md = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path.file_name().and_then(OsStr::to_str).unwrap_or("kernel");
    Ok(format!("{name}-{}-{}", md.len(), md.mtime()))
}

/// The kernel as an uncompressed ELF, booted through its PVH entry: skips
/// the BIOS and the in-guest xz decompression (3-4 s under emulation).
/// Falls back to the bzImage if it cannot be extracted.
fn pvh_kernel(setup: &Setup) -> PathBuf {
    match extract_vmlinux(&setup.kernel) {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "run_in_guest: booting the compressed image (slower): cannot extract vmlinux: {e}"
            );
            setup.kernel.clone()
        }
    }
}

fn extract_vmlinux(kernel: &Path) -> Result<PathBuf, String> {
    let out = cache_dir()?.join(format!("{}.vmlinux", file_key(kernel)?));
    if out.exists() {
        return Ok(out);
    }
    let image = fs::read(kernel).map_err(|e| format!("{}: {e}", kernel.display()))?;
    const XZ_MAGIC: &[u8] = b"\xfd7zXZ\x00";
    let start = image
        .windows(XZ_MAGIC.len())
        .position(|w| w == XZ_MAGIC)
        .ok_or("no xz stream in the image")?;
    publish(&out, |tmp| {
        let file = File::create(tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        let mut child = Command::new("xz")
            .args(["-dc", "--single-stream"])
            .stdin(Stdio::piped())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("xz: {e} (apt-get install -y xz-utils)"))?;
        let mut stdin = child.stdin.take().ok_or("xz stdin")?;
        // The image ends with data after the xz stream, which xz stops at.
        let _ = stdin.write_all(&image[start..]);
        drop(stdin);
        child.wait().map_err(|e| format!("xz: {e}"))?;
        let mut magic = [0u8; 4];
        File::open(tmp)
            .and_then(|mut f| f.read_exact(&mut magic))
            .map_err(|e| format!("reading extracted kernel: {e}"))?;
        if &magic != b"\x7fELF" {
            return Err("extracted kernel is not an ELF file".into());
        }
        Ok(())
    })?;
    Ok(out)
}

/// virtme-ng's initramfs for this kernel: loads virtio-pci, virtio-console
/// and 9p from the host's modules and mounts the host's `/` as root.
fn initramfs(setup: &Setup) -> Result<PathBuf, String> {
    let out = cache_dir()?.join(format!("{}.initramfs", file_key(&setup.kernel)?));
    if out.exists() {
        return Ok(out);
    }
    publish(&out, |tmp| {
        let res = Command::new(&setup.virtme_run)
            .arg("--kimg")
            .arg(&setup.kernel)
            .args(["--mods", "auto", "--force-9p", "--disable-kvm", "--dry-run"])
            .arg("--save-initramfs")
            .arg(tmp)
            .args(["--script-sh", "true"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", setup.virtme_run.display()))?;
        if !res.status.success() || !tmp.exists() {
            return Err(format!(
                "virtme-run could not build the initramfs ({}): {}{}",
                res.status,
                String::from_utf8_lossy(&res.stdout),
                String::from_utf8_lossy(&res.stderr)
            ));
        }
        Ok(())
    })?;
    Ok(out)
}

/// A per-run directory on the host, removed on drop (kept when
/// SKBTRACE_VM_KEEP is set, for debugging).
struct JobDir {
    path: PathBuf,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl JobDir {
    fn new() -> JobDir {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("skbtrace-vm-{}-{n}", std::process::id()));
        JobDir { path }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn run(
        &self,
        setup: &Setup,
        script: &str,
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<GuestOutput, String> {
        let kernel = pvh_kernel(setup);
        let initrd = initramfs(setup)?;
        let _ = fs::remove_dir_all(&self.path);
        fs::create_dir_all(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        let write = |name: &str, text: &str| {
            fs::write(self.file(name), text).map_err(|e| format!("write {name}: {e}"))
        };
        let busybox = setup.busybox.to_string_lossy();
        write("init", &INIT.replace("@BUSYBOX@", &busybox))?;
        set_mode(&self.file("init"), 0o755)?;
        write("script.sh", script)?;
        write("run.sh", &run_sh(env)?)?;
        for f in ["out", "err", "ret", "console"] {
            write(f, "")?;
        }

        // Values passed to qemu's option parser: a comma would split them.
        let job = self.path.to_string_lossy().into_owned();
        if job.contains([',', ' ']) {
            return Err(format!("temp dir path {job} has a comma or space"));
        }
        let (cpus, memory, model) = guest_size();
        let mut cmd = Command::new(&setup.qemu);
        cmd.args(["-nodefaults", "-no-user-config", "-name", "skbtrace-vm"])
            .args(["-machine", "q35", "-accel", "tcg", "-cpu", &model])
            .args(["-smp", &cpus, "-m", &memory])
            .args(["-display", "none", "-vga", "none", "-no-reboot"])
            .args([
                "-fsdev",
                "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
                "-device",
                "virtio-9p-pci,fsdev=root,mount_tag=/dev/root",
            ])
            .args(["-chardev", &format!("file,id=con,path={job}/console")])
            .args(["-serial", "chardev:con"])
            .args(["-device", "virtio-serial-pci"]);
        for port in ["out", "err", "ret"] {
            cmd.args(["-chardev", &format!("file,id={port},path={job}/{port}")])
                .args([
                    "-device",
                    &format!("virtserialport,name=skbtrace.{port},chardev={port}"),
                ]);
        }
        cmd.arg("-kernel")
            .arg(&kernel)
            .arg("-initrd")
            .arg(&initrd)
            .arg("-append")
            .arg(format!(
                "console=ttyS0 quiet panic=-1 oops=panic skbtrace.job={job} init={job}/init"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(self.file("qemu.log")).map_err(|e| format!("qemu.log: {e}"))?);
        // SAFETY: prctl is async-signal-safe. If the test process dies
        // (even SIGKILL), the kernel kills qemu with it instead of leaving
        // an emulated guest spinning; the Drop guard covers everything else.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let start = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| format!("{}: {e}", setup.qemu.display()))?;
        let mut qemu = QemuGuard(child);
        let exit = loop {
            match qemu.0.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) => {}
                Err(e) => return Err(format!("waiting for qemu: {e}")),
            }
            if start.elapsed() > timeout {
                drop(qemu);
                return Err(format!(
                    "guest did not finish within {timeout:?} (qemu killed)\n{}",
                    self.diagnostics()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let boot_and_run = start.elapsed();
        let read = |name: &str| {
            fs::read(self.file(name))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        let ret = read("ret");
        let Ok(status) = ret.trim().parse::<i32>() else {
            return Err(format!(
                "guest ended ({exit}) without reporting the script's status \
                 (kernel panic or init failure)\n{}",
                self.diagnostics()
            ));
        };
        Ok(GuestOutput {
            status,
            stdout: read("out"),
            stderr: read("err"),
            boot_and_run,
            console: read("console"),
        })
    }

    /// Tails of the console, qemu's own messages and the script's output,
    /// for failure messages.
    fn diagnostics(&self) -> String {
        let mut s = String::new();
        for (name, what) in [
            ("console", "kernel console"),
            ("qemu.log", "qemu stderr"),
            ("out", "script stdout"),
            ("err", "script stderr"),
        ] {
            let text = fs::read(self.file(name))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            let _ = writeln!(s, "--- {what} (last {} lines) ---", tail.len());
            for l in tail {
                let _ = writeln!(s, "{l}");
            }
        }
        s
    }
}

impl Drop for JobDir {
    fn drop(&mut self) {
        if std::env::var_os("SKBTRACE_VM_KEEP").is_some() {
            eprintln!("run_in_guest: kept {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Kills and reaps qemu (our direct child, by PID) unless it already exited:
/// on timeout, on an error return and when the caller panics.
struct QemuGuard(Child);

impl Drop for QemuGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

/// The guest-side wrapper: environment, working directory, then the script.
fn run_sh(env: &[(&str, &str)]) -> Result<String, String> {
    let mut s = String::from("export HOME=/tmp TERM=dumb\n");
    for (k, v) in env {
        let valid = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("invalid environment variable name {k:?}"));
        }
        let _ = writeln!(s, "export {k}={}", shell_quote(v));
    }
    // The host's working directory, when the guest can see it (it can:
    // the whole root is shared), so relative paths mean the same.
    if let Ok(cwd) = std::env::current_dir() {
        let _ = writeln!(
            s,
            "cd {} 2>/dev/null || cd /tmp",
            shell_quote(&cwd.to_string_lossy())
        );
    }
    s.push_str("exec /bin/bash /run/job/script.sh\n");
    Ok(s)
}

fn shell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn newest_release_wins() {
        assert!(version_key("6.1.0-56-amd64") > version_key("6.1.0-9-amd64"));
        assert!(version_key("6.1.0-56-amd64") < version_key("6.1.10-1-amd64"));
    }

    #[test]
    fn env_is_quoted() {
        let s = run_sh(&[("A", "x'y z")]).unwrap_or_default();
        assert!(s.contains(r"export A='x'\''y z'"), "{s}");
        assert!(run_sh(&[("1A", "")]).is_err());
    }
}

//! Boots Debian's 6.1 kernel under qemu (tests::vm) and checks that the
//! guest has what the kernel-matrix tests rely on: root, bpf(), BTF for
//! vmlinux and the veth/bridge modules, tracefs, kprobes, network
//! namespaces that pass traffic, and the host's repository and host-built
//! binaries at the same paths. One boot for all checks: boots are slow.

use std::collections::HashMap;
use std::time::Duration;

use tests::require_root;
use tests::vm::{guest_kernel, run_in_guest};

/// Set inside the guest when this binary runs there as the host-built
/// binary under test (see `guest_side`).
const GUEST_SIDE_ENV: &str = "SKBTRACE_VM_SMOKE_GUEST";

/// Everything is printed as `key=value` lines; the script's own exit
/// status (3) proves the status comes back.
const CHECKS: &str = r#"
up() { cut -d' ' -f1 /proc/uptime; }
echo "uptime_at_script=$(up)"
echo "uid=$(id -u)"
echo "kernel=$(uname -r)"
echo "kconfig_kprobes=$(grep -c '^CONFIG_KPROBES=y' /boot/config-$(uname -r))"
if bpftool prog show >/dev/null 2>&1; then echo bpftool=ok; else echo bpftool=fail; fi
for f in vmlinux veth bridge; do
  if [ -e /sys/kernel/btf/$f ]; then echo "btf_$f=yes"; else echo "btf_$f=no"; fi
done
echo "tracefs=$(awk '$2=="/sys/kernel/tracing"{print $3}' /proc/mounts)"
echo "debugfs=$(awk '$2=="/sys/kernel/debug"{print $3}' /proc/mounts)"
if [ -e /sys/bus/event_source/devices/kprobe ]; then echo kprobe_pmu=yes; else echo kprobe_pmu=no; fi
# A real kprobe on a module function (veth_xmit lives in veth.ko on 6.1).
if echo 'p:skbtrace_smoke veth_xmit' >> /sys/kernel/tracing/kprobe_events; then
  echo kprobe_veth_xmit=ok
  echo '-:skbtrace_smoke' >> /sys/kernel/tracing/kprobe_events
else
  echo kprobe_veth_xmit=fail
fi
# Two namespaces joined by a veth pair, only 10.200.0.0/24 inside them.
t0=$(up)
if ip netns add smk_a && ip netns add smk_b \
  && ip link add smk_va netns smk_a type veth peer name smk_vb netns smk_b \
  && ip -n smk_a addr add 10.200.0.1/24 dev smk_va \
  && ip -n smk_b addr add 10.200.0.2/24 dev smk_vb \
  && ip -n smk_a link set smk_va up && ip -n smk_b link set smk_vb up \
  && ip netns exec smk_a ping -c 2 -i 0.2 -W 5 10.200.0.2 >/dev/null; then
  echo netns_ping=ok
else
  echo netns_ping=fail
fi
echo "netns_secs=$(echo "$(up) $t0" | awk '{print $1-$2}')"
echo "run_netns=$(awk '$2=="/run"{print $3}' /proc/mounts)"
ip netns del smk_a; ip netns del smk_b
for d in /work/main /work/main/Cargo.toml "$SMOKE_TARGET_DIR"; do
  if [ -e "$d" ]; then echo "visible $d=yes"; else echo "visible $d=no"; fi
done
t0=$(up)
echo "rust_binary=$("$SMOKE_EXE" --exact guest_side --nocapture 2>/dev/null | grep -o 'guest-side-ok [^ ]*')"
echo "rust_binary_secs=$(echo "$(up) $t0" | awk '{print $1-$2}')"
if touch /tmp/w && touch /run/w; then echo tmp_writable=yes; fi
echo "env_quoted=$QUOTED"
echo "this goes to stderr" >&2
echo "uptime_at_end=$(up)"
exit 3
"#;

#[test]
fn guest_has_what_the_tests_need() {
    if !require_root("vm_smoke") {
        return;
    }
    if std::env::var_os(GUEST_SIDE_ENV).is_some() {
        return; // Already inside the guest: no nested boots.
    }
    let kernel = guest_kernel();
    eprintln!("guest kernel: {kernel:?}");
    let exe = std::env::current_exe().expect("current_exe");
    // The target dir: <target>/<profile>/deps/vm_smoke-<hash>.
    let target = exe
        .ancestors()
        .nth(3)
        .expect("test binary under <target>/<profile>/deps")
        .to_string_lossy()
        .into_owned();
    let exe = exe.to_string_lossy().into_owned();
    let out = run_in_guest(
        CHECKS,
        &[
            ("SMOKE_EXE", exe.as_str()),
            ("SMOKE_TARGET_DIR", target.as_str()),
            (GUEST_SIDE_ENV, "1"),
            ("QUOTED", "it's $HOME \"x\""),
        ],
        Duration::from_secs(240),
    );
    eprintln!(
        "boot_and_run: {:.1?}\n--- stdout ---\n{}--- stderr ---\n{}--- console ---\n{}",
        out.boot_and_run, out.stdout, out.stderr, out.console
    );
    let facts: HashMap<&str, &str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .collect();
    let want = |k: &str, v: &str| {
        assert_eq!(
            facts.get(k).copied(),
            Some(v),
            "guest fact {k}; full output:\n{}\n{}",
            out.stdout,
            out.console
        )
    };
    assert_eq!(out.status, 3, "script exit status must come back");
    assert_eq!(out.stderr, "this goes to stderr\n", "stderr kept apart");
    want("uid", "0");
    assert!(facts.get("kernel").is_some_and(|k| k.starts_with("6.1.")));
    want("kconfig_kprobes", "1");
    want("bpftool", "ok");
    want("btf_vmlinux", "yes");
    want("btf_veth", "yes");
    want("btf_bridge", "yes");
    want("tracefs", "tracefs");
    want("debugfs", "debugfs");
    want("kprobe_pmu", "yes");
    want("kprobe_veth_xmit", "ok");
    want("netns_ping", "ok");
    want("run_netns", "tmpfs");
    want("visible /work/main", "yes");
    want(&format!("visible {target}"), "yes");
    want("tmp_writable", "yes");
    want("env_quoted", "it's $HOME \"x\"");
    assert!(
        facts
            .get("rust_binary")
            .is_some_and(|v| v.starts_with("guest-side-ok 6.1.")),
        "host-built test binary must run in the guest"
    );
}

/// Runs inside the guest (started by the test above): proves that a
/// host-built Rust binary runs there.
#[test]
fn guest_side() {
    if std::env::var_os(GUEST_SIDE_ENV).is_none() {
        return;
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("guest-side-ok {}", release.trim());
}

/// A script that outlives its timeout: run_in_guest panics and leaves no
/// qemu behind.
#[test]
fn timeout_kills_the_guest() {
    if !require_root("vm_smoke") || std::env::var_os(GUEST_SIDE_ENV).is_some() {
        return;
    }
    let started = std::time::Instant::now();
    let res = std::panic::catch_unwind(|| {
        run_in_guest("sleep 1000", &[], Duration::from_secs(4));
    });
    let msg = res
        .err()
        .and_then(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        })
        .expect("run_in_guest must panic on timeout");
    assert!(msg.contains("did not finish within"), "{msg}");
    eprintln!("timed out as expected after {:.1?}", started.elapsed());
    // Our guests are the qemu processes whose command line names our job
    // dir (skbtrace-vm-<pid>-): none may be left.
    let mark = format!("skbtrace-vm-{}-", std::process::id());
    let left: Vec<String> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("qemu-system") && c.contains(&mark))
        .collect();
    assert!(left.is_empty(), "qemu left behind: {left:?}");
}

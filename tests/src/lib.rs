//! Shared pieces of skbtrace's root integration tests: network namespaces,
//! veth pairs and bridges that the tests build and that are removed again on
//! drop, including when a test panics.
//!
//! Every name carries the test process id, so parallel tests and leftovers of
//! an earlier crash never collide, and a test only ever deletes what it made.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

pub mod skbtrace;
pub mod tracer;
pub mod userdp;
pub mod vm;

/// Calls `read` every 50 ms until `done` holds for what it returned or
/// `timeout` passes; returns the last value either way (the caller asserts
/// on it, so a timeout fails with what was seen).
pub fn poll_until<T>(
    timeout: std::time::Duration,
    mut read: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let end = std::time::Instant::now() + timeout;
    let mut v = read();
    while !done(&v) && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(50));
        v = read();
    }
    v
}

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    if !out.status.success() {
        panic!(
            "`{cmd} {}` failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// `ip netns exec NS cmd args...`, panicking on failure.
pub fn ns_run(ns: &str, cmd: &str, args: &[&str]) -> Output {
    let mut all = vec!["netns", "exec", ns, cmd];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// True when running as root: the integration tests need it. CI runs as
/// root, so a test that finds itself without it fails rather than skips
/// when `SKBTRACE_REQUIRE_ROOT` is set (the test script sets it).
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("SKBTRACE_REQUIRE_ROOT").is_some() {
        panic!(
            "{test}: needs root (SKBTRACE_REQUIRE_ROOT is set, so this is a failure, not a skip)"
        );
    }
    eprintln!("SKIP {test}: needs root to create network namespaces and load BPF programs");
    false
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process: `<prefix><pid%10000>x<seq>`, at most 15 bytes (IFNAMSIZ).
pub fn unique_name(prefix: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{}x{n}", std::process::id() % 10000);
    assert!(name.len() <= 15, "name {name} too long for an interface");
    name
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new(prefix: &str) -> NetNs {
        let name = unique_name(prefix);
        run("ip", &["netns", "add", &name]);
        let ns = NetNs { name };
        ns.run("ip", &["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// The namespace's inode number, as the kernel's net->ns.inum.
    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.path())
            .unwrap_or_else(|e| panic!("stat {}: {e}", self.path().display()))
            .ino()
    }

    pub fn run(&self, cmd: &str, args: &[&str]) -> Output {
        ns_run(&self.name, cmd, args)
    }

    /// The ifindex of `dev` inside this namespace.
    pub fn ifindex(&self, dev: &str) -> u32 {
        let out = self.run("cat", &[&format!("/sys/class/net/{dev}/ifindex")]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("ifindex of {dev} in {}: {e}", self.name))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace also deletes the devices inside it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A veth pair created in the root namespace and optionally moved into
/// namespaces. Deleted on drop (deleting one end deletes both).
pub struct Veth {
    pub a: String,
    pub b: String,
    a_ns: Option<String>,
}

impl Veth {
    pub fn new(prefix: &str) -> Veth {
        let a = unique_name(&format!("{prefix}a"));
        let b = unique_name(&format!("{prefix}b"));
        run(
            "ip",
            &["link", "add", &a, "type", "veth", "peer", "name", &b],
        );
        Veth { a, b, a_ns: None }
    }

    /// Moves end `a` into `ns`, gives it `addr` (CIDR) and brings it up.
    pub fn setup_a(&mut self, ns: Option<&NetNs>, addr: Option<&str>) {
        self.a_ns = ns.map(|n| n.name.clone());
        setup_end(&self.a, ns, addr);
    }

    pub fn setup_b(&mut self, ns: Option<&NetNs>, addr: Option<&str>) {
        setup_end(&self.b, ns, addr);
    }
}

fn setup_end(dev: &str, ns: Option<&NetNs>, addr: Option<&str>) {
    if let Some(ns) = ns {
        run("ip", &["link", "set", dev, "netns", &ns.name]);
        if let Some(a) = addr {
            ns.run("ip", &["addr", "add", a, "dev", dev]);
        }
        ns.run("ip", &["link", "set", dev, "up"]);
    } else {
        if let Some(a) = addr {
            run("ip", &["addr", "add", a, "dev", dev]);
        }
        run("ip", &["link", "set", dev, "up"]);
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = match &self.a_ns {
            Some(ns) => Command::new("ip")
                .args(["-n", ns, "link", "del", &self.a])
                .output(),
            None => Command::new("ip").args(["link", "del", &self.a]).output(),
        };
    }
}

/// A Linux bridge in a namespace (or the root one), deleted on drop.
pub struct Bridge {
    pub name: String,
    ns: Option<String>,
}

impl Bridge {
    pub fn new(prefix: &str, ns: Option<&NetNs>) -> Bridge {
        let name = unique_name(prefix);
        let ns_name = ns.map(|n| n.name.clone());
        let ip = |args: &[&str]| match &ns_name {
            Some(n) => ns_run(n, "ip", args),
            None => run("ip", args),
        };
        ip(&["link", "add", &name, "type", "bridge"]);
        ip(&["link", "set", &name, "up"]);
        Bridge { name, ns: ns_name }
    }

    pub fn attach(&self, dev: &str) {
        let args = ["link", "set", dev, "master", &self.name];
        match &self.ns {
            Some(n) => ns_run(n, "ip", &args),
            None => run("ip", &args),
        };
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let mut c = Command::new("ip");
        if let Some(n) = &self.ns {
            c.args(["-n", n]);
        }
        let _ = c.args(["link", "del", &self.name]).output();
    }
}

/// Two namespaces joined by a veth pair: `ns1/<veth.a> 10.x.y.1/24 <-> ns2/<veth.b> 10.x.y.2/24`.
/// `subnet` picks the middle octets so parallel tests use distinct addresses.
pub struct TwoNs {
    pub ns1: NetNs,
    pub ns2: NetNs,
    pub veth: Veth,
    pub ip1: String,
    pub ip2: String,
}

impl TwoNs {
    pub fn new(subnet: &str) -> TwoNs {
        let ns1 = NetNs::new("skt1");
        let ns2 = NetNs::new("skt2");
        let mut veth = Veth::new("sv");
        let ip1 = format!("10.{subnet}.1");
        let ip2 = format!("10.{subnet}.2");
        veth.setup_a(Some(&ns1), Some(&format!("{ip1}/24")));
        veth.setup_b(Some(&ns2), Some(&format!("{ip2}/24")));
        TwoNs {
            ns1,
            ns2,
            veth,
            ip1,
            ip2,
        }
    }
}

/// Two namespaces joined through a Linux bridge in a third:
/// `ns1 [v1.a] -- [v1.b] br (nsbr) [v2.b] -- [v2.a] ns2`, with
/// `10.{subnet}.1/24` on v1.a and `10.{subnet}.2/24` on v2.a.
pub struct BridgedNs {
    pub ns1: NetNs,
    pub nsbr: NetNs,
    pub ns2: NetNs,
    pub br: Bridge,
    pub v1: Veth,
    pub v2: Veth,
}

impl BridgedNs {
    pub fn new(prefix: &str, subnet: &str) -> BridgedNs {
        let ns1 = NetNs::new(&format!("{prefix}1"));
        let nsbr = NetNs::new(&format!("{prefix}b"));
        let ns2 = NetNs::new(&format!("{prefix}2"));
        let br = Bridge::new(&format!("{prefix}br"), Some(&nsbr));
        let mut v1 = Veth::new(&format!("{prefix}v"));
        let mut v2 = Veth::new(&format!("{prefix}w"));
        v1.setup_a(Some(&ns1), Some(&format!("10.{subnet}.1/24")));
        v1.setup_b(Some(&nsbr), None);
        v2.setup_a(Some(&ns2), Some(&format!("10.{subnet}.2/24")));
        v2.setup_b(Some(&nsbr), None);
        br.attach(&v1.b);
        br.attach(&v2.b);
        BridgedNs {
            ns1,
            nsbr,
            ns2,
            br,
            v1,
            v2,
        }
    }
}

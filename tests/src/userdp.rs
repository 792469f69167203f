//! Userspace datapaths for the uprobe tests: two hosts joined through a
//! forwarder namespace, and the datapath that forwards between them
//! (skbtrace-fwd, or a private ovs-vswitchd with a `datapath_type=netdev`
//! bridge). Everything is built by the test and removed on drop, also on
//! panic; processes are stopped by the PIDs the guards started.
//!
//!   ns1 [v1.a ip1] <-veth-> [v1.b] nsf [v2.b] <-veth-> [v2.a ip2] ns2

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{NetNs, Veth};

/// Field order is drop order: links first, then namespaces.
pub struct DpTopo {
    pub v1: Veth,
    pub v2: Veth,
    pub ns1: NetNs,
    pub ns2: NetNs,
    pub nsf: NetNs,
    pub ip1: String,
    pub ip2: String,
}

impl DpTopo {
    /// `subnet` like "93.4": hosts get 10.93.4.1 and 10.93.4.2.
    pub fn new(subnet: &str) -> DpTopo {
        let ns1 = NetNs::new("sup1");
        let ns2 = NetNs::new("sup2");
        let nsf = NetNs::new("supf");
        let ip1 = format!("10.{subnet}.1");
        let ip2 = format!("10.{subnet}.2");
        let mut v1 = Veth::new("up");
        v1.setup_a(Some(&ns1), Some(&format!("{ip1}/24")));
        v1.setup_b(Some(&nsf), None);
        let mut v2 = Veth::new("up");
        v2.setup_a(Some(&ns2), Some(&format!("{ip2}/24")));
        v2.setup_b(Some(&nsf), None);
        DpTopo {
            v1,
            v2,
            ns1,
            ns2,
            nsf,
            ip1,
            ip2,
        }
    }

    /// Pings ip2 from ns1 `count` times; panics unless every reply came.
    pub fn ping(&self, count: u32) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns1.name, "ping", "-c"])
            .arg(count.to_string())
            .args(["-i", "0.3", "-W", "3", &self.ip2])
            .output()
            .unwrap_or_else(|e| panic!("ping: {e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("{count} received")),
            "ping through the datapath failed:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Pings until one gets through (the datapath learns, ARP resolves).
pub fn wait_reachable(t: &DpTopo, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let ok = Command::new("ip")
            .args(["netns", "exec", &t.ns1.name, "ping", "-c", "1", "-W", "1"])
            .arg(&t.ip2)
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} not reachable through the datapath within {timeout:?}",
            t.ip2
        );
    }
}

/// Stops `pid` with SIGTERM (SIGKILL after 10 s) and waits until it is gone.
fn stop_pid(pid: u32) {
    let p = Pid::from_raw(pid as i32);
    let _ = kill(p, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while PathBuf::from(format!("/proc/{pid}")).exists() {
        // A zombie of ours is reaped by its Child; a daemonized one by init.
        if std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z ")) {
            return;
        }
        if Instant::now() > deadline {
            let _ = kill(p, Signal::SIGKILL);
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running skbtrace-fwd patching v1.b and v2.b in nsf.
pub struct FwdProc {
    child: Option<Child>,
}

impl FwdProc {
    pub fn start(t: &DpTopo) -> FwdProc {
        let bin = crate::skbtrace::bin("skbtrace-fwd");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &t.nsf.name])
            .arg(&bin)
            .args(["--if", &t.v1.b, "--if", &t.v2.b])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let err = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) if l.contains("ready") => break,
                Ok(l) => seen.push(l),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let st = child.wait();
                    panic!("skbtrace-fwd exited ({st:?}):\n{}", seen.join("\n"));
                }
                Err(_) => {}
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("skbtrace-fwd not ready:\n{}", seen.join("\n"));
            }
        }
        FwdProc { child: Some(child) }
    }

    /// `ip netns exec` execs the forwarder: this is its pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Stops it now (SIGTERM, then reaps it).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_pid(c.id());
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for FwdProc {
    fn drop(&mut self) {
        self.stop();
    }
}

static OVS_SEQ: AtomicU32 = AtomicU32::new(0);

/// A private ovsdb-server + ovs-vswitchd (in nsf, state in a temp dir,
/// never the system service) with a `datapath_type=netdev` bridge over
/// v1.b and v2.b: OVS's userspace datapath, forwarding over AF_PACKET.
pub struct OvsProc {
    dir: PathBuf,
    netns: String,
    pids: Vec<u32>,
    pub vswitchd_pid: u32,
}

impl OvsProc {
    /// Why OVS cannot run here, if it cannot (not installed).
    pub fn unavailable() -> Option<String> {
        for b in [
            "/usr/sbin/ovs-vswitchd",
            "/usr/sbin/ovsdb-server",
            "/usr/bin/ovs-vsctl",
            "/usr/bin/ovsdb-tool",
        ] {
            if !std::path::Path::new(b).exists() {
                return Some(format!(
                    "{b} is missing: apt-get install openvswitch-switch (scripts/setup.sh)"
                ));
            }
        }
        None
    }

    pub fn start(t: &DpTopo) -> OvsProc {
        // A netdev bridge's own (internal) port is a TAP device: without
        // /dev/net/tun (Debian's 6.1 guest until tun is loaded) OVS cannot
        // set the bridge up and forwards nothing.
        let tun = std::path::Path::new("/dev/net/tun");
        if !tun.exists() {
            let _ = Command::new("modprobe").arg("tun").status();
        }
        assert!(
            tun.exists(),
            "/dev/net/tun is missing and `modprobe tun` did not create it: OVS's netdev datapath needs TUN for the bridge's internal port"
        );
        let dir = std::env::temp_dir().join(format!(
            "skbtrace-ovs-{}-{}",
            std::process::id(),
            OVS_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let mut ovs = OvsProc {
            dir: dir.clone(),
            netns: t.nsf.name.clone(),
            pids: Vec::new(),
            vswitchd_pid: 0,
        };
        let d = |f: &str| dir.join(f).to_string_lossy().into_owned();
        let schema = "/usr/share/openvswitch/vswitch.ovsschema";
        ovs.run("ovsdb-tool", &["create", &d("conf.db"), schema], false);
        ovs.run(
            "ovsdb-server",
            &[
                &d("conf.db"),
                &format!("--remote=punix:{}", d("db.sock")),
                &format!("--pidfile={}", d("ovsdb.pid")),
                &format!("--unixctl={}", d("ovsdb.ctl")),
                &format!("--log-file={}", d("ovsdb.log")),
                "--detach",
                "--no-chdir",
            ],
            true,
        );
        ovs.pids.push(ovs.read_pid("ovsdb.pid"));
        let db = format!("--db=unix:{}", d("db.sock"));
        ovs.run("ovs-vsctl", &[&db, "--no-wait", "init"], false);
        ovs.run(
            "ovs-vswitchd",
            &[
                &format!("unix:{}", d("db.sock")),
                &format!("--pidfile={}", d("vswitchd.pid")),
                &format!("--unixctl={}", d("vswitchd.ctl")),
                &format!("--log-file={}", d("vswitchd.log")),
                "--detach",
                "--no-chdir",
            ],
            true,
        );
        ovs.vswitchd_pid = ovs.read_pid("vswitchd.pid");
        ovs.pids.push(ovs.vswitchd_pid);
        let br = crate::unique_name("sbr");
        ovs.run(
            "ovs-vsctl",
            &[
                &db,
                "--timeout=60",
                "add-br",
                &br,
                "--",
                "set",
                "bridge",
                &br,
                "datapath_type=netdev",
                "--",
                "add-port",
                &br,
                &t.v1.b,
                "--",
                "add-port",
                &br,
                &t.v2.b,
            ],
            false,
        );
        ovs
    }

    /// Runs an OVS tool in nsf with its run/log/db dirs in our temp dir.
    fn run(&self, cmd: &str, args: &[&str], in_netns: bool) {
        let mut c = if in_netns {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &self.netns]).arg(cmd);
            c
        } else {
            Command::new(cmd)
        };
        for v in ["OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVS_SYSCONFDIR"] {
            c.env(v, &self.dir);
        }
        let out = c
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
        if !out.status.success() {
            panic!(
                "`{cmd} {}` failed ({}):\n{}{}\nlog:\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
    }

    fn read_pid(&self, f: &str) -> u32 {
        let p = self.dir.join(f);
        std::fs::read_to_string(&p)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid in {}:\n{}", p.display(), self.log()))
    }

    /// ovs-vswitchd's log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("vswitchd.log")).unwrap_or_default()
    }
}

impl Drop for OvsProc {
    fn drop(&mut self) {
        // vswitchd first (it removes its ports), then the database.
        for &p in self.pids.iter().rev() {
            stop_pid(p);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What [`check_joined`] measured, per ping (nanoseconds).
#[derive(Debug, Default)]
pub struct Joined {
    /// Last sender-side kernel hop -> first uprobe hop.
    pub kernel_to_user: Vec<u64>,
    /// First -> last uprobe hop (time inside the datapath process).
    pub in_user: Vec<u64>,
    /// Last uprobe hop -> next kernel hop.
    pub user_to_kernel: Vec<u64>,
    pub total: Vec<u64>,
}

fn median(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

impl Joined {
    pub fn report(&self, what: &str) -> String {
        format!(
            "{what}: median kernel->user {} us, in user space {} us, user->kernel {} us, whole path {} us over {} pings",
            median(&self.kernel_to_user) / 1000,
            median(&self.in_user) / 1000,
            median(&self.user_to_kernel) / 1000,
            median(&self.total) / 1000,
            self.total.len()
        )
    }
}

/// Checks what a user looks for in `skbtrace follow --json` output of
/// `pings` pings from ns1 to ns2 through a userspace datapath: one timeline
/// per echo request, in which uprobe hops of the datapath process (`rx`
/// before `tx`, by name prefix) sit between a kernel hop in the sender's
/// netns and a kernel hop in the receiver's, with consistent per-hop
/// deltas. With `af_packet_hops` (kernels where packet_rcv/tpacket_rcv
/// attach) the AF_PACKET receive is in the timeline before user space.
pub fn check_joined(
    records: &[serde_json::Value],
    t: &DpTopo,
    dp_pid: u32,
    rx: &str,
    tx: &str,
    pings: u32,
    af_packet_hops: bool,
) -> Joined {
    let dump = || {
        records
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (ns1, ns2) = (t.ns1.inode(), t.ns2.inode());
    let mut j = Joined::default();
    for seq in 1..=pings {
        let want = "echo-request id";
        let tls: Vec<&serde_json::Value> = records
            .iter()
            .filter(|r| r["type"] == "timeline")
            .filter(|r| {
                let s = r["summary"].as_str().unwrap_or("");
                s.contains(want) && s.ends_with(&format!(" seq {seq}"))
            })
            .collect();
        assert_eq!(
            tls.len(),
            1,
            "echo request seq {seq}: expected exactly one timeline, got {}:\n{}",
            tls.len(),
            dump()
        );
        let tl = tls[0];
        let hops = tl["hops"].as_array().expect("hops");
        let method = |h: &serde_json::Value| h["method"].as_str().unwrap_or("").to_string();
        let probe = |h: &serde_json::Value| h["probe"].as_str().unwrap_or("").to_string();
        let users: Vec<usize> = (0..hops.len())
            .filter(|&i| method(&hops[i]) == "uprobe")
            .collect();
        // The whole trace too: a missing hop is usually in another timeline.
        let ctx = || format!("seq {seq} timeline:\n{tl:#}\nall records:\n{}", dump());
        let first_rx = users
            .iter()
            .copied()
            .find(|&i| probe(&hops[i]).starts_with(rx))
            .unwrap_or_else(|| panic!("no {rx}* uprobe hop in {}", ctx()));
        let last_tx = users
            .iter()
            .copied()
            .rev()
            .find(|&i| probe(&hops[i]).starts_with(tx))
            .unwrap_or_else(|| panic!("no {tx}* uprobe hop in {}", ctx()));
        assert!(first_rx < last_tx, "{rx} must come before {tx}: {}", ctx());
        for &i in &users {
            assert_eq!(
                hops[i]["pid"].as_u64(),
                Some(dp_pid as u64),
                "uprobe hop {i} not in the datapath process {dp_pid}: {}",
                ctx()
            );
        }
        for i in [first_rx, last_tx] {
            assert!(
                hops[i]["batch"].as_u64().is_some_and(|b| b >= 1) && hops[i]["by_time"].is_null(),
                "a frame hop carries its batch size and is placed by fingerprint: {}",
                ctx()
            );
        }
        let kernel_in = |i: usize, ns: u64| {
            method(&hops[i]) != "uprobe" && hops[i]["netns"].as_u64() == Some(ns)
        };
        let sender = (0..first_rx)
            .rev()
            .find(|&i| kernel_in(i, ns1))
            .unwrap_or_else(|| panic!("no sender (ns1) kernel hop before {rx}: {}", ctx()));
        let receiver = (last_tx + 1..hops.len())
            .find(|&i| kernel_in(i, ns2))
            .unwrap_or_else(|| panic!("no receiver (ns2) kernel hop after {tx}: {}", ctx()));
        if af_packet_hops {
            assert!(
                (0..first_rx)
                    .any(|i| ["packet_rcv", "tpacket_rcv"].contains(&probe(&hops[i]).as_str())),
                "the AF_PACKET receive (packet_rcv/tpacket_rcv) is in the timeline before user space: {}",
                ctx()
            );
        }
        // Per-hop deltas are the time since the previous hop.
        let ts = |i: usize| hops[i]["ts_ns"].as_u64().expect("ts_ns");
        for (i, h) in hops.iter().enumerate().skip(1) {
            assert_eq!(
                h["delta_ns"].as_u64(),
                Some(ts(i) - ts(i - 1)),
                "delta of hop {i}: {}",
                ctx()
            );
        }
        assert_eq!(tl["total_ns"].as_u64(), Some(ts(hops.len() - 1) - ts(0)));
        let last_user = *users.last().expect("uprobe hops");
        j.kernel_to_user.push(ts(first_rx) - ts(first_rx - 1));
        j.in_user.push(ts(last_user) - ts(first_rx));
        if let Some(next) = (last_user + 1..hops.len()).find(|&i| method(&hops[i]) != "uprobe") {
            j.user_to_kernel.push(ts(next) - ts(last_user));
        }
        j.total.push(ts(receiver) - ts(sender));
    }
    j
}

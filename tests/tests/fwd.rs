//! Root integration tests for `skbtrace-fwd`, the AF_PACKET forwarder.
//!
//! Topology built (and removed on drop, also on panic) by every test:
//!
//!   ns1 [a1 10.7x.y.1] <-veth-> [b1] fwd-ns [b2] <-veth-> [a2 10.7x.y.2] ns2
//!
//! with `skbtrace-fwd --if b1 --if b2 ...` running in fwd-ns. Subnets come
//! from 10.77.x.0/24 .. 10.79.x.0/24, distinct per test.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;

use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tests::skbtrace::bin;
use tests::{NetNs, Veth, require_root};

/// Two hosts joined through a forwarder namespace. Field order is drop
/// order: the forwarder goes first, then links, then namespaces.
struct Topo {
    fwd: Option<Fwd>,
    v1: Veth,
    v2: Veth,
    extra: Vec<Veth>,
    extra_ns: Vec<NetNs>,
    ns1: NetNs,
    ns2: NetNs,
    nsf: NetNs,
    ip1: String,
    ip2: String,
    subnet: String,
}

impl Topo {
    /// `subnet` is like "77.3": hosts get 10.77.3.1 and 10.77.3.2.
    fn new(subnet: &str) -> Topo {
        let ns1 = NetNs::new("sfh1");
        let ns2 = NetNs::new("sfh2");
        let nsf = NetNs::new("sff");
        let ip1 = format!("10.{subnet}.1");
        let ip2 = format!("10.{subnet}.2");
        let mut v1 = Veth::new("fw");
        v1.setup_a(Some(&ns1), Some(&format!("{ip1}/24")));
        v1.setup_b(Some(&nsf), None);
        let mut v2 = Veth::new("fw");
        v2.setup_a(Some(&ns2), Some(&format!("{ip2}/24")));
        v2.setup_b(Some(&nsf), None);
        Topo {
            fwd: None,
            v1,
            v2,
            extra: Vec::new(),
            extra_ns: Vec::new(),
            ns1,
            ns2,
            nsf,
            ip1,
            ip2,
            subnet: subnet.to_string(),
        }
    }

    /// Adds host number `n` (n >= 3) in its own namespace behind a third
    /// link into the forwarder namespace; returns (namespace index, its IP).
    fn add_host(&mut self, n: u32) -> (usize, String) {
        let ns = NetNs::new("sfh3");
        let ip = format!("10.{}.{n}", self.subnet);
        let mut v = Veth::new("fw");
        v.setup_a(Some(&ns), Some(&format!("{ip}/24")));
        v.setup_b(Some(&self.nsf), None);
        self.extra.push(v);
        self.extra_ns.push(ns);
        (self.extra_ns.len() - 1, ip)
    }

    /// Starts the forwarder on b1, b2 (and any added hosts' links) with extra arguments.
    fn start(&mut self, extra: &[&str]) {
        let mut args = vec!["--if", &self.v1.b, "--if", &self.v2.b];
        for v in &self.extra {
            args.push("--if");
            args.push(&v.b);
        }
        args.extend_from_slice(extra);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        self.fwd = Some(Fwd::start(&self.nsf.name, &args));
    }

    fn fwd(&mut self) -> &mut Fwd {
        self.fwd.as_mut().expect("forwarder started")
    }

    /// Stops the forwarder with SIGINT and returns its per-interface stats.
    fn stop(&mut self) -> Stats {
        let f = self.fwd.take().expect("forwarder started");
        let (status, out, err) = f.stop(Signal::SIGINT);
        assert!(
            status.success(),
            "skbtrace-fwd exited with {status}\nstdout:\n{out}\nstderr:\n{err}"
        );
        Stats::parse(&out)
    }

    /// Sets the MTU on all four link ends.
    fn set_mtu(&self, mtu: u32) {
        let m = mtu.to_string();
        self.ns1.run("ip", &["link", "set", &self.v1.a, "mtu", &m]);
        self.ns2.run("ip", &["link", "set", &self.v2.a, "mtu", &m]);
        self.nsf.run("ip", &["link", "set", &self.v1.b, "mtu", &m]);
        self.nsf.run("ip", &["link", "set", &self.v2.b, "mtu", &m]);
    }
}

/// A running `skbtrace-fwd`, killed by PID on drop if still running.
struct Fwd {
    child: Child,
    stderr_rx: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
    stdout_rx: mpsc::Receiver<String>,
    stdout_seen: Vec<String>,
}

/// Forwards a child's output lines to a channel.
fn lines_to_channel(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle` on `rx`, keeping every line in `seen`.
fn wait_line(
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    needle: &str,
    timeout: Duration,
) -> Option<String> {
    if let Some(l) = seen.iter().find(|l| l.contains(needle)) {
        return Some(l.clone());
    }
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).ok()?;
        seen.push(line.clone());
        if line.contains(needle) {
            return Some(line);
        }
    }
}

impl Fwd {
    fn start(ns: &str, args: &[String]) -> Fwd {
        let exe = bin("skbtrace-fwd");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(&exe).args(args);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", exe.display()));
        let stdout_rx = lines_to_channel(child.stdout.take().expect("piped stdout"));
        let stderr_rx = lines_to_channel(child.stderr.take().expect("piped stderr"));
        let mut f = Fwd {
            child,
            stderr_rx,
            stderr_seen: Vec::new(),
            stdout_rx,
            stdout_seen: Vec::new(),
        };
        f.wait_stderr("ready:", Duration::from_secs(10));
        f
    }

    /// Waits for a stderr line containing `needle`; panics with everything
    /// seen so far when it does not come.
    fn wait_stderr(&mut self, needle: &str, timeout: Duration) -> String {
        match wait_line(&self.stderr_rx, &mut self.stderr_seen, needle, timeout) {
            Some(l) => l,
            None => {
                let status = self.child.try_wait().ok().flatten();
                panic!(
                    "skbtrace-fwd: no stderr line with {needle:?} within {timeout:?} (exit status {status:?}); stderr so far:\n{}",
                    self.stderr_seen.join("\n")
                );
            }
        }
    }

    /// Waits for a stdout line containing `needle`, then returns all stdout so far.
    fn wait_stdout(&mut self, needle: &str, timeout: Duration) -> String {
        if wait_line(&self.stdout_rx, &mut self.stdout_seen, needle, timeout).is_none() {
            panic!(
                "skbtrace-fwd: no stdout line with {needle:?} within {timeout:?}; stdout so far:\n{}",
                self.stdout_seen.join("\n")
            );
        }
        // Let the rest of that dump arrive.
        while let Ok(l) = self.stdout_rx.recv_timeout(Duration::from_millis(200)) {
            self.stdout_seen.push(l);
        }
        self.stdout_seen.join("\n")
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Waits for the process to exit on its own.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Sends `sig`, waits (at most 10 s) and returns (status, stdout, stderr).
    fn stop(mut self, sig: Signal) -> (ExitStatus, String, String) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(self.pid(), sig);
        }
        let status = self
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("skbtrace-fwd did not exit within 10 s of {sig}"));
        self.finish(status)
    }

    fn finish(&mut self, status: ExitStatus) -> (ExitStatus, String, String) {
        // The pipes close when the process is gone: read them to the end.
        while let Ok(l) = self.stdout_rx.recv_timeout(Duration::from_secs(2)) {
            self.stdout_seen.push(l);
        }
        while let Ok(l) = self.stderr_rx.recv_timeout(Duration::from_secs(2)) {
            self.stderr_seen.push(l);
        }
        (
            status,
            self.stdout_seen.join("\n"),
            self.stderr_seen.join("\n"),
        )
    }
}

impl Drop for Fwd {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(self.pid(), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// The `stats if=... queue=...` lines of one stats dump (the last one).
#[derive(Debug)]
struct Stats {
    /// (interface, queue) -> counters; queue "all" is the per-interface total.
    rows: HashMap<(String, String), HashMap<String, u64>>,
    text: String,
}

impl Stats {
    fn parse(out: &str) -> Stats {
        // Keep only the last dump (after the last header line).
        let start = out
            .rfind("stats reason=")
            .unwrap_or_else(|| panic!("no stats in output:\n{out}"));
        let text = out[start..].to_string();
        let mut rows = HashMap::new();
        for line in text.lines().skip(1) {
            let mut iface = String::new();
            let mut queue = String::new();
            let mut vals = HashMap::new();
            for kv in line.split_whitespace().skip(1) {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                match k {
                    "if" => iface = v.to_string(),
                    "queue" => queue = v.to_string(),
                    _ => {
                        if let Ok(n) = v.parse() {
                            vals.insert(k.to_string(), n);
                        }
                    }
                }
            }
            rows.insert((iface, queue), vals);
        }
        Stats { rows, text }
    }

    fn get(&self, iface: &str, queue: &str, key: &str) -> u64 {
        *self
            .rows
            .get(&(iface.to_string(), queue.to_string()))
            .and_then(|r| r.get(key))
            .unwrap_or_else(|| {
                panic!(
                    "no {key} for {iface} queue {queue} in stats:\n{}",
                    self.text
                )
            })
    }
}

fn ping(ns: &NetNs, dst: &str, count: u32, size: u32) -> (u32, u32, String) {
    ping_on(None, ns, dst, count, size)
}

/// `ping` run on `cpu` when given (taskset): (sent, received, output).
fn ping_on(cpu: Option<usize>, ns: &NetNs, dst: &str, count: u32, size: u32) -> (u32, u32, String) {
    let mut cmd = match cpu {
        Some(c) => {
            let mut t = Command::new("taskset");
            t.args(["-c", &c.to_string(), "ip"]);
            t
        }
        None => Command::new("ip"),
    };
    let out = cmd
        .args([
            "netns",
            "exec",
            &ns.name,
            "ping",
            "-n",
            "-q",
            "-c",
            &count.to_string(),
            "-i",
            "0.05",
            "-W",
            "1",
        ])
        .args(["-s", &size.to_string(), dst])
        .output()
        .expect("run ping");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // "N packets transmitted, M received"
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("unexpected ping output:\n{text}"));
    let nums: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    (nums[0], nums[1], text)
}

fn assert_ping_ok(ns: &NetNs, dst: &str, count: u32, size: u32) {
    let (sent, got, text) = ping(ns, dst, count, size);
    assert_eq!(
        (sent, got),
        (count, count),
        "ping -s {size} {dst} from {} lost packets:\n{text}",
        ns.name
    );
}

/// Runs `f` on a thread that has entered network namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        setns(&file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
        f()
    })
}

/// A deterministic byte stream and a cheap running hash of it, so the
/// receiver can prove it got exactly what was sent.
struct Pattern(u64);

impl Pattern {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let b = self.0.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Digest {
    bytes: u64,
    hash: u64,
}

/// Hashes a stream in 8-byte words regardless of how reads split it.
struct Hasher {
    h: u64,
    pending: Vec<u8>,
    bytes: u64,
}

impl Hasher {
    fn new() -> Hasher {
        Hasher {
            h: 0xcbf2_9ce4_8422_2325,
            pending: Vec::with_capacity(8),
            bytes: 0,
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        self.bytes += data.len() as u64;
        while !data.is_empty() {
            if self.pending.is_empty() && data.len() >= 8 {
                let (w, rest) = data.split_at(8);
                self.word(u64::from_le_bytes(w.try_into().unwrap_or([0; 8])));
                data = rest;
            } else {
                self.pending.push(data[0]);
                data = &data[1..];
                if self.pending.len() == 8 {
                    let w = u64::from_le_bytes(self.pending[..].try_into().unwrap_or([0; 8]));
                    self.pending.clear();
                    self.word(w);
                }
            }
        }
    }

    fn word(&mut self, w: u64) {
        self.h = (self.h ^ w).wrapping_mul(0x0100_0000_01b3).rotate_left(23);
    }

    fn finish(mut self) -> Digest {
        for b in std::mem::take(&mut self.pending) {
            self.word(b as u64);
        }
        Digest {
            bytes: self.bytes,
            hash: self.h,
        }
    }
}

/// Sends `bytes` of patterned data over `conns` parallel TCP connections
/// from ns1 to ns2 and checks every connection delivered exactly what was
/// sent.
fn tcp_transfer(t: &Topo, port: u16, conns: usize, bytes: u64) {
    let addr: SocketAddr = format!("{}:{port}", t.ip2).parse().expect("socket address");
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = in_netns(&t.ns2.name, move || {
        let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        l.set_nonblocking(true).expect("nonblocking listener");
        let _ = ready_tx.send(());
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut readers = Vec::new();
        while readers.len() < conns {
            match l.accept() {
                Ok((mut s, _)) => {
                    readers.push(std::thread::spawn(move || {
                        s.set_nonblocking(false).expect("blocking stream");
                        s.set_read_timeout(Some(Duration::from_secs(30)))
                            .expect("read timeout");
                        let mut h = Hasher::new();
                        let mut buf = vec![0u8; 256 * 1024];
                        loop {
                            match s.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => h.update(&buf[..n]),
                                Err(e) => panic!("receiving: {e} after {} bytes", h.bytes),
                            }
                        }
                        h.finish()
                    }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        Instant::now() < deadline,
                        "only {} of {conns} connections arrived",
                        readers.len()
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
        let mut d: Vec<Digest> = readers
            .into_iter()
            .map(|r| r.join().expect("reader thread"))
            .collect();
        d.sort_by_key(|x| x.hash);
        d
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server ready");
    let per_conn = bytes / conns as u64;
    let client = in_netns(&t.ns1.name, move || {
        let senders: Vec<_> = (0..conns)
            .map(|i| {
                std::thread::spawn(move || {
                    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
                    s.set_write_timeout(Some(Duration::from_secs(30)))
                        .expect("write timeout");
                    let mut p = Pattern(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
                    let mut h = Hasher::new();
                    let mut buf = vec![0u8; 128 * 1024];
                    let mut left = per_conn;
                    while left > 0 {
                        let n = left.min(buf.len() as u64) as usize;
                        p.fill(&mut buf[..n]);
                        s.write_all(&buf[..n])
                            .unwrap_or_else(|e| panic!("sending: {e} with {left} bytes left"));
                        h.update(&buf[..n]);
                        left -= n as u64;
                    }
                    s.shutdown(Shutdown::Write).expect("shutdown");
                    // Wait for the peer to close, so all data is acknowledged.
                    let mut sink = [0u8; 16];
                    let _ = s.read(&mut sink);
                    h.finish()
                })
            })
            .collect();
        let mut d: Vec<Digest> = senders
            .into_iter()
            .map(|s| s.join().expect("sender thread"))
            .collect();
        d.sort_by_key(|x| x.hash);
        d
    });
    let sent = client.join().expect("client");
    let got = server.join().expect("server");
    assert_eq!(
        got, sent,
        "TCP data through the forwarder differs from what was sent"
    );
    assert_eq!(
        got.iter().map(|d| d.bytes).sum::<u64>(),
        per_conn * conns as u64
    );
}

fn assert_consistent(s: &Stats, t: &Topo) {
    // Every frame read on one side was either sent out the other side or
    // counted as a drop there.
    let (b1, b2) = (&t.v1.b, &t.v2.b);
    for (from, to) in [(b1, b2), (b2, b1)] {
        let rx = s.get(from, "all", "rx_packets");
        let tx = s.get(to, "all", "tx_packets");
        let dropped = s.get(from, "all", "drop_truncated")
            + s.get(from, "all", "drop_oversized")
            + s.get(from, "all", "drop_malformed")
            + s.get(to, "all", "drop_ring_full");
        assert_eq!(
            rx,
            tx + dropped,
            "{from} rx != {to} tx + drops:\n{}",
            s.text
        );
    }
}

#[test]
fn fwd_ping_and_tcp_between_two_netns() {
    if !require_root("fwd_ping_and_tcp_between_two_netns") {
        return;
    }
    let mut t = Topo::new("77.1");
    t.start(&[]);
    assert_ping_ok(&t.ns1, &t.ip2.clone(), 20, 56);
    assert_ping_ok(&t.ns2, &t.ip1.clone(), 20, 1400);
    tcp_transfer(&t, 5201, 1, 32 << 20);
    let s = t.stop();
    assert_consistent(&s, &t);
    let (b1, b2) = (t.v1.b.clone(), t.v2.b.clone());
    // 32 MiB crossed b1 -> b2.
    assert!(s.get(&b1, "all", "rx_bytes") > 32 << 20, "{}", s.text);
    assert!(s.get(&b2, "all", "tx_bytes") > 32 << 20, "{}", s.text);
    assert!(
        s.get(&b2, "all", "rx_packets") >= 40,
        "replies and ACKs came back:\n{}",
        s.text
    );
    assert_eq!(s.get(&b1, "all", "drop_malformed"), 0, "{}", s.text);
    // veth hands over 64 KiB GSO frames; those go out by sendmsg straight
    // from the RX ring (the transfer's hash above proves they arrived
    // intact), the small ones (pings, ACKs) through the TX ring.
    let direct = s.get(&b2, "all", "tx_direct");
    assert!(
        direct > 0 && direct < s.get(&b2, "all", "tx_packets"),
        "large frames by sendmsg, the rest by the TX ring:\n{}",
        s.text
    );
    assert_eq!(s.get(&b2, "all", "drop_send_error"), 0, "{}", s.text);
}

#[test]
fn fwd_tx_ring_only_sends_every_frame_through_the_ring() {
    if !require_root("fwd_tx_ring_only_sends_every_frame_through_the_ring") {
        return;
    }
    let mut t = Topo::new("77.10");
    t.start(&["--tx-ring-only"]);
    let line = t.fwd().wait_stderr("ready:", Duration::from_secs(1));
    assert!(line.contains("large frames by tx ring"), "{line}");
    tcp_transfer(&t, 5209, 1, 16 << 20);
    let s = t.stop();
    assert_consistent(&s, &t);
    let b2 = t.v2.b.clone();
    assert!(s.get(&b2, "all", "tx_bytes") > 16 << 20, "{}", s.text);
    assert_eq!(s.get(&b2, "all", "tx_direct"), 0, "{}", s.text);
}

#[test]
fn fwd_fanout_two_queues() {
    if !require_root("fwd_fanout_two_queues") {
        return;
    }
    let mut t = Topo::new("77.2");
    t.start(&["--queues", "2"]);
    let line = t.fwd().wait_stderr("ready:", Duration::from_secs(1));
    assert!(line.contains("2 queues"), "{line}");
    assert_ping_ok(&t.ns1, &t.ip2.clone(), 10, 56);
    // 16 connections: flows hash onto both queues (all 16 on one queue has
    // odds of 2^-15).
    tcp_transfer(&t, 5202, 16, 32 << 20);
    let s = t.stop();
    assert_consistent(&s, &t);
    let b1 = t.v1.b.clone();
    let (q0, q1) = (s.get(&b1, "0", "rx_packets"), s.get(&b1, "1", "rx_packets"));
    assert!(
        q0 > 100 && q1 > 100,
        "both fanout queues carried traffic (q0 {q0}, q1 {q1}):\n{}",
        s.text
    );
    assert_eq!(q0 + q1, s.get(&b1, "all", "rx_packets"), "{}", s.text);
}

#[test]
fn fwd_fanout_cpu_queue_follows_the_sending_cpu() {
    if !require_root("fwd_fanout_cpu_queue_follows_the_sending_cpu") {
        return;
    }
    // One queue has nothing to spread over.
    assert_refused(
        &["--if", "x1", "--if", "x2", "--fanout", "cpu"],
        "give --queues 2 or more",
    );
    let (a, b) = last_two_cpus();
    if a % 2 == b % 2 {
        eprintln!(
            "SKIP fwd_fanout_cpu_queue_follows_the_sending_cpu: needs two CPUs of different parity; this process may use {a} and {b}"
        );
        return;
    }
    let list = format!("{b},{a}");
    let mut t = Topo::new("77.14");
    t.start(&["--queues", "2", "--fanout", "cpu", "--cpus", &list]);
    let line = t.fwd().wait_stderr("ready:", Duration::from_secs(1));
    assert!(
        line.contains(&format!("2 queues on CPU {list}, fanout cpu")),
        "{line}"
    );
    // The kernel hands b1 an echo request on the CPU the pinging thread
    // runs on (veth delivers through that CPU's backlog), so pings from CPU
    // c land on queue c mod 2. Under hash fanout one ping flow would stay
    // on one queue whichever CPU it came from.
    let (b1, ip2) = (t.v1.b.clone(), t.ip2.clone());
    for cpu in [a, b] {
        let before = Stats::parse(&t.fwd().wait_stdout_after_usr1());
        let (sent, got, text) = ping_on(Some(cpu), &t.ns1, &ip2, 20, 56);
        assert_eq!((sent, got), (20, 20), "ping from CPU {cpu}:\n{text}");
        let after = Stats::parse(&t.fwd().wait_stdout_after_usr1());
        let rx = |q: usize| {
            let q = q.to_string();
            after.get(&b1, &q, "rx_packets") - before.get(&b1, &q, "rx_packets")
        };
        let (mine, other) = (rx(cpu % 2), rx((cpu + 1) % 2));
        assert!(
            mine >= 20 && other < 10,
            "20 pings from CPU {cpu}: queue {} got {mine} frames, queue {} {other}:\n{}",
            cpu % 2,
            (cpu + 1) % 2,
            after.text
        );
    }
    // Frames of one flow may change queue: a transfer still arrives whole.
    tcp_transfer(&t, 5214, 4, 16 << 20);
    let s = t.stop();
    assert_consistent(&s, &t);
    assert_eq!(s.get(&b1, "all", "drops"), 0, "{}", s.text);
}

/// Runs skbtrace-fwd with `args` (interfaces need not exist: the check
/// comes first) and asserts it fails with `msg` in its error.
fn assert_refused(args: &[&str], msg: &str) {
    let out = Command::new(bin("skbtrace-fwd"))
        .args(args)
        .output()
        .expect("run skbtrace-fwd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(msg),
        "{args:?}: want a refusal with {msg:?}, got {}: {err}",
        out.status
    );
}

/// `Cpus_allowed_list` of each thread of `pid`, by thread name.
fn thread_cpus(pid: Pid) -> Vec<(String, String)> {
    let dir = format!("/proc/{pid}/task");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let status = std::fs::read_to_string(e.unwrap().path().join("status")).unwrap_or_default();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        out.push((field("Name:"), field("Cpus_allowed_list:")));
    }
    out
}

/// Asserts that each named thread of `pid` is pinned to its CPU. Each
/// worker names and pins itself as it starts, which may be just after the
/// ready line, so this waits a moment for them.
fn assert_pinned(pid: Pid, want: &[(&str, usize)]) {
    let threads = tests::poll_until(
        Duration::from_secs(2),
        || thread_cpus(pid),
        |th| {
            want.iter()
                .all(|(name, cpu)| th.iter().any(|(n, c)| n == name && *c == cpu.to_string()))
        },
    );
    for (name, cpu) in want {
        let got = threads.iter().find(|(n, _)| n == name);
        assert_eq!(
            got.map(|(_, c)| c.as_str()),
            Some(cpu.to_string().as_str()),
            "{name} pinned to CPU {cpu}; threads: {threads:?}"
        );
    }
}

/// The last two CPUs this process may use (one, twice, on a 1-CPU box).
fn last_two_cpus() -> (usize, usize) {
    let allowed: Vec<usize> = (0..nix::sched::CpuSet::count())
        .filter(|&c| {
            nix::sched::sched_getaffinity(Pid::from_raw(0))
                .is_ok_and(|s| s.is_set(c).unwrap_or(false))
        })
        .collect();
    match allowed.as_slice() {
        [.., a, b] => (*a, *b),
        [a] => (*a, *a),
        [] => panic!("no CPU in this process's affinity mask"),
    }
}

#[test]
fn fwd_cpus_pins_each_queue_to_its_cpu() {
    if !require_root("fwd_cpus_pins_each_queue_to_its_cpu") {
        return;
    }
    let (a, b) = last_two_cpus();
    let list = format!("{b},{a}");
    let mut t = Topo::new("77.11");
    t.start(&["--queues", "2", "--cpus", &list]);
    let line = t.fwd().wait_stderr("ready:", Duration::from_secs(1));
    assert!(line.contains(&format!("on CPU {list}")), "{line}");
    assert_pinned(t.fwd().pid(), &[("fwd-q0", b), ("fwd-q1", a)]);
    assert_ping_ok(&t.ns1, &t.ip2.clone(), 5, 56);
    tcp_transfer(&t, 5211, 2, 8 << 20);
    let s = t.stop();
    assert_consistent(&s, &t);
}

#[test]
fn fwd_worker_per_direction_two_queues_pinned() {
    if !require_root("fwd_worker_per_direction_two_queues_pinned") {
        return;
    }
    // A bridge has no directions to split: refused before any socket opens.
    assert_refused(
        &[
            "--if",
            "x1",
            "--if",
            "x2",
            "--if",
            "x3",
            "--worker-per-direction",
        ],
        "needs exactly two --if",
    );

    let (a, b) = last_two_cpus();
    let list = format!("{b},{a}");
    let mut t = Topo::new("77.12");
    t.start(&["--worker-per-direction", "--queues", "2", "--cpus", &list]);
    let line = t.fwd().wait_stderr("ready:", Duration::from_secs(1));
    assert!(
        line.contains(&format!("2 queues, a worker per direction on CPU {list}")),
        "{line}"
    );
    // Workers in order q0 b1->b2, q0 b2->b1, q1 ..., pinned round the list.
    assert_pinned(
        t.fwd().pid(),
        &[
            ("fwd-q0-0to1", b),
            ("fwd-q0-1to0", a),
            ("fwd-q1-0to1", b),
            ("fwd-q1-1to0", a),
        ],
    );
    assert_ping_ok(&t.ns1, &t.ip2.clone(), 10, 56);
    assert_ping_ok(&t.ns2, &t.ip1.clone(), 10, 1400);
    tcp_transfer(&t, 5212, 16, 32 << 20);
    let s = t.stop();
    // Each direction's worker counts its side: the sums still balance, and
    // per queue lines add up to the totals.
    assert_consistent(&s, &t);
    let (b1, b2) = (t.v1.b.clone(), t.v2.b.clone());
    assert!(s.get(&b2, "all", "tx_bytes") > 32 << 20, "{}", s.text);
    assert!(s.get(&b2, "all", "tx_direct") > 0, "{}", s.text);
    // Both directions counted, on both queues (16 flows hash onto both;
    // all on one has odds of 2^-15): pings and ACKs came back through the
    // second worker of each queue.
    for (iface, key) in [
        (&b1, "rx_packets"),
        (&b2, "tx_packets"),
        (&b2, "rx_packets"),
        (&b1, "tx_packets"),
    ] {
        let (q0, q1) = (s.get(iface, "0", key), s.get(iface, "1", key));
        assert!(q0 > 20 && q1 > 20, "{iface} {key} per queue:\n{}", s.text);
        assert_eq!(
            q0 + q1,
            s.get(iface, "all", key),
            "{iface} {key}:\n{}",
            s.text
        );
    }
    assert_eq!(s.get(&b1, "all", "drops"), 0, "{}", s.text);
    assert_eq!(s.get(&b2, "all", "drops"), 0, "{}", s.text);
}

/// Packets the root qdisc of `dev` in `ns` has sent ("Sent N bytes M pkt").
fn qdisc_sent_packets(ns: &NetNs, dev: &str) -> u64 {
    let out = ns.run("tc", &["-s", "qdisc", "show", "dev", dev]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("Sent "))
        .unwrap_or_else(|| panic!("no Sent line in tc output:\n{text}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    words[3].parse().unwrap_or_else(|e| panic!("{line}: {e}"))
}

#[test]
fn fwd_qdisc_bypass_on_and_off() {
    if !require_root("fwd_qdisc_bypass_on_and_off") {
        return;
    }
    let mut t = Topo::new("77.3");
    // veth has no qdisc by default; give b2 one whose counters show whether
    // the forwarder's frames went through it.
    let b2 = t.v2.b.clone();
    t.nsf
        .run("tc", &["qdisc", "replace", "dev", &b2, "root", "pfifo"]);

    t.start(&[]);
    let before = qdisc_sent_packets(&t.nsf, &b2);
    assert_ping_ok(&t.ns1, &t.ip2.clone(), 30, 56);
    let bypassed = qdisc_sent_packets(&t.nsf, &b2) - before;
    let s = t.stop();
    assert!(s.get(&b2, "all", "tx_packets") >= 30, "{}", s.text);
    // A few packets of the kernel's own (IPv6 router solicitations) may pass
    // the qdisc; the 30 echo requests must not.
    assert!(
        bypassed < 10,
        "with PACKET_QDISC_BYPASS the qdisc saw {bypassed} packets"
    );

    t.start(&["--qdisc-bypass-disable"]);
    let line = t.fwd().wait_stderr("ready:", Duration::from_secs(1));
    assert!(line.contains("qdisc bypass off"), "{line}");
    let before = qdisc_sent_packets(&t.nsf, &b2);
    assert_ping_ok(&t.ns1, &t.ip2.clone(), 30, 56);
    let queued = qdisc_sent_packets(&t.nsf, &b2) - before;
    let s = t.stop();
    assert!(
        queued >= 30,
        "without bypass all 30 echo requests go through the qdisc, saw {queued}:\n{}",
        s.text
    );
    assert_consistent(&s, &t);
}

#[test]
fn fwd_rings_wrap_under_sustained_load() {
    if !require_root("fwd_rings_wrap_under_sustained_load") {
        return;
    }
    let mut t = Topo::new("77.4");
    // Tiny rings: 2 RX blocks of 128 KiB, 8 TX slots.
    t.start(&[
        "--block-size",
        "131072",
        "--block-count",
        "2",
        "--tx-frames",
        "8",
    ]);
    let pid = t.fwd().pid();
    tcp_transfer(&t, 5204, 4, 16 << 20);
    // Memory stays flat: rings are allocated once, nothing per frame.
    let rss0 = rss_kib(pid);
    tcp_transfer(&t, 5214, 4, 64 << 20);
    let rss1 = rss_kib(pid);
    assert!(
        rss1 <= rss0 + 1024,
        "RSS grew from {rss0} KiB to {rss1} KiB over 64 MiB of traffic"
    );
    assert_ping_ok(&t.ns1, &t.ip2.clone(), 10, 56);
    let s = t.stop();
    assert_consistent(&s, &t);
    let (b1, b2) = (t.v1.b.clone(), t.v2.b.clone());
    let rx_ring = 2 * 131072;
    let rx_bytes = s.get(&b1, "all", "rx_bytes");
    assert!(
        rx_bytes > 100 * rx_ring,
        "RX ring wrapped many times ({rx_bytes} bytes through a {rx_ring}-byte ring)"
    );
    let tx = s.get(&b2, "all", "tx_packets");
    assert!(
        tx > 100 * 8,
        "TX ring wrapped many times ({tx} frames through 8 slots)"
    );
}

#[test]
fn fwd_frame_larger_than_ring_frame_size() {
    if !require_root("fwd_frame_larger_than_ring_frame_size") {
        return;
    }
    let mut t = Topo::new("77.5");
    t.set_mtu(9000);
    // Slots of 2048 bytes: a 4000-byte ping does not fit.
    t.start(&["--frame-size", "2048", "--cksum-gso-disable"]);
    let (sent, got, text) = ping(&t.ns1, &t.ip2.clone(), 3, 4000);
    assert_eq!(
        (sent, got),
        (3, 0),
        "oversized pings must be dropped:\n{text}"
    );
    // The forwarder keeps working for frames that fit.
    assert_ping_ok(&t.ns1, &t.ip2.clone(), 5, 1000);
    let s = t.stop();
    let b1 = t.v1.b.clone();
    assert!(s.get(&b1, "all", "drop_oversized") >= 3, "{}", s.text);
    assert_consistent(&s, &t);

    // A frame larger than a whole RX block is cut by the kernel: counted as
    // truncated and dropped, not forwarded half.
    t.start(&[
        "--block-size",
        "4096",
        "--frame-size",
        "2048",
        "--cksum-gso-disable",
    ]);
    let (_, got, text) = ping(&t.ns1, &t.ip2.clone(), 3, 6000);
    assert_eq!(got, 0, "truncated pings must be dropped:\n{text}");
    assert_ping_ok(&t.ns1, &t.ip2.clone(), 5, 1000);
    let s = t.stop();
    assert!(s.get(&b1, "all", "drop_truncated") >= 3, "{}", s.text);
    assert_consistent(&s, &t);
}

#[test]
fn fwd_link_down_up_recovers_and_deletion_exits() {
    if !require_root("fwd_link_down_up_recovers_and_deletion_exits") {
        return;
    }
    link_down_up_recovers_and_deletion_exits("77.6", &[]);
}

#[test]
fn fwd_worker_per_direction_link_down_up_recovers_and_deletion_exits() {
    if !require_root("fwd_worker_per_direction_link_down_up_recovers_and_deletion_exits") {
        return;
    }
    // b2's RX ring and its TX ring belong to two threads here: the one that
    // reads b2 sees the socket error, the other keeps sending into it.
    link_down_up_recovers_and_deletion_exits("77.13", &["--worker-per-direction"]);
}

fn link_down_up_recovers_and_deletion_exits(subnet: &str, args: &[&str]) {
    let mut t = Topo::new(subnet);
    t.start(args);
    assert_ping_ok(&t.ns1, &t.ip2.clone(), 5, 56);
    let b2 = t.v2.b.clone();
    t.nsf.run("ip", &["link", "set", &b2, "down"]);
    t.fwd().wait_stderr("link down", Duration::from_secs(5));
    let (_, got, _) = ping(&t.ns1, &t.ip2.clone(), 3, 56);
    assert_eq!(got, 0, "no forwarding while b2 is down");
    t.nsf.run("ip", &["link", "set", &b2, "up"]);
    t.fwd().wait_stderr("link up", Duration::from_secs(5));
    // The link may need a moment to be carrier-up again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ping(&t.ns1, &t.ip2.clone(), 1, 56).1 != 1 {
        assert!(
            Instant::now() < deadline,
            "forwarding did not resume after b2 came back up"
        );
    }
    assert_ping_ok(&t.ns1, &t.ip2.clone(), 5, 56);

    // SIGUSR1 prints stats and keeps running.
    let pid = t.fwd().pid();
    kill(pid, Signal::SIGUSR1).expect("SIGUSR1");
    let out = t
        .fwd()
        .wait_stdout("stats reason=signal", Duration::from_secs(5));
    let s = Stats::parse(&out);
    assert!(s.get(&b2, "all", "tx_packets") >= 10, "{}", s.text);

    // Deleting an interface stops the forwarder with a clear message and stats.
    t.nsf.run("ip", &["link", "del", &b2]);
    let mut f = t.fwd.take().expect("forwarder");
    let status = f
        .wait_exit(Duration::from_secs(5))
        .expect("skbtrace-fwd exits when an interface is deleted");
    let (status, out, err) = f.finish(status);
    assert_eq!(status.code(), Some(1), "exit status; stderr:\n{err}");
    assert!(
        err.contains(&format!("interface {b2} disappeared")),
        "stderr:\n{err}"
    );
    assert!(
        out.contains("stats reason=exit"),
        "final stats printed:\n{out}"
    );
}

#[test]
fn fwd_sigterm_exits_cleanly_with_stats() {
    if !require_root("fwd_sigterm_exits_cleanly_with_stats") {
        return;
    }
    let mut t = Topo::new("77.7");
    t.start(&["--stats-interval", "1"]);
    assert_ping_ok(&t.ns1, &t.ip2.clone(), 5, 56);
    t.fwd()
        .wait_stdout("stats reason=interval", Duration::from_secs(5));
    let f = t.fwd.take().expect("forwarder");
    let (status, out, err) = f.stop(Signal::SIGTERM);
    assert!(status.success(), "exit status {status}; stderr:\n{err}");
    let s = Stats::parse(&out);
    assert!(s.get(&t.v1.b, "all", "rx_packets") >= 5, "{}", s.text);
    assert!(err.contains("stopped"), "{err}");
}

#[test]
fn fwd_bridge_learns_three_ports() {
    if !require_root("fwd_bridge_learns_three_ports") {
        return;
    }
    let mut t = Topo::new("77.8");
    let (i3, ip3) = t.add_host(3);
    t.start(&[]);
    let line = t.fwd().wait_stderr("ready:", Duration::from_secs(1));
    assert!(line.contains("bridging"), "{line}");
    let ip1 = t.ip1.clone();
    let ip2 = t.ip2.clone();
    assert_ping_ok(&t.ns1, &ip2, 10, 56);
    assert_ping_ok(&t.extra_ns[i3], &ip1, 10, 56);
    assert_ping_ok(&t.ns2, &ip3, 10, 56);
    // Now that every station is learned, host 1 <-> host 2 traffic must not
    // be flooded to host 3's port.
    let s0 = Stats::parse(&t.fwd().wait_stdout_after_usr1());
    tcp_transfer(&t, 5208, 1, 8 << 20);
    let s = t.stop();
    let b3 = t.extra[0].b.clone();
    let leaked = s.get(&b3, "all", "tx_packets") - s0.get(&b3, "all", "tx_packets");
    let carried = s.get(&t.v2.b, "all", "tx_bytes") - s0.get(&t.v2.b, "all", "tx_bytes");
    assert!(
        carried >= 8 << 20,
        "the 8 MiB went to host 2's port:\n{}",
        s.text
    );
    assert!(
        leaked < 10,
        "{leaked} frames of a learned unicast flow were flooded to the third port:\n{}",
        s.text
    );
}

impl Fwd {
    /// Asks for a stats dump (SIGUSR1) and returns stdout up to it.
    fn wait_stdout_after_usr1(&mut self) -> String {
        let n = self
            .stdout_seen
            .iter()
            .filter(|l| l.contains("stats reason=signal"))
            .count();
        kill(self.pid(), Signal::SIGUSR1).expect("SIGUSR1");
        let deadline = Instant::now() + Duration::from_secs(5);
        while self
            .stdout_seen
            .iter()
            .filter(|l| l.contains("stats reason=signal"))
            .count()
            <= n
        {
            let left = deadline.saturating_duration_since(Instant::now());
            let l = self
                .stdout_rx
                .recv_timeout(left)
                .expect("stats after SIGUSR1");
            self.stdout_seen.push(l);
        }
        while let Ok(l) = self.stdout_rx.recv_timeout(Duration::from_millis(200)) {
            self.stdout_seen.push(l);
        }
        self.stdout_seen.join("\n")
    }
}

/// Resident set size of a process, in KiB.
fn rss_kib(pid: Pid) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// File offset of a `.dynsym` symbol, as a uprobe wants it.
fn symbol_file_offset(exe: &std::path::Path, sym: &str) -> u64 {
    let exe_s = exe.to_string_lossy();
    let syms = tests::run("readelf", &["-W", "--dyn-syms", &exe_s]);
    let syms = String::from_utf8_lossy(&syms.stdout);
    let vaddr = syms
        .lines()
        .find(|l| l.split_whitespace().last() == Some(sym))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or_else(|| panic!("{sym} is not in the .dynsym of {exe_s}:\n{syms}"));
    let segs = tests::run("readelf", &["-lW", &exe_s]);
    let segs = String::from_utf8_lossy(&segs.stdout);
    for l in segs.lines().filter(|l| l.trim_start().starts_with("LOAD")) {
        let f: Vec<u64> = l
            .split_whitespace()
            .skip(1)
            .take(4)
            .filter_map(|x| u64::from_str_radix(x.trim_start_matches("0x"), 16).ok())
            .collect();
        if let [off, va, _pa, filesz] = f[..]
            && vaddr >= va
            && vaddr < va + filesz
        {
            return vaddr - va + off;
        }
    }
    panic!("{sym} at {vaddr:#x} is in no LOAD segment of {exe_s}:\n{segs}");
}

/// Uprobe events in their own tracefs instance, removed on drop.
struct Uprobes {
    root: std::path::PathBuf,
    group: String,
    instance: std::path::PathBuf,
    events: Vec<String>,
}

impl Uprobes {
    fn new(defs: &[(&str, String)]) -> Option<Uprobes> {
        let root = std::path::PathBuf::from("/sys/kernel/tracing");
        if !root.join("uprobe_events").exists() {
            return None;
        }
        let group = format!("skbfwd{}", std::process::id());
        let instance = root.join("instances").join(&group);
        let mut u = Uprobes {
            root,
            group,
            instance,
            events: Vec::new(),
        };
        for (name, def) in defs {
            u.write(
                "uprobe_events",
                &format!("p:{}/{name} {def}\n", u.group),
                true,
            );
            u.events.push(name.to_string());
        }
        std::fs::create_dir(&u.instance)
            .unwrap_or_else(|e| panic!("mkdir {}: {e}", u.instance.display()));
        for name in &u.events {
            let p = u
                .instance
                .join("events")
                .join(&u.group)
                .join(name)
                .join("enable");
            std::fs::write(&p, "1").unwrap_or_else(|e| panic!("enable {}: {e}", p.display()));
        }
        Some(u)
    }

    fn write(&self, file: &str, what: &str, append: bool) {
        let p = self.root.join(file);
        let mut f = std::fs::OpenOptions::new()
            .append(append)
            .write(true)
            .open(&p)
            .unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
        f.write_all(what.as_bytes())
            .unwrap_or_else(|e| panic!("write {what:?} to {}: {e}", p.display()));
    }

    fn trace(&self) -> String {
        std::fs::read_to_string(self.instance.join("trace")).unwrap_or_default()
    }
}

impl Drop for Uprobes {
    fn drop(&mut self) {
        for name in &self.events {
            let p = self
                .instance
                .join("events")
                .join(&self.group)
                .join(name)
                .join("enable");
            let _ = std::fs::write(p, "0");
        }
        let _ = std::fs::remove_dir(&self.instance);
        for name in &self.events {
            let p = self.root.join("uprobe_events");
            if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(p) {
                let _ = f.write_all(format!("-:{}/{name}\n", self.group).as_bytes());
            }
        }
    }
}

#[test]
fn fwd_uprobe_hooks_see_each_frame() {
    if !require_root("fwd_uprobe_hooks_see_each_frame") {
        return;
    }
    let exe = bin("skbtrace-fwd");
    let exe_s = exe.to_string_lossy().to_string();
    let rx = symbol_file_offset(&exe, "skbtrace_fwd_rx");
    let tx = symbol_file_offset(&exe, "skbtrace_fwd_tx");
    assert_ne!(rx, tx, "the two hooks must be distinct functions");
    // x86-64 SysV: frame in rdi, len in esi, ifindex in edx; +12(%di) is the EtherType.
    let args = "len=%si:u32 ifindex=%dx:u32 ethertype=+12(%di):u16";
    let Some(probes) = Uprobes::new(&[
        ("rx", format!("{exe_s}:{rx:#x} {args}")),
        ("tx", format!("{exe_s}:{tx:#x} {args}")),
    ]) else {
        eprintln!("SKIP fwd_uprobe_hooks_see_each_frame: no /sys/kernel/tracing/uprobe_events");
        return;
    };
    let mut t = Topo::new("77.9");
    t.start(&[]);
    let (b1, b2) = (t.v1.b.clone(), t.v2.b.clone());
    let (i1, i2) = (t.nsf.ifindex(&b1), t.nsf.ifindex(&b2));
    // 100-byte payload: 14 + 20 + 8 + 100 = 142-byte frames.
    assert_ping_ok(&t.ns1, &t.ip2.clone(), 5, 100);
    // The probes fire in every process running this binary (other tests run
    // in parallel): keep only this forwarder's threads.
    let pid = t.fwd().pid();
    let tids: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("list forwarder threads")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
        .collect();
    let s = t.stop();
    let trace: String = probes
        .trace()
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .and_then(|task| task.rsplit_once('-'))
                .is_some_and(|(_, tid)| tids.iter().any(|t| t == tid))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let hits = |ev: &str, ifindex: u32| {
        trace
            .lines()
            .filter(|l| l.contains(&format!(" {ev}: ")))
            .filter(|l| l.contains("len=142 "))
            .filter(|l| l.contains(&format!("ifindex={ifindex} ")))
            // IPv4 (0x0800 read as a little-endian u16): the probe read the
            // frame's own bytes.
            .filter(|l| l.trim_end().ends_with("ethertype=8"))
            .count()
    };
    // Echo requests come in on b1 and leave on b2; replies the other way.
    assert_eq!(hits("rx", i1), 5, "rx hook on {b1}; trace:\n{trace}");
    assert_eq!(hits("tx", i2), 5, "tx hook on {b2}; trace:\n{trace}");
    assert_eq!(hits("rx", i2), 5, "rx hook on {b2}; trace:\n{trace}");
    assert_eq!(hits("tx", i1), 5, "tx hook on {b1}; trace:\n{trace}");
    // One hook call per frame, no more.
    let all_rx = trace.lines().filter(|l| l.contains(" rx: ")).count() as u64;
    let rx_frames = s.get(&b1, "all", "rx_packets") + s.get(&b2, "all", "rx_packets");
    assert_eq!(
        all_rx, rx_frames,
        "one rx hook call per frame read:\n{}\n{trace}",
        s.text
    );
}

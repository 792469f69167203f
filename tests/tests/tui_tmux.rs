//! Drives the real `skbtrace replay FILE --tui` in a detached tmux session
//! on a saved trace, the way a person would: reads the screen, moves the
//! selection, checks the waterfall follows, quits, and checks the terminal
//! was given back (normal screen, cooked mode). No root needed.
//!
//! Each test runs its own tmux server on a private socket (`tmux -L`), so
//! it never sees or touches anyone else's sessions, and kills only that
//! server when done, even on panic.
//!
//! `SKBTRACE_TUI_BIN` runs another program with the same arguments instead
//! of the built `skbtrace` (e.g. `target/debug/examples/replay` from the tui
//! crate, which takes `replay FILE --tui` too).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use timeline::model::{Hop, ProbeCount, Record, Summary, Timeline};

fn program() -> PathBuf {
    match std::env::var_os("SKBTRACE_TUI_BIN") {
        Some(p) => PathBuf::from(p),
        None => tests::skbtrace::bin("skbtrace"),
    }
}

/// A packet through the given (probe, dev, delta ns) hops.
fn packet(id: u64, hops: &[(&str, &str, u64)]) -> Timeline {
    let start = 5_000_000_000 + id * 1_000_000;
    let mut ts = start;
    let hops: Vec<Hop> = hops
        .iter()
        .enumerate()
        .map(|(i, (probe, dev, delta))| {
            ts += delta;
            Hop {
                probe: probe.to_string(),
                method: "tracepoint".into(),
                dev: dev.to_string(),
                ifindex: 3,
                netns: 4026532000 + i as u32,
                cpu: 1,
                pid: 0,
                comm: "swapper/1".into(),
                ts_ns: ts,
                delta_ns: *delta,
                len: 84,
                ..Hop::default()
            }
        })
        .collect();
    Timeline {
        id,
        summary: format!("ICMP 10.0.1.1 > 10.0.2.1 echo-request id 9 seq {id}"),
        fingerprint: format!("0x{:016x}", id * 0x1111),
        complete: true,
        lost_events: false,
        dropped: false,
        ended_unseen: false,
        start_ns: start,
        wall_start: format!("2025-03-01T10:00:0{id}.000000000Z"),
        total_ns: ts - start,
        hops,
    }
}

/// Three packets on different paths, so each waterfall is recognisable by
/// its probes: a veth path, a local IP delivery, and a dropped one.
fn write_trace(dir: &Path) -> PathBuf {
    let mut dropped = packet(
        3,
        &[
            ("net:net_dev_start_xmit", "veth0", 0),
            ("nf_hook_slow", "veth1", 800),
            ("skb:kfree_skb", "veth1", 300),
        ],
    );
    dropped.dropped = true;
    dropped.hops[2].drop_reason = Some("NETFILTER_DROP".into());
    let timelines = [
        packet(
            1,
            &[
                ("veth_xmit", "veth0", 0),
                ("net:netif_rx", "veth1", 1_200),
                ("br_handle_frame", "veth1", 45_000),
                ("br_forward", "br0", 900),
            ],
        ),
        packet(
            2,
            &[
                ("ip_rcv", "eth0", 0),
                ("ip_local_deliver", "eth0", 2_000),
                ("tcp_v4_rcv", "eth0", 700),
            ],
        ),
        dropped,
    ];
    let summary = Summary {
        packets: 3,
        complete: 3,
        dropped: 1,
        events: 10,
        probes: vec![ProbeCount {
            probe: "veth_xmit".into(),
            method: "tracepoint".into(),
            events: 1,
            lost: 0,
        }],
        ..Summary::default()
    };
    let mut text = String::new();
    for t in timelines {
        text += &serde_json::to_string(&Record::Timeline(t)).expect("json");
        text.push('\n');
    }
    text += &serde_json::to_string(&Record::Summary(summary)).expect("json");
    text.push('\n');
    let path = dir.join("trace.jsonl");
    std::fs::write(&path, text).expect("write trace");
    path
}

/// A tmux server of our own with one 120x40 session running `script`.
struct Tmux {
    socket: String,
    dir: PathBuf,
}

impl Tmux {
    fn start(tag: &str, script: &str) -> Tmux {
        let socket = format!("skbtrace-tui-{tag}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&socket);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let t = Tmux { socket, dir };
        let trace = write_trace(&t.dir);
        // After the TUI exits: its status, then the tty mode, then wait to
        // be read. The TUI runs in the foreground of the pane's terminal.
        let run = t.dir.join("run.sh");
        let body = script
            .replace("{bin}", &shell_quote(&program().display().to_string()))
            .replace("{trace}", &shell_quote(&trace.display().to_string()));
        std::fs::write(&run, body).expect("write script");
        let out = t
            .tmux(&[
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "tui",
                "-x",
                "120",
                "-y",
                "40",
            ])
            .arg(format!("sh {}", shell_quote(&run.display().to_string())))
            .current_dir(&t.dir)
            .env("TERM", "xterm-256color")
            .output()
            .unwrap_or_else(|e| panic!("cannot run tmux (scripts/setup.sh installs it): {e}"));
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn tmux(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-L").arg(&self.socket).args(args);
        c
    }

    fn out(&self, args: &[&str]) -> String {
        let o = self
            .tmux(args)
            .output()
            .unwrap_or_else(|e| panic!("tmux {args:?}: {e}"));
        assert!(
            o.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.out(&["capture-pane", "-p", "-t", "tui"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "tui"];
        args.extend_from_slice(keys);
        self.out(&args);
    }

    /// Waits (up to 15 s) for the screen to satisfy `ok` and stay the same
    /// over a second capture (a capture can catch a frame half written:
    /// the title of the waterfall drawn, its hops not yet); panics with the
    /// screen otherwise.
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.screen();
            if ok(&s) {
                std::thread::sleep(Duration::from_millis(100));
                if self.screen() == s {
                    return s;
                }
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn alternate_screen_on(&self) -> bool {
        self.out(&["display-message", "-p", "-t", "tui", "#{alternate_on}"])
            .trim()
            == "1"
    }

    /// Pid of the program the pane's shell is running.
    fn tui_pid(&self) -> i32 {
        let shell: i32 = self
            .out(&["display-message", "-p", "-t", "tui", "#{pane_pid}"])
            .trim()
            .parse()
            .expect("pane pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                    continue;
                };
                // pid (comm) state ppid ...: comm may hold spaces, so split
                // after its closing parenthesis.
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<i32>().ok());
                if ppid == Some(shell) {
                    return pid;
                }
            }
            assert!(Instant::now() < deadline, "no child of the pane's shell");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Our private server only.
        let _ = self.tmux(&["kill-server"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs the TUI, then reports how it exited and the terminal's mode.
const SCRIPT: &str = "{bin} replay {trace} --tui\necho \"tui-exit=$?\"\nstty -a | tr ' ;' '\\n\\n' | grep -E -x -- '-?(icanon|echo)' | tr '\\n' ' '\necho\necho tui-report-done\nsleep 600\n";

/// The waterfall pane: the lines from its title to its bottom border.
fn waterfall(screen: &str) -> String {
    let lines: Vec<&str> = screen.lines().collect();
    let Some(start) = lines.iter().position(|l| l.contains("Waterfall #")) else {
        return String::new();
    };
    lines[start..]
        .iter()
        .skip(1)
        .take_while(|l| !l.starts_with('└'))
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_restored(t: &Tmux) {
    let s = t.wait_for("the TUI to exit", |s| s.contains("tui-report-done"));
    assert!(s.contains("tui-exit=0"), "the TUI failed:\n{s}");
    // Cooked mode again: canonical input and echo on.
    let modes = s
        .lines()
        .find(|l| l.contains("icanon"))
        .unwrap_or_else(|| panic!("no stty output:\n{s}"));
    let words: Vec<&str> = modes.split_whitespace().collect();
    assert!(
        words.contains(&"icanon") && words.contains(&"echo"),
        "terminal left in raw mode: {modes}"
    );
    // Back on the normal screen, where the TUI's frames never were.
    assert!(!t.alternate_screen_on(), "still on the alternate screen");
    assert!(
        !s.contains("Waterfall #"),
        "TUI frame left on the screen:\n{s}"
    );
}

#[test]
fn replay_tui_moves_through_packets_and_quits_cleanly() {
    let t = Tmux::start("keys", SCRIPT);
    let s = t.wait_for("the first packet's waterfall", |s| {
        s.contains("Waterfall #1")
    });
    assert!(
        t.alternate_screen_on(),
        "the TUI should use the alternate screen"
    );

    // The list shows all three packets, the dropped one flagged.
    for seq in 1..=3 {
        assert!(
            s.contains(&format!("echo-request id 9 seq {seq}")),
            "packet {seq} missing:\n{s}"
        );
    }
    let row3 = s.lines().find(|l| l.contains("seq 3")).expect("row 3");
    assert!(row3.contains(" D "), "dropped flag missing: {row3}");
    assert!(s.contains("REPLAY"), "{s}");
    assert!(s.contains("Packets 3/3"), "{s}");

    // Packet 1: its hops with device@netns, the slow bridge hop marked.
    let wf = waterfall(&s);
    assert!(
        wf.contains("veth_xmit") && wf.contains("br_forward"),
        "{wf}"
    );
    assert!(wf.contains("veth1@4026532001"), "{wf}");
    let slow = wf
        .lines()
        .find(|l| l.contains("br_handle_frame"))
        .expect("slow hop");
    assert!(
        slow.starts_with("│* ") && slow.contains("+45.0µs"),
        "{slow}"
    );
    // Hop-pair percentiles over all packets.
    assert!(s.contains("net:netif_rx → br_handle_frame"), "{s}");

    // j: packet 2's hops replace packet 1's.
    t.keys(&["j"]);
    let s = t.wait_for("packet 2's waterfall", |s| s.contains("Waterfall #2"));
    let wf = waterfall(&s);
    assert!(
        wf.contains("ip_local_deliver") && wf.contains("tcp_v4_rcv"),
        "{wf}"
    );
    assert!(
        !wf.contains("veth_xmit"),
        "packet 1's hops still shown:\n{wf}"
    );

    // Down: the dropped packet, its reason in the title.
    t.keys(&["Down"]);
    let s = t.wait_for("packet 3's waterfall", |s| s.contains("Waterfall #3"));
    assert!(s.contains("DROPPED NETFILTER_DROP"), "{s}");
    assert!(waterfall(&s).contains("skb:kfree_skb"), "{s}");

    // k and Up go back.
    t.keys(&["k"]);
    t.wait_for("packet 2 again", |s| s.contains("Waterfall #2"));
    t.keys(&["Up"]);
    t.wait_for("packet 1 again", |s| s.contains("Waterfall #1"));

    // A smaller terminal: redrawn to the new width at once.
    t.out(&["resize-window", "-t", "tui", "-x", "80", "-y", "24"]);
    let s = t.wait_for("a redraw at 80 columns", |s| {
        s.lines()
            .next()
            .is_some_and(|l| l.ends_with('┐') && l.chars().count() == 80)
    });
    assert!(s.contains("Waterfall #1"), "{s}");

    t.keys(&["q"]);
    assert_restored(&t);
}

fn restores_on_signal(tag: &str, sig: nix::sys::signal::Signal) {
    let t = Tmux::start(tag, SCRIPT);
    t.wait_for("the TUI", |s| s.contains("Waterfall #1"));
    let pid = t.tui_pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
        .unwrap_or_else(|e| panic!("kill -{sig} the TUI: {e}"));
    assert_restored(&t);
}

#[test]
fn replay_tui_restores_the_terminal_on_sigterm() {
    restores_on_signal("term", nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn replay_tui_restores_the_terminal_on_sigint() {
    restores_on_signal("int", nix::sys::signal::Signal::SIGINT);
}

/// Closing the terminal (here: its tmux server killed, as when a window
/// closes or an ssh session drops) ends the TUI instead of leaving it
/// spinning on a terminal that is gone.
#[test]
fn replay_tui_exits_when_its_terminal_goes_away() {
    let t = Tmux::start("hangup", SCRIPT);
    t.wait_for("the TUI", |s| s.contains("Waterfall #1"));
    let pid = t.tui_pid();
    let _ = t.tmux(&["kill-server"]).output();
    let proc_dir = format!("/proc/{pid}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&proc_dir).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = Path::new(&proc_dir).exists();
    if left {
        // Ours, and spinning: do not leave it behind.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(
        !left,
        "the TUI (pid {pid}) still ran 5 s after its terminal went away"
    );
}

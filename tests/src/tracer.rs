//! Driving the real `skbtrace` binary from tests: start it, wait until its
//! probes are attached, generate traffic, stop it with a signal, read what
//! it printed. The child is killed on drop, so a failing test leaves
//! nothing attached.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub struct Running {
    child: Option<Child>,
    stderr_lines: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
    stdout: Option<std::thread::JoinHandle<String>>,
}

pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Starts `skbtrace ARGS` and waits until its stderr contains `ready`
/// (e.g. "following packets"), panicking with everything it printed if it
/// exits or does not get there within `timeout`.
pub fn start(args: &[&str], ready: &str, timeout: Duration) -> Running {
    start_env(args, &[], ready, timeout)
}

/// [`start`] with extra environment variables (e.g. `RUST_LOG`).
pub fn start_env(args: &[&str], env: &[(&str, &str)], ready: &str, timeout: Duration) -> Running {
    let bin = crate::skbtrace::bin("skbtrace");
    let mut child = Command::new(&bin)
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut out = child.stdout.take().expect("piped stdout");
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let mut r = Running {
        child: Some(child),
        stderr_lines: rx,
        stderr_seen: vec![],
        stdout: Some(stdout),
    };
    let deadline = Instant::now() + timeout;
    loop {
        match r.stderr_lines.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                let hit = line.contains(ready);
                r.stderr_seen.push(line);
                if hit {
                    return r;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let f = r.stop(Signal::SIGKILL);
                panic!(
                    "skbtrace {args:?} exited before `{ready}`: {}\nstderr:\n{}",
                    f.status, f.stderr
                );
            }
        }
        if Instant::now() > deadline {
            let f = r.stop(Signal::SIGKILL);
            panic!(
                "skbtrace {args:?} not ready after {timeout:?}\nstderr:\n{}",
                f.stderr
            );
        }
    }
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Sends `sig` and waits for the process (up to 60 s, then SIGKILL).
    pub fn stop(&mut self, sig: Signal) -> Finished {
        let mut child = self.child.take().expect("already stopped");
        let _ = kill(Pid::from_raw(child.id() as i32), sig);
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Ok(Some(s)) = child.try_wait() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break child.wait().expect("wait after kill");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.finish(status)
    }

    /// Waits for the process to exit by itself (up to `timeout`).
    pub fn wait(&mut self, timeout: Duration) -> Finished {
        let mut child = self.child.take().expect("already stopped");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(s)) = child.try_wait() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let s = child.wait().expect("wait after kill");
                panic!("skbtrace did not exit within {timeout:?} ({s})");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.finish(status)
    }

    fn finish(&mut self, status: ExitStatus) -> Finished {
        let stdout = self
            .stdout
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let mut lines = std::mem::take(&mut self.stderr_seen);
        // The reader thread ends when the pipe closes.
        while let Ok(l) = self.stderr_lines.recv_timeout(Duration::from_secs(5)) {
            lines.push(l);
        }
        Finished {
            status,
            stdout,
            stderr: lines.join("\n"),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `skbtrace ARGS` to completion.
pub fn run(args: &[&str]) -> Finished {
    let bin = crate::skbtrace::bin("skbtrace");
    let o = Command::new(&bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    Finished {
        status: o.status,
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// IDs of loaded BPF programs whose names are skbtrace's (`bpftool prog show`).
pub fn skbtrace_prog_ids() -> Vec<u64> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "--json"])
        .output()
        .unwrap_or_else(|e| panic!("bpftool is needed (scripts/setup.sh installs it): {e}"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bpftool output is not JSON: {e}"));
    v.as_array()
        .map(|a| {
            a.iter()
                .filter(|p| {
                    let n = p["name"].as_str().unwrap_or("");
                    ["fe_", "kp_", "tb_", "rt_"]
                        .iter()
                        .any(|pre| n.starts_with(pre))
                })
                .filter_map(|p| p["id"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

/// Parses JSON Lines output.
pub fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

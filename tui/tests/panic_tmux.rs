//! A panic while the TUI owns the terminal gives the terminal back and
//! stops the TUI, with the panic message readable on the normal screen.
//!
//! The test runs itself again inside a private tmux server (`tmux -L`): the
//! child (TUI_PANIC_CHILD set) runs `tui::run` while its "source" thread
//! panics; the parent reads the pane afterwards. No root needed.

use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use timeline::model::{Hop, Timeline};

const CHILD: &str = "TUI_PANIC_CHILD";

fn child() {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let t = Timeline {
            id: 1,
            summary: "TCP 10.0.0.1:80 > 10.0.0.2:5555 [S.]".into(),
            hops: vec![
                Hop {
                    probe: "tcp_v4_rcv".into(),
                    ..Hop::default()
                },
                Hop {
                    probe: "tcp_queue_rcv".into(),
                    ts_ns: 100,
                    delta_ns: 100,
                    ..Hop::default()
                },
            ],
            total_ns: 100,
            complete: true,
            ..Timeline::default()
        };
        let _ = tx.send(tui::Input::Timeline(t));
        std::thread::sleep(Duration::from_millis(1500));
        panic!("boom in the source thread");
    });
    let r = tui::run(rx, tui::Options::default());
    match r {
        Ok(()) => println!("run returned ok"),
        Err(e) => println!("run returned error: {e:#}"),
    }
}

struct Server(String);

impl Drop for Server {
    fn drop(&mut self) {
        // Our private server only.
        let _ = Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .output();
    }
}

fn tmux(sock: &str, args: &[&str]) -> String {
    let o = Command::new("tmux")
        .arg("-L")
        .arg(sock)
        .args(args)
        // CI may have no TERM; the pane needs one for the TUI.
        .env("TERM", "xterm-256color")
        .output()
        .unwrap_or_else(|e| panic!("cannot run tmux (scripts/setup.sh installs it): {e}"));
    assert!(
        o.status.success(),
        "tmux {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn wait_for(sock: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = tmux(sock, &["capture-pane", "-p", "-t", "t"]);
        if ok(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; screen:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_panic_restores_the_terminal_and_stops_the_tui() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let exe = std::env::current_exe().expect("test executable");
    let sock = format!("skbtrace-tui-panic-{}", std::process::id());
    let server = Server(sock.clone());
    let dir = std::env::temp_dir().join(&sock);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let script: PathBuf = dir.join("run.sh");
    std::fs::write(
        &script,
        format!(
            "{CHILD}=1 '{}' --exact a_panic_restores_the_terminal_and_stops_the_tui --nocapture --test-threads=1\n\
             stty -a | tr ' ;' '\\n\\n' | grep -E -x -- '-?(icanon|echo)' | tr '\\n' ' '\n\
             echo\necho child-done\nsleep 600\n",
            exe.display()
        ),
    )
    .expect("script");
    // The TUI draws on stdout, the panic message goes to stderr: both the
    // pane.
    tmux(
        &sock,
        &[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "100",
            "-y",
            "30",
            &format!("sh '{}'", script.display()),
        ],
    );
    wait_for(&sock, "the TUI", |s| s.contains("Waterfall #1"));
    let s = wait_for(&sock, "the child to finish", |s| s.contains("child-done"));
    assert!(
        s.contains("boom in the source thread"),
        "panic message not visible:\n{s}"
    );
    // The TUI noticed and returned an error instead of drawing on.
    assert!(
        s.contains("run returned error: stopped: a thread panicked"),
        "{s}"
    );
    let modes = s
        .lines()
        .find(|l| l.contains("icanon"))
        .expect("stty output");
    let words: Vec<&str> = modes.split_whitespace().collect();
    assert!(
        words.contains(&"icanon") && words.contains(&"echo"),
        "raw mode left on: {modes}"
    );
    assert_eq!(
        tmux(
            &sock,
            &["display-message", "-p", "-t", "t", "#{alternate_on}"]
        )
        .trim(),
        "0"
    );
    assert!(
        !s.contains("Waterfall #1"),
        "TUI frame left on screen:\n{s}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

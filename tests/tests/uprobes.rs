//! `skbtrace follow` with userspace probes: bad input and faults (host
//! only; the joined timelines through skbtrace-fwd and OVS are in
//! kernel.rs, which runs on both kernels).

use std::time::Duration;

use nix::sys::signal::Signal;
use tests::tracer::{json_lines, run, start};
use tests::userdp::{DpTopo, FwdProc, wait_reachable};
use tests::{require_root, skbtrace};

/// `skbtrace follow --dev lo ARGS`: input is checked before anything is
/// attached, so these need no root.
fn follow_err(args: &[&str]) -> String {
    let mut all = vec!["follow", "--dev", "lo", "--duration", "1s"];
    all.extend_from_slice(args);
    let f = run(&all);
    assert_eq!(
        f.status.code(),
        Some(1),
        "skbtrace {all:?} should fail with exit code 1:\n{}{}",
        f.stdout,
        f.stderr
    );
    assert!(
        f.stderr.starts_with("skbtrace: error: "),
        "one clear error line: {}",
        f.stderr
    );
    f.stderr
}

#[test]
fn a_missing_binary_is_named_with_what_to_give_instead() {
    let e = follow_err(&["--uprobe", "/nonexistent/vswitchd:netdev_send"]);
    assert!(
        e.contains("/nonexistent/vswitchd does not exist") && e.contains("path of a binary"),
        "{e}"
    );
    // A library name needs a process to look it up in.
    let e = follow_err(&["--uprobe", "libc:sendmmsg"]);
    assert!(e.contains("not a path") && e.contains("--pid"), "{e}");
    let e = follow_err(&["--uprobe", "no-colon-here"]);
    assert!(e.contains("PATH:SYMBOL"), "{e}");
}

#[test]
fn a_symbol_that_is_not_there_lists_the_closest_ones() {
    let fwd = skbtrace::bin("skbtrace-fwd");
    let spec = format!("{}:skbtrace_fwd_rxx", fwd.display());
    let e = follow_err(&["--uprobe", &spec]);
    assert!(e.contains("no function matching `skbtrace_fwd_rxx`"), "{e}");
    assert!(e.contains("closest: skbtrace_fwd_rx"), "{e}");
    // A glob that matches nothing says the same.
    let spec = format!("{}:skbtrace_fwd_zz*", fwd.display());
    let e = follow_err(&["--uprobe", &spec]);
    assert!(e.contains("closest: skbtrace_fwd_"), "{e}");
}

#[test]
fn no_such_pid_is_an_error_up_front() {
    let e = follow_err(&["--uprobe", "libc:sendmmsg", "--pid", "999999999"]);
    assert!(e.contains("--pid 999999999: no such process"), "{e}");
    let e = follow_err(&["--ovs", "--pid", "999999999"]);
    assert!(e.contains("no such process"), "{e}");
}

#[test]
fn a_library_the_process_does_not_map_lists_what_it_does_map() {
    // Our own test process maps libc but no libnosuch.
    let me = std::process::id().to_string();
    let e = follow_err(&["--uprobe", "libnosuch:f", "--pid", &me]);
    assert!(
        e.contains("has no library libnosuch mapped") && e.contains("closest"),
        "{e}"
    );
}

/// The traced forwarder exits in the middle of a trace: skbtrace says so
/// once and goes on following packets through the kernel.
#[test]
fn the_traced_process_exiting_mid_trace_is_reported_and_the_trace_goes_on() {
    if !require_root("the_traced_process_exiting_mid_trace_is_reported_and_the_trace_goes_on") {
        return;
    }
    let topo = DpTopo::new("94.1");
    let mut fwd = FwdProc::start(&topo);
    wait_reachable(&topo, Duration::from_secs(30));
    let pid = fwd.pid();
    let mut t = start(
        &[
            "follow",
            "--json",
            "-",
            "--timeout",
            "1s",
            "--dev",
            &topo.v1.a,
            "--netns",
            &topo.ns1.name,
            "--fwd",
            "--pid",
            &pid.to_string(),
        ],
        "following packets",
        Duration::from_secs(60),
    );
    topo.ping(1);
    fwd.stop();
    // A ping that now goes nowhere: its kernel hops in ns1 are still traced.
    let _ = topo.ns1.run(
        "sh",
        &["-c", &format!("ping -c 1 -W 1 {} || true", topo.ip2)],
    );
    std::thread::sleep(Duration::from_millis(2500));
    let f = t.stop(Signal::SIGINT);
    assert!(f.status.success(), "{}\n{}", f.status, f.stderr);
    let said = format!("traced process {pid} (skbtrace-fwd) exited");
    assert!(f.stderr.contains(&said), "no exit notice:\n{}", f.stderr);
    assert!(f.stderr.contains("the trace goes on"), "{}", f.stderr);
    let recs = json_lines(&f.stdout);
    let requests: Vec<_> = recs
        .iter()
        .filter(|r| r["type"] == "timeline")
        .filter(|r| r["summary"].as_str().unwrap_or("").contains("echo-request"))
        .collect();
    let with_user = |r: &&serde_json::Value| {
        r["hops"]
            .as_array()
            .is_some_and(|h| h.iter().any(|h| h["method"] == "uprobe"))
    };
    assert!(
        requests.iter().any(with_user),
        "the ping before the exit went through the forwarder's uprobes: {recs:#?}"
    );
    assert!(
        requests.iter().any(|r| !with_user(r)),
        "the ping after the exit is still traced (kernel hops only): {recs:#?}"
    );
    assert!(
        recs.iter().any(|r| r["type"] == "summary"),
        "the trace ended normally with its summary"
    );
}

//! Backend of scripts/vm-run.sh: runs SKBTRACE_VM_SCRIPT in the Debian 6.1
//! guest and writes its stdout, stderr, console and status to the files
//! named by SKBTRACE_VM_RESULT_DIR (the wrapper prints them and exits with
//! the status). `--boot-times N` measures N boots instead.

use std::time::Duration;

use tests::vm::run_in_guest;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--boot-times") {
        let n: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(3);
        for i in 0..n {
            let out = run_in_guest("cut -d' ' -f1 /proc/uptime", &[], Duration::from_secs(120));
            println!(
                "boot {i}: boot_and_run {:.2}s, guest uptime at script {}",
                out.boot_and_run.as_secs_f64(),
                out.stdout.trim()
            );
        }
        return;
    }
    let (Some(script), Some(dir)) = (
        std::env::var_os("SKBTRACE_VM_SCRIPT"),
        std::env::var_os("SKBTRACE_VM_RESULT_DIR"),
    ) else {
        eprintln!("vm_run is driven by scripts/vm-run.sh (or: vm_run --boot-times N)");
        std::process::exit(2);
    };
    let timeout = std::env::var("SKBTRACE_VM_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let out = run_in_guest(&script.to_string_lossy(), &[], Duration::from_secs(timeout));
    let dir = std::path::PathBuf::from(dir);
    let write = |name: &str, text: &str| {
        if let Err(e) = std::fs::write(dir.join(name), text) {
            eprintln!("vm_run: cannot write {name}: {e}");
            std::process::exit(1);
        }
    };
    write("stdout", &out.stdout);
    write("stderr", &out.stderr);
    write("console", &out.console);
    write(
        "status",
        &format!("{} {:.2}\n", out.status, out.boot_and_run.as_secs_f64()),
    );
}

//! Builds the eBPF object (tracer-ebpf) for bpfel-unknown-none with
//! bpf-linker and leaves it in OUT_DIR for `include_bytes!`.
//!
//! Without the eBPF toolchain (bpf-linker, rust-src) it writes an empty stub
//! so `cargo check`/`clippy` still work; skbtrace then says at run time how
//! to build the real object. A toolchain that is present but fails to build
//! the programs is a hard error.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("workspace root").to_path_buf();
    for p in [
        "tracer-ebpf/src",
        "tracer-ebpf/Cargo.toml",
        "probes/src",
        "probes/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=SKBTRACE_EBPF_STUB");

    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let obj = out_dir.join("tracer-ebpf.o");

    if env::var_os("SKBTRACE_EBPF_STUB").is_some() {
        stub(&obj, "SKBTRACE_EBPF_STUB is set");
        return;
    }
    if let Some(missing) = missing_toolchain() {
        stub(&obj, &missing);
        // Cargo reruns a build script whose rerun-if-changed path does not
        // exist on every build: so once scripts/setup.sh has installed the
        // toolchain, a plain `cargo build` builds the programs (without
        // this the stub stayed until a source file changed).
        println!(
            "cargo:rerun-if-changed={}",
            out_dir
                .join("until-the-ebpf-toolchain-is-installed")
                .display()
        );
        return;
    }

    // One eBPF target dir shared by every host profile (check, debug,
    // release, clippy), so the programs are built once: <target>/bpf.
    let target_root = out_dir
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.join("bpf-target"));
    let target_dir = target_root.join("bpf");

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--package",
            "tracer-ebpf",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--target-dir",
        ])
        .arg(&target_dir)
        // build-std is unstable; this is how aya-build uses it on stable.
        .env("RUSTC_BOOTSTRAP", "1")
        // --disable-expand-memcpy-in-order: bpf-linker otherwise has LLVM
        // turn every zeroed buffer into a call to a byte-loop `memset`
        // subprogram, and kernels before 6.3 stop tracking precision across
        // such calls, which wrecks their state pruning.
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "--cfg=bpf_target_arch=\"x86_64\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf\x1f-Clink-arg=--disable-expand-memcpy-in-order",
        );
    // The outer build's compiler wrappers (clippy-driver, sccache) and flags
    // must not leak into the BPF build.
    for var in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("spawn cargo for tracer-ebpf");
    if !status.success() {
        panic!("building the eBPF programs (tracer-ebpf) failed: see the errors above");
    }
    let built = target_dir.join("bpfel-unknown-none/release/tracer-ebpf");
    std::fs::copy(&built, &obj)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", built.display(), obj.display()));
}

fn missing_toolchain() -> Option<String> {
    let linker = Command::new("bpf-linker").arg("--version").output();
    if !matches!(linker, Ok(ref o) if o.status.success()) {
        return Some("bpf-linker not found on PATH".into());
    }
    let sysroot = Command::new(env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())?;
    let src = Path::new(&sysroot).join("lib/rustlib/src/rust/library/core");
    if !src.exists() {
        return Some("rust-src is not installed (rustup component add rust-src)".into());
    }
    None
}

fn stub(obj: &Path, why: &str) {
    println!(
        "cargo:warning=skbtrace is built WITHOUT its eBPF programs ({why}); run scripts/setup.sh, then rebuild"
    );
    std::fs::write(obj, b"").expect("write stub eBPF object");
}

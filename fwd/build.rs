//! Puts the tracing hooks into .dynsym so a uprobe finds them even in a
//! stripped binary.
fn main() {
    for sym in ["skbtrace_fwd_rx", "skbtrace_fwd_tx"] {
        println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic-symbol={sym}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}

//! Running the built binaries from tests.

use std::path::PathBuf;

/// Path of a workspace binary (`skbtrace`, `skbtrace-fwd`), built by cargo
/// before the tests run (the test script builds them first).
pub fn bin(name: &str) -> PathBuf {
    // tests/ is one level below the workspace root.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let profile = std::env::var("SKBTRACE_PROFILE").unwrap_or_else(|_| "debug".into());
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let p = target.join(profile).join(name);
    assert!(
        p.exists(),
        "{} not found: build it first (cargo build --workspace --bins)",
        p.display()
    );
    p
}

//! Finding the built binaries from tests.

use std::path::PathBuf;

/// Path of a workspace binary (`skbtrace`, `skbtrace-fwd`) built by the same
/// cargo invocation and profile as the running test: the test executable
/// lives in `<target>/<profile>/deps/`, the binaries in `<target>/<profile>/`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()));
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not found: build the binaries first (cargo build --bins, same profile as the tests)",
        p.display()
    );
    p
}

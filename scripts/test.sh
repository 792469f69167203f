#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
# Installs what is missing first (scripts/setup.sh, idempotent), then:
# format, lints, release build, and every test: unit tests, root
# integration tests on this kernel, and the kernel matrix under qemu.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (host crates; the eBPF crate is checked by its own build)"
cargo clippy --all-targets --release -- -D warnings

step "build (release: the eBPF programs, skbtrace, skbtrace-fwd)"
cargo build --bins --release

step "tests"
# Root integration tests must not skip on a CI machine: they fail instead.
export SKBTRACE_REQUIRE_ROOT=1
cargo nextest run --release --no-fail-fast

#!/usr/bin/env bash
# Runs a bash script inside Debian's 6.1 kernel under qemu, through the same
# harness as the tests (tests/src/vm.rs), and exits with the script's status.
#
#   scripts/vm-run.sh 'bpftool prog show; uname -r'
#   scripts/vm-run.sh -f checks.sh
#
# The host's / is the guest's root (read-only), so host-built binaries run
# at their usual paths; /tmp and /run are writable tmpfs in the guest.
# Env: SKBTRACE_VM_TIMEOUT (s, default 600), SKBTRACE_VM_CONSOLE=1 prints
# the kernel console to stderr, SKBTRACE_VM_KEEP=1 keeps the job dir,
# SKBTRACE_VM_CPUS / SKBTRACE_VM_MEMORY size the guest.
set -euo pipefail

if [ "${1:-}" = "-f" ]; then
    [ -n "${2:-}" ] || { echo "usage: $0 -f FILE | $0 'SCRIPT'" >&2; exit 2; }
    script=$(cat -- "$2")
elif [ -n "${1:-}" ]; then
    script=$1
else
    echo "usage: $0 -f FILE | $0 'SCRIPT'" >&2
    exit 2
fi

repo=$(cd "$(dirname "$0")/.." && pwd)
result=$(mktemp -d)
trap 'rm -rf "$result"' EXIT

# Build quietly; show the log only if the build or the harness fails.
log=$result/cargo.log
if ! (cd "$repo" && SKBTRACE_VM_SCRIPT=$script SKBTRACE_VM_RESULT_DIR=$result \
    cargo run -q -p tests --example vm_run >"$log" 2>&1); then
    cat "$log" >&2
    exit 125
fi

cat "$result/stdout"
cat "$result/stderr" >&2
if [ -n "${SKBTRACE_VM_CONSOLE:-}" ]; then
    echo "--- guest console ---" >&2
    cat "$result/console" >&2
fi
read -r status secs < "$result/status"
echo "vm-run: status $status after ${secs}s (boot and run)" >&2
exit "$status"

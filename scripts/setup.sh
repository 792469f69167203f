#!/usr/bin/env bash
# Installs everything skbtrace needs to build and test on a Debian 12 machine.
# Idempotent: every step checks first, so a second run takes seconds.
set -euo pipefail

log() { printf '[setup] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

APT_PACKAGES=(
    llvm-22-dev libzstd-dev libpolly-22-dev zlib1g-dev
    iproute2 iputils-ping nftables iptables bpftool
    tshark iperf3 tmux
    openvswitch-switch
    qemu-system-x86 linux-image-amd64 busybox-static
    python3-pip xz-utils
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "apt: installing ${missing[*]}"
    $SUDO apt-get update -qq
    # tshark asks whether non-root users may capture; answer for it.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The package installs ovs services; the tests start their own ovsdb-server and
# ovs-vswitchd, so the distribution's copies must not hold the default sockets.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet openvswitch-switch 2>/dev/null; then
    $SUDO systemctl stop openvswitch-switch || true
fi

if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
    log "rustup: adding rust-src"
    rustup component add rust-src
fi

if ! command -v bpf-linker >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/bpf-linker" ]; then
    log "cargo: building bpf-linker against LLVM 22 (takes a few minutes)"
    PATH=/usr/lib/llvm-22/bin:$PATH cargo install --locked bpf-linker@0.13.0 \
        --no-default-features --features llvm-22
fi

if ! command -v vng >/dev/null 2>&1; then
    log "pip: installing virtme-ng"
    pip install --quiet virtme-ng || pip install --quiet --break-system-packages virtme-ng
fi

# tracefs is where the kernel exposes tracepoint ids and uprobe events.
if [ ! -e /sys/kernel/tracing/events ]; then
    $SUDO mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
fi

log "ok"

#!/usr/bin/env bash
# Install what building pagecam needs on Debian 12: libclang for the v4l
# crate's bindgen step. The Rust toolchain itself (cargo >= 1.82) must be on
# PATH already (rustup; Debian 12's own cargo is too old).
set -euo pipefail

need=()
command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
ldconfig -p 2>/dev/null | grep -q 'libclang' || need+=(libclang-14-dev)
command -v cc >/dev/null || need+=(gcc)
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

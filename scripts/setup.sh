#!/usr/bin/env bash
# Install what pagecam needs on Debian 12, judged by running what the build
# runs, not by looking for file names:
#
#   scripts/setup.sh          building: a C compiler that can link a program
#                             (rustc links through `cc`), libclang only if
#                             the build runs bindgen (cargo tree)
#   scripts/setup.sh --test   also what scripts/test.sh needs beyond building:
#                             systemd-analyze (tests/systemd.rs verifies the
#                             units), python3 with venv and ensurepip
#                             (scripts/test-python.sh),
#                             qemu and the guest tools (tests/vm/vm.sh), the
#                             ARM cross linkers and Rust targets
#                             (scripts/cross.sh), debootstrap
#                             (scripts/fresh-machine.sh), ffmpeg/ffprobe
#                             (export tests), btrfs-progs and util-linux
#                             (full-disk, frozen-disk and other-user tests)
#
# The Rust toolchain itself (cargo >= 1.88) must be on PATH already (rustup;
# Debian 12's own cargo is too old). Idempotent; prints nothing when nothing
# is missing. vm.sh and cross.sh still install what they miss when run by
# hand; this is the one place scripts/test.sh installs from.
set -euo pipefail
cd "$(dirname "$0")/.."
# mkfs.ext4, depmod, debootstrap live in sbin, which a normal user's PATH lacks.
PATH=$PATH:/usr/sbin:/sbin

say() { echo "setup: $*" >&2; }
test_deps=0
case ${1:-} in
"") ;;
--test) test_deps=1 ;;
*) say "usage: scripts/setup.sh [--test]"; exit 2 ;;
esac

# --- Rust --------------------------------------------------------------------
command -v cargo >/dev/null || { say "cargo not found: install Rust with rustup (https://rustup.rs)"; exit 1; }
min=1.88
have=$(cargo --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$min" "${have%%-*}" | sort -V | head -n 1)" != "$min" ]; then
    say "cargo $have is older than $min (rust-version in Cargo.toml): rustup update"
    exit 1
fi

# --- probes --------------------------------------------------------------------
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# cc_links: `cc` compiles and links a C program. rustc links every Linux
# binary through cc, so this is the real requirement (compiler, linker, crt
# files and libc.so from libc6-dev), not just a `cc` on PATH.
cc_links() {
    cc --version >/dev/null 2>&1 &&
        printf 'int main(void) { return 0; }\n' >"$tmp/t.c" &&
        cc "$tmp/t.c" -o "$tmp/t" >/dev/null 2>&1
}

# bindgen_needed: does the build run bindgen (which loads libclang)? The v4l
# crate's v4l2-sys-mit generates its bindings with it at build time. Asked
# of cargo, as the build resolves it: Cargo.lock also lists optional
# dependencies the default build never compiles (once the V4L2 bindings are
# checked in, the v4l crate is such a feature). Falls back to Cargo.lock
# when cargo cannot answer (offline, no index yet).
bindgen_needed() {
    local tree
    if tree=$(cargo tree -q --prefix none -f '{p}' 2>/dev/null); then
        grep -q '^bindgen ' <<<"$tree"
    else
        grep -q '^name = "bindgen"$' Cargo.lock
    fi
}

# libclang_loadable: a libclang that clang-sys (bindgen's loader) would find:
# libclang.so[.N] or libclang-N.so[.M]. libclang-cpp.so.N is a different
# library (clang's C++ API) and is not it: `ldconfig -p | grep libclang` was
# fooled by it.
libclang_loadable() {
    compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null ||
        ldconfig -p 2>/dev/null | grep -Eq '/libclang(-[0-9][0-9.]*)?\.so(\.[0-9]+)*$'
}

# --- what is missing -----------------------------------------------------------
need=()
cc_links || need+=(gcc libc6-dev)
if bindgen_needed && ! libclang_loadable; then need+=(libclang-14-dev); fi

installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
rust_targets=()
if [ "$test_deps" = 1 ]; then
    command -v systemd-analyze >/dev/null || need+=(systemd)
    # scripts/test-python.sh: Debian's python3 makes the venv (the venv
    # module and ensurepip are in python3-venv).
    /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3 python3-venv python3-pip)
    # tests/vm/vm.sh (x86_64 and arm64 guests); it checks these by command.
    command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
    command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm)
    command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
    command -v cpio >/dev/null || need+=(cpio)
    command -v xz >/dev/null || need+=(xz-utils)
    command -v zstd >/dev/null || need+=(zstd)
    command -v depmod >/dev/null || need+=(kmod)
    command -v setpriv >/dev/null || need+=(util-linux)
    command -v readelf >/dev/null || need+=(binutils)
    command -v v4l2-ctl >/dev/null || need+=(v4l-utils)
    # busybox-static conflicts with busybox; with busybox installed vm.sh
    # unpacks busybox-static into its cache instead.
    installed busybox-static || installed busybox || need+=(busybox-static)
    # scripts/cross.sh for the targets scripts/test.sh builds.
    installed gcc-aarch64-linux-gnu || need+=(gcc-aarch64-linux-gnu)
    installed gcc-arm-linux-gnueabihf || need+=(gcc-arm-linux-gnueabihf)
    # The library's tests on ARM under qemu's user-mode emulation.
    command -v qemu-arm >/dev/null || need+=(qemu-user)
    # scripts/fresh-machine.sh
    command -v debootstrap >/dev/null || need+=(debootstrap)
    # tests/export.rs checks exports with the real ffmpeg and ffprobe.
    command -v ffprobe >/dev/null || need+=(ffmpeg)
    # tests/hostile.rs, tests/handover.rs: loop filesystems (ext4, btrfs),
    # fsfreeze, prlimit, setpriv, lsattr.
    command -v mkfs.btrfs >/dev/null || need+=(btrfs-progs)
    for c in losetup fsfreeze prlimit; do
        command -v "$c" >/dev/null || { need+=(util-linux); break; }
    done
    command -v lsattr >/dev/null || need+=(e2fsprogs)
    have_targets=$(rustup target list --installed 2>/dev/null || true)
    for t in aarch64-unknown-linux-gnu aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf; do
        grep -qx "$t" <<<"$have_targets" || rust_targets+=("$t")
    done
fi

# --- install -------------------------------------------------------------------
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get -q -o DPkg::Lock::Timeout=600 update >/dev/null
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 \
        install --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ${#rust_targets[@]} -gt 0 ]; then
    say "rustup target add ${rust_targets[*]}"
    rustup target add "${rust_targets[@]}" >/dev/null
fi

# --- check what was installed ----------------------------------------------------
cc_links || { say "error: cc cannot compile and link a C program even after installing gcc"; exit 1; }
if bindgen_needed && ! libclang_loadable; then
    say "error: no loadable libclang (libclang.so) after installing libclang-14-dev"
    exit 1
fi
if [ "$test_deps" = 1 ]; then
    command -v systemd-analyze >/dev/null || { say "error: systemd-analyze missing"; exit 1; }
    /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null ||
        { say "error: /usr/bin/python3 cannot make a venv with pip"; exit 1; }
fi

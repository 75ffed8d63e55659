#!/usr/bin/env bash
# Cross builds of pagecam-capture and pagecam-analyzer for the ARM boards
# pagecam runs on (Raspberry Pi, Jetson, i.MX, Rockchip), from a Debian 12
# x86_64 machine:
#
#   scripts/cross.sh [TARGET...]
#
# TARGET (default: the first three):
#   aarch64-unknown-linux-gnu       64-bit ARM, glibc (Debian/Ubuntu/L4T arm64)
#   aarch64-unknown-linux-musl      64-bit ARM, static: runs on any arm64 Linux
#   armv7-unknown-linux-gnueabihf   32-bit ARM, glibc (Raspberry Pi OS armhf)
#   armv7-unknown-linux-musleabihf  32-bit ARM, static; needs rustup's rust-std
#                                   for it, which this machine's mirror lacks
#
# Installs what is missing: the target's Rust standard library (rustup target
# add) and, for gnu targets, Debian's cross gcc (gcc-aarch64-linux-gnu,
# gcc-arm-linux-gnueabihf: the linker, with the cross glibc to link
# against); musl targets need nothing more (rust-lld). No libclang: the V4L2
# bindings are checked in (shared/src/source/v4l2/abi/). Linkers are set in
# .cargo/config.toml (musl: rust-lld, see there why). Builds with
# `cargo build --release --bins --target TARGET` into
# ${CARGO_TARGET_DIR:-target}/TARGET/release/ and prints, per target, how
# long it took and what the binaries need at run time: "static", or the
# newest GLIBC_x.y symbol version they use (the oldest glibc they run on).
#
# Exit status: 0 if every target built, else 1 (after trying all of them).
set -euo pipefail
cd "$(dirname "$0")/.."

msg() { printf '[cross.sh] %s\n' "$*" >&2; }

# target -> Debian packages it needs (musl targets: none, rust-lld links them).
declare -A PKGS=(
    [aarch64-unknown-linux-gnu]="gcc-aarch64-linux-gnu"
    [aarch64-unknown-linux-musl]=""
    [armv7-unknown-linux-gnueabihf]="gcc-arm-linux-gnueabihf"
    [armv7-unknown-linux-musleabihf]=""
)

targets=("$@")
((${#targets[@]})) || targets=(aarch64-unknown-linux-gnu aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf)
for t in "${targets[@]}"; do
    [[ -v "PKGS[$t]" ]] || { msg "unknown target '$t' (known: ${!PKGS[*]})"; exit 2; }
done

# The host build's own needs (cc).
scripts/setup.sh

# --- what the targets need -------------------------------------------------
installed_targets=$(rustup target list --installed)
missing_targets=()
for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$installed_targets" || missing_targets+=("$t")
done
if ((${#missing_targets[@]})); then
    msg "rustup target add ${missing_targets[*]}"
    rustup target add "${missing_targets[@]}" >&2 || {
        msg "error: rustup could not add ${missing_targets[*]} (is rust-std for it downloadable from here?)"
        exit 1
    }
fi

need=()
for t in "${targets[@]}"; do
    for p in ${PKGS[$t]}; do
        [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] ||
            [[ " ${need[*]} " == *" $p "* ]] || need+=("$p")
    done
done
if ((${#need[@]})); then
    msg "installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get -q -o DPkg::Lock::Timeout=600 update >/dev/null
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 \
        install --no-install-recommends "${need[@]}" >/dev/null
fi

# --- build -----------------------------------------------------------------

# runtime_needs BIN: "static" or "glibc >= x.y" (newest GLIBC_ version it
# references; readelf reads any architecture's ELF, host objdump does not).
runtime_needs() {
    local info floor
    info=$(LC_ALL=C readelf -lW "$1")
    if ! grep -q 'Requesting program interpreter' <<<"$info"; then
        echo "static"
        return
    fi
    floor=$(LC_ALL=C readelf -VW "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sort -uV | tail -n 1)
    echo "dynamic, $(sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p' <<<"$info"), needs ${floor/GLIBC_/glibc >= }"
}

out_dir=${CARGO_TARGET_DIR:-target}
failed=() report=()
for t in "${targets[@]}"; do
    msg "cargo build --release --bins --target $t"
    start=$SECONDS
    if cargo build --release --bins --target "$t"; then
        secs=$((SECONDS - start))
        for b in pagecam-capture pagecam-analyzer; do
            report+=("$t: $out_dir/$t/release/$b: $(runtime_needs "$out_dir/$t/release/$b") (built in ${secs}s)")
        done
    else
        failed+=("$t")
        report+=("$t: FAILED after $((SECONDS - start))s")
    fi
done
printf '%s\n' "${report[@]}" | sed 's/^/[cross.sh] /' >&2
if ((${#failed[@]})); then
    msg "error: build failed for ${failed[*]}"
    exit 1
fi

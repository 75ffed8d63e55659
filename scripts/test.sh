#!/usr/bin/env bash
# Every check CI runs: formatting, lints, docs, unit and integration tests,
# the Python package's tests, the fuzz targets briefly, the vivid tests in
# qemu guests (x86_64 Linux 6.1 and 6.12, and arm64 Linux 6.1 with the
# static aarch64 and armv7 builds; power cuts; the systemd units with
# systemd as PID 1), the ARM cross builds and the library's tests under
# qemu user mode, and the fresh-machine check of the README's commands.
#
# Installs what it needs through scripts/setup.sh --test; tests/vm/vm.sh
# fetches the kernels (cached outside the repository in PAGECAM_VM_CACHE,
# default /var/cache/pagecam-vm, as is fresh-machine.sh's Debian root).
#
# Order, for a 2-core machine: every compile step runs alone (cargo uses
# both cores), then the host tests, which run the pipeline at real frame
# rates, then the qemu guests, each of which keeps cores busy (cargo runs
# two at a time; the arm64 one joins the x86_64 ones), then the fresh-machine
# check, which builds everything twice more from nothing.
#
#   PAGECAM_SKIP_VM=1     leave out the qemu guests (they say NOT RUN)
#   PAGECAM_SKIP_FRESH=1  leave out the fresh-machine check (needs root)
set -euo pipefail
cd "$(dirname "$0")/.."

timings=()
t_all=$SECONDS
step() { # step NAME COMMAND...: run it, note how long it took
    local name=$1 t0=$SECONDS
    shift
    echo "== $name" >&2
    "$@"
    timings+=("$(printf '%5ds  %s' $((SECONDS - t0)) "$name")")
}
report() {
    local rc=$?
    # Tables the tests measured (cargo hides a passing test's output).
    for f in "${CARGO_TARGET_DIR:-target}"/test-reports/*.txt; do
        [ -e "$f" ] && { echo "== $(basename "$f" .txt)"; cat "$f"; echo; } >&2
    done
    ((${#timings[@]})) && printf '%s\n' "== timings" "${timings[@]}" \
        "$(printf '%5ds  total' $((SECONDS - t_all)))" >&2
    ((rc == 0)) || echo "== FAILED (exit $rc)" >&2
    exit "$rc"
}
trap report EXIT

rm -rf "${CARGO_TARGET_DIR:-target}/test-reports"
step "setup (scripts/setup.sh --test)" scripts/setup.sh --test
if [ -z "${PAGECAM_SKIP_VM:-}" ]; then
    step "vm.sh prepare (x86_64 6.1, 6.12; arm64 6.1; the systemd root)" \
        bash -c 'tests/vm/vm.sh prepare 6.1 6.12 && tests/vm/vm.sh prepare --arch arm64 6.1 &&
                 tests/vm/vm.sh prepare --systemd 6.1 6.12'
fi
step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
step "cargo doc" env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --quiet
# The static aarch64 build runs in the arm64 guest, and so does the armv7
# one (the arm64 kernel runs 32-bit ARM programs), built static here for
# that (a guest has no armhf libc); the aarch64 gnu one proves the glibc
# build links (cross.sh prints the glibc it needs).
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUSTFLAGS="-C target-feature=+crt-static"
step "cross builds (aarch64 gnu, musl; armv7 gnueabihf static)" \
    scripts/cross.sh aarch64-unknown-linux-gnu aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf
target_dir=$(realpath -m "${CARGO_TARGET_DIR:-target}")
export PAGECAM_AARCH64_BIN_DIR=$target_dir/aarch64-unknown-linux-musl/release
export PAGECAM_ARMV7_BIN_DIR=$target_dir/armv7-unknown-linux-gnueabihf/release
# The library's tests on 32-bit ARM and aarch64, under qemu's user-mode
# emulation (.cargo/config.toml's runners): 64-bit offsets and a 5 GiB
# recording on a 32-bit target, 32-bit time_t, the analyzer's receive path.
step "library tests on armv7 and aarch64 (qemu user mode)" bash -c \
    'cargo test -q -p pagecam --lib --target armv7-unknown-linux-gnueabihf &&
     cargo test -q -p pagecam --lib --target aarch64-unknown-linux-musl'
step "build tests" cargo test --workspace --no-run --quiet
# Host tests first, then the qemu guests on their own: a TCG guest keeps
# both cores busy, and the host tests run the pipeline at real frame rates.
step "host tests" cargo test --workspace -- --skip vivid:: --skip powercut:: --skip arm64:: --skip service::
# The Python package as a user installs it (pip install ./python, in a venv
# from Debian's python3), its pytest suite against the real binaries.
step "python package (scripts/test-python.sh)" scripts/test-python.sh
# The fuzz targets from their seeds (each finding's reproducer among them),
# briefly: nightly and cargo-fuzz are installed by fuzz.sh if missing.
step "fuzz targets, 8 s each (scripts/fuzz.sh short)" env PAGECAM_FUZZ_SECONDS=8 scripts/fuzz.sh short
step "qemu guests (vivid, powercut, arm64, service)" cargo test --test tests -- vivid:: powercut:: arm64:: service::
if [ -n "${PAGECAM_SKIP_FRESH:-}" ]; then
    echo "NOT RUN: fresh-machine check (PAGECAM_SKIP_FRESH is set)" >&2
elif [ "$(id -u)" != 0 ]; then
    echo "fresh-machine check: needs root (debootstrap, mount, chroot); run as root or set PAGECAM_SKIP_FRESH=1" >&2
    exit 1
else
    # clang-format brings libclang-cpp.so.14 and no libclang: the machine
    # state that fooled setup.sh's old libclang check (pins that bug).
    step "fresh Debian 12 machine (scripts/fresh-machine.sh)" \
        scripts/fresh-machine.sh --with clang-format
fi

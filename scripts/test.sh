#!/usr/bin/env bash
# Every check CI runs: formatting, lints, docs, unit and integration tests,
# and the vivid tests in qemu guests (Linux 6.1 and 6.12), which
# tests/vm/vm.sh prepares (Debian packages, kernel downloads, cached outside
# the repository in PAGECAM_VM_CACHE, default /var/cache/pagecam-vm).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ -z "${PAGECAM_SKIP_VM:-}" ]; then
    tests/vm/vm.sh prepare 6.1 6.12
fi
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --quiet
# Host tests first, then the qemu guests on their own: a TCG guest keeps
# both cores busy, and the host tests run the pipeline at real frame rates.
cargo test --workspace -- --skip vivid:: --skip powercut::
cargo test --test tests -- vivid:: powercut::

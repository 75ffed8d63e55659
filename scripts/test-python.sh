#!/usr/bin/env bash
# The Python package's tests (python/README.md): a venv in
# target/python-venv, the pinned tools of python/requirements-test.txt,
# the package built and installed with `pip install ./python` (maturin as
# the build backend, as a user gets it), the real binaries built, pytest.
#
#   scripts/test-python.sh                 # everything
#   scripts/test-python.sh -k readonly     # arguments go to pytest
#
# Uses Debian's /usr/bin/python3 if present (what a fresh Debian 12 machine
# has), else python3 from PATH; installs python3-venv and python3-pip with
# apt-get when the venv module or ensurepip is missing (root, Debian).
# PAGECAM_CAPTURE / PAGECAM_ANALYZER point the tests at other binaries
# (default: target/debug/pagecam-{capture,analyzer}, built here).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

say() { printf '\n== %s\n' "$*"; }

py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3 || true)
if [ -z "$py" ] || ! "$py" -c 'import venv, ensurepip' 2>/dev/null; then
    say "installing python3-venv and python3-pip (apt-get)"
    if ! command -v apt-get >/dev/null; then
        echo "test-python.sh: no python3 with venv and ensurepip, and no apt-get to install them" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
    py=/usr/bin/python3
fi
echo "python: $py ($("$py" --version 2>&1))"

venv=$root/target/python-venv
# A venv made by another interpreter (or a half-made one) is made anew.
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.made-by" 2>/dev/null)" != "$py" ]; then
    say "venv $venv"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    echo "$py" >"$venv/.made-by"
fi
vpy=$venv/bin/python
# As if activated: maturin's build backend runs the `maturin` of PATH.
export PATH=$venv/bin:$PATH
say "pip install -r python/requirements-test.txt"
"$vpy" -m pip install -q --disable-pip-version-check -r python/requirements-test.txt

say "cargo build (pagecam-capture, pagecam-analyzer)"
cargo build --quiet --bin pagecam-capture --bin pagecam-analyzer
bins=${CARGO_TARGET_DIR:-$root/target}/debug
export PAGECAM_CAPTURE=${PAGECAM_CAPTURE:-$bins/pagecam-capture}
export PAGECAM_ANALYZER=${PAGECAM_ANALYZER:-$bins/pagecam-analyzer}

say "pip install ./python (maturin, release build)"
# --no-build-isolation: the pinned maturin of the venv is the build backend
# (a plain `pip install ./python` fetches maturin itself; both work).
"$vpy" -m pip install -q --disable-pip-version-check --no-build-isolation --force-reinstall --no-deps ./python

say "pytest python/tests"
# Recordings go to the build's disk: O_DIRECT (--store direct) needs a real
# filesystem, and /tmp may be tmpfs.
export PAGECAM_TEST_TMPDIR=$root/target/python-tmp
mkdir -p "$PAGECAM_TEST_TMPDIR"
cd python
exec "$vpy" -m pytest -ra "$@"

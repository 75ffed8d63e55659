#!/usr/bin/env bash
# Fuzz everything that reads hostile input (issue 10): recording headers,
# index records, whole recordings (scan, check, resume planning), protocol
# messages in both directions, the analyzer's handling of a hello and a
# live store, and what users type. The targets are in fuzz/ (cargo-fuzz,
# libFuzzer); fuzz/README.md says what each checks and has the last long
# run's numbers.
#
#   scripts/fuzz.sh short             CI: build every target, run each for
#                                     PAGECAM_FUZZ_SECONDS (default 10) from
#                                     its seeds; about 3 minutes on 2 cores
#   scripts/fuzz.sh long [SECONDS]    each target until it has run
#                                     PAGECAM_FUZZ_RUNS inputs (default 10
#                                     million) or for SECONDS (default 1200),
#                                     one at a time, keeping its corpus; ends
#                                     with a markdown table for the README
#   scripts/fuzz.sh seeds             rewrite fuzz/seeds/ with the library's
#                                     encoders (fuzz/examples/make_seeds.rs)
#   scripts/fuzz.sh run TARGET [ARGS] one target by hand; ARGS go to libFuzzer
#
# Needs a nightly toolchain (`rustup toolchain install nightly`); installs
# cargo-fuzz (the version pinned below) if it is missing. Everything runs
# at the lowest priority (nice 19): the machine is shared. One process per
# target, one target at a time (libFuzzer's default: a single job).
#
# Working corpora grow in fuzz/corpus/TARGET/ (not committed), crashes land
# in fuzz/artifacts/TARGET/, logs in fuzz/runs/. Exit status: 0 when no
# target crashed, panicked, hung (10 s per input) or ran out of memory
# (2 GiB); 1 otherwise, with the artifact and how to reproduce it printed.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
# The instrumented build (nightly, AddressSanitizer) takes 3 minutes from
# nothing: keep it outside the checkout, as the qemu guests' kernels are,
# so that CI's clean checkouts rebuild only what changed.
TARGET_DIR=${PAGECAM_FUZZ_TARGET_DIR:-/var/cache/pagecam-fuzz/target}
mkdir -p "$TARGET_DIR" 2>/dev/null || TARGET_DIR=fuzz/target
TARGETS=(header record protocol units recording resume hello)
FUZZ=fuzz
LOGS=$FUZZ/runs
# libFuzzer options for every run: a hang is an input that takes 10 s; an
# allocation or a process above 2 GiB is a failure (hostile sizes must not
# turn into huge allocations).
LIBFUZZER_OPTS=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1)

say() { echo "fuzz.sh: $*" >&2; }

need_toolchain() {
    if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
        say "no nightly toolchain: rustup toolchain install nightly --profile minimal"
        rustup toolchain install nightly --profile minimal >&2 || {
            say "error: could not install a nightly toolchain (cargo-fuzz needs one: -Zsanitizer, sancov)"
            exit 1
        }
    fi
    local have
    have=$(cargo +nightly fuzz --version 2>/dev/null | awk '{print $2}' || true)
    if [ "$have" != "$CARGO_FUZZ_VERSION" ]; then
        say "installing cargo-fuzz $CARGO_FUZZ_VERSION${have:+ (found $have)}"
        nice -n 19 cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked >&2 || {
            say "error: could not install cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
            exit 1
        }
    fi
}

build() {
    local t0=$SECONDS
    say "building the fuzz targets (nightly, AddressSanitizer, debug assertions and overflow checks on)"
    nice -n 19 cargo +nightly fuzz build -a --target-dir "$TARGET_DIR" >&2
    say "built in $((SECONDS - t0)) s"
}

# stat NAME LOG: a libFuzzer final statistic (-print_final_stats=1).
stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -1; }

artifacts() { find "$FUZZ/artifacts/$1" -type f 2>/dev/null | sort; }

# run_target TARGET SECONDS [RUNS]: fuzz it from its seeds and its working
# corpus for SECONDS or RUNS inputs, whichever comes first. Prints one table
# row; returns non-zero if libFuzzer found anything.
run_target() {
    local t=$1 secs=$2 runs=${3:--1} log rc=0 before after new
    log=$LOGS/$t.log
    mkdir -p "$FUZZ/corpus/$t" "$FUZZ/artifacts/$t" "$LOGS"
    before=$(artifacts "$t")
    local t0=$SECONDS
    nice -n 19 cargo +nightly fuzz run -a --target-dir "$TARGET_DIR" "$t" "$FUZZ/corpus/$t" "$FUZZ/seeds/$t" -- \
        -max_total_time="$secs" -runs="$runs" "${LIBFUZZER_OPTS[@]}" >"$log" 2>&1 || rc=$?
    local took=$((SECONDS - t0))
    after=$(artifacts "$t")
    new=$(comm -13 <(echo "$before") <(echo "$after") | sed '/^$/d')
    local execs rate corpus crashes
    execs=$(stat number_of_executed_units "$log")
    rate=$(stat average_exec_per_sec "$log")
    corpus=$(find "$FUZZ/corpus/$t" -type f | wc -l)
    crashes=$(echo -n "$new" | grep -c . || true)
    printf '| %s | %s | %s | %s s | %s | %s |\n' "$t" "${execs:-?}" "${rate:-?}" "$took" "$corpus" "$crashes"
    if ((rc != 0)) || [ -n "$new" ]; then
        say "$t FAILED (libFuzzer exit $rc); log: $log"
        grep -m1 -A12 -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|out-of-memory|timeout" "$log" >&2 || tail -20 "$log" >&2
        for a in $new; do
            say "  artifact: $a"
            say "  reproduce: cargo +nightly fuzz run -a $t $a"
            say "  minimise:  cargo +nightly fuzz tmin -a $t $a"
        done
        return 1
    fi
}

table_head() {
    echo "| target | executions | exec/s | time | corpus | crashes |"
    echo "|---|---:|---:|---:|---:|---:|"
}

fuzz_all() {
    local secs=$1 runs=${2:--1} failed=()
    table_head
    for t in "${TARGETS[@]}"; do
        run_target "$t" "$secs" "$runs" || failed+=("$t")
    done
    if ((${#failed[@]})); then
        say "crashes in: ${failed[*]}"
        return 1
    fi
}

mode=${1:-short}
case $mode in
short)
    t_all=$SECONDS
    need_toolchain
    build
    rc=0
    fuzz_all "${PAGECAM_FUZZ_SECONDS:-10}" || rc=$?
    say "short run: $((SECONDS - t_all)) s in all"
    exit $rc
    ;;
long)
    secs=${2:-1200}
    need_toolchain
    build
    runs=${PAGECAM_FUZZ_RUNS:-10000000}
    say "long run: each target for $runs inputs or $secs s, one at a time ($(nproc) cores, $(uname -r))"
    fuzz_all "$secs" "$runs"
    ;;
seeds)
    nice -n 19 cargo run --manifest-path fuzz/Cargo.toml --example make_seeds
    ;;
run)
    t=${2:?usage: scripts/fuzz.sh run TARGET [libFuzzer args]}
    shift 2
    need_toolchain
    mkdir -p "$FUZZ/corpus/$t"
    exec nice -n 19 cargo +nightly fuzz run -a --target-dir "$TARGET_DIR" "$t" "$FUZZ/corpus/$t" "$FUZZ/seeds/$t" -- \
        "${LIBFUZZER_OPTS[@]}" "$@"
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac

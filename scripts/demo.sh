#!/usr/bin/env bash
# The main job: record a few seconds with an analyzer attached, then print
# what was recorded and check it. Uses the built-in test source, or the
# camera named by PAGECAM_DEVICE (e.g. PAGECAM_DEVICE=/dev/video0).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --quiet --bins

seconds=${PAGECAM_SECONDS:-5}
dir=$(mktemp -d "${PAGECAM_DEMO_DIR:-$PWD/target}/pagecam-demo.XXXXXX")
rec="$dir/demo.pcam"
if [ -n "${PAGECAM_DEVICE:-}" ]; then
    source_args=(--source "$PAGECAM_DEVICE")
else
    source_args=(--source test --size 1280x720 --fps 30)
fi

echo "== recording ${seconds}s into $rec"
target/release/pagecam-capture "${source_args[@]}" -o "$rec" --capacity 128MiB \
    --duration "${seconds}s" > "$dir/capture.json" &
capture=$!
for _ in $(seq 200); do [ -S "$rec.sock" ] && break; sleep 0.05; done
target/release/pagecam-analyzer watch --socket "$rec.sock" > "$dir/frames.jsonl"
wait "$capture"

echo "== capture summary"; cat "$dir/capture.json"
echo "== analyzer (first and last frame, summary)"
head -n 1 "$dir/frames.jsonl"; tail -n 2 "$dir/frames.jsonl"
echo "== inspect"; target/release/pagecam-analyzer inspect "$rec"
echo "== verify"; target/release/pagecam-analyzer verify "$rec"
echo "(files kept in $dir)"

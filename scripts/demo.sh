#!/usr/bin/env bash
# The main job: record a few seconds with an analyzer attached, then show
# what was recorded and check it. Uses the built-in test source, or the
# camera named by PAGECAM_DEVICE (e.g. PAGECAM_DEVICE=/dev/video0).
#
#   PAGECAM_SECONDS=5       how long to record
#   PAGECAM_DEVICE=...      a V4L2 device instead of the test source
#   PAGECAM_DEMO_DIR=...    where the recording goes (default target/pagecam-demo,
#                           replaced on every run)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== building pagecam (release; the first build takes a few minutes)"
cargo build --release --bins --locked

seconds=${PAGECAM_SECONDS:-5}
dir=${PAGECAM_DEMO_DIR:-$PWD/target/pagecam-demo}
rm -rf "$dir"
mkdir -p "$dir"
rec="$dir/demo.pcam"
if [ -n "${PAGECAM_DEVICE:-}" ]; then
    source_args=(-d "$PAGECAM_DEVICE")
    what="$PAGECAM_DEVICE"
else
    source_args=(-d test --size 1280x720 --fps 30)
    what="the built-in test pattern (1280x720, 30 fps)"
fi
bin=${CARGO_TARGET_DIR:-target}/release

echo "== recording ${seconds} s from $what into $rec, an analyzer attached"
"$bin/pagecam-capture" "${source_args[@]}" -o "$rec" --capacity 128M \
    --duration "$seconds" --status-interval 1s &
capture=$!
for _ in $(seq 200); do [ -S "$rec.sock" ] && break; sleep 0.05; done
"$bin/pagecam-analyzer" watch "$rec" >"$dir/frames.jsonl"
wait "$capture"

echo
echo "== what the analyzer computed, in place, per frame (first and last; all in $dir/frames.jsonl)"
head -n 1 "$dir/frames.jsonl"
tail -n 2 "$dir/frames.jsonl" | head -n 1
echo
echo "== pagecam-analyzer inspect"
"$bin/pagecam-analyzer" inspect "$rec"
echo
echo "== pagecam-analyzer verify"
"$bin/pagecam-analyzer" verify "$rec"
echo
echo "== pictures: the newest frame and a contact sheet of the whole recording (pagecam-analyzer export)"
"$bin/pagecam-analyzer" export "$rec" -o "$dir/newest.png"
"$bin/pagecam-analyzer" export "$rec" --contact-sheet "$dir/sheet.png" --grid 4x3 --width 960
echo
size=$(du -sh "$dir" | cut -f1)
echo "The recording stays in $dir ($size; the next run replaces it: rm -r $dir to remove it)."
echo "Look at $dir/newest.png and $dir/sheet.png; a clip: $bin/pagecam-analyzer export $rec --last 2s -o $dir/clip.y4m (then mpv or ffplay it)."
echo "Try it by hand: $bin/pagecam-capture -o /tmp/cam.pcam, and in another terminal $bin/pagecam-analyzer watch /tmp/cam.pcam"

#!/usr/bin/env bash
# selftest.sh [6.1] [6.12] - check that vm.sh works on this machine: boot,
# vivid nodes, v4l2-ctl streaming onto a disk + pull, exit status, timeout,
# power cut. About a minute per kernel under TCG.
set -euo pipefail

VM=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/vm.sh
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pagecam-vm-selftest.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
passed=0 failed=0

check() { # check NAME CONDITION...
	local name=$1
	shift
	if "$@"; then
		echo "ok   $name"
		passed=$((passed + 1))
	else
		echo "FAIL $name"
		failed=$((failed + 1))
	fi
}

# run_vm OUTFILE ARGS...: vm.sh run, stdout to OUTFILE; prints the status.
run_vm() {
	local out=$1 rc=0
	shift
	"$VM" run "$@" >"$out" 2>"$out.err" || rc=$?
	echo "$rc"
}

kernels=("$@")
((${#kernels[@]})) || kernels=(6.1 6.12)
for k in "${kernels[@]}"; do
	echo "== kernel $k"
	o=$WORK/$k
	rc=$(run_vm "$o.basic" --kernel "$k" -- \
		'cat /sys/class/video4linux/video0/name; uname -r; exit 3')
	check "$k: exit status is passed through" test "$rc" = 3
	check "$k: video0 is vivid's capture node" grep -qx 'vivid-000-vid-cap' "$o.basic"

	rc=$(run_vm "$o.stream" --kernel "$k" --v4l2-ctl --vivid node_types=0x1 \
		--disk "$o.img" --mkdisk 64M -- \
		'v4l2-ctl -d /dev/video0 --set-fmt-video=width=640,height=360,pixelformat=YUYV &&
		 v4l2-ctl -d /dev/video0 --stream-mmap --stream-count=5 --stream-to=/data/x.raw')
	check "$k: v4l2-ctl streams onto the disk" test "$rc" = 0
	"$VM" pull "$o.img" /data/x.raw "$o.raw"
	check "$k: pulled 5 frames of 640x360 YUYV" test "$(stat -c %s "$o.raw")" = $((5 * 640 * 360 * 2))

	rc=$(run_vm "$o.timeout" --kernel "$k" --timeout 20 -- 'sleep 60')
	check "$k: --timeout gives 124" test "$rc" = 124

	rc=$(run_vm "$o.cut" --kernel "$k" --disk "$o.img" --kill-on SYNCED --kill-delay 0.2 -- \
		'echo kept >kept; sync; echo SYNCED; echo lost >lost; sleep 30')
	check "$k: --kill-on gives 137" test "$rc" = 137
	"$VM" pull "$o.img" /kept "$o.kept"
	check "$k: synced data survives the power cut" grep -qx kept "$o.kept"
done
echo "$passed passed, $failed failed"
((failed == 0))

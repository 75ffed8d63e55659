#!/usr/bin/env bash
# bench-vivid.sh - CPU per frame of pagecam and of the usual tools, recording
# from a real V4L2 driver (vivid) inside qemu guests running Debian's
# Linux 6.1 and 6.12, printed as a markdown table.
#
#   scripts/bench-vivid.sh [--out FILE] [--frames N] [--kernels '6.1 6.12']
#
# In one guest run per kernel, two passes of:
#   * pagecam-capture, each store x I/O mode: --store direct with --io
#     userptr and mmap; --store file with --io auto (USERPTR on 6.1, MMAP on
#     6.12, which refuses USERPTR on file pages) and mmap; each with
#     pagecam-analyzer attached and without;
#   * v4l2-ctl --stream-mmap --stream-count=N --stream-to=FILE;
#   * ffmpeg -f v4l2 -i /dev/video0 -c copy -f rawvideo FILE;
#   * gst-launch-1.0 v4l2src num-buffers=N ! filesink location=FILE;
#   * the floor: v4l2-ctl --stream-mmap --stream-count=N, writing nothing;
# and once, each command with 1 frame (its fixed start-up cost).
# 640x480 YUYV at 25 fps (vivid offers at most 25 fps at 640x480; 30 only
# at smaller sizes), N = 150 frames, onto ext4 on a virtio disk.
#
# Figures per row: user and system CPU of each whole process (busybox
# `time`: rusage of the process and its threads, 10 ms resolution) per
# frame, for pass 1 and pass 2; the same net of the 1-frame run; and the
# guest's system-wide busy CPU (/proc/stat) from start to the end of a
# `sync` after the command, per frame: that includes the kernel's flusher
# writing back what the tools left dirty. Under qemu's TCG every user-space
# instruction is emulated (a CRC in user space is overstated many times);
# kernel work is emulated too but is the same kernel code for every tool:
# judge the system column.
#
# Needs: root (or sudo) for apt-get: ffmpeg, gstreamer1.0-tools,
# gstreamer1.0-plugins-good are installed here when missing; tests/vm/vm.sh
# installs qemu and fetches the kernels. Builds pagecam with cargo --release.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
OUT=""
FRAMES=150
# vivid's highest rate at 640x480 (it lists 1 to 25 fps for that size).
FPS=25
KERNELS="6.1 6.12"
while (($#)); do
	case $1 in
	--out) OUT=$2 && shift ;;
	--frames) FRAMES=$2 && shift ;;
	--kernels) KERNELS=$2 && shift ;;
	-h | --help)
		sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
		exit 0
		;;
	*)
		echo "bench-vivid.sh: unknown option $1" >&2
		exit 2
		;;
	esac
	shift
done
if ! [[ $FRAMES =~ ^[0-9]+$ ]] || ((FRAMES < 2)); then
	echo "bench-vivid.sh: --frames wants a number > 1" >&2
	exit 2
fi

msg() { printf '[bench-vivid] %s\n' "$*" >&2; }
as_root() {
	if ((EUID == 0)); then "$@"; else sudo "$@"; fi
}

# --- host requirements: checked by what is really needed --------------------
missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v gst-launch-1.0 >/dev/null || missing+=(gstreamer1.0-tools)
gst_dir() {
	# The plugin directory next to the libgstreamer gst-launch-1.0 uses.
	local lib
	lib=$(ldd "$(command -v gst-launch-1.0)" 2>/dev/null | awk '/libgstreamer-1.0/ {print $3}')
	[[ -n $lib ]] && echo "$(dirname "$(readlink -f "$lib")")/gstreamer-1.0"
}
if command -v gst-launch-1.0 >/dev/null; then
	GST=$(gst_dir)
	[[ -f $GST/libgstvideo4linux2.so ]] || missing+=(gstreamer1.0-plugins-good)
	[[ -f $GST/libgstcoreelements.so ]] || missing+=(libgstreamer1.0-0)
else
	missing+=(gstreamer1.0-plugins-good)
fi
if ((${#missing[@]})); then
	msg "installing ${missing[*]}"
	as_root apt-get -q -o DPkg::Lock::Timeout=600 update >&2
	as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 \
		install --no-install-recommends "${missing[@]}" >&2
fi
GST=$(gst_dir)
for f in libgstvideo4linux2.so libgstcoreelements.so; do
	[[ -f $GST/$f ]] || {
		msg "error: $GST/$f is still missing"
		exit 1
	}
done

msg "building pagecam (release)"
(cd "$ROOT" && cargo build --release --bins -q)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-vivid.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# gstreamer loads its plugins with dlopen, so ldd of gst-launch-1.0 does
# not list them: add the two plugins and their libraries at their host paths.
adds=()
declare -A seen=()
for f in libgstvideo4linux2.so libgstcoreelements.so; do
	adds+=(--add "$GST/$f:$GST/$f")
	while read -r lib; do
		[[ -n ${seen[$lib]:-} ]] && continue
		seen[$lib]=1
		adds+=(--add "$lib:$lib")
	done < <(ldd "$GST/$f" | awk '$2 == "=>" && $3 ~ /^\// {print $3}')
done

# --- the guest's part --------------------------------------------------------
cat >"$WORK/guest.sh" <<'GUEST'
#!/bin/sh
# Runs in the guest (busybox sh) in /data. Prints one line per process:
#   BENCH|label|pass|frames_asked|process|real_s|user_s|sys_s|busy_ticks|frames_done|delivery|rc
N=$1
PASSES=$2
GST=$3
FPS=$4
export GST_PLUGIN_SYSTEM_PATH=$GST GST_PLUGIN_PATH=$GST
export GST_REGISTRY=/tmp/gst-registry.bin GST_REGISTRY_FORK=no
DEV=/dev/video0

# user+nice+system+irq+softirq+steal ticks of all CPUs
busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([a-z0-9.]*\).*/\1/p" "$2" | head -1; }
timing() { tr '\n' ' ' <"$1" | awk '{ printf "%s|%s|%s", $1, $2, $3 }'; }
clean() { rm -f /data/r.pcam /data/r.pcam.sock /data/out.raw; sync; }

# tool LABEL PASS FRAMES CMD...: one process, timed.
tool() {
	label=$1 pass=$2 n=$3
	shift 3
	clean
	b0=$(busy)
	time -f '%e %U %S' -o /tmp/t.time "$@" >/tmp/t.out 2>/tmp/t.err
	rc=$?
	sync
	b1=$(busy)
	echo "BENCH|$label|$pass|$n|process|$(timing /tmp/t.time)|$((b1 - b0))|$n|-|$rc"
	[ "$rc" = 0 ] || tail -n 3 /tmp/t.err | sed "s/^/NOTE|$label|/"
}

# pagecam STORE IO ANALYZER PASS FRAMES
pagecam() {
	store=$1 io=$2 ana=$3 pass=$4 n=$5
	label="pagecam --store $store --io $io$([ "$ana" = yes ] && echo ' + analyzer')"
	clean
	b0=$(busy)
	time -f '%e %U %S' -o /tmp/cap.time pagecam-capture --source $DEV --format YUYV \
		--size 640x480 --fps "$FPS" --io "$io" --store "$store" --slots 64 --frames "$n" \
		-o /data/r.pcam >/tmp/cap.json 2>/tmp/cap.err &
	cap=$!
	if [ "$ana" = yes ]; then
		i=0
		while [ ! -S /data/r.pcam.sock ] && [ $i -lt 400 ]; do
			usleep 20000
			i=$((i + 1))
		done
		time -f '%e %U %S' -o /tmp/ana.time pagecam-analyzer watch --quiet \
			--socket /data/r.pcam.sock >/tmp/ana.json 2>/tmp/ana.err &
		anap=$!
	fi
	wait $cap
	rc=$?
	[ "$ana" = yes ] && wait $anap
	sync
	b1=$(busy)
	echo "BENCH|$label|$pass|$n|capture|$(timing /tmp/cap.time)|$((b1 - b0))|$(field frames /tmp/cap.json)|$(field delivery /tmp/cap.json)|$rc"
	if [ "$ana" = yes ]; then
		echo "BENCH|$label|$pass|$n|analyzer|$(timing /tmp/ana.time)|-|$(field frames /tmp/ana.json)|-|0"
	fi
	[ "$rc" = 0 ] || tail -n 3 /tmp/cap.err | sed "s/^/NOTE|$label|/"
	grep -i 'refuse\|fall' /tmp/cap.err | head -n 2 | sed "s/^/NOTE|$label|/"
}

everything() {
	pass=$1 n=$2
	for ana in no yes; do
		pagecam direct userptr $ana "$pass" "$n"
		pagecam direct mmap $ana "$pass" "$n"
		pagecam file auto $ana "$pass" "$n"
		pagecam file mmap $ana "$pass" "$n"
	done
	v4l2-ctl -d $DEV --set-fmt-video=width=640,height=480,pixelformat=YUYV --set-parm="$FPS" >/dev/null
	tool "v4l2-ctl --stream-mmap --stream-to" "$pass" "$n" \
		v4l2-ctl -d $DEV --stream-mmap --stream-count="$n" --stream-to=/data/out.raw
	tool "ffmpeg -c copy -f rawvideo" "$pass" "$n" \
		ffmpeg -nostdin -hide_banner -loglevel error -f v4l2 -input_format yuyv422 \
		-video_size 640x480 -framerate "$FPS" -i $DEV -frames:v "$n" -c copy -f rawvideo -y /data/out.raw
	tool "gst-launch-1.0 v4l2src ! filesink" "$pass" "$n" \
		gst-launch-1.0 -q v4l2src device=$DEV num-buffers="$n" \
		! video/x-raw,format=YUY2,width=640,height=480,framerate="$FPS"/1 \
		! filesink location=/data/out.raw
	tool "floor: v4l2-ctl --stream-mmap (writes nothing)" "$pass" "$n" \
		v4l2-ctl -d $DEV --stream-mmap --stream-count="$n"
}

echo "KERNEL|$(uname -r)"
# Warm-up (not counted): gstreamer builds its plugin registry on first use.
gst-launch-1.0 -q v4l2src device=$DEV num-buffers=1 ! fakesink >/dev/null 2>&1 ||
	gst-launch-1.0 -q v4l2src device=$DEV num-buffers=1 ! filesink location=/dev/null >/dev/null 2>&1
everything base 1
p=1
while [ $p -le "$PASSES" ]; do
	everything $p "$N"
	p=$((p + 1))
done
GUEST

results=()
for k in $KERNELS; do
	msg "Linux $k: booting the guest (two passes of $FRAMES frames; several minutes under TCG)"
	out=$WORK/out-$k.txt
	if ! "$ROOT/tests/vm/vm.sh" run --kernel "$k" --v4l2-ctl --mem 2048 --timeout 2400 \
		--bin "$ROOT/target/release/pagecam-capture" --bin "$ROOT/target/release/pagecam-analyzer" \
		--bin "$(command -v ffmpeg)" --bin "$(command -v gst-launch-1.0)" "${adds[@]}" \
		--add "$WORK/guest.sh:/usr/lib/pagecam-bench/guest.sh" \
		--disk "$WORK/disk-$k.img" --mkdisk 512M \
		-- "sh /usr/lib/pagecam-bench/guest.sh $FRAMES 2 $GST $FPS" >"$out"; then
		msg "Linux $k: the guest run failed; its output:"
		tail -n 40 "$out" >&2
		exit 1
	fi
	results+=("$out")
	rm -f "$WORK/disk-$k.img"
done

# --- the table ---------------------------------------------------------------
{
	echo "# pagecam on a real V4L2 driver: vivid in qemu"
	echo
	echo "Host: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) CPUs, Linux $(uname -r); 1-minute load average at the end $(cut -d' ' -f1 /proc/loadavg). Guests: Debian's kernels under qemu TCG (no KVM), 2 vCPUs, 2 GiB, ext4 on a virtio disk (cache=none), the vivid driver; 640x480 YUYV at $FPS fps (vivid's highest rate at that size), $FRAMES frames per run, one guest boot per kernel with two passes. Made by \`scripts/bench-vivid.sh\`."
	echo
	echo "CPU per frame of each whole process from busybox \`time\` (its rusage: all threads, user and system apart, 10 ms resolution, so ±$((10000 / FRAMES)) µs per frame), shown as **pass 1 / pass 2**. \"net\": (run of $FRAMES frames − run of 1 frame) ÷ $((FRAMES - 1)), user+system, the smaller of the two passes: start-up, file creation and streaming on/off left out. \"guest busy\": all of the guest's CPUs busy (/proc/stat) from the command's start to the end of a \`sync\` after it, per frame, pass 1 / pass 2: it includes the kernel's flusher writing back what a tool left dirty, which the process's own time does not. The pagecam rows with an analyzer show capture and analyzer as two lines; \"guest busy\" covers both."
	echo
	echo "**TCG emulates every instruction**: user-space work (pagecam's CRC32C in software, as qemu's default CPU has no SSE4.2; ffmpeg's and gstreamer's code) is overstated many times against a real CPU. The system column (the kernel's V4L2, page-cache, block and socket work) is the one to compare between tools; the user column only within the same tool."
	echo
	echo "| kernel | command | process | delivery | frames | user µs/frame p1 / p2 | system µs/frame p1 / p2 | net user+sys µs/frame | guest busy µs/frame p1 / p2 |"
	echo "|---|---|---|---|---:|---:|---:|---:|---:|"
	for out in "${results[@]}"; do
		awk -F'|' -v N="$FRAMES" '
			/^KERNEL\|/ { kernel = $2; next }
			/^BENCH\|/ {
				key = $2 "|" $5
				if (!(key in order)) { order[key] = ++n; keys[n] = key }
				label[key] = $2; proc[key] = $5
				cpu = ($7 + $8) * 1e6
				if ($3 == "base") { base[key] = cpu; next }
				u[key, $3] = $7 * 1e6 / $4; s[key, $3] = $8 * 1e6 / $4
				tot[key, $3] = cpu
				if ($9 != "-") busy[key, $3] = $9 * 1e4 / $4
				fr[key] = (fr[key] == "" ? $10 : fr[key] "/" $10)
				if ($11 != "-") dl[key] = $11
				if ($12 != "0") bad[key] = "exit " $12
			}
			/^NOTE\|/ { if (!($2 in note)) note[$2] = $3 }
			function pair(a, key) {
				return sprintf("%s / %s", (key SUBSEP 1) in a ? sprintf("%.0f", a[key, 1]) : "-",
					(key SUBSEP 2) in a ? sprintf("%.0f", a[key, 2]) : "-")
			}
			END {
				for (i = 1; i <= n; i++) {
					k = keys[i]
					net = "-"
					if (k in base) {
						m = -1
						for (p = 1; p <= 2; p++) if ((k SUBSEP p) in tot) {
							v = (tot[k, p] - base[k]) / (N - 1)
							if (m < 0 || v < m) m = v
						}
						if (m >= 0) net = sprintf("%.0f", m)
					}
					printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", kernel, label[k] (k in bad ? " (" bad[k] ")" : ""), proc[k],
						(k in dl ? dl[k] : "-"), fr[k], pair(u, k), pair(s, k), net, pair(busy, k)
				}
				for (l in note) printf "\nNote (%s, %s, first of its kind): %s\n", kernel, l, note[l] > "/dev/stderr"
			}' "$out"
	done
	echo
	echo "\"delivery\": what pagecam-capture reported using: \`direct\` (the driver wrote into the store through USERPTR, zero copies) or \`copy\` (MMAP buffers, one copy per frame). \`--io auto\` on the file store is USERPTR on 6.1 and falls back to MMAP on 6.12, which refuses long-term pins of file-backed pages."
} >"$WORK/table.md" 2>"$WORK/notes.txt"
cat "$WORK/notes.txt" >>"$WORK/table.md"
if [[ -n $OUT ]]; then
	cp "$WORK/table.md" "$OUT"
	msg "wrote $OUT"
fi
cat "$WORK/table.md"

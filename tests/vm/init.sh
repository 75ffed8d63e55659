#!/bin/sh
# PID 1 of the pagecam test VM (busybox ash). vm.sh puts this file at /init
# of the initramfs, next to a per-run config directory /etc/pagecam-vm/:
#   mode        "run" (run cmd, power off) or "shell" (interactive shell)
#   cmd         the guest shell command (run with `sh -c`)
#   disk_modules  modules for the disk, one per line (from vm.sh's base)
#   vivid_opts  options for `modprobe vivid`
#   disk        "1" when a virtio disk is attached (mounted ext4 at /data)
#   term_size   "ROWS COLS" of the developer's terminal (shell mode only)
#   init        "systemd" (vm.sh --systemd): switch_root into the Debian root
#               on /dev/vda instead; see boot_systemd
#   disk_at     with init=systemd: where the --disk (then /dev/vdb) goes
#
# Protocol with the host (vm.sh reads the serial console line by line):
#   "[pagecam-vm] ..."          diagnostics, shown on the host's stderr
#   "PAGECAM_GUEST_READY"       boot finished, command starts now
#   "PAGECAM_GUEST_EXIT=<n>"    the command's exit status; poweroff follows
#   "PAGECAM_INIT_FAILED: ..."  the VM setup failed (not the command)

export PATH=/usr/bin:/usr/sbin:/bin:/sbin
export HOME=/root
export XDG_RUNTIME_DIR=/run/user/0
cfg=/etc/pagecam-vm

# arm64 guests: vm.sh cannot run a foreign busybox to make its applet links,
# so their base archive has /bin/sh only; busybox makes the rest (~0.1 s).
[ -e /usr/bin/mount ] || /usr/bin/busybox --install -s

# No /dev/console exists in the initramfs (making device nodes needs root on
# the host), so the kernel started us without stdio: mount devtmpfs first,
# then attach stdio to the console.
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1

log() { echo "[pagecam-vm] $*"; }

# Drain the serial port before powering off, or the last lines (the exit
# marker!) can be lost: busybox stty applies settings with TCSADRAIN.
drain_console() { stty -F /dev/console "$(stty -F /dev/console -g)" 2>/dev/null; }

power_off() {
	drain_console
	poweroff -f
	sleep 5 # not reached; keep PID 1 from exiting (that would panic)
}

fail() {
	echo "PAGECAM_INIT_FAILED: $*"
	power_off
}

read_cfg() { [ -f "$cfg/$1" ] && cat "$cfg/$1"; }

# --- basic filesystems -------------------------------------------------------
mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
mkdir -p /dev/pts /dev/shm /tmp /run /data /root
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
# Programs under test create Unix sockets and shm segments: give them tmpfs.
mount -t tmpfs -o mode=1777 tmpfs /dev/shm || fail "mount /dev/shm"
mount -t tmpfs -o mode=1777 tmpfs /tmp || fail "mount /tmp"
mount -t tmpfs -o mode=755 tmpfs /run || fail "mount /run"
mkdir -p /run/user/0 && chmod 700 /run/user/0
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
hostname pagecam-vm
ip link set lo up 2>/dev/null

# wait_for PATH TENTHS: devtmpfs creates nodes asynchronously-ish; poll.
wait_for() {
	i=0
	while [ ! -e "$1" ] && [ "$i" -lt "$2" ]; do
		usleep 100000
		i=$((i + 1))
	done
	[ -e "$1" ]
}

# --- systemd guests (vm.sh --systemd) ----------------------------------------
# This initramfs only brings up the disks: it mounts the cached Debian root
# (/dev/vda; qemu keeps its writes in a throw-away overlay) and the --disk
# (/dev/vdb) inside it, copies in this run's files (vm.sh staged them under
# /sysroot-files, libraries under /sysroot-libs: those never replace the
# root's own), this kernel's modules and the run's config, and hands over
# to systemd. vivid is left to the command (`modprobe vivid` picks up the
# --vivid options from /etc/modprobe.d/pagecam-vm.conf), so that udev and
# systemd see the camera appear.
boot_systemd() {
	for m in $(read_cfg disk_modules); do
		modprobe "$m" || fail "modprobe $m"
	done
	wait_for /dev/vda 100 || fail "/dev/vda (the Debian root) did not appear"
	mkdir -p /sysroot
	mount -t ext4 -o rw /dev/vda /sysroot || fail "mount -t ext4 /dev/vda /sysroot"
	if [ "$(read_cfg disk)" = 1 ]; then
		at=$(read_cfg disk_at)
		wait_for /dev/vdb 100 || fail "/dev/vdb did not appear"
		mkdir -p "/sysroot$at"
		mount -t ext4 /dev/vdb "/sysroot$at" || fail "mount -t ext4 /dev/vdb /sysroot$at"
	fi
	cp -a /sysroot-files/. /sysroot/ || fail "copying the run's files into the root"
	cp -an /sysroot-libs/. /sysroot/ 2>/dev/null
	kver=$(uname -r)
	mkdir -p /sysroot/usr/lib/modules
	rm -rf "/sysroot/usr/lib/modules/$kver"
	cp -a "/usr/lib/modules/$kver" /sysroot/usr/lib/modules/ || fail "copying the modules"
	mkdir -p /sysroot/etc/pagecam-vm /sysroot/etc/modprobe.d
	cp -a "$cfg/." /sysroot/etc/pagecam-vm/
	opts=$(read_cfg vivid_opts)
	[ -z "$opts" ] || echo "options vivid $opts" >/sysroot/etc/modprobe.d/pagecam-vm.conf
	# systemd mounts /run, /tmp and friends itself; /dev, /proc and /sys
	# move along (as a Debian initramfs does), keeping our console open.
	umount /dev/pts /dev/shm /tmp /run 2>/dev/null
	mount --move /dev /sysroot/dev || fail "mount --move /dev"
	mount --move /proc /sysroot/proc || fail "mount --move /proc"
	mount --move /sys /sysroot/sys || fail "mount --move /sys"
	exec switch_root /sysroot /lib/systemd/systemd
}
[ "$(read_cfg init)" = systemd ] && boot_systemd

# --- kernel modules ----------------------------------------------------------
disk=$(read_cfg disk)
if [ "$disk" = 1 ]; then
	# virtio_pci, virtio_blk, crc32c_generic, ext4 (deps via modules.dep)
	for m in $(read_cfg disk_modules); do
		modprobe "$m" || fail "modprobe $m"
	done
fi
# shellcheck disable=SC2046 # word splitting of the options is intended
modprobe vivid $(read_cfg vivid_opts) || fail "modprobe vivid $(read_cfg vivid_opts)"

# vivid's node_types option may legitimately omit the video capture node, so
# a missing /dev/video0 is only a warning.
wait_for /dev/video0 50 || log "warning: /dev/video0 did not appear"

if [ "$disk" = 1 ]; then
	wait_for /dev/vda 100 || fail "/dev/vda did not appear"
	# After a simulated power cut, ext4 replays its journal here.
	mount -t ext4 /dev/vda /data || fail "mount -t ext4 /dev/vda /data"
	cd /data || fail "cd /data"
else
	cd /tmp || fail "cd /tmp"
fi

# --- the command -------------------------------------------------------------
finish() {
	cd /
	sync
	if grep -q ' /data ' /proc/mounts; then
		# Stray background processes would keep /data busy.
		umount /data 2>/dev/null || {
			kill -KILL -1 2>/dev/null
			usleep 200000
			umount /data || log "warning: umount /data failed"
		}
	fi
}

cmd=$(read_cfg cmd)
if [ "$(read_cfg mode)" = shell ]; then
	# shellcheck disable=SC2046 # "ROWS COLS"
	set -- $(read_cfg term_size)
	[ $# = 2 ] && stty -F /dev/console rows "$1" cols "$2" 2>/dev/null
	[ -n "$cmd" ] && sh -c "$cmd"
	log "interactive shell; 'exit' powers off (Ctrl-A x kills qemu)"
	# cttyhack gives the shell a controlling tty, so job control and ^C work.
	setsid cttyhack sh -l
	finish
	power_off
fi

echo "PAGECAM_GUEST_READY"
sh -c "$cmd" </dev/null
rc=$?
finish
echo "PAGECAM_GUEST_EXIT=$rc"
power_off

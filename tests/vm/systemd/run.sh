#!/bin/sh
# The vm.sh command in a --systemd guest (pagecam-vm-run.service): same
# protocol on the console as the busybox /init (PAGECAM_GUEST_READY, the
# command's output, PAGECAM_GUEST_EXIT=<n>), then power-off.
cfg=/etc/pagecam-vm
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8
cd /root || exit 1

# Drain the serial port before powering off, or the last lines (the exit
# marker!) can be lost: stty applies settings with TCSADRAIN.
drain_console() { stty -F /dev/console "$(stty -F /dev/console -g)" 2>/dev/null; }

cmd=$(cat "$cfg/cmd")
if [ "$(cat "$cfg/mode")" = shell ]; then
	# shellcheck disable=SC2046 # "ROWS COLS"
	set -- $(cat "$cfg/term_size" 2>/dev/null)
	[ $# = 2 ] && stty -F /dev/console rows "$1" cols "$2" 2>/dev/null
	[ -n "$cmd" ] && sh -c "$cmd"
	echo "[pagecam-vm] interactive shell (systemd is PID 1); 'exit' powers off (Ctrl-A x kills qemu)"
	bash -l
else
	echo "[pagecam-vm] systemd up: $(cut -d' ' -f1 /proc/uptime) s since the kernel started"
	echo "PAGECAM_GUEST_READY"
	sh -c "$cmd" </dev/null
	rc=$?
	sync
	echo "PAGECAM_GUEST_EXIT=$rc"
fi
drain_console
# --force: no orderly stop of every unit (the command stopped what it
# tested); processes are killed, file systems unmounted, power off.
systemctl poweroff --force
sleep 30

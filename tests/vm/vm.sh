#!/usr/bin/env bash
# vm.sh - boot a real Debian kernel under qemu (TCG) with the vivid virtual
# V4L2 camera loaded, run a command in it, and report its output and status.
#
#   vm.sh prepare [--arch x86_64|arm64] [6.1] [6.12]
#       Install host packages, fetch+unpack the kernels, build the cached base
#       initramfs. Optional: `run` and `shell` prepare what they miss.
#   vm.sh run [--arch x86_64|arm64] --kernel 6.1|6.12 [options] -- 'command...'
#       Output of the command (stdout+stderr, merged) goes to our stdout; we
#       exit with the command's exit status.  Harness messages go to stderr.
#   vm.sh shell [--arch ...] --kernel 6.1|6.12 [options] [-- 'command run first']
#       Interactive busybox shell in the guest ('exit' powers off,
#       Ctrl-A x kills qemu).
#   vm.sh pull IMG GUESTPATH HOSTPATH
#       Copy a file out of an ext4 image with debugfs (no mount, no root).
#       GUESTPATH is the path in the image; a leading /data is accepted.
#   vm.sh prepare --systemd [6.1] [6.12]
#       Also build the cached Debian 12 root that --systemd boots (needs
#       root or sudo: debootstrap; once, a few minutes).
#
# Options of run/shell:
#   --arch x86_64|arm64      guest architecture (default x86_64). arm64 boots
#                            Debian's arm64 kernel on qemu-system-aarch64
#                            (-M virt -cpu cortex-a72), with arm64 busybox
#   --kernel 6.1|6.12        kernel series (required)
#   --bin HOSTPATH           copy an executable to /usr/bin in the guest, with
#                            its shared libraries (ldd); repeatable. arm64
#                            guests have no C library: static aarch64 (or
#                            32-bit arm, run through CONFIG_COMPAT) only
#   --add HOSTPATH:GUESTPATH copy a file into the guest; repeatable
#   --disk IMG               attach IMG (raw) as virtio disk, mounted ext4 at
#                            /data; the command then runs in /data (else /tmp)
#   --mkdisk SIZE            with --disk: first create IMG as a sparse file of
#                            SIZE (e.g. 64M) with a fresh ext4 file system
#   --vivid 'OPTIONS'        options for `modprobe vivid` (e.g. 'node_types=0x1')
#   --v4l2-ctl               also put v4l2-ctl (Debian's v4l-utils) in the guest
#                            (x86_64 only: it is the host's dynamic binary)
#   --timeout SEC            kill qemu after SEC seconds -> exit 124
#                            (default 600 for run, none for shell; 0 = none)
#   --kill-on MARKER         power-cut simulation: when a console line contains
#   --kill-delay SEC         MARKER, wait SEC (fractional ok, default 0), then
#                            SIGKILL qemu -> exit 137
#   --systemd                boot Debian 12 with systemd as PID 1 (x86_64):
#                            the busybox initramfs loads the disk modules,
#                            mounts the cached Debian root (its writes go to
#                            a throw-away overlay, qemu snapshot=on), copies
#                            --bin/--add files and the kernel's modules in
#                            and switch_roots to /lib/systemd/systemd; the
#                            command runs as a service once basic.target is
#                            reached. vivid is NOT loaded: `modprobe vivid`
#                            in the command uses the --vivid options
#   --disk-at PATH           with --systemd: mount --disk at PATH (default
#                            /data); the command runs in /root
#   --mem MB                 guest memory (default 1024)
#   --append 'ARGS'          extra kernel command line arguments
#   --verbose                show kernel messages and boot details
#
# Exit status of run: the guest command's status, or
#   124 timeout, 137 power cut (--kill-on), 125 harness/VM failure.
#
# Environment:
#   PAGECAM_VM_CACHE           cache dir (default /var/cache/pagecam-vm);
#                              holds .debs, unpacked kernels, base initramfs
#   PAGECAM_VM_KERNEL_PKG_6_1  pin the kernel package (else newest in apt)
#   PAGECAM_VM_KERNEL_PKG_6_12
#   PAGECAM_VM_KERNEL_PKG_ARM64_6_1, PAGECAM_VM_KERNEL_PKG_ARM64_6_12
#                              the same for --arch arm64
#   PAGECAM_VM_BZIMAGE=1       boot the compressed vmlinuz (default: the
#                              cached uncompressed vmlinux via PVH, faster)
#
# Design notes:
# * Nothing prebuilt lives in the repo: kernels come from Debian packages
#   (apt-get download + dpkg -x), busybox from busybox-static. For arm64 the
#   host gets arm64 as a dpkg foreign architecture (apt lists only; no arm64
#   package is installed on the host, they are unpacked into the cache).
# * The initrd is two concatenated cpio archives (the kernel accepts that):
#   a cached per-kernel base (busybox + modules) and a small per-run one
#   (/init, config, the command, --bin/--add files).
# * The serial console carries the output at roughly 100 KB/s: write bulky
#   data to /data (--disk) and `pull` it instead of printing it.
# * Runs are independent: each uses its own mktemp work dir; the shared cache
#   is only written under an flock, and artifacts appear by atomic rename.
# * --systemd keeps the same initramfs as the first stage (it is the fastest
#   way under TCG to get the virtio disk up: no udev, no Debian initramfs
#   scripts), then switch_roots into an ext4 image of a debootstrap'ed
#   Debian 12 root (minbase + systemd, udev, kmod, dbus), built once and
#   cached. The image is kernel-independent: the initramfs copies its
#   modules (vivid, disk) in. Boot goes to pagecam-vm.target (basic.target
#   plus the command's service), not multi-user.target, and units a
#   throw-away test machine does not need are masked in the image.
set -euo pipefail
# mkfs.ext4, debugfs, depmod live in sbin, which a normal user's PATH lacks.
PATH=$PATH:/usr/sbin:/sbin

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR
readonly CACHE=${PAGECAM_VM_CACHE:-/var/cache/pagecam-vm}
# Bump when the layout of the base initramfs changes (invalidates caches).
readonly BASE_FORMAT=2
# Modules for --disk, loaded in this order by /init only when a disk is
# attached (ext4 alone takes ~0.3 s to load under TCG). vivid is always
# loaded, last, with the --vivid options. Built-in ones are skipped.
# crc32c_generic: ext4/jbd2 need a "crc32c" crypto driver, and qemu's default
# CPU has no SSE4.2 for crc32c-intel.
readonly DISK_MODULES=(virtio_pci virtio_blk crc32c_generic ext4)
readonly EXIT_HARNESS=125 EXIT_TIMEOUT=124 EXIT_POWERCUT=137
# The --systemd root: bump SYSROOT_FORMAT when the recipe below changes
# (the cache key also covers the packages and the mirror).
readonly SYSROOT_FORMAT=2 SYSROOT_SUITE=bookworm
readonly SYSROOT_PACKAGES=(systemd systemd-sysv udev kmod dbus)
# Units a throw-away test machine does not need (masked): first-boot and
# /usr-update jobs (hwdb, ldconfig and catalog rebuilds are slow under
# TCG; sysusers is run by the install steps under test, as a package's
# postinst would), file systems nobody uses, and periodic jobs.
readonly SYSROOT_MASK=(
	systemd-hwdb-update.service ldconfig.service systemd-journal-catalog-update.service
	systemd-update-done.service systemd-firstboot.service systemd-machine-id-commit.service
	systemd-sysusers.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount
	sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount
	sys-fs-fuse-connections.mount dev-hugepages.mount dev-mqueue.mount systemd-pstore.service
	modprobe@configfs.service modprobe@dm_mod.service modprobe@drm.service
	modprobe@efi_pstore.service modprobe@fuse.service modprobe@loop.service
	systemd-journal-flush.service systemd-update-utmp.service systemd-random-seed.service
	apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer
	e2scrub_reap.service fstrim.timer systemd-tmpfiles-clean.timer
)
# Generators that find nothing here (no crypt/verity/integrity devices, no
# GPT, no SysV scripts, the console is not a getty): each costs a fork and
# exec at every boot and daemon-reload. fstab's stays.
readonly SYSROOT_MASK_GENERATORS=(
	systemd-cryptsetup-generator systemd-integritysetup-generator systemd-veritysetup-generator
	systemd-gpt-auto-generator systemd-hibernate-resume-generator systemd-sysv-generator
	systemd-rc-local-generator systemd-getty-generator systemd-system-update-generator
	systemd-debug-generator systemd-run-generator
)

# Guest architecture (--arch); set_arch runs before anything else.
ARCH=x86_64 DEB_ARCH=amd64 QEMU=qemu-system-x86_64 QEMU_PKG=qemu-system-x86
set_arch() {
	case $1 in
	x86_64 | amd64) ARCH=x86_64 DEB_ARCH=amd64 QEMU=qemu-system-x86_64 QEMU_PKG=qemu-system-x86 ;;
	arm64 | aarch64) ARCH=arm64 DEB_ARCH=arm64 QEMU=qemu-system-aarch64 QEMU_PKG=qemu-system-arm ;;
	*) die "unknown --arch '$1' (use x86_64 or arm64)" ;;
	esac
}

msg() { printf '[vm.sh] %s\n' "$*" >&2; }
die() {
	msg "error: $*"
	exit "$EXIT_HARNESS"
}
usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
	exit "${1:-$EXIT_HARNESS}"
}

# ---------------------------------------------------------------------------
# Host packages
# ---------------------------------------------------------------------------

as_root() {
	if ((EUID == 0)); then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		die "need root to run: $*"
	fi
}

APT_UPDATED=0
apt_update_once() {
	((APT_UPDATED)) && return
	msg "apt-get update"
	as_root apt-get -q -o DPkg::Lock::Timeout=600 update >&2
	APT_UPDATED=1
}

pkg_installed() {
	[[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

# apt_install PKG...: install the packages that are missing.
apt_install() {
	local missing=() p
	for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
	((${#missing[@]})) || return 0
	apt_update_once
	msg "installing host packages: ${missing[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y \
		-o DPkg::Lock::Timeout=600 install --no-install-recommends \
		"${missing[@]}" >&2
}

# apt_pkg NAME: NAME as apt must be told it for the guest's architecture.
apt_pkg() {
	if [[ $DEB_ARCH == "$(dpkg --print-architecture)" ]]; then echo "$1"; else echo "$1:$DEB_ARCH"; fi
}

# ensure_dpkg_arch: a foreign guest architecture must be known to dpkg for
# apt to have its package lists (apt-get download needs them). Only runs
# when something must be downloaded; cached runs never get here. Nothing of
# that architecture is ever installed on the host.
ensure_dpkg_arch() {
	local foreign
	[[ $DEB_ARCH != "$(dpkg --print-architecture)" ]] || return 0
	foreign=$(dpkg --print-foreign-architectures)
	grep -qx "$DEB_ARCH" <<<"$foreign" && return 0
	msg "adding $DEB_ARCH as a dpkg foreign architecture (package lists for apt-get download)"
	as_root dpkg --add-architecture "$DEB_ARCH"
	APT_UPDATED=0
	apt_update_once
}

# apt_download_dir: a fresh temp dir in the cache that `apt-get download`
# can write to (apt drops privileges to the _apt user for downloads).
apt_download_dir() {
	local tmp
	tmp=$(mktemp -d "$CACHE/tmp.XXXXXX")
	chmod 755 "$tmp"
	if ((EUID == 0)) && id _apt >/dev/null 2>&1; then chown _apt "$tmp"; fi
	echo "$tmp"
}

# Tools vm.sh itself needs on the host (checked by command so that the
# common case costs no dpkg queries).
ensure_host_tools() {
	local need=()
	command -v "$QEMU" >/dev/null || need+=("$QEMU_PKG")
	command -v readelf >/dev/null || need+=(binutils) # --bin: machine, static?
	command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
	command -v cpio >/dev/null || need+=(cpio)
	command -v xz >/dev/null || need+=(xz-utils)
	command -v depmod >/dev/null || need+=(kmod)
	command -v zstd >/dev/null || need+=(zstd) # 6.12 bzImage payload
	command -v flock >/dev/null || need+=(util-linux) # also setpriv
	((${#need[@]} == 0)) || apt_install "${need[@]}"
}

# The guest userland is busybox-static. busybox-static conflicts with the
# dynamic busybox package, so if that one is installed we unpack
# busybox-static into the cache instead of replacing the host's busybox.
# A foreign guest architecture always gets the unpacked one.
busybox_path() {
	if [[ $ARCH != x86_64 ]]; then
		[[ -x $CACHE/busybox-static-$DEB_ARCH/bin/busybox ]] || with_cache_lock fetch_busybox_static
		echo "$CACHE/busybox-static-$DEB_ARCH/bin/busybox"
	elif pkg_installed busybox-static; then
		echo /bin/busybox
	elif ! pkg_installed busybox; then
		apt_install busybox-static
		echo /bin/busybox
	else
		[[ -x $CACHE/busybox-static/bin/busybox ]] || with_cache_lock fetch_busybox_static
		echo "$CACHE/busybox-static/bin/busybox"
	fi
}
fetch_busybox_static() {
	local dir=$CACHE/busybox-static tmp pkg
	[[ $ARCH == x86_64 ]] || dir+=-$DEB_ARCH
	[[ ! -x $dir/bin/busybox ]] || return 0
	ensure_dpkg_arch
	pkg=$(apt_pkg busybox-static)
	tmp=$(apt_download_dir)
	(cd "$tmp" && { apt-get -q download "$pkg" >&2 ||
		{ apt_update_once && apt-get -q download "$pkg" >&2; }; })
	dpkg -x "$tmp"/busybox-static_*.deb "$tmp/root"
	rm -rf "$dir"
	mv "$tmp/root" "$dir"
	rm -rf "$tmp"
}

# ---------------------------------------------------------------------------
# Cache and kernels
# ---------------------------------------------------------------------------

init_cache() {
	mkdir -p "$CACHE/debs" "$CACHE/kernels" 2>/dev/null ||
		die "cannot create $CACHE (run as root or set PAGECAM_VM_CACHE)"
	[[ -w $CACHE ]] || die "$CACHE is not writable (set PAGECAM_VM_CACHE)"
}

# with_cache_lock CMD...: serialize cache building between parallel runs.
with_cache_lock() {
	(
		exec {fd}>"$CACHE/.lock"
		flock "$fd"
		# Only lock holders create tmp.* dirs: any found now are leftovers
		# of an interrupted run.
		rm -rf "$CACHE"/tmp.*
		"$@"
	)
}

check_series() {
	[[ $1 == 6.1 || $1 == 6.12 ]] || die "unknown kernel '$1' (use 6.1 or 6.12)"
}

candidate_version() {
	apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" {print $2}'
}

# newest_pkg REGEX: newest installable package in apt's lists matching REGEX
# (pkgnames also lists names apt merely heard of, hence the candidate check).
newest_pkg() {
	local p
	for p in $(apt-cache pkgnames linux-image-6 | grep -E "$1" | sort -rV || true); do
		if [[ -n $(candidate_version "$(apt_pkg "$p")") ]]; then
			echo "$p"
			return
		fi
	done
}

# resolve_kernel_pkg SERIES: the Debian package providing that kernel.
resolve_kernel_pkg() {
	local series=$1 pin pkg a=$DEB_ARCH
	pin=PAGECAM_VM_KERNEL_PKG_${series//./_}
	[[ $ARCH == x86_64 ]] || pin=PAGECAM_VM_KERNEL_PKG_${ARCH^^}_${series//./_}
	if [[ -n ${!pin:-} ]]; then
		echo "${!pin}"
		return
	fi
	local try
	for try in 1 2; do
		case $series in
		6.1) pkg=$(newest_pkg "^linux-image-6\\.1\\.0-[0-9]+-$a\$") ;;
		6.12)
			pkg=$(newest_pkg "^linux-image-6\\.12\\.[0-9]+\\+deb12-$a\$")
			if [[ -z $pkg ]]; then
				pkg=$(newest_pkg "^linux-image-6\\.12\\.[0-9.+~a-z]*bpo[0-9.+~a-z-]*-$a\$")
				[[ -z $pkg ]] || msg "note: no bookworm 6.12 kernel, using backports $pkg"
			fi
			;;
		esac
		[[ -n $pkg ]] && break
		((try == 1)) && apt_update_once
	done
	[[ -n $pkg ]] || die "no linux-image package for $series in apt (apt sources?)"
	echo "$pkg"
}

# kernel_link SERIES: the cache file naming the prepared kernel of SERIES
# for the guest architecture (x86_64 keeps its original name).
kernel_link() {
	if [[ $ARCH == x86_64 ]]; then echo "$CACHE/kernel-$1"; else echo "$CACHE/kernel-$ARCH-$1"; fi
}

# prepare_kernel SERIES: download + unpack the kernel package into
# $CACHE/kernels/<pkg>_<version>/ and point $(kernel_link SERIES) at it.
# Layout: vmlinuz, kver, pkg, root/lib/modules/<kver>/ (depmod'ed).
# Must run under the cache lock.
prepare_kernel() {
	local series=$1 pkg ver name dir link
	ensure_dpkg_arch
	pkg=$(resolve_kernel_pkg "$series")
	ver=$(candidate_version "$(apt_pkg "$pkg")")
	[[ -n $ver ]] || die "apt has no installable version of $pkg"
	name=$(printf '%s_%s' "$pkg" "$ver" | tr -c 'A-Za-z0-9._+\n-' '_')
	dir=$CACHE/kernels/$name
	if [[ ! -f $dir/.complete ]]; then
		local tmp deb
		tmp=$(apt_download_dir)
		# .deb names encode an epoch colon as %3a.
		deb=$CACHE/debs/${pkg}_${ver//:/%3a}_$DEB_ARCH.deb
		[[ -f $deb ]] || deb=
		if [[ -z $deb ]]; then
			msg "downloading $pkg $ver"
			(cd "$tmp" && apt-get -q download "$(apt_pkg "$pkg")=$ver" >&2)
			deb=$(echo "$tmp"/*.deb)
			mv "$deb" "$CACHE/debs/"
			deb=$CACHE/debs/${deb##*/}
		fi
		msg "unpacking $deb"
		mkdir "$tmp/k"
		dpkg -x "$deb" "$tmp/k/root"
		local kroot=$tmp/k/root kver
		# Merged-/usr packages ship usr/lib/modules; depmod -b wants lib/.
		if [[ ! -d $kroot/lib/modules && -d $kroot/usr/lib/modules ]]; then
			ln -s usr/lib "$kroot/lib"
		fi
		kver=$(basename "$(find "$kroot/lib/modules/" -mindepth 1 -maxdepth 1 -type d | head -n 1)")
		[[ -n $kver && -f $kroot/boot/vmlinuz-$kver ]] || die "unexpected layout in $deb"
		# Debian generates modules.dep in postinst; we do it here. Host kmod
		# reads .ko.xz, so the full tree can stay compressed.
		depmod -b "$kroot" "$kver"
		mv "$kroot/boot/vmlinuz-$kver" "$tmp/k/vmlinuz"
		echo "$kver" >"$tmp/k/kver"
		echo "$pkg $ver" >"$tmp/k/pkg"
		touch "$tmp/k/.complete"
		rm -rf "$dir"
		mv "$tmp/k" "$dir"
		rm -rf "$tmp"
	fi
	link=$(kernel_link "$series")
	echo "$name" >"$link.tmp"
	mv "$link.tmp" "$link"
	msg "kernel $series: $(cat "$dir/pkg") ($(cat "$dir/kver"))"
}

# extract_vmlinux KDIR: decompress the bzImage payload into KDIR/vmlinux.
# Why: under TCG the kernel's own decompressor takes 1.5-2.5 s (6.1 is xz,
# 6.12 zstd); qemu can boot the uncompressed ELF directly through its PVH
# entry point (CONFIG_PVH=y in Debian's kernels), which halves boot time.
# Same kernel, other boot path; PAGECAM_VM_BZIMAGE=1 boots vmlinuz instead.
# Must run under the cache lock.
extract_vmlinux() {
	local kdir=$1 img=$1/vmlinuz out=$1/vmlinux.tmp pair magic tool off
	[[ ! -f $kdir/vmlinux && ! -f $kdir/vmlinux.none ]] || return 0
	if grep -q '^CONFIG_PVH=y' "$kdir"/root/boot/config-*; then
		msg "extracting uncompressed kernel $kdir/vmlinux"
		# Same approach as the kernel's scripts/extract-vmlinux.
		for pair in '\xfd7zXZ\x00:xz' '\x28\xb5\x2f\xfd:zstd' '\x1f\x8b\x08:gzip'; do
			magic=${pair%:*} tool=${pair##*:}
			command -v "$tool" >/dev/null || continue
			for off in $(LC_ALL=C grep -obUaP "$magic" "$img" | head -n 3 | cut -d: -f1); do
				# Trailing bytes after the stream make the tools complain.
				tail -c +$((off + 1)) "$img" | "$tool" -dc >"$out" 2>/dev/null || true
				if [[ $(head -c 4 "$out" | od -An -c | tr -d ' ') == 177ELF ]]; then
					mv "$out" "$kdir/vmlinux"
					return 0
				fi
			done
		done
	fi
	rm -f "$out"
	msg "note: could not extract an uncompressed kernel; booting the bzImage (slower)"
	touch "$kdir/vmlinux.none"
}

# ---------------------------------------------------------------------------
# Initramfs
# ---------------------------------------------------------------------------

# make_cpio DIR OUT: newc archive of DIR, owned by root, atomically written.
make_cpio() {
	(cd "$1" && find . -mindepth 1 | LC_ALL=C sort |
		cpio -o -H newc -R 0:0 --quiet) >"$2.tmp"
	mv "$2.tmp" "$2"
}

# resolve_modules MODDIR NAME...: prints "file PATH" for every module file
# needed (modules.dep lists transitive dependencies), "load NAME" for the
# names to modprobe, and "builtin NAME" for names built into the kernel.
resolve_modules() {
	local mdir=$1
	shift
	awk -v want="$*" '
		function norm(p) { sub(/.*\//, "", p); sub(/\.ko(\.(xz|zst|gz))?$/, "", p)
			gsub(/-/, "_", p); return p }
		FILENAME ~ /modules\.dep$/ { k = $1; sub(/:$/, "", k); n = norm(k)
			path[n] = k; deps[n] = ""
			for (i = 2; i <= NF; i++) deps[n] = deps[n] " " $i; next }
		{ builtin[norm($1)] = 1 }
		END { n = split(want, w, " ")
			for (i = 1; i <= n; i++) { m = w[i]; gsub(/-/, "_", m)
				if (m in path) { print "load " m; print "file " path[m]
					c = split(deps[m], d, " "); for (j = 1; j <= c; j++) print "file " d[j] }
				else if (m in builtin) print "builtin " m
				else { print "missing " m; bad = 1 } }
			exit bad }' "$mdir/modules.dep" "$mdir/modules.builtin"
}

# build_base KDIR OUT BUSYBOX: build the cached base archive (busybox,
# modules, module load list). Must run under the cache lock.
build_base() {
	local kdir=$1 out=$2 busybox=$3 kver mdir stage line
	[[ ! -f $out ]] || return 0 # built by a parallel run meanwhile
	msg "building base initramfs $out"
	kver=$(cat "$kdir/kver")
	mdir=$kdir/root/lib/modules/$kver
	stage=$(mktemp -d "$CACHE/tmp.XXXXXX")
	chmod 755 "$stage"
	# Merged-/usr layout like Debian; --bin libs are placed under /usr.
	mkdir -p "$stage"/usr/{bin,sbin,lib,lib64} "$stage"/{dev,proc,sys,tmp,run,data,root} \
		"$stage/etc/pagecam-vm"
	local l
	for l in bin sbin lib lib64; do ln -s "usr/$l" "$stage/$l"; done
	cp "$busybox" "$stage/usr/bin/busybox"
	if [[ $ARCH == x86_64 ]]; then
		for l in $("$busybox" --list); do
			[[ $l == busybox ]] || ln -s busybox "$stage/usr/bin/$l"
		done
	else
		# A foreign busybox cannot run here to list its applets: /init (run
		# by /bin/sh) makes the other links with `busybox --install -s`.
		ln -s busybox "$stage/usr/bin/sh"
	fi
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$stage/etc/passwd"
	printf 'root:x:0:\ntty:x:5:\nvideo:x:44:\n' >"$stage/etc/group"

	local resolved
	resolved=$(resolve_modules "$mdir" "${DISK_MODULES[@]}" vivid) ||
		die "modules not found in $kver: $(grep '^missing' <<<"$resolved" | cut -d' ' -f2 | xargs)"
	local smdir=$stage/usr/lib/modules/$kver f dst
	while read -r line; do
		case $line in
		file\ *)
			f=${line#file }
			dst=${f%.xz} dst=${dst%.zst} dst=$smdir/${dst%.gz}
			[[ -f $dst ]] && continue
			mkdir -p "$(dirname "$dst")"
			# busybox modprobe cannot load compressed modules (6.12: .ko.xz).
			case $f in
			*.xz) xz -dc "$mdir/$f" >"$dst" ;;
			*.zst) zstd -qdc "$mdir/$f" >"$dst" ;;
			*.gz) gzip -dc "$mdir/$f" >"$dst" ;;
			*) cp "$mdir/$f" "$dst" ;;
			esac
			;;
		load\ vivid) ;; # loaded separately, with options
		load\ *) echo "${line#load }" >>"$stage/etc/pagecam-vm/disk_modules" ;;
		esac
	done <<<"$resolved"
	touch "$stage/etc/pagecam-vm/disk_modules"
	cp "$mdir"/modules.{builtin,builtin.modinfo,order} "$smdir/" 2>/dev/null || true
	depmod -b "$stage" "$kver"
	make_cpio "$stage" "$out"
	rm -rf "$stage"
	# Archives of other keys come from older versions of this script.
	find "$kdir" -maxdepth 1 -name 'base-*.cpio' ! -path "$out" -delete
}

kernel_ready() {
	local link
	link=$(kernel_link "$1")
	[[ -f $link && -f $CACHE/kernels/$(cat "$link")/.complete ]]
}
# (a parallel run may have prepared it while we waited for the lock)
prepare_kernel_if_missing() { kernel_ready "$1" || prepare_kernel "$1"; }

# ensure_kernel SERIES: sets KDIR, KERNEL_IMAGE and BASE_CPIO, preparing
# what is missing.
ensure_kernel() {
	local series=$1 busybox key
	check_series "$series"
	if ! kernel_ready "$series"; then
		with_cache_lock prepare_kernel_if_missing "$series"
	fi
	KDIR=$CACHE/kernels/$(cat "$(kernel_link "$series")")
	busybox=$(busybox_path)
	key=$({
		echo "$BASE_FORMAT ${DISK_MODULES[*]}"
		sha256sum "$busybox" | cut -d' ' -f1
	} | sha256sum | cut -c1-16)
	BASE_CPIO=$KDIR/base-$key.cpio
	[[ -f $BASE_CPIO ]] || with_cache_lock build_base "$KDIR" "$BASE_CPIO" "$busybox"
	KERNEL_IMAGE=$KDIR/vmlinuz
	# arm64: Debian's vmlinuz is the kernel's Image (qemu loads it directly,
	# gzipped or not); the PVH shortcut below is x86 only.
	[[ $ARCH == x86_64 ]] || return 0
	[[ -f $KDIR/vmlinux || -f $KDIR/vmlinux.none ]] || with_cache_lock extract_vmlinux "$KDIR"
	if [[ -f $KDIR/vmlinux && ${PAGECAM_VM_BZIMAGE:-0} != 1 ]]; then
		KERNEL_IMAGE=$KDIR/vmlinux
	fi
}

# guest_path PATH: map /bin, /lib... to /usr/... (the guest is merged-/usr
# with symlinks, and cpio entries must not go through those symlinks).
guest_path() {
	case $1 in
	/bin/* | /sbin/* | /lib/* | /lib64/*) echo "/usr$1" ;;
	/*) echo "$1" ;;
	*) die "guest path must be absolute: $1" ;;
	esac
}

# Where staged files go: the initramfs itself, or with --systemd the trees
# /init copies into the Debian root (FILES over it, LIBS only where the
# root has no such file: it has its own C library).
STAGE_FILES='' STAGE_LIBS=''
# stage_file SRC GUESTPATH [BASE]: copy SRC (symlinks resolved) into the run
# stage (BASE: default STAGE_FILES).
stage_file() {
	local dst
	dst=${3:-$STAGE_FILES}$(guest_path "$2")
	[[ -f $1 ]] || die "no such file: $1"
	mkdir -p "$(dirname "$dst")"
	cp -L --preserve=mode "$1" "$dst"
}

# elf_kind FILE: "MACHINE LINKAGE". MACHINE: x86_64, aarch64, arm, other,
# or notelf (a script); LINKAGE: dynamic if it names an ELF interpreter
# (ld.so), else static (static-pie included).
elf_kind() {
	local hdr machine linkage=static
	hdr=$(LC_ALL=C readelf -hlW "$1" 2>/dev/null) || {
		echo "notelf static"
		return
	}
	case $(sed -n 's/^ *Machine: *//p' <<<"$hdr") in
	*X86-64) machine=x86_64 ;;
	AArch64) machine=aarch64 ;;
	ARM) machine=arm ;;
	*) machine=other ;;
	esac
	grep -q '^ *INTERP ' <<<"$hdr" && linkage=dynamic
	echo "$machine $linkage"
}

# stage_bin HOSTPATH: executable to /usr/bin plus its shared libraries at the
# paths ldd reports (ldd also gives the ELF interpreter). arm64 guests take
# static executables only: ldd cannot resolve a foreign binary's libraries
# and the guest has no aarch64 C library to run them with.
stage_bin() {
	local bin=$1 out lib kind
	[[ -f $bin && -x $bin ]] || die "--bin: not an executable file: $bin"
	kind=$(elf_kind "$bin")
	if [[ $ARCH == arm64 ]]; then
		case $kind in
		aarch64\ static | arm\ static | notelf\ *) ;; # arm: 32-bit, via CONFIG_COMPAT
		aarch64\ dynamic | arm\ dynamic)
			die "--bin $bin: dynamically linked (${kind% *}; needs $(readelf -lW "$bin" |
				sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')); arm64 guests have no C library:" \
				"use a static build (scripts/cross.sh aarch64-unknown-linux-musl: target/aarch64-unknown-linux-musl/release/)"
			;;
		*) die "--bin $bin: ${kind% *} executable; it cannot run in an arm64 guest" ;;
		esac
		stage_file "$bin" "/usr/bin/$(basename "$bin")"
		return
	fi
	case $kind in
	aarch64\ * | arm\ *) die "--bin $bin: ${kind% *} executable; it cannot run in an x86_64 guest (--arch arm64?)" ;;
	esac
	stage_file "$bin" "/usr/bin/$(basename "$bin")"
	if out=$(ldd "$bin" 2>&1); then
		if grep -q 'not found' <<<"$out"; then
			die "--bin $bin: missing libraries: $(grep 'not found' <<<"$out" | xargs)"
		fi
		while read -r lib; do
			stage_file "$lib" "$lib" "$STAGE_LIBS"
		done < <(awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$out")
		# Lets the guest's ld.so find libraries outside the default dirs
		# (e.g. /usr/local/lib) at the same paths as on the host. (A
		# Debian root keeps its own cache.)
		[[ ! -f /etc/ld.so.cache || $STAGE_LIBS != "$STAGE" ]] || cp /etc/ld.so.cache "$STAGE/etc/ld.so.cache"
	fi # else: static executable (ldd fails on those)
}

# ---------------------------------------------------------------------------
# The Debian root for --systemd
# ---------------------------------------------------------------------------

# host_mirror: the host's Debian mirror (apt sources), as fresh-machine.sh.
host_mirror() {
	local m
	m=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
		awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }
		     /^deb / { print ($2 ~ /^\[/ ? $3 : $2) }' |
		grep -E '/debian/?$' | head -n 1 || true)
	echo "${m:-http://deb.debian.org/debian}"
}

# sysroot_image: the cache path of the root image for this recipe.
sysroot_image() {
	local key
	key=$(echo "$SYSROOT_FORMAT $SYSROOT_SUITE $(host_mirror) ${SYSROOT_PACKAGES[*]}" \
		"${SYSROOT_MASK[*]} ${SYSROOT_MASK_GENERATORS[*]}" |
		sha256sum | cut -c1-12)
	echo "$CACHE/sysroot/debian12-systemd-$key.img"
}

# build_sysroot OUT: debootstrap the root and make OUT, an ext4 image of
# it. Must run under the cache lock. Needs root (debootstrap; files owned
# by other users), through as_root.
build_sysroot() {
	local out=$1 tmp r mirror t0=$SECONDS u
	[[ ! -f $out ]] || return 0 # built by a parallel run meanwhile
	[[ $ARCH == x86_64 ]] || die "--systemd: x86_64 guests only"
	command -v debootstrap >/dev/null || apt_install debootstrap
	mirror=$(host_mirror)
	mkdir -p "$CACHE/sysroot"
	tmp=$(mktemp -d "$CACHE/tmp.XXXXXX")
	r=$tmp/root
	msg "debootstrap --variant=minbase $SYSROOT_SUITE + ${SYSROOT_PACKAGES[*]} from $mirror (once; cached as $out)"
	as_root debootstrap --variant=minbase --include="$(
		IFS=,
		echo "${SYSROOT_PACKAGES[*]}"
	)" "$SYSROOT_SUITE" "$r" "$mirror" >"$tmp/debootstrap.log" 2>&1 || {
		tail -n 30 "$tmp/debootstrap.log" >&2
		as_root rm -rf "$tmp"
		die "debootstrap failed"
	}
	# A fixed machine id: an empty one would make every boot a "first
	# boot" (presets applied to every unit, firstboot prompts).
	as_root sh -c "od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >'$r/etc/machine-id'; echo >>'$r/etc/machine-id'"
	as_root sh -c "echo pagecam-vm >'$r/etc/hostname'"
	as_root sh -c "printf '127.0.0.1 localhost\n127.0.1.1 pagecam-vm\n' >'$r/etc/hosts'"
	# The initramfs mounts the root read-write; nothing else to mount.
	as_root sh -c "echo '# the root is mounted by the pagecam-vm initramfs' >'$r/etc/fstab'"
	as_root mkdir -p "$r/etc/systemd/journald.conf.d"
	as_root sh -c "printf '[Journal]\nStorage=volatile\n' >'$r/etc/systemd/journald.conf.d/pagecam-vm.conf'"
	for u in "${SYSROOT_MASK[@]}"; do
		as_root ln -sf /dev/null "$r/etc/systemd/system/$u"
	done
	as_root mkdir -p "$r/etc/systemd/system-generators"
	for u in "${SYSROOT_MASK_GENERATORS[@]}"; do
		as_root ln -sf /dev/null "$r/etc/systemd/system-generators/$u"
	done
	as_root rm -rf "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/*
	# Sparse; writes in a run go to qemu's snapshot overlay, never here.
	truncate -s 2G "$tmp/root.img"
	as_root mkfs.ext4 -q -F -L pagecam-root -E lazy_itable_init=0,lazy_journal_init=0 \
		-d "$r" "$tmp/root.img" || die "mkfs.ext4 -d failed"
	find "$CACHE/sysroot" -maxdepth 1 -name 'debian12-systemd-*.img' -delete
	mv "$tmp/root.img" "$out"
	as_root rm -rf "$tmp"
	msg "Debian 12 systemd root built in $((SECONDS - t0))s: $(du -h "$out" | cut -f1) used of 2G, $out"
}

# ensure_sysroot: sets SYSROOT_IMG, building it if missing.
ensure_sysroot() {
	SYSROOT_IMG=$(sysroot_image)
	[[ -f $SYSROOT_IMG ]] || with_cache_lock build_sysroot "$SYSROOT_IMG"
}

# ---------------------------------------------------------------------------
# Running the VM
# ---------------------------------------------------------------------------

# to_usec SEC: fractional seconds -> integer microseconds.
to_usec() {
	[[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "not a number of seconds: $1"
	awk -v s="$1" 'BEGIN { printf "%d\n", s * 1000000 }'
}
# now_usec VAR / fmt_sec VAR USEC: set VAR without a subshell (the console
# loop runs them for every line; forks there cost seconds on big outputs).
now_usec() {
	local t=${EPOCHREALTIME//[!0-9]/}
	printf -v "$1" '%d' $((10#$t))
}
fmt_sec() { printf -v "$1" '%d.%02d' $(($2 / 1000000)) $(($2 % 1000000 / 10000)); }

WORK=
QEMU_PID=
# make_work_dir: sets WORK to a fresh per-run dir. Also removes the work dirs
# of runs that were SIGKILLed (their EXIT trap never ran): each dir records
# its owner's pid.
make_work_dir() {
	local d pid
	for d in "${TMPDIR:-/tmp}"/pagecam-vm.*/; do
		[[ -f $d/pid ]] || continue
		pid=$(cat "$d/pid" 2>/dev/null) || continue
		[[ -d /proc/$pid ]] || rm -rf "$d" 2>/dev/null || true
	done
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/pagecam-vm.XXXXXX")
	echo $$ >"$WORK/pid"
}
cleanup() {
	if [[ -n $QEMU_PID ]] && kill -0 "$QEMU_PID" 2>/dev/null; then
		kill -KILL "$QEMU_PID" 2>/dev/null || true
	fi
	[[ -z $WORK ]] || rm -rf "$WORK"
}

# run_vm MODE ARGS...: MODE is run or shell.
run_vm() {
	local mode=$1
	shift
	local series="" disk="" mkdisk="" vivid_opts="" timeout="" kill_on=""
	local kill_delay=0 mem=1024 append="" verbose=0 v4l2ctl=0 systemd=0 disk_at=""
	local bins=() adds=() cmd=""
	while (($#)); do
		case $1 in
		--arch | --kernel | --bin | --add | --disk | --mkdisk | --vivid | --timeout | \
			--kill-on | --kill-delay | --mem | --append | --disk-at)
			(($# >= 2)) || die "$1 needs a value"
			case $1 in
			--arch) set_arch "$2" ;;
			--kernel) series=$2 ;;
			--bin) bins+=("$2") ;;
			--add) adds+=("$2") ;;
			--disk) disk=$2 ;;
			--mkdisk) mkdisk=$2 ;;
			--vivid) vivid_opts=$2 ;;
			--timeout) timeout=$2 ;;
			--kill-on) kill_on=$2 ;;
			--kill-delay) kill_delay=$2 ;;
			--mem) mem=$2 ;;
			--append) append=$2 ;;
			--disk-at) disk_at=$2 ;;
			esac
			shift
			;;
		--v4l2-ctl) v4l2ctl=1 ;;
		--systemd) systemd=1 ;;
		--verbose) verbose=1 ;;
		-h | --help) usage 0 ;;
		--)
			shift
			cmd=$* # several words are joined with spaces, like ssh does
			break
			;;
		*) die "unknown option '$1' (the guest command goes after --)" ;;
		esac
		shift
	done
	[[ -n $series ]] || die "--kernel 6.1|6.12 is required"
	[[ $mode == shell || -n $cmd ]] || die "no guest command (give it after --)"
	[[ -z $mkdisk || -n $disk ]] || die "--mkdisk needs --disk IMG"
	[[ -z $kill_on || $mode == run ]] || die "--kill-on is for run only"
	[[ $mem =~ ^[0-9]+$ ]] || die "--mem wants megabytes, got '$mem'"
	((!v4l2ctl)) || [[ $ARCH == x86_64 ]] ||
		die "--v4l2-ctl is for x86_64 guests (it copies the host's dynamically linked v4l2-ctl); in $ARCH guests set controls with pagecam-capture --ctrl"
	((!systemd)) || [[ $ARCH == x86_64 ]] || die "--systemd: x86_64 guests only"
	[[ -z $disk_at ]] || ((systemd)) || die "--disk-at is for --systemd guests (the busybox guest mounts --disk at /data)"
	[[ -n $disk_at ]] || disk_at=/data
	[[ $disk_at == /?* && $disk_at != *[[:space:]]* && $disk_at != *..* ]] ||
		die "--disk-at wants an absolute path without spaces, got '$disk_at'"
	[[ -n $timeout ]] || { [[ $mode == run ]] && timeout=600 || timeout=0; }
	local timeout_us kill_delay_us
	timeout_us=$(to_usec "$timeout")
	kill_delay_us=$(to_usec "$kill_delay")

	ensure_host_tools
	init_cache
	ensure_kernel "$series"
	((!systemd)) || ensure_sysroot
	((v4l2ctl)) && { command -v v4l2-ctl >/dev/null || apt_install v4l-utils; }

	trap cleanup EXIT
	make_work_dir
	trap 'exit 130' INT
	trap 'exit 143' TERM
	STAGE=$WORK/stage
	mkdir -p "$STAGE/etc/pagecam-vm"

	# Per-run archive: /init, config, files.
	cp "$SCRIPT_DIR/init.sh" "$STAGE/init"
	chmod 755 "$STAGE/init"
	local c=$STAGE/etc/pagecam-vm
	echo "$mode" >"$c/mode"
	printf '%s\n' "$cmd" >"$c/cmd"
	printf '%s\n' "$vivid_opts" >"$c/vivid_opts"
	if [[ -n $disk ]]; then echo 1 >"$c/disk"; else echo 0 >"$c/disk"; fi
	if [[ $mode == shell ]] && [[ -t 0 ]]; then
		stty size >"$c/term_size" 2>/dev/null || true
	fi
	STAGE_FILES=$STAGE STAGE_LIBS=$STAGE
	if ((systemd)); then
		echo systemd >"$c/init"
		echo "$disk_at" >"$c/disk_at"
		STAGE_FILES=$STAGE/sysroot-files STAGE_LIBS=$STAGE/sysroot-libs
		mkdir -p "$STAGE_FILES" "$STAGE_LIBS"
		# The command's service and the target it boots to.
		stage_file "$SCRIPT_DIR/systemd/pagecam-vm.target" /etc/systemd/system/pagecam-vm.target
		stage_file "$SCRIPT_DIR/systemd/pagecam-vm-run.service" /etc/systemd/system/pagecam-vm-run.service
		stage_file "$SCRIPT_DIR/systemd/run.sh" /usr/lib/pagecam-vm/run
		if [[ $mode == shell ]]; then
			mkdir -p "$STAGE_FILES/etc/systemd/system/pagecam-vm-run.service.d"
			printf '[Service]\nStandardInput=tty\n' \
				>"$STAGE_FILES/etc/systemd/system/pagecam-vm-run.service.d/shell.conf"
		fi
	fi
	local b a
	((v4l2ctl)) && stage_bin "$(command -v v4l2-ctl)"
	for b in "${bins[@]}"; do stage_bin "$b"; done
	for a in "${adds[@]}"; do
		[[ $a == *:* ]] || die "--add wants HOSTPATH:GUESTPATH, got '$a'"
		[[ -z $disk || ${a#*:} != "$disk_at"/* ]] || die "--add to $disk_at is hidden by the --disk mount"
		stage_file "${a%%:*}" "${a#*:}"
	done
	make_cpio "$STAGE" "$WORK/run.cpio"
	cat "$BASE_CPIO" "$WORK/run.cpio" >"$WORK/initrd"

	# Disk. The guest sees a write-back cache and must flush; with
	# cache=none qemu writes with O_DIRECT, so whatever the guest wrote
	# (and certainly what it flushed) is in IMG when qemu is SIGKILLed.
	local drive=()
	if [[ -n $disk ]]; then
		if [[ -n $mkdisk ]]; then
			rm -f "$disk"
			truncate -s "$mkdisk" "$disk"
			mkfs.ext4 -F -q -E lazy_itable_init=0,lazy_journal_init=0 "$disk"
		fi
		[[ -f $disk ]] || die "--disk $disk does not exist (use --mkdisk SIZE)"
		local cache=none
		# O_DIRECT is unsupported on some file systems (older tmpfs).
		if ! dd if="$disk" of=/dev/null bs=4096 count=1 iflag=direct status=none 2>/dev/null; then
			cache=writethrough
			msg "note: O_DIRECT unsupported for $disk, using cache=$cache"
		fi
		drive=(-drive "file=$disk,if=virtio,format=raw,cache=$cache")
	fi
	# --systemd: the root is the first disk (vda, so --disk is vdb). Its
	# writes go to a temporary overlay that qemu deletes at exit, so runs
	# never change the cached image and can share it.
	((!systemd)) || drive=(-drive "file=$SYSROOT_IMG,if=virtio,format=raw,snapshot=on" "${drive[@]}")

	# panic=-1 + -no-reboot: a guest panic ends qemu instead of hanging.
	# mitigations=off, cryptomgr.notests: save boot time under TCG (PTI and
	# crypto self-tests are slow to emulate and irrelevant here).
	local console=ttyS0
	[[ $ARCH == x86_64 ]] || console=ttyAMA0 # virt's PL011 UART
	local kargs="console=$console panic=-1 mitigations=off cryptomgr.notests"
	if ((verbose)); then kargs+=" loglevel=7"; else kargs+=" quiet loglevel=3"; fi
	# systemd: the command's target instead of multi-user.target; its own
	# messages on the console only for errors (the console is the output).
	((!systemd)) || kargs+=" systemd.unit=pagecam-vm.target systemd.show_status=error"
	[[ -z $append ]] || kargs+=" $append"
	local serial=stdio
	[[ $mode == shell ]] && serial=mon:stdio # Ctrl-A x / Ctrl-A c
	# setpriv --pdeathsig: qemu dies with this script even if the script is
	# SIGKILLed (e.g. by a test runner's timeout), instead of lingering.
	local machine=(-machine pc)
	# virt: the generic Arm board (PL011 UART, PCIe host with virtio-pci,
	# PSCI for poweroff); cortex-a72 as on a Raspberry Pi 4. -cpu max would
	# emulate pointer authentication, which is slow under TCG.
	[[ $ARCH == x86_64 ]] || machine=(-machine virt -cpu cortex-a72)
	local qemu=(setpriv --pdeathsig KILL "$QEMU" -accel tcg "${machine[@]}" -m "$mem" -smp 2
		-nodefaults -no-user-config -display none -serial "$serial" -no-reboot
		-kernel "$KERNEL_IMAGE" -initrd "$WORK/initrd" -append "$kargs"
		"${drive[@]}")
	((verbose)) && msg "${qemu[*]}"

	if [[ $mode == shell ]]; then
		local rc=0
		"${qemu[@]}" || rc=$?
		exit "$rc"
	fi
	watch_console "$timeout_us" "$kill_on" "$kill_delay_us" "$series" "${qemu[@]}"
}

# watch_console TIMEOUT_US MARKER DELAY_US SERIES QEMU...: run qemu with its
# serial console on a FIFO, relay it line by line, enforce the timeout and
# the power cut, and exit with the guest command's status.
watch_console() {
	local timeout_us=$1 kill_on=$2 kill_delay_us=$3 series=$4
	shift 4
	mkfifo "$WORK/console"
	# stdin is /dev/null so qemu never touches a developer's terminal.
	"$@" </dev/null >"$WORK/console" 2>"$WORK/qemu.stderr" &
	QEMU_PID=$!
	local fd
	exec {fd}<"$WORK/console"

	local start now next deadline=0 cut_at=0 killed="" carry="" line rc
	local status="" init_failed="" ready_at=0 marker_at=0 wait_s t1 t2
	now_usec start
	((timeout_us > 0)) && deadline=$((start + timeout_us))
	while :; do
		now_usec now
		if ((cut_at > 0 && now >= cut_at)); then
			kill -KILL "$QEMU_PID" 2>/dev/null && killed=powercut
			cut_at=0 deadline=0
		elif ((deadline > 0 && now >= deadline)); then
			kill -KILL "$QEMU_PID" 2>/dev/null && killed=timeout
			deadline=0
		fi
		next=$deadline
		((cut_at > 0 && (next == 0 || cut_at < next))) && next=$cut_at
		rc=0
		if ((next > 0)); then
			fmt_sec wait_s $((next - now + 10000))
			IFS= read -r -t "$wait_s" -u "$fd" line || rc=$?
		else
			IFS= read -r -u "$fd" line || rc=$?
		fi
		if ((rc > 128)); then # timed out; keep a partial line for later
			carry+=$line
			continue
		fi
		line=$carry$line
		carry=""
		((rc != 0)) && [[ -z $line ]] && break # EOF
		line=${line%$'\r'}
		case $line in
		PAGECAM_GUEST_READY) now_usec ready_at ;;
		*PAGECAM_GUEST_EXIT=*)
			[[ -z ${line%%PAGECAM_GUEST_EXIT=*} ]] || printf '%s\n' "${line%%PAGECAM_GUEST_EXIT=*}"
			status=${line##*PAGECAM_GUEST_EXIT=}
			;;
		*PAGECAM_INIT_FAILED*)
			init_failed=${line#*PAGECAM_INIT_FAILED: }
			msg "guest setup failed: $init_failed"
			;;
		"[pagecam-vm] "*) printf '%s\n' "$line" >&2 ;;
		*"reboot: Power down") ;;
		*)
			# After the exit marker only kernel shutdown noise can follow.
			if [[ -n $status ]]; then printf '%s\n' "$line" >&2; else printf '%s\n' "$line"; fi
			;;
		esac
		if [[ -n $kill_on && $marker_at == 0 && $line == *"$kill_on"* ]]; then
			now_usec marker_at
			cut_at=$((marker_at + kill_delay_us))
		fi
		((rc == 0)) || break # EOF after a last unterminated line
	done
	exec {fd}<&-
	local qrc=0
	# (braces+redirect: no "Killed" job notice from bash after a SIGKILL)
	{ wait "$QEMU_PID" || qrc=$?; } 2>/dev/null
	QEMU_PID=
	# kill(2) also "succeeds" on a qemu that already exited (a zombie until
	# wait); only a SIGKILL exit status proves that we cut it off.
	((qrc == 128 + 9)) || killed=""

	now_usec now
	local summary
	summary="kernel $series ($(cat "$KDIR/kver")):"
	fmt_sec t1 $((ready_at - start))
	fmt_sec t2 $((now - start))
	((ready_at == 0)) || summary+=" booted in ${t1}s,"
	summary+=" total ${t2}s"
	fmt_sec t1 "$kill_delay_us"
	fmt_sec t2 "$timeout_us"
	case $killed in
	powercut)
		msg "POWER CUT: qemu SIGKILLed ${t1}s after the guest printed '$kill_on' ($summary)"
		[[ -z $status ]] || msg "note: the guest command had already exited with $status"
		exit "$EXIT_POWERCUT"
		;;
	timeout)
		msg "TIMEOUT: guest still running after ${t2}s, qemu killed ($summary)"
		exit "$EXIT_TIMEOUT"
		;;
	esac
	((marker_at == 0)) || msg "note: '$kill_on' was seen but the guest powered off before the cut"
	if [[ -n $init_failed ]]; then
		exit "$EXIT_HARNESS"
	fi
	if [[ ! $status =~ ^[0-9]+$ ]]; then
		[[ ! -s $WORK/qemu.stderr ]] || sed 's/^/[qemu] /' "$WORK/qemu.stderr" >&2
		msg "guest ended without an exit status (qemu status $qrc; kernel panic? rerun with --verbose) ($summary)"
		exit "$EXIT_HARNESS"
	fi
	msg "$summary, exit $status"
	exit "$status"
}

# ---------------------------------------------------------------------------
# Other subcommands
# ---------------------------------------------------------------------------

cmd_prepare() {
	local series=() s systemd=0
	while (($#)); do
		case $1 in
		--systemd) systemd=1 ;;
		--arch)
			(($# >= 2)) || die "--arch needs a value"
			set_arch "$2"
			shift
			;;
		*) series+=("$1") ;;
		esac
		shift
	done
	((${#series[@]})) || series=(6.1 6.12)
	for s in "${series[@]}"; do check_series "$s"; done
	ensure_host_tools
	[[ $ARCH != x86_64 ]] || command -v v4l2-ctl >/dev/null || apt_install v4l-utils
	init_cache
	for s in "${series[@]}"; do
		# Re-resolve: picks up a newer kernel package if apt has one.
		with_cache_lock prepare_kernel "$s"
		ensure_kernel "$s"
		msg "base initramfs: $BASE_CPIO"
	done
	if ((systemd)); then
		ensure_sysroot
		msg "systemd root: $SYSROOT_IMG"
	fi
}

# pull IMG GUESTPATH HOSTPATH. debugfs does not replay the ext4 journal, so an
# image left by a power cut is first recovered on a temporary copy (the
# original stays untouched, as the next boot would find it).
cmd_pull() {
	(($# == 3)) || die "usage: vm.sh pull IMG GUESTPATH HOSTPATH"
	local img=$1 path=$2 out=$3 src
	[[ -f $img ]] || die "no such image: $img"
	command -v debugfs >/dev/null || apt_install e2fsprogs
	src=$img
	trap cleanup EXIT
	make_work_dir
	[[ $path$out != *[[:space:]]* ]] || die "pull: paths with spaces are not supported"
	# (output captured first: `cmd | grep -q` can fail on SIGPIPE with pipefail)
	local info
	info=$(dumpe2fs -h "$img" 2>/dev/null) || die "not an ext4 image: $img"
	if grep -q '^Filesystem features:.*needs_recovery' <<<"$info"; then
		msg "note: $img needs journal recovery; replaying it on a copy"
		cp --sparse=always "$img" "$WORK/img"
		src=$WORK/img
		e2fsck -E journal_only -y "$src" >/dev/null 2>&1 || true
	fi
	# The guest mounts the image at /data: accept /data/x for /x.
	info=$(debugfs -R "stat $path" "$src" 2>&1)
	if [[ $path == /data/* ]] && ! grep -q '^Inode:' <<<"$info"; then
		path=${path#/data}
		info=$(debugfs -R "stat $path" "$src" 2>&1)
	fi
	grep -q '^Inode:.*Type: regular' <<<"$info" || die "not a regular file in $img: $path"
	rm -f "$out"
	debugfs -R "dump $path $out" "$src" >/dev/null 2>&1
	[[ -f $out ]] || die "debugfs could not dump $path"
}

main() {
	(($#)) || usage
	local sub=$1
	shift
	case $sub in
	prepare) cmd_prepare "$@" ;;
	run) run_vm run "$@" ;;
	shell) run_vm shell "$@" ;;
	pull) cmd_pull "$@" ;;
	-h | --help | help) usage 0 ;;
	*) die "unknown subcommand '$sub' (prepare, run, shell, pull)" ;;
	esac
}

main "$@"

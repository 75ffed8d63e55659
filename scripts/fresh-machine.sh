#!/usr/bin/env bash
# fresh-machine.sh - do the README's two commands work on a fresh Debian 12
# machine that has nothing but a Rust toolchain? CI runs this so that a
# missing dependency fails here, not on a user's board or laptop.
#
#   scripts/fresh-machine.sh [--rev REV] [--with PKG]... [--keep] [--rebuild]
#
#   --rev REV    check this commit (default HEAD; `git archive`, so only
#                committed files count, as in a clean checkout)
#   --with PKG   a fresh machine that also has PKG (apt-get install, before
#                anything else). scripts/test.sh uses --with clang-format:
#                it brings libclang-cpp.so.14 but no libclang, the state
#                that fooled setup.sh's `ldconfig -p | grep libclang`
#   --keep       keep the root afterwards (printed; mounts are removed anyway)
#   --rebuild    build the cached Debian root again
#
# What it does:
# 1. Once, cached as a tarball in ${PAGECAM_VM_CACHE:-/var/cache/pagecam-vm}/fresh/:
#    a Debian 12 root from debootstrap --variant=minbase plus what Debian's
#    official "genericcloud" image (cloud.debian.org; what a fresh cloud VM
#    runs) has that could matter to a build: ca-certificates, curl, wget,
#    gnupg, sudo, systemd (as init: systemd-sysv, dbus), iproute2, procps,
#    less. That image has no compiler, no libclang, no qemu: gcc is NOT
#    included. The cloud image rather than the `debian:12` container image,
#    because pagecam runs on machines, with systemd, and a user needs curl
#    and CA certificates to install rustup at all. Apt sources: the host's
#    Debian mirror, bookworm + bookworm-updates + bookworm-security, fully
#    upgraded, as a fresh image is.
# 2. Every run unpacks a fresh copy, and adds ONLY the Rust toolchain: the
#    host's active rustup toolchain bind-mounted read-only at
#    /root/.rustup/toolchains/NAME and the rustup binary with its proxies in
#    /root/.cargo/bin, as rustup-init would install them. CARGO_HOME is
#    /root/.cargo inside the root, so every crate comes from crates.io.
# 3. Copies `git archive REV` to /root/pagecam and runs there, in a chroot
#    with /proc, /sys and /dev mounted (apt works: same mirror, host network):
#      PAGECAM_SECONDS=2 scripts/demo.sh      (the README's first command)
#      scripts/setup.sh --test && cargo test --no-run
#                                             (the second one, up to its tests)
#    and fails loudly, naming the step, if any step fails. The one thing
#    taken from the host besides the toolchain is site configuration: the
#    Debian mirror and locally added CA certificates (a TLS-inspecting
#    proxy's, as on this CI machine), which a user's machine on that network
#    would have too.
#
# Mounts are removed on every exit path (EXIT trap, after killing what still
# runs in the root); a run that was SIGKILLed leaves them, and the next run
# removes them before anything else. Needs root (debootstrap, mount, chroot).
set -euo pipefail
PATH=$PATH:/usr/sbin:/sbin
cd "$(dirname "$0")/.."

CACHE=${PAGECAM_VM_CACHE:-/var/cache/pagecam-vm}/fresh
WORKROOT=${PAGECAM_FRESH_DIR:-/var/tmp}
# Bump when the root's recipe changes (invalidates the cached tarball).
readonly ROOT_FORMAT=1
readonly SUITE=bookworm
readonly PACKAGES=(ca-certificates curl wget gnupg sudo systemd systemd-sysv dbus iproute2 procps less)

msg() { printf '[fresh-machine] %s\n' "$*" >&2; }
die() {
    msg "error: $*"
    exit 1
}

rev=HEAD keep=0 rebuild=0 with=()
while (($#)); do
    case $1 in
    --rev | --with)
        (($# >= 2)) || die "$1 needs a value"
        if [[ $1 == --rev ]]; then rev=$2; else with+=("$2"); fi
        shift
        ;;
    --keep) keep=1 ;;
    --rebuild) rebuild=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
        exit 0
        ;;
    *) die "unknown option '$1'" ;;
    esac
    shift
done
((EUID == 0)) || die "needs root (debootstrap, mount, chroot)"
git rev-parse --verify -q "$rev^{commit}" >/dev/null || die "no such commit: $rev"
command -v rustup >/dev/null || die "rustup not found: the fresh machine gets the host's rustup toolchain"

# ---------------------------------------------------------------------------
# Mounts and cleanup
# ---------------------------------------------------------------------------

# mounts_under DIR: mount points at or below DIR, deepest first.
mounts_under() {
    awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print length($5), $5 }' /proc/self/mountinfo |
        sort -rn | cut -d' ' -f2-
}

# release_root DIR: kill what still runs inside the root DIR (only processes
# of this check can have it as their root), unmount everything below it,
# then delete it unless KEEP. Safe to call twice.
release_root() {
    local dir=$1 keep_it=${2:-0} p m
    [[ -d $dir ]] || return 0
    for p in /proc/[0-9]*; do
        if [[ $(readlink "$p/root" 2>/dev/null) == "$dir/root" ]]; then
            kill -KILL "${p#/proc/}" 2>/dev/null || true
        fi
    done
    for m in $(mounts_under "$dir"); do
        umount "$m" 2>/dev/null || umount -l "$m" || true
    done
    if [[ -n $(mounts_under "$dir") ]]; then
        msg "warning: mounts left under $dir; not deleting it"
        return 0
    fi
    if ((keep_it)); then
        msg "root kept: $dir/root"
    else
        local t0=$SECONDS
        rm -rf --one-file-system "$dir"
        msg "removed $dir ($((SECONDS - t0))s)"
    fi
}

# Roots of runs that were SIGKILLed: their pid file names a dead process.
for d in "$WORKROOT"/pagecam-fresh.*/; do
    [[ -f $d/pid ]] || continue
    pid=$(cat "$d/pid")
    [[ -d /proc/$pid ]] || {
        msg "cleaning up after an interrupted run: ${d%/}"
        release_root "${d%/}"
    }
done

RUN=
cleanup() {
    local rc=$?
    [[ -z $RUN ]] || release_root "$RUN" "$keep"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# mount_system ROOT: /proc, /sys and /dev for a chroot. The binds are made
# slaves at once so that unmounting them can never propagate to the host's
# /dev or /sys.
mount_system() {
    local r=$1
    mount -t proc proc "$r/proc"
    mount --rbind /sys "$r/sys"
    mount --make-rslave "$r/sys"
    mount --rbind /dev "$r/dev"
    mount --make-rslave "$r/dev"
    cp -L /etc/resolv.conf "$r/etc/resolv.conf"
}

# ---------------------------------------------------------------------------
# The cached Debian root
# ---------------------------------------------------------------------------

# host_mirror: the host's Debian mirror (apt sources), so the root needs
# nothing the host cannot reach.
host_mirror() {
    local m
    m=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
        awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }
             /^deb / { print ($2 ~ /^\[/ ? $3 : $2) }' |
        grep -E '/debian/?$' | head -n 1 || true)
    echo "${m:-http://deb.debian.org/debian}"
}
MIRROR=$(host_mirror)
SECURITY=${MIRROR%/debian*}/debian-security
[[ $MIRROR == */debian ]] || SECURITY=http://deb.debian.org/debian-security

key=$(echo "$ROOT_FORMAT $SUITE $MIRROR $SECURITY ${PACKAGES[*]}" | sha256sum | cut -c1-12)
TARBALL=$CACHE/debian12-$key.tar

build_root_tarball() {
    [[ ! -f $TARBALL ]] || ((rebuild)) || return 0
    command -v debootstrap >/dev/null || {
        msg "installing debootstrap"
        apt-get -q -o DPkg::Lock::Timeout=600 update >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 \
            install --no-install-recommends debootstrap >/dev/null
    }
    local t0=$SECONDS
    RUN=$(mktemp -d "$WORKROOT/pagecam-fresh.XXXXXX")
    echo $$ >"$RUN/pid"
    local r=$RUN/root
    msg "debootstrap --variant=minbase $SUITE from $MIRROR (once; cached as $TARBALL)"
    debootstrap --variant=minbase --include="$(
        IFS=,
        echo "${PACKAGES[*]}"
    )" "$SUITE" "$r" "$MIRROR" >"$RUN/debootstrap.log" 2>&1 || {
        tail -n 30 "$RUN/debootstrap.log" >&2
        die "debootstrap failed"
    }
    rm -f "$r"/etc/apt/sources.list
    cat >"$r/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    # Services must not start inside the chroot (standard for image builds;
    # a booted machine would start them, which changes nothing for a build).
    printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
    chmod 755 "$r/usr/sbin/policy-rc.d"
    mount_system "$r"
    chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        sh -c 'apt-get -q update && apt-get -q -y upgrade && apt-get clean' >>"$RUN/debootstrap.log" 2>&1 || {
        tail -n 30 "$RUN/debootstrap.log" >&2
        die "apt-get upgrade in the new root failed"
    }
    for m in $(mounts_under "$r"); do umount "$m" 2>/dev/null || umount -l "$m"; done
    rm -f "$r/etc/resolv.conf"
    mkdir -p "$CACHE"
    find "$CACHE" -maxdepth 1 -name 'debian12-*.tar' -delete
    tar --numeric-owner --xattrs --xattrs-include='*' -C "$r" -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
    release_root "$RUN"
    RUN=
    msg "Debian 12 root built in $((SECONDS - t0))s: $(du -h "$TARBALL" | cut -f1) $TARBALL"
}

mkdir -p "$CACHE"
exec {lock}>"$CACHE/.lock"
flock "$lock"
build_root_tarball
flock -u "$lock"

# ---------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------

t_start=$SECONDS
RUN=$(mktemp -d "$WORKROOT/pagecam-fresh.XXXXXX")
echo $$ >"$RUN/pid"
R=$RUN/root
mkdir "$R"
tar --numeric-owner --xattrs --xattrs-include='*' -C "$R" -xpf "$TARBALL"

# The Rust toolchain, as rustup-init leaves it: the toolchain the repository
# resolves to (read-only bind of the host's), rustup and its proxies.
sysroot=$(rustc --print sysroot)
toolchain=$(basename "$sysroot")
mkdir -p "$R/root/.rustup/toolchains/$toolchain" "$R/root/.cargo/bin"
mount --bind -o ro "$sysroot" "$R/root/.rustup/toolchains/$toolchain"
mount --make-private "$R/root/.rustup/toolchains/$toolchain"
cat >"$R/root/.rustup/settings.toml" <<EOF
version = "12"
default_toolchain = "$toolchain"
profile = "default"
auto_self_update = "disable"

[overrides]
EOF
cp "$(readlink -f "$(command -v rustup)")" "$R/root/.cargo/bin/rustup"
for p in cargo rustc rustdoc rustfmt cargo-fmt cargo-clippy clippy-driver; do
    ln -s rustup "$R/root/.cargo/bin/$p"
done

git archive --format=tar --prefix=pagecam/ "$rev" | tar -x -C "$R/root"
mount_system "$R"
# Site configuration, like the mirror: CA certificates the host added
# locally (e.g. a TLS-inspecting egress proxy's; crates.io is reached
# through it here). Per run, not in the tarball: they can change.
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$R/usr/local/share/ca-certificates/"
    chroot "$R" /usr/sbin/update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed in the root"
fi
msg "fresh root ready in $((SECONDS - t_start))s: $R ($(git rev-parse --short "$rev"), toolchain $toolchain)"

# step NAME COMMAND: run COMMAND as root in /root/pagecam inside the chroot,
# with a login-like environment and nothing from the host's.
step() {
    local name=$1 cmd=$2 t0=$SECONDS rc=0
    msg "== $name"
    chroot "$R" /usr/bin/env -i HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 TERM=dumb \
        PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        /bin/bash -c "cd /root/pagecam && $cmd" || rc=$?
    if ((rc != 0)); then
        msg "FAILED: '$name' exited with $rc on a fresh Debian 12 machine ($(git rev-parse --short "$rev"))"
        exit 1
    fi
    msg "ok: $name ($((SECONDS - t0))s)"
}
if ((${#with[@]})); then
    step "machine state: apt-get install ${with[*]}" \
        "apt-get -q update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get -q -y install ${with[*]} >/dev/null"
fi
step "scripts/demo.sh (README, first command)" "PAGECAM_SECONDS=2 scripts/demo.sh"
step "scripts/setup.sh --test" "scripts/setup.sh --test"
step "cargo test --no-run (README, second command, built)" "cargo test --workspace --no-run"
msg "PASSED: the README's commands work on a fresh Debian 12 machine ($((SECONDS - t_start))s)"

//! Safe wrappers for the file and memory syscalls the library makes beyond
//! what `std` and `nix` offer, with 64-bit offsets on every target.
//!
//! On 32-bit ARM with glibc, `off_t`, `fsblkcnt_t` and friends are 32 bits
//! wide unless the `*64` functions are used; a 4 GiB recording would be cut
//! silently. Every offset and size here is a `u64`, converted with a
//! checked conversion, and the `*64` variants are called where the C
//! library has them (musl's plain functions are already 64-bit).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

#[cfg(target_env = "gnu")]
type Off = libc::off64_t;
#[cfg(not(target_env = "gnu"))]
type Off = libc::off_t;

fn off(v: u64) -> io::Result<Off> {
    Off::try_from(v).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `fallocate(fd, 0, offset, len)`: allocate blocks (and extend the size).
pub fn fallocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (o, l) = (off(offset)?, off(len)?);
    // SAFETY: plain syscall on a valid descriptor; no memory is passed.
    #[cfg(target_env = "gnu")]
    let rc = unsafe { libc::fallocate64(file.as_raw_fd(), 0, o, l) };
    // SAFETY: as above (musl's off_t is 64 bits).
    #[cfg(not(target_env = "gnu"))]
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, o, l) };
    check(rc)
}

/// `posix_fadvise(POSIX_FADV_DONTNEED)`: drop clean cached pages of a range.
pub fn fadvise_dontneed(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (o, l) = (off(offset)?, off(len)?);
    // SAFETY: plain syscall on a valid descriptor; no memory is passed.
    let rc = unsafe {
        libc::posix_fadvise64(file.as_raw_fd(), o as _, l as _, libc::POSIX_FADV_DONTNEED)
    };
    // posix_fadvise returns the error number instead of setting errno.
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`: start writeback, do not wait.
pub fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (o, l) = (off(offset)?, off(len)?);
    // SAFETY: plain syscall on a valid descriptor; no memory is passed.
    let rc = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            o as _,
            l as _,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
    check(rc)
}

/// Bytes available to an unprivileged writer on the filesystem of `dir`.
pub fn available_bytes(dir: &Path) -> io::Result<u64> {
    let s = nix::sys::statvfs::statvfs(dir).map_err(io::Error::from)?;
    // Widen before multiplying: both are 32 bits on 32-bit glibc.
    #[allow(clippy::useless_conversion)]
    let (blocks, frsize) = (
        u64::from(s.blocks_available()),
        u64::from(s.fragment_size()),
    );
    Ok(blocks.saturating_mul(frsize))
}

/// The filesystem's magic number (`statfs`), to recognise copy-on-write
/// filesystems and tmpfs.
pub fn filesystem_type(dir: &Path) -> io::Result<i64> {
    let s = nix::sys::statfs::statfs(dir).map_err(io::Error::from)?;
    #[allow(clippy::unnecessary_cast)]
    Ok(s.filesystem_type().0 as i64)
}

pub const BTRFS_SUPER_MAGIC: i64 = 0x9123683e;

/// `FS_NOCOW_FL` (chattr +C): rewrite blocks in place.
const FS_NOCOW_FL: libc::c_long = 0x0080_0000;

fn fs_flags_request(write: bool) -> nix::sys::ioctl::ioctl_num_type {
    // FS_IOC_GETFLAGS / FS_IOC_SETFLAGS: declared with `long`, though the
    // kernel reads and writes an int (a `long` buffer covers both).
    if write {
        nix::request_code_write!(b'f', 2, std::mem::size_of::<libc::c_long>())
    } else {
        nix::request_code_read!(b'f', 1, std::mem::size_of::<libc::c_long>())
    }
}

/// Whether the file has the No_COW attribute (btrfs `chattr +C`).
pub fn is_nocow(file: &File) -> io::Result<bool> {
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes at most a `long` into `flags`, which
    // lives across the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), fs_flags_request(false) as _, &mut flags) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flags & FS_NOCOW_FL != 0)
}

/// Set No_COW on an empty file (btrfs only honours it before any data):
/// blocks are then rewritten in place, so pre-allocation reserves the
/// space for every later write, as on ext4.
pub fn set_nocow(file: &File) -> io::Result<()> {
    let mut flags: libc::c_long = 0;
    // SAFETY: as in `is_nocow`.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), fs_flags_request(false) as _, &mut flags) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    flags |= FS_NOCOW_FL;
    // SAFETY: FS_IOC_SETFLAGS reads a `long` from `flags`.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), fs_flags_request(true) as _, &flags) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
pub const TMPFS_MAGIC: i64 = 0x01021994;

/// A new memfd, sealable, close-on-exec.
pub fn memfd(name: &str) -> io::Result<File> {
    let name =
        std::ffi::CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `name` is a valid NUL-terminated string for the call.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Add seals to a memfd (`F_ADD_SEALS`).
pub fn add_seals(file: &File, seals: libc::c_int) -> io::Result<()> {
    // SAFETY: fcntl with an integer argument on a valid descriptor.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The seals of a memfd (`F_GET_SEALS`); an error for other files.
pub fn seals(file: &File) -> io::Result<libc::c_int> {
    // SAFETY: fcntl without an argument on a valid descriptor.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Open `/proc/self/fd/N` again with other flags: a second, independent
/// open file description of the same file (e.g. a read-only one of a
/// memfd, or an `O_DIRECT` one of a recording).
pub fn reopen(file: &File, flags: libc::c_int) -> io::Result<File> {
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    let path =
        std::ffi::CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `path` is a valid NUL-terminated string; open returns a new
    // descriptor that nothing else owns.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Take the writer lock of a file opened for writing: an open-file-
/// description write lock over the whole file (`F_OFD_SETLK`, `F_WRLCK`),
/// non-blocking; `Ok(false)` if another holds it. Unlike `flock`, a write
/// lock needs a descriptor opened for writing, so a user who can only read
/// the recording cannot take it and block capture.
pub fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    let mut lock = write_lock();
    if ofd_lock(file, libc::F_OFD_SETLK, &mut lock) == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

/// Whether some process holds the writer lock (`try_lock_exclusive`) of
/// this file: a capture is recording it. Works on a read-only descriptor.
pub fn writer_lock_held(file: &File) -> bool {
    let mut lock = write_lock();
    ofd_lock(file, libc::F_OFD_GETLK, &mut lock) == 0
        && lock.l_type != libc::F_UNLCK as libc::c_short
}

// OFD locks take the 64-bit `struct flock64` on 32-bit architectures; there
// the raw fcntl64 system call is used, so no C library can pass it a struct
// of the wrong width.
#[cfg(target_pointer_width = "32")]
type OfdLock = libc::flock64;
#[cfg(not(target_pointer_width = "32"))]
type OfdLock = libc::flock;

/// A write lock over the whole file: l_start = 0, l_len = 0 (however
/// long), l_pid = 0 as the OFD commands require.
fn write_lock() -> OfdLock {
    // SAFETY: an all-zero lock struct is a valid value; the fields that
    // matter are set below.
    let mut lock: OfdLock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock
}

/// `fcntl(file, cmd, lock)` for `F_OFD_SETLK`/`F_OFD_GETLK`; the C result.
fn ofd_lock(file: &File, cmd: libc::c_int, lock: &mut OfdLock) -> libc::c_int {
    // SAFETY: fcntl with a pointer to a lock struct of the width the call
    // expects, which lives across the call (GETLK writes into it).
    #[cfg(target_pointer_width = "32")]
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fcntl64,
            file.as_raw_fd(),
            cmd,
            lock as *mut OfdLock,
        ) as libc::c_int
    };
    // SAFETY: as above.
    #[cfg(not(target_pointer_width = "32"))]
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), cmd, lock as *mut OfdLock) };
    rc
}

/// `SO_PEERGROUPS` (Linux 4.13+; the same number on every architecture
/// pagecam targets).
const SO_PEERGROUPS: libc::c_int = 59;

/// The supplementary groups of a Unix socket's peer (`SO_PEERGROUPS`).
pub fn peer_groups(sock: &impl AsRawFd) -> io::Result<Vec<u32>> {
    let mut groups = vec![0 as libc::gid_t; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` has `len` writable bytes; the kernel writes at
        // most that many and sets `len` to what it wrote (or needs).
        let rc = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(n);
            return Ok(groups);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ERANGE) && n > groups.len() && n <= 65536 {
            groups.resize(n, 0);
            continue;
        }
        return Err(e);
    }
}

/// Background work: let the capture thread win any CPU contention
/// (nice 10 for the calling thread only).
pub fn lower_thread_priority() {
    // SAFETY: setpriority on this thread's own id; no memory passed.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
    }
}

/// Current time of `clock` in nanoseconds (0 if the clock cannot be read,
/// which for the standard clocks does not happen).
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    match nix::time::clock_gettime(clock.into()) {
        // Widen before multiplying: `tv_sec` is 32 bits on 32-bit targets.
        #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
        Ok(t) => (t.tv_sec() as i64)
            .max(0)
            .unsigned_abs()
            .saturating_mul(1_000_000_000)
            .saturating_add(t.tv_nsec().max(0) as u64),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_memfd_refuses_writes_and_writable_maps() {
        let f = memfd("pagecam-test").unwrap();
        f.set_len(8192).unwrap();
        add_seals(
            &f,
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_FUTURE_WRITE,
        )
        .unwrap();
        assert!(f.set_len(4096).is_err(), "shrink must be refused");
        let ro = reopen(&f, libc::O_RDONLY).unwrap();
        assert!(memmap2::MmapOptions::new().len(8192).map_raw(&f).is_err());
        assert!(memmap2::MmapOptions::new()
            .len(8192)
            .map_raw_read_only(&ro)
            .is_ok());
        let seals = seals(&ro).unwrap();
        assert_ne!(seals & libc::F_SEAL_FUTURE_WRITE, 0);
    }

    #[test]
    fn large_offsets_are_not_cut() {
        assert_eq!(off(5 << 30).unwrap(), 5 << 30);
        assert!(off(u64::MAX).is_err());
    }
}

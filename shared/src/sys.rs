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

/// Take an exclusive, non-blocking `flock`; `Ok(false)` if another holds it.
pub fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    // SAFETY: flock on a valid descriptor; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
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

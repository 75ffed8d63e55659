//! The V4L2 ioctls pagecam uses, as small typed wrappers over `ioctl(2)`
//! and the kernel-header structs of `abi`.
//!
//! Every ioctl whose argument holds no pointer the kernel follows is a safe
//! function here: the argument type is fixed by the wrapper, so the kernel
//! only reads and writes the bytes of that one struct. The buffer ioctls are
//! `BufArg` methods; only queuing a USERPTR buffer is `unsafe`, because it
//! lets the driver write process memory until the buffer comes back.
//!
//! Each request number is a [`Request<T>`], built by nix's `request_code_*`
//! from `size_of::<T>()` of the very type the call passes, so the numbers
//! follow whichever bindings `abi` selected (checked-in, or the `v4l`
//! crate's with that feature) and a request cannot be sent with the wrong
//! argument type.

use std::ffi::c_int;
use std::io;
use std::marker::PhantomData;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd};

// What nix's `request_code_*` macros return and `libc::ioctl` takes:
// `c_ulong` with glibc, `c_int` with musl.
use nix::sys::ioctl::ioctl_num_type;

// The bindings belong to this raw layer: the rest of the source names
// them `sys::abi`.
pub(super) use super::abi;
use abi::*;

/// V4L2 argument structs for which all-zero bytes are a valid value.
///
/// # Safety
/// Implement only for C structs made of integers, arrays, unions of those,
/// and raw pointers (for which null is a valid value).
pub unsafe trait Zeroable: Sized {
    /// The all-zero struct, which is how the V4L2 spec asks applications to
    /// prepare every argument ("zero the reserved fields").
    fn zeroed() -> Self {
        // SAFETY: the trait's contract: every field accepts all-zero bytes.
        unsafe { std::mem::zeroed() }
    }
}

// SAFETY: all are plain C structs of integers, arrays, unions of those and
// raw pointers (videodev2.h); none has a field for which zero is invalid.
unsafe impl Zeroable for v4l2_capability {}
// SAFETY: as above.
unsafe impl Zeroable for v4l2_fmtdesc {}
// SAFETY: as above.
unsafe impl Zeroable for v4l2_format {}
// SAFETY: as above.
unsafe impl Zeroable for v4l2_requestbuffers {}
// SAFETY: as above.
unsafe impl Zeroable for v4l2_streamparm {}
// SAFETY: as above.
unsafe impl Zeroable for v4l2_frmsizeenum {}
// SAFETY: as above.
unsafe impl Zeroable for v4l2_frmivalenum {}
// SAFETY: as above.
unsafe impl Zeroable for v4l2_query_ext_ctrl {}
// SAFETY: as above (the union's pointer members are raw pointers).
unsafe impl Zeroable for v4l2_ext_control {}
// SAFETY: as above (`controls` is a raw pointer).
unsafe impl Zeroable for v4l2_ext_controls {}
// SAFETY: as above (`m.planes` is a raw pointer).
unsafe impl Zeroable for v4l2_buffer {}
// SAFETY: as above.
unsafe impl Zeroable for v4l2_plane {}
// SAFETY: as above.
unsafe impl Zeroable for v4l2_pix_format {}
// SAFETY: as above.
unsafe impl Zeroable for v4l2_pix_format_mplane {}
// SAFETY: as above.
unsafe impl Zeroable for v4l2_captureparm {}

/// An ioctl request number together with the argument type it takes.
///
/// The number encodes `size_of::<T>()` (`_IOC_SIZE`), so it is computed here
/// from `T` rather than copied from a header: it always matches the struct
/// the call passes. `tests` in `abi` compares every one with the C macro.
pub(super) struct Request<T> {
    pub(super) code: ioctl_num_type,
    arg: PhantomData<fn(*mut T)>,
}

impl<T> Clone for Request<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Request<T> {}

/// The ioctl "type" byte of every V4L2 request (`'V'`, videodev2.h).
const V4L2_IOC_TYPE: u8 = b'V';

impl<T> Request<T> {
    /// The `_IOC_SIZE` field has 14 bits on the architectures pagecam
    /// builds for; a larger struct would be silently truncated by `ioc!`.
    const fn size() -> usize {
        assert!(
            size_of::<T>() < 1 << 14,
            "ioctl argument too large for _IOC_SIZE"
        );
        size_of::<T>()
    }

    /// `_IOR('V', nr, T)`: the kernel writes the argument.
    const fn read(nr: u8) -> Self {
        Request {
            code: nix::request_code_read!(V4L2_IOC_TYPE, nr, Self::size()),
            arg: PhantomData,
        }
    }

    /// `_IOW('V', nr, T)`: the kernel reads the argument.
    const fn write(nr: u8) -> Self {
        Request {
            code: nix::request_code_write!(V4L2_IOC_TYPE, nr, Self::size()),
            arg: PhantomData,
        }
    }

    /// `_IOWR('V', nr, T)`: the kernel reads and writes the argument.
    const fn readwrite(nr: u8) -> Self {
        Request {
            code: nix::request_code_readwrite!(V4L2_IOC_TYPE, nr, Self::size()),
            arg: PhantomData,
        }
    }
}

// The request numbers, as videodev2.h defines them.
pub(super) const VIDIOC_QUERYCAP: Request<v4l2_capability> = Request::read(0);
pub(super) const VIDIOC_ENUM_FMT: Request<v4l2_fmtdesc> = Request::readwrite(2);
pub(super) const VIDIOC_G_FMT: Request<v4l2_format> = Request::readwrite(4);
pub(super) const VIDIOC_S_FMT: Request<v4l2_format> = Request::readwrite(5);
pub(super) const VIDIOC_REQBUFS: Request<v4l2_requestbuffers> = Request::readwrite(8);
pub(super) const VIDIOC_QUERYBUF: Request<v4l2_buffer> = Request::readwrite(9);
pub(super) const VIDIOC_QBUF: Request<v4l2_buffer> = Request::readwrite(15);
pub(super) const VIDIOC_DQBUF: Request<v4l2_buffer> = Request::readwrite(17);
pub(super) const VIDIOC_STREAMON: Request<c_int> = Request::write(18);
pub(super) const VIDIOC_STREAMOFF: Request<c_int> = Request::write(19);
pub(super) const VIDIOC_G_PARM: Request<v4l2_streamparm> = Request::readwrite(21);
pub(super) const VIDIOC_S_PARM: Request<v4l2_streamparm> = Request::readwrite(22);
pub(super) const VIDIOC_S_EXT_CTRLS: Request<v4l2_ext_controls> = Request::readwrite(72);
pub(super) const VIDIOC_ENUM_FRAMESIZES: Request<v4l2_frmsizeenum> = Request::readwrite(74);
pub(super) const VIDIOC_ENUM_FRAMEINTERVALS: Request<v4l2_frmivalenum> = Request::readwrite(75);
pub(super) const VIDIOC_QUERY_EXT_CTRL: Request<v4l2_query_ext_ctrl> = Request::readwrite(103);

/// `ioctl(fd, request, arg)`, with -1 turned into the `errno` error.
///
/// # Safety
/// `arg` must point to a valid `T` that is not otherwise accessed during
/// the call, and every pointer inside it that the kernel follows for this
/// request must be valid for what the kernel does with it (the V4L2 spec
/// of that request says which: `v4l2_buffer.m.planes`,
/// `v4l2_ext_controls.controls`, USERPTR memory, ...).
unsafe fn ioctl<T>(fd: BorrowedFd<'_>, request: Request<T>, arg: *mut T) -> io::Result<()> {
    // SAFETY: `fd` is an open descriptor (borrowed for the call); `request`
    // is the number whose argument type is `T` (`Request<T>`), and the
    // caller guarantees `arg` and what it points to, as stated above.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request.code, arg) };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Safe wrappers for ioctls whose argument is one plain struct.
macro_rules! plain_ioctl {
    ($(#[$doc:meta])* $name:ident, $request:ident, $arg:ty) => {
        $(#[$doc])*
        pub fn $name(fd: BorrowedFd<'_>, arg: &mut $arg) -> io::Result<()> {
            // SAFETY: `arg` is a valid, exclusively borrowed `$arg`, the type
            // of `$request` (`Request<$arg>`), so the kernel reads and writes
            // exactly its bytes. It holds no pointer the kernel follows (for
            // v4l2_format: only the capture members are used, never
            // `win.clips`/`win.bitmap`, which stay null).
            unsafe { ioctl(fd, $request, arg) }
        }
    };
}

plain_ioctl!(querycap, VIDIOC_QUERYCAP, v4l2_capability);
plain_ioctl!(enum_fmt, VIDIOC_ENUM_FMT, v4l2_fmtdesc);
plain_ioctl!(g_fmt, VIDIOC_G_FMT, v4l2_format);
plain_ioctl!(s_fmt, VIDIOC_S_FMT, v4l2_format);
plain_ioctl!(g_parm, VIDIOC_G_PARM, v4l2_streamparm);
plain_ioctl!(s_parm, VIDIOC_S_PARM, v4l2_streamparm);
plain_ioctl!(enum_framesizes, VIDIOC_ENUM_FRAMESIZES, v4l2_frmsizeenum);
plain_ioctl!(
    enum_frameintervals,
    VIDIOC_ENUM_FRAMEINTERVALS,
    v4l2_frmivalenum
);
plain_ioctl!(query_ext_ctrl, VIDIOC_QUERY_EXT_CTRL, v4l2_query_ext_ctrl);
plain_ioctl!(
    /// Also frees buffers (`count = 0`). With USERPTR memory this unpins any
    /// queued user memory ("The memory is also unlocked when VIDIOC_STREAMOFF
    /// is called, VIDIOC_REQBUFS, or when the device is closed", userp.rst).
    reqbufs,
    VIDIOC_REQBUFS,
    v4l2_requestbuffers
);

fn stream_ioctl(fd: BorrowedFd<'_>, request: Request<c_int>, buf_type: u32) -> io::Result<()> {
    let mut arg = c_int::try_from(buf_type).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("buffer type {buf_type} is not a C int"),
        )
    })?;
    // SAFETY: STREAMON/STREAMOFF take a pointer to one `int` (the buffer
    // type, `Request<c_int>`); `arg` lives across the call and is not
    // otherwise accessed.
    unsafe { ioctl(fd, request, &mut arg) }
}

pub fn streamon(fd: BorrowedFd<'_>, buf_type: u32) -> io::Result<()> {
    stream_ioctl(fd, VIDIOC_STREAMON, buf_type)
}

/// Stops capture and removes every buffer from the driver's queues:
/// "VIDIOC_STREAMOFF removes all buffers from both queues and unlocks all
/// buffers as a side effect" (userp.rst).
pub fn streamoff(fd: BorrowedFd<'_>, buf_type: u32) -> io::Result<()> {
    stream_ioctl(fd, VIDIOC_STREAMOFF, buf_type)
}

/// Set one integer-like control (INTEGER, BOOLEAN, MENU, BUTTON, BITMASK,
/// INTEGER_MENU, or INTEGER64 with `is64`). A value that does not fit a
/// 32-bit control is `InvalidInput`, never truncated.
pub fn set_control(fd: BorrowedFd<'_>, id: u32, value: i64, is64: bool) -> io::Result<()> {
    let mut ctrl = v4l2_ext_control::zeroed();
    ctrl.id = id;
    if is64 {
        ctrl.__bindgen_anon_1.value64 = value;
    } else {
        ctrl.__bindgen_anon_1.value = i32::try_from(value).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("value {value} does not fit a 32-bit control"),
            )
        })?;
    }
    let mut ctrls = v4l2_ext_controls::zeroed();
    ctrls.__bindgen_anon_1.which = V4L2_CTRL_WHICH_CUR_VAL;
    ctrls.count = 1;
    ctrls.controls = &mut ctrl;
    // SAFETY: `ctrls` is a valid v4l2_ext_controls (`Request<v4l2_ext_controls>`);
    // its `controls` points to one v4l2_ext_control (`count` = 1) that
    // outlives the call and is not otherwise accessed during it. The
    // control is a plain value (no payload), so the kernel follows no
    // other pointer.
    unsafe { ioctl(fd, VIDIOC_S_EXT_CTRLS, &mut ctrls) }
}

/// A `v4l2_buffer` with the single plane an MPLANE buffer needs.
pub struct BufArg {
    pub buf: v4l2_buffer,
    pub plane: v4l2_plane,
    mplane: bool,
}

impl BufArg {
    pub fn new(buf_type: u32, memory: u32, index: u32) -> Self {
        let mut buf = v4l2_buffer::zeroed();
        buf.type_ = buf_type;
        buf.memory = memory;
        buf.index = index;
        BufArg {
            buf,
            plane: v4l2_plane::zeroed(),
            mplane: buf_type == v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE,
        }
    }

    /// # Safety
    /// If this queues USERPTR memory, that memory must stay valid and
    /// untouched by anything else until the buffer is dequeued or streaming
    /// is turned off (see `qbuf_userptr`).
    unsafe fn call(&mut self, fd: BorrowedFd<'_>, request: Request<v4l2_buffer>) -> io::Result<()> {
        if self.mplane {
            self.buf.m.planes = &mut self.plane;
            self.buf.length = 1;
        }
        // SAFETY: `self.buf` is a valid v4l2_buffer, the type of every
        // buffer request (`Request<v4l2_buffer>`). For MPLANE, `m.planes`
        // points to `self.plane`, borrowed with `self` for the whole call,
        // and `length` = 1 limits the kernel to that one element ("length:
        // number of elements in the planes array", buffer.rst). USERPTR
        // memory is covered by this function's caller (see `# Safety`).
        unsafe { ioctl(fd, request, &mut self.buf) }
    }

    /// VIDIOC_QUERYBUF (MMAP buffers): fills offset and length.
    pub fn querybuf(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        // SAFETY: QUERYBUF hands no user memory to the driver.
        unsafe { self.call(fd, VIDIOC_QUERYBUF) }
    }

    /// VIDIOC_QBUF of an MMAP buffer (driver-owned memory).
    pub fn qbuf(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        debug_assert_eq!(self.buf.memory, v4l2_memory_V4L2_MEMORY_MMAP);
        // SAFETY: MMAP memory belongs to the driver; no user memory is handed over.
        unsafe { self.call(fd, VIDIOC_QBUF) }
    }

    /// VIDIOC_QBUF of user memory `[ptr, ptr + len)` (USERPTR).
    ///
    /// # Safety
    /// From success until the buffer is dequeued (DQBUF returns its index)
    /// or streaming is turned off (STREAMOFF, REQBUFS, close), the driver
    /// may write that memory at any time: it must stay mapped and nothing
    /// in this process may read or write it.
    pub unsafe fn qbuf_userptr(
        &mut self,
        fd: BorrowedFd<'_>,
        ptr: usize,
        len: usize,
    ) -> io::Result<()> {
        let too_big = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("USERPTR {what} does not fit v4l2_buffer (ptr {ptr:#x}, length {len})"),
            )
        };
        let userptr = libc::c_ulong::try_from(ptr).map_err(|_| too_big("address"))?;
        let length = u32::try_from(len).map_err(|_| too_big("length"))?;
        if self.mplane {
            self.plane.m.userptr = userptr;
            self.plane.length = length;
        } else {
            self.buf.m.userptr = userptr;
            self.buf.length = length;
        }
        // SAFETY: the caller's contract covers the memory handed over.
        unsafe { self.call(fd, VIDIOC_QBUF) }
    }

    /// VIDIOC_DQBUF (the descriptor is non-blocking: EAGAIN if none ready).
    pub fn dqbuf(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        // SAFETY: DQBUF hands no memory to the driver; it returns one.
        unsafe { self.call(fd, VIDIOC_DQBUF) }
    }

    /// (bytesused, data_offset) of the (first) plane. For MPLANE,
    /// "data_offset is included in bytesused" (buffer.rst).
    pub fn payload(&self) -> (u32, u32) {
        if self.mplane {
            (self.plane.bytesused, self.plane.data_offset)
        } else {
            (self.buf.bytesused, 0)
        }
    }

    /// (mmap offset, length) after QUERYBUF of an MMAP buffer.
    pub fn mmap_location(&self) -> (u32, u32) {
        // SAFETY: reading a union of plain integers (`offset`/`mem_offset`
        // share their bytes with `userptr`/`fd`): any bit pattern is valid.
        unsafe {
            if self.mplane {
                (self.plane.m.mem_offset, self.plane.length)
            } else {
                (self.buf.m.offset, self.buf.length)
            }
        }
    }

    /// Driver timestamp in nanoseconds (0 for a negative time; saturating,
    /// never wrapping). `tv_sec`/`tv_usec` are `long`: 32 bits on 32-bit
    /// ARM, so every step widens with a checked conversion.
    pub fn timestamp_ns(&self) -> u64 {
        let t = self.buf.timestamp;
        let sec = u64::try_from(t.tv_sec).unwrap_or(0);
        let usec = u64::try_from(t.tv_usec).unwrap_or(0);
        sec.saturating_mul(1_000_000_000)
            .saturating_add(usec.saturating_mul(1000))
    }
}

/// The symbolic name of an errno value (`EFAULT`), for one-line messages
/// (nix's `Errno` knows every name).
pub fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => match nix::errno::Errno::from_raw(n) {
            nix::errno::Errno::UnknownErrno => format!("errno {n}"),
            known => format!("{known:?}"),
        },
        None => e.to_string(),
    }
}

/// `"QBUF: EFAULT (Bad address)"`.
pub fn ioctl_error(op: &str, e: &io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    format!("{op}: {} ({text})", errno_name(e))
}

/// A NUL-terminated `char` array from the kernel (`v4l2_query_ext_ctrl.name`)
/// as text. `c_char` is `i8` on x86_64 and `u8` on ARM; either way each
/// element is one byte of the string.
#[allow(clippy::unnecessary_cast)] // a no-op where c_char is u8
pub fn c_chars_text(chars: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = chars.iter().map(|&c| c as u8).collect();
    c_text(&bytes)
}

/// A NUL-terminated byte array from the kernel as text.
pub fn c_text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

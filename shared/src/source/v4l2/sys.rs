//! The V4L2 ioctls pagecam uses, as small typed wrappers over the `v4l`
//! crate's raw `v4l2::ioctl` and its `v4l_sys` (kernel header) structs.
//!
//! Every ioctl whose argument holds no pointer the kernel follows is a safe
//! function here: the argument type is fixed by the wrapper, so the kernel
//! only reads and writes the bytes of that one struct. The buffer ioctls are
//! `BufArg` methods; only queuing a USERPTR buffer is `unsafe`, because it
//! lets the driver write process memory until the buffer comes back.

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use v4l::v4l2::{self, vidioc};
use v4l::v4l_sys::*;

pub use v4l::v4l_sys;

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

/// Safe wrappers for ioctls whose argument is one plain struct.
macro_rules! plain_ioctl {
    ($(#[$doc:meta])* $name:ident, $request:ident, $arg:ty) => {
        $(#[$doc])*
        pub fn $name(fd: BorrowedFd<'_>, arg: &mut $arg) -> io::Result<()> {
            // Soundness: `arg` is a valid, exclusively borrowed `$arg`, the type
            // videodev2.h declares for this request, so the kernel reads and
            // writes exactly its bytes. It holds no pointer the kernel
            // follows (for v4l2_format: only the capture members are used,
            // never `win.clips`), and `fd` is an open descriptor.
            // SAFETY: `arg` is the request's own struct type, exclusively borrowed, pointer-free.
            unsafe { v4l2::ioctl(fd.as_raw_fd(), vidioc::$request, arg as *mut $arg as *mut c_void) }
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

fn stream_ioctl(fd: BorrowedFd<'_>, request: vidioc::_IOC_TYPE, buf_type: u32) -> io::Result<()> {
    let mut arg = buf_type as libc::c_int;
    // SAFETY: STREAMON/STREAMOFF take a pointer to one `int` (the buffer
    // type); `arg` lives across the call.
    unsafe {
        v4l2::ioctl(
            fd.as_raw_fd(),
            request,
            &mut arg as *mut libc::c_int as *mut c_void,
        )
    }
}

pub fn streamon(fd: BorrowedFd<'_>, buf_type: u32) -> io::Result<()> {
    stream_ioctl(fd, vidioc::VIDIOC_STREAMON, buf_type)
}

/// Stops capture and removes every buffer from the driver's queues:
/// "VIDIOC_STREAMOFF removes all buffers from both queues and unlocks all
/// buffers as a side effect" (userp.rst).
pub fn streamoff(fd: BorrowedFd<'_>, buf_type: u32) -> io::Result<()> {
    stream_ioctl(fd, vidioc::VIDIOC_STREAMOFF, buf_type)
}

/// Set one integer-like control (INTEGER, BOOLEAN, MENU, BUTTON, BITMASK,
/// INTEGER_MENU, or INTEGER64 with `is64`).
pub fn set_control(fd: BorrowedFd<'_>, id: u32, value: i64, is64: bool) -> io::Result<()> {
    let mut ctrl = v4l2_ext_control::zeroed();
    ctrl.id = id;
    if is64 {
        ctrl.__bindgen_anon_1.value64 = value;
    } else {
        ctrl.__bindgen_anon_1.value = value as i32;
    }
    let mut ctrls = v4l2_ext_controls::zeroed();
    ctrls.__bindgen_anon_1.which = V4L2_CTRL_WHICH_CUR_VAL;
    ctrls.count = 1;
    ctrls.controls = &mut ctrl;
    // SAFETY: `ctrls.controls` points to one v4l2_ext_control (`count` = 1)
    // that outlives the call. The control is a plain value (no payload), so
    // the kernel follows no other pointer.
    unsafe {
        v4l2::ioctl(
            fd.as_raw_fd(),
            vidioc::VIDIOC_S_EXT_CTRLS,
            &mut ctrls as *mut v4l2_ext_controls as *mut c_void,
        )
    }
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
    unsafe fn call(&mut self, fd: BorrowedFd<'_>, request: vidioc::_IOC_TYPE) -> io::Result<()> {
        if self.mplane {
            self.buf.m.planes = &mut self.plane;
            self.buf.length = 1;
        }
        // Soundness: `self.buf` is a valid v4l2_buffer. For MPLANE, `m.planes`
        // points to `self.plane`, borrowed for the whole call, and `length` = 1
        // limits the kernel to that one element ("length: number of elements
        // in the planes array", buffer.rst). USERPTR memory: the caller's.
        // SAFETY: valid v4l2_buffer; `m.planes` points at one borrowed plane; USERPTR is the caller's.
        unsafe {
            v4l2::ioctl(
                fd.as_raw_fd(),
                request,
                &mut self.buf as *mut v4l2_buffer as *mut c_void,
            )
        }
    }

    /// VIDIOC_QUERYBUF (MMAP buffers): fills offset and length.
    pub fn querybuf(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        // SAFETY: QUERYBUF hands no user memory to the driver.
        unsafe { self.call(fd, vidioc::VIDIOC_QUERYBUF) }
    }

    /// VIDIOC_QBUF of an MMAP buffer (driver-owned memory).
    pub fn qbuf(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        debug_assert_eq!(self.buf.memory, v4l2_memory_V4L2_MEMORY_MMAP);
        // SAFETY: MMAP memory belongs to the driver; no user memory is handed over.
        unsafe { self.call(fd, vidioc::VIDIOC_QBUF) }
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
        if self.mplane {
            self.plane.m.userptr = ptr as libc::c_ulong;
            self.plane.length = len as u32;
        } else {
            self.buf.m.userptr = ptr as libc::c_ulong;
            self.buf.length = len as u32;
        }
        // SAFETY: the caller's contract covers the memory handed over.
        unsafe { self.call(fd, vidioc::VIDIOC_QBUF) }
    }

    /// VIDIOC_DQBUF (the descriptor is non-blocking: EAGAIN if none ready).
    pub fn dqbuf(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        // SAFETY: DQBUF hands no memory to the driver; it returns one.
        unsafe { self.call(fd, vidioc::VIDIOC_DQBUF) }
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

    /// Driver timestamp in nanoseconds.
    pub fn timestamp_ns(&self) -> u64 {
        let t = self.buf.timestamp;
        (t.tv_sec.max(0) as u64) * 1_000_000_000 + (t.tv_usec.max(0) as u64) * 1000
    }
}

/// The symbolic name of an errno value (`EFAULT`), for one-line messages.
pub fn errno_name(e: &io::Error) -> String {
    let n = match e.raw_os_error() {
        Some(n) => n,
        None => return e.to_string(),
    };
    let name = match n {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::EPIPE => "EPIPE",
        libc::ERANGE => "ERANGE",
        libc::ENOTTY => "ENOTTY",
        libc::ENOLINK => "ENOLINK",
        libc::ETIMEDOUT => "ETIMEDOUT",
        _ => return format!("errno {n}"),
    };
    name.to_string()
}

/// `"QBUF: EFAULT (Bad address)"`.
pub fn ioctl_error(op: &str, e: &io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    format!("{op}: {} ({text})", errno_name(e))
}

/// A NUL-terminated byte array from the kernel as text.
pub fn c_text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

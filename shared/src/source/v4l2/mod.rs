//! The V4L2 camera source: format negotiation, buffer exchange with the
//! driver, and device discovery (`list_devices`, `list_formats`).
//!
//! Key decision: USERPTR first. With `IoMode::UserPtr` (or `Auto`) the
//! driver writes each frame straight into a slot of the recording file
//! (`Delivery::Direct`): the slot's pages, mapped `MAP_SHARED`, are queued
//! with `VIDIOC_QBUF` and come back as the same `ClaimedSlot` after
//! `VIDIOC_DQBUF`. Linux 6.5 and later refuse to pin writable file-backed
//! pages long-term, so there the first QBUF fails with EFAULT; `Auto` then
//! frees the USERPTR buffers and switches to driver-allocated MMAP buffers
//! (`Delivery::Copy`, one copy per frame by capture), and says so in
//! `delivery_note`.
//!
//! The ioctls themselves go through `sys`: `ioctl(2)` with request numbers
//! computed by nix from the checked-in kernel-header structs (`sys::abi`,
//! generated once by bindgen, so building needs no libclang); the `v4l`
//! crate's build-time bindings replace them with the `v4l` cargo feature.
//! Not the `v4l` crate's `Device`: that type opens without `O_CLOEXEC`, has
//! no multi-planar or USERPTR-into-foreign-memory support, and unwraps
//! (panics) on control types it does not know.
//!
//! Per frame the source does `poll`, `DQBUF` and (for the previous frame)
//! `QBUF`, and allocates nothing.

mod abi;
mod info;
mod sys;

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw};
use nix::poll::{PollFd, PollFlags, PollTimeout};

pub use info::{
    capability_names, control_name, list_devices, list_formats, DeviceInfo, FormatInfo,
    FrameIntervals, FrameSizes, SizeInfo,
};
use sys::{abi::*, BufArg, Zeroable};

use super::{Delivery, Frame, FrameInfo, FrameSource, SourceError};
use crate::format::{fourcc_str, FrameFormat, Interval, FLAG_ERROR};
use crate::mapping::{ClaimedSlot, QueuedSlot};

const USERPTR: u32 = v4l2_memory_V4L2_MEMORY_USERPTR;
const MMAP: u32 = v4l2_memory_V4L2_MEMORY_MMAP;

/// How frames get from the driver into the recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoMode {
    /// The driver writes into the recording's pages (zero-copy) or fail.
    UserPtr,
    /// Driver buffers, one copy per frame.
    Mmap,
    /// USERPTR if the kernel and driver allow it, else MMAP.
    Auto,
}

impl IoMode {
    pub fn name(&self) -> &'static str {
        match self {
            IoMode::UserPtr => "userptr",
            IoMode::Mmap => "mmap",
            IoMode::Auto => "auto",
        }
    }
}

impl std::str::FromStr for IoMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "userptr" => Ok(IoMode::UserPtr),
            "mmap" => Ok(IoMode::Mmap),
            "auto" => Ok(IoMode::Auto),
            other => Err(format!(
                "unknown I/O mode '{other}' (use userptr, mmap or auto)"
            )),
        }
    }
}

/// What to open and what to ask the driver for. `None` keeps the driver's
/// current setting.
#[derive(Clone, Debug)]
pub struct V4l2Config {
    pub device: PathBuf,
    pub fourcc: Option<u32>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Frame interval to ask for (`None`: the driver's current one).
    pub fps: Option<Interval>,
    pub io: IoMode,
    /// `next_frame` gives up after this long without a frame.
    pub frame_timeout: Duration,
    /// Buffers to request (the driver may grant more).
    pub buffers: u32,
    /// Controls to set before streaming, by `v4l2-ctl` name
    /// (`test_pattern`, "Test Pattern" and `Test_Pattern` are the same).
    pub controls: Vec<(String, i64)>,
}

impl Default for V4l2Config {
    fn default() -> Self {
        V4l2Config {
            device: PathBuf::from("/dev/video0"),
            fourcc: None,
            width: None,
            height: None,
            fps: None,
            io: IoMode::Auto,
            frame_timeout: Duration::from_secs(2),
            buffers: 4,
            controls: Vec::new(),
        }
    }
}

/// Counters of one streaming session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V4l2Stats {
    /// Frames dequeued.
    pub frames: u64,
    /// Of those, frames the driver flagged `V4L2_BUF_FLAG_ERROR`.
    pub error_frames: u64,
    /// Frames the driver skipped (gaps in its `sequence`).
    pub dropped_by_driver: u64,
}

/// A V4L2 capture device, negotiated and with its buffers set up.
pub struct V4l2Source {
    /// `None` only after a failed STREAMOFF made `stop` close the device.
    file: Option<File>,
    path: PathBuf,
    info: DeviceInfo,
    buf_type: u32,
    format: FrameFormat,
    interval: Interval,
    notes: Vec<String>,
    io: IoMode,
    /// USERPTR or MMAP: the memory type in use now.
    memory: u32,
    buffer_count: u32,
    /// USERPTR: the slot queued at each buffer index.
    slots: Vec<Option<QueuedSlot>>,
    /// USERPTR: slots whose QBUF failed while streaming; vb2 may still
    /// hold them, so they are only given back after STREAMOFF.
    limbo: Vec<QueuedSlot>,
    /// MMAP: the driver's buffers, mapped read-only into this process.
    mapped: Vec<MmapRaw>,
    /// MMAP: the buffer last returned by `next_frame`, not yet re-queued.
    held: Option<usize>,
    /// Buffers currently queued to the driver.
    in_driver: usize,
    streaming: bool,
    stopped: bool,
    delivery_note: Option<String>,
    frame_timeout: Duration,
    stats: V4l2Stats,
    /// Driver `sequence` of the previous frame and the wrap count above it.
    last_sequence: Option<u32>,
    sequence_high: u64,
}

impl V4l2Source {
    /// Open the device, negotiate format, frame rate and controls, and set
    /// up buffers. Nothing streams until `start`.
    pub fn open(cfg: &V4l2Config) -> Result<Self, SourceError> {
        let path = cfg.device.clone();
        let file = info::open_device(&path)?;
        let info = info::query(&path, file.as_fd())?;
        let fail = |message: String| SourceError::Device {
            path: path.display().to_string(),
            message,
        };
        if !(info.capture || info.capture_mplane) {
            return Err(fail(format!(
                "not a video capture device ({})",
                capability_names(info.capabilities)
            )));
        }
        if !info.streaming {
            return Err(fail(
                "does not support streaming I/O, which pagecam needs (it only offers read())"
                    .into(),
            ));
        }
        let buf_type = info::capture_type(&info);
        let mut notes = Vec::new();
        let format = negotiate_format(file.as_fd(), buf_type, cfg, &mut notes).map_err(fail)?;
        let interval =
            negotiate_interval(file.as_fd(), buf_type, cfg.fps, &mut notes).map_err(fail)?;
        notes.extend(info::set_controls(&path, file.as_fd(), &cfg.controls)?);
        let mut src = V4l2Source {
            file: Some(file),
            path,
            info,
            buf_type,
            format,
            interval,
            notes,
            io: cfg.io,
            memory: MMAP,
            buffer_count: 0,
            slots: Vec::new(),
            limbo: Vec::new(),
            mapped: Vec::new(),
            held: None,
            in_driver: 0,
            streaming: false,
            stopped: false,
            delivery_note: None,
            frame_timeout: cfg.frame_timeout,
            stats: V4l2Stats::default(),
            last_sequence: None,
            sequence_high: 0,
        };
        src.setup_buffers(cfg.buffers.max(1))?;
        Ok(src)
    }

    /// What was asked and what the driver chose, one line each.
    pub fn negotiation_notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    pub fn stats(&self) -> V4l2Stats {
        self.stats
    }

    /// Frames the driver skipped (sequence gaps) so far.
    pub fn dropped_by_driver(&self) -> u64 {
        self.stats.dropped_by_driver
    }

    /// Buffers the driver granted.
    pub fn buffer_count(&self) -> u32 {
        self.buffer_count
    }

    pub fn device_info(&self) -> &DeviceInfo {
        &self.info
    }

    fn fd(&self) -> Result<BorrowedFd<'_>, SourceError> {
        self.file
            .as_ref()
            .map(|f| f.as_fd())
            .ok_or_else(|| self.error("the device was closed after a failed stop".into()))
    }

    fn error(&self, message: String) -> SourceError {
        SourceError::Device {
            path: self.path.display().to_string(),
            message,
        }
    }

    fn reqbufs(&self, memory: u32, count: u32) -> io::Result<u32> {
        let fd = self
            .file
            .as_ref()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?
            .as_fd();
        let mut req = v4l2_requestbuffers::zeroed();
        req.count = count;
        req.type_ = self.buf_type;
        req.memory = memory;
        sys::reqbufs(fd, &mut req)?;
        Ok(req.count)
    }

    fn setup_buffers(&mut self, count: u32) -> Result<(), SourceError> {
        if self.io == IoMode::Mmap {
            return self.setup_mmap(count);
        }
        match self.reqbufs(USERPTR, count) {
            Ok(0) => Err(self.error("the driver granted no USERPTR buffers".into())),
            Ok(n) => {
                self.memory = USERPTR;
                self.buffer_count = n;
                self.slots = (0..n).map(|_| None).collect();
                if n != count {
                    self.notes
                        .push(format!("asked {count} buffers, driver chose {n}"));
                }
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && self.io == IoMode::Auto => {
                self.delivery_note = Some(
                    "the driver does not support USERPTR (REQBUFS: EINVAL); using MMAP with one copy per frame"
                        .into(),
                );
                self.setup_mmap(count)
            }
            Err(e) => Err(self.error(format!(
                "USERPTR streaming not available ({}); try --io mmap",
                sys::ioctl_error("REQBUFS", &e)
            ))),
        }
    }

    /// Allocate, map and queue `count` driver buffers.
    fn setup_mmap(&mut self, count: u32) -> Result<(), SourceError> {
        let n = self
            .reqbufs(MMAP, count)
            .map_err(|e| self.error(sys::ioctl_error("REQBUFS (MMAP)", &e)))?;
        if n == 0 {
            return Err(self.error("the driver granted no MMAP buffers".into()));
        }
        if n != count {
            self.notes
                .push(format!("asked {count} buffers, driver chose {n}"));
        }
        self.memory = MMAP;
        self.buffer_count = n;
        for index in 0..n {
            let file = self
                .file
                .as_ref()
                .ok_or_else(|| self.error("device closed".into()))?;
            let mut arg = BufArg::new(self.buf_type, MMAP, index);
            arg.querybuf(file.as_fd())
                .map_err(|e| self.error(sys::ioctl_error("QUERYBUF", &e)))?;
            let (offset, len) = arg.mmap_location();
            let map = MmapOptions::new()
                .offset(offset as u64)
                .len(len as usize)
                .map_raw_read_only(file)
                .map_err(|e| self.error(format!("mmap of buffer {index}: {e}")))?;
            self.mapped.push(map);
            self.queue_mapped(index as usize)?;
        }
        Ok(())
    }

    fn queue_mapped(&mut self, index: usize) -> Result<(), SourceError> {
        let fd = self.fd()?;
        let mut arg = BufArg::new(self.buf_type, MMAP, index as u32);
        arg.qbuf(fd).map_err(|e| self.stream_error("QBUF", &e))?;
        self.in_driver += 1;
        Ok(())
    }

    /// USERPTR was refused at the first QBUF: free the USERPTR buffers and
    /// continue with MMAP.
    fn fall_back_to_mmap(&mut self, why: String) -> Result<(), SourceError> {
        self.reqbufs(USERPTR, 0)
            .map_err(|e| self.error(sys::ioctl_error("REQBUFS (free USERPTR)", &e)))?;
        self.slots.clear();
        self.setup_mmap(self.buffer_count)?;
        self.delivery_note = Some(why);
        Ok(())
    }

    /// USERPTR turned out unusable after streaming started: stop, drop the
    /// queued slots (their claims end; they stay marked incomplete), and
    /// stream again from MMAP buffers.
    fn restart_with_mmap(&mut self, why: String) -> Result<(), SourceError> {
        sys::streamoff(self.fd()?, self.buf_type)
            .map_err(|e| self.stream_error("STREAMOFF", &e))?;
        self.streaming = false;
        self.in_driver = 0;
        for q in self.slots.iter_mut().filter_map(Option::take) {
            // SAFETY: STREAMOFF succeeded: "VIDIOC_STREAMOFF removes all
            // buffers from both queues and unlocks all buffers as a side
            // effect" (userp.rst); the driver no longer writes them.
            let _abandoned = unsafe { q.into_claimed() };
        }
        self.fall_back_to_mmap(why)?;
        sys::streamon(self.fd()?, self.buf_type).map_err(|e| self.stream_error("STREAMON", &e))?;
        self.streaming = true;
        // The driver counts again from its start; the dropped frame is not counted.
        self.last_sequence = None;
        self.stats = V4l2Stats::default();
        Ok(())
    }

    /// Map an errno from the streaming ioctls to the error capture acts on.
    fn stream_error(&self, op: &str, e: &io::Error) -> SourceError {
        match e.raw_os_error() {
            Some(libc::EINTR) => SourceError::Interrupted,
            Some(libc::ENODEV) | Some(libc::ENXIO) => SourceError::Gone(format!(
                "{}: {}",
                self.path.display(),
                sys::ioctl_error(op, e)
            )),
            Some(libc::EPIPE) => SourceError::StreamFailed(format!(
                "{}: the driver ended the stream ({})",
                self.path.display(),
                sys::ioctl_error(op, e)
            )),
            Some(libc::EIO) => SourceError::StreamFailed(format!(
                "{}: unrecoverable streaming error reported by the driver ({})",
                self.path.display(),
                sys::ioctl_error(op, e)
            )),
            _ => self.error(sys::ioctl_error(op, e)),
        }
    }

    /// Wait up to the frame timeout for a filled buffer and dequeue it.
    fn dequeue(&mut self) -> Result<BufArg, SourceError> {
        let timeout_ms = self.frame_timeout.as_millis() as u64;
        let deadline = Instant::now() + self.frame_timeout;
        loop {
            let fd = self.fd()?;
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
            let revents = match nix::poll::poll(&mut fds, wait) {
                Ok(0) => return Err(SourceError::Timeout(timeout_ms)),
                Ok(_) => fds[0].revents().unwrap_or(PollFlags::empty()),
                Err(nix::errno::Errno::EINTR) => return Err(SourceError::Interrupted),
                Err(e) => return Err(self.error(format!("poll: {e}"))),
            };
            let mut arg = BufArg::new(self.buf_type, self.memory, 0);
            match arg.dqbuf(fd) {
                Ok(()) => return Ok(arg),
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    if revents
                        .intersects(PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL)
                    {
                        return Err(SourceError::StreamFailed(format!(
                            "{}: poll reports an error on the device ({revents:?}) and no buffer is ready",
                            self.path.display()
                        )));
                    }
                    if left.is_zero() {
                        return Err(SourceError::Timeout(timeout_ms));
                    }
                }
                Err(e) => return Err(self.stream_error("DQBUF", &e)),
            }
        }
    }

    /// The driver's 32-bit sequence as a 64-bit counter that survives wraps;
    /// counts gaps as frames the driver dropped.
    fn sequence(&mut self, raw: u32) -> u64 {
        if let Some(last) = self.last_sequence {
            if raw < last && last - raw > u32::MAX / 2 {
                self.sequence_high += 1 << 32;
            }
            let gap = raw.wrapping_sub(last).wrapping_sub(1);
            if gap < u32::MAX / 2 {
                self.stats.dropped_by_driver += gap as u64;
            }
        }
        self.last_sequence = Some(raw);
        self.sequence_high + raw as u64
    }

    fn frame_info(&mut self, arg: &BufArg) -> FrameInfo {
        let (bytes_used, data_offset) = arg.payload();
        let b = &arg.buf;
        let timestamp_ns =
            if b.flags & V4L2_BUF_FLAG_TIMESTAMP_MASK == V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC {
                arg.timestamp_ns()
            } else {
                crate::recording::monotonic_ns()
            };
        let mut flags = 0;
        if b.flags & V4L2_BUF_FLAG_ERROR != 0 {
            flags |= FLAG_ERROR;
            self.stats.error_frames += 1;
        }
        self.stats.frames += 1;
        FrameInfo {
            source_sequence: self.sequence(b.sequence),
            timestamp_ns,
            bytes_used: bytes_used.saturating_sub(data_offset),
            flags,
        }
    }
}

fn fps_text(i: &Interval) -> String {
    let text = format!("{:.3}", i.fps());
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// S_FMT with what was asked (the driver's current values for the rest),
/// then check what the driver chose.
fn negotiate_format(
    fd: BorrowedFd<'_>,
    buf_type: u32,
    cfg: &V4l2Config,
    notes: &mut Vec<String>,
) -> Result<FrameFormat, String> {
    let mplane = buf_type == v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE;
    let mut fmt = v4l2_format::zeroed();
    fmt.type_ = buf_type;
    sys::g_fmt(fd, &mut fmt).map_err(|e| sys::ioctl_error("G_FMT", &e))?;
    // Reading the union member that matches `type_`, which G_FMT filled.
    let (cur_fourcc, cur_w, cur_h) = if mplane {
        // SAFETY: for VIDEO_CAPTURE_MPLANE the kernel fills `fmt.pix_mp`
        // (format.rst); the union's members are plain integers anyway.
        let p = unsafe { fmt.fmt.pix_mp };
        (p.pixelformat, p.width, p.height)
    } else {
        // SAFETY: for VIDEO_CAPTURE the kernel fills `fmt.pix`; plain integers.
        let p = unsafe { fmt.fmt.pix };
        (p.pixelformat, p.width, p.height)
    };
    let (want_fourcc, want_w, want_h) = (
        cfg.fourcc.unwrap_or(cur_fourcc),
        cfg.width.unwrap_or(cur_w),
        cfg.height.unwrap_or(cur_h),
    );
    let mut req = v4l2_format::zeroed();
    req.type_ = buf_type;
    if mplane {
        let mut p = v4l2_pix_format_mplane::zeroed();
        p.pixelformat = want_fourcc;
        p.width = want_w;
        p.height = want_h;
        p.field = v4l2_field_V4L2_FIELD_NONE;
        p.num_planes = 1;
        req.fmt.pix_mp = p;
    } else {
        let mut p = v4l2_pix_format::zeroed();
        p.pixelformat = want_fourcc;
        p.width = want_w;
        p.height = want_h;
        p.field = v4l2_field_V4L2_FIELD_NONE;
        req.fmt.pix = p;
    }
    sys::s_fmt(fd, &mut req).map_err(|e| {
        format!(
            "cannot set format {} {want_w}x{want_h}: {}",
            fourcc_str(want_fourcc),
            sys::ioctl_error("S_FMT", &e)
        )
    })?;
    let (fourcc, width, height, field, bpl, size, planes) = if mplane {
        // SAFETY: S_FMT of VIDEO_CAPTURE_MPLANE fills `pix_mp`; plain integers.
        let p = unsafe { req.fmt.pix_mp };
        let pl = p.plane_fmt[0];
        (
            p.pixelformat,
            p.width,
            p.height,
            p.field,
            pl.bytesperline,
            pl.sizeimage,
            p.num_planes as u32,
        )
    } else {
        // SAFETY: S_FMT of VIDEO_CAPTURE fills `pix`; plain integers.
        let p = unsafe { req.fmt.pix };
        (
            p.pixelformat,
            p.width,
            p.height,
            p.field,
            p.bytesperline,
            p.sizeimage,
            1,
        )
    };
    if fourcc != want_fourcc {
        let offered: Vec<String> = info::enum_formats(fd, buf_type)
            .iter()
            .map(|(f, _, _)| fourcc_str(*f))
            .collect();
        return Err(format!(
            "does not offer pixel format {} (it offers: {})",
            fourcc_str(want_fourcc),
            offered.join(" ")
        ));
    }
    if planes > 1 {
        return Err(format!(
            "pixel format {} has {planes} memory planes; multi-plane formats are not supported yet",
            fourcc_str(fourcc)
        ));
    }
    if size == 0 {
        return Err(format!(
            "the driver reports a zero image size for {}",
            fourcc_str(fourcc)
        ));
    }
    match cfg.fourcc {
        Some(_) => notes.push(format!("pixel format {}", fourcc_str(fourcc))),
        None => notes.push(format!(
            "pixel format {} (the driver's current one)",
            fourcc_str(fourcc)
        )),
    }
    if cfg.width.is_some() || cfg.height.is_some() {
        notes.push(format!(
            "asked {want_w}x{want_h}, driver chose {width}x{height}"
        ));
    } else {
        notes.push(format!("size {width}x{height} (the driver's current one)"));
    }
    notes.push(format!("bytes per line {bpl}, image size {size}"));
    if field != v4l2_field_V4L2_FIELD_NONE {
        notes.push(format!(
            "the driver delivers interlaced frames (field order {field}), recorded as delivered"
        ));
    }
    Ok(FrameFormat {
        fourcc,
        width,
        height,
        bytes_per_line: bpl,
        frame_size: size,
    })
}

/// S_PARM for the asked frame rate, then G_PARM for what the driver runs at.
fn negotiate_interval(
    fd: BorrowedFd<'_>,
    buf_type: u32,
    fps: Option<Interval>,
    notes: &mut Vec<String>,
) -> Result<Interval, String> {
    let mut parm = v4l2_streamparm::zeroed();
    parm.type_ = buf_type;
    let current = sys::g_parm(fd, &mut parm).ok().map(|()| {
        // SAFETY: G_PARM of a capture type fills `parm.capture`; plain integers.
        unsafe { parm.parm.capture }
    });
    let can_set = current.is_some_and(|c| c.capability & V4L2_CAP_TIMEPERFRAME != 0);
    let mut chosen = current.map(|c| Interval {
        numerator: c.timeperframe.numerator,
        denominator: c.timeperframe.denominator,
    });
    if let Some(want) = fps.filter(|i| i.numerator > 0 && i.denominator > 0) {
        let fps = fps_text(&want);
        if can_set {
            let mut set = v4l2_streamparm::zeroed();
            set.type_ = buf_type;
            let mut cap = v4l2_captureparm::zeroed();
            cap.timeperframe.numerator = want.numerator;
            cap.timeperframe.denominator = want.denominator;
            set.parm.capture = cap;
            sys::s_parm(fd, &mut set).map_err(|e| sys::ioctl_error("S_PARM", &e))?;
            // SAFETY: S_PARM returns the applied `capture` parameters.
            let got = unsafe { set.parm.capture }.timeperframe;
            chosen = Some(Interval {
                numerator: got.numerator,
                denominator: got.denominator,
            });
        }
        let got = chosen.filter(|i| i.numerator > 0 && i.denominator > 0);
        match (can_set, got) {
            (true, Some(i)) => {
                notes.push(format!("asked {fps} fps, driver chose {}", fps_text(&i)))
            }
            (false, Some(i)) => notes.push(format!(
                "asked {fps} fps, but the driver cannot set the frame rate; it runs at {}",
                fps_text(&i)
            )),
            (_, None) => {
                notes.push(format!(
                    "the driver does not report its frame rate; assuming the asked {fps} fps"
                ));
                return Ok(want);
            }
        }
    }
    match chosen.filter(|i| i.numerator > 0 && i.denominator > 0) {
        Some(i) => {
            if fps.is_none() {
                notes.push(format!(
                    "frame rate {} fps (the driver's current one)",
                    fps_text(&i)
                ));
            }
            Ok(i)
        }
        None => {
            notes.push("the driver does not report its frame rate; assuming 30 fps".into());
            Ok(Interval::from_fps(30))
        }
    }
}

impl FrameSource for V4l2Source {
    fn format(&self) -> FrameFormat {
        self.format
    }

    fn interval(&self) -> Interval {
        self.interval
    }

    fn describe(&self) -> String {
        self.info.describe()
    }

    fn delivery(&self) -> Delivery {
        if self.memory == USERPTR {
            Delivery::Direct
        } else {
            Delivery::Copy
        }
    }

    fn slots_wanted(&self) -> usize {
        if self.memory == USERPTR {
            self.buffer_count as usize
        } else {
            0
        }
    }

    fn give_slot(&mut self, slot: ClaimedSlot) -> Result<Option<ClaimedSlot>, SourceError> {
        if self.stopped {
            return Err(self.error("give_slot after stop".into()));
        }
        if self.memory != USERPTR {
            return Ok(Some(slot)); // copying: the slot is not needed
        }
        if slot.capacity() < self.format.frame_size as usize {
            return Err(self.error(format!(
                "slot of {} bytes is smaller than the driver's image size {}",
                slot.capacity(),
                self.format.frame_size
            )));
        }
        let Some(index) = self.slots.iter().position(Option::is_none) else {
            return Err(self.error(format!(
                "all {} USERPTR buffers are already queued",
                self.buffer_count
            )));
        };
        let fd = self.fd()?;
        let queued = slot.into_queued();
        let mut arg = BufArg::new(self.buf_type, USERPTR, index as u32);
        // Soundness: the memory is the slot `queued` owns. It stays mapped (the
        // recording mapping outlives the writer's claims) and `queued` is
        // kept in `self.slots[index]` (or `limbo`) until DQBUF returns this
        // index or STREAMOFF/close ends the stream; a QueuedSlot allows no
        // CPU access to the slot meanwhile.
        // SAFETY: the slot stays mapped and untouched by the CPU until DQBUF/STREAMOFF.
        let result = unsafe { arg.qbuf_userptr(fd, queued.user_ptr(), queued.len()) };
        let e = match result {
            Ok(()) => {
                self.slots[index] = Some(queued);
                self.in_driver += 1;
                return Ok(None);
            }
            Err(e) => e,
        };
        if self.streaming {
            // A QBUF while streaming may start the stream inside vb2 and fail
            // there with the buffer already on vb2's queue: keep it until
            // STREAMOFF, which removes every buffer from the queues.
            self.limbo.push(queued);
            return Err(self.stream_error("QBUF", &e));
        }
        // SAFETY: QBUF failed before streaming: vb2 acquires (pins) the user
        // memory in buf_prepare and only puts a buffer on its queue after
        // that succeeded, so the driver never received this one.
        let slot = unsafe { queued.into_claimed() };
        let refused = e.raw_os_error() == Some(libc::EFAULT);
        if refused && self.io == IoMode::Auto && self.in_driver == 0 {
            self.fall_back_to_mmap(
                "USERPTR refused by the kernel (QBUF: EFAULT, file-backed pages cannot be pinned); \
                 using MMAP with one copy per frame"
                    .into(),
            )?;
            return Ok(Some(slot));
        }
        // The slot is dropped: its claim ends, it stays marked incomplete.
        if refused {
            return Err(self.error(
                "the kernel refused USERPTR into the recording file (QBUF: EFAULT: Linux 6.5+ cannot pin \
                 writable file-backed pages); use --io mmap or --io auto"
                    .into(),
            ));
        }
        Err(self.stream_error("QBUF", &e))
    }

    fn start(&mut self) -> Result<(), SourceError> {
        if self.stopped {
            return Err(self.error("the source was stopped; open it again".into()));
        }
        if self.streaming {
            return Ok(());
        }
        sys::streamon(self.fd()?, self.buf_type).map_err(|e| self.stream_error("STREAMON", &e))?;
        self.streaming = true;
        Ok(())
    }

    fn next_frame(&mut self) -> Result<Frame<'_>, SourceError> {
        if !self.streaming {
            return Err(self.error("next_frame called while not streaming".into()));
        }
        if let Some(index) = self.held.take() {
            self.queue_mapped(index)?; // the caller did not `release`
        }
        if self.in_driver == 0 {
            return Err(
                self.error("no buffer is queued to the driver (all slots were handed out)".into())
            );
        }
        let arg = self.dequeue()?;
        self.in_driver -= 1;
        let info = self.frame_info(&arg);
        let index = arg.buf.index as usize;
        if self.memory == USERPTR {
            let Some(queued) = self.slots.get_mut(index).and_then(Option::take) else {
                return Err(self.error(format!(
                    "the driver returned buffer {index}, which was not queued"
                )));
            };
            // Soundness: DQBUF returned buffer `index`, the one this slot was
            // queued as: "Filled or displayed buffers are dequeued with the
            // VIDIOC_DQBUF ioctl. The driver can unlock the memory pages at
            // any time between the completion of the DMA and this ioctl"
            // (userp.rst): the driver no longer writes it.
            // SAFETY: DQBUF returned it: the driver no longer writes this slot.
            let slot = unsafe { queued.into_claimed() };
            let (_, data_offset) = arg.payload();
            if data_offset == 0 {
                return Ok(Frame::InSlot(slot, info));
            }
            // The frame starts `data_offset` bytes into the slot, which the
            // recording cannot express: only MMAP (copying from the offset) works.
            let why = format!(
                "the driver puts each frame {data_offset} bytes into its buffer (MPLANE data_offset), \
                 which a direct write into the recording cannot store"
            );
            if self.io != IoMode::Auto || self.stats.frames > 1 {
                return Err(self.error(format!("{why}; use --io mmap")));
            }
            self.restart_with_mmap(format!(
                "{why}; using MMAP with one copy per frame (the first frame and the slots queued so far are \
                 left incomplete)"
            ))?;
            return self.next_frame();
        }
        let (bytes_used, data_offset) = arg.payload();
        if index >= self.mapped.len() {
            return Err(self.error(format!("the driver returned unknown buffer {index}")));
        }
        self.held = Some(index);
        let map = &self.mapped[index];
        let len = map.len();
        let end = (bytes_used as usize).min(len);
        let start = (data_offset as usize).min(end);
        // Soundness: the range lies inside the mapping of buffer `index`, which
        // DQBUF just returned to us: the driver writes it again only after a
        // QBUF, which needs `&mut self` (`release`/`next_frame`/`stop`), so
        // not while this shared borrow of `self` lives.
        // SAFETY: in bounds of a dequeued buffer the driver cannot refill while borrowed.
        let data = unsafe { std::slice::from_raw_parts(map.as_ptr().add(start), end - start) };
        Ok(Frame::InBuffer(data, info))
    }

    fn release(&mut self) -> Result<(), SourceError> {
        match self.held.take() {
            Some(index) => self.queue_mapped(index),
            None => Ok(()),
        }
    }

    fn stop(&mut self) -> Vec<ClaimedSlot> {
        let mut out = Vec::new();
        if self.stopped {
            return out;
        }
        self.stopped = true;
        self.streaming = false;
        self.held = None;
        let off = match &self.file {
            Some(f) => sys::streamoff(f.as_fd(), self.buf_type),
            None => Ok(()),
        };
        // Unmap before freeing: REQBUFS(0) refuses while buffers are mapped.
        self.mapped.clear();
        if off.is_err() {
            // STREAMOFF failed (e.g. ENODEV after a disconnect): close the
            // device instead; the last close releases the queue.
            self.file = None;
        } else {
            let _ = self.reqbufs(self.memory, 0);
        }
        self.in_driver = 0;
        let queued = self
            .slots
            .iter_mut()
            .filter_map(Option::take)
            .chain(self.limbo.drain(..));
        for q in queued.collect::<Vec<_>>() {
            // Soundness: streaming is over for these buffers: either STREAMOFF
            // succeeded ("VIDIOC_STREAMOFF removes all buffers from both
            // queues and unlocks all buffers as a side effect", userp.rst), or
            // the device was just closed ("The memory is also unlocked ...
            // when the device is closed"); this source owns the only
            // descriptor (O_CLOEXEC, never duplicated), so close() ran the
            // driver's release, which stops streaming, before returning.
            // SAFETY: streaming is off (or the device closed): no driver writes remain.
            out.push(unsafe { q.into_claimed() });
        }
        out
    }

    fn delivery_note(&self) -> Option<String> {
        self.delivery_note.clone()
    }
}

impl Drop for V4l2Source {
    fn drop(&mut self) {
        if !self.stopped {
            // Slots still queued come back as claims and are dropped, which
            // leaves them marked incomplete (see `SharedMap::abandon`).
            drop(self.stop());
        }
    }
}

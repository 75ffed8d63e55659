//! The subscription: connect to capture, replay the backlog, receive
//! notices (without the GIL, interruptible by Ctrl-C), hand out frames,
//! acknowledge progress as `pagecam-analyzer watch` does.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use pagecam::format::{fourcc_str, FrameFormat, FrameMeta};
use pagecam::protocol::{EndReason, FrameNotice, STORE_MEMFD_RING, STORE_RECORDING_FILE};
use pagecam::subscribe::{Event, Start, Stored, StoredFrame, SubscribeError};

use crate::errors::{self, Exc};
use crate::frame::{Bytes, Counters, Frame, FrameInfo, Lost};
use crate::view::{FrameMemory, Memory};

/// How often a blocked `next()` runs Python's signal handlers (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(200);

/// The socket to connect to: `path` if it is a socket, else `path.sock`.
pub fn socket_of(path: &Path) -> PathBuf {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_socket() => path.to_path_buf(),
        _ => {
            let mut p = path.as_os_str().to_owned();
            p.push(".sock");
            PathBuf::from(p)
        }
    }
}

/// Where a subscription starts, from Python's `from_`.
fn parse_start(from: Option<&Bound<'_, PyAny>>) -> PyResult<Start> {
    let Some(v) = from else {
        return Ok(Start::Now);
    };
    if v.is_none() {
        return Ok(Start::Now);
    }
    if let Ok(s) = v.cast::<PyString>() {
        return match &*s.to_cow()? {
            "now" => Ok(Start::Now),
            "oldest" => Ok(Start::Oldest),
            other => Err(PyValueError::new_err(format!(
                "from_={other:?}: use \"now\", \"oldest\", a sequence number or a timedelta"
            ))),
        };
    }
    if v.is_instance_of::<pyo3::types::PyBool>() {
        return Err(PyTypeError::new_err("from_ must not be a bool"));
    }
    if let Ok(n) = v.extract::<i64>() {
        return u64::try_from(n).map(Start::Sequence).map_err(|_| {
            PyValueError::new_err(format!("from_={n}: a sequence number is at least 0"))
        });
    }
    if v.hasattr("total_seconds")? {
        let secs: f64 = v.call_method0("total_seconds")?.extract()?;
        return Duration::try_from_secs_f64(secs.abs())
            .map(Start::Ago)
            .map_err(|_| PyValueError::new_err(format!("from_: bad duration {secs} s")));
    }
    Err(PyTypeError::new_err(
        "from_ must be None, \"now\", \"oldest\", a sequence number or a datetime.timedelta",
    ))
}

fn duration(secs: Option<f64>, what: &str) -> PyResult<Duration> {
    match secs {
        // A year: the longest wait the socket timeout takes everywhere.
        None => Ok(Duration::from_secs(365 * 86400)),
        Some(s) if s.is_finite() && s > 0.0 => Duration::try_from_secs_f64(s)
            .map_err(|_| PyValueError::new_err(format!("{what}={s}: too long"))),
        Some(s) => Err(PyValueError::new_err(format!(
            "{what}={s}: give a positive number of seconds, or None to wait forever"
        ))),
    }
}

/// What capture said about the stream on connecting.
///
/// `format` (fourcc, e.g. `"YUYV"`), `width`, `height`, `stride` (bytes
/// per line), `frame_size` (largest frame), `slots` (frames the live store
/// holds: how far an analyzer may fall behind), `store` (`"direct"`: a
/// sealed RAM ring, older frames in the recording; `"file"`: the recording
/// file itself), `client_id`, `next_seq` (the first live frame's number;
/// frames below it were already stored).
#[pyclass(frozen, module = "pagecam", get_all)]
pub struct Hello {
    format: String,
    width: u32,
    height: u32,
    stride: u32,
    frame_size: u32,
    slots: u32,
    store: &'static str,
    client_id: u64,
    next_seq: u64,
}

#[pymethods]
impl Hello {
    fn __repr__(&self) -> String {
        format!(
            "<pagecam.Hello {} {}x{} stride={} slots={} store={} next_seq={}>",
            self.format,
            self.width,
            self.height,
            self.stride,
            self.slots,
            self.store,
            self.next_seq
        )
    }
}

/// A connection to a running `pagecam-capture`, and the stream of its
/// frames: `for frame in sub:` or `sub.next()`.
///
/// `Subscription(path, idle_timeout=10.0, from_=None)`: `path` is capture's
/// socket, or the recording (its socket `PATH.sock` is used, as
/// `pagecam-analyzer watch` does). Connecting receives the frame store's
/// descriptors and maps the store read-only. `idle_timeout`: seconds
/// `next()` waits for a frame before raising `Timeout` (`None`: forever).
/// `from_`: `None`/`"now"` (the next new frame), `"oldest"` (every frame
/// still stored first: the live store's and, with `--store direct`, the
/// recording's older ones), a sequence number, or a `datetime.timedelta`
/// (the frames of the last that long); the stored frames come first, in
/// order, then the live ones, with no gap or duplicate at the hand-over.
///
/// Raises `ConnectError` if nobody serves the socket (is capture running?)
/// or capture refuses this analyzer. Usable as a context manager
/// (`close()` at the end). One thread at a time may use a subscription.
#[pyclass(module = "pagecam")]
pub struct Subscription {
    inner: Option<pagecam::subscribe::Subscription>,
    format: FrameFormat,
    socket: PathBuf,
    backlog: VecDeque<StoredFrame>,
    /// The next sequence expected; a notice below it is a duplicate.
    next_seq: Option<u64>,
    /// A frame handed out whose sequence is acknowledged on the next call.
    progress_due: Option<u64>,
    end: Option<(EndReason, u64)>,
    counters: Arc<Counters>,
    hello: Py<Hello>,
}

impl Subscription {
    fn inner(&self, py: Python<'_>) -> PyResult<&pagecam::subscribe::Subscription> {
        self.inner
            .as_ref()
            .ok_or_else(|| errors::err(py, Exc::Error, "the subscription is closed"))
    }

    /// Sequence bookkeeping: `false` for a duplicate (already handed out).
    fn accept_seq(&mut self, seq: u64) -> bool {
        if let Some(expected) = self.next_seq {
            if seq < expected {
                return false;
            }
            if seq > expected {
                self.counters
                    .missed
                    .fetch_add(seq - expected, Ordering::Relaxed);
            }
        }
        self.next_seq = Some(seq.saturating_add(1));
        true
    }

    /// The frame `info` announces in the live store, if its slot still
    /// holds it (`generation`, and the record's sequence is the frame's).
    fn live_frame(&self, py: Python<'_>, info: &FrameInfo, generation: u64) -> PyResult<Bytes> {
        let sub = self.inner(py)?;
        let live = sub.live();
        // The notice's slot, consistent and still holding its frame?
        let current = live
            .snapshot(info.slot)
            .is_some_and(|s| s.generation == generation && s.meta.sequence == info.seq);
        if !current {
            return Ok(Bytes::Lost(if info.slot >= live.slot_count() {
                Lost::Other(format!(
                    "the notice named slot {}, the store has {}",
                    info.slot,
                    live.slot_count()
                ))
            } else {
                Lost::Overwritten
            }));
        }
        match live.foreign_slot(info.slot, info.bytes_used) {
            Some(slot) => Ok(Bytes::Live {
                memory: Py::new(py, FrameMemory::new(Memory::Live(slot)))?,
                generation,
            }),
            None => Ok(Bytes::Lost(Lost::Other(format!(
                "slot {} cannot be read",
                info.slot
            )))),
        }
    }

    /// A frame of the recording behind a RAM ring, read with `pread`.
    fn archived_frame(&self, py: Python<'_>, meta: &FrameMeta, slot: u32) -> PyResult<Bytes> {
        let sub = self.inner(py)?;
        let Some(archive) = sub.archive() else {
            return Ok(Bytes::Lost(Lost::Other(
                "no recording to replay from".into(),
            )));
        };
        let read = py.detach(|| archive.valid_frame(slot));
        Ok(match read {
            Ok(Some((m, bytes))) if m == *meta => Bytes::Owned(Py::new(
                py,
                FrameMemory::new(Memory::Owned(bytes.into_boxed_slice())),
            )?),
            // The recording's slot holds a newer frame by now.
            Ok(Some(_)) => Bytes::Lost(Lost::Overwritten),
            Ok(None) => Bytes::Lost(Lost::Other(
                "its copy in the recording failed its checksum".into(),
            )),
            Err(e) => Bytes::Lost(Lost::Other(format!(
                "cannot read it from the recording: {e}"
            ))),
        })
    }

    fn stored_frame(&mut self, py: Python<'_>, f: StoredFrame) -> PyResult<Frame> {
        let slot = match f.at {
            Stored::Live { slot, .. } | Stored::Archive { slot } => slot,
        };
        let info = || FrameInfo {
            seq: f.meta.sequence,
            source_seq: Some(f.meta.source_sequence),
            ts_ns: f.meta.timestamp_ns,
            wall_ns: Some(f.meta.wall_ns),
            ready_ns: None,
            bytes_used: f.meta.bytes_used,
            flags: f.meta.flags,
            slot,
            replayed: true,
        };
        let mut bytes = match f.at {
            Stored::Live { generation, .. } => self.live_frame(py, &info(), generation)?,
            Stored::Archive { slot } => self.archived_frame(py, &f.meta, slot)?,
        };
        // A live frame the ring overwrote meanwhile: the recording has it too.
        if let (Bytes::Lost(Lost::Overwritten), Stored::Live { .. }, Some(a)) =
            (&bytes, f.at, f.archived)
        {
            bytes = self.archived_frame(py, &f.meta, a)?;
        }
        self.counters.replayed.fetch_add(1, Ordering::Relaxed);
        Ok(Frame::new(
            info(),
            self.format,
            bytes,
            self.counters.clone(),
        ))
    }

    fn notice_frame(&mut self, py: Python<'_>, n: FrameNotice) -> PyResult<Frame> {
        let snap = self.inner(py)?.live().snapshot(n.slot);
        let meta = snap.filter(|s| s.generation == n.generation && s.meta.sequence == n.sequence);
        let info = FrameInfo {
            seq: n.sequence,
            source_seq: meta.map(|s| s.meta.source_sequence),
            ts_ns: n.timestamp_ns,
            wall_ns: meta.map(|s| s.meta.wall_ns),
            ready_ns: Some(n.ready_ns),
            bytes_used: n.bytes_used,
            flags: n.flags,
            slot: n.slot,
            replayed: false,
        };
        let bytes = self.live_frame(py, &info, n.generation)?;
        Ok(Frame::new(info, self.format, bytes, self.counters.clone()))
    }

    /// The next frame, `None` at the end of the stream.
    fn next_frame(&mut self, py: Python<'_>) -> PyResult<Option<Frame>> {
        if let Some(seq) = self.progress_due.take() {
            self.inner(py)?.send_progress(seq);
        }
        loop {
            if let Some(f) = self.backlog.pop_front() {
                if !self.accept_seq(f.meta.sequence) {
                    continue;
                }
                let frame = self.stored_frame(py, f)?;
                return Ok(Some(self.handed_out(frame)));
            }
            if self.end.is_some() {
                return Ok(None);
            }
            let sub = self
                .inner
                .as_mut()
                .ok_or_else(|| errors::err(py, Exc::Error, "the subscription is closed"))?;
            // Wait without the GIL, in slices: a signal interrupts the wait
            // (Python installs its handlers without SA_RESTART), but one
            // that lands just before it, or on another thread (numpy's),
            // does not; every slice runs the handlers, which raise
            // KeyboardInterrupt for Ctrl-C. Then the one recv.
            let idle = sub.idle();
            let waited = std::time::Instant::now();
            loop {
                match py.detach(|| sub.wait_readable(SIGNAL_CHECK)) {
                    Ok(true) => break,
                    Ok(false) | Err(SubscribeError::Interrupted) => py.check_signals()?,
                    Err(e) => return Err(errors::subscribe(py, e)),
                }
                if waited.elapsed() >= idle {
                    return Err(errors::subscribe(py, SubscribeError::Idle(idle)));
                }
            }
            let event = py.detach(|| match sub.next_event() {
                // Linux reports ECONNRESET (which the library calls
                // CaptureGone) *before* the messages still queued when the
                // peer closed its end with unread data in its own receive
                // queue (our last progress message, if capture stopped
                // reading before it ended the stream): the error is
                // reported once, then the notices and the End are read.
                // A real end of file answers 0 again at once.
                Err(SubscribeError::CaptureGone) => sub.next_event(),
                other => other,
            });
            match event {
                Ok(Event::Frame(n)) => {
                    if !self.accept_seq(n.sequence) {
                        continue;
                    }
                    let frame = self.notice_frame(py, n)?;
                    return Ok(Some(self.handed_out(frame)));
                }
                Ok(Event::End(e)) => {
                    self.end = Some((e.reason, e.frames));
                    return Ok(None);
                }
                Err(SubscribeError::Interrupted) => py.check_signals()?,
                Err(e) => return Err(errors::subscribe(py, e)),
            }
        }
    }

    fn handed_out(&mut self, frame: Frame) -> Frame {
        self.counters.frames.fetch_add(1, Ordering::Relaxed);
        let seq = frame.sequence();
        // As pagecam-analyzer watch: every 8th frame, once it is done with
        // (the caller asks for the next one).
        if seq.is_multiple_of(8) {
            self.progress_due = Some(seq);
        }
        frame
    }
}

#[pymethods]
impl Subscription {
    #[new]
    #[pyo3(
        signature = (socket_path, idle_timeout = Some(10.0), from_ = None),
        text_signature = "(socket_path, idle_timeout=10.0, from_=None)"
    )]
    fn new(
        py: Python<'_>,
        socket_path: PathBuf,
        idle_timeout: Option<f64>,
        from_: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let start = parse_start(from_)?;
        let idle = duration(idle_timeout, "idle_timeout")?;
        let socket = socket_of(&socket_path);
        let sub = py
            .detach(|| pagecam::subscribe::Subscription::connect(&socket, idle))
            .map_err(|e| errors::subscribe(py, e))?;
        let h = sub.hello();
        let format = h.format;
        let store = match h.store_kind {
            STORE_RECORDING_FILE => "file",
            STORE_MEMFD_RING => "direct",
            _ => "unknown",
        };
        let hello = Hello {
            format: fourcc_str(format.fourcc),
            width: format.width,
            height: format.height,
            stride: format.bytes_per_line,
            frame_size: format.frame_size,
            slots: h.layout.slot_count,
            store,
            client_id: h.client_id,
            next_seq: h.next_sequence,
        };
        let backlog = py.detach(|| sub.backlog(start)).map_err(|e| {
            errors::err(
                py,
                Exc::Error,
                format!("cannot read the stored frames: {e}"),
            )
        })?;
        Ok(Subscription {
            inner: Some(sub),
            format,
            socket,
            backlog: backlog.into(),
            // From a sequence number on: nothing below it, stored or live.
            next_seq: match start {
                Start::Sequence(s) => Some(s),
                _ => None,
            },
            progress_due: None,
            end: None,
            counters: Arc::new(Counters::default()),
            hello: Py::new(py, hello)?,
        })
    }

    /// What capture said on connecting (format, geometry, store).
    #[getter]
    fn hello(&self, py: Python<'_>) -> Py<Hello> {
        self.hello.clone_ref(py)
    }

    /// The socket this subscription connected to.
    #[getter]
    fn socket(&self) -> PathBuf {
        self.socket.clone()
    }

    /// How the stream ended: `None` while it runs, else a dict with
    /// `reason` (`"finished"` or `"error"`) and `frames` (in the recording).
    #[getter]
    fn end<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some((reason, frames)) = self.end else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item(
            "reason",
            match reason {
                EndReason::Finished => "finished",
                EndReason::Error | EndReason::Refused => "error",
            },
        )?;
        d.set_item("frames", frames)?;
        Ok(Some(d))
    }

    /// Counters: `frames` handed out (of which `replayed`), `missed`
    /// (sequence numbers never seen: notices capture dropped because this
    /// analyzer's socket was full), `overwritten`, `torn` and `other_lost`
    /// (frames whose checks failed so far).
    #[getter]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = &self.counters;
        let d = PyDict::new(py);
        for (k, v) in [
            ("frames", &c.frames),
            ("replayed", &c.replayed),
            ("missed", &c.missed),
            ("overwritten", &c.overwritten),
            ("torn", &c.torn),
            ("other_lost", &c.other_lost),
        ] {
            d.set_item(k, v.load(Ordering::Relaxed))?;
        }
        Ok(d)
    }

    /// The next frame; `None` once capture has ended the stream. Waits
    /// without holding the GIL; Ctrl-C raises `KeyboardInterrupt`. Raises
    /// `Timeout` after `idle_timeout` without a frame, `CaptureGone` if
    /// capture died. The frame may already be overwritten: open it with
    /// `with frame:` (raises `Overwritten`) and use it inside.
    fn next(&mut self, py: Python<'_>) -> PyResult<Option<Frame>> {
        self.next_frame(py)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Frame>> {
        // None ends the iteration (PyO3 raises StopIteration).
        self.next_frame(py)
    }

    /// Close the connection. Frames (and arrays) handed out stay readable:
    /// each holds the mapping.
    fn close(&mut self) {
        self.inner = None;
        self.backlog.clear();
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_none()
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "<pagecam.Subscription {} {} {}x{}{}>",
            self.socket.display(),
            fourcc_str(self.format.fourcc),
            self.format.width,
            self.format.height,
            if self.inner.is_none() { " closed" } else { "" }
        )
    }
}

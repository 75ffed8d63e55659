//! The frame handle: metadata, the in-place view, the copies, and the
//! seqlock check that decides whether anything computed from them counts.
//!
//! The check is `LiveStore::read_frame`'s, split across Python code:
//! opening the frame (`with`, `array()`, `copy()`…) loads the slot's
//! generation with Acquire and requires the announced one (else
//! `Overwritten`): that pairs with capture's Release store of it, so every
//! byte of the frame is visible. The check (`__exit__`, `check()`) issues an
//! Acquire fence and loads the generation again (else `Torn`): the fence
//! pairs with the Release fence capture issues after making a slot's
//! generation odd and before writing any byte of it, so if any read between
//! open and check saw a byte of a newer frame, the check sees the change.
//! (Generations only grow, so equal values mean nothing changed in between.)

use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Arc;

use numpy::{PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyType;

use pagecam::format::{fourcc_str, FrameFormat, FLAG_ERROR};

use crate::convert;
use crate::errors::{self, Exc};
use crate::view::{self, FrameMemory, Geometry};

/// What a subscription counts (shared with its frames, which report the
/// losses their checks find).
#[derive(Default)]
pub struct Counters {
    pub frames: AtomicU64,
    pub replayed: AtomicU64,
    pub missed: AtomicU64,
    pub overwritten: AtomicU64,
    pub torn: AtomicU64,
    pub other_lost: AtomicU64,
}

/// Why a frame's bytes cannot be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lost {
    Overwritten,
    Torn,
    /// Anything else (a replayed frame that failed its checksum, a bad
    /// notice): the message says what.
    Other(String),
}

impl Lost {
    fn err(&self, py: Python<'_>, seq: u64) -> PyErr {
        match self {
            Lost::Overwritten => errors::err(
                py,
                Exc::Overwritten,
                format!(
                    "frame {seq} was overwritten before it was opened (the analyzer is more \
                     than the ring's length behind)"
                ),
            ),
            Lost::Torn => errors::err(
                py,
                Exc::Torn,
                format!(
                    "frame {seq} was overwritten while in use: discard what was computed from it"
                ),
            ),
            Lost::Other(why) => errors::err(py, Exc::FrameLost, format!("frame {seq}: {why}")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Handed out, not opened.
    Fresh,
    /// Opened: the generation was checked; views may exist.
    Open,
    /// Closed: no more pixels.
    Closed,
}

/// What is known about a frame when it is handed out.
pub struct FrameInfo {
    pub seq: u64,
    pub source_seq: Option<u64>,
    pub ts_ns: u64,
    pub wall_ns: Option<u64>,
    pub ready_ns: Option<u64>,
    pub bytes_used: u32,
    pub flags: u32,
    pub slot: u32,
    pub replayed: bool,
}

/// Where a frame's bytes are.
pub enum Bytes {
    /// The live store's slot, holding `generation` when announced.
    Live {
        memory: Py<FrameMemory>,
        generation: u64,
    },
    /// A copy of our own (a frame replayed from the recording file): never torn.
    Owned(Py<FrameMemory>),
    /// Lost before it was handed out.
    Lost(Lost),
}

/// One frame from capture. Read its pixels inside `with frame:` (or call
/// `check()` after using them): capture may reuse its slot at any moment,
/// and only the check tells whether what was read is this frame.
///
/// Attributes: `seq` (sequence number in the recording), `source_seq` (the
/// source's own number, `None` if unknown), `ts_ns` (capture timestamp,
/// CLOCK_MONOTONIC), `wall_ns` (wall clock, `None` if unknown), `ready_ns`
/// (when capture published it, CLOCK_MONOTONIC; `None` for replayed
/// frames), `bytes_used`, `flags`, `error` (the source flagged the frame
/// damaged), `format` (fourcc, e.g. `"YUYV"`), `width`, `height`, `stride`
/// (bytes per line), `replayed` (from the backlog of `from_=`), `in_place`
/// (read from the live store, not a copy), `slot`.
#[pyclass(module = "pagecam")]
pub struct Frame {
    info: FrameInfo,
    format: FrameFormat,
    bytes: Bytes,
    state: State,
    counters: Arc<Counters>,
}

impl Frame {
    pub fn new(
        info: FrameInfo,
        format: FrameFormat,
        bytes: Bytes,
        counters: Arc<Counters>,
    ) -> Self {
        if let Bytes::Lost(l) = &bytes {
            count(&counters, l);
        }
        Frame {
            info,
            format,
            bytes,
            state: State::Fresh,
            counters,
        }
    }

    pub fn sequence(&self) -> u64 {
        self.info.seq
    }

    fn lose(&mut self, lost: Lost) -> Lost {
        count(&self.counters, &lost);
        self.bytes = Bytes::Lost(lost.clone());
        lost
    }

    /// Open the frame: refuse if closed or lost, and check that the slot
    /// still holds the announced generation (Acquire: see the module docs).
    fn open(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.state == State::Closed {
            return Err(self.closed_err(py));
        }
        match &self.bytes {
            Bytes::Lost(l) => return Err(l.err(py, self.info.seq)),
            Bytes::Live { memory, generation } if self.state == State::Fresh => {
                let g = memory.get().live_generation();
                if g != Some(*generation) {
                    let l = self.lose(Lost::Overwritten);
                    return Err(l.err(py, self.info.seq));
                }
            }
            _ => {}
        }
        self.state = State::Open;
        Ok(())
    }

    /// The check after use: `None` if everything read since opening was
    /// this frame, otherwise why not (counted once).
    fn verify(&mut self) -> Option<Lost> {
        match &self.bytes {
            Bytes::Lost(l) => Some(l.clone()),
            Bytes::Owned(_) => None,
            Bytes::Live { memory, generation } => {
                // Pairs with capture's Release fence after its odd store:
                // orders every read of the frame before the load below.
                fence(Ordering::Acquire);
                if memory.get().live_generation() == Some(*generation) {
                    return None;
                }
                let lost = if self.state == State::Open {
                    Lost::Torn
                } else {
                    Lost::Overwritten
                };
                Some(self.lose(lost))
            }
        }
    }

    fn closed_err(&self, py: Python<'_>) -> PyErr {
        errors::err(
            py,
            Exc::FrameClosed,
            format!(
                "frame {} is closed (its with block ended): its views are no longer checked; \
                 keep a copy() made inside the block instead",
                self.info.seq
            ),
        )
    }

    fn memory(&self) -> Option<&Py<FrameMemory>> {
        match &self.bytes {
            Bytes::Live { memory, .. } | Bytes::Owned(memory) => Some(memory),
            Bytes::Lost(_) => None,
        }
    }

    fn geometry(&self, len: usize) -> Geometry {
        Geometry::of(&self.format, len)
    }

    /// Open, view, copy with numpy, check: a contiguous array of our own
    /// that is known to be this frame (or the error saying why not).
    fn checked_copy<'py>(&mut self, py: Python<'py>, flat: bool) -> PyResult<Bound<'py, PyAny>> {
        self.open(py)?;
        let Some(memory) = self.memory() else {
            return Err(self.closed_err(py));
        };
        let memory = memory.bind(py).clone();
        let len = memory.get().len();
        let g = if flat {
            Geometry::Flat(len)
        } else {
            self.geometry(len)
        };
        let view = view::array(&memory, g)?;
        // numpy's copy: C order, owned by the new array, writeable.
        let copy = view.call_method0("copy")?;
        drop(view);
        if let Some(l) = self.verify() {
            return Err(l.err(py, self.info.seq));
        }
        Ok(copy)
    }

    /// Convert a checked copy with `f`, into an array of `shape`.
    fn converted<'py>(
        &mut self,
        py: Python<'py>,
        what: &str,
        f: convert::Conversion,
        channels: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let copy = self.checked_copy(py, false)?;
        let (w, h) = (self.format.width as usize, self.format.height as usize);
        let arr: PyReadonlyArrayDyn<'py, u8> = copy.extract()?;
        let unsupported = || {
            errors::err(
                py,
                Exc::Error,
                format!(
                    "{what}(): cannot convert {} {}x{} ({} bytes); use array() or copy()",
                    fourcc_str(self.format.fourcc),
                    w,
                    h,
                    self.info.bytes_used
                ),
            )
        };
        if arr.ndim() < 2 {
            return Err(unsupported());
        }
        let src = arr.as_slice().map_err(|_| unsupported())?;
        let code = self.format.fourcc;
        let out = py
            .detach(|| f(code, w, h, src))
            .map_err(|_| unsupported())?;
        let out = numpy::PyArray1::from_vec(py, out);
        let shaped = if channels == 0 {
            out.reshape([h, w])?.into_any()
        } else {
            out.reshape([h, w, channels])?.into_any()
        };
        Ok(shaped)
    }
}

fn count(c: &Counters, l: &Lost) {
    let n = match l {
        Lost::Overwritten => &c.overwritten,
        Lost::Torn => &c.torn,
        Lost::Other(_) => &c.other_lost,
    };
    n.fetch_add(1, Ordering::Relaxed);
}

#[pymethods]
impl Frame {
    #[getter]
    fn seq(&self) -> u64 {
        self.info.seq
    }
    #[getter]
    fn source_seq(&self) -> Option<u64> {
        self.info.source_seq
    }
    #[getter]
    fn ts_ns(&self) -> u64 {
        self.info.ts_ns
    }
    #[getter]
    fn wall_ns(&self) -> Option<u64> {
        self.info.wall_ns
    }
    #[getter]
    fn ready_ns(&self) -> Option<u64> {
        self.info.ready_ns
    }
    #[getter]
    fn bytes_used(&self) -> u32 {
        self.info.bytes_used
    }
    #[getter]
    fn flags(&self) -> u32 {
        self.info.flags
    }
    #[getter]
    fn error(&self) -> bool {
        self.info.flags & FLAG_ERROR != 0
    }
    #[getter]
    fn format(&self) -> String {
        fourcc_str(self.format.fourcc)
    }
    #[getter]
    fn width(&self) -> u32 {
        self.format.width
    }
    #[getter]
    fn height(&self) -> u32 {
        self.format.height
    }
    #[getter]
    fn stride(&self) -> u32 {
        self.format.bytes_per_line
    }
    #[getter]
    fn slot(&self) -> u32 {
        self.info.slot
    }
    #[getter]
    fn replayed(&self) -> bool {
        self.info.replayed
    }
    #[getter]
    fn in_place(&self) -> bool {
        matches!(self.bytes, Bytes::Live { .. })
    }
    /// Whether the frame is closed (its `with` block ended, or `close()`).
    #[getter]
    fn closed(&self) -> bool {
        self.state == State::Closed
    }

    /// A **read-only numpy view of the frame where it lies** (no copy):
    /// `uint8`, shaped per format — YUYV/UYVY `(h, w, 2)`, GREY `(h, w)`,
    /// NV12/NV21 `(h*3//2, w)`, RGB24/BGR24 `(h, w, 3)`, others (or a short
    /// frame) flat `(bytes_used,)` — with the line stride as the first
    /// stride. Opens the frame (raises `Overwritten` if capture already
    /// reused its slot).
    ///
    /// The view shows whatever the slot holds *now*: capture may overwrite
    /// it at any moment. Results computed from it count only if the check
    /// after them passes (the end of `with frame:`, or `check()`). After
    /// the frame is closed `array()` raises `FrameClosed`, but arrays made
    /// before cannot be revoked: do not use them after the check.
    fn array<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.open(py)?;
        let Some(memory) = self.memory() else {
            return Err(self.closed_err(py));
        };
        let memory = memory.bind(py).clone();
        let g = self.geometry(memory.get().len());
        view::array(&memory, g)
    }

    /// An owned, writeable, C-contiguous copy of the frame in the shape of
    /// `array()`, for frames you keep. Checks itself: raises `Overwritten`
    /// or `Torn` instead of returning a copy of a frame capture reused.
    fn copy<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.checked_copy(py, false)
    }

    /// The frame's luma as an owned `(h, w)` `uint8` array (a copy, checked
    /// like `copy()`): the Y plane of YUV formats as stored (BT.601 limited
    /// range, as OpenCV's `COLOR_YUV2GRAY_*`), BT.601 luma of RGB/BGR.
    fn gray<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.converted(py, "gray", convert::gray, 0)
    }

    /// The frame as an owned `(h, w, 3)` BGR `uint8` array, ready for
    /// OpenCV (a copy and a conversion, checked like `copy()`): YUV is read
    /// as BT.601 limited range, as `cv2.cvtColor(..., COLOR_YUV2BGR_*)`.
    fn bgr<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.converted(py, "bgr", convert::bgr, 3)
    }

    /// The check after the work: raises `Overwritten` (capture had reused
    /// the slot before the frame was opened) or `Torn` (it did while the
    /// frame was open) if what was read since opening may not be this
    /// frame. May be called any number of times; the frame stays open.
    fn check(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.state == State::Closed {
            return Err(self.closed_err(py));
        }
        match self.verify() {
            None => Ok(()),
            Some(l) => Err(l.err(py, self.info.seq)),
        }
    }

    /// Close without checking: `array()` and the copies raise
    /// `FrameClosed` afterwards.
    fn close(&mut self) {
        self.state = State::Closed;
    }

    fn __enter__(mut slf: PyRefMut<'_, Self>) -> PyResult<PyRefMut<'_, Self>> {
        let py = slf.py();
        slf.open(py)?;
        Ok(slf)
    }

    /// Check and close. If the check fails, raises `Overwritten`/`Torn`:
    /// also when the block raised an `Exception` (a result computed from a
    /// torn frame may be an error too; the block's exception is chained as
    /// the context), but not over a `FrameLost` the block raised itself or
    /// a `KeyboardInterrupt`/`SystemExit`.
    #[pyo3(signature = (exc_type = None, exc = None, tb = None))]
    fn __exit__(
        &mut self,
        py: Python<'_>,
        exc_type: Option<Bound<'_, PyType>>,
        exc: Option<Bound<'_, PyAny>>,
        tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        drop(tb);
        if self.state == State::Closed {
            return Ok(false);
        }
        let lost = self.verify();
        self.state = State::Closed;
        let Some(lost) = lost else {
            return Ok(false);
        };
        let Some(exc) = exc.or_else(|| exc_type.map(|t| t.into_any())) else {
            return Err(lost.err(py, self.info.seq));
        };
        let is_exception = exc
            .is_instance(&py.get_type::<pyo3::exceptions::PyException>())
            .unwrap_or(false);
        if errors::is(py, &exc, Exc::FrameLost) || !is_exception {
            return Ok(false);
        }
        Err(lost.err(py, self.info.seq))
    }

    fn __repr__(&self) -> String {
        let state = match (&self.bytes, self.state) {
            (Bytes::Lost(Lost::Overwritten), _) => "overwritten",
            (Bytes::Lost(Lost::Torn), _) => "torn",
            (Bytes::Lost(Lost::Other(_)), _) => "lost",
            (_, State::Closed) => "closed",
            (_, State::Open) => "open",
            (_, State::Fresh) => "new",
        };
        format!(
            "<pagecam.Frame seq={} {} {}x{} {} bytes{}{} {state}>",
            self.info.seq,
            fourcc_str(self.format.fourcc),
            self.format.width,
            self.format.height,
            self.info.bytes_used,
            if self.info.replayed { " replayed" } else { "" },
            if matches!(self.bytes, Bytes::Owned(_)) {
                " (copy)"
            } else {
                ""
            },
        )
    }
}

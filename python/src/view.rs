//! The numpy arrays over frame memory: the only `unsafe` code of the crate.
//!
//! A frame's memory is either a slot of the live store, reached through the
//! library's `ForeignSlot` (a raw pointer into the store's **read-only**
//! `MAP_SHARED` mapping, kept mapped by the `Arc` inside it), or bytes of
//! our own (a frame replayed from the recording by `pread`). Either is held
//! by a `FrameMemory` Python object, which becomes the base object of
//! every array made over it: numpy keeps the base alive as long as any
//! array (or view of an array) refers to it, so the memory cannot be
//! unmapped or freed under an array.
//!
//! The arrays are made without `NPY_ARRAY_WRITEABLE`, and numpy refuses to
//! set that flag again later because the base exposes no writable buffer;
//! writing through a live view could not succeed anyway (the pages are
//! mapped `PROT_READ`: it would fault).
//!
//! The `ForeignSlot` contract: the bytes may change at any moment (capture
//! reuses the slot); what was read counts only if the slot's generation is
//! still the announced one afterwards. numpy's reads are plain loads that
//! may race with capture's writes in another process; the seqlock check
//! after them (`frame.rs`) decides whether their result is used. No Rust
//! reference (`&[u8]`) is ever made over live memory here.
//!
//! # SIGBUS
//! Reading a page of a file mapping beyond the end of the file raises
//! SIGBUS. The default store (`--store direct`) is a memfd sealed with
//! `F_SEAL_SHRINK`: it can never shrink, so its views can never fault. With
//! `--store file` the views are pages of the recording file: if a third
//! party truncates the recording while it is mapped, the next read through
//! a view kills the interpreter (Python's default action for SIGBUS). This
//! cannot be turned into an exception soundly here, since the faulting read
//! is numpy's (or the user's) C code, which cannot be unwound from a signal
//! handler; capture holds an exclusive lock on the recording and never
//! changes its size, so only a foreign process can do it.

use numpy::npyffi::{npy_intp, NpyTypes, PY_ARRAY_API};
use numpy::{Element, PyArrayDescrMethods};
use pyo3::prelude::*;

use pagecam::format::{fourcc, FrameFormat, GREY, NV12, YUYV};
use pagecam::mapping::ForeignSlot;

/// What a frame's bytes are.
pub enum Memory {
    /// A slot of the live store, read in place.
    Live(ForeignSlot),
    /// Bytes of our own (never changed after construction).
    Owned(Box<[u8]>),
}

/// The owner of a frame's memory: the base object of its arrays.
#[pyclass(frozen, module = "pagecam", name = "_FrameMemory")]
pub struct FrameMemory {
    mem: Memory,
}

impl FrameMemory {
    pub fn new(mem: Memory) -> Self {
        FrameMemory { mem }
    }

    pub fn len(&self) -> usize {
        match &self.mem {
            Memory::Live(s) => s.len(),
            Memory::Owned(b) => b.len(),
        }
    }

    /// The slot's current generation (Acquire); `None` for owned bytes.
    pub fn live_generation(&self) -> Option<u64> {
        match &self.mem {
            Memory::Live(s) => s.generation(),
            Memory::Owned(_) => None,
        }
    }

    fn ptr(&self) -> *const u8 {
        match &self.mem {
            Memory::Live(s) => s.as_ptr(),
            Memory::Owned(b) => b.as_ptr(),
        }
    }
}

/// Packed 4:2:2 formats: two bytes per pixel.
pub const YUV422: [u32; 4] = [YUYV, fourcc(b"UYVY"), fourcc(b"YVYU"), fourcc(b"VYUY")];
pub const NV21: u32 = fourcc(b"NV21");
pub const RGB24: u32 = fourcc(b"RGB3");
pub const BGR24: u32 = fourcc(b"BGR3");

/// The shape of a frame as an array: `rows` lines of `cols` x `channels`
/// bytes, lines `stride` bytes apart (a 2-D array when `channels` is 0);
/// or a flat array of `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Geometry {
    Image {
        rows: usize,
        cols: usize,
        channels: usize,
        stride: usize,
    },
    Flat(usize),
}

impl Geometry {
    /// The shape for `format` over `len` bytes: YUYV/UYVY `(h, w, 2)`, GREY
    /// `(h, w)`, NV12/NV21 `(h + h/2, w)` (the luma plane, then the
    /// interleaved chroma lines), RGB24/BGR24 `(h, w, 3)`, with the line
    /// stride of the format; anything else, or a frame too short for its
    /// shape (a damaged or compressed frame), flat `(len,)`.
    pub fn of(format: &FrameFormat, len: usize) -> Geometry {
        let (w, h) = (format.width as usize, format.height as usize);
        let stride = format.bytes_per_line as usize;
        let (rows, channels) = match format.fourcc {
            c if YUV422.contains(&c) => (h, 2),
            GREY => (h, 0),
            c if c == NV12 || c == NV21 => (h + h.div_ceil(2), 0),
            c if c == RGB24 || c == BGR24 => (h, 3),
            _ => return Geometry::Flat(len),
        };
        let g = Geometry::Image {
            rows,
            cols: w,
            channels,
            stride,
        };
        match g.extent() {
            Some(n) if n <= len && w > 0 && h > 0 && stride >= w * channels.max(1) => g,
            _ => Geometry::Flat(len),
        }
    }

    /// Bytes from the first to one past the last byte the shape covers.
    pub fn extent(&self) -> Option<usize> {
        match *self {
            Geometry::Flat(n) => Some(n),
            Geometry::Image {
                rows,
                cols,
                channels,
                stride,
            } => {
                if rows == 0 || cols == 0 {
                    return Some(0);
                }
                let line = cols.checked_mul(channels.max(1))?;
                stride.checked_mul(rows - 1)?.checked_add(line)
            }
        }
    }

    /// numpy's shape and strides (in bytes), and the dimension count.
    fn dims(&self) -> ([npy_intp; 3], [npy_intp; 3], usize) {
        let i = |v: usize| v as npy_intp;
        match *self {
            Geometry::Flat(n) => ([i(n), 0, 0], [1, 0, 0], 1),
            Geometry::Image {
                rows,
                cols,
                channels: 0,
                stride,
            } => ([i(rows), i(cols), 0], [i(stride), 1, 0], 2),
            Geometry::Image {
                rows,
                cols,
                channels,
                stride,
            } => (
                [i(rows), i(cols), i(channels)],
                [i(stride), i(channels), 1],
                3,
            ),
        }
    }
}

/// A read-only `uint8` array of shape `geometry` over `memory`, whose base
/// object is `memory`. Fails if the shape reaches past the memory.
pub fn array<'py>(
    memory: &Bound<'py, FrameMemory>,
    geometry: Geometry,
) -> PyResult<Bound<'py, PyAny>> {
    let py = memory.py();
    let mem = memory.get();
    match geometry.extent() {
        Some(n) if n <= mem.len() && n <= isize::MAX as usize => {}
        _ => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "a {geometry:?} array does not fit in the frame's {} bytes",
                mem.len()
            )))
        }
    }
    let (mut dims, mut strides, nd) = geometry.dims();
    // SAFETY: PyArray_NewFromDescr with a data pointer makes an array over
    // that memory without copying or owning it (numpy C API). The memory:
    // `extent() <= mem.len()` (checked above) and every stride is positive,
    // so each element numpy can address is inside the first `mem.len()`
    // bytes of the slot (ForeignSlot: `len` is cut to the slot, inside the
    // mapping) or of the boxed bytes. It stays valid while `memory` lives
    // (the ForeignSlot's `Arc<Mapping>` keeps the mapping; the box is never
    // changed or freed before drop), and `memory` becomes the array's base
    // below, which numpy keeps alive as long as the array. The flags (0)
    // leave NPY_ARRAY_WRITEABLE clear: numpy never writes through it. The
    // descriptor reference is stolen by the call; dims and strides are
    // copied by numpy. The ForeignSlot contract (bytes may change; results
    // count only after the generation check) is upheld by frame.rs.
    unsafe {
        let arr = PY_ARRAY_API.PyArray_NewFromDescr(
            py,
            PY_ARRAY_API.get_type_object(py, NpyTypes::PyArray_Type),
            u8::get_dtype(py).into_dtype_ptr(),
            nd as std::os::raw::c_int,
            dims.as_mut_ptr(),
            strides.as_mut_ptr(),
            mem.ptr() as *mut std::os::raw::c_void,
            0,
            std::ptr::null_mut(),
        );
        if arr.is_null() {
            return Err(PyErr::fetch(py));
        }
        // Owned from here: dropped (decref'd) on every path below.
        let arr = Bound::from_owned_ptr(py, arr);
        // PyArray_SetBaseObject steals a reference to the base, also when
        // it fails (numpy C API), so hand it a new one.
        let base = memory.clone().into_ptr();
        let rc = PY_ARRAY_API.PyArray_SetBaseObject(py, arr.as_ptr().cast(), base);
        if rc != 0 {
            return Err(PyErr::fetch(py));
        }
        Ok(arr)
    }
}

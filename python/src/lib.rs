//! pagecam for Python: the extension module `pagecam`, an analyzer that
//! receives live frames from a running `pagecam-capture` as numpy arrays
//! **read in place** from the frame store's read-only mapping.
//!
//! Key design decision: a frame handle carries the seqlock check with it.
//! `Frame.array()` is a read-only numpy view of the slot (no copy), built
//! from the library's `ForeignSlot` (a raw pointer into the read-only
//! mapping under a written contract) whose owner object is the array's
//! base, so the mapping outlives every array. Whatever was computed from
//! the view counts only if the slot still holds the announced generation
//! afterwards: `with frame:` (or `frame.check()`) re-checks it and raises
//! `Overwritten` or `Torn`, exactly as `LiveStore::read_frame` would. The
//! copies (`copy()`, `gray()`, `bgr()`) check themselves.
//!
//! What this crate must not do: hand numpy a writable pointer, an array
//! larger than its slot, or a pointer whose mapping can be unmapped while
//! the array lives; panic across the FFI boundary; hold the GIL while it
//! blocks on the socket. `unsafe` lives in `view` only.
//!
//! Layers: `view` (the numpy arrays over frame memory: the only unsafe
//! code), `convert` (pixel conversions on memory of our own), `frame` (the
//! frame handle and its checks), `subscription` (the socket, the backlog,
//! progress), `errors` (the exception classes).
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(unsafe_code)]

mod convert;
mod errors;
mod frame;
mod subscription;
#[allow(unsafe_code)]
mod view;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// CRC32C (Castagnoli) of `data`, continuing from `crc` (0 to start): the
/// checksum `pagecam-analyzer watch --checksum` prints per frame, e.g.
/// `crc32c(frame.array().tobytes())` inside `with frame:`.
#[pyfunction]
#[pyo3(name = "crc32c", signature = (data, crc = 0))]
fn crc32c_of(data: &Bound<'_, PyBytes>, crc: u32) -> u32 {
    ::crc32c::crc32c_append(crc, data.as_bytes())
}

/// The socket `pagecam-capture` serves for a recording or socket path:
/// `path` itself if it is a socket, otherwise `path + ".sock"` (capture's
/// default), as `pagecam-analyzer watch` resolves it.
#[pyfunction]
fn socket_for(path: std::path::PathBuf) -> std::path::PathBuf {
    subscription::socket_of(&path)
}

/// pagecam: live frames from pagecam-capture as numpy arrays read in place.
///
/// `for frame in pagecam.Subscription(path):` then, per frame,
/// `with frame: result = analyse(frame.array())`: the `with` re-checks
/// that capture did not reuse the frame's slot meanwhile, and raises
/// `pagecam.Overwritten` or `pagecam.Torn` if it did (discard `result`).
/// See help(pagecam.Subscription) and help(pagecam.Frame).
#[pymodule]
#[pyo3(name = "pagecam")]
fn pagecam_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(py, m)?;
    m.add_class::<subscription::Subscription>()?;
    m.add_class::<subscription::Hello>()?;
    m.add_class::<frame::Frame>()?;
    m.add_function(wrap_pyfunction!(crc32c_of, m)?)?;
    m.add_function(wrap_pyfunction!(socket_for, m)?)?;
    Ok(())
}

//! The exception classes, and how the library's errors become them.
//!
//! Made at import with `type(name, bases, namespace)`, because several
//! have two bases (`CaptureGone` is a `pagecam.Error` and a
//! `ConnectionError`, `Timeout` a `TimeoutError`…), which PyO3's
//! `create_exception!` cannot express.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

use pagecam::subscribe::SubscribeError;

/// One exception class, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exc {
    Error,
    FrameLost,
    Overwritten,
    Torn,
    FrameClosed,
    ConnectError,
    CaptureGone,
    Timeout,
}

/// (class, name, base inside pagecam, builtin base, doc).
type Class = (
    Exc,
    &'static str,
    Option<Exc>,
    Option<&'static str>,
    &'static str,
);

/// Every class, in creation order (a base before its subclasses).
const CLASSES: &[Class] = &[
    (
        Exc::Error,
        "Error",
        None,
        Some("Exception"),
        "Base class of every pagecam error.",
    ),
    (
        Exc::FrameLost,
        "FrameLost",
        Some(Exc::Error),
        None,
        "The frame's bytes cannot be trusted: discard whatever was computed from it. \
         Raised as itself for a replayed frame that failed its checksum or a notice \
         naming a slot the store does not have.",
    ),
    (
        Exc::Overwritten,
        "Overwritten",
        Some(Exc::FrameLost),
        None,
        "Capture had already reused the frame's slot when the frame was opened \
         (the analyzer fell more than the ring's length behind).",
    ),
    (
        Exc::Torn,
        "Torn",
        Some(Exc::FrameLost),
        None,
        "Capture reused the frame's slot while it was in use (between opening it and \
         the check): what was read may mix two frames.",
    ),
    (
        Exc::FrameClosed,
        "FrameClosed",
        Some(Exc::Error),
        Some("ValueError"),
        "The frame was closed (its `with` block ended, or close() was called): its \
         pixels can no longer be reached.",
    ),
    (
        Exc::ConnectError,
        "ConnectError",
        Some(Exc::Error),
        Some("ConnectionError"),
        "Cannot subscribe: no capture serves that socket, it refused this analyzer, \
         or it sent something that is not a pagecam hello.",
    ),
    (
        Exc::CaptureGone,
        "CaptureGone",
        Some(Exc::Error),
        Some("ConnectionError"),
        "Capture went away without ending the stream (killed, crashed, or it \
         disconnected this analyzer for staying stuck).",
    ),
    (
        Exc::Timeout,
        "Timeout",
        Some(Exc::Error),
        Some("TimeoutError"),
        "No notice from capture within idle_timeout.",
    ),
];

static TYPES: PyOnceLock<Vec<Py<PyType>>> = PyOnceLock::new();

fn make(py: Python<'_>) -> PyResult<Vec<Py<PyType>>> {
    let builtins = py.import("builtins")?;
    let type_ = builtins.getattr("type")?;
    let mut made: Vec<Py<PyType>> = Vec::with_capacity(CLASSES.len());
    for (i, (exc, name, base, builtin, doc)) in CLASSES.iter().enumerate() {
        debug_assert_eq!(*exc as usize, i);
        let mut bases: Vec<Bound<'_, PyAny>> = Vec::new();
        if let Some(b) = base {
            bases.push(made[*b as usize].bind(py).clone().into_any());
        }
        if let Some(b) = builtin {
            bases.push(builtins.getattr(*b)?);
        }
        let ns = PyDict::new(py);
        ns.set_item("__module__", "pagecam")?;
        ns.set_item("__doc__", *doc)?;
        let t = type_.call1((*name, PyTuple::new(py, bases)?, ns))?;
        made.push(t.cast_into::<PyType>()?.unbind());
    }
    Ok(made)
}

fn types(py: Python<'_>) -> PyResult<&Vec<Py<PyType>>> {
    TYPES.get_or_try_init(py, || make(py))
}

/// The class of `exc`.
pub fn class(py: Python<'_>, exc: Exc) -> PyResult<Bound<'_, PyType>> {
    Ok(types(py)?[exc as usize].bind(py).clone())
}

/// A new exception of class `exc` with `msg`.
pub fn err(py: Python<'_>, exc: Exc, msg: impl Into<String>) -> PyErr {
    match class(py, exc) {
        Ok(t) => PyErr::from_type(t, msg.into()),
        Err(e) => e,
    }
}

/// Whether `e` is an instance of `exc`.
pub fn is(py: Python<'_>, e: &Bound<'_, PyAny>, exc: Exc) -> bool {
    class(py, exc).is_ok_and(|t| e.is_instance(&t).unwrap_or(false))
}

pub fn register(py: Python<'_>, m: &Bound<'_, PyModule>) -> PyResult<()> {
    for ((_, name, ..), t) in CLASSES.iter().zip(types(py)?) {
        m.add(*name, t.bind(py))?;
    }
    Ok(())
}

/// The exception for an error of subscribing or receiving.
pub fn subscribe(py: Python<'_>, e: SubscribeError) -> PyErr {
    let exc = match &e {
        SubscribeError::Connect { .. }
        | SubscribeError::Refused
        | SubscribeError::Impostor { .. } => Exc::ConnectError,
        SubscribeError::CaptureGone => Exc::CaptureGone,
        SubscribeError::Idle(_) => Exc::Timeout,
        _ => Exc::Error,
    };
    err(py, exc, e.to_string())
}

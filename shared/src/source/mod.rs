//! Frame sources: where frames come from and how they reach a slot.
//!
//! A source either fills slots directly (`Delivery::Direct`: a V4L2 driver
//! writing through USERPTR, or the built-in pattern rendering in place) or
//! hands out frames in buffers of its own that capture copies once into the
//! slot (`Delivery::Copy`: V4L2 MMAP buffers). Capture drives both through
//! this one trait, so the per-frame loop does not know which device it has.

pub mod pattern;
#[cfg(feature = "capture")]
#[allow(unsafe_code)]
pub mod v4l2;

use thiserror::Error;

use crate::format::{FrameFormat, Interval};
use crate::mapping::ClaimedSlot;

/// How a source's frames reach the recording file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The source writes into slots it was given: zero CPU copies.
    Direct,
    /// The source fills its own buffers; capture copies each frame once.
    Copy,
}

impl Delivery {
    pub fn name(&self) -> &'static str {
        match self {
            Delivery::Direct => "direct (zero-copy)",
            Delivery::Copy => "copy (one copy per frame)",
        }
    }
}

/// Per-frame facts reported by the source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameInfo {
    /// The source's own counter (V4L2 `sequence`); gaps are dropped frames.
    pub source_sequence: u64,
    /// Capture time, CLOCK_MONOTONIC ns (V4L2 buffer timestamp).
    pub timestamp_ns: u64,
    pub bytes_used: u32,
    /// `format::FLAG_*` bits.
    pub flags: u32,
}

/// A frame the source has ready.
pub enum Frame<'a> {
    /// Written into a slot given earlier with `give_slot`.
    InSlot(ClaimedSlot, FrameInfo),
    /// In the source's own buffer; call `release` once it has been copied.
    InBuffer(&'a [u8], FrameInfo),
}

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("{0}")]
    Unsupported(String),
    #[error("device {path}: {message}")]
    Device { path: String, message: String },
    #[error("no frame from the source within {0} ms (stalled driver?)")]
    Timeout(u64),
    /// The device node is gone (unplugged, driver unbound): ENODEV/ENXIO.
    #[error("the device went away: {0}")]
    Gone(String),
    /// The driver ended or broke the stream (EPIPE, EIO, a queue error).
    #[error("streaming failed: {0}")]
    StreamFailed(String),
    #[error("interrupted")]
    Interrupted,
    #[error("source I/O error: {0}")]
    Io(#[from] std::io::Error),
}

pub trait FrameSource {
    /// The format actually in effect (what the device chose, not what was asked).
    fn format(&self) -> FrameFormat;
    fn interval(&self) -> Interval;
    /// Human-readable description stored in the recording header.
    fn describe(&self) -> String;
    fn delivery(&self) -> Delivery;
    /// For `Direct`: how many slots the source wants queued at once.
    fn slots_wanted(&self) -> usize {
        0
    }
    /// For `Direct`: give the source a claimed slot to fill later.
    /// `Ok(Some(slot))` hands it back untouched: the source could not use
    /// slots directly (e.g. the kernel refused USERPTR) and has switched to
    /// `Delivery::Copy`; `delivery_note` says why.
    fn give_slot(&mut self, slot: ClaimedSlot) -> Result<Option<ClaimedSlot>, SourceError>;
    /// Start streaming (after the first slots are given).
    fn start(&mut self) -> Result<(), SourceError>;
    /// Wait for the next frame.
    fn next_frame(&mut self) -> Result<Frame<'_>, SourceError>;
    /// For `Copy`: the buffer of the last `InBuffer` frame may be reused.
    fn release(&mut self) -> Result<(), SourceError> {
        Ok(())
    }
    /// Stop streaming; slots given and not returned are handed back
    /// (their claims end; they stay marked as incomplete).
    fn stop(&mut self) -> Vec<ClaimedSlot>;
    /// Why the source chose the delivery it has (e.g. a USERPTR fallback).
    fn delivery_note(&self) -> Option<String> {
        None
    }
}

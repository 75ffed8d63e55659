//! pagecam: the recording file, the frame ring, the notification protocol
//! and the frame sources shared by `pagecam-capture` and `pagecam-analyzer`.
//!
//! Key design decision: frames live in exactly one place, the page-cache
//! pages of a pre-allocated recording file that capture maps `MAP_SHARED`
//! (and a V4L2 driver may write directly through USERPTR). Analyzers map the
//! same pages read-only and are told about each frame by a tiny message on a
//! Unix socket; they read frames in place, validated by per-slot generation
//! counters (a seqlock). Nothing here copies frame data except the single
//! copy of the V4L2 MMAP fallback.
//!
//! Layers, each using only the ones above it: `format` and `protocol`
//! (pure encoding), `shm` (the only module touching mapped memory),
//! `recording` (files), `notify` / `subscribe` (sockets), `source` (frame
//! producers), `capture` (the per-frame loop), `stats` (analysis).
//! This crate must not print to the terminal or exit the process: that is
//! the binaries' job.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod capture;
pub mod format;
pub mod housekeeping;
pub mod notify;
pub mod protocol;
pub mod recording;
pub mod shm;
pub mod source;
pub mod stats;
pub mod subscribe;

/// Exit code for storage failures (documented in the README).
pub const EXIT_STORAGE: i32 = 3;

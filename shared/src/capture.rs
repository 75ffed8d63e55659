//! The per-frame loop: source → slot → commit → notify.
//!
//! This is the product's hot path. Per frame it does: wait for the source
//! (the source's own syscalls), at most one copy (only for `Delivery::Copy`),
//! a CRC32C over the frame, the index record, one non-blocking send per
//! analyzer, and for direct sources one re-queue. No allocation, no lock
//! other than the uncontended client-list mutex, no other syscall:
//! page prefaulting and writeback run on the housekeeping thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam::utils::CachePadded;

use crate::format::{FrameMeta, FLAG_ERROR};
use crate::notify::Notifier;
use crate::protocol::FrameNotice;
use crate::recording::{monotonic_ns, wall_ns, Committed, RecordingWriter};
use crate::shm::ClaimedSlot;
use crate::source::{Delivery, Frame, FrameInfo, FrameSource, SourceError};

/// Live counters, written by the capture thread (Relaxed: they are
/// statistics, read by the status thread with no ordering needs).
#[derive(Default)]
pub struct Counters {
    pub frames: CachePadded<AtomicU64>,
    /// Frames the source skipped (gaps in its sequence numbers).
    pub source_dropped: AtomicU64,
    pub error_frames: AtomicU64,
    pub bytes_copied: AtomicU64,
    pub bytes_stored: AtomicU64,
    /// Sequence of the newest committed frame + 1 (0 = none yet).
    pub committed: AtomicU64,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    pub frames: Option<u64>,
    pub duration: Option<Duration>,
}

#[derive(Debug)]
pub enum StopReason {
    FrameLimit,
    TimeLimit,
    RingFull,
    Signal,
    Source(SourceError),
}

impl StopReason {
    pub fn is_error(&self) -> bool {
        matches!(self, StopReason::Source(_))
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::FrameLimit => write!(f, "frame limit reached"),
            StopReason::TimeLimit => write!(f, "duration limit reached"),
            StopReason::RingFull => write!(f, "recording full (--on-full stop)"),
            StopReason::Signal => write!(f, "stopped by signal"),
            StopReason::Source(e) => write!(f, "source failed: {e}"),
        }
    }
}

#[derive(Debug)]
pub struct Summary {
    pub frames: u64,
    pub source_dropped: u64,
    pub error_frames: u64,
    pub bytes_copied: u64,
    pub delivery: Delivery,
    pub reason: StopReason,
    pub elapsed: Duration,
}

/// Run capture until a limit, a signal (`stop`), a full ring or a source
/// error. Returns what happened; the caller syncs and tells analyzers.
pub fn run(
    source: &mut dyn FrameSource,
    writer: &mut RecordingWriter,
    notifier: Option<&Notifier>,
    limits: Limits,
    stop: &AtomicBool,
    counters: &Counters,
) -> Summary {
    let started = Instant::now();
    let mut frames = 0u64;
    let mut last_source_seq: Option<u64> = None;
    let mut spare: Option<ClaimedSlot> = None;
    let mut queued = 0usize;

    let reason = 'run: {
        if let Err(e) = feed_source(source, writer, &mut queued, &mut spare) {
            break 'run StopReason::Source(e);
        }
        if let Err(e) = source.start() {
            break 'run StopReason::Source(e);
        }
        loop {
            if stop.load(Ordering::Relaxed) {
                break 'run StopReason::Signal;
            }
            if limits.frames.is_some_and(|n| frames >= n) {
                break 'run StopReason::FrameLimit;
            }
            if limits.duration.is_some_and(|d| started.elapsed() >= d) {
                break 'run StopReason::TimeLimit;
            }
            if source.delivery() == Delivery::Direct && queued == 0 {
                break 'run StopReason::RingFull;
            }
            let frame = match source.next_frame() {
                Ok(f) => f,
                Err(SourceError::Interrupted) => continue,
                Err(e) => break 'run StopReason::Source(e),
            };
            let committed = match frame {
                Frame::InSlot(slot, info) => {
                    queued -= 1;
                    commit(writer, slot, info)
                }
                Frame::InBuffer(data, info) => {
                    let Some(mut slot) = spare.take().or_else(|| writer.claim_next()) else {
                        let _ = source.release();
                        break 'run StopReason::RingFull;
                    };
                    let n = slot.copy_from(&data[..(info.bytes_used as usize).min(data.len())]);
                    counters.bytes_copied.fetch_add(n as u64, Ordering::Relaxed);
                    let c = commit(writer, slot, info);
                    if let Err(e) = source.release() {
                        break 'run StopReason::Source(e);
                    }
                    c
                }
            };
            frames += 1;
            count(counters, &committed, &mut last_source_seq);
            if let Some(n) = notifier {
                n.notify(&FrameNotice {
                    slot: committed.slot,
                    flags: committed.meta.flags,
                    generation: committed.generation,
                    sequence: committed.meta.sequence,
                    timestamp_ns: committed.meta.timestamp_ns,
                    ready_ns: monotonic_ns(),
                    bytes_used: committed.meta.bytes_used,
                });
            }
            if let Err(e) = feed_source(source, writer, &mut queued, &mut spare) {
                break 'run StopReason::Source(e);
            }
        }
    };
    // Claims never filled go back: untouched ones keep their old frame,
    // ones a driver may have written stay marked incomplete.
    for slot in source.stop().into_iter().chain(spare) {
        writer.map().release(slot);
    }
    Summary {
        frames,
        source_dropped: counters.source_dropped.load(Ordering::Relaxed),
        error_frames: counters.error_frames.load(Ordering::Relaxed),
        bytes_copied: counters.bytes_copied.load(Ordering::Relaxed),
        delivery: source.delivery(),
        reason,
        elapsed: started.elapsed(),
    }
}

/// Keep a direct source supplied with claimed slots.
fn feed_source(
    source: &mut dyn FrameSource,
    writer: &mut RecordingWriter,
    queued: &mut usize,
    spare: &mut Option<ClaimedSlot>,
) -> Result<(), SourceError> {
    while source.delivery() == Delivery::Direct && *queued < source.slots_wanted() {
        let Some(slot) = writer.claim_next() else {
            return Ok(());
        };
        match source.give_slot(slot)? {
            None => *queued += 1,
            Some(back) => {
                // The source fell back to copying; keep the claim for its
                // first frame.
                *spare = Some(back);
                return Ok(());
            }
        }
    }
    Ok(())
}

fn commit(writer: &mut RecordingWriter, slot: ClaimedSlot, info: FrameInfo) -> Committed {
    let meta = FrameMeta {
        source_sequence: info.source_sequence,
        timestamp_ns: info.timestamp_ns,
        wall_ns: wall_ns(),
        bytes_used: info.bytes_used,
        flags: info.flags,
        ..Default::default()
    };
    writer.commit(slot, meta)
}

fn count(counters: &Counters, c: &Committed, last_source_seq: &mut Option<u64>) {
    if let Some(last) = *last_source_seq {
        let gap = c.meta.source_sequence.saturating_sub(last + 1);
        if gap > 0 {
            counters.source_dropped.fetch_add(gap, Ordering::Relaxed);
        }
    }
    *last_source_seq = Some(c.meta.source_sequence);
    if c.meta.flags & FLAG_ERROR != 0 {
        counters.error_frames.fetch_add(1, Ordering::Relaxed);
    }
    counters.frames.fetch_add(1, Ordering::Relaxed);
    counters
        .bytes_stored
        .fetch_add(c.meta.bytes_used as u64, Ordering::Relaxed);
    counters
        .committed
        .store(c.meta.sequence + 1, Ordering::Release);
}

//! The per-frame loop: source → slot → commit → notify.
//!
//! This is the product's hot path. Per frame it does: wait for the source
//! (the source's own syscalls), at most one copy (only for `Delivery::Copy`),
//! the commit (with the CRC32C for the file store; the RAM ring leaves it to
//! the writer thread), one non-blocking send per analyzer, a push onto the
//! writer's lock-free queue (RAM ring), and for direct sources one re-queue.
//! No allocation, no lock other than the uncontended client-list mutex, no
//! other syscall: prefaulting, writeback and disk writes run on the
//! persistence thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::format::{FrameMeta, FLAG_ERROR};
use crate::mapping::ClaimedSlot;
use crate::notify::Notifier;
use crate::persist::PersistStats;
use crate::protocol::FrameNotice;
use crate::recording::{monotonic_ns, wall_ns};
use crate::ring::{ClaimRefused, Committed, Ring};
use crate::source::{Delivery, Frame, FrameInfo, FrameSource, SourceError};

/// Live counters, written by the capture thread (Relaxed: they are
/// statistics, read by the status thread with no ordering needs).
#[derive(Default)]
pub struct Counters {
    pub frames: CachePadded<AtomicU64>,
    /// Frames the source skipped (gaps in its sequence numbers).
    pub source_dropped: AtomicU64,
    /// Frames dropped because the RAM ring was full of frames the disk had
    /// not taken yet (RAM ring only).
    pub disk_dropped: AtomicU64,
    pub error_frames: AtomicU64,
    pub bytes_copied: AtomicU64,
    pub bytes_stored: AtomicU64,
    /// The delivery in use now (0 direct, 1 copy): a source may switch
    /// (USERPTR refused → MMAP), and the status line must say so at once.
    pub copying: AtomicBool,
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
    /// Writing or syncing the recording failed.
    Storage(String),
}

impl StopReason {
    pub fn is_error(&self) -> bool {
        matches!(self, StopReason::Source(_) | StopReason::Storage(_))
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
            StopReason::Storage(e) => write!(f, "storage failed: {e}"),
        }
    }
}

#[derive(Debug)]
pub struct Summary {
    pub frames: u64,
    pub source_dropped: u64,
    pub disk_dropped: u64,
    pub error_frames: u64,
    pub bytes_copied: u64,
    pub delivery: Delivery,
    pub reason: StopReason,
    pub elapsed: Duration,
}

/// What the loop needs besides the source and the ring.
pub struct LoopContext<'a> {
    pub notifier: Option<&'a Notifier>,
    pub limits: Limits,
    pub stop: &'a AtomicBool,
    pub counters: &'a Counters,
    /// The persistence thread's health: the loop stops when it failed.
    pub persist: Option<&'a PersistStats>,
    /// Called after each frame, and while frames are dropped because the
    /// disk is behind (the loop is alive: a watchdog restart would not
    /// help a slow disk). The service's READY and watchdog; must be cheap.
    pub on_frame: Option<&'a (dyn Fn() + Sync)>,
}

/// How long the loop waits for the writer when the RAM ring is full of
/// unsaved frames before it looks again.
const DISK_WAIT: Duration = Duration::from_millis(1);

/// Run capture until a limit, a signal, a full ring, a source error or a
/// storage failure. Returns what happened; the caller syncs and tells
/// analyzers.
pub fn run(source: &mut dyn FrameSource, ring: &mut Ring, cx: LoopContext<'_>) -> Summary {
    let started = Instant::now();
    let counters = cx.counters;
    let mut frames = 0u64;
    let mut tally = Tally::default();
    let mut spare: Option<ClaimedSlot> = None;
    let mut queued = 0usize;
    counters
        .copying
        .store(source.delivery() == Delivery::Copy, Ordering::Relaxed);

    let reason = 'run: {
        if let Err(e) = feed_source(source, ring, &mut queued, &mut spare) {
            break 'run StopReason::Source(e.into_source());
        }
        if let Err(e) = source.start() {
            break 'run StopReason::Source(e);
        }
        // The path that runs, said when it is chosen (a USERPTR fallback
        // happens while the first slots are given).
        let mut noted = source.delivery_note();
        if let Some(n) = &noted {
            tracing::warn!("{n}");
        }
        counters
            .copying
            .store(source.delivery() == Delivery::Copy, Ordering::Relaxed);
        loop {
            if cx.stop.load(Ordering::Relaxed) {
                break 'run StopReason::Signal;
            }
            if cx.limits.frames.is_some_and(|n| frames >= n) {
                break 'run StopReason::FrameLimit;
            }
            if cx.limits.duration.is_some_and(|d| started.elapsed() >= d) {
                break 'run StopReason::TimeLimit;
            }
            if let Some(p) = cx.persist.filter(|p| p.failed()) {
                break 'run StopReason::Storage(p.failure().unwrap_or_default());
            }
            if source.delivery() == Delivery::Direct && queued == 0 {
                // Nothing is queued: the ring is full (stop mode) or every
                // free slot still waits for the disk.
                match feed_source(source, ring, &mut queued, &mut spare) {
                    Err(Feed::Full) => break 'run StopReason::RingFull,
                    Err(Feed::Source(e)) => break 'run StopReason::Source(e),
                    Ok(()) if queued == 0 => {
                        tally.stalled = true;
                        std::thread::sleep(DISK_WAIT);
                        if let Some(f) = cx.on_frame {
                            f();
                        }
                        continue;
                    }
                    Ok(()) => {}
                }
            }
            let frame = match source.next_frame() {
                Ok(f) => f,
                Err(SourceError::Interrupted) => continue,
                Err(e) => break 'run StopReason::Source(e),
            };
            let committed = match frame {
                Frame::InSlot(slot, info) => {
                    queued = queued.saturating_sub(1);
                    commit(ring, slot, info, None)
                }
                Frame::InBuffer(data, info) => {
                    if !counters.copying.swap(true, Ordering::Relaxed) && noted.is_none() {
                        // A switch after streaming started (MPLANE data_offset).
                        noted = Some(String::new());
                        tracing::warn!("the source switched to copying each frame once");
                    }
                    let slot = match spare.take().map(Ok).unwrap_or_else(|| ring.claim_next()) {
                        Ok(s) => s,
                        Err(ClaimRefused::Full) => {
                            let _ = source.release();
                            break 'run StopReason::RingFull;
                        }
                        Err(_) => {
                            // The disk is behind by the whole ring: this
                            // frame is dropped, never an unsaved one.
                            counters.disk_dropped.fetch_add(1, Ordering::Relaxed);
                            tally.last_source_seq = Some(info.source_sequence);
                            if let Err(e) = source.release() {
                                break 'run StopReason::Source(e);
                            }
                            if let Some(f) = cx.on_frame {
                                f();
                            }
                            continue;
                        }
                    };
                    let mut slot = slot;
                    let (n, crc) = match slot
                        .copy_from(&data[..(info.bytes_used as usize).min(data.len())])
                    {
                        Ok(done) => done,
                        Err(e) => {
                            ring.release(slot);
                            let _ = source.release();
                            break 'run StopReason::Storage(format!("writing a frame failed: {e}"));
                        }
                    };
                    counters.bytes_copied.fetch_add(n as u64, Ordering::Relaxed);
                    let info = FrameInfo {
                        bytes_used: n as u32,
                        ..info
                    };
                    let c = commit(ring, slot, info, Some(crc));
                    if let Err(e) = source.release() {
                        break 'run StopReason::Source(e);
                    }
                    c
                }
            };
            frames += 1;
            tally.count(counters, &committed);
            if let Some(n) = cx.notifier {
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
            ring.wake_persistence();
            if let Some(f) = cx.on_frame {
                f();
            }
            match feed_source(source, ring, &mut queued, &mut spare) {
                Ok(()) | Err(Feed::Full) => {}
                Err(Feed::Source(e)) => break 'run StopReason::Source(e),
            }
        }
    };
    // Claims never filled go back: untouched ones keep their old frame,
    // ones a driver may have written stay marked incomplete.
    for slot in source.stop().into_iter().chain(spare) {
        ring.release(slot);
    }
    Summary {
        frames,
        source_dropped: counters.source_dropped.load(Ordering::Relaxed),
        disk_dropped: counters.disk_dropped.load(Ordering::Relaxed),
        error_frames: counters.error_frames.load(Ordering::Relaxed),
        bytes_copied: counters.bytes_copied.load(Ordering::Relaxed),
        delivery: source.delivery(),
        reason,
        elapsed: started.elapsed(),
    }
}

/// Why feeding a direct source stopped early.
enum Feed {
    /// `--on-full stop` and the recording is full.
    Full,
    Source(SourceError),
}

impl Feed {
    fn into_source(self) -> SourceError {
        match self {
            Feed::Source(e) => e,
            Feed::Full => SourceError::Unsupported("the recording has no free slot".into()),
        }
    }
}

/// Keep a direct source supplied with claimed slots, as far as the ring
/// allows (a slot still waiting for the disk is not handed out).
fn feed_source(
    source: &mut dyn FrameSource,
    ring: &mut Ring,
    queued: &mut usize,
    spare: &mut Option<ClaimedSlot>,
) -> Result<(), Feed> {
    while source.delivery() == Delivery::Direct && *queued < source.slots_wanted() {
        let slot = match ring.claim_next() {
            Ok(s) => s,
            Err(ClaimRefused::Full) if *queued == 0 => return Err(Feed::Full),
            Err(_) => return Ok(()),
        };
        match source.give_slot(slot).map_err(Feed::Source)? {
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

fn commit(ring: &mut Ring, slot: ClaimedSlot, info: FrameInfo, crc: Option<u32>) -> Committed {
    let meta = FrameMeta {
        source_sequence: info.source_sequence,
        timestamp_ns: info.timestamp_ns,
        wall_ns: wall_ns(),
        bytes_used: info.bytes_used,
        flags: info.flags,
        ..Default::default()
    };
    ring.commit_with(slot, meta, crc)
}

/// Per-frame bookkeeping of the loop.
#[derive(Default)]
struct Tally {
    last_source_seq: Option<u64>,
    /// The loop waited for the disk since the last frame: a gap in the
    /// source's sequence is then the disk's fault, not the source's.
    stalled: bool,
}

impl Tally {
    fn count(&mut self, counters: &Counters, c: &Committed) {
        if let Some(last) = self.last_source_seq {
            let gap = c
                .meta
                .source_sequence
                .saturating_sub(last.saturating_add(1));
            if gap > 0 {
                let to = if self.stalled {
                    &counters.disk_dropped
                } else {
                    &counters.source_dropped
                };
                to.fetch_add(gap, Ordering::Relaxed);
            }
        }
        self.stalled = false;
        self.last_source_seq = Some(c.meta.source_sequence);
        if c.meta.flags & FLAG_ERROR != 0 {
            counters.error_frames.fetch_add(1, Ordering::Relaxed);
        }
        counters.frames.fetch_add(1, Ordering::Relaxed);
        counters
            .bytes_stored
            .fetch_add(c.meta.bytes_used as u64, Ordering::Relaxed);
    }
}

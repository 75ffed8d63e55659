//! The file store's persistence: the slots are the recording's page-cache
//! pages, so persisting means writeback, and this thread keeps it going.
//!
//! * Writing through a file mapping faults once per 4 KiB page the first
//!   time (allocation) and again after each writeback (dirty tracking
//!   write-protects clean pages). `MADV_POPULATE_WRITE` on the next slots
//!   takes those faults here instead of on the capture thread (they still
//!   cost CPU: that is the file store's known cost, see the README).
//! * `sync_file_range(SYNC_FILE_RANGE_WRITE)` on finished slots starts their
//!   writeback at once instead of after the kernel's dirty expiry (30 s).
//! * Every `max_loss / 2` an `fdatasync` makes everything committed before it
//!   durable: data pages, index pages, the extent conversions of fallocated
//!   ranges, and the device's write cache. So a frame committed at `t` is on
//!   stable storage by `t + max_loss / 2 + (duration of one fdatasync)`.
//! * With `drop_cache`, slots that are durable and that every analyzer has
//!   passed are unmapped from capture's page tables and dropped from the
//!   page cache (`posix_fadvise(DONTNEED)`), so a long recording does not
//!   fill a small board's memory.

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::{PersistConfig, PersistStats, Persister};
use crate::mapping::Mapping;
use crate::ring::Progress;
use crate::sys;

/// Where this session's frames live: frame `seq` is in slot
/// `(seq + slot_offset) % slot_count`.
#[derive(Clone, Copy, Debug)]
pub struct Placement {
    pub slot_offset: u64,
    /// No frame reaches this sequence (`--on-full stop`): nothing past it is
    /// prefaulted, which would wrap around onto recorded frames.
    pub sequence_end: Option<u64>,
}

/// Start the writeback thread. `readers_passed` returns the oldest sequence
/// every analyzer is past (`u64::MAX` with none), for `drop_cache`.
pub fn spawn(
    map: Arc<Mapping>,
    file: File,
    progress: Arc<Progress>,
    placement: Placement,
    cfg: PersistConfig,
    readers_passed: Box<dyn Fn() -> u64 + Send>,
) -> std::io::Result<Persister> {
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(PersistStats::default());
    let (flag, st) = (stop.clone(), stats.clone());
    let thread = std::thread::Builder::new()
        .name("pagecam-writeback".into())
        .spawn(move || {
            let first = progress.first;
            let mut s = State {
                map,
                file,
                placement,
                next_flush: first,
                prefaulted_to: first,
                dropped_to: first,
                populate_ok: true,
                last_sync: Instant::now(),
            };
            let ahead = (cfg.prefault_slots as u64).min(s.map.layout().slot_count as u64 / 2);
            crate::sys::lower_thread_priority();
            loop {
                let stopping = flag.load(Ordering::Acquire);
                // Acquire pairs with the ring's Release store: the slots
                // below `published` are fully written.
                let published = progress.published.load(Ordering::Acquire);
                // The slot is the file: published frames are in it.
                progress.persisted.store(published, Ordering::Release);
                if st.failed() {
                    // Nothing more is claimed durable after a failed sync.
                    if stopping {
                        break;
                    }
                    std::thread::park_timeout(cfg.period);
                    continue;
                }
                if ahead > 0 && !stopping {
                    s.prefault(published, ahead);
                }
                if cfg.writeback {
                    s.writeback(published);
                }
                if stopping || s.last_sync.elapsed() >= cfg.max_loss / 2 {
                    s.persist(published, &progress, &st);
                }
                if cfg.drop_cache && !st.failed() {
                    if stopping {
                        // Everything is durable now: leave nothing behind,
                        // including slots prefaulted past the last frame.
                        let n = s.map.layout().slot_count;
                        s.map.drop_cached(&s.file, 0, n);
                    } else {
                        let upto = progress
                            .durable
                            .load(Ordering::Acquire)
                            .min(readers_passed());
                        s.drop_cache(upto, published);
                    }
                }
                if stopping {
                    break;
                }
                std::thread::park_timeout(cfg.period);
            }
        })?;
    Ok(Persister::new(
        stop,
        thread,
        stats,
        "page-cache writeback".into(),
    ))
}

struct State {
    map: Arc<Mapping>,
    file: File,
    placement: Placement,
    next_flush: u64,
    prefaulted_to: u64,
    dropped_to: u64,
    populate_ok: bool,
    last_sync: Instant,
}

impl State {
    /// Visit the slot runs holding sequences `[from, to)` as contiguous
    /// (first slot, count) ranges.
    fn slot_runs(&self, from: u64, to: u64, mut f: impl FnMut(u32, u32)) {
        let n = self.map.layout().slot_count as u64;
        let to = to.min(from.saturating_add(n));
        let mut s = from;
        while s < to {
            let slot = (s % n + self.placement.slot_offset % n) % n;
            let run = (to - s).min(n - slot);
            f(slot as u32, run as u32);
            s += run;
        }
    }

    fn prefault(&mut self, published: u64, ahead: u64) {
        if !self.populate_ok {
            return;
        }
        // Skip the slot being written now and the next one a source may
        // hold; stay `ahead` slots in front.
        let from = self.prefaulted_to.max(published + 2);
        let to = (published + 2 + ahead).min(self.placement.sequence_end.unwrap_or(u64::MAX));
        if from >= to {
            return;
        }
        let mut err = None;
        self.slot_runs(from, to, |slot, count| {
            if let Err(e) = self.map.populate_write(slot, count) {
                err.get_or_insert(e);
            }
        });
        if let Some(e) = err {
            tracing::info!(
                "MADV_POPULATE_WRITE refused ({e}); the capture thread takes the page faults"
            );
            self.populate_ok = false;
        }
        self.prefaulted_to = to;
    }

    fn writeback(&mut self, published: u64) {
        if published <= self.next_flush {
            return;
        }
        self.slot_runs(self.next_flush, published, |slot, count| {
            let (off, len) = self.map.file_range(slot, count);
            let _ = sys::start_writeback(&self.file, off, len);
        });
        let l = *self.map.layout();
        let _ = sys::start_writeback(&self.file, l.index_offset, l.data_offset - l.index_offset);
        self.next_flush = published;
    }

    /// fdatasync: everything published before the call is durable after it.
    fn persist(&mut self, published: u64, progress: &Progress, st: &PersistStats) {
        let started = Instant::now();
        self.last_sync = started;
        if progress.durable.load(Ordering::Relaxed) >= published {
            return;
        }
        match self.file.sync_data() {
            Ok(()) => {
                progress.durable.store(published, Ordering::Release);
                st.note_sync(started.elapsed().as_micros() as u64);
            }
            // A failed fdatasync may have dropped the dirty state of pages
            // whose writeback failed; a later success would not cover them.
            // So durability stops here, for good (fsyncgate).
            Err(e) => st.fail(format!("fdatasync of the recording failed: {e}")),
        }
    }

    fn drop_cache(&mut self, upto: u64, published: u64) {
        let upto = upto.min(published);
        if upto <= self.dropped_to {
            return;
        }
        self.slot_runs(self.dropped_to, upto, |slot, count| {
            self.map.drop_cached(&self.file, slot, count)
        });
        self.dropped_to = upto;
    }
}

//! Work kept off the capture thread: prefaulting the slots it will write
//! next, writing back and persisting the slots it has finished, and
//! dropping cached pages nobody needs any more.
//!
//! * Writing through a file mapping faults once per 4 KiB page the first
//!   time (allocation) and again after each writeback (dirty tracking
//!   write-protects clean pages). `MADV_POPULATE_WRITE` on the next slots
//!   takes those faults here instead of on the capture thread.
//! * `sync_file_range(SYNC_FILE_RANGE_WRITE)` on finished slots starts their
//!   writeback at once instead of after the kernel's dirty expiry (30 s).
//! * Every `max_loss / 2` an `fdatasync` makes everything committed before it
//!   durable: data pages, index pages, the extent conversions of fallocated
//!   ranges, and the device's write cache. So a frame committed at `t` is on
//!   stable storage by `t + max_loss / 2 + (duration of one fdatasync)`; the
//!   `durable` counter tells how far that holds (docs/FORMAT.md, "Durability").
//! * With `drop_cache`, slots that are durable and that every analyzer has
//!   passed are unmapped from capture's page tables and dropped from the
//!   page cache (`posix_fadvise(DONTNEED)`), so a long recording does not
//!   fill a small board's memory.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::capture::Counters;
use crate::shm::SharedMap;

pub struct HousekeepingConfig {
    /// Slots to keep prefaulted ahead of the writer (0 = off). Few: a
    /// prefaulted slot that an fdatasync writes back before the writer
    /// reaches it is write-protected again and faults twice.
    pub prefault_slots: u32,
    /// Start writeback of finished slots at once.
    pub writeback: bool,
    /// Frames committed longer ago than this survive a power cut.
    pub max_loss: Duration,
    /// Drop slots from the page cache once durable and read.
    pub drop_cache: bool,
    pub period: Duration,
}

impl Default for HousekeepingConfig {
    fn default() -> Self {
        HousekeepingConfig {
            prefault_slots: 3,
            writeback: true,
            max_loss: Duration::from_secs(1),
            drop_cache: false,
            period: Duration::from_millis(5),
        }
    }
}

/// Progress shared with the status line and the caller.
#[derive(Default)]
pub struct Durability {
    /// Every frame with a sequence below this is on stable storage.
    pub durable: AtomicU64,
    /// Longest single fdatasync so far, microseconds.
    pub worst_sync_us: AtomicU64,
    pub syncs: AtomicU64,
}

/// Where this session's frames live: frame `seq` is in slot
/// `(seq + offset) % slot_count`.
#[derive(Clone, Copy)]
pub struct Placement {
    pub first_sequence: u64,
    pub slot_offset: u64,
    /// No frame reaches this sequence (`--on-full stop`): nothing past it is
    /// prefaulted, which would wrap around onto recorded frames.
    pub sequence_end: Option<u64>,
}

pub struct Housekeeper {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    durability: Arc<Durability>,
}

impl Housekeeper {
    /// `readers_passed` returns the oldest sequence every analyzer is past
    /// (or `u64::MAX` with none), for `drop_cache`.
    pub fn spawn(
        map: Arc<SharedMap>,
        file: File,
        counters: Arc<Counters>,
        placement: Placement,
        cfg: HousekeepingConfig,
        readers_passed: Box<dyn Fn() -> u64 + Send>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let durability = Arc::new(Durability::default());
        durability
            .durable
            .store(placement.first_sequence, Ordering::Relaxed);
        let (flag, dur) = (stop.clone(), durability.clone());
        let thread = std::thread::Builder::new()
            .name("pagecam-housekeeping".into())
            .spawn(move || {
                let first = placement.first_sequence;
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
                // Background work: let the capture thread win any contention.
                // SAFETY: setpriority on this thread's own id; no memory passed.
                unsafe {
                    libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
                }
                loop {
                    let stopping = flag.load(Ordering::Relaxed);
                    // Acquire pairs with the capture thread's Release store: the
                    // slots below `committed` are fully written.
                    let committed = counters.committed.load(Ordering::Acquire).max(first);
                    if ahead > 0 && !stopping {
                        s.prefault(committed, ahead);
                    }
                    if cfg.writeback {
                        s.writeback(committed);
                    }
                    if stopping || s.last_sync.elapsed() >= cfg.max_loss / 2 {
                        s.persist(committed, &dur);
                    }
                    if cfg.drop_cache && stopping {
                        // Everything is durable now: leave nothing behind,
                        // including slots prefaulted past the last frame.
                        let n = s.map.layout().slot_count;
                        s.map.drop_cached(&s.file, 0, n);
                    } else if cfg.drop_cache {
                        let upto = dur.durable.load(Ordering::Relaxed).min(readers_passed());
                        s.drop_cache(upto, committed);
                    }
                    if stopping {
                        break;
                    }
                    std::thread::sleep(cfg.period);
                }
            })?;
        Ok(Housekeeper {
            stop,
            thread: Some(thread),
            durability,
        })
    }

    pub fn durability(&self) -> &Arc<Durability> {
        &self.durability
    }

    /// Stop after one last writeback and fdatasync of everything committed.
    pub fn finish(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Housekeeper {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

struct State {
    map: Arc<SharedMap>,
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
        let to = to.min(from + n);
        let mut s = from;
        while s < to {
            let slot = (s + self.placement.slot_offset) % n;
            let run = (to - s).min(n - slot);
            f(slot as u32, run as u32);
            s += run;
        }
    }

    fn prefault(&mut self, committed: u64, ahead: u64) {
        if !self.populate_ok {
            return;
        }
        // Skip the slot being written now and the next one a source may
        // hold; stay `ahead` slots in front.
        let from = self.prefaulted_to.max(committed + 2);
        let to = (committed + 2 + ahead).min(self.placement.sequence_end.unwrap_or(u64::MAX));
        if from >= to {
            return;
        }
        let mut ok = true;
        self.slot_runs(from, to, |slot, count| {
            ok &= self.map.populate_write(slot, count)
        });
        if !ok {
            tracing::info!("MADV_POPULATE_WRITE unavailable (Linux < 5.14?); the capture thread takes the page faults");
            self.populate_ok = false;
        }
        self.prefaulted_to = to;
    }

    fn writeback(&mut self, committed: u64) {
        if committed <= self.next_flush {
            return;
        }
        let fd = self.file.as_raw_fd();
        self.slot_runs(self.next_flush, committed, |slot, count| {
            let (off, len) = self.map.file_range(slot, count);
            start_writeback(fd, off, len);
        });
        let l = self.map.layout();
        start_writeback(fd, l.index_offset, l.data_offset - l.index_offset);
        self.next_flush = committed;
    }

    /// fdatasync: everything committed before the call is durable after it.
    fn persist(&mut self, committed: u64, dur: &Durability) {
        let started = Instant::now();
        self.last_sync = started;
        if dur.durable.load(Ordering::Relaxed) >= committed {
            return;
        }
        match self.file.sync_data() {
            Ok(()) => {
                dur.durable.store(committed, Ordering::Relaxed);
                dur.syncs.fetch_add(1, Ordering::Relaxed);
                dur.worst_sync_us
                    .fetch_max(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
            Err(e) => tracing::error!("fdatasync of the recording failed: {e}"),
        }
    }

    fn drop_cache(&mut self, upto: u64, committed: u64) {
        let upto = upto.min(committed);
        if upto <= self.dropped_to {
            return;
        }
        self.slot_runs(self.dropped_to, upto, |slot, count| {
            self.map.drop_cached(&self.file, slot, count)
        });
        self.dropped_to = upto;
    }
}

/// Start writeback of a file range without waiting for it.
fn start_writeback(fd: i32, offset: u64, len: u64) {
    // SAFETY: plain syscall on a valid descriptor; no memory is passed.
    unsafe {
        libc::sync_file_range(fd, offset as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
    }
}

//! Work kept off the capture thread: prefaulting the slots it will write
//! next, and starting writeback of the slots it has finished.
//!
//! Writing through a file mapping faults once per 4 KiB page the first time
//! (page allocation) and again after each writeback (dirty tracking write-
//! protects clean pages). `MADV_POPULATE_WRITE` on the next slots takes
//! those faults here instead. `sync_file_range(SYNC_FILE_RANGE_WRITE)` on
//! finished slots starts writeback at once instead of after the kernel's
//! dirty expiry (30 s by default), which bounds both the dirty memory and
//! what a power cut can take.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::capture::Counters;
use crate::shm::SharedMap;

pub struct HousekeepingConfig {
    /// Bytes of slots to keep prefaulted ahead of the writer.
    pub prefault_bytes: u64,
    /// Start writeback of finished slots.
    pub writeback: bool,
    pub period: Duration,
}

impl Default for HousekeepingConfig {
    fn default() -> Self {
        HousekeepingConfig {
            prefault_bytes: 32 << 20,
            writeback: true,
            period: Duration::from_millis(5),
        }
    }
}

pub struct Housekeeper {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Housekeeper {
    /// `first_sequence` is the sequence of the next frame to be written.
    pub fn spawn(
        map: Arc<SharedMap>,
        file: File,
        counters: Arc<Counters>,
        first_sequence: u64,
        cfg: HousekeepingConfig,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("pagecam-housekeeping".into())
            .spawn(move || {
                let mut state = State {
                    map,
                    file,
                    next_flush: first_sequence,
                    prefaulted_to: first_sequence,
                    populate_ok: true,
                };
                let slot_size = state.map.layout().slot_size;
                let ahead = (cfg.prefault_bytes / slot_size)
                    .max(2)
                    .min(state.map.layout().slot_count as u64 / 2);
                while !flag.load(Ordering::Relaxed) {
                    // Acquire pairs with the capture thread's Release store: the
                    // slots below `committed` are fully written.
                    let committed = counters
                        .committed
                        .load(Ordering::Acquire)
                        .max(first_sequence);
                    if ahead > 0 {
                        state.prefault(committed, ahead);
                    }
                    if cfg.writeback {
                        state.writeback(committed);
                    }
                    std::thread::sleep(cfg.period);
                }
            })?;
        Ok(Housekeeper {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Housekeeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct State {
    map: Arc<SharedMap>,
    file: File,
    next_flush: u64,
    prefaulted_to: u64,
    populate_ok: bool,
}

impl State {
    /// Sequence `seq` lives in slot `seq % slot_count`; visit the slot runs
    /// covering sequences `[from, to)` as contiguous ranges.
    fn slot_runs(&self, from: u64, to: u64, mut f: impl FnMut(u32, u32)) {
        let n = self.map.layout().slot_count as u64;
        let mut s = from;
        while s < to {
            let slot = s % n;
            let run = (to - s).min(n - slot);
            f(slot as u32, run as u32);
            s += run;
        }
    }

    fn prefault(&mut self, committed: u64, ahead: u64) {
        if !self.populate_ok {
            return;
        }
        // Skip the slot being written now (committed) and the next one the
        // source may hold; stay `ahead` slots in front.
        let from = self.prefaulted_to.max(committed + 2);
        let to = committed + 2 + ahead;
        if from >= to {
            return;
        }
        let mut ok = true;
        self.slot_runs(from, to, |slot, count| {
            ok &= self.map.populate_write(slot, count)
        });
        if !ok {
            tracing::info!("MADV_POPULATE_WRITE unavailable (Linux < 5.14?); the capture thread takes page faults");
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
}

/// Start writeback of a file range without waiting for it.
fn start_writeback(fd: i32, offset: u64, len: u64) {
    // SAFETY: plain syscall on a valid descriptor; no memory is passed.
    unsafe {
        libc::sync_file_range(fd, offset as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
    }
}

//! Persistence: how committed frames reach the recording file and stable
//! storage, on a thread of its own so the capture thread never waits for
//! the disk.
//!
//! * [`writeback`] (file store): the slots *are* the file's page cache;
//!   this thread prefaults the next slots, starts writeback of finished
//!   ones and runs `fdatasync` every `max_loss / 2`.
//! * [`direct`] (RAM ring): this thread writes each finished slot to the
//!   recording with `O_DIRECT` from the ring's own pages (no CPU copy, no
//!   page cache), then its index record, and makes them durable by an
//!   `fdatasync` cadence or `O_DSYNC` writes.
//!
//! Both report through [`PersistStats`]; a failed write or sync is a
//! storage failure: it is reported, the durable watermark never moves past
//! it, and the capture loop stops (docs/FORMAT.md, "Durability").

pub mod direct;
pub mod writeback;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the direct writer makes frames durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// `fdatasync` every `max_loss / 2`.
    Cadence,
    /// Every write with `O_DSYNC` (FUA where the device has it): durable
    /// when the write returns, in write order.
    Dsync,
}

/// Settings of either persister.
#[derive(Clone, Debug)]
pub struct PersistConfig {
    /// Frames committed longer ago than this survive a power cut.
    pub max_loss: Duration,
    /// Direct store: how durability is reached.
    pub sync: SyncMode,
    /// File store: slots to keep prefaulted ahead of the writer (0 = off).
    pub prefault_slots: u32,
    /// File store: start writeback of finished slots at once.
    pub writeback: bool,
    /// File store: drop slots from the page cache once durable and read.
    pub drop_cache: bool,
    /// How often the thread looks for work when nothing woke it.
    pub period: Duration,
}

impl Default for PersistConfig {
    fn default() -> Self {
        PersistConfig {
            max_loss: Duration::from_secs(1),
            sync: SyncMode::Cadence,
            prefault_slots: 3,
            writeback: true,
            drop_cache: false,
            period: Duration::from_millis(5),
        }
    }
}

/// What the persistence thread did, for the status line and the summary.
#[derive(Debug, Default)]
pub struct PersistStats {
    /// fdatasyncs run, and the longest, in microseconds.
    pub syncs: AtomicU64,
    pub worst_sync_us: AtomicU64,
    /// Direct store: frames and bytes written to the recording.
    pub frames_written: AtomicU64,
    pub bytes_written: AtomicU64,
    /// Longest single frame write (data + index), microseconds.
    pub worst_write_us: AtomicU64,
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
}

impl PersistStats {
    /// A write or sync failed: persistence has stopped.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn fail(&self, why: String) {
        tracing::error!("{why}");
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        f.get_or_insert(why);
        self.failed.store(true, Ordering::Relaxed);
    }

    fn note_sync(&self, us: u64) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.worst_sync_us.fetch_max(us, Ordering::Relaxed);
    }
}

/// The running persistence thread. `finish` persists everything committed
/// and syncs; dropping it does the same.
pub struct Persister {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<PersistStats>,
    /// What the thread does, for logs ("O_DIRECT", "buffered", "writeback").
    mode: String,
}

impl Persister {
    fn new(
        stop: Arc<AtomicBool>,
        thread: JoinHandle<()>,
        stats: Arc<PersistStats>,
        mode: String,
    ) -> Self {
        Persister {
            stop,
            thread: Some(thread),
            stats,
            mode,
        }
    }

    pub fn stats(&self) -> &Arc<PersistStats> {
        &self.stats
    }

    pub fn mode(&self) -> &str {
        &self.mode
    }

    /// Persist everything committed, sync, and stop. Returns the storage
    /// failure, if any happened during the session.
    pub fn finish(mut self) -> Result<(), String> {
        self.stop_thread();
        match self.stats.failure() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            if t.join().is_err() {
                self.stats
                    .fail("the persistence thread panicked; the recording may be behind".into());
            }
        }
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

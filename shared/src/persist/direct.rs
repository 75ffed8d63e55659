//! The RAM ring's persistence: each committed frame is written to the
//! recording file with `O_DIRECT` straight from the ring's pages, then its
//! index record, in sequence order, on this thread.
//!
//! Why `O_DIRECT` from the ring: the block device reads the same physical
//! pages the driver wrote and analyzers read, so a frame exists once in
//! memory and is never copied by the CPU; nothing enters the page cache, so
//! no page is ever dirty, write-protected or faulted again, and memory use
//! is the ring, not the recording. A plain thread with blocking `pwrite`
//! is enough: one frame in flight at a time keeps the disk busy at camera
//! rates (the benchmark measures it), and the capture thread never waits
//! for it (it only pushes onto a lock-free queue).
//!
//! Order per frame, so that a live reader using the seqlock rule (record,
//! data, record again) and a crash both see the truth:
//! 1. the frame's data, into its file slot, whose record is already marked
//!    odd ("being written");
//! 2. the index page with the frame's record (even generation, CRC over
//!    data and metadata) and, if it is on the same page, the next slot's
//!    record marked odd (else that page is written next, before its data);
//! 3. `persisted` advances (Release): the ring may reuse the RAM slot.
//!
//! Durability: an `fdatasync` every `SYNC_EVERY` or `max_loss / 2`,
//! whichever is shorter (`SyncMode::Cadence`): with nothing dirty in the
//! page cache it only commits the journal (the conversion of `fallocate`d
//! extents the writes made) and flushes the device's cache, so it is cheap
//! and frequent, and a power cut loses far less than `max_loss`;
//! or `O_DSYNC` writes (`SyncMode::Dsync`). A failed write or sync stops
//! persistence for good and is reported; durability is never claimed past
//! it.
//!
//! Where the filesystem refuses `O_DIRECT` (tmpfs before Linux 6.6, some
//! FUSE filesystems) the writer falls back to buffered `pwrite` from the
//! same pages (one kernel copy into the page cache, still no faults) and
//! says so.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use memmap2::MmapMut;

use super::{PersistConfig, PersistStats, Persister, SyncMode};
use crate::format::{
    generation_state, FrameMeta, GenerationState, Header, Layout, Record, PAGE, RECORD_SIZE,
};
use crate::mapping::{HeldSlot, Mapping};
use crate::ring::{CommitSink, Committed, Progress};
use crate::sys;

/// Committed frames on their way to the writer thread: a bounded lock-free
/// queue (no allocation, no lock on the capture thread) and a wake-up.
/// Each frame travels with its slot held (`HeldSlot`), so the ring cannot
/// reuse the slot before the writer drops it, after the write.
pub struct Queue {
    frames: ArrayQueue<(Committed, HeldSlot)>,
    writer: OnceLock<Thread>,
    overflowed: AtomicBool,
}

impl Queue {
    /// Room for every slot of the ring: the ring never has more frames
    /// waiting than slots, so a push cannot fail unless something is wrong.
    pub fn new(ring_slots: u32) -> Arc<Self> {
        Arc::new(Queue {
            frames: ArrayQueue::new(ring_slots.max(1) as usize),
            writer: OnceLock::new(),
            overflowed: AtomicBool::new(false),
        })
    }
}

impl CommitSink for Queue {
    fn committed(&self, c: Committed, slot: HeldSlot) {
        if self.frames.push((c, slot)).is_err() {
            self.overflowed.store(true, Ordering::Relaxed);
        }
        // A futex wake only if the writer sleeps (std's park/unpark).
        if let Some(t) = self.writer.get() {
            t.unpark();
        }
    }
}

/// The recording the ring is persisted into.
pub struct Target {
    /// The recording, open read-write with the writer lock held (reopened
    /// here with `O_DIRECT`; the lock stays with this descriptor's owner).
    pub file: File,
    pub header: Header,
    /// Frame `seq` goes to file slot `(seq + slot_offset) % slot_count`.
    pub slot_offset: u64,
    /// No frame reaches this sequence (`--on-full stop`).
    pub sequence_end: Option<u64>,
}

/// Open the recording for the writer: `O_DIRECT` (+ `O_DSYNC`), or
/// buffered where the filesystem refuses `O_DIRECT`. Returns the file and
/// a note for the log if it fell back.
fn open_target(file: &File, sync: SyncMode) -> std::io::Result<(File, bool, Option<String>)> {
    let dsync = if sync == SyncMode::Dsync {
        libc::O_DSYNC
    } else {
        0
    };
    match sys::reopen(file, libc::O_RDWR | libc::O_DIRECT | dsync) {
        Ok(f) => Ok((f, true, None)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let f = sys::reopen(file, libc::O_RDWR | dsync)?;
            Ok((
                f,
                false,
                Some(
                    "the recording's filesystem refuses O_DIRECT; writing frames with buffered \
                     pwrite (one kernel copy into the page cache)"
                        .into(),
                ),
            ))
        }
        Err(e) => Err(e),
    }
}

/// Start the writer thread.
pub fn spawn(
    ring: Arc<Mapping>,
    target: Target,
    progress: Arc<Progress>,
    queue: Arc<Queue>,
    cfg: PersistConfig,
) -> std::io::Result<Persister> {
    let (file, direct, note) = open_target(&target.file, cfg.sync)?;
    if let Some(note) = &note {
        tracing::warn!("{note}");
    }
    let mode = match (direct, cfg.sync) {
        (true, SyncMode::Cadence) => "O_DIRECT, fdatasync cadence",
        (true, SyncMode::Dsync) => "O_DIRECT|O_DSYNC",
        (false, SyncMode::Cadence) => "buffered pwrite, fdatasync cadence",
        (false, SyncMode::Dsync) => "buffered pwrite, O_DSYNC",
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(PersistStats::default());
    let page = MmapMut::map_anon(PAGE as usize)?;
    let mut w = Writer {
        ring: Some(ring),
        file,
        layout: target.header.layout,
        slot_offset: target.slot_offset,
        sequence_end: target.sequence_end,
        page,
        page_no: None,
        dirty: false,
        pending_odd: None,
        sync: cfg.sync,
    };
    let (flag, st, q) = (stop.clone(), stats.clone(), queue.clone());
    let thread = std::thread::Builder::new()
        .name("pagecam-writer".into())
        .spawn(move || {
            crate::sys::lower_thread_priority();
            w.run(&flag, &st, &q, &progress, &cfg);
        })?;
    let _ = queue.writer.set(thread.thread().clone());
    Ok(Persister::new(stop, thread, stats, mode.into()))
}

/// The longest time between two `fdatasync`s of the direct writer.
const SYNC_EVERY: Duration = Duration::from_millis(100);

struct Writer {
    /// The live ring (`None` while recovering a dead capture's ring).
    ring: Option<Arc<Mapping>>,
    file: File,
    layout: Layout,
    slot_offset: u64,
    sequence_end: Option<u64>,
    /// One 4 KiB page of the file's index, page-aligned for `O_DIRECT`.
    page: MmapMut,
    page_no: Option<u64>,
    dirty: bool,
    /// File slot marked odd ahead of its data, with its generation before.
    pending_odd: Option<(u32, u64)>,
    sync: SyncMode,
}

fn io_fail(what: &str, e: std::io::Error) -> String {
    format!("writing the recording failed ({what}): {e}")
}

impl Writer {
    fn run(
        &mut self,
        stop: &AtomicBool,
        st: &PersistStats,
        q: &Queue,
        progress: &Progress,
        cfg: &PersistConfig,
    ) {
        let mut last_sync = Instant::now();
        let mut synced_to = progress.first;
        let sync_every = (cfg.max_loss / 2).min(SYNC_EVERY);
        if let Err(e) = self.mark_next_odd(progress.first) {
            st.fail(io_fail("index", e));
        }
        loop {
            let stopping = stop.load(Ordering::Acquire);
            if q.overflowed.load(Ordering::Relaxed) {
                st.fail(
                    "internal error: the writer queue overflowed; frames were not persisted".into(),
                );
            }
            let mut wrote = false;
            while !st.failed() {
                let Some((c, held)) = q.frames.pop() else {
                    break;
                };
                let started = Instant::now();
                let written = self.write_frame(&c, &held);
                // The slot may be reused from here on.
                drop(held);
                match written {
                    Ok(bytes) => {
                        st.frames_written.fetch_add(1, Ordering::Relaxed);
                        st.bytes_written.fetch_add(bytes, Ordering::Relaxed);
                        st.worst_write_us
                            .fetch_max(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                        let next = c.meta.sequence + 1;
                        // Release pairs with the ring's Acquire before it
                        // reclaims the slot: our reads of it are done.
                        progress.persisted.store(next, Ordering::Release);
                        if self.sync == SyncMode::Dsync {
                            progress.durable.store(next, Ordering::Release);
                        }
                        wrote = true;
                    }
                    Err(e) => st.fail(e),
                }
            }
            let persisted = progress.persisted.load(Ordering::Relaxed);
            let due = stopping || last_sync.elapsed() >= sync_every;
            if self.sync == SyncMode::Cadence && due && synced_to < persisted && !st.failed() {
                let started = Instant::now();
                match self.file.sync_data() {
                    Ok(()) => {
                        st.note_sync(started.elapsed().as_micros() as u64);
                        progress.durable.store(persisted, Ordering::Release);
                        synced_to = persisted;
                    }
                    Err(e) => st.fail(format!("fdatasync of the recording failed: {e}")),
                }
                last_sync = Instant::now();
            } else if due {
                last_sync = Instant::now();
            }
            // Stopping: once everything is written, or at once after a
            // failure (what is left in the queue will not be written).
            if stopping && (q.frames.is_empty() || st.failed()) {
                break;
            }
            if !wrote {
                let wait = sync_every
                    .saturating_sub(last_sync.elapsed())
                    .min(cfg.period.max(Duration::from_millis(1)) * 20);
                std::thread::park_timeout(wait);
            }
        }
        if !st.failed() {
            if let Err(e) = self.restore_pending() {
                st.fail(io_fail("index", e));
            } else if self.sync == SyncMode::Cadence {
                // The restored record must be durable too.
                if let Err(e) = self.file.sync_data() {
                    st.fail(format!("fdatasync of the recording failed: {e}"));
                }
            }
        }
    }

    fn file_slot(&self, sequence: u64) -> u32 {
        let n = self.layout.slot_count as u64;
        ((sequence % n + self.slot_offset % n) % n) as u32
    }

    /// Write one frame of the live ring. Returns the bytes written.
    fn write_frame(&mut self, c: &Committed, held: &HeldSlot) -> Result<u64, String> {
        // The held slot cannot have been reused: check anyway, it is cheap.
        let live = self.ring.as_ref().and_then(|r| r.generation(c.slot));
        if live != Some(c.generation) || held.slot() != c.slot {
            return Err(format!(
                "internal error: RAM slot {} was reused before frame {} was persisted",
                c.slot, c.meta.sequence
            ));
        }
        let crc = c.data_crc.unwrap_or_else(|| crc32c::crc32c(held.bytes()));
        self.store(&c.meta, crc, held.page_bytes())
    }

    /// Write a frame (`data`: its bytes rounded up to whole pages, for
    /// O_DIRECT; `data_crc`: the CRC32C of its `bytes_used`), then its
    /// record and the next slot's odd mark. Returns the bytes written.
    fn store(&mut self, meta: &FrameMeta, data_crc: u32, data: &[u8]) -> Result<u64, String> {
        let crc = meta.checksum(data_crc);
        let fslot = self.file_slot(meta.sequence);
        if !data.is_empty() {
            self.file
                .write_all_at(data, self.layout.slot_offset(fslot))
                .map_err(|e| io_fail("frame data", e))?;
        }
        let written = data.len() as u64;
        let prev = self.record(fslot).map_err(|e| io_fail("index", e))?;
        let generation = if prev.generation % 2 == 1 {
            prev.generation + 1
        } else {
            prev.generation + 2
        };
        self.set_record(
            fslot,
            Record {
                generation,
                meta: *meta,
                crc,
            },
        )
        .map_err(|e| io_fail("index", e))?;
        if self.pending_odd.is_some_and(|(s, _)| s == fslot) {
            self.pending_odd = None;
        }
        self.mark_next_odd(meta.sequence + 1)
            .map_err(|e| io_fail("index", e))?;
        self.flush().map_err(|e| io_fail("index", e))?;
        Ok(written + PAGE)
    }

    /// Mark the file slot of frame `sequence` "being written" (odd), unless
    /// no such frame can come (`--on-full stop`).
    fn mark_next_odd(&mut self, sequence: u64) -> std::io::Result<()> {
        if self.sequence_end.is_some_and(|end| sequence >= end) {
            return Ok(());
        }
        let fslot = self.file_slot(sequence);
        let mut r = self.record(fslot)?;
        if r.generation % 2 == 0 {
            self.pending_odd = Some((fslot, r.generation));
            r.generation += 1;
            self.set_record(fslot, r)?;
        }
        self.flush()
    }

    /// At a clean stop: the slot marked odd for a frame that never came
    /// gets its old generation back, so the frame it holds stays valid.
    fn restore_pending(&mut self) -> std::io::Result<()> {
        if let Some((fslot, generation)) = self.pending_odd.take() {
            let mut r = self.record(fslot)?;
            r.generation = generation;
            self.set_record(fslot, r)?;
            self.flush()?;
        }
        Ok(())
    }

    fn page_of(&self, slot: u32) -> (u64, usize) {
        let byte = slot as u64 * RECORD_SIZE;
        (byte / PAGE, (byte % PAGE) as usize)
    }

    /// Load index page `no` into the page buffer (writing the loaded one
    /// back first if it changed).
    fn load(&mut self, no: u64) -> std::io::Result<()> {
        if self.page_no == Some(no) {
            return Ok(());
        }
        self.flush()?;
        self.file
            .read_exact_at(&mut self.page, self.layout.index_offset + no * PAGE)?;
        self.page_no = Some(no);
        Ok(())
    }

    fn record(&mut self, slot: u32) -> std::io::Result<Record> {
        let (no, at) = self.page_of(slot);
        self.load(no)?;
        Record::decode(&self.page[at..]).ok_or_else(|| std::io::ErrorKind::UnexpectedEof.into())
    }

    fn set_record(&mut self, slot: u32, r: Record) -> std::io::Result<()> {
        let (no, at) = self.page_of(slot);
        self.load(no)?;
        self.page[at..at + RECORD_SIZE as usize].copy_from_slice(&r.encode());
        self.dirty = true;
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let (true, Some(no)) = (self.dirty, self.page_no) {
            self.file
                .write_all_at(&self.page, self.layout.index_offset + no * PAGE)?;
            self.dirty = false;
        }
        Ok(())
    }
}

/// What `recover` found and wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Frames of the dead capture's ring that were not in the recording.
    pub frames: u64,
    /// First and last sequence recovered.
    pub first: Option<u64>,
    pub last: Option<u64>,
}

/// After a crash: write the frames of a dead capture's RAM ring (handed
/// back by the service manager's descriptor store) that the recording does
/// not hold yet, in sequence order, and move `rec.start` past them.
///
/// The ring is first sealed `F_SEAL_WRITE`, which the kernel grants only
/// when no writable mapping of it is left, i.e. its capture is really gone;
/// from then on it cannot change, so its frames are written straight from
/// its pages (`O_DIRECT`, no copy). Frames in it are complete exactly when
/// their generation is even: RAM is not torn by a process crash.
pub fn recover(
    old: &std::fs::File,
    rec: &mut crate::recording::RecordingFile,
    sync: SyncMode,
) -> Result<Recovered, String> {
    sys::add_seals(old, libc::F_SEAL_WRITE).map_err(|e| {
        if e.raw_os_error() == Some(libc::EBUSY) {
            "the stored RAM ring is still mapped writable: is another capture running?".into()
        } else {
            format!("cannot seal the stored RAM ring: {e}")
        }
    })?;
    let header = crate::recording::read_header(old, std::path::Path::new("<stored RAM ring>"))
        .map_err(|e| e.to_string())?;
    if header.format != rec.header.format {
        return Err(format!(
            "the stored RAM ring holds {}, the recording {}",
            header.format, rec.header.format
        ));
    }
    let map = Mapping::map_frozen(old, header.layout).map_err(|e| e.to_string())?;
    let start = rec.start;
    let mut frames: Vec<(u32, FrameMeta)> = (0..header.layout.slot_count)
        .filter_map(|slot| Some((slot, map.snapshot(slot)?)))
        .filter(|(_, r)| generation_state(r.generation) == GenerationState::Committed)
        .filter(|(_, r)| r.meta.sequence >= start.next_sequence)
        .map(|(slot, r)| (slot, r.meta))
        .collect();
    frames.sort_by_key(|(_, m)| m.sequence);
    let end = start.budget.map(|b| start.next_sequence.saturating_add(b));
    frames.retain(|(_, m)| end.is_none_or(|e| m.sequence < e));
    let Some(&(_, last)) = frames.last() else {
        return Ok(Recovered::default());
    };
    let n = rec.header.layout.slot_count as u64;
    let slot_offset = (start.next_slot as u64 % n + n - start.next_sequence % n) % n;
    let (file, _, note) = open_target(&rec.file, sync).map_err(|e| io_fail("open", e))?;
    if let Some(note) = note {
        tracing::warn!("{note}");
    }
    let mut w = Writer {
        ring: None,
        file,
        layout: rec.header.layout,
        slot_offset,
        sequence_end: end,
        page: MmapMut::map_anon(PAGE as usize).map_err(|e| io_fail("buffer", e))?,
        page_no: None,
        dirty: false,
        pending_odd: None,
        sync,
    };
    w.mark_next_odd(frames[0].1.sequence)
        .map_err(|e| io_fail("index", e))?;
    for (slot, meta) in &frames {
        let used = meta.bytes_used as usize;
        let page_len = used.div_ceil(PAGE as usize) * PAGE as usize;
        let (Some(data), Some(bytes)) = (
            map.frozen_bytes(*slot, page_len),
            map.frozen_bytes(*slot, used),
        ) else {
            return Err(format!("RAM ring slot {slot} is out of range"));
        };
        w.store(meta, crc32c::crc32c(bytes), data)?;
    }
    w.restore_pending().map_err(|e| io_fail("index", e))?;
    w.file
        .sync_data()
        .map_err(|e| format!("fdatasync of the recording failed: {e}"))?;
    let count = frames.len() as u64;
    rec.start.next_sequence = last.sequence + 1;
    rec.start.next_slot = ((last.sequence % n + slot_offset) % n + 1) as u32 % n as u32;
    if let Some(b) = &mut rec.start.budget {
        *b = b.saturating_sub(last.sequence + 1 - start.next_sequence);
    }
    let newest_session = frames.iter().map(|(_, m)| m.session).max().unwrap_or(0);
    rec.start.session = rec.start.session.max(newest_session.saturating_add(1));
    Ok(Recovered {
        frames: count,
        first: frames.first().map(|(_, m)| m.sequence),
        last: Some(last.sequence),
    })
}

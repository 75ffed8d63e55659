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
//! Order, so that a live reader using the seqlock rule (record, data,
//! record again) and a crash or power cut at any point see the truth, on
//! any device, even one that reorders writes in its cache:
//! 1. a slot's old record is marked odd ("being written") on stable
//!    storage before its new data is written (marks are made a ring's
//!    worth of frames ahead, at sync points);
//! 2. each frame's data is written into its file slot as it comes;
//! 3. at a sync point (every `SYNC_EVERY` or `max_loss / 2`, whichever is
//!    shorter, or sooner when half the ring waits): `fdatasync`, then the
//!    records of the frames written (even generation, CRC over data and
//!    metadata) and the next marks, then `fdatasync` again. A record thus
//!    never reaches the disk before its data (nor before the conversion of
//!    the `fallocate`d extent the data went to), so a power cut leaves
//!    frames valid, incomplete or empty, never corrupt;
//! 4. then the RAM slots are let go (`persisted` advances): until its
//!    record is in the file, a frame stays readable from the ring.
//!
//! With nothing dirty in the page cache an `fdatasync` only commits the
//! journal and flushes the device's cache, so two per sync point are
//! cheap, and a power cut loses about `SYNC_EVERY` plus the writer's lag,
//! far less than `max_loss`. `SyncMode::Dsync` opens the file `O_DSYNC`:
//! every write is durable on return, so each frame's record follows its
//! data at once. A failed write or sync stops persistence for good and is
//! reported; durability is never claimed past it.
//!
//! Where the filesystem refuses `O_DIRECT` (tmpfs before Linux 6.6, some
//! FUSE filesystems) the writer falls back to buffered `pwrite` from the
//! same pages (one kernel copy into the page cache, still no faults) and
//! says so.

use std::collections::VecDeque;
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
    }

    fn wake(&self) {
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
    let ring_slots = u32::try_from(queue.frames.capacity()).unwrap_or(u32::MAX);
    let mut w = Writer::new(
        file,
        target.header.layout,
        target.slot_offset,
        target.sequence_end,
        cfg.sync,
        progress.first,
        ring_slots,
    )?;
    w.ring = Some(ring);
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

/// The longest time between two sync points of the direct writer.
const SYNC_EVERY: Duration = Duration::from_millis(100);

/// A frame whose data is in the file but whose record is not yet: its
/// record is written only once the data is on stable storage.
struct Unrecorded {
    fslot: u32,
    meta: FrameMeta,
    /// The frame checksum (data and metadata) for its record.
    crc: u32,
    /// The live ring's slot, held until the record is in the file, so that
    /// a frame is always readable from the ring or from the recording.
    held: Option<HeldSlot>,
}

/// A file slot marked odd ahead of its frame, with the generation it had.
#[derive(Clone, Copy)]
struct Mark {
    sequence: u64,
    fslot: u32,
    generation: u64,
}

struct Writer {
    /// The live ring (`None` while recovering a dead capture's ring).
    ring: Option<Arc<Mapping>>,
    file: File,
    layout: Layout,
    slot_offset: u64,
    sequence_end: Option<u64>,
    sync: SyncMode,
    /// One 4 KiB page of the file's index, page-aligned for `O_DIRECT`.
    page: MmapMut,
    page_no: Option<u64>,
    dirty: bool,
    /// The next frame's sequence: every frame before it has its data in
    /// the file.
    next: u64,
    /// Written since the last fdatasync (data, records or marks).
    unsynced: bool,
    /// Data written, record waiting for the next sync point. Capacity:
    /// the ring's slots (allocated once).
    unrecorded: Vec<Unrecorded>,
    /// Slots marked odd ahead of their frames, oldest first. Capacity:
    /// `lookahead` (allocated once).
    marks: VecDeque<Mark>,
    /// Frames below this sequence have their slot marked (where it needs
    /// a mark) in the file, and below `marks_durable` on stable storage.
    marked_to: u64,
    marks_durable: u64,
    /// How many frames ahead a sync point marks.
    lookahead: u64,
}

fn io_fail(what: &str, e: std::io::Error) -> String {
    format!("writing the recording failed ({what}): {e}")
}

impl Writer {
    fn new(
        file: File,
        layout: Layout,
        slot_offset: u64,
        sequence_end: Option<u64>,
        sync: SyncMode,
        first: u64,
        ring_slots: u32,
    ) -> std::io::Result<Self> {
        let ring_slots = ring_slots.max(1) as u64;
        // Far enough that data writes never wait for marks (the writer
        // cannot get further ahead of a sync point than the ring), never
        // more than half the recording (a mark costs the old frame there).
        let lookahead = (2 * ring_slots).min(layout.slot_count as u64 / 2).max(1);
        Ok(Writer {
            ring: None,
            file,
            layout,
            slot_offset,
            sequence_end,
            sync,
            page: MmapMut::map_anon(PAGE as usize)?,
            page_no: None,
            dirty: false,
            next: first,
            unsynced: false,
            unrecorded: Vec::with_capacity(ring_slots as usize),
            marks: VecDeque::with_capacity(lookahead as usize),
            marked_to: first,
            marks_durable: first,
            lookahead,
        })
    }

    fn run(
        &mut self,
        stop: &AtomicBool,
        st: &PersistStats,
        q: &Queue,
        progress: &Progress,
        cfg: &PersistConfig,
    ) {
        let mut last_sync = Instant::now();
        let sync_every = (cfg.max_loss / 2).min(SYNC_EVERY);
        // A sync point early when half the ring waits for one, so a small
        // ring does not fill with frames whose records are pending.
        let early = (q.frames.capacity() / 2).max(1);
        if let Err(e) = self.sync_point(st, progress) {
            st.fail(e);
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
                match self.write_frame(c, held, st, progress) {
                    Ok(bytes) => {
                        st.frames_written.fetch_add(1, Ordering::Relaxed);
                        st.bytes_written.fetch_add(bytes, Ordering::Relaxed);
                        st.worst_write_us
                            .fetch_max(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                        wrote = true;
                    }
                    Err(e) => st.fail(e),
                }
                if self.sync == SyncMode::Dsync || self.unrecorded.len() >= early {
                    break;
                }
            }
            let due = stopping
                || self.sync == SyncMode::Dsync
                || self.unrecorded.len() >= early
                || last_sync.elapsed() >= sync_every;
            if due && !st.failed() && !self.unrecorded.is_empty() {
                if let Err(e) = self.sync_point(st, progress) {
                    st.fail(e);
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
            if let Err(e) = self.restore_marks(st) {
                st.fail(e);
            }
        }
    }

    fn file_slot(&self, sequence: u64) -> u32 {
        let n = self.layout.slot_count as u64;
        ((sequence % n + self.slot_offset % n) % n) as u32
    }

    /// Write one frame of the live ring. Returns the bytes written.
    fn write_frame(
        &mut self,
        c: Committed,
        held: HeldSlot,
        st: &PersistStats,
        progress: &Progress,
    ) -> Result<u64, String> {
        // The held slot cannot have been reused: check anyway, it is cheap.
        let live = self.ring.as_ref().and_then(|r| r.generation(c.slot));
        if live != Some(c.generation) || held.slot() != c.slot {
            return Err(format!(
                "internal error: RAM slot {} was reused before frame {} was persisted",
                c.slot, c.meta.sequence
            ));
        }
        let crc = c.data_crc.unwrap_or_else(|| crc32c::crc32c(held.bytes()));
        // `held` moves into the pending list after the write: it keeps the
        // RAM slot until the frame's record is in the file.
        let written = self.write_data(&c.meta, crc, held.page_bytes(), st, progress)?;
        if let Some(u) = self.unrecorded.last_mut() {
            u.held = Some(held);
        }
        Ok(written)
    }

    /// Write a frame's data (`data`: its bytes rounded up to whole pages,
    /// for O_DIRECT; `data_crc`: the CRC32C of its `bytes_used`) into its
    /// file slot, whose old record is already marked odd on stable storage.
    /// Its record waits for the next sync point. Returns the bytes written.
    fn write_data(
        &mut self,
        meta: &FrameMeta,
        data_crc: u32,
        data: &[u8],
        st: &PersistStats,
        progress: &Progress,
    ) -> Result<u64, String> {
        if meta.sequence < self.next {
            return Err(format!(
                "internal error: frame {} reached the writer after frame {}",
                meta.sequence,
                self.next - 1
            ));
        }
        // A gap (a recovered ring missing a frame): the slots in between
        // keep what they hold.
        self.next = meta.sequence;
        // The slot's old record must be marked odd on stable storage
        // before its data changes: one sync point normally suffices (the
        // lookahead is at least one frame).
        for _ in 0..2 {
            if meta.sequence < self.marks_durable {
                break;
            }
            self.sync_point(st, progress)?;
        }
        if meta.sequence >= self.marks_durable {
            return Err(format!(
                "internal error: no durable mark for frame {}",
                meta.sequence
            ));
        }
        let fslot = self.file_slot(meta.sequence);
        if !data.is_empty() {
            self.file
                .write_all_at(data, self.layout.slot_offset(fslot))
                .map_err(|e| io_fail("frame data", e))?;
            self.unsynced = true;
        }
        self.unrecorded.push(Unrecorded {
            fslot,
            meta: *meta,
            crc: meta.checksum(data_crc),
            held: None,
        });
        self.next = meta.sequence + 1;
        Ok(data.len() as u64)
    }

    /// Make the data written so far durable, then write its records and
    /// the next marks, and make those durable:
    /// 1. fdatasync (data, and the extent conversions it needs);
    /// 2. the records of the frames written (even generation, CRC): a
    ///    record is never on disk before its data;
    /// 3. odd marks on the slots of the next `lookahead` frames, whose old
    ///    frames are about to be overwritten: an old record is never on
    ///    disk beside new data;
    /// 4. fdatasync (records and marks).
    ///
    /// With `O_DSYNC` every write is durable on return: no fdatasync.
    fn sync_point(&mut self, st: &PersistStats, progress: &Progress) -> Result<(), String> {
        self.fdatasync(st)?;
        let mut pending = std::mem::take(&mut self.unrecorded);
        let recorded = pending.last().map(|u| u.meta.sequence + 1);
        for u in &pending {
            let prev = self.record(u.fslot).map_err(|e| io_fail("index", e))?;
            // Marked odd (g + 1) or left odd by a crash: the next even
            // value; blank or never marked: two on.
            let generation = if prev.generation % 2 == 1 {
                prev.generation + 1
            } else {
                prev.generation + 2
            };
            self.set_record(
                u.fslot,
                Record {
                    generation,
                    meta: u.meta,
                    crc: u.crc,
                },
            )
            .map_err(|e| io_fail("index", e))?;
            while self
                .marks
                .front()
                .is_some_and(|m| m.sequence <= u.meta.sequence)
            {
                self.marks.pop_front();
            }
        }
        self.extend_marks().map_err(|e| io_fail("index", e))?;
        self.flush().map_err(|e| io_fail("index", e))?;
        // The records are in the file: readers find these frames there, so
        // the ring may reuse their slots.
        pending.clear();
        self.unrecorded = pending;
        if let Some(next) = recorded {
            // Release pairs with readers' Acquire of the watermark.
            progress.persisted.store(next, Ordering::Release);
        }
        self.fdatasync(st)?;
        self.marks_durable = self.marked_to;
        if let Some(next) = recorded {
            progress.durable.store(next, Ordering::Release);
        }
        Ok(())
    }

    fn fdatasync(&mut self, st: &PersistStats) -> Result<(), String> {
        if self.sync == SyncMode::Dsync || !self.unsynced {
            return Ok(());
        }
        let started = Instant::now();
        self.file
            .sync_data()
            .map_err(|e| format!("fdatasync of the recording failed: {e}"))?;
        st.note_sync(started.elapsed().as_micros() as u64);
        self.unsynced = false;
        Ok(())
    }

    /// Mark the slots of the frames up to `next + lookahead` odd ("being
    /// written") where they hold a committed frame. Blank slots need no
    /// mark (no old record can pair with new data), nor slots already odd.
    fn extend_marks(&mut self) -> std::io::Result<()> {
        let mut end = self.next.saturating_add(self.lookahead);
        if let Some(e) = self.sequence_end {
            end = end.min(e);
        }
        self.marked_to = self.marked_to.max(self.next);
        while self.marked_to < end {
            let sequence = self.marked_to;
            let fslot = self.file_slot(sequence);
            let mut r = self.record(fslot)?;
            if r.generation != 0 && r.generation % 2 == 0 {
                self.marks.push_back(Mark {
                    sequence,
                    fslot,
                    generation: r.generation,
                });
                r.generation += 1;
                self.set_record(fslot, r)?;
            }
            self.marked_to = sequence + 1;
        }
        Ok(())
    }

    /// At a clean stop: slots marked for frames that never came get their
    /// old generation back, so the frames they hold stay valid.
    fn restore_marks(&mut self, st: &PersistStats) -> Result<(), String> {
        if self.marks.is_empty() {
            return Ok(());
        }
        while let Some(m) = self.marks.pop_front() {
            let mut r = self.record(m.fslot).map_err(|e| io_fail("index", e))?;
            r.generation = m.generation;
            self.set_record(m.fslot, r)
                .map_err(|e| io_fail("index", e))?;
        }
        self.flush().map_err(|e| io_fail("index", e))?;
        self.fdatasync(st)
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
            self.unsynced = true;
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
    let ring_slots = u32::try_from(frames.len()).unwrap_or(u32::MAX);
    let mut w = Writer::new(
        file,
        rec.header.layout,
        slot_offset,
        end,
        sync,
        frames[0].1.sequence,
        ring_slots,
    )
    .map_err(|e| io_fail("buffer", e))?;
    let (st, progress) = (PersistStats::default(), Progress::new(frames[0].1.sequence));
    for (slot, meta) in &frames {
        let used = meta.bytes_used as usize;
        let page_len = used.div_ceil(PAGE as usize) * PAGE as usize;
        let (Some(data), Some(bytes)) = (
            map.frozen_bytes(*slot, page_len),
            map.frozen_bytes(*slot, used),
        ) else {
            return Err(format!("RAM ring slot {slot} is out of range"));
        };
        w.write_data(meta, crc32c::crc32c(bytes), data, &st, &progress)?;
    }
    w.sync_point(&st, &progress)?;
    w.restore_marks(&st)?;
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

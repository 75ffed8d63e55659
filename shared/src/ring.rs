//! The single writer of the live frame store: hands out slots in ring
//! order, commits frames into them, and owns the watermarks that say how
//! far frames are published, persisted and durable.
//!
//! Key decision: claims are values that only this type creates and only
//! its `commit`/`release` end, so the capture loop, a source holding
//! several queued slots, and the persistence thread can never disagree
//! about who may write a slot. With a RAM ring (`--store direct`) a slot is
//! reclaimed only once the frame it holds is persisted: if the disk falls
//! behind by the whole ring, `claim_next` refuses and capture drops frames
//! (counted) instead of overwriting an unsaved one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::format::{FrameMeta, Header};
use crate::mapping::{ClaimedSlot, HeldSlot, Mapping};

/// How far this session's frames have got. Each field is "sequence + 1 of
/// the newest frame that reached the stage" (so `first` means none yet).
#[derive(Debug)]
pub struct Progress {
    /// The session's first sequence number.
    pub first: u64,
    /// Visible to analyzers (committed to the live store). Release by the
    /// capture thread after the commit; Acquire by readers of the slots.
    pub published: AtomicU64,
    /// Written to the recording file (for the file store, the same as
    /// published: the slot is the file). Release by the persistence thread
    /// after its write returned; Acquire by the ring before reclaiming.
    pub persisted: AtomicU64,
    /// On stable storage (after an fdatasync or an O_DSYNC write).
    pub durable: AtomicU64,
}

impl Progress {
    pub fn new(first: u64) -> Self {
        Progress {
            first,
            published: AtomicU64::new(first),
            persisted: AtomicU64::new(first),
            durable: AtomicU64::new(first),
        }
    }
}

/// What `commit` published: enough for a notification and for persistence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    pub slot: u32,
    pub generation: u64,
    pub meta: FrameMeta,
    /// CRC32C of the frame's bytes if it was computed on the way in (a
    /// copied frame), so the writer thread need not read the frame again.
    pub data_crc: Option<u32>,
}

/// Why `claim_next` gave no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimRefused {
    /// `--on-full stop` and every free slot of the recording is taken.
    Full,
    /// The next slot still holds a frame that is not yet written to the
    /// recording file (the disk is behind by the whole RAM ring).
    DiskBehind,
    /// The next slot is still claimed (a source holds more claims than the
    /// ring has slots).
    Busy,
}

/// Receives each committed frame of a RAM ring with its slot held, so the
/// slot is not reused until the receiver drops it (the `O_DIRECT` writer's
/// queue).
pub trait CommitSink: Send + Sync {
    /// Called on the capture thread right after the commit: must not block.
    fn committed(&self, c: Committed, slot: HeldSlot);
    /// Called on the capture thread once the frame's notices are sent:
    /// wake whoever persists (later than `committed`, so that on a small
    /// machine the analyzers get the CPU first).
    fn wake(&self) {}
}

/// Where this session starts and what it may use.
#[derive(Clone, Copy, Debug)]
pub struct RingStart {
    /// Sequence number of the session's first frame.
    pub next_sequence: u64,
    /// Slot of the live store the first frame goes to.
    pub next_slot: u32,
    pub session: u32,
    /// Frames this session may still record (`--on-full stop`: the free
    /// slots of the recording); `None` = unbounded (wrap).
    pub budget: Option<u64>,
}

pub struct Ring {
    map: Arc<Mapping>,
    header: Header,
    next_slot: u32,
    next_sequence: u64,
    session: u32,
    /// Claims still allowed (`None`: unbounded).
    budget: Option<u64>,
    progress: Arc<Progress>,
    /// RAM ring: committed slots go to the persistence thread, held (see
    /// `HeldSlot`) until their frame is on disk; the CRC is left to it.
    /// File store: `None`; the slot is the file and the CRC is made here.
    sink: Option<Arc<dyn CommitSink>>,
    /// Claims refused because the disk was behind.
    refused_disk_behind: u64,
}

impl Ring {
    /// A ring writing the store `map` (whose header is `header`). With a
    /// `sink`, the store is a RAM ring persisted by another thread (see
    /// `ClaimRefused::DiskBehind`).
    pub fn new(
        map: Arc<Mapping>,
        header: Header,
        start: RingStart,
        sink: Option<Arc<dyn CommitSink>>,
    ) -> Self {
        let next_slot = start.next_slot % header.layout.slot_count.max(1);
        Ring {
            map,
            header,
            next_slot,
            next_sequence: start.next_sequence,
            session: start.session,
            budget: start.budget,
            progress: Arc::new(Progress::new(start.next_sequence)),
            sink,
            refused_disk_behind: 0,
        }
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn mapping(&self) -> &Arc<Mapping> {
        &self.map
    }

    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    pub fn session(&self) -> u32 {
        self.session
    }

    /// The sequence number the next committed frame gets.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Frames of this session go to live slots in ring order: frame
    /// `sequence` lives in slot `(sequence + slot_offset) % slot_count`.
    pub fn slot_offset(&self) -> u64 {
        let n = self.header.layout.slot_count as u64;
        (self.next_slot as u64 + n - self.next_sequence % n) % n
    }

    /// No frame of this session reaches this sequence (`--on-full stop`).
    pub fn sequence_end(&self) -> Option<u64> {
        self.budget.map(|b| self.next_sequence.saturating_add(b))
    }

    /// Claims refused so far because the disk was behind.
    pub fn refused_disk_behind(&self) -> u64 {
        self.refused_disk_behind
    }

    /// Claim the next slot in ring order.
    pub fn claim_next(&mut self) -> Result<ClaimedSlot, ClaimRefused> {
        if self.budget == Some(0) {
            return Err(ClaimRefused::Full);
        }
        let slot = self.next_slot;
        // A slot is claimable only once every claim on it ended: for a RAM
        // ring that includes the writer's hold until the frame is on disk.
        let Some(claim) = self.map.claim(slot) else {
            if self.sink.is_some() {
                self.refused_disk_behind += 1;
                return Err(ClaimRefused::DiskBehind);
            }
            return Err(ClaimRefused::Busy);
        };
        self.next_slot = (slot + 1) % self.header.layout.slot_count;
        if let Some(b) = &mut self.budget {
            *b -= 1;
        }
        Ok(claim)
    }

    /// Commit a filled slot: sequence and session are assigned here, then
    /// the checksum (file store), the record, the even generation.
    pub fn commit(&mut self, slot: ClaimedSlot, meta: FrameMeta) -> Committed {
        self.commit_with(slot, meta, None)
    }

    /// `commit`, with the CRC32C of the frame's bytes already known (they
    /// were checksummed while being copied in).
    pub fn commit_with(
        &mut self,
        slot: ClaimedSlot,
        mut meta: FrameMeta,
        data_crc: Option<u32>,
    ) -> Committed {
        meta.bytes_used = meta
            .bytes_used
            .min(u32::try_from(slot.capacity()).unwrap_or(u32::MAX));
        meta.sequence = self.next_sequence;
        meta.session = self.session;
        let index = slot.slot();
        let (generation, held) = match &self.sink {
            Some(_) => {
                let (g, held) = slot.commit_held(&meta, 0);
                (g, Some(held))
            }
            None => {
                let data_crc = data_crc.unwrap_or_else(|| slot.crc32c(meta.bytes_used as usize));
                (slot.commit(&meta, meta.checksum(data_crc)), None)
            }
        };
        self.next_sequence += 1;
        let c = Committed {
            slot: index,
            generation,
            meta,
            data_crc,
        };
        // Release: a thread that sees `published` past this frame sees the
        // committed slot (the records were stored before).
        self.progress
            .published
            .store(self.next_sequence, Ordering::Release);
        if let (Some(sink), Some(held)) = (&self.sink, held) {
            sink.committed(c, held);
        }
        c
    }

    /// Wake the persistence thread for what was committed (call after the
    /// analyzers were notified; it also wakes by itself, later).
    pub fn wake_persistence(&self) {
        if let Some(sink) = &self.sink {
            sink.wake();
        }
    }

    /// Give back a claim that was never filled (capture stopped first).
    pub fn release(&mut self, slot: ClaimedSlot) {
        if let Some(b) = &mut self.budget {
            *b += 1;
        }
        slot.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{FrameFormat, Interval, Layout, OnFull, YUYV};

    /// Holds committed slots like the writer thread does, until told.
    #[derive(Default)]
    struct Hold(std::sync::Mutex<Vec<HeldSlot>>);
    impl CommitSink for Hold {
        fn committed(&self, _: Committed, slot: HeldSlot) {
            self.0.lock().unwrap().push(slot);
        }
    }

    fn ring(slots: u32, sink: Option<Arc<Hold>>) -> (tempfile::TempDir, Ring) {
        let dir = tempfile::tempdir().unwrap();
        let format = FrameFormat::uncompressed(YUYV, 128, 32).unwrap();
        let header = Header {
            format,
            interval: Interval::from_fps(30),
            layout: Layout::new(format.frame_size, slots).unwrap(),
            on_full: OnFull::Wrap,
            created_ns: 0,
            source: String::new(),
        };
        let file = tempfile::tempfile_in(dir.path()).unwrap();
        file.set_len(header.layout.file_size).unwrap();
        let map = Mapping::map_writable(&file, header.layout).unwrap();
        let start = RingStart {
            next_sequence: 0,
            next_slot: 0,
            session: 1,
            budget: None,
        };
        let sink = sink.map(|s| s as Arc<dyn CommitSink>);
        (dir, Ring::new(map, header, start, sink))
    }

    #[test]
    fn a_ram_ring_never_reclaims_an_unpersisted_slot() {
        let hold = Arc::new(Hold::default());
        let (_d, mut r) = ring(2, Some(hold.clone()));
        for _ in 0..2 {
            let c = r.claim_next().unwrap();
            r.commit(c, FrameMeta::default());
        }
        assert_eq!(r.claim_next().unwrap_err(), ClaimRefused::DiskBehind);
        // The writer is done with frame 0.
        drop(hold.0.lock().unwrap().remove(0));
        let c = r
            .claim_next()
            .expect("frame 0 is persisted: its slot is free");
        assert_eq!(c.slot(), 0);
        assert_eq!(r.claim_next().unwrap_err(), ClaimRefused::DiskBehind);
        assert_eq!(r.refused_disk_behind(), 2);
    }

    #[test]
    fn a_source_holding_every_slot_gets_busy_not_an_alias() {
        let (_d, mut r) = ring(1, None);
        let a = r.claim_next().unwrap();
        assert_eq!(r.claim_next().unwrap_err(), ClaimRefused::Busy);
        r.release(a);
        assert!(r.claim_next().is_ok());
    }

    #[test]
    fn commit_numbers_frames_and_publishes() {
        let (_d, mut r) = ring(3, None);
        for want in 0..5u64 {
            let c = r.claim_next().unwrap();
            let done = r.commit(c, FrameMeta::default());
            assert_eq!(done.meta.sequence, want);
            assert_eq!(done.meta.session, 1);
            assert_eq!(done.slot as u64, want % 3);
            assert_eq!(done.generation % 2, 0);
        }
        assert_eq!(r.progress().published.load(Ordering::Acquire), 5);
    }
}

//! The frame store: the shared memory that holds live frames, as the writer
//! and as readers see it.
//!
//! Two kinds, one shape. Either store is a region in the recording format
//! of docs/FORMAT.md (header, index records, page-aligned slots), mapped
//! `MAP_SHARED`, passed to analyzers as a read-only descriptor plus its
//! geometry, and read with the same seqlock. So the capture loop, the
//! analyzer and the recording format do not care which one is in use:
//!
//! * [`StoreKind::File`]: the recording file itself (the design documents'
//!   store). Its page-cache pages are the frames; writeback persists them.
//! * [`StoreKind::Direct`]: a small ring in a sealed memfd (shmem), which a
//!   V4L2 driver can fill through USERPTR on every kernel, persisted to the
//!   recording file with `O_DIRECT` writes from the same pages. Its pages are
//!   never write-protected, so writing them never faults, and the recording
//!   never fills the page cache. Analyzers can map it only read-only: it is
//!   sealed with `F_SEAL_FUTURE_WRITE` once capture holds its own mapping.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use thiserror::Error;

use crate::format::{Header, Layout, OnFull};
use crate::mapping::{ForeignSlot, MapError, Mapping, RecordSnapshot, SlotReadError, SlotView};
use crate::recording::{read_header, RecordingError, RecordingFile};
use crate::sys;

/// Which frame store capture writes live frames to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// The recording file's own mapping (page cache + writeback).
    File,
    /// A sealed memfd ring persisted with `O_DIRECT`.
    Direct,
}

impl StoreKind {
    pub fn name(&self) -> &'static str {
        match self {
            StoreKind::File => "file",
            StoreKind::Direct => "direct",
        }
    }
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot map the recording: {0}")]
    Map(#[from] MapError),
    #[error("cannot create the RAM ring ({what}): {error}")]
    Memfd {
        what: &'static str,
        error: std::io::Error,
    },
    #[error("RAM ring of {slots} slots: {why}")]
    Geometry { slots: u32, why: String },
    #[error("cannot open a read-only descriptor for analyzers: {0}")]
    Reopen(std::io::Error),
}

/// What setting up a RAM ring achieved (for the log: `mlock` may be refused).
#[derive(Debug, Default)]
pub struct RingSetup {
    pub bytes: u64,
    /// `MADV_POPULATE_WRITE` refused (Linux < 5.14): pages fault in on first use.
    pub populate_error: Option<std::io::Error>,
    /// `mlock` refused (RLIMIT_MEMLOCK, no CAP_IPC_LOCK): pages may be swapped.
    pub lock_error: Option<std::io::Error>,
}

/// The writer's side of the store.
pub struct FrameStore {
    kind: StoreKind,
    header: Header,
    map: Arc<Mapping>,
    /// Read-only descriptors for analyzers: the live store, then (RAM ring)
    /// the recording file.
    shared: Vec<File>,
    /// RAM ring: the memfd itself (for the service manager's fd store).
    memfd: Option<File>,
}

impl FrameStore {
    /// The recording file as the store: map it writable. `copy_by_pwrite`:
    /// frames that are copied in go through `pwrite` instead of the mapping.
    pub fn file(rec: &RecordingFile, copy_by_pwrite: bool) -> Result<Self, StoreError> {
        let map = if copy_by_pwrite {
            Mapping::map_writable_pwrite(&rec.file, rec.header.layout)?
        } else {
            Mapping::map_writable(&rec.file, rec.header.layout)?
        };
        let ro = sys::reopen(&rec.file, libc::O_RDONLY).map_err(StoreError::Reopen)?;
        Ok(FrameStore {
            kind: StoreKind::File,
            header: rec.header.clone(),
            map,
            shared: vec![ro],
            memfd: None,
        })
    }

    /// A RAM ring of `slots` frames for `rec`: a memfd in the recording
    /// format (its own header, index and slots), sized, sealed against
    /// resizing, populated and locked in memory, mapped writable by capture
    /// and then sealed against any new writable mapping.
    pub fn memfd(rec: &RecordingFile, slots: u32) -> Result<(Self, RingSetup), StoreError> {
        let mut header = rec.header.clone();
        header.layout =
            Layout::new(header.format.frame_size, slots).map_err(|e| StoreError::Geometry {
                slots,
                why: e.to_string(),
            })?;
        header.on_full = OnFull::Wrap;
        let err = |what| move |error| StoreError::Memfd { what, error };
        let f = sys::memfd("pagecam-ring").map_err(err("memfd_create"))?;
        f.set_len(header.layout.file_size)
            .map_err(err("ftruncate"))?;
        f.write_all_at(&header.encode(), 0).map_err(err("header"))?;
        sys::add_seals(&f, libc::F_SEAL_SHRINK | libc::F_SEAL_GROW)
            .map_err(err("F_SEAL_SHRINK|F_SEAL_GROW"))?;
        let map = Mapping::map_writable(&f, header.layout)?;
        let (populated, locked) = map.populate_and_lock();
        // From here on nobody can map the ring writable or write() it, not
        // even through a reopened /proc/self/fd path; capture's own mapping
        // stays writable (memfd_create(2), F_SEAL_FUTURE_WRITE). No F_SEAL_SEAL:
        // after a crash the next capture seals it F_SEAL_WRITE (granted only
        // once no writable mapping is left) before it recovers frames.
        sys::add_seals(&f, libc::F_SEAL_FUTURE_WRITE).map_err(err("F_SEAL_FUTURE_WRITE"))?;
        let ring_ro = sys::reopen(&f, libc::O_RDONLY).map_err(StoreError::Reopen)?;
        let rec_ro = sys::reopen(&rec.file, libc::O_RDONLY).map_err(StoreError::Reopen)?;
        let setup = RingSetup {
            bytes: header.layout.file_size,
            populate_error: populated.err(),
            lock_error: locked.err(),
        };
        Ok((
            FrameStore {
                kind: StoreKind::Direct,
                header,
                map,
                shared: vec![ring_ro, rec_ro],
                memfd: Some(f),
            },
            setup,
        ))
    }

    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// The live store's own header (for a RAM ring: its slot count).
    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn mapping(&self) -> &Arc<Mapping> {
        &self.map
    }

    /// Read-only descriptors to pass to each analyzer, in order.
    pub fn shared_descriptors(&self) -> &[File] {
        &self.shared
    }

    /// The RAM ring's memfd (writable descriptor, sealed).
    pub fn ring_memfd(&self) -> Option<&File> {
        self.memfd.as_ref()
    }
}

/// A live store as a reader (analyzer) maps it: read-only, seqlock reads.
pub struct LiveStore {
    header: Header,
    map: Arc<Mapping>,
}

impl LiveStore {
    /// Map a store from a descriptor capture passed (or a recording file),
    /// after checking its header and that it is as long as it says.
    pub fn map(file: &File, name: &Path) -> Result<Self, RecordingError> {
        let header = read_header(file, name)?;
        let map = Mapping::map_read_only(file, header.layout).map_err(|e| RecordingError::Io {
            path: name.to_path_buf(),
            error: std::io::Error::other(e.to_string()),
        })?;
        Ok(LiveStore { header, map })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn slot_count(&self) -> u32 {
        self.header.layout.slot_count
    }

    /// The slot's current generation (`None`: no such slot).
    pub fn generation(&self, slot: u32) -> Option<u64> {
        self.map.generation(slot)
    }

    /// A consistent snapshot of a slot's record, or `None` if it was
    /// changing (or the slot does not exist).
    pub fn snapshot(&self, slot: u32) -> Option<RecordSnapshot> {
        self.map.snapshot(slot)
    }

    /// Read frame `generation` of `slot` in place; see `Mapping::read_slot`.
    pub fn read_frame<R>(
        &self,
        slot: u32,
        generation: u64,
        bytes_used: u32,
        f: impl for<'v> FnOnce(SlotView<'v>) -> R,
    ) -> Result<R, SlotReadError> {
        self.map.read_slot(slot, generation, bytes_used as usize, f)
    }

    /// A slot's bytes as a raw pointer for foreign code (numpy): see
    /// `mapping::ForeignSlot` for the contract.
    pub fn foreign_slot(&self, slot: u32, bytes_used: u32) -> Option<ForeignSlot> {
        self.map.foreign_slot(slot, bytes_used as usize)
    }

    /// Unmap a slot from this reader's page tables, so that capture's
    /// `--drop-cache` can drop its pages from memory.
    pub fn forget(&self, slot: u32) {
        self.map.forget(slot, 1);
    }

    /// Bytes of the store resident in memory (mincore(2)).
    pub fn resident_bytes(&self) -> u64 {
        self.map.resident_bytes()
    }
}

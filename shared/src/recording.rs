//! Creating, opening, writing and checking recording files.
//!
//! A recording is created at its full size with real block allocation
//! before the first frame and never changes size afterwards: writeback then
//! only fills already-allocated blocks, so a power cut cannot lose
//! filesystem metadata, only unflushed frame pages. The writer holds an
//! exclusive `flock` for its whole session.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use crate::format::{
    generation_state, FormatError, FrameMeta, GenerationState, Header, OnFull, HEADER_SIZE,
};
use crate::shm::{ClaimedSlot, SharedMap, SlotReadError};

#[derive(Debug, Error)]
pub enum RecordingError {
    #[error("directory {0} does not exist")]
    NoDirectory(PathBuf),
    #[error("{0} already exists (pick another path, or remove it first)")]
    Exists(PathBuf),
    #[error("not enough space for {path}: needs {needed} bytes, {available} available")]
    NoSpace {
        path: PathBuf,
        needed: u64,
        available: u64,
    },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Format { path: PathBuf, source: FormatError },
    #[error("{0} is being recorded by another capture (it holds the writer lock)")]
    Locked(PathBuf),
    #[error("the filesystem of {0} cannot pre-allocate blocks (fallocate unsupported)")]
    NoFallocate(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RecordingError + '_ {
    move |source| RecordingError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Current CLOCK_MONOTONIC and CLOCK_REALTIME in nanoseconds.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}
pub fn wall_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let t = nix::time::clock_gettime(clock.into()).expect("clock_gettime on a standard clock");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

fn lock_exclusive(file: &File, path: &Path) -> Result<(), RecordingError> {
    // SAFETY: flock on a valid fd owned by `file`.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Err(RecordingError::Locked(path.to_path_buf()))
    } else {
        Err(RecordingError::Io {
            path: path.to_path_buf(),
            source: e,
        })
    }
}

/// How the recording's blocks are reserved before the first frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prealloc {
    /// `fallocate`: instant; blocks are reserved as *unwritten* extents, so
    /// the first writeback of each range converts it (a small journaled
    /// metadata change, made durable by the next `fdatasync`).
    Fallocate,
    /// Write zeros through the whole file and sync: slower to create, but
    /// afterwards writeback changes no filesystem metadata at all.
    Zero,
}

/// Create a recording file of `header.layout.file_size` bytes with every
/// block allocated, the header written and synced, and the writer lock held.
///
/// The file is built under a temporary name (`.NAME.partial`) and linked to
/// `path` only once complete and durable, so a crash or power cut during
/// creation leaves no half-made recording at `path`. On failure nothing is
/// left behind.
pub fn create(
    path: &Path,
    header: &Header,
    prealloc: Prealloc,
) -> Result<RecordingWriter, RecordingError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(RecordingError::NoDirectory(dir));
    }
    if path.exists() {
        return Err(RecordingError::Exists(path.to_path_buf()));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let partial = dir.join(format!(".{name}.partial"));
    // A partial file is what a crash during an earlier creation left; its
    // blocks must be free again before the space check.
    let _ = std::fs::remove_file(&partial);
    let size = header.layout.file_size;
    let available = nix::sys::statvfs::statvfs(&dir)
        .map(|s| s.blocks_available() * s.fragment_size())
        .map_err(|e| RecordingError::Io {
            path: dir.clone(),
            source: e.into(),
        })?;
    if available < size {
        return Err(RecordingError::NoSpace {
            path: path.to_path_buf(),
            needed: size,
            available,
        });
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&partial)
        .map_err(io_err(&partial))?;
    let result = (|| {
        lock_exclusive(&file, path)?;
        allocate(&file, path, size, available, prealloc)?;
        file.write_all_at(&header.encode(), 0)
            .map_err(io_err(path))?;
        file.sync_all().map_err(io_err(path))?;
        std::fs::hard_link(&partial, path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                RecordingError::Exists(path.to_path_buf())
            } else {
                RecordingError::Io {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        })?;
        sync_dir(&dir);
        let _ = std::fs::remove_file(&partial);
        sync_dir(&dir);
        SharedMap::map_writable(&file, header.layout).map_err(io_err(path))
    })();
    match result {
        Ok(map) => Ok(RecordingWriter::new(
            path,
            file,
            header.clone(),
            map,
            1,
            0,
            0,
        )),
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn allocate(
    file: &File,
    path: &Path,
    size: u64,
    available: u64,
    how: Prealloc,
) -> Result<(), RecordingError> {
    let no_space = || RecordingError::NoSpace {
        path: path.to_path_buf(),
        needed: size,
        available,
    };
    // SAFETY: fallocate on a valid fd; mode 0 allocates blocks and extends
    // the size; no memory is passed.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, size as libc::off_t) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EFBIG) => no_space(),
            Some(libc::EOPNOTSUPP) => RecordingError::NoFallocate(path.to_path_buf()),
            _ => RecordingError::Io {
                path: path.to_path_buf(),
                source: e,
            },
        });
    }
    if how == Prealloc::Zero {
        let zeros = vec![0u8; 1 << 20];
        let mut at = 0u64;
        while at < size {
            let n = (size - at).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..n], at)
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::ENOSPC) => no_space(),
                    _ => RecordingError::Io {
                        path: path.to_path_buf(),
                        source: e,
                    },
                })?;
            at += n as u64;
        }
    }
    Ok(())
}

/// Reopen an existing recording to continue it (`capture --resume`).
///
/// Takes the writer lock, checks the header and size, scans the index and
/// positions the writer right after the newest valid frame: sequence
/// numbers continue, the session number is one more than any found, and in
/// wrap mode the next slot written is the one after the newest frame,
/// which holds the oldest (never a newer valid frame).
pub fn resume(path: &Path) -> Result<RecordingWriter, RecordingError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    lock_exclusive(&file, path)?;
    let header = read_header(&file, path)?;
    let map = SharedMap::map_writable(&file, header.layout).map_err(io_err(path))?;
    let scan = scan_map(&map, &header);
    let n = header.layout.slot_count;
    let (next_seq, next_slot, session) = match scan.valid.last() {
        Some((slot, meta)) => {
            let session = scan.valid.iter().map(|(_, m)| m.session).max().unwrap_or(0) + 1;
            (meta.sequence + 1, (slot + 1) % n, session)
        }
        None => (0, 0, 1),
    };
    let mut w = RecordingWriter::new(path, file, header, map, session, next_seq, next_slot);
    // In stop mode only the slots after the newest frame are free; if that
    // was the last slot, the recording is full.
    if w.header.on_full == OnFull::Stop && next_slot == 0 && !scan.valid.is_empty() {
        w.claimed_slots = n as u64;
    }
    Ok(w)
}

/// Read and validate the header of an open recording, including that the
/// file is as long as the header says (so no later access can SIGBUS).
fn read_header(file: &File, path: &Path) -> Result<Header, RecordingError> {
    let len = file.metadata().map_err(io_err(path))?.len();
    let mut buf = vec![0u8; HEADER_SIZE as usize];
    let n = read_up_to(file, &mut buf).map_err(io_err(path))?;
    let fmt_err = |source| RecordingError::Format {
        path: path.to_path_buf(),
        source,
    };
    let header = Header::decode(&buf[..n]).map_err(fmt_err)?;
    if len < header.layout.file_size {
        return Err(fmt_err(FormatError::Truncated {
            expected: header.layout.file_size,
            actual: len,
        }));
    }
    Ok(header)
}

fn read_up_to(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

/// The single writer of a recording. Hands out slots in ring order and
/// commits frames into them.
pub struct RecordingWriter {
    path: PathBuf,
    file: File,
    header: Header,
    /// Shared with the housekeeping thread, which prefaults and flushes
    /// through this same mapping (page tables are per mapping).
    map: Arc<SharedMap>,
    session: u32,
    /// The slot the next claim takes (ring order).
    next_slot: u32,
    /// Slots claimed so far in ring positions (for `--on-full stop`).
    claimed_slots: u64,
    /// The sequence number of the next committed frame.
    committed: u64,
}

impl RecordingWriter {
    fn new(
        path: &Path,
        file: File,
        header: Header,
        map: SharedMap,
        session: u32,
        next_seq: u64,
        next_slot: u32,
    ) -> Self {
        let map = Arc::new(map);
        RecordingWriter {
            path: path.to_path_buf(),
            file,
            header,
            map,
            session,
            next_slot,
            claimed_slots: next_slot as u64,
            committed: next_seq,
        }
    }

    pub fn header(&self) -> &Header {
        &self.header
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn file(&self) -> &File {
        &self.file
    }
    pub fn map(&self) -> &Arc<SharedMap> {
        &self.map
    }
    pub fn session(&self) -> u32 {
        self.session
    }
    /// The sequence number of the next frame.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// With `--on-full stop`, the sequence number no frame can reach (the
    /// ring is full before it); `None` in wrap mode.
    pub fn sequence_end(&self) -> Option<u64> {
        let n = self.header.layout.slot_count as u64;
        (self.header.on_full == OnFull::Stop)
            .then(|| self.committed + n.saturating_sub(self.claimed_slots))
    }

    /// Frames of this session go to slots in ring order: frame `sequence`
    /// lives in slot `(sequence + slot_offset) % slot_count`.
    pub fn slot_offset(&self) -> u64 {
        let n = self.header.layout.slot_count as u64;
        (self.next_slot as u64 + n - self.committed % n) % n
    }

    /// Open a read-only descriptor of the recording to pass to analyzers.
    pub fn open_read_only(&self) -> Result<File, RecordingError> {
        File::open(&self.path).map_err(io_err(&self.path))
    }

    /// Claim the next slot in ring order, or `None` when the ring is full
    /// and the policy is `Stop`.
    pub fn claim_next(&mut self) -> Option<ClaimedSlot> {
        let n = self.header.layout.slot_count;
        if self.header.on_full == OnFull::Stop && self.claimed_slots >= n as u64 {
            return None;
        }
        let slot = self.next_slot;
        self.next_slot = (slot + 1) % n;
        self.claimed_slots += 1;
        Some(self.map.claim(slot))
    }

    /// Commit a filled slot: checksum, record, then the even generation.
    /// `meta.sequence` and `meta.session` are assigned here.
    pub fn commit(&mut self, slot: ClaimedSlot, mut meta: FrameMeta) -> Committed {
        meta.bytes_used = meta.bytes_used.min(slot.capacity() as u32);
        meta.sequence = self.committed;
        meta.session = self.session;
        let crc = meta.checksum(slot.crc32c(meta.bytes_used as usize));
        let index = slot.slot();
        let generation = self.map.commit(slot, &meta, crc);
        self.committed += 1;
        Committed {
            slot: index,
            generation,
            meta,
        }
    }

    /// Make everything written so far durable (data, index and size).
    pub fn sync(&self) -> Result<(), RecordingError> {
        self.map.flush_index().map_err(io_err(&self.path))?;
        self.file.sync_data().map_err(io_err(&self.path))
    }
}

/// What `commit` published: enough for a notification.
#[derive(Clone, Copy, Debug)]
pub struct Committed {
    pub slot: u32,
    pub generation: u64,
    pub meta: FrameMeta,
}

/// A read-only view of a recording (offline tools, or analyzers given a
/// descriptor over the socket).
pub struct RecordingReader {
    header: Header,
    map: SharedMap,
}

/// The state of one slot as found by a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotStatus {
    /// Never written.
    Empty,
    /// A committed frame whose checksum matches.
    Valid(FrameMeta),
    /// Claimed but never committed (odd generation): the writer stopped
    /// mid-frame. Expected for the frames in flight at a crash.
    Incomplete { generation: u64 },
    /// Committed, but data or metadata fail the checksum (torn by a power
    /// cut, or damaged): never reported as a frame.
    Corrupt { generation: u64 },
    /// The writer was changing it while we looked (live recording).
    Busy,
}

impl RecordingReader {
    pub fn open(path: &Path) -> Result<Self, RecordingError> {
        let file = File::open(path).map_err(io_err(path))?;
        Self::from_file(file, path)
    }

    /// Map a recording from an already open (read-only) descriptor.
    pub fn from_file(file: File, path: &Path) -> Result<Self, RecordingError> {
        let header = read_header(&file, path)?;
        let map = SharedMap::map_read_only(&file, header.layout).map_err(io_err(path))?;
        Ok(RecordingReader { header, map })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The slot's current generation.
    pub fn generation(&self, slot: u32) -> u64 {
        self.map.generation(slot)
    }

    /// Bytes of the recording in the page cache (mincore(2)).
    pub fn resident_bytes(&self) -> u64 {
        self.map.resident_bytes()
    }

    /// Unmap a slot from this reader's page tables, so that capture's
    /// `--drop-cache` can drop its pages from memory.
    pub fn forget(&self, slot: u32) {
        self.map.forget(slot, 1);
    }

    /// Read frame `generation` in `slot` in place; see `SharedMap::read_slot`.
    pub fn read_frame<R>(
        &self,
        slot: u32,
        generation: u64,
        bytes_used: u32,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, SlotReadError> {
        self.map.read_slot(slot, generation, bytes_used as usize, f)
    }

    /// Check one slot: record consistent, generation committed, checksum of
    /// data and metadata matching.
    pub fn check_slot(&self, slot: u32) -> SlotStatus {
        check_slot(&self.map, &self.header, slot)
    }

    /// Check every slot (what `verify` and `inspect` report).
    pub fn scan(&self) -> Scan {
        scan_map(&self.map, &self.header)
    }
}

fn check_slot(map: &SharedMap, header: &Header, slot: u32) -> SlotStatus {
    let Some(snap) = map.snapshot(slot) else {
        return SlotStatus::Busy;
    };
    let generation = snap.generation;
    match generation_state(generation) {
        GenerationState::Empty => return SlotStatus::Empty,
        GenerationState::Writing => return SlotStatus::Incomplete { generation },
        GenerationState::Committed => {}
    }
    if snap.meta.bytes_used as u64 > header.layout.slot_size {
        return SlotStatus::Corrupt { generation };
    }
    let crc = map.read_slot(slot, generation, snap.meta.bytes_used as usize, |b| {
        snap.meta.checksum(crc32c::crc32c(b))
    });
    match crc {
        Ok(c) if c == snap.crc => SlotStatus::Valid(snap.meta),
        Ok(_) => SlotStatus::Corrupt { generation },
        Err(_) => SlotStatus::Busy,
    }
}

/// Check every slot of a mapped recording.
fn scan_map(map: &SharedMap, header: &Header) -> Scan {
    let mut scan = Scan::default();
    for slot in 0..header.layout.slot_count {
        match check_slot(map, header, slot) {
            SlotStatus::Empty => scan.empty += 1,
            SlotStatus::Busy => scan.busy += 1,
            SlotStatus::Incomplete { .. } => scan.incomplete.push(slot),
            SlotStatus::Corrupt { .. } => scan.corrupt.push(slot),
            SlotStatus::Valid(m) => scan.valid.push((slot, m)),
        }
    }
    scan.valid.sort_by_key(|(_, m)| m.sequence);
    scan
}

/// The result of checking every slot.
#[derive(Debug, Default)]
pub struct Scan {
    /// Valid frames as (slot, metadata), in sequence order.
    pub valid: Vec<(u32, FrameMeta)>,
    pub incomplete: Vec<u32>,
    pub corrupt: Vec<u32>,
    pub empty: u32,
    pub busy: u32,
}

impl Scan {
    /// Frames the source dropped inside the recorded span: gaps in the
    /// source's sequence between consecutive recorded frames of one session.
    pub fn source_gaps(&self) -> u64 {
        self.valid
            .windows(2)
            .filter(|w| w[0].1.session == w[1].1.session && w[1].1.sequence == w[0].1.sequence + 1)
            .map(|w| {
                w[1].1
                    .source_sequence
                    .saturating_sub(w[0].1.source_sequence + 1)
            })
            .sum()
    }

    /// Recording sequence numbers missing between the first and last valid
    /// frame (lost to a crash, torn, or not yet written).
    pub fn missing_sequences(&self) -> u64 {
        match (self.valid.first(), self.valid.last()) {
            (Some(a), Some(b)) => (b.1.sequence - a.1.sequence + 1) - self.valid.len() as u64,
            _ => 0,
        }
    }
}

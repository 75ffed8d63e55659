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

/// Create a recording file of `header.layout.file_size` bytes with every
/// block allocated, the header written and synced, and the writer lock held.
/// On any failure no file is left behind.
pub fn create(path: &Path, header: &Header) -> Result<RecordingWriter, RecordingError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(RecordingError::NoDirectory(dir));
    }
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
        .open(path)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                RecordingError::Exists(path.to_path_buf())
            } else {
                RecordingError::Io {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        })?;
    // From here on, remove the file if anything fails.
    let result = (|| {
        lock_exclusive(&file, path)?;
        // SAFETY: fallocate on a valid fd; mode 0 allocates blocks and
        // extends the size; no memory is passed.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, size as libc::off_t) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ENOSPC) | Some(libc::EFBIG) => RecordingError::NoSpace {
                    path: path.to_path_buf(),
                    needed: size,
                    available,
                },
                Some(libc::EOPNOTSUPP) => RecordingError::NoFallocate(path.to_path_buf()),
                _ => RecordingError::Io {
                    path: path.to_path_buf(),
                    source: e,
                },
            });
        }
        file.write_all_at(&header.encode(), 0)
            .map_err(io_err(path))?;
        file.sync_all().map_err(io_err(path))?;
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all(); // make the new directory entry durable
        }
        let map = SharedMap::map_writable(&file, header.layout).map_err(io_err(path))?;
        Ok(map)
    })();
    match result {
        Ok(map) => Ok(RecordingWriter::new(path, file, header.clone(), map, 1, 0)),
        Err(e) => {
            let _ = std::fs::remove_file(path);
            Err(e)
        }
    }
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
    /// Slots claimed so far (the next claim takes `claimed % slot_count`).
    claimed: u64,
    /// Frames committed so far in the whole recording (the next sequence).
    committed: u64,
}

impl RecordingWriter {
    fn new(
        path: &Path,
        file: File,
        header: Header,
        map: SharedMap,
        session: u32,
        next: u64,
    ) -> Self {
        let map = Arc::new(map);
        RecordingWriter {
            path: path.to_path_buf(),
            file,
            header,
            map,
            session,
            claimed: next,
            committed: next,
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
    /// Frames committed so far (the sequence number of the next frame).
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// Open a read-only descriptor of the recording to pass to analyzers.
    pub fn open_read_only(&self) -> Result<File, RecordingError> {
        File::open(&self.path).map_err(io_err(&self.path))
    }

    /// Claim the next slot in ring order, or `None` when the ring is full
    /// and the policy is `Stop`.
    pub fn claim_next(&mut self) -> Option<ClaimedSlot> {
        let n = self.header.layout.slot_count as u64;
        if self.header.on_full == OnFull::Stop && self.claimed >= n {
            return None;
        }
        let slot = (self.claimed % n) as u32;
        self.claimed += 1;
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
        let Some(snap) = self.map.snapshot(slot) else {
            return SlotStatus::Busy;
        };
        match generation_state(snap.generation) {
            GenerationState::Empty => return SlotStatus::Empty,
            GenerationState::Writing => {
                return SlotStatus::Incomplete {
                    generation: snap.generation,
                }
            }
            GenerationState::Committed => {}
        }
        if snap.meta.bytes_used as u64 > self.header.layout.slot_size {
            return SlotStatus::Corrupt {
                generation: snap.generation,
            };
        }
        let crc = self
            .map
            .read_slot(slot, snap.generation, snap.meta.bytes_used as usize, |b| {
                snap.meta.checksum(crc32c::crc32c(b))
            });
        match crc {
            Ok(c) if c == snap.crc => SlotStatus::Valid(snap.meta),
            Ok(_) => SlotStatus::Corrupt {
                generation: snap.generation,
            },
            Err(_) => SlotStatus::Busy,
        }
    }

    /// Check every slot (what `verify` and `inspect` report).
    pub fn scan(&self) -> Scan {
        let mut scan = Scan::default();
        for slot in 0..self.header.layout.slot_count {
            let status = self.check_slot(slot);
            match status {
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

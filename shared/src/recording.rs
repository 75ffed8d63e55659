//! Recording files: creating them, reopening them to continue, and reading
//! and checking them offline.
//!
//! A recording is created at its full size with real block allocation
//! before the first frame and never changes size afterwards: writes then
//! only fill already-allocated blocks, so a power cut cannot lose
//! filesystem metadata, only unwritten frames. The writer holds an
//! exclusive `flock` for its whole session.
//!
//! Reading goes through positional reads (`pread`), not a mapping: offline
//! tools then work on recordings of any size on 32-bit boards, can never
//! die of SIGBUS, and a live recording is read with the same seqlock rule
//! as in memory (record, data, record again: a change means "busy").

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::format::{
    generation_state, FormatError, FrameMeta, GenerationState, Header, OnFull, Record, RecordCheck,
    HEADER_SIZE, RECORD_SIZE,
};
use crate::ring::RingStart;
use crate::sys;

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
    // (The causes are shown in the message, not chained as `source`:
    // chained, `{:#}` would print them twice.)
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("{path}: {error}")]
    Format { path: PathBuf, error: FormatError },
    #[error("{0} is being recorded by another capture (it holds the writer lock)")]
    Locked(PathBuf),
    #[error("the filesystem of {0} cannot pre-allocate blocks (fallocate unsupported)")]
    NoFallocate(PathBuf),
    #[error("{0} is not a regular file")]
    NotAFile(PathBuf),
    #[error("{path} is on a copy-on-write filesystem (btrfs) and cannot be made No_COW ({error}): pre-allocated space would not be reserved for rewrites, and a full disk would stop recording; use another filesystem, or a directory with `chattr +C`")]
    CopyOnWrite { path: PathBuf, error: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RecordingError + '_ {
    move |error| RecordingError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Current CLOCK_MONOTONIC and CLOCK_REALTIME in nanoseconds.
pub fn monotonic_ns() -> u64 {
    sys::clock_ns(libc::CLOCK_MONOTONIC)
}
pub fn wall_ns() -> u64 {
    sys::clock_ns(libc::CLOCK_REALTIME)
}

fn lock_exclusive(file: &File, path: &Path) -> Result<(), RecordingError> {
    match sys::try_lock_exclusive(file) {
        Ok(true) => Ok(()),
        Ok(false) => Err(RecordingError::Locked(path.to_path_buf())),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// How the recording's blocks are reserved before the first frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prealloc {
    /// `fallocate`: instant; blocks are reserved as *unwritten* extents, so
    /// the first write of each range converts it (a small journaled
    /// metadata change, made durable by the next `fdatasync`).
    Fallocate,
    /// Write zeros through the whole file and sync: slower to create, but
    /// afterwards writing changes no filesystem metadata at all.
    Zero,
}

/// Permissions of new recordings: owner read-write, group read (analyzers
/// run in the recording's group), nobody else.
pub const RECORDING_MODE: u32 = 0o640;

/// An open recording file for its single writer, with the lock held, and
/// where the next session's frames go.
#[derive(Debug)]
pub struct RecordingFile {
    pub path: PathBuf,
    pub file: File,
    pub header: Header,
    /// Where the session starts, in the recording's own slots.
    pub start: RingStart,
}

/// A recording built under a temporary name, not yet visible at its path.
/// `publish` links it into place; dropping it removes it.
#[derive(Debug)]
pub struct NewRecording {
    partial: PathBuf,
    dir: PathBuf,
    rec: Option<RecordingFile>,
}

impl NewRecording {
    pub fn recording(&self) -> &RecordingFile {
        self.rec.as_ref().expect("present until published")
    }

    /// Make the recording appear at its path (`link`, so an existing file
    /// is never replaced), durable, and hand it over.
    pub fn publish(mut self) -> Result<RecordingFile, RecordingError> {
        let rec = self.rec.take().expect("published once");
        std::fs::hard_link(&self.partial, &rec.path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                RecordingError::Exists(rec.path.clone())
            } else {
                io_err(&rec.path)(e)
            }
        })?;
        sync_dir(&self.dir);
        let _ = std::fs::remove_file(&self.partial);
        sync_dir(&self.dir);
        Ok(rec)
    }
}

impl Drop for NewRecording {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.partial);
    }
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Create a recording file of `header.layout.file_size` bytes with every
/// block allocated, the header written and synced, and the writer lock held,
/// under a temporary name (`.NAME.partial`) in the same directory.
///
/// Nothing appears at `path` until `NewRecording::publish`, so a crash,
/// power cut or later failure (e.g. the socket cannot be bound) leaves no
/// half-made recording at `path`.
pub fn create(
    path: &Path,
    header: &Header,
    prealloc: Prealloc,
) -> Result<NewRecording, RecordingError> {
    let dir = dir_of(path);
    if !dir.is_dir() {
        return Err(RecordingError::NoDirectory(dir));
    }
    if path.symlink_metadata().is_ok() {
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
    let available = sys::available_bytes(&dir).map_err(io_err(&dir))?;
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
        .mode(RECORDING_MODE)
        .open(&partial)
        .map_err(io_err(&partial))?;
    let mut new = NewRecording {
        partial,
        dir: dir.clone(),
        rec: None,
    };
    lock_exclusive(&file, path)?;
    // Copy-on-write filesystems write every rewrite to new blocks, so
    // pre-allocation would reserve nothing for the second lap: make the
    // file No_COW while it is still empty (btrfs honours it only then).
    if sys::filesystem_type(&dir).ok() == Some(sys::BTRFS_SUPER_MAGIC) {
        if let Err(error) = sys::set_nocow(&file) {
            return Err(RecordingError::CopyOnWrite {
                path: path.to_path_buf(),
                error,
            });
        }
    }
    allocate(&file, path, size, available, prealloc)?;
    file.write_all_at(&header.encode(), 0)
        .map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))?;
    new.rec = Some(RecordingFile {
        path: path.to_path_buf(),
        file,
        header: header.clone(),
        start: RingStart {
            next_sequence: 0,
            next_slot: 0,
            session: 1,
            budget: (header.on_full == OnFull::Stop).then_some(header.layout.slot_count as u64),
        },
    });
    Ok(new)
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
    if let Err(e) = sys::fallocate(file, 0, size) {
        return Err(match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EFBIG) => no_space(),
            Some(libc::EOPNOTSUPP) => RecordingError::NoFallocate(path.to_path_buf()),
            _ => io_err(path)(e),
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
                    _ => io_err(path)(e),
                })?;
            at += n as u64;
        }
    }
    Ok(())
}

/// Reopen an existing recording to continue it (`capture --resume`).
///
/// Takes the writer lock, checks the header and size, and positions the
/// next session right after the newest valid frame: sequence numbers
/// continue, the session number is one more than any found, and in wrap
/// mode the next slot written is the one after the newest frame, which
/// holds the oldest (never a newer valid frame).
pub fn resume(path: &Path) -> Result<RecordingFile, RecordingError> {
    let file = open_regular(path, true)?;
    lock_exclusive(&file, path)?;
    if sys::filesystem_type(&dir_of(path)).ok() == Some(sys::BTRFS_SUPER_MAGIC)
        && !sys::is_nocow(&file).unwrap_or(false)
    {
        tracing::warn!(
            "{} is on btrfs without No_COW (made by an older pagecam?): a full disk will stop \
             recording; recreate it to have it made No_COW",
            path.display()
        );
    }
    let header = read_header(&file, path)?;
    let reader = RecordingReader::from_file(file.try_clone().map_err(io_err(path))?, path)?;
    let records = reader.records().map_err(io_err(path))?;
    let n = header.layout.slot_count;
    // Any committed-looking record counts for the session number, valid or
    // not: a new session must never reuse an old one's number.
    let session = records
        .iter()
        .filter(|(_, r)| generation_state(r.generation) == GenerationState::Committed)
        .map(|(_, r)| r.meta.session)
        .max()
        .unwrap_or(0)
        .checked_add(1)
        .ok_or_else(|| RecordingError::Format {
            path: path.to_path_buf(),
            error: FormatError::Inconsistent("session numbers are exhausted".into()),
        })?;
    let newest = reader.newest_valid(&records).map_err(io_err(path))?;
    let (next_sequence, next_slot) = match newest {
        Some((slot, meta)) => {
            let next = meta
                .sequence
                .checked_add(1)
                .ok_or_else(|| RecordingError::Format {
                    path: path.to_path_buf(),
                    error: FormatError::Inconsistent("sequence numbers are exhausted".into()),
                })?;
            (next, (slot + 1) % n)
        }
        None => (0, 0),
    };
    // In stop mode only the slots after the newest frame are free; if that
    // was the last slot, the recording is full.
    let budget = (header.on_full == OnFull::Stop).then(|| match newest {
        Some(_) if next_slot == 0 => 0,
        _ => (n - next_slot) as u64,
    });
    Ok(RecordingFile {
        path: path.to_path_buf(),
        file,
        header,
        start: RingStart {
            next_sequence,
            next_slot,
            session,
            budget,
        },
    })
}

/// Open `path` as a regular file without blocking on a FIFO or a device.
fn open_regular(path: &Path, write: bool) -> Result<File, RecordingError> {
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io_err(path))?;
    let meta = file.metadata().map_err(io_err(path))?;
    let t = meta.file_type();
    if !t.is_file() || t.is_fifo() {
        return Err(RecordingError::NotAFile(path.to_path_buf()));
    }
    Ok(file)
}

/// Read and validate the header of an open recording, including that the
/// file is as long as the header says.
pub(crate) fn read_header(file: &File, path: &Path) -> Result<Header, RecordingError> {
    read_header_versioned(file, path).map(|(h, _)| h)
}

/// `read_header`, with the format version.
fn read_header_versioned(file: &File, path: &Path) -> Result<(Header, u32), RecordingError> {
    let len = file.metadata().map_err(io_err(path))?.len();
    let mut buf = vec![0u8; HEADER_SIZE as usize];
    let n = read_up_to(file, &mut buf, 0).map_err(io_err(path))?;
    let fmt_err = |error| RecordingError::Format {
        path: path.to_path_buf(),
        error,
    };
    let (header, version) = Header::decode_versioned(&buf[..n]).map_err(fmt_err)?;
    if len < header.layout.file_size {
        return Err(fmt_err(FormatError::Truncated {
            expected: header.layout.file_size,
            actual: len,
        }));
    }
    Ok((header, version))
}

fn read_up_to(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], at + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The state of one slot as found by a check.
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

/// The result of checking every slot.
#[derive(Debug, Default)]
pub struct Scan {
    /// Valid frames as (slot, metadata), in sequence order.
    pub valid: Vec<(u32, FrameMeta)>,
    pub incomplete: Vec<u32>,
    pub corrupt: Vec<u32>,
    pub empty: u32,
    /// Slots that changed while being checked (a live recording).
    pub busy: Vec<u32>,
}

impl Scan {
    /// Frames the source dropped inside the recorded span: gaps in the
    /// source's sequence between consecutive recorded frames of one session.
    pub fn source_gaps(&self) -> u64 {
        self.valid
            .windows(2)
            .filter(|w| {
                w[0].1.session == w[1].1.session
                    && w[0].1.sequence.checked_add(1) == Some(w[1].1.sequence)
            })
            .map(|w| {
                w[1].1
                    .source_sequence
                    .saturating_sub(w[0].1.source_sequence.saturating_add(1))
            })
            .fold(0u64, u64::saturating_add)
    }

    /// Recording sequence numbers missing between the first and last valid
    /// frame (lost to a crash, torn, or not yet written).
    pub fn missing_sequences(&self) -> u64 {
        match (self.valid.first(), self.valid.last()) {
            (Some(a), Some(b)) => (b.1.sequence.saturating_sub(a.1.sequence))
                .saturating_add(1)
                .saturating_sub(self.valid.len() as u64),
            _ => 0,
        }
    }
}

/// A recording opened for reading (offline tools, or the archive behind a
/// live RAM ring). Reads with `pread`; never maps the file.
pub struct RecordingReader {
    file: File,
    path: PathBuf,
    header: Header,
    /// Format version: 2 and later records carry their own checksum.
    version: u32,
}

impl RecordingReader {
    /// Open a recording by path (refuses FIFOs and devices without
    /// blocking on them).
    pub fn open(path: &Path) -> Result<Self, RecordingError> {
        let file = open_regular(path, false)?;
        Self::from_file(file, path)
    }

    /// Read a recording from an already open (read-only) descriptor.
    pub fn from_file(file: File, path: &Path) -> Result<Self, RecordingError> {
        let (header, version) = read_header_versioned(&file, path)?;
        Ok(RecordingReader {
            file,
            path: path.to_path_buf(),
            header,
            version,
        })
    }

    /// The format version the recording was created with.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// A capture is recording this file right now (it holds the writer lock).
    pub fn is_live(&self) -> bool {
        sys::writer_lock_held(&self.file)
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The index record of `slot`.
    pub fn record(&self, slot: u32) -> io::Result<Record> {
        let b = self.record_bytes(slot)?;
        Record::decode(&b).ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
    }

    fn record_bytes(&self, slot: u32) -> io::Result<[u8; RECORD_SIZE as usize]> {
        let mut b = [0u8; RECORD_SIZE as usize];
        let n = read_up_to(&self.file, &mut b, self.header.layout.record_offset(slot))?;
        if n < b.len() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(b)
    }

    /// Every index record, as (slot, record).
    pub fn records(&self) -> io::Result<Vec<(u32, Record)>> {
        let l = &self.header.layout;
        let len = usize::try_from(l.slot_count as u64 * RECORD_SIZE)
            .map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        let mut index = vec![0u8; len];
        let n = read_up_to(&self.file, &mut index, l.index_offset)?;
        Ok(index[..n]
            .chunks_exact(RECORD_SIZE as usize)
            .enumerate()
            .filter_map(|(i, b)| Some((i as u32, Record::decode(b)?)))
            .collect())
    }

    /// Read the data of `slot` (`len` bytes from its start) into `buf`.
    fn read_data(&self, slot: u32, len: usize, buf: &mut Vec<u8>) -> io::Result<()> {
        let len = len.min(self.header.layout.slot_size as usize);
        buf.resize(len, 0);
        let n = read_up_to(&self.file, buf, self.header.layout.slot_offset(slot))?;
        if n < len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    /// Check one slot and, if it is valid, leave its bytes in `buf`:
    /// record, data, record again (a change means the writer was busy on
    /// it), then the checksum of data and metadata.
    pub fn read_frame(&self, slot: u32, buf: &mut Vec<u8>) -> io::Result<SlotStatus> {
        let slot_count = self.header.layout.slot_count;
        if slot >= slot_count {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no slot {slot}: the recording has {slot_count}"),
            ));
        }
        let raw = self.record_bytes(slot)?;
        let r = Record::decode(&raw).ok_or(io::ErrorKind::UnexpectedEof)?;
        let generation = r.generation;
        if self.version >= 2 {
            // The record's own checksum first: damage to the generation
            // must not make a frame look empty or in flight.
            match Record::check(&raw) {
                RecordCheck::Blank => return Ok(SlotStatus::Empty),
                RecordCheck::InFlight => return Ok(SlotStatus::Incomplete { generation }),
                RecordCheck::Damaged => {
                    // Changing under us (a live recording), or damaged.
                    if self.record_bytes(slot)? != raw {
                        return Ok(SlotStatus::Busy);
                    }
                    return Ok(SlotStatus::Corrupt { generation });
                }
                RecordCheck::Intact if generation == 0 => {
                    return Ok(SlotStatus::Corrupt { generation })
                }
                RecordCheck::Intact => {}
            }
        }
        match generation_state(generation) {
            GenerationState::Empty => return Ok(SlotStatus::Empty),
            GenerationState::Writing => return Ok(SlotStatus::Incomplete { generation }),
            GenerationState::Committed => {}
        }
        if r.meta.bytes_used as u64 > self.header.layout.slot_size
            || raw[crate::format::record::RESERVED] != [0; 4]
        {
            return Ok(SlotStatus::Corrupt { generation });
        }
        self.read_data(slot, r.meta.bytes_used as usize, buf)?;
        if self.record(slot)? != r {
            return Ok(SlotStatus::Busy);
        }
        if r.meta.checksum(crc32c::crc32c(buf)) == r.crc {
            Ok(SlotStatus::Valid(r.meta))
        } else {
            Ok(SlotStatus::Corrupt { generation })
        }
    }

    /// The frame in `slot` and its bytes, if the slot holds a valid one.
    pub fn valid_frame(&self, slot: u32) -> io::Result<Option<(FrameMeta, Vec<u8>)>> {
        let mut buf = Vec::new();
        Ok(match self.read_frame(slot, &mut buf)? {
            SlotStatus::Valid(meta) => Some((meta, buf)),
            _ => None,
        })
    }

    /// Check one slot (what `verify` reports for it).
    pub fn check_slot(&self, slot: u32) -> io::Result<SlotStatus> {
        self.read_frame(slot, &mut Vec::new())
    }

    /// Check every slot.
    pub fn scan(&self) -> io::Result<Scan> {
        let mut scan = Scan::default();
        let mut buf = Vec::new();
        for slot in 0..self.header.layout.slot_count {
            match self.read_frame(slot, &mut buf)? {
                SlotStatus::Empty => scan.empty += 1,
                SlotStatus::Busy => scan.busy.push(slot),
                SlotStatus::Incomplete { .. } => scan.incomplete.push(slot),
                SlotStatus::Corrupt { .. } => scan.corrupt.push(slot),
                SlotStatus::Valid(m) => scan.valid.push((slot, m)),
            }
        }
        scan.valid.sort_by_key(|(_, m)| m.sequence);
        Ok(scan)
    }

    /// The newest valid frame among `records` (checked newest first, so
    /// only as many frames are read as it takes to find one).
    pub fn newest_valid(&self, records: &[(u32, Record)]) -> io::Result<Option<(u32, FrameMeta)>> {
        let mut candidates: Vec<&(u32, Record)> = records
            .iter()
            .filter(|(_, r)| generation_state(r.generation) == GenerationState::Committed)
            .collect();
        candidates.sort_by_key(|(_, r)| std::cmp::Reverse(r.meta.sequence));
        let mut buf = Vec::new();
        for (slot, _) in candidates {
            if let SlotStatus::Valid(m) = self.read_frame(*slot, &mut buf)? {
                return Ok(Some((*slot, m)));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{FrameFormat, Interval, Layout, YUYV};

    fn header(slots: u32, on_full: OnFull) -> Header {
        let format = FrameFormat::uncompressed(YUYV, 128, 32).unwrap();
        Header {
            format,
            interval: Interval::from_fps(30),
            layout: Layout::new(format.frame_size, slots).unwrap(),
            on_full,
            created_ns: 1,
            source: "test".into(),
        }
    }

    fn write_frame(f: &File, h: &Header, slot: u32, seq: u64, fill: u8) {
        let data = vec![fill; h.format.frame_size as usize];
        f.write_all_at(&data, h.layout.slot_offset(slot)).unwrap();
        let meta = FrameMeta {
            sequence: seq,
            bytes_used: h.format.frame_size,
            session: 1,
            ..Default::default()
        };
        let r = Record {
            generation: 2,
            meta,
            crc: meta.checksum(crc32c::crc32c(&data)),
        };
        f.write_all_at(&r.encode(), h.layout.record_offset(slot))
            .unwrap();
    }

    /// Regression: a failure after creation (e.g. the socket) left the
    /// full-size recording behind and a retry failed with "already exists".
    #[test]
    fn an_unpublished_recording_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.pcam");
        let new = create(&path, &header(4, OnFull::Wrap), Prealloc::Fallocate).unwrap();
        assert!(!path.exists());
        drop(new);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let rec = create(&path, &header(4, OnFull::Wrap), Prealloc::Fallocate)
            .unwrap()
            .publish()
            .unwrap();
        assert!(path.exists());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            RECORDING_MODE
        );
        drop(rec);
    }

    #[test]
    fn resume_continues_after_the_newest_valid_frame() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.pcam");
        let h = header(4, OnFull::Stop);
        let rec = create(&path, &h, Prealloc::Fallocate)
            .unwrap()
            .publish()
            .unwrap();
        write_frame(&rec.file, &h, 0, 10, 1);
        write_frame(&rec.file, &h, 1, 11, 2);
        drop(rec);
        let r = resume(&path).unwrap();
        assert_eq!(r.start.next_sequence, 12);
        assert_eq!(r.start.next_slot, 2);
        assert_eq!(r.start.session, 2);
        assert_eq!(r.start.budget, Some(2));
        // A second writer is refused while the first holds the lock.
        assert!(matches!(resume(&path), Err(RecordingError::Locked(_))));
        drop(r);
        let reader = RecordingReader::open(&path).unwrap();
        let scan = reader.scan().unwrap();
        assert_eq!(scan.valid.len(), 2);
        assert_eq!(scan.empty, 2);
        assert_eq!(scan.missing_sequences(), 0);
    }

    /// Recordings past 4 GiB work on every target, 32-bit ARM included
    /// (64-bit offsets in fallocate, statvfs, pread): a frame in a slot
    /// beyond 4 GiB is written, found valid, and resume continues after it.
    /// (scripts/test.sh runs these tests under qemu-arm too.)
    #[test]
    fn a_recording_larger_than_4_gib_works() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.pcam");
        let format = FrameFormat::uncompressed(YUYV, 1920, 1080).unwrap();
        let h = Header {
            format,
            interval: Interval::from_fps(30),
            layout: Layout::new(format.frame_size, 1300).unwrap(),
            on_full: OnFull::Stop,
            created_ns: 1,
            source: "test".into(),
        };
        assert!(h.layout.file_size > 5 << 30);
        let rec = match create(&path, &h, Prealloc::Fallocate) {
            Ok(new) => new.publish().unwrap(),
            // Not enough disk here: say so, do not pass silently.
            Err(RecordingError::NoSpace { available, .. }) => {
                panic!("this test needs 5.2 GB free in the target dir ({available} available)")
            }
            Err(e) => panic!("{e}"),
        };
        let slot = 1200;
        assert!(h.layout.slot_offset(slot) > 4 << 30);
        write_frame(&rec.file, &h, slot, 77, 9);
        drop(rec);
        let reader = RecordingReader::open(&path).unwrap();
        let (meta, bytes) = reader.valid_frame(slot).unwrap().expect("valid past 4 GiB");
        assert_eq!(meta.sequence, 77);
        assert!(bytes.iter().all(|&b| b == 9));
        drop(reader);
        let r = resume(&path).unwrap();
        assert_eq!((r.start.next_sequence, r.start.next_slot), (78, 1201));
        assert_eq!(r.start.budget, Some(99));
    }

    /// Regression: inspect/verify on a FIFO hung forever in open().
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(matches!(
            RecordingReader::open(&fifo),
            Err(RecordingError::NotAFile(_))
        ));
    }

    #[test]
    fn counts_from_hostile_records_do_not_overflow() {
        let m = |seq, src| {
            (
                0u32,
                FrameMeta {
                    sequence: seq,
                    source_sequence: src,
                    session: 1,
                    ..Default::default()
                },
            )
        };
        let scan = Scan {
            valid: vec![m(0, u64::MAX), m(u64::MAX, 0)],
            ..Default::default()
        };
        assert_eq!(scan.source_gaps(), 0);
        assert_eq!(scan.missing_sequences(), u64::MAX - 2);
    }
}

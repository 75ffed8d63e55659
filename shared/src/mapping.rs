//! The one audited module through which shared frame memory is reached.
//!
//! A frame store (the recording file, or the sealed memfd ring of
//! `--store direct`) is mapped `MAP_SHARED` by one writer (capture) and any
//! number of read-only readers (analyzers, in other processes). Slot data
//! may also be written by a V4L2 driver (USERPTR) and read by the kernel
//! for an `O_DIRECT` write. So no code outside this module sees a pointer
//! into the mapping, and no `&[u8]` into memory that someone else may be
//! writing is ever handed out:
//!
//! * the writer gets a [`ClaimedSlot`]: a unique capability over one slot
//!   (a per-slot claim flag makes a second claim impossible) that holds the
//!   mapping alive (`Arc`), so it can neither alias nor dangle;
//! * a reader gets a [`SlotView`] inside a closure, bounded by the two
//!   generation loads of the seqlock; it reads through volatile loads into
//!   memory of its own (a row or a chunk at a time), never a plain slice.
//!
//! # Ordering (a seqlock per slot)
//! Writer, per frame: `generation := odd` (Relaxed) then `fence(Release)`;
//! frame data and record fields are written; `generation := even` (Release).
//! Reader: `g1 := generation` (Acquire); read record and data;
//! `fence(Acquire)`; `g2 := generation` (Relaxed). The frame is accepted only
//! if `g1 == g2`, it is even and it is the generation the reader expected.
//! The Acquire load of `g1` pairs with the writer's Release store of the even
//! generation (the reader sees everything committed before it); the reader's
//! Acquire fence pairs with the writer's Release fence after the odd store
//! (if the reader saw any byte of a newer write, `g2` shows the odd value).
//! This is the kernel's `read_seqcount_begin/retry` pattern.
//!
//! # SIGBUS
//! Touching a page of a file mapping beyond the file's end raises SIGBUS.
//! A recording never changes size after creation; its writer holds an
//! exclusive `flock` for the whole session, and every mapper checks the
//! file's size against the header before mapping. A third party truncating
//! the file while it is mapped still kills the mapping process: the binaries
//! install a SIGBUS handler that says so in plain words (see `sigbus`). The
//! memfd ring cannot be truncated at all: it is sealed against shrinking
//! (`F_SEAL_SHRINK`), so its mappings never SIGBUS.

use std::fs::File;
use std::marker::PhantomData;
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};

use crate::format::{FrameMeta, Layout, PAGE, RECORD_SIZE};

#[cfg(target_endian = "big")]
compile_error!("the recording format is little-endian and its counters are native atomics");

/// One index record as it sits in the mapping (docs/FORMAT.md, "Index record").
///
/// Every field is an atomic because another process may read or write it
/// at any moment; plain fields would let the compiler assume they do not
/// change. Multi-field consistency comes from the generation (seqlock).
#[repr(C, align(64))]
struct RecordCell {
    generation: AtomicU64,
    sequence: AtomicU64,
    source_sequence: AtomicU64,
    timestamp_ns: AtomicU64,
    wall_ns: AtomicU64,
    bytes_used: AtomicU32,
    flags: AtomicU32,
    session: AtomicU32,
    _reserved0: AtomicU32,
    crc: AtomicU32,
    /// Format 2: CRC32C of bytes 0..60 (see `format::record_crc`).
    record_crc: AtomicU32,
}

// The cell is the record of docs/FORMAT.md, field for field: the offsets
// here and in `format::record` (which encodes records for files) are one
// definition checked against the other.
const _: () = {
    use crate::format::record;
    use std::mem::{offset_of, size_of};
    assert!(size_of::<RecordCell>() == RECORD_SIZE as usize);
    assert!(offset_of!(RecordCell, generation) == record::GENERATION);
    assert!(offset_of!(RecordCell, sequence) == record::SEQUENCE);
    assert!(offset_of!(RecordCell, source_sequence) == record::SOURCE_SEQUENCE);
    assert!(offset_of!(RecordCell, timestamp_ns) == record::TIMESTAMP_NS);
    assert!(offset_of!(RecordCell, wall_ns) == record::WALL_NS);
    assert!(offset_of!(RecordCell, bytes_used) == record::BYTES_USED);
    assert!(offset_of!(RecordCell, flags) == record::FLAGS);
    assert!(offset_of!(RecordCell, session) == record::SESSION);
    assert!(offset_of!(RecordCell, crc) == record::CRC);
    assert!(offset_of!(RecordCell, record_crc) == record::RECORD_CRC);
};

impl RecordCell {
    /// The metadata fields (Relaxed: consistency comes from the seqlock).
    fn meta(&self) -> FrameMeta {
        FrameMeta {
            sequence: self.sequence.load(Ordering::Relaxed),
            source_sequence: self.source_sequence.load(Ordering::Relaxed),
            timestamp_ns: self.timestamp_ns.load(Ordering::Relaxed),
            wall_ns: self.wall_ns.load(Ordering::Relaxed),
            bytes_used: self.bytes_used.load(Ordering::Relaxed),
            flags: self.flags.load(Ordering::Relaxed),
            session: self.session.load(Ordering::Relaxed),
        }
    }
}

/// A consistent snapshot of an index record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordSnapshot {
    pub generation: u64,
    pub meta: FrameMeta,
    pub crc: u32,
}

/// Why a slot could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotReadError {
    /// The slot now holds a different generation than the one asked for:
    /// the writer has moved on (overwritten, or being overwritten).
    Overwritten { found: u64 },
    /// The slot changed while it was being read; what was read is discarded.
    Torn,
    /// The slot number is not in this store (a bad notice).
    NoSuchSlot { slot: u32, slots: u32 },
}

/// Errors of making a mapping.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("the store is {actual} bytes, its layout needs {needed}")]
    TooShort { needed: u64, actual: u64 },
    #[error("a store of {0} bytes does not fit in this machine's address space (32-bit?)")]
    TooLarge(u64),
    #[error("mmap: {0}")]
    Io(#[from] std::io::Error),
}

/// Owner of one mapping of a frame store. Unmaps in `Drop` (memmap2).
///
/// Shared by `Arc` between the writer's claims, the housekeeping or writer
/// thread and the status line, so the memory stays mapped as long as any
/// of them (or a slot queued to a driver) can reach it.
pub struct Mapping {
    map: MmapRaw,
    layout: Layout,
    writable: bool,
    /// Writer only: whether each slot is claimed right now. Process-local
    /// (not in the shared memory): it is what makes claims unique.
    claimed: Box<[AtomicBool]>,
    /// The memory can never change again (a memfd sealed `F_SEAL_WRITE`).
    frozen: bool,
    /// Copy frames in with `pwrite` to this file (the store's own file)
    /// instead of through the mapping: a kernel copy into the page cache,
    /// which takes no page fault on a write-protected page.
    copy_by_pwrite: Option<File>,
}

// SAFETY: the mapping is plain memory; all access goes through atomics,
// through the seqlock protocol above, or through a unique `ClaimedSlot`.
unsafe impl Send for Mapping {}
// SAFETY: as for Send; `&Mapping` only allows atomic record access,
// generation-checked reads and page-table advice that changes no data.
unsafe impl Sync for Mapping {}

fn map_len(layout: &Layout) -> Result<usize, MapError> {
    usize::try_from(layout.file_size).map_err(|_| MapError::TooLarge(layout.file_size))
}

fn check_len(file: &File, layout: &Layout) -> Result<(), MapError> {
    let len = file.metadata()?.len();
    if len < layout.file_size {
        return Err(MapError::TooShort {
            needed: layout.file_size,
            actual: len,
        });
    }
    Ok(())
}

impl Mapping {
    /// Map `file` read-write and shared, for the single writer. The caller
    /// holds the writer lock (recording file) or created the store (memfd).
    pub(crate) fn map_writable(file: &File, layout: Layout) -> Result<Arc<Self>, MapError> {
        check_len(file, &layout)?;
        let map = MmapOptions::new().len(map_len(&layout)?).map_raw(file)?;
        let claimed = (0..layout.slot_count)
            .map(|_| AtomicBool::new(false))
            .collect();
        Ok(Arc::new(Mapping {
            map,
            layout,
            writable: true,
            claimed,
            frozen: false,
            copy_by_pwrite: None,
        }))
    }

    /// As `map_writable`, but frames copied in (`ClaimedSlot::copy_from`)
    /// are written with `pwrite` on `file` (the mapped file itself).
    pub(crate) fn map_writable_pwrite(file: &File, layout: Layout) -> Result<Arc<Self>, MapError> {
        let map = Self::map_writable(file, layout)?;
        let mut map = Arc::into_inner(map).expect("a new mapping has one owner");
        map.copy_by_pwrite = Some(file.try_clone()?);
        Ok(Arc::new(map))
    }

    /// Map `file` read-only and shared (the descriptor may be read-only).
    pub fn map_read_only(file: &File, layout: Layout) -> Result<Arc<Self>, MapError> {
        check_len(file, &layout)?;
        let map = MmapOptions::new()
            .len(map_len(&layout)?)
            .map_raw_read_only(file)?;
        Ok(Arc::new(Mapping {
            map,
            layout,
            writable: false,
            claimed: Box::new([]),
            frozen: false,
            copy_by_pwrite: None,
        }))
    }

    /// Map a memfd that can never change again: sealed with `F_SEAL_WRITE`
    /// (checked here), which the kernel grants only when no writable
    /// mapping of it exists anywhere, and after which none can be made
    /// (memfd_create(2)). Its bytes may then be borrowed as plain slices.
    pub(crate) fn map_frozen(file: &File, layout: Layout) -> Result<Arc<Self>, MapError> {
        let seals = crate::sys::seals(file)?;
        if seals & libc::F_SEAL_WRITE == 0 {
            return Err(MapError::Io(std::io::Error::other(
                "the memfd is not sealed against writes",
            )));
        }
        let map = Self::map_read_only(file, layout)?;
        let mut map = Arc::into_inner(map).expect("a new mapping has one owner");
        map.frozen = true;
        Ok(Arc::new(map))
    }

    /// The first `len` bytes of a slot of a frozen store (`None` otherwise).
    pub(crate) fn frozen_bytes(&self, slot: u32, len: usize) -> Option<&[u8]> {
        if !self.frozen || slot >= self.layout.slot_count {
            return None;
        }
        let len = len.min(self.slot_len());
        // Soundness: in bounds; the memory is mapped for `&self` and can no
        // longer be written by anyone (F_SEAL_WRITE, checked in map_frozen).
        // SAFETY: in bounds, mapped for `&self`, immutable by the kernel's seal.
        Some(unsafe { std::slice::from_raw_parts(self.slot_ptr(slot), len) })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn record(&self, slot: u32) -> Option<&RecordCell> {
        if slot >= self.layout.slot_count {
            return None;
        }
        let off = usize::try_from(self.layout.record_offset(slot)).ok()?;
        // Soundness: `off + 64 <= data_offset <= file_size == map.len()` by
        // the layout (checked when the header was decoded); the index offset
        // and RECORD_SIZE are multiples of 64 and the map is page-aligned, so
        // the cell is aligned. The memory stays mapped for the lifetime of
        // `&self`. Only atomics are accessed through it, which is sound with
        // concurrent access from other processes; on a read-only map only
        // loads are issued (stores happen only through claims, which a
        // read-only mapping never hands out).
        // SAFETY: in bounds, aligned, mapped for `&self`; accessed through atomics only.
        Some(unsafe { &*(self.map.as_ptr().add(off) as *const RecordCell) })
    }

    /// Address of the first byte of `slot` (callers checked `slot`).
    fn slot_ptr(&self, slot: u32) -> *mut u8 {
        debug_assert!(slot < self.layout.slot_count);
        let off = self.layout.slot_offset(slot) as usize;
        // SAFETY: `off + slot_size <= file_size == map.len()` by the layout,
        // and `map.len()` fits in usize (checked by `map_len`).
        unsafe { self.map.as_mut_ptr().add(off) }
    }

    fn slot_len(&self) -> usize {
        self.layout.slot_size as usize
    }

    /// The slot's current generation (Acquire: pairs with the commit's
    /// Release store, so what the generation announces is visible).
    /// `None` for a slot number outside the store.
    pub fn generation(&self, slot: u32) -> Option<u64> {
        Some(self.record(slot)?.generation.load(Ordering::Acquire))
    }

    /// A consistent snapshot of the record, or `None` if it changed while
    /// being read (a writer is active on the slot) or the slot does not exist.
    pub fn snapshot(&self, slot: u32) -> Option<RecordSnapshot> {
        let r = self.record(slot)?;
        let g1 = r.generation.load(Ordering::Acquire);
        let snap = RecordSnapshot {
            generation: g1,
            meta: r.meta(),
            crc: r.crc.load(Ordering::Relaxed),
        };
        // Pairs with the writer's Release fence after its odd store.
        fence(Ordering::Acquire);
        (r.generation.load(Ordering::Relaxed) == g1).then_some(snap)
    }

    /// Run `f` over the first `len` bytes of `slot`, in place, if the slot
    /// holds generation `expected` before and after. `f`'s result is
    /// returned only if nothing changed; otherwise it is discarded and the
    /// error says why. The view cannot leave `f` (it borrows for the call).
    pub fn read_slot<R>(
        &self,
        slot: u32,
        expected: u64,
        len: usize,
        f: impl for<'v> FnOnce(SlotView<'v>) -> R,
    ) -> Result<R, SlotReadError> {
        let Some(r) = self.record(slot) else {
            return Err(SlotReadError::NoSuchSlot {
                slot,
                slots: self.layout.slot_count,
            });
        };
        let g1 = r.generation.load(Ordering::Acquire);
        if g1 != expected {
            return Err(SlotReadError::Overwritten { found: g1 });
        }
        let view = SlotView {
            ptr: self.slot_ptr(slot),
            len: len.min(self.slot_len()),
            _map: PhantomData,
        };
        let out = f(view);
        fence(Ordering::Acquire);
        let g2 = r.generation.load(Ordering::Relaxed);
        if g2 == g1 {
            Ok(out)
        } else {
            Err(SlotReadError::Torn)
        }
    }

    /// Claim `slot` for writing: its generation becomes odd, so readers stop
    /// trusting its old contents before any byte of it changes. `None` if
    /// the slot is claimed already, or this is not the writer's mapping.
    ///
    /// Crate-private: only the ring (the single writer, which holds the
    /// recording's exclusive lock or created the memfd) calls it.
    pub(crate) fn claim(self: &Arc<Self>, slot: u32) -> Option<ClaimedSlot> {
        if !self.writable {
            return None;
        }
        let r = self.record(slot)?;
        // Acquire pairs with the Release in `ClaimedSlot::drop`: the
        // previous claim's writes are done before this one starts.
        if self.claimed[slot as usize]
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        let g = r.generation.load(Ordering::Relaxed);
        // An odd generation (a claim a crash left behind) moves on to the
        // next odd value, so a reader holding the old one sees a change.
        let odd = if g % 2 == 0 { g + 1 } else { g + 2 };
        r.generation.store(odd, Ordering::Relaxed);
        // Orders the odd store before every later write to the slot's data
        // or record (pairs with the reader's Acquire fence).
        fence(Ordering::Release);
        // The record's own checksum follows the generation (a crash between
        // the two leaves an odd generation whose checksum matches the
        // previous one: `RecordCheck::InFlight`).
        let crc = r.crc.load(Ordering::Relaxed);
        r.record_crc.store(
            crate::format::record_crc(odd, &r.meta(), crc),
            Ordering::Relaxed,
        );
        Some(ClaimedSlot {
            map: self.clone(),
            slot,
            generation: odd,
            previous: g,
            touched: false,
            handed_on: false,
        })
    }

    /// Ask the kernel to fault in writable page-table entries for slots
    /// `[first, first + count)` (`MADV_POPULATE_WRITE`, Linux 5.14+), so the
    /// capture thread does not take a fault per page. Contents are not
    /// changed. Returns the error if the kernel refused.
    pub(crate) fn populate_write(&self, first: u32, count: u32) -> std::io::Result<()> {
        let (ptr, len) = self.range(first, count);
        if !self.writable || len == 0 {
            return Ok(());
        }
        // SAFETY: the range is inside the mapping. MADV_POPULATE_WRITE only
        // populates page tables "as if writing to each page" without changing
        // data (madvise(2)); it never invalidates memory Rust references.
        let rc = unsafe { libc::madvise(ptr.cast(), len, libc::MADV_POPULATE_WRITE) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Populate and lock the whole mapping in memory (the memfd ring: its
    /// pages must be resident before a driver or an `O_DIRECT` write uses
    /// them). Returns (populated, locked) errors separately: locking is
    /// refused without privilege beyond `RLIMIT_MEMLOCK`.
    pub(crate) fn populate_and_lock(&self) -> (std::io::Result<()>, std::io::Result<()>) {
        let populated = self
            .populate_write(0, self.layout.slot_count)
            .and_then(|()| {
                // The header and index pages too.
                let head = self.layout.data_offset as usize;
                // SAFETY: `[0, data_offset)` is inside the mapping; as above,
                // populating changes no data.
                let rc = unsafe {
                    libc::madvise(
                        self.map.as_mut_ptr().cast(),
                        head,
                        libc::MADV_POPULATE_WRITE,
                    )
                };
                if rc == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        // SAFETY: mlock(2) on the whole mapping, which stays mapped for
        // `&self`; it changes residency, never contents.
        let rc = unsafe { libc::mlock(self.map.as_ptr().cast(), self.map.len()) };
        let locked = if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        };
        (populated, locked)
    }

    /// Drop slots `[first, first + count)` from memory: unmap them from this
    /// mapping's page tables, then drop the (clean) pages from the page
    /// cache of `file`. Call only for slots already written back.
    pub(crate) fn drop_cached(&self, file: &File, first: u32, count: u32) {
        let (ptr, len) = self.range(first, count);
        let (off, _) = self.file_range(first, count);
        // Soundness: the range is inside the mapping. For a MAP_SHARED file
        // mapping, MADV_DONTNEED only zaps page-table entries: the data stays
        // in the page cache (dirty state is carried over), and a later access
        // faults the same page back in (madvise(2)). So no byte anyone wrote
        // is lost, even if a writer is active on the range. posix_fadvise
        // takes no memory.
        // SAFETY: in-bounds range; MADV_DONTNEED on a shared file map loses no data.
        unsafe {
            libc::madvise(ptr.cast(), len, libc::MADV_DONTNEED);
        }
        let _ = crate::sys::fadvise_dontneed(file, off, len as u64);
    }

    /// Unmap slots from this mapping's page tables only (the page cache
    /// keeps them): a reader's part of dropping frames from memory.
    pub fn forget(&self, first: u32, count: u32) {
        let (ptr, len) = self.range(first, count);
        // Soundness: the range is inside the mapping; for a MAP_SHARED
        // mapping MADV_DONTNEED only zaps page-table entries, the data stays
        // in the page cache (or shmem) and the next access faults it back
        // (madvise(2)). No reference into the range is live: readers only
        // reach slot bytes inside `read_slot`, through volatile loads.
        // SAFETY: in-bounds range; MADV_DONTNEED on a shared map loses no data.
        unsafe {
            libc::madvise(ptr.cast(), len, libc::MADV_DONTNEED);
        }
    }

    /// Start address and length of the mapping (to find it in /proc/self/smaps).
    pub fn address_range(&self) -> (usize, usize) {
        (self.map.as_ptr() as usize, self.map.len())
    }

    /// Resident bytes of the mapping (pages in memory), via mincore(2).
    pub fn resident_bytes(&self) -> u64 {
        let len = self.map.len();
        let mut vec = vec![0u8; len.div_ceil(PAGE as usize)];
        // SAFETY: the whole mapping is valid; `vec` has one byte per page as
        // mincore(2) requires (page size 4096, checked by `page_size_ok`).
        let rc = unsafe { libc::mincore(self.map.as_mut_ptr().cast(), len, vec.as_mut_ptr()) };
        if rc != 0 {
            return 0;
        }
        vec.iter().filter(|b| *b & 1 == 1).count() as u64 * PAGE
    }

    /// Byte range `(offset, len)` of slots `[first, first+count)` in the store.
    pub fn file_range(&self, first: u32, count: u32) -> (u64, u64) {
        let first = first.min(self.layout.slot_count);
        let count = count.min(self.layout.slot_count - first);
        (
            self.layout.slot_offset(first),
            count as u64 * self.layout.slot_size,
        )
    }

    fn range(&self, first: u32, count: u32) -> (*mut u8, usize) {
        let (off, len) = self.file_range(first, count);
        // SAFETY: `file_range` keeps `off + len <= file_size == map.len()`.
        (
            unsafe { self.map.as_mut_ptr().add(off as usize) },
            len as usize,
        )
    }
}

/// The page size must be the format's `PAGE` (4096): slots are aligned to
/// it for USERPTR and `O_DIRECT`. Boards with 16 KiB or 64 KiB pages
/// (some arm64 kernels) would need a larger slot alignment.
pub fn page_size_ok() -> bool {
    // SAFETY: sysconf has no memory arguments.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) == PAGE as libc::c_long }
}

/// A read-only view of a slot's bytes during one seqlock read.
///
/// Another process (capture) or a driver may write these bytes at any time;
/// the seqlock check after the read decides whether what was read counts.
/// So the bytes are only ever read with volatile loads into memory of the
/// caller's own (`copy_to`, `chunks`): no `&[u8]` over them exists, and
/// the compiler cannot assume they stay the same between two reads.
pub struct SlotView<'v> {
    ptr: *const u8,
    len: usize,
    _map: PhantomData<&'v Mapping>,
}

impl SlotView<'_> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copy bytes `[offset, offset + dst.len())` of the view into `dst`
    /// (cut at the end of the view). Returns the bytes copied.
    pub fn copy_to(&self, offset: usize, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.len.saturating_sub(offset));
        if n == 0 {
            return 0;
        }
        // SAFETY: `[offset, offset + n)` lies inside the view, which lies
        // inside the mapping, mapped for 'v; `dst` is our own memory and
        // cannot overlap a shared mapping slot we only read.
        unsafe { volatile_copy(self.ptr.add(offset), dst.as_mut_ptr(), n) };
        n
    }

    /// Visit the view in chunks of at most `buf.len()` bytes, each copied
    /// into `buf` first (keep `buf` small enough to stay in L1/L2: the copy
    /// then costs little beside the read from memory it replaces).
    pub fn chunks(&self, buf: &mut [u8], mut f: impl FnMut(usize, &[u8])) {
        let mut at = 0;
        while at < self.len && !buf.is_empty() {
            let n = self.copy_to(at, buf);
            f(at, &buf[..n]);
            at += n;
        }
    }

    /// CRC32C of the view's bytes.
    pub fn crc32c(&self) -> u32 {
        let mut buf = [0u8; 16 * 1024];
        let mut crc = 0;
        self.chunks(&mut buf, |_, c| crc = crc32c::crc32c_append(crc, c));
        crc
    }
}

/// Copy `n` bytes from shared memory that may change under us, with
/// volatile loads (8 bytes at a time where aligned).
///
/// # Safety
/// `src..src+n` must be mapped and readable; `dst..dst+n` must be writable
/// memory of this process that nothing else accesses during the call.
unsafe fn volatile_copy(src: *const u8, dst: *mut u8, n: usize) {
    let mut i = 0;
    // SAFETY (whole body): every access is within `[0, n)` of the ranges
    // the caller vouched for; unaligned head/tail bytes are read one by one.
    unsafe {
        while i < n && !(src as usize + i).is_multiple_of(8) {
            *dst.add(i) = std::ptr::read_volatile(src.add(i));
            i += 1;
        }
        while i + 8 <= n {
            let w = std::ptr::read_volatile(src.add(i) as *const u64);
            std::ptr::write_unaligned(dst.add(i) as *mut u64, w);
            i += 8;
        }
        while i < n {
            *dst.add(i) = std::ptr::read_volatile(src.add(i));
            i += 1;
        }
    }
}

/// A slot claimed by the writer: generation odd, contents undefined until
/// committed. Not `Clone`: exactly one claim per slot exists (the claim
/// flag in the writer's mapping), and it keeps the mapping alive (`Arc`).
///
/// Dropping a claim without `commit`/`release` leaves the generation odd,
/// which is the truth: the slot's bytes are unknown.
pub struct ClaimedSlot {
    map: Arc<Mapping>,
    slot: u32,
    generation: u64,
    /// Generation before the claim, restored if the claim is released unused.
    previous: u64,
    /// Whether the slot's bytes were handed to anyone (CPU or driver).
    touched: bool,
    /// The claim flag passed on to a `HeldSlot`: leave it set on drop.
    handed_on: bool,
}

impl std::fmt::Debug for ClaimedSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedSlot")
            .field("slot", &self.slot)
            .field("generation", &self.generation)
            .finish()
    }
}

impl ClaimedSlot {
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// Capacity of the slot (page-aligned, at least the frame size).
    pub fn capacity(&self) -> usize {
        self.map.slot_len()
    }

    /// The one CPU copy of the MMAP path: copy `src` into the slot, and
    /// compute the CRC32C of what was copied on the way (each chunk is
    /// checksummed while it is in cache, so the slot is never read back).
    /// Returns (bytes copied, their CRC32C); `src` is cut to the capacity.
    /// Fails only on a `pwrite` error (file store with `--copy-into pwrite`).
    pub fn copy_from(&mut self, src: &[u8]) -> std::io::Result<(usize, u32)> {
        const CHUNK: usize = 64 * 1024;
        let n = src.len().min(self.capacity());
        let src = &src[..n];
        if let Some(file) = &self.map.copy_by_pwrite {
            use std::os::unix::fs::FileExt;
            self.touched = true;
            let crc = crc32c::crc32c(src);
            // Ordered after the odd generation: the claim's Release fence
            // precedes this syscall, which changes the bytes readers see.
            file.write_all_at(src, self.map.layout.slot_offset(self.slot))?;
            return Ok((n, crc));
        }
        Ok(self.fill_with(|dst| {
            let mut crc = 0;
            for (d, s) in dst[..n].chunks_mut(CHUNK).zip(src.chunks(CHUNK)) {
                d.copy_from_slice(s);
                crc = crc32c::crc32c_append(crc, s);
            }
            (n, crc)
        }))
    }

    /// Let `f` fill the slot in place (the built-in source renders straight
    /// into it, as a driver does through USERPTR).
    pub fn fill_with<R>(&mut self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        self.touched = true;
        let len = self.capacity();
        // Soundness: exclusive for the duration of `f`: this claim is the
        // slot's only one (claim flag), its generation is odd so readers in
        // other processes discard whatever they see, and it is not queued to
        // a driver (queuing consumes the claim, see `into_queued`). Readers
        // elsewhere only read; nothing in this process reads the slot while
        // `f` holds the slice.
        // SAFETY: in bounds of the mapping (kept alive by `self.map`) and exclusively ours.
        f(unsafe { std::slice::from_raw_parts_mut(self.map.slot_ptr(self.slot), len) })
    }

    /// CRC32C of the first `len` bytes (after the frame is complete).
    pub fn crc32c(&self, len: usize) -> u32 {
        let n = len.min(self.capacity());
        // Soundness: in bounds; nothing writes the slot while the claim is
        // held and not queued (the driver, if any, returned it).
        // SAFETY: in bounds; no writer is active on a claimed, unqueued slot.
        crc32c::crc32c(unsafe { std::slice::from_raw_parts(self.map.slot_ptr(self.slot), n) })
    }

    /// Hand the slot to a driver (V4L2 USERPTR). The claim becomes a
    /// `QueuedSlot`, which allows no CPU access until the driver is done.
    pub fn into_queued(mut self) -> QueuedSlot {
        self.touched = true;
        QueuedSlot { claim: self }
    }

    /// Publish: record fields, then the even generation with Release, so a
    /// reader that sees the new generation sees the frame. Returns it.
    pub(crate) fn commit(mut self, meta: &FrameMeta, crc: u32) -> u64 {
        self.publish(meta, crc)
    }

    fn publish(&mut self, meta: &FrameMeta, crc: u32) -> u64 {
        let Some(r) = self.map.record(self.slot) else {
            unreachable!("a claim exists only for a slot of its mapping")
        };
        r.sequence.store(meta.sequence, Ordering::Relaxed);
        r.source_sequence
            .store(meta.source_sequence, Ordering::Relaxed);
        r.timestamp_ns.store(meta.timestamp_ns, Ordering::Relaxed);
        r.wall_ns.store(meta.wall_ns, Ordering::Relaxed);
        r.bytes_used.store(meta.bytes_used, Ordering::Relaxed);
        r.flags.store(meta.flags, Ordering::Relaxed);
        r.session.store(meta.session, Ordering::Relaxed);
        r.crc.store(crc, Ordering::Relaxed);
        let even = self.generation + 1;
        // The checksum of the committed record goes first, the generation
        // last: caught in between, the record reads as in flight.
        r.record_crc.store(
            crate::format::record_crc(even, meta, crc),
            Ordering::Relaxed,
        );
        r.generation.store(even, Ordering::Release);
        even
    }

    /// Give back a claim that was never filled. If no byte of the slot was
    /// handed out, its previous generation is restored (Release), so the
    /// frame it held stays valid. Otherwise the odd generation stays.
    pub(crate) fn release(self) {
        if !self.touched && self.previous.is_multiple_of(2) {
            if let Some(r) = self.map.record(self.slot) {
                let crc = r.crc.load(Ordering::Relaxed);
                r.record_crc.store(
                    crate::format::record_crc(self.previous, &r.meta(), crc),
                    Ordering::Relaxed,
                );
                r.generation.store(self.previous, Ordering::Release);
            }
        }
    }
}

impl Drop for ClaimedSlot {
    fn drop(&mut self) {
        if !self.handed_on {
            // Release pairs with the Acquire in `Mapping::claim`.
            self.map.claimed[self.slot as usize].store(false, Ordering::Release);
        }
    }
}

/// A claimed slot that a driver may be writing. No CPU access to its bytes.
#[derive(Debug)]
pub struct QueuedSlot {
    claim: ClaimedSlot,
}

impl QueuedSlot {
    pub fn slot(&self) -> u32 {
        self.claim.slot
    }
    /// Address of the slot for `v4l2_buffer.m.userptr`.
    pub fn user_ptr(&self) -> usize {
        self.claim.map.slot_ptr(self.claim.slot) as usize
    }
    pub fn len(&self) -> usize {
        self.claim.capacity()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Take the slot back from the driver.
    ///
    /// # Safety
    /// The driver must no longer write the buffer: it was dequeued
    /// (`VIDIOC_DQBUF` returned it) or streaming was turned off.
    pub unsafe fn into_claimed(self) -> ClaimedSlot {
        self.claim
    }
}

/// A slot's bytes for code outside Rust's type system (a numpy array in
/// the Python package): a raw pointer into a **read-only** mapping, which
/// stays mapped as long as this value lives (it holds the mapping's `Arc`).
///
/// Contract for whoever dereferences the pointer: the bytes may change at
/// any moment (capture reuses the slot; a driver writes it); what was read
/// counts only if the slot's generation is still the announced one after
/// the use (`Mapping::generation`), exactly as `read_slot` checks. The
/// memory is mapped `PROT_READ`: writing through the pointer faults. No
/// `&[u8]` is made from it in Rust.
pub struct ForeignSlot {
    map: Arc<Mapping>,
    slot: u32,
    len: usize,
}

impl ForeignSlot {
    /// Start of the slot's bytes (see the type's contract).
    pub fn as_ptr(&self) -> *const u8 {
        self.map.slot_ptr(self.slot)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The mapping's current generation of the slot.
    pub fn generation(&self) -> Option<u64> {
        self.map.generation(self.slot)
    }
}

impl Mapping {
    /// A `ForeignSlot` for the first `len` bytes of `slot` of a read-only
    /// mapping (`None` for the writer's mapping or a slot out of range).
    pub fn foreign_slot(self: &Arc<Self>, slot: u32, len: usize) -> Option<ForeignSlot> {
        if self.writable || slot >= self.layout.slot_count {
            return None;
        }
        Some(ForeignSlot {
            map: self.clone(),
            slot,
            len: len.min(self.slot_len()),
        })
    }
}

/// A committed frame whose slot stays reserved: the claim flag stays set,
/// so the ring cannot claim the slot again until this is dropped. The RAM
/// ring's writer thread holds one per frame until the frame is on disk.
///
/// Nobody writes a held slot: the ring cannot claim it, no driver has it
/// (queuing needs a claim), and other processes map the store read-only
/// (the memfd is sealed against writes). So its bytes may be borrowed as a
/// plain slice.
pub struct HeldSlot {
    map: Arc<Mapping>,
    slot: u32,
    len: usize,
}

impl HeldSlot {
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The frame's bytes (`bytes_used`, cut to the slot).
    pub fn bytes(&self) -> &[u8] {
        // Soundness: in bounds of the mapping (kept alive by `self.map`);
        // no writer exists while `self` holds the claim flag (type docs).
        // SAFETY: in bounds; the held claim flag rules out every writer.
        unsafe { std::slice::from_raw_parts(self.map.slot_ptr(self.slot), self.len) }
    }

    /// The frame's bytes rounded up to whole pages (for `O_DIRECT`, whose
    /// buffers and lengths must be block-aligned), cut to the slot.
    pub fn page_bytes(&self) -> &[u8] {
        let len = (self.len.div_ceil(PAGE as usize) * PAGE as usize).min(self.map.slot_len());
        // SAFETY: as in `bytes`; `len` is cut to the slot.
        unsafe { std::slice::from_raw_parts(self.map.slot_ptr(self.slot), len) }
    }
}

impl Drop for HeldSlot {
    fn drop(&mut self) {
        // Release pairs with the Acquire in `Mapping::claim`: whatever read
        // the slot (the O_DIRECT write) is done before it is claimed again.
        self.map.claimed[self.slot as usize].store(false, Ordering::Release);
    }
}

impl ClaimedSlot {
    /// Commit, but keep the slot reserved for whoever persists it.
    pub(crate) fn commit_held(mut self, meta: &FrameMeta, crc: u32) -> (u64, HeldSlot) {
        let held = HeldSlot {
            map: self.map.clone(),
            slot: self.slot,
            len: (meta.bytes_used as usize).min(self.capacity()),
        };
        let generation = self.publish(meta, crc);
        // The claim flag passes to `held`: do not clear it on our drop.
        self.handed_on = true;
        (generation, held)
    }
}

/// Print a plain message and exit when a mapped file was truncated under
/// us (SIGBUS), instead of dying with "Bus error".
pub mod sigbus {
    const MSG: &[u8] = b"pagecam: SIGBUS: a mapped recording was truncated, or its storage failed (disk full on a copy-on-write filesystem?); stopping\n";

    extern "C" fn on_sigbus(_: libc::c_int) {
        // SAFETY: write(2) and _exit(2) are async-signal-safe; MSG is static.
        unsafe {
            libc::write(2, MSG.as_ptr().cast(), MSG.len());
            libc::_exit(crate::EXIT_STORAGE);
        }
    }

    /// Install the handler (process-wide; idempotent).
    pub fn install() {
        // SAFETY: installs a handler that only calls async-signal-safe
        // functions; `sa` is fully initialised before use.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigbus as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{FrameFormat, Header, Interval, OnFull, YUYV};

    fn store(slots: u32) -> (tempfile::TempDir, File, Layout) {
        let dir = tempfile::tempdir().unwrap();
        let format = FrameFormat::uncompressed(YUYV, 128, 32).unwrap();
        let layout = Layout::new(format.frame_size, slots).unwrap();
        let header = Header {
            format,
            interval: Interval::from_fps(30),
            layout,
            on_full: OnFull::Wrap,
            created_ns: 0,
            source: String::new(),
        };
        let path = dir.path().join("m.pcam");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        file.set_len(layout.file_size).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &header.encode(), 0).unwrap();
        (dir, file, layout)
    }

    /// Regression: `claim` was a safe `&self` method, so two claims of one
    /// slot gave two aliasing `&mut [u8]`.
    #[test]
    fn a_slot_cannot_be_claimed_twice() {
        let (_d, file, layout) = store(2);
        let map = Mapping::map_writable(&file, layout).unwrap();
        let a = map.claim(0).expect("first claim");
        assert!(map.claim(0).is_none(), "second claim of a claimed slot");
        let b = map.claim(1).expect("another slot");
        drop(a);
        assert!(map.claim(0).is_some(), "claimable again once dropped");
        drop(b);
    }

    /// Regression: a claim was a raw pointer with no lifetime; one that
    /// outlived its writer wrote to unmapped memory. Now it keeps the
    /// mapping alive.
    #[test]
    fn a_claim_keeps_its_mapping_alive() {
        let (_d, file, layout) = store(1);
        let map = Mapping::map_writable(&file, layout).unwrap();
        let mut claim = map.claim(0).unwrap();
        drop(map);
        claim.fill_with(|b| b.fill(7));
        assert_eq!(claim.crc32c(4), crc32c::crc32c(&[7, 7, 7, 7]));
    }

    #[test]
    fn read_only_mappings_hand_out_no_claims() {
        let (_d, file, layout) = store(1);
        let map = Mapping::map_read_only(&file, layout).unwrap();
        assert!(map.claim(0).is_none());
    }

    #[test]
    fn seqlock_read_sees_committed_frames_and_rejects_changed_ones() {
        let (_d, file, layout) = store(1);
        let writer = Mapping::map_writable(&file, layout).unwrap();
        let reader = Mapping::map_read_only(&file, layout).unwrap();
        let mut c = writer.claim(0).unwrap();
        c.fill_with(|b| b[..4].copy_from_slice(b"abcd"));
        let g = c.commit(
            &FrameMeta {
                bytes_used: 4,
                ..Default::default()
            },
            0,
        );
        let got = reader.read_slot(0, g, 4, |v| {
            let mut b = [0u8; 4];
            v.copy_to(0, &mut b);
            b
        });
        assert_eq!(got, Ok(*b"abcd"));
        // A reader that started on generation g and saw the slot reclaimed
        // during its read gets Torn, never the bytes.
        let torn = reader.read_slot(0, g, 4, |_| {
            let c2 = writer.claim(0).unwrap();
            drop(c2);
        });
        assert_eq!(torn, Err(SlotReadError::Torn));
        assert!(matches!(
            reader.read_slot(0, g, 4, |_| ()),
            Err(SlotReadError::Overwritten { .. })
        ));
        assert_eq!(
            reader.read_slot(5, g, 4, |_| ()),
            Err(SlotReadError::NoSuchSlot { slot: 5, slots: 1 })
        );
    }

    #[test]
    fn volatile_copy_handles_every_alignment() {
        let src: Vec<u8> = (0..100u8).collect();
        for start in 0..9 {
            for n in [0usize, 1, 7, 8, 9, 31, 64, 91 - start] {
                let mut dst = vec![0u8; n];
                // SAFETY: both ranges are in bounds of their vectors.
                unsafe { volatile_copy(src.as_ptr().add(start), dst.as_mut_ptr(), n) };
                assert_eq!(dst, &src[start..start + n]);
            }
        }
    }
}

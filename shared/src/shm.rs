//! The one audited module through which mapped recording memory is reached.
//!
//! A recording file is mapped `MAP_SHARED` by one writer (capture) and any
//! number of read-only readers (analyzers, in other processes). The frame
//! data may additionally be written by a V4L2 driver (USERPTR). So no code
//! outside this module sees a pointer into the mapping, and no `&[u8]` into
//! it outlives the two generation checks that make it meaningful.
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
//! The recording never changes size after creation; writers hold an
//! exclusive `flock` for the whole session, and every mapper checks the
//! file's size against the header before mapping. A third party truncating
//! the file while it is mapped still kills the mapping process: the binaries
//! install a SIGBUS handler that says so in plain words (see `sigbus`).

use std::fs::File;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use crate::format::{Layout, RECORD_SIZE};

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
    _reserved1: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<RecordCell>() == RECORD_SIZE as usize);

/// A consistent snapshot of an index record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordSnapshot {
    pub generation: u64,
    pub meta: crate::format::FrameMeta,
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
}

/// Owner of one mapping of a recording file. Unmaps in `Drop` (memmap2).
pub struct SharedMap {
    map: MmapRaw,
    layout: Layout,
    writable: bool,
}

// SAFETY: the mapping is plain memory; all access goes through atomics or
// through the seqlock protocol above, which is designed for concurrent use.
unsafe impl Send for SharedMap {}
// SAFETY: as for Send; `&SharedMap` only allows atomic record access and
// generation-checked reads; writes need `&mut` or a `ClaimedSlot`.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Map `file` read-write and shared. The caller has checked that the
    /// file is at least `layout.file_size` long and holds the writer lock.
    pub fn map_writable(file: &File, layout: Layout) -> std::io::Result<Self> {
        Self::check_len(file, &layout)?;
        let map = MmapOptions::new()
            .len(layout.file_size as usize)
            .map_raw(file)?;
        Ok(SharedMap {
            map,
            layout,
            writable: true,
        })
    }

    /// Map `file` read-only and shared (the file may be opened read-only).
    pub fn map_read_only(file: &File, layout: Layout) -> std::io::Result<Self> {
        Self::check_len(file, &layout)?;
        let map = MmapOptions::new()
            .len(layout.file_size as usize)
            .map_raw_read_only(file)?;
        Ok(SharedMap {
            map,
            layout,
            writable: false,
        })
    }

    /// Refuse to map past the end of the file: those pages would SIGBUS.
    fn check_len(file: &File, layout: &Layout) -> std::io::Result<()> {
        let len = file.metadata()?.len();
        if len < layout.file_size {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "file is {len} bytes, the recording needs {}",
                    layout.file_size
                ),
            ));
        }
        Ok(())
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn record(&self, slot: u32) -> &RecordCell {
        assert!(slot < self.layout.slot_count, "slot {slot} out of range");
        let off = self.layout.record_offset(slot) as usize;
        // Soundness: `off + 64 <= data_offset <= file_size == map.len()` by the
        // layout; the index offset and RECORD_SIZE are multiples of 64 and the
        // map is page-aligned, so the cell is aligned. The memory stays mapped
        // for the lifetime of `&self`. Only atomics are accessed through it,
        // which is sound with concurrent access from other processes; on a
        // read-only map only loads are issued (writer methods check `writable`).
        // SAFETY: in bounds, aligned, mapped for `&self`; accessed through atomics only.
        unsafe { &*(self.map.as_ptr().add(off) as *const RecordCell) }
    }

    fn slot_ptr(&self, slot: u32) -> NonNull<u8> {
        assert!(slot < self.layout.slot_count, "slot {slot} out of range");
        let off = self.layout.slot_offset(slot) as usize;
        // SAFETY: `off + slot_size <= file_size == map.len()` by the layout,
        // so the pointer is in bounds of the mapping and non-null.
        unsafe { NonNull::new_unchecked(self.map.as_mut_ptr().add(off)) }
    }

    /// The slot's current generation (Acquire: pairs with the commit's
    /// Release store, so what the generation announces is visible).
    pub fn generation(&self, slot: u32) -> u64 {
        self.record(slot).generation.load(Ordering::Acquire)
    }

    /// A consistent snapshot of the record, or `None` if it changed while
    /// being read (a writer is active on the slot).
    pub fn snapshot(&self, slot: u32) -> Option<RecordSnapshot> {
        let r = self.record(slot);
        let g1 = r.generation.load(Ordering::Acquire);
        let snap = RecordSnapshot {
            generation: g1,
            meta: crate::format::FrameMeta {
                sequence: r.sequence.load(Ordering::Relaxed),
                source_sequence: r.source_sequence.load(Ordering::Relaxed),
                timestamp_ns: r.timestamp_ns.load(Ordering::Relaxed),
                wall_ns: r.wall_ns.load(Ordering::Relaxed),
                bytes_used: r.bytes_used.load(Ordering::Relaxed),
                flags: r.flags.load(Ordering::Relaxed),
                session: r.session.load(Ordering::Relaxed),
            },
            crc: r.crc.load(Ordering::Relaxed),
        };
        // Pairs with the writer's Release fence after its odd store.
        fence(Ordering::Acquire);
        (r.generation.load(Ordering::Relaxed) == g1).then_some(snap)
    }

    /// Run `f` over the first `len` bytes of `slot` in place, if the slot
    /// holds generation `expected` before and after. `f`'s result is returned
    /// only if nothing changed; otherwise it is discarded and the error says
    /// why. `f` must not keep the slice (the borrow ends with the call).
    pub fn read_slot<R>(
        &self,
        slot: u32,
        expected: u64,
        len: usize,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, SlotReadError> {
        let r = self.record(slot);
        let g1 = r.generation.load(Ordering::Acquire);
        if g1 != expected {
            return Err(SlotReadError::Overwritten { found: g1 });
        }
        let len = len.min(self.layout.slot_size as usize);
        // Soundness: the range lies inside the mapping (slot_ptr + len <=
        // slot_size). The slice lives only inside this call, between the two
        // generation loads. The only writers of this range are capture and,
        // through capture, a V4L2 driver; capture makes the generation odd
        // (Relaxed store + Release fence) before it or the driver may touch
        // the slot again. If that happened during `f`, `g2 != g1` below and
        // `f`'s result is thrown away, so torn bytes never reach the caller
        // as a valid frame. `f` may observe bytes changing under it; it only
        // computes over them (it cannot rely on them for memory safety).
        // SAFETY: in bounds; the slice dies with `f`, and any write during it is caught by g2 != g1.
        let out = f(unsafe { std::slice::from_raw_parts(self.slot_ptr(slot).as_ptr(), len) });
        fence(Ordering::Acquire);
        let g2 = r.generation.load(Ordering::Relaxed);
        if g2 == g1 {
            Ok(out)
        } else {
            Err(SlotReadError::Torn)
        }
    }

    /// Claim `slot` for writing: its generation becomes odd, so readers stop
    /// trusting its old contents before any byte of it changes.
    ///
    /// Only the single writer (capture, holding the recording's exclusive
    /// lock) calls this, and it never claims a slot twice at once; `&mut
    /// self`-free so a source can hold several claims (queued USERPTR buffers).
    pub fn claim(&self, slot: u32) -> ClaimedSlot {
        assert!(self.writable, "claim on a read-only mapping");
        let r = self.record(slot);
        let g = r.generation.load(Ordering::Relaxed);
        let odd = if g % 2 == 0 { g + 1 } else { g + 2 };
        r.generation.store(odd, Ordering::Relaxed);
        // Orders the odd store before every later write to the slot's data
        // or record (pairs with the reader's Acquire fence).
        fence(Ordering::Release);
        ClaimedSlot {
            slot,
            generation: odd,
            previous: g,
            touched: false,
            ptr: self.slot_ptr(slot),
            len: self.layout.slot_size as usize,
        }
    }

    /// Publish a claimed slot: record fields, then the even generation with
    /// Release, so a reader that sees the new generation sees the frame.
    /// Returns the committed generation.
    pub fn commit(&self, claimed: ClaimedSlot, meta: &crate::format::FrameMeta, crc: u32) -> u64 {
        let r = self.record(claimed.slot);
        r.sequence.store(meta.sequence, Ordering::Relaxed);
        r.source_sequence
            .store(meta.source_sequence, Ordering::Relaxed);
        r.timestamp_ns.store(meta.timestamp_ns, Ordering::Relaxed);
        r.wall_ns.store(meta.wall_ns, Ordering::Relaxed);
        r.bytes_used.store(meta.bytes_used, Ordering::Relaxed);
        r.flags.store(meta.flags, Ordering::Relaxed);
        r.session.store(meta.session, Ordering::Relaxed);
        r.crc.store(crc, Ordering::Relaxed);
        let even = claimed.generation + 1;
        r.generation.store(even, Ordering::Release);
        even
    }

    /// Give back a claim that was never filled (capture stopped first).
    /// If no byte of the slot was handed out, its previous generation is
    /// restored (Release), so the frame it held stays valid. Otherwise the
    /// odd generation stays, which is the truth: its bytes are unknown.
    pub fn release(&self, claimed: ClaimedSlot) {
        if !claimed.touched && claimed.previous % 2 == 0 {
            self.record(claimed.slot)
                .generation
                .store(claimed.previous, Ordering::Release);
        }
    }

    /// Ask the kernel to fault in writable page-table entries for slots
    /// `[first, first + count)` ahead of the writer (`MADV_POPULATE_WRITE`,
    /// Linux 5.14+), so the capture thread does not take a fault per page.
    /// Contents are not changed. Returns false if the kernel lacks it.
    pub fn populate_write(&self, first: u32, count: u32) -> bool {
        let (ptr, len) = self.range(first, count);
        // SAFETY: the range is inside the mapping. MADV_POPULATE_WRITE only
        // populates page tables "as if writing to each page" without changing
        // data (madvise(2)); it never invalidates memory Rust references.
        let rc = unsafe { libc::madvise(ptr as *mut libc::c_void, len, libc::MADV_POPULATE_WRITE) };
        rc == 0
    }

    /// Drop slots `[first, first + count)` from memory: unmap them from this
    /// mapping's page tables, then drop the (clean) pages from the page cache.
    /// Call only for slots already written back, or the dirty pages stay.
    pub fn drop_cached(&self, file: &File, first: u32, count: u32) {
        use std::os::fd::AsRawFd;
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
            libc::madvise(ptr as *mut libc::c_void, len, libc::MADV_DONTNEED);
            libc::posix_fadvise(
                file.as_raw_fd(),
                off as i64,
                len as i64,
                libc::POSIX_FADV_DONTNEED,
            );
        }
    }

    /// Start address and length of the mapping (to find it in /proc/self/smaps).
    pub fn address_range(&self) -> (usize, usize) {
        (self.map.as_ptr() as usize, self.map.len())
    }

    /// Unmap slots from this mapping's page tables only (the page cache
    /// keeps them): a reader's part of dropping frames from memory.
    pub fn forget(&self, first: u32, count: u32) {
        let (ptr, len) = self.range(first, count);
        // Soundness: the range is inside the mapping; for a MAP_SHARED file
        // mapping MADV_DONTNEED only zaps page-table entries, the data stays
        // in the page cache and the next access faults it back (madvise(2)).
        // No reference into the range is live: readers hold slices only
        // inside `read_slot`.
        // SAFETY: in-bounds range; MADV_DONTNEED on a shared file map loses no data.
        unsafe {
            libc::madvise(ptr as *mut libc::c_void, len, libc::MADV_DONTNEED);
        }
    }

    /// Resident bytes of the mapping (pages in memory), via mincore(2).
    pub fn resident_bytes(&self) -> u64 {
        let len = self.map.len();
        let mut vec = vec![0u8; len.div_ceil(4096)];
        // SAFETY: the whole mapping is valid; `vec` has one byte per page as
        // mincore(2) requires (page size 4096, checked by the layout's PAGE).
        let rc = unsafe {
            libc::mincore(
                self.map.as_mut_ptr() as *mut libc::c_void,
                len,
                vec.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return 0;
        }
        vec.iter().filter(|b| *b & 1 == 1).count() as u64 * 4096
    }

    /// Byte range of slots `[first, first+count)` in the file.
    pub fn file_range(&self, first: u32, count: u32) -> (u64, u64) {
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

    /// Make the index records visible on disk order-wise (msync of the
    /// index region); used at shutdown.
    pub fn flush_index(&self) -> std::io::Result<()> {
        let l = self.layout;
        self.map.flush_range(
            l.index_offset as usize,
            (l.data_offset - l.index_offset) as usize,
        )
    }
}

/// A slot claimed by the writer: generation odd, contents undefined until
/// committed. Not `Clone`: exactly one claim per slot exists.
#[derive(Debug)]
pub struct ClaimedSlot {
    slot: u32,
    generation: u64,
    /// Generation before the claim, restored if the claim is released unused.
    previous: u64,
    /// Whether the slot's bytes were handed to anyone (CPU or driver).
    touched: bool,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a claim is a unique capability over its slot's bytes; moving it
// to another thread moves that capability.
unsafe impl Send for ClaimedSlot {}

impl ClaimedSlot {
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// Capacity of the slot (page-aligned, at least the frame size).
    pub fn capacity(&self) -> usize {
        self.len
    }

    /// The one CPU copy of the MMAP path: copy `src` into the slot.
    /// Returns the bytes copied (`src` is cut to the slot's capacity).
    pub fn copy_from(&mut self, src: &[u8]) -> usize {
        let n = src.len().min(self.len);
        self.touched = true;
        // Soundness: `n <= len` keeps the write inside the slot; `src` is
        // process-private memory, so the ranges cannot overlap. No one else
        // writes the slot: this claim is unique and the slot is not queued to
        // a driver (queuing consumes the claim, see `into_queued`).
        // SAFETY: in bounds, non-overlapping, and this claim is the slot's only writer.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr(), n) };
        n
    }

    /// Let `f` fill the slot in place (the built-in source renders straight
    /// into it, as a driver does through USERPTR).
    pub fn fill_with<R>(&mut self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        self.touched = true;
        // SAFETY: exclusive for the duration of `f`: this claim is unique, the
        // generation is odd so readers discard whatever they see, and the slot
        // is not queued to a driver. Readers in other processes only read.
        f(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) })
    }

    /// CRC32C of the first `len` bytes (after the frame is complete).
    pub fn crc32c(&self, len: usize) -> u32 {
        let n = len.min(self.len);
        // SAFETY: in bounds; no writer is active on the slot (the claim is
        // ours and, if it was queued to a driver, `from_queued` guaranteed
        // the driver is done with it).
        crc32c::crc32c(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), n) })
    }

    /// Hand the slot to a driver (V4L2 USERPTR): returns the address and
    /// length to queue. The claim becomes a `QueuedSlot`, which allows no
    /// CPU access until the driver has returned it.
    pub fn into_queued(mut self) -> QueuedSlot {
        self.touched = true;
        QueuedSlot { claim: self }
    }
}

/// A claimed slot that a driver may be writing. No access to its bytes.
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
        self.claim.ptr.as_ptr() as usize
    }
    pub fn len(&self) -> usize {
        self.claim.len
    }
    pub fn is_empty(&self) -> bool {
        self.claim.len == 0
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

/// Print a plain message and exit when a mapped file was truncated under
/// us (SIGBUS), instead of dying with "Bus error".
pub mod sigbus {
    const MSG: &[u8] = b"pagecam: SIGBUS: the recording file was truncated or its storage failed while mapped; stopping\n";

    extern "C" fn on_sigbus(_: libc::c_int) {
        // SAFETY: write(2) and _exit(2) are async-signal-safe; MSG is static.
        unsafe {
            libc::write(2, MSG.as_ptr() as *const libc::c_void, MSG.len());
            libc::_exit(crate::EXIT_STORAGE);
        }
    }

    /// Install the handler (process-wide; idempotent).
    pub fn install() {
        // SAFETY: installs a handler that only calls async-signal-safe
        // functions; `sa` is fully initialised before use.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigbus as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
        }
    }
}

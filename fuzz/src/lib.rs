//! What the fuzz targets share: reading fuzz bytes, a plausible recording
//! (or live store) made from a few of them, a memfd to hold it, and an
//! independent reading of docs/FORMAT.md to check the library's verdicts
//! against.
//!
//! Key choice: a fuzzer that mutates a 4096-byte header guarded by a
//! checksum rarely gets past the checksum, so the targets that read whole
//! recordings take a small [`Shape`] ([`SHAPE_LEN`] bytes: pixel format,
//! size, slot count, a few switches) and build a valid header from it with
//! the library's own `Header::encode`. The rest of the input is the index
//! and the frame data, taken as they are, with optional fix-ups that make a
//! record's checksums match, so valid frames are common. Switches still let
//! the fuzzer damage the header (one byte, with or without a recomputed
//! checksum), make it version 1, or cut the file short.
//!
//! Everything goes through pagecam's public API; the expected verdicts
//! ([`Recording::expected`]) are computed from the bytes with this file's
//! own little-endian readers and CRC32C calls, not with the library's
//! decoders, so a wrong offset or a skipped check in the library shows up
//! as a disagreement.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use pagecam::format::{
    fourcc, FormatError, FrameFormat, FrameMeta, Header, Interval, Layout, OnFull, HEADER_SIZE,
    RECORD_SIZE,
};
use pagecam::recording::SlotStatus;

/// Reads fuzz bytes front to back; past the end everything reads as zero,
/// so every input is usable.
pub struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Bytes(b)
    }

    /// Up to `n` bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }

    /// `N` bytes, zero-padded at the end.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let t = self.take(N);
        out[..t.len()].copy_from_slice(t);
        out
    }

    pub fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.0.len())
    }
}

/// Little-endian field readers of this crate's own (not the library's).
pub fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
pub fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Switches of [`Shape::flags`].
pub mod flags {
    /// Write the header as format version 1 (records without checksum).
    pub const V1: u8 = 1 << 0;
    /// On full: wrap (else stop).
    pub const WRAP: u8 = 1 << 1;
    /// Cut the file `1 + truncate` bytes short of its layout.
    pub const TRUNCATE: u8 = 1 << 2;
    /// Overwrite header byte `poke_at % 4096` with `poke`...
    pub const POKE: u8 = 1 << 3;
    /// ...then recompute the header checksum (tests the layout and
    /// geometry checks behind it).
    pub const POKE_RECRC: u8 = 1 << 4;
    /// Known formats: up to 4097 padding bytes per line (the limit is
    /// 4096); other formats: bytes per line near `u32::MAX`.
    pub const WIDE_BPL: u8 = 1 << 5;
    /// A frame size below what the geometry needs (must be refused).
    pub const UNDERSIZE: u8 = 1 << 6;
}

/// (bytes per pixel of the first plane, total bytes per pixel x 2).
pub type PixelSizes = (u64, u64);

/// The pixel formats a shape picks from (`pixfmt % 8`; 7 = `raw_fourcc`),
/// with (bytes per pixel of the first plane, total bytes per pixel x 2)
/// as docs/FORMAT.md gives them for the formats pagecam checks.
pub const PIXFMTS: [(&[u8; 4], Option<PixelSizes>); 7] = [
    (b"YUYV", Some((2, 4))),
    (b"UYVY", Some((2, 4))),
    (b"GREY", Some((1, 2))),
    (b"NV12", Some((1, 3))),
    (b"YU12", Some((1, 3))),
    (b"RGB3", Some((3, 6))),
    (b"MJPG", None),
];

/// The few bytes a recording's header is made from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    pub flags: u8,
    /// Slot count = 1 + `slots % 16`.
    pub slots: u8,
    pub pixfmt: u8,
    pub raw_fourcc: u32,
    /// Width = 1 + `width`.
    pub width: u8,
    /// Height = 1 + `height % 16` (small frames: fast runs; the header
    /// target fuzzes geometry at every size).
    pub height: u8,
    pub bpl_extra: u16,
    pub frame_extra: u16,
    /// 0: 1/30 s, 1: 0/0, 2: 1/0 (refused), 3: 1001/30000, n: n/1000.
    pub interval: u8,
    pub created_ns: u64,
    pub poke_at: u16,
    pub poke: u8,
    pub truncate: u16,
    /// Slot `i` (mod 16): recompute the frame checksum (record bytes 56..60)
    /// over its data and metadata.
    pub fix_frame: u16,
    /// Slot `i` (mod 16): recompute the record checksum (bytes 60..64),
    /// after `fix_frame`.
    pub fix_record: u16,
}

/// Bytes a [`Shape`] takes at the start of an input.
pub const SHAPE_LEN: usize = 31;

impl Shape {
    pub fn read(b: &mut Bytes) -> Shape {
        Shape {
            flags: b.u8(),
            slots: b.u8(),
            pixfmt: b.u8(),
            raw_fourcc: b.u32(),
            width: b.u8(),
            height: b.u8(),
            bpl_extra: b.u16(),
            frame_extra: b.u16(),
            interval: b.u8(),
            created_ns: b.u64(),
            poke_at: b.u16(),
            poke: b.u8(),
            truncate: b.u16(),
            fix_frame: b.u16(),
            fix_record: b.u16(),
        }
    }

    /// The bytes `read` reads this shape from (for seeds).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = vec![self.flags, self.slots, self.pixfmt];
        v.extend(self.raw_fourcc.to_le_bytes());
        v.extend([self.width, self.height]);
        v.extend(self.bpl_extra.to_le_bytes());
        v.extend(self.frame_extra.to_le_bytes());
        v.push(self.interval);
        v.extend(self.created_ns.to_le_bytes());
        v.extend(self.poke_at.to_le_bytes());
        v.push(self.poke);
        v.extend(self.truncate.to_le_bytes());
        v.extend(self.fix_frame.to_le_bytes());
        v.extend(self.fix_record.to_le_bytes());
        debug_assert_eq!(v.len(), SHAPE_LEN);
        v
    }

    /// The header this shape stands for (before any damage), or `None`
    /// when its frame size makes no layout.
    pub fn header(&self) -> Option<Header> {
        let w = 1 + self.width as u32;
        let h = 1 + (self.height % 16) as u32;
        let (code, known) = match PIXFMTS.get((self.pixfmt % 8) as usize) {
            Some((code, known)) => (fourcc(code), *known),
            None => (self.raw_fourcc, None),
        };
        let wide = self.flags & flags::WIDE_BPL != 0;
        let under = self.flags & flags::UNDERSIZE != 0;
        let (bpl, frame_size) = match known {
            Some((bpp, total2)) => {
                let extra = if wide {
                    self.bpl_extra as u64 % 4098
                } else {
                    self.bpl_extra as u64 % 8
                };
                let bpl = w as u64 * bpp + extra;
                let least = bpl * h as u64 * total2 / (2 * bpp);
                let size = if under {
                    least.saturating_sub(1 + self.frame_extra as u64 % 64)
                } else {
                    least + self.frame_extra as u64 % 4097
                };
                (bpl as u32, size as u32)
            }
            None => {
                let bpl = if wide {
                    u32::MAX - self.bpl_extra as u32
                } else {
                    self.bpl_extra as u32
                };
                let size = if under {
                    0
                } else {
                    1 + self.frame_extra as u32
                };
                (bpl, size)
            }
        };
        let (numerator, denominator) = match self.interval {
            0 => (1, 30),
            1 => (0, 0),
            2 => (1, 0),
            3 => (1001, 30000),
            n => (n as u32, 1000),
        };
        let layout = Layout::new(frame_size, 1 + (self.slots % 16) as u32).ok()?;
        Some(Header {
            format: FrameFormat {
                fourcc: code,
                width: w,
                height: h,
                bytes_per_line: bpl,
                frame_size,
            },
            interval: Interval {
                numerator,
                denominator,
            },
            layout,
            on_full: if self.flags & flags::WRAP != 0 {
                OnFull::Wrap
            } else {
                OnFull::Stop
            },
            created_ns: self.created_ns,
            source: "pagecam fuzz".into(),
        })
    }
}

/// Recompute a header's checksum (bytes 4092..4096) after an edit.
pub fn fix_header_crc(b: &mut [u8; HEADER_SIZE as usize]) {
    let crc = crc32c::crc32c(&b[..4092]);
    b[4092..].copy_from_slice(&crc.to_le_bytes());
}

/// The frame checksum of docs/FORMAT.md: CRC32C of the frame's bytes
/// (here their CRC32C, `data_crc`), continued over record bytes 8..56.
pub fn frame_crc(record: &[u8; 64], data_crc: u32) -> u32 {
    crc32c::crc32c_append(data_crc, &record[8..56])
}

/// A recording (or live store) as bytes: what the fuzz input made.
pub struct Recording<'a> {
    /// The header as the shape describes it (before damage).
    pub header: Header,
    /// The header as written (version 1, damaged, as the switches say).
    pub header_bytes: [u8; HEADER_SIZE as usize],
    /// Length of the file (short of the layout if cut).
    pub file_len: u64,
    /// One record per slot.
    pub index: Vec<[u8; 64]>,
    /// Each slot's data as given (the rest of the slot is zero), at most a
    /// slot long.
    pub data: Vec<&'a [u8]>,
}

/// What docs/FORMAT.md ("Checking a recording") says a slot is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Empty,
    Valid(FrameMeta),
    Incomplete,
    Corrupt,
}

impl Verdict {
    /// Whether the library's status says the same.
    pub fn agrees(&self, s: &SlotStatus) -> bool {
        match (self, s) {
            (Verdict::Empty, SlotStatus::Empty) => true,
            (Verdict::Valid(a), SlotStatus::Valid(b)) => a == b,
            (Verdict::Incomplete, SlotStatus::Incomplete { .. }) => true,
            (Verdict::Corrupt, SlotStatus::Corrupt { .. }) => true,
            _ => false,
        }
    }
}

impl<'a> Recording<'a> {
    /// Build from a shape and the bytes after it: `slot_count` records of
    /// 64 bytes, then the frame data, split evenly between the slots.
    pub fn build(shape: Shape, b: &mut Bytes<'a>) -> Option<Self> {
        let header = shape.header()?;
        let l = header.layout;
        let mut hb = header.encode();
        if shape.flags & flags::V1 != 0 {
            hb[8..12].copy_from_slice(&1u32.to_le_bytes());
            fix_header_crc(&mut hb);
        }
        if shape.flags & flags::POKE != 0 {
            hb[(shape.poke_at % 4096) as usize] = shape.poke;
            if shape.flags & flags::POKE_RECRC != 0 {
                fix_header_crc(&mut hb);
            }
        }
        let file_len = if shape.flags & flags::TRUNCATE != 0 {
            l.file_size.saturating_sub(1 + shape.truncate as u64)
        } else {
            l.file_size
        };
        let n = l.slot_count as usize;
        let mut index: Vec<[u8; 64]> = (0..n).map(|_| b.array()).collect();
        let rest = b.rest();
        let chunk = rest.len().div_ceil(n).max(1);
        let data: Vec<&[u8]> = (0..n)
            .map(|i| {
                let at = (i * chunk).min(rest.len());
                let d = &rest[at..(at + chunk).min(rest.len())];
                &d[..d.len().min(l.slot_size as usize)]
            })
            .collect();
        let mut rec = Recording {
            header,
            header_bytes: hb,
            file_len,
            index: Vec::new(),
            data,
        };
        for (i, r) in index.iter_mut().enumerate() {
            let bit = 1u16 << (i % 16);
            if shape.fix_frame & bit != 0 {
                let used = (le32(r, 40) as u64).min(l.slot_size) as usize;
                let crc = frame_crc(r, rec.slot_crc(i as u32, used));
                r[56..60].copy_from_slice(&crc.to_le_bytes());
            }
            if shape.fix_record & bit != 0 {
                let crc = crc32c::crc32c(&r[..60]);
                r[60..64].copy_from_slice(&crc.to_le_bytes());
            }
        }
        rec.index = index;
        Some(rec)
    }

    /// CRC32C of the first `len` bytes of `slot` as they are in the file
    /// (its data, then zeros), without building them.
    pub fn slot_crc(&self, slot: u32, len: usize) -> u32 {
        static ZEROS: [u8; 4096] = [0; 4096];
        let d = self.data[slot as usize];
        let n = d.len().min(len);
        let mut crc = crc32c::crc32c(&d[..n]);
        let mut left = len - n;
        while left > 0 {
            let k = left.min(ZEROS.len());
            crc = crc32c::crc32c_append(crc, &ZEROS[..k]);
            left -= k;
        }
        crc
    }

    /// Whether `bytes` are the bytes of `slot` from offset `at` on.
    pub fn slot_has(&self, slot: u32, at: usize, bytes: &[u8]) -> bool {
        let d = self.data[slot as usize];
        bytes
            .iter()
            .enumerate()
            .all(|(i, b)| *b == d.get(at + i).copied().unwrap_or(0))
    }

    pub fn layout(&self) -> Layout {
        self.header.layout
    }

    /// The header as the library decodes the bytes written.
    pub fn decoded(&self) -> Result<(Header, u32), FormatError> {
        Header::decode_versioned(&self.header_bytes)
    }

    /// Whether a reader must accept the file: the header decodes and the
    /// file is as long as it says.
    pub fn readable(&self) -> bool {
        matches!(self.decoded(), Ok((h, _)) if self.file_len >= h.layout.file_size)
    }

    /// Write the recording into `f` (emptied first; `f` ends up exactly
    /// `file_len` bytes long).
    pub fn write_to(&self, f: &File) -> std::io::Result<()> {
        f.set_len(0)?;
        f.set_len(self.file_len)?;
        let l = self.layout();
        let put = |b: &[u8], at: u64| -> std::io::Result<()> {
            let n = self.file_len.saturating_sub(at).min(b.len() as u64) as usize;
            if n > 0 {
                f.write_all_at(&b[..n], at)?;
            }
            Ok(())
        };
        put(&self.header_bytes, 0)?;
        for (i, r) in self.index.iter().enumerate() {
            put(r, l.record_offset(i as u32))?;
        }
        for (i, d) in self.data.iter().enumerate() {
            put(d, l.slot_offset(i as u32))?;
        }
        Ok(())
    }

    /// What `verify` must say about `slot` of a recording of format
    /// `version` (docs/FORMAT.md, "Index record" and "Checking a
    /// recording"), worked out from the bytes alone.
    pub fn expected(&self, slot: u32, version: u32) -> Verdict {
        let r = &self.index[slot as usize];
        let g = le64(r, 0);
        if version >= 2 {
            if r.iter().all(|&b| b == 0) {
                return Verdict::Empty;
            }
            if r[52..56] != [0; 4] {
                // Reserved bytes: zero in every record a writer makes.
                return Verdict::Corrupt;
            }
            let stored = le32(r, 60);
            if crc32c::crc32c(&r[..60]) != stored {
                // In flight: an odd generation whose checksum is that of
                // the same record with generation g-1, g-2 or g+1.
                let mut raw = [0u8; 60];
                raw.copy_from_slice(&r[..60]);
                let in_flight = g % 2 == 1
                    && [g.checked_sub(1), g.checked_sub(2), g.checked_add(1)]
                        .into_iter()
                        .flatten()
                        .any(|n| {
                            raw[..8].copy_from_slice(&n.to_le_bytes());
                            crc32c::crc32c(&raw) == stored
                        });
                return if in_flight {
                    Verdict::Incomplete
                } else {
                    Verdict::Corrupt
                };
            }
            if g == 0 {
                // Intact but not blank, generation 0: no writer makes it.
                return Verdict::Corrupt;
            }
        }
        if g == 0 {
            return Verdict::Empty;
        }
        if g % 2 == 1 {
            return Verdict::Incomplete;
        }
        let used = le32(r, 40) as u64;
        if used > self.layout().slot_size || r[52..56] != [0; 4] {
            return Verdict::Corrupt;
        }
        if frame_crc(r, self.slot_crc(slot, used as usize)) != le32(r, 56) {
            return Verdict::Corrupt;
        }
        Verdict::Valid(meta_of(r))
    }

    /// Every slot's verdict.
    pub fn verdicts(&self, version: u32) -> Vec<Verdict> {
        (0..self.layout().slot_count)
            .map(|s| self.expected(s, version))
            .collect()
    }
}

/// A record's metadata, read with this crate's own offsets.
pub fn meta_of(r: &[u8; 64]) -> FrameMeta {
    FrameMeta {
        sequence: le64(r, 8),
        source_sequence: le64(r, 16),
        timestamp_ns: le64(r, 24),
        wall_ns: le64(r, 32),
        bytes_used: le32(r, 40),
        flags: le32(r, 44),
        session: le32(r, 48),
    }
}

/// One memfd per fuzzing process, reused for every input, and a path that
/// opens it (`/proc/self/fd/N`) for the APIs that take a path.
pub fn scratch() -> &'static (File, PathBuf) {
    static SCRATCH: OnceLock<(File, PathBuf)> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let f = pagecam::sys::memfd("pagecam-fuzz").expect("memfd_create");
        let path = PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
        (f, path)
    })
}

/// `RECORD_SIZE` as a usize, for slicing.
pub const RECORD: usize = RECORD_SIZE as usize;


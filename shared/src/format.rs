//! The recording file's on-disk format: header, index records, layout.
//!
//! Pure encoding and decoding, no I/O and no `unsafe`: `docs/FORMAT.md` is the
//! normative description and every offset below is named there. All integers
//! are little-endian. The header is written once, before the first frame,
//! and never changes afterwards, so a crash can never leave it half-written.

use thiserror::Error;

/// First eight bytes of every recording.
pub const MAGIC: [u8; 8] = *b"PAGECAM\0";
/// Format version this build writes. Version 2 adds the record checksum
/// (index record bytes 60..64); this build also reads version 1.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest version this build reads.
pub const OLDEST_READABLE_VERSION: u32 = 1;
/// Size of the header region; the index starts right after it.
pub const HEADER_SIZE: u64 = 4096;
/// Size of one index record (one cache line).
pub const RECORD_SIZE: u64 = 64;
/// Slots and the data region are aligned to this (the page size on every
/// board we target); V4L2 USERPTR buffers must start on a page boundary.
pub const PAGE: u64 = 4096;
/// Longest source description stored in the header, in bytes.
pub const SOURCE_DESC_LEN: usize = 128;

/// Index record offsets (see FORMAT.md, "Index record").
pub mod record {
    pub const GENERATION: usize = 0;
    pub const SEQUENCE: usize = 8;
    pub const SOURCE_SEQUENCE: usize = 16;
    pub const TIMESTAMP_NS: usize = 24;
    pub const WALL_NS: usize = 32;
    pub const BYTES_USED: usize = 40;
    pub const FLAGS: usize = 44;
    pub const SESSION: usize = 48;
    /// Reserved, written as zero; readers call a record with anything
    /// else here damaged (the frame checksum covers these bytes as zeros).
    pub const RESERVED: core::ops::Range<usize> = 52..56;
    pub const CRC: usize = 56;
    /// Format 2: CRC32C of record bytes `0..RECORD_CRC` (generation,
    /// metadata and frame CRC), so damage to any of them is detected.
    pub const RECORD_CRC: usize = 60;
    /// Metadata covered by the frame CRC: bytes `SEQUENCE..CRC`.
    pub const META: core::ops::Range<usize> = SEQUENCE..CRC;
}

/// Frame flag: the source marked this frame as damaged
/// (V4L2 `V4L2_BUF_FLAG_ERROR`). Its data is stored as delivered.
pub const FLAG_ERROR: u32 = 1 << 0;

/// Build a V4L2 fourcc code from its four characters.
pub const fn fourcc(code: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*code)
}

/// Render a fourcc as its four characters (`YUYV`), or hex if unprintable.
pub fn fourcc_str(code: u32) -> String {
    let b = code.to_le_bytes();
    if b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
        String::from_utf8_lossy(&b).trim_end().to_string()
    } else {
        format!("0x{code:08x}")
    }
}

pub const YUYV: u32 = fourcc(b"YUYV");
pub const GREY: u32 = fourcc(b"GREY");
pub const NV12: u32 = fourcc(b"NV12");

/// What one frame looks like in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameFormat {
    pub fourcc: u32,
    pub width: u32,
    pub height: u32,
    /// Bytes per line of the first (luma or packed) plane.
    pub bytes_per_line: u32,
    /// Largest frame the source can deliver (V4L2 `sizeimage`).
    pub frame_size: u32,
}

impl FrameFormat {
    /// The packed/planar layouts the built-in test source produces, with
    /// tight line strides as V4L2 drivers report them.
    pub fn uncompressed(fourcc: u32, width: u32, height: u32) -> Result<Self, FormatError> {
        if width == 0 || height == 0 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            return Err(FormatError::BadGeometry(format!(
                "{width}x{height}: width and height must be even and non-zero"
            )));
        }
        let (bpl, size) = match fourcc {
            YUYV => (width * 2, width as u64 * height as u64 * 2),
            GREY => (width, width as u64 * height as u64),
            NV12 => (width, width as u64 * height as u64 * 3 / 2),
            other => return Err(FormatError::UnsupportedPixelFormat(fourcc_str(other))),
        };
        let frame_size = u32::try_from(size)
            .map_err(|_| FormatError::BadGeometry(format!("{width}x{height} frame too large")))?;
        Ok(FrameFormat {
            fourcc,
            width,
            height,
            bytes_per_line: bpl,
            frame_size,
        })
    }
}

impl std::fmt::Display for FrameFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}x{} ({} bytes/frame)",
            fourcc_str(self.fourcc),
            self.width,
            self.height,
            self.frame_size
        )
    }
}

/// Frame interval as a fraction of a second (V4L2 `timeperframe`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub numerator: u32,
    pub denominator: u32,
}

impl Interval {
    pub fn from_fps(fps: u32) -> Self {
        Interval {
            numerator: 1,
            denominator: fps.max(1),
        }
    }
    pub fn as_nanos(&self) -> u64 {
        if self.denominator == 0 {
            return 0;
        }
        self.numerator as u64 * 1_000_000_000 / self.denominator as u64
    }
    pub fn fps(&self) -> f64 {
        if self.numerator == 0 {
            return 0.0;
        }
        self.denominator as f64 / self.numerator as f64
    }
}

/// What happens when every slot holds a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFull {
    /// Loop recording: the oldest slot is reused.
    Wrap,
    /// Stop recording once the last slot is written.
    Stop,
}

/// Where the regions of a recording lie. Derived from the frame size and
/// slot count alone, so reader and writer always agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub slot_count: u32,
    pub slot_size: u64,
    pub index_offset: u64,
    pub data_offset: u64,
    pub file_size: u64,
}

impl Layout {
    pub fn new(frame_size: u32, slot_count: u32) -> Result<Self, FormatError> {
        if slot_count == 0 {
            return Err(FormatError::BadGeometry(
                "slot count must be at least 1".into(),
            ));
        }
        if frame_size == 0 {
            return Err(FormatError::BadGeometry(
                "frame size must be non-zero".into(),
            ));
        }
        let slot_size = align_up(frame_size as u64, PAGE);
        // The header stores the slot size in 32 bits.
        if slot_size > u32::MAX as u64 {
            return Err(FormatError::BadGeometry(format!(
                "frames of {frame_size} bytes: slots are at most 4 GiB - 4 KiB"
            )));
        }
        let index_offset = HEADER_SIZE;
        let data_offset = align_up(index_offset + slot_count as u64 * RECORD_SIZE, PAGE);
        let file_size = slot_size
            .checked_mul(slot_count as u64)
            .and_then(|d| d.checked_add(data_offset))
            .ok_or_else(|| FormatError::BadGeometry("recording size overflows".into()))?;
        Ok(Layout {
            slot_count,
            slot_size,
            index_offset,
            data_offset,
            file_size,
        })
    }

    /// The most slots of `frame_size` that fit in `capacity` bytes.
    pub fn fitting(frame_size: u32, capacity: u64) -> Result<Self, FormatError> {
        let slot_size = align_up(frame_size.max(1) as u64, PAGE);
        // Each slot costs its data plus one index record (the index rounds
        // up to one more page at most).
        let usable = capacity.saturating_sub(HEADER_SIZE + PAGE);
        let n = (usable / (slot_size + RECORD_SIZE)).min(u32::MAX as u64) as u32;
        if n == 0 {
            return Err(FormatError::BadGeometry(format!(
                "capacity of {capacity} bytes holds no frame of {frame_size} bytes"
            )));
        }
        Layout::new(frame_size, n)
    }

    pub fn record_offset(&self, slot: u32) -> u64 {
        self.index_offset + slot as u64 * RECORD_SIZE
    }

    pub fn slot_offset(&self, slot: u32) -> u64 {
        self.data_offset + slot as u64 * self.slot_size
    }
}

pub fn align_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to) * to
}

/// The decoded header (docs/FORMAT.md, "Header").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub format: FrameFormat,
    pub interval: Interval,
    pub layout: Layout,
    pub on_full: OnFull,
    /// Wall-clock creation time, nanoseconds since the Unix epoch.
    pub created_ns: u64,
    /// Human-readable description of the source, e.g. `vivid /dev/video0`.
    pub source: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("not a pagecam recording (bad magic)")]
    BadMagic,
    #[error("recording format version {found} is not supported (this build reads versions {OLDEST_READABLE_VERSION} to {FORMAT_VERSION})")]
    UnknownVersion { found: u32 },
    #[error("recording header is corrupt (checksum mismatch)")]
    HeaderChecksum,
    #[error("recording header is inconsistent: {0}")]
    Inconsistent(String),
    #[error("recording is truncated: {actual} bytes, header says {expected}")]
    Truncated { expected: u64, actual: u64 },
    #[error("not a pagecam recording ({0} bytes: shorter than a recording header)")]
    TooShort(u64),
    #[error("unsupported pixel format {0}")]
    UnsupportedPixelFormat(String),
    #[error("bad frame geometry: {0}")]
    BadGeometry(String),
}

mod hdr {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 8;
    pub const HEADER_SIZE: usize = 12;
    pub const FOURCC: usize = 16;
    pub const WIDTH: usize = 20;
    pub const HEIGHT: usize = 24;
    pub const BYTES_PER_LINE: usize = 28;
    pub const FRAME_SIZE: usize = 32;
    pub const SLOT_SIZE: usize = 36;
    pub const SLOT_COUNT: usize = 40;
    pub const RECORD_SIZE: usize = 44;
    pub const INDEX_OFFSET: usize = 48;
    pub const DATA_OFFSET: usize = 56;
    pub const FILE_SIZE: usize = 64;
    pub const CREATED_NS: usize = 72;
    pub const INTERVAL_NUM: usize = 80;
    pub const INTERVAL_DEN: usize = 84;
    pub const ON_FULL: usize = 88;
    pub const SOURCE: usize = 96;
    pub const CRC: usize = 4092;
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
pub(crate) fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
pub(crate) fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_SIZE as usize] {
        let mut b = [0u8; HEADER_SIZE as usize];
        b[hdr::MAGIC..hdr::MAGIC + 8].copy_from_slice(&MAGIC);
        put_u32(&mut b, hdr::VERSION, FORMAT_VERSION);
        put_u32(&mut b, hdr::HEADER_SIZE, HEADER_SIZE as u32);
        put_u32(&mut b, hdr::FOURCC, self.format.fourcc);
        put_u32(&mut b, hdr::WIDTH, self.format.width);
        put_u32(&mut b, hdr::HEIGHT, self.format.height);
        put_u32(&mut b, hdr::BYTES_PER_LINE, self.format.bytes_per_line);
        put_u32(&mut b, hdr::FRAME_SIZE, self.format.frame_size);
        put_u32(&mut b, hdr::SLOT_SIZE, self.layout.slot_size as u32);
        put_u32(&mut b, hdr::SLOT_COUNT, self.layout.slot_count);
        put_u32(&mut b, hdr::RECORD_SIZE, RECORD_SIZE as u32);
        put_u64(&mut b, hdr::INDEX_OFFSET, self.layout.index_offset);
        put_u64(&mut b, hdr::DATA_OFFSET, self.layout.data_offset);
        put_u64(&mut b, hdr::FILE_SIZE, self.layout.file_size);
        put_u64(&mut b, hdr::CREATED_NS, self.created_ns);
        put_u32(&mut b, hdr::INTERVAL_NUM, self.interval.numerator);
        put_u32(&mut b, hdr::INTERVAL_DEN, self.interval.denominator);
        put_u32(
            &mut b,
            hdr::ON_FULL,
            if self.on_full == OnFull::Wrap { 1 } else { 0 },
        );
        let src = truncate_utf8(&self.source, SOURCE_DESC_LEN);
        b[hdr::SOURCE..hdr::SOURCE + src.len()].copy_from_slice(src.as_bytes());
        let crc = crc32c::crc32c(&b[..hdr::CRC]);
        put_u32(&mut b, hdr::CRC, crc);
        b
    }

    /// Decode and validate a header. Checks, in order: magic, version,
    /// checksum, and that the stored layout is the one the geometry implies.
    pub fn decode(b: &[u8]) -> Result<Header, FormatError> {
        Self::decode_versioned(b).map(|(h, _)| h)
    }

    /// `decode`, also returning the format version the header was written
    /// with (1 or 2: it decides whether records carry their own checksum).
    pub fn decode_versioned(b: &[u8]) -> Result<(Header, u32), FormatError> {
        if b.len() < 8 || b[hdr::MAGIC..hdr::MAGIC + 8] != MAGIC {
            return Err(if b.len() < HEADER_SIZE as usize {
                FormatError::TooShort(b.len() as u64)
            } else {
                FormatError::BadMagic
            });
        }
        if b.len() < HEADER_SIZE as usize {
            return Err(FormatError::Truncated {
                expected: HEADER_SIZE,
                actual: b.len() as u64,
            });
        }
        let version = get_u32(b, hdr::VERSION);
        if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(FormatError::UnknownVersion { found: version });
        }
        if crc32c::crc32c(&b[..hdr::CRC]) != get_u32(b, hdr::CRC) {
            return Err(FormatError::HeaderChecksum);
        }
        let bad = |what: &str| Err(FormatError::Inconsistent(what.to_string()));
        if get_u32(b, hdr::HEADER_SIZE) as u64 != HEADER_SIZE {
            return bad("header size");
        }
        if get_u32(b, hdr::RECORD_SIZE) as u64 != RECORD_SIZE {
            return bad("index record size");
        }
        let format = FrameFormat {
            fourcc: get_u32(b, hdr::FOURCC),
            width: get_u32(b, hdr::WIDTH),
            height: get_u32(b, hdr::HEIGHT),
            bytes_per_line: get_u32(b, hdr::BYTES_PER_LINE),
            frame_size: get_u32(b, hdr::FRAME_SIZE),
        };
        let layout = Layout::new(format.frame_size, get_u32(b, hdr::SLOT_COUNT))
            .map_err(|e| FormatError::Inconsistent(e.to_string()))?;
        let stored = Layout {
            slot_count: layout.slot_count,
            slot_size: get_u32(b, hdr::SLOT_SIZE) as u64,
            index_offset: get_u64(b, hdr::INDEX_OFFSET),
            data_offset: get_u64(b, hdr::DATA_OFFSET),
            file_size: get_u64(b, hdr::FILE_SIZE),
        };
        if stored != layout {
            return bad("layout does not match frame size and slot count");
        }
        check_geometry(&format).map_err(FormatError::Inconsistent)?;
        let on_full = match get_u32(b, hdr::ON_FULL) {
            0 => OnFull::Stop,
            1 => OnFull::Wrap,
            _ => return bad("on-full policy"),
        };
        let interval = Interval {
            numerator: get_u32(b, hdr::INTERVAL_NUM),
            denominator: get_u32(b, hdr::INTERVAL_DEN),
        };
        if interval.numerator > 0 && interval.denominator == 0 {
            return bad("frame interval with a zero denominator");
        }
        let src = &b[hdr::SOURCE..hdr::SOURCE + SOURCE_DESC_LEN];
        let end = src.iter().position(|&c| c == 0).unwrap_or(src.len());
        // Bytes that are not UTF-8 become U+FFFD (three bytes each): cut to
        // what the header holds, so the header re-encodes to itself.
        let source = String::from_utf8_lossy(&src[..end]);
        let source = truncate_utf8(&source, SOURCE_DESC_LEN).to_owned();
        Ok((
            Header {
                format,
                interval,
                layout,
                on_full,
                created_ns: get_u64(b, hdr::CREATED_NS),
                source,
            },
            version,
        ))
    }
}

/// The largest width or height a recording may claim (V4L2 drivers stay
/// far below; the bound keeps arithmetic on them small).
pub const MAX_DIMENSION: u32 = 16384;

/// Is the frame geometry plausible for its pixel format? Width, height,
/// bytes per line and frame size must agree for the formats pagecam knows
/// (a damaged or hostile header with a valid checksum is refused here).
fn check_geometry(f: &FrameFormat) -> Result<(), String> {
    let (w, h) = (f.width as u64, f.height as u64);
    if f.width == 0 || f.height == 0 || f.width > MAX_DIMENSION || f.height > MAX_DIMENSION {
        return Err(format!("frame size {}x{}", f.width, f.height));
    }
    // (bytes per pixel of the first plane, total bytes per pixel x 2)
    let layout = match &f.fourcc.to_le_bytes() {
        b"YUYV" | b"UYVY" => Some((2, 4)),
        b"GREY" => Some((1, 2)),
        b"NV12" | b"NV21" | b"YU12" | b"YV12" => Some((1, 3)),
        b"RGB3" | b"BGR3" => Some((3, 6)),
        _ => None,
    };
    // Whatever the format, a line is not longer than a frame (drivers give
    // 0 for compressed formats); readers size buffers by it.
    if f.bytes_per_line > f.frame_size {
        return Err(format!(
            "{} bytes per line in frames of {} bytes",
            f.bytes_per_line, f.frame_size
        ));
    }
    let Some((bpp, total2)) = layout else {
        // Compressed or unknown formats: only the size must fit a slot,
        // which the layout already checked.
        return Ok(());
    };
    let bpl = f.bytes_per_line as u64;
    if bpl < w * bpp || bpl > w * bpp + 4096 {
        return Err(format!(
            "{} bytes per line for {} pixels of {}",
            bpl,
            w,
            fourcc_str(f.fourcc)
        ));
    }
    let least = bpl * h * total2 / (2 * bpp);
    if (f.frame_size as u64) < least {
        return Err(format!(
            "frame size {} is less than {least} for {}x{} {}",
            f.frame_size,
            w,
            h,
            fourcc_str(f.fourcc)
        ));
    }
    Ok(())
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The metadata of one committed frame (an index record minus its
/// generation and checksum).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameMeta {
    /// Position in the recording, from 0, without gaps.
    pub sequence: u64,
    /// The source's own frame counter; a jump means the source dropped frames.
    pub source_sequence: u64,
    /// Capture time, CLOCK_MONOTONIC nanoseconds.
    pub timestamp_ns: u64,
    /// Capture time, nanoseconds since the Unix epoch.
    pub wall_ns: u64,
    /// Bytes of the slot that hold the frame.
    pub bytes_used: u32,
    pub flags: u32,
    /// Which capture session wrote the frame (bumped by `--resume`).
    pub session: u32,
}

impl FrameMeta {
    /// The bytes `record::META` as they sit in the record.
    pub fn encode_meta(&self) -> [u8; 48] {
        let mut b = [0u8; 48];
        let o = record::SEQUENCE;
        put_u64(&mut b, record::SEQUENCE - o, self.sequence);
        put_u64(&mut b, record::SOURCE_SEQUENCE - o, self.source_sequence);
        put_u64(&mut b, record::TIMESTAMP_NS - o, self.timestamp_ns);
        put_u64(&mut b, record::WALL_NS - o, self.wall_ns);
        put_u32(&mut b, record::BYTES_USED - o, self.bytes_used);
        put_u32(&mut b, record::FLAGS - o, self.flags);
        put_u32(&mut b, record::SESSION - o, self.session);
        b
    }

    /// The record checksum: CRC32C of the frame data followed by the
    /// metadata bytes, so a frame whose data or record is torn fails it.
    pub fn checksum(&self, data_crc: u32) -> u32 {
        crc32c::crc32c_append(data_crc, &self.encode_meta())
    }
}

/// An index record as bytes (docs/FORMAT.md, "Index record"): what the
/// `O_DIRECT` writer puts in the file and what offline readers decode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub generation: u64,
    pub meta: FrameMeta,
    pub crc: u32,
}

/// CRC32C of record bytes `0..RECORD_CRC` for the given field values; 0
/// for the blank record (all fields zero), which stays all zero bytes (a
/// claim given back untouched restores a never-written slot to blank).
pub fn record_crc(generation: u64, meta: &FrameMeta, crc: u32) -> u32 {
    if generation == 0 && crc == 0 && *meta == FrameMeta::default() {
        return 0;
    }
    let mut b = [0u8; record::RECORD_CRC];
    put_u64(&mut b, record::GENERATION, generation);
    b[record::META].copy_from_slice(&meta.encode_meta());
    put_u32(&mut b, record::CRC, crc);
    crc32c::crc32c(&b)
}

/// What a record's own checksum (format 2) says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordCheck {
    /// All 64 bytes are zero: never written.
    Blank,
    /// The checksum matches.
    Intact,
    /// The generation was just made odd (a writer's claim) and the record
    /// was caught before its checksum was updated, or the checksum was
    /// updated for the commit before the generation: in flight, not damage.
    InFlight,
    /// Anything else: the record is damaged.
    Damaged,
}

impl Record {
    /// Encode, with the record checksum (format 2; format-1 readers ignore
    /// those bytes, which were reserved).
    pub fn encode(&self) -> [u8; RECORD_SIZE as usize] {
        let mut b = [0u8; RECORD_SIZE as usize];
        put_u64(&mut b, record::GENERATION, self.generation);
        b[record::META].copy_from_slice(&self.meta.encode_meta());
        put_u32(&mut b, record::CRC, self.crc);
        put_u32(
            &mut b,
            record::RECORD_CRC,
            record_crc(self.generation, &self.meta, self.crc),
        );
        b
    }

    /// Check the raw bytes of a record against its own checksum.
    pub fn check(b: &[u8]) -> RecordCheck {
        let Some(b) = b.get(..RECORD_SIZE as usize) else {
            return RecordCheck::Damaged;
        };
        if b.iter().all(|&x| x == 0) {
            return RecordCheck::Blank;
        }
        if b[record::RESERVED] != [0; 4] {
            // No writer puts anything there (and the frame checksum takes
            // them as zeros): canonical records only.
            return RecordCheck::Damaged;
        }
        let stored = get_u32(b, record::RECORD_CRC);
        // Over the bytes as stored: reserved bytes are covered too.
        let mut raw = [0u8; record::RECORD_CRC];
        raw.copy_from_slice(&b[..record::RECORD_CRC]);
        if crc32c::crc32c(&raw) == stored {
            return RecordCheck::Intact;
        }
        let g = get_u64(b, record::GENERATION);
        if g % 2 == 1 {
            // The checksum of the neighbouring states a writer passes
            // through: before the claim (g-1 or, after a crash, g-2), or
            // the commit's (g+1) stored just before its generation.
            for n in [g.checked_sub(1), g.checked_sub(2), g.checked_add(1)]
                .into_iter()
                .flatten()
            {
                put_u64(&mut raw, record::GENERATION, n);
                if crc32c::crc32c(&raw) == stored {
                    return RecordCheck::InFlight;
                }
            }
        }
        RecordCheck::Damaged
    }

    /// Decode a record; `b` is at least `RECORD_SIZE` bytes.
    pub fn decode(b: &[u8]) -> Option<Record> {
        let b = b.get(..RECORD_SIZE as usize)?;
        Some(Record {
            generation: get_u64(b, record::GENERATION),
            meta: FrameMeta {
                sequence: get_u64(b, record::SEQUENCE),
                source_sequence: get_u64(b, record::SOURCE_SEQUENCE),
                timestamp_ns: get_u64(b, record::TIMESTAMP_NS),
                wall_ns: get_u64(b, record::WALL_NS),
                bytes_used: get_u32(b, record::BYTES_USED),
                flags: get_u32(b, record::FLAGS),
                session: get_u32(b, record::SESSION),
            },
            crc: get_u32(b, record::CRC),
        })
    }
}

/// A slot's state as told by its generation (docs/FORMAT.md, "Generations").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenerationState {
    /// Generation 0: the slot has never been written.
    Empty,
    /// Odd: a writer has claimed the slot and may be changing it.
    Writing,
    /// Even and non-zero: a committed frame.
    Committed,
}

pub fn generation_state(generation: u64) -> GenerationState {
    match generation {
        0 => GenerationState::Empty,
        g if g % 2 == 1 => GenerationState::Writing,
        _ => GenerationState::Committed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        let format = FrameFormat::uncompressed(YUYV, 640, 480).unwrap();
        Header {
            format,
            interval: Interval::from_fps(30),
            layout: Layout::new(format.frame_size, 10).unwrap(),
            on_full: OnFull::Wrap,
            created_ns: 1_700_000_000_123_456_789,
            source: "test pattern YUYV 640x480".into(),
        }
    }

    #[test]
    fn header_round_trip() {
        let h = sample();
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn unknown_version_is_rejected() {
        let mut b = sample().encode();
        b[8..12].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(
            Header::decode(&b),
            Err(FormatError::UnknownVersion { found: 3 })
        );
    }

    #[test]
    fn corrupt_header_is_rejected() {
        let mut b = sample().encode();
        b[21] ^= 0x40; // width
        assert_eq!(Header::decode(&b), Err(FormatError::HeaderChecksum));
        let mut b = sample().encode();
        b[0] = b'X';
        assert_eq!(Header::decode(&b), Err(FormatError::BadMagic));
        assert!(matches!(
            Header::decode(&b[..100]),
            Err(FormatError::TooShort(100))
        ));
        assert_eq!(Header::decode(b"hello\n"), Err(FormatError::TooShort(6)));
    }

    #[test]
    fn inconsistent_layout_is_rejected_even_with_valid_checksum() {
        let mut b = sample().encode();
        put_u64(&mut b, hdr::DATA_OFFSET, 8192 + 4096);
        let crc = crc32c::crc32c(&b[..hdr::CRC]);
        put_u32(&mut b, hdr::CRC, crc);
        assert!(matches!(
            Header::decode(&b),
            Err(FormatError::Inconsistent(_))
        ));
    }

    #[test]
    fn layout_is_page_aligned() {
        let l = Layout::new(640 * 480 * 2, 100).unwrap();
        assert_eq!(l.slot_size % PAGE, 0);
        assert!(l.slot_size >= 640 * 480 * 2);
        assert_eq!(l.data_offset % PAGE, 0);
        assert!(l.data_offset >= HEADER_SIZE + 100 * RECORD_SIZE);
        assert_eq!(l.file_size, l.data_offset + 100 * l.slot_size);
        let f = Layout::fitting(640 * 480 * 2, 10 << 20).unwrap();
        assert!(f.file_size <= 10 << 20, "{f:?}");
        assert!(Layout::fitting(640 * 480 * 2, 4096).is_err());
    }

    #[test]
    fn generation_states() {
        assert_eq!(generation_state(0), GenerationState::Empty);
        assert_eq!(generation_state(1), GenerationState::Writing);
        assert_eq!(generation_state(2), GenerationState::Committed);
        assert_eq!(generation_state(7), GenerationState::Writing);
    }

    #[test]
    fn checksum_covers_data_and_metadata() {
        let m = FrameMeta {
            sequence: 5,
            bytes_used: 100,
            ..Default::default()
        };
        let c = m.checksum(crc32c::crc32c(b"frame"));
        assert_ne!(c, m.checksum(crc32c::crc32c(b"frami")));
        let m2 = FrameMeta { sequence: 6, ..m };
        assert_ne!(c, m2.checksum(crc32c::crc32c(b"frame")));
    }

    /// Regression: header fields (fourcc, size, bytes per line, interval)
    /// were not cross-checked; edits with a recomputed checksum passed.
    #[test]
    fn implausible_geometry_is_refused_even_with_a_valid_checksum() {
        let edit = |at: usize, v: u32| {
            let mut b = sample().encode();
            put_u32(&mut b, at, v);
            let crc = crc32c::crc32c(&b[..hdr::CRC]);
            put_u32(&mut b, hdr::CRC, crc);
            Header::decode(&b)
        };
        for (at, v) in [
            (hdr::WIDTH, 0),
            (hdr::HEIGHT, 100_000),
            (hdr::BYTES_PER_LINE, 100),
            (hdr::WIDTH, 1280),
            (hdr::INTERVAL_DEN, 0),
        ] {
            assert!(
                matches!(edit(at, v), Err(FormatError::Inconsistent(_))),
                "field at {at} = {v} accepted"
            );
        }
        assert!(
            edit(hdr::FOURCC, fourcc(b"MJPG")).is_ok(),
            "compressed: size only"
        );
    }

    /// Regression: the generation was not covered by any checksum, so a
    /// damaged record could make a frame look empty or in flight.
    #[test]
    fn a_damaged_record_is_detected_by_its_own_checksum() {
        let r = Record {
            generation: 10,
            meta: FrameMeta {
                sequence: 5,
                bytes_used: 100,
                ..Default::default()
            },
            crc: 77,
        };
        let b = r.encode();
        assert_eq!(Record::check(&b), RecordCheck::Intact);
        assert_eq!(Record::check(&[0u8; 64]), RecordCheck::Blank);
        for byte in 0..60 {
            let mut d = b;
            d[byte] ^= 0x10;
            assert_eq!(Record::check(&d), RecordCheck::Damaged, "byte {byte}");
        }
        // A claim caught before its checksum: generation odd, old checksum.
        let mut claim = b;
        claim[..8].copy_from_slice(&11u64.to_le_bytes());
        assert_eq!(Record::check(&claim), RecordCheck::InFlight);
        // A commit caught between checksum and generation.
        let commit = Record {
            generation: 12,
            ..r
        }
        .encode();
        let mut between = commit;
        between[..8].copy_from_slice(&11u64.to_le_bytes());
        assert_eq!(Record::check(&between), RecordCheck::InFlight);
    }

    #[test]
    fn record_round_trip() {
        let r = Record {
            generation: 42,
            meta: FrameMeta {
                sequence: 1,
                source_sequence: 2,
                timestamp_ns: 3,
                wall_ns: 4,
                bytes_used: 5,
                flags: 6,
                session: 7,
            },
            crc: 8,
        };
        assert_eq!(Record::decode(&r.encode()), Some(r));
        assert_eq!(Record::decode(&[0u8; 10]), None);
    }

    #[test]
    fn fourcc_text() {
        assert_eq!(fourcc_str(YUYV), "YUYV");
        assert_eq!(fourcc_str(0x01020304), "0x01020304");
    }
}

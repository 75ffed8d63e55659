//! The recording file's on-disk format: header, index records, layout.
//!
//! Pure encoding and decoding, no I/O and no `unsafe`: `docs/FORMAT.md` is the
//! normative description and every offset below is named there. All integers
//! are little-endian. The header is written once, before the first frame,
//! and never changes afterwards, so a crash can never leave it half-written.

use thiserror::Error;

/// First eight bytes of every recording.
pub const MAGIC: [u8; 8] = *b"PAGECAM\0";
/// Format version this build writes and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;
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
    pub const CRC: usize = 56;
    /// Metadata covered by the record CRC: bytes `SEQUENCE..CRC`.
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
    #[error("recording format version {found} is not supported (this build reads version {FORMAT_VERSION})")]
    UnknownVersion { found: u32 },
    #[error("recording header is corrupt (checksum mismatch)")]
    HeaderChecksum,
    #[error("recording header is inconsistent: {0}")]
    Inconsistent(String),
    #[error("recording is truncated: {actual} bytes, header says {expected}")]
    Truncated { expected: u64, actual: u64 },
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
        if b.len() < HEADER_SIZE as usize {
            return Err(FormatError::Truncated {
                expected: HEADER_SIZE,
                actual: b.len() as u64,
            });
        }
        if b[hdr::MAGIC..hdr::MAGIC + 8] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = get_u32(b, hdr::VERSION);
        if version != FORMAT_VERSION {
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
        let on_full = match get_u32(b, hdr::ON_FULL) {
            0 => OnFull::Stop,
            1 => OnFull::Wrap,
            _ => return bad("on-full policy"),
        };
        let src = &b[hdr::SOURCE..hdr::SOURCE + SOURCE_DESC_LEN];
        let end = src.iter().position(|&c| c == 0).unwrap_or(src.len());
        Ok(Header {
            format,
            interval: Interval {
                numerator: get_u32(b, hdr::INTERVAL_NUM),
                denominator: get_u32(b, hdr::INTERVAL_DEN),
            },
            layout,
            on_full,
            created_ns: get_u64(b, hdr::CREATED_NS),
            source: String::from_utf8_lossy(&src[..end]).into_owned(),
        })
    }
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

impl Record {
    pub fn encode(&self) -> [u8; RECORD_SIZE as usize] {
        let mut b = [0u8; RECORD_SIZE as usize];
        put_u64(&mut b, record::GENERATION, self.generation);
        b[record::META].copy_from_slice(&self.meta.encode_meta());
        put_u32(&mut b, record::CRC, self.crc);
        b
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
        b[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(
            Header::decode(&b),
            Err(FormatError::UnknownVersion { found: 2 })
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
            Err(FormatError::Truncated { .. })
        ));
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

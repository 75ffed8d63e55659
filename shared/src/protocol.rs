//! The notification protocol between capture and analyzers (docs/PROTOCOL.md).
//!
//! Pure encoding and decoding. Every message is one `SOCK_SEQPACKET` record
//! starting with an 8-byte preamble (magic, version, kind); integers are
//! little-endian. Messages are fixed-size so encoding never allocates. The
//! byte offsets are named once (the `at` modules) and used by both
//! directions, as docs/PROTOCOL.md lists them.

use thiserror::Error;

use crate::format::{get_u32, get_u64, FrameFormat, Layout};

/// `PCAM` as a little-endian u32.
pub const MAGIC: u32 = crate::format::fourcc(b"PCAM");
/// Version 2: the hello names a store kind (file or RAM ring) and carries
/// one descriptor per store part, plus the next sequence number.
pub const PROTOCOL_VERSION: u16 = 2;

pub const KIND_HELLO: u16 = 1;
pub const KIND_FRAME: u16 = 2;
pub const KIND_END: u16 = 3;
pub const KIND_PROGRESS: u16 = 4;

pub const HELLO_LEN: usize = 88;
pub const FRAME_LEN: usize = 56;
pub const END_LEN: usize = 24;
pub const PROGRESS_LEN: usize = 16;
// A frame notice stays within one cache line.
const _: () = assert!(FRAME_LEN <= 64);

/// Largest message; receive buffers of this size never truncate.
pub const MAX_LEN: usize = HELLO_LEN;

/// The hello's descriptor is the recording file itself (docs/FORMAT.md).
pub const STORE_RECORDING_FILE: u32 = 1;
/// The hello carries two descriptors: the RAM ring (a sealed memfd in the
/// recording format, holding the newest frames) and the recording file
/// (read-only, holding the older ones).
pub const STORE_MEMFD_RING: u32 = 2;

/// Descriptors a hello of `store_kind` carries.
pub fn descriptors_for(store_kind: u32) -> usize {
    match store_kind {
        STORE_MEMFD_RING => 2,
        _ => 1,
    }
}

/// Byte offsets of every field (docs/PROTOCOL.md).
mod at {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 4;
    pub const KIND: usize = 6;
    pub mod hello {
        pub const STORE_KIND: usize = 8;
        pub const SLOT_COUNT: usize = 12;
        pub const SLOT_SIZE: usize = 16;
        pub const INDEX_OFFSET: usize = 24;
        pub const DATA_OFFSET: usize = 32;
        pub const STORE_SIZE: usize = 40;
        pub const FOURCC: usize = 48;
        pub const WIDTH: usize = 52;
        pub const HEIGHT: usize = 56;
        pub const BYTES_PER_LINE: usize = 60;
        pub const FRAME_SIZE: usize = 64;
        pub const RECORD_SIZE: usize = 68;
        pub const CLIENT_ID: usize = 72;
        pub const NEXT_SEQUENCE: usize = 80;
    }
    pub mod frame {
        pub const SLOT: usize = 8;
        pub const FLAGS: usize = 12;
        pub const GENERATION: usize = 16;
        pub const SEQUENCE: usize = 24;
        pub const TIMESTAMP_NS: usize = 32;
        pub const READY_NS: usize = 40;
        pub const BYTES_USED: usize = 48;
    }
    pub mod end {
        pub const REASON: usize = 8;
        pub const FRAMES: usize = 16;
    }
    pub mod progress {
        pub const SEQUENCE: usize = 8;
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("message of {0} bytes is too short")]
    Short(usize),
    #[error("bad magic 0x{0:08x}: peer does not speak the pagecam protocol")]
    BadMagic(u32),
    #[error(
        "protocol version {found} is not supported (this build speaks version {PROTOCOL_VERSION})"
    )]
    UnknownVersion { found: u16 },
    #[error("unknown message kind {0}")]
    UnknownKind(u16),
    #[error("message kind {kind} must be {expected} bytes, got {got}")]
    BadLength {
        kind: u16,
        expected: usize,
        got: usize,
    },
    #[error("unknown frame store kind {0} (this build knows 1 = recording file, 2 = RAM ring)")]
    UnknownStore(u32),
    #[error("hello: index record size {0} is not 64")]
    BadRecordSize(u32),
}

/// Sent by capture on connect, with the store's descriptors (opened
/// read-only) attached as `SCM_RIGHTS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub store_kind: u32,
    /// Geometry of the first descriptor (the live store).
    pub layout: Layout,
    pub format: FrameFormat,
    pub client_id: u64,
    /// The sequence number the next frame will have (frames below it are
    /// already in the store: a late joiner can replay them).
    pub next_sequence: u64,
}

/// One committed frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameNotice {
    pub slot: u32,
    pub flags: u32,
    /// Generation the slot holds for this frame (even).
    pub generation: u64,
    pub sequence: u64,
    /// Capture time (CLOCK_MONOTONIC ns).
    pub timestamp_ns: u64,
    /// When capture published the frame (CLOCK_MONOTONIC ns).
    pub ready_ns: u64,
    pub bytes_used: u32,
}

/// Why the stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// 0: capture finished.
    Finished,
    /// 1: capture stopped on an error (and any unknown value).
    Error,
    /// 2: this analyzer was refused (not allowed, or too many), before any
    /// hello.
    Refused,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct End {
    pub reason: EndReason,
    pub frames: u64,
}

/// Sent by an analyzer now and then: the newest sequence it has finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub sequence: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    Frame(FrameNotice),
    End(End),
    Progress(Progress),
}

fn preamble(b: &mut [u8], kind: u16) {
    b[at::MAGIC..at::MAGIC + 4].copy_from_slice(&MAGIC.to_le_bytes());
    b[at::VERSION..at::VERSION + 2].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    b[at::KIND..at::KIND + 2].copy_from_slice(&kind.to_le_bytes());
}
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

impl Hello {
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        use at::hello::*;
        let mut b = [0u8; HELLO_LEN];
        preamble(&mut b, KIND_HELLO);
        put32(&mut b, STORE_KIND, self.store_kind);
        put32(&mut b, SLOT_COUNT, self.layout.slot_count);
        put64(&mut b, SLOT_SIZE, self.layout.slot_size);
        put64(&mut b, INDEX_OFFSET, self.layout.index_offset);
        put64(&mut b, DATA_OFFSET, self.layout.data_offset);
        put64(&mut b, STORE_SIZE, self.layout.file_size);
        put32(&mut b, FOURCC, self.format.fourcc);
        put32(&mut b, WIDTH, self.format.width);
        put32(&mut b, HEIGHT, self.format.height);
        put32(&mut b, BYTES_PER_LINE, self.format.bytes_per_line);
        put32(&mut b, FRAME_SIZE, self.format.frame_size);
        put32(&mut b, RECORD_SIZE, crate::format::RECORD_SIZE as u32);
        put64(&mut b, CLIENT_ID, self.client_id);
        put64(&mut b, NEXT_SEQUENCE, self.next_sequence);
        b
    }

    fn decode(b: &[u8]) -> Result<Hello, ProtocolError> {
        use at::hello::*;
        let store_kind = get_u32(b, STORE_KIND);
        if store_kind != STORE_RECORDING_FILE && store_kind != STORE_MEMFD_RING {
            return Err(ProtocolError::UnknownStore(store_kind));
        }
        let record_size = get_u32(b, RECORD_SIZE);
        if record_size as u64 != crate::format::RECORD_SIZE {
            return Err(ProtocolError::BadRecordSize(record_size));
        }
        Ok(Hello {
            store_kind,
            layout: Layout {
                slot_count: get_u32(b, SLOT_COUNT),
                slot_size: get_u64(b, SLOT_SIZE),
                index_offset: get_u64(b, INDEX_OFFSET),
                data_offset: get_u64(b, DATA_OFFSET),
                file_size: get_u64(b, STORE_SIZE),
            },
            format: FrameFormat {
                fourcc: get_u32(b, FOURCC),
                width: get_u32(b, WIDTH),
                height: get_u32(b, HEIGHT),
                bytes_per_line: get_u32(b, BYTES_PER_LINE),
                frame_size: get_u32(b, FRAME_SIZE),
            },
            client_id: get_u64(b, CLIENT_ID),
            next_sequence: get_u64(b, NEXT_SEQUENCE),
        })
    }
}

impl FrameNotice {
    pub fn encode(&self) -> [u8; FRAME_LEN] {
        use at::frame::*;
        let mut b = [0u8; FRAME_LEN];
        preamble(&mut b, KIND_FRAME);
        put32(&mut b, SLOT, self.slot);
        put32(&mut b, FLAGS, self.flags);
        put64(&mut b, GENERATION, self.generation);
        put64(&mut b, SEQUENCE, self.sequence);
        put64(&mut b, TIMESTAMP_NS, self.timestamp_ns);
        put64(&mut b, READY_NS, self.ready_ns);
        put32(&mut b, BYTES_USED, self.bytes_used);
        b
    }

    fn decode(b: &[u8]) -> FrameNotice {
        use at::frame::*;
        FrameNotice {
            slot: get_u32(b, SLOT),
            flags: get_u32(b, FLAGS),
            generation: get_u64(b, GENERATION),
            sequence: get_u64(b, SEQUENCE),
            timestamp_ns: get_u64(b, TIMESTAMP_NS),
            ready_ns: get_u64(b, READY_NS),
            bytes_used: get_u32(b, BYTES_USED),
        }
    }
}

impl End {
    pub fn encode(&self) -> [u8; END_LEN] {
        let mut b = [0u8; END_LEN];
        preamble(&mut b, KIND_END);
        let reason = match self.reason {
            EndReason::Finished => 0,
            EndReason::Error => 1,
            EndReason::Refused => 2,
        };
        put32(&mut b, at::end::REASON, reason);
        put64(&mut b, at::end::FRAMES, self.frames);
        b
    }
}

impl Progress {
    pub fn encode(&self) -> [u8; PROGRESS_LEN] {
        let mut b = [0u8; PROGRESS_LEN];
        preamble(&mut b, KIND_PROGRESS);
        put64(&mut b, at::progress::SEQUENCE, self.sequence);
        b
    }
}

/// Decode one received message, checking magic, version, kind and length.
pub fn decode(b: &[u8]) -> Result<Message, ProtocolError> {
    if b.len() < 8 {
        return Err(ProtocolError::Short(b.len()));
    }
    let magic = get_u32(b, at::MAGIC);
    if magic != MAGIC {
        return Err(ProtocolError::BadMagic(magic));
    }
    let version = u16::from_le_bytes([b[at::VERSION], b[at::VERSION + 1]]);
    if version != PROTOCOL_VERSION {
        return Err(ProtocolError::UnknownVersion { found: version });
    }
    let kind = u16::from_le_bytes([b[at::KIND], b[at::KIND + 1]]);
    let expected = match kind {
        KIND_HELLO => HELLO_LEN,
        KIND_FRAME => FRAME_LEN,
        KIND_END => END_LEN,
        KIND_PROGRESS => PROGRESS_LEN,
        k => return Err(ProtocolError::UnknownKind(k)),
    };
    if b.len() != expected {
        return Err(ProtocolError::BadLength {
            kind,
            expected,
            got: b.len(),
        });
    }
    Ok(match kind {
        KIND_HELLO => Message::Hello(Hello::decode(b)?),
        KIND_FRAME => Message::Frame(FrameNotice::decode(b)),
        KIND_END => Message::End(End {
            reason: match get_u32(b, at::end::REASON) {
                0 => EndReason::Finished,
                2 => EndReason::Refused,
                _ => EndReason::Error,
            },
            frames: get_u64(b, at::end::FRAMES),
        }),
        _ => Message::Progress(Progress {
            sequence: get_u64(b, at::progress::SEQUENCE),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let format = FrameFormat::uncompressed(crate::format::YUYV, 64, 48).unwrap();
        let hello = Hello {
            store_kind: STORE_MEMFD_RING,
            layout: Layout::new(format.frame_size, 7).unwrap(),
            format,
            client_id: 3,
            next_sequence: 12,
        };
        assert_eq!(decode(&hello.encode()), Ok(Message::Hello(hello)));
        let f = FrameNotice {
            slot: 6,
            flags: 1,
            generation: 10,
            sequence: 99,
            timestamp_ns: 123,
            ready_ns: 456,
            bytes_used: 6144,
        };
        assert_eq!(decode(&f.encode()), Ok(Message::Frame(f)));
        let e = End {
            reason: EndReason::Error,
            frames: 5,
        };
        assert_eq!(decode(&e.encode()), Ok(Message::End(e)));
        let p = Progress { sequence: 77 };
        assert_eq!(decode(&p.encode()), Ok(Message::Progress(p)));
    }

    #[test]
    fn unknown_store_kind_is_rejected() {
        let format = FrameFormat::uncompressed(crate::format::YUYV, 64, 48).unwrap();
        let mut hello = Hello {
            store_kind: 9,
            layout: Layout::new(format.frame_size, 7).unwrap(),
            format,
            client_id: 3,
            next_sequence: 0,
        };
        assert_eq!(decode(&hello.encode()), Err(ProtocolError::UnknownStore(9)));
        hello.store_kind = STORE_RECORDING_FILE;
        let mut b = hello.encode();
        b[at::hello::RECORD_SIZE] = 32;
        assert_eq!(decode(&b), Err(ProtocolError::BadRecordSize(32)));
    }

    /// A version-1 peer is told plainly that it speaks another version.
    #[test]
    fn version_1_is_rejected() {
        let mut b = Progress { sequence: 1 }.encode();
        b[at::VERSION] = 1;
        assert_eq!(decode(&b), Err(ProtocolError::UnknownVersion { found: 1 }));
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(decode(b"hi"), Err(ProtocolError::Short(2)));
        assert!(matches!(
            decode(b"GET / HTTP/1.1\r\n"),
            Err(ProtocolError::BadMagic(_))
        ));
        let mut b = Progress { sequence: 1 }.encode();
        b[at::VERSION] = 9;
        assert_eq!(decode(&b), Err(ProtocolError::UnknownVersion { found: 9 }));
        let b = Progress { sequence: 1 }.encode();
        assert!(matches!(
            decode(&b[..12]),
            Err(ProtocolError::BadLength { .. })
        ));
        let mut b = Progress { sequence: 1 }.encode();
        b[at::KIND] = 42;
        assert_eq!(decode(&b), Err(ProtocolError::UnknownKind(42)));
    }
}

//! The notification protocol between capture and analyzers (docs/PROTOCOL.md).
//!
//! Pure encoding and decoding. Every message is one `SOCK_SEQPACKET` record
//! starting with an 8-byte preamble (magic, version, kind); integers are
//! little-endian. Messages are fixed-size so encoding never allocates.

use thiserror::Error;

use crate::format::{get_u32, get_u64, FrameFormat, Layout};

/// `PCAM` as a little-endian u32.
pub const MAGIC: u32 = crate::format::fourcc(b"PCAM");
pub const PROTOCOL_VERSION: u16 = 1;

pub const KIND_HELLO: u16 = 1;
pub const KIND_FRAME: u16 = 2;
pub const KIND_END: u16 = 3;
pub const KIND_PROGRESS: u16 = 4;

pub const HELLO_LEN: usize = 80;
pub const FRAME_LEN: usize = 56;
pub const END_LEN: usize = 24;
pub const PROGRESS_LEN: usize = 16;
// A frame notice stays within one cache line.
const _: () = assert!(FRAME_LEN <= 64);

/// Largest message; receive buffers of this size never truncate.
pub const MAX_LEN: usize = HELLO_LEN;

/// Kinds of frame store a hello can describe. Only the recording file
/// exists today; the descriptor plus geometry keeps the door open.
pub const STORE_RECORDING_FILE: u32 = 1;

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
    #[error("unknown frame store kind {0}")]
    UnknownStore(u32),
}

/// Sent by capture on connect, with the store's descriptor (opened
/// read-only) attached as `SCM_RIGHTS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub store_kind: u32,
    pub layout: Layout,
    pub format: FrameFormat,
    pub client_id: u64,
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
    Finished,
    Error,
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
    b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    b[4..6].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    b[6..8].copy_from_slice(&kind.to_le_bytes());
}
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

impl Hello {
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        preamble(&mut b, KIND_HELLO);
        put32(&mut b, 8, self.store_kind);
        put32(&mut b, 12, self.layout.slot_count);
        put64(&mut b, 16, self.layout.slot_size);
        put64(&mut b, 24, self.layout.index_offset);
        put64(&mut b, 32, self.layout.data_offset);
        put64(&mut b, 40, self.layout.file_size);
        put32(&mut b, 48, self.format.fourcc);
        put32(&mut b, 52, self.format.width);
        put32(&mut b, 56, self.format.height);
        put32(&mut b, 60, self.format.bytes_per_line);
        put32(&mut b, 64, self.format.frame_size);
        put32(&mut b, 68, crate::format::RECORD_SIZE as u32);
        put64(&mut b, 72, self.client_id);
        b
    }
}

impl FrameNotice {
    pub fn encode(&self) -> [u8; FRAME_LEN] {
        let mut b = [0u8; FRAME_LEN];
        preamble(&mut b, KIND_FRAME);
        put32(&mut b, 8, self.slot);
        put32(&mut b, 12, self.flags);
        put64(&mut b, 16, self.generation);
        put64(&mut b, 24, self.sequence);
        put64(&mut b, 32, self.timestamp_ns);
        put64(&mut b, 40, self.ready_ns);
        put32(&mut b, 48, self.bytes_used);
        b
    }
}

impl End {
    pub fn encode(&self) -> [u8; END_LEN] {
        let mut b = [0u8; END_LEN];
        preamble(&mut b, KIND_END);
        put32(
            &mut b,
            8,
            if self.reason == EndReason::Finished {
                0
            } else {
                1
            },
        );
        put64(&mut b, 16, self.frames);
        b
    }
}

impl Progress {
    pub fn encode(&self) -> [u8; PROGRESS_LEN] {
        let mut b = [0u8; PROGRESS_LEN];
        preamble(&mut b, KIND_PROGRESS);
        put64(&mut b, 8, self.sequence);
        b
    }
}

/// Decode one received message, checking magic, version, kind and length.
pub fn decode(b: &[u8]) -> Result<Message, ProtocolError> {
    if b.len() < 8 {
        return Err(ProtocolError::Short(b.len()));
    }
    let magic = get_u32(b, 0);
    if magic != MAGIC {
        return Err(ProtocolError::BadMagic(magic));
    }
    let version = u16::from_le_bytes([b[4], b[5]]);
    if version != PROTOCOL_VERSION {
        return Err(ProtocolError::UnknownVersion { found: version });
    }
    let kind = u16::from_le_bytes([b[6], b[7]]);
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
        KIND_HELLO => {
            let store_kind = get_u32(b, 8);
            if store_kind != STORE_RECORDING_FILE {
                return Err(ProtocolError::UnknownStore(store_kind));
            }
            Message::Hello(Hello {
                store_kind,
                layout: Layout {
                    slot_count: get_u32(b, 12),
                    slot_size: get_u64(b, 16),
                    index_offset: get_u64(b, 24),
                    data_offset: get_u64(b, 32),
                    file_size: get_u64(b, 40),
                },
                format: FrameFormat {
                    fourcc: get_u32(b, 48),
                    width: get_u32(b, 52),
                    height: get_u32(b, 56),
                    bytes_per_line: get_u32(b, 60),
                    frame_size: get_u32(b, 64),
                },
                client_id: get_u64(b, 72),
            })
        }
        KIND_FRAME => Message::Frame(FrameNotice {
            slot: get_u32(b, 8),
            flags: get_u32(b, 12),
            generation: get_u64(b, 16),
            sequence: get_u64(b, 24),
            timestamp_ns: get_u64(b, 32),
            ready_ns: get_u64(b, 40),
            bytes_used: get_u32(b, 48),
        }),
        KIND_END => Message::End(End {
            reason: if get_u32(b, 8) == 0 {
                EndReason::Finished
            } else {
                EndReason::Error
            },
            frames: get_u64(b, 16),
        }),
        _ => Message::Progress(Progress {
            sequence: get_u64(b, 8),
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
            store_kind: STORE_RECORDING_FILE,
            layout: Layout::new(format.frame_size, 7).unwrap(),
            format,
            client_id: 3,
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
        assert!(
            FRAME_LEN <= 64,
            "a frame notice stays within one cache line"
        );
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(decode(b"hi"), Err(ProtocolError::Short(2)));
        assert!(matches!(
            decode(b"GET / HTTP/1.1\r\n"),
            Err(ProtocolError::BadMagic(_))
        ));
        let mut b = Progress { sequence: 1 }.encode();
        b[4] = 9;
        assert_eq!(decode(&b), Err(ProtocolError::UnknownVersion { found: 9 }));
        let b = Progress { sequence: 1 }.encode();
        assert!(matches!(
            decode(&b[..12]),
            Err(ProtocolError::BadLength { .. })
        ));
        let mut b = Progress { sequence: 1 }.encode();
        b[6] = 42;
        assert_eq!(decode(&b), Err(ProtocolError::UnknownKind(42)));
    }
}

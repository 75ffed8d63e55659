//! Writes the seed corpora, `fuzz/seeds/TARGET/NAME`, with the library's
//! own encoders (`Header::encode`, `Record::encode`, `FrameMeta::checksum`,
//! the protocol's `encode`s), so every fuzzer starts from inputs that get
//! deep: valid headers and records, every protocol message, small valid
//! recordings with wrapped, torn, in-flight and version-1 slots.
//!
//! Run from the repository: `cargo run --manifest-path fuzz/Cargo.toml
//! --example make_seeds` (scripts/fuzz.sh seeds). The output is committed;
//! rerun it when an input layout in `pagecam_fuzz` changes.

use std::path::{Path, PathBuf};

use pagecam::format::{
    fourcc, FrameFormat, FrameMeta, Header, Interval, Layout, OnFull, Record, GREY, NV12, YUYV,
};
use pagecam::protocol::{
    End, EndReason, FrameNotice, Hello, Progress, STORE_MEMFD_RING, STORE_RECORDING_FILE,
};
use pagecam_fuzz::{fix_header_crc, flags, Bytes, Recording, Shape};

fn out_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds")
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = out_dir().join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn header(format: FrameFormat, slots: u32, on_full: OnFull, source: &str) -> Header {
    Header {
        format,
        interval: Interval::from_fps(30),
        layout: Layout::new(format.frame_size, slots).unwrap(),
        on_full,
        created_ns: 1_700_000_000_000_000_000,
        source: source.into(),
    }
}

fn headers() {
    let yuyv = FrameFormat::uncompressed(YUYV, 640, 480).unwrap();
    let h = header(yuyv, 10, OnFull::Wrap, "test pattern YUYV 640x480");
    write("header", "yuyv-640x480-wrap", &h.encode());
    let grey = FrameFormat::uncompressed(GREY, 320, 240).unwrap();
    let mut v1 = header(grey, 3, OnFull::Stop, "vivid /dev/video0").encode();
    v1[8..12].copy_from_slice(&1u32.to_le_bytes());
    fix_header_crc(&mut v1);
    write("header", "grey-stop-version-1", &v1);
    let nv12 = FrameFormat::uncompressed(NV12, 1920, 1080).unwrap();
    let mut h = header(nv12, 1, OnFull::Stop, "");
    h.interval = Interval {
        numerator: 1001,
        denominator: 30000,
    };
    write("header", "nv12-1080p", &h.encode());
    let mjpg = FrameFormat {
        fourcc: fourcc(b"MJPG"),
        width: 1280,
        height: 720,
        bytes_per_line: 0,
        frame_size: 1 << 20,
    };
    write(
        "header",
        "mjpg",
        &header(mjpg, 100, OnFull::Wrap, "usb camera ½").encode(),
    );
}

fn record(generation: u64, sequence: u64, session: u32, data: &[u8]) -> Record {
    let meta = FrameMeta {
        sequence,
        source_sequence: sequence + 7,
        timestamp_ns: 1_000_000 + sequence * 33_333_333,
        wall_ns: 1_700_000_000_000_000_000 + sequence * 33_333_333,
        bytes_used: data.len() as u32,
        flags: 0,
        session,
    };
    Record {
        generation,
        meta,
        crc: meta.checksum(crc32c::crc32c(data)),
    }
}

fn records() {
    let r = record(10, 5, 1, b"frame data");
    let b = r.encode();
    write("record", "intact", &b);
    write("record", "blank", &[0u8; 64]);
    // A claim caught before its checksum: odd generation, old checksum.
    let mut claim = b;
    claim[..8].copy_from_slice(&11u64.to_le_bytes());
    write("record", "claim-in-flight", &claim);
    // A commit caught between its checksum and its generation.
    let mut commit = Record {
        generation: 12,
        ..r
    }
    .encode();
    commit[..8].copy_from_slice(&11u64.to_le_bytes());
    write("record", "commit-in-flight", &commit);
    write(
        "record",
        "odd-intact",
        &Record {
            generation: 13,
            ..r
        }
        .encode(),
    );
    // Version 1: no record checksum.
    let mut v1 = b;
    v1[60..].fill(0);
    write("record", "version-1", &v1);
    let mut torn = b;
    torn[20] ^= 0x40;
    write("record", "damaged", &torn);
}

fn messages() {
    let format = FrameFormat::uncompressed(YUYV, 640, 480).unwrap();
    for (name, kind) in [
        ("hello-file", STORE_RECORDING_FILE),
        ("hello-ring", STORE_MEMFD_RING),
    ] {
        let h = Hello {
            store_kind: kind,
            layout: Layout::new(format.frame_size, 8).unwrap(),
            format,
            client_id: 3,
            next_sequence: 1234,
        };
        write("protocol", name, &h.encode());
    }
    let f = FrameNotice {
        slot: 6,
        flags: 1,
        generation: 10,
        sequence: 99,
        timestamp_ns: 123,
        ready_ns: 456,
        bytes_used: 614_400,
    };
    write("protocol", "frame", &f.encode());
    for (name, reason) in [
        ("end-finished", EndReason::Finished),
        ("end-error", EndReason::Error),
        ("end-refused", EndReason::Refused),
    ] {
        write("protocol", name, &End { reason, frames: 77 }.encode());
    }
    write("protocol", "progress", &Progress { sequence: 88 }.encode());
}

fn units() {
    for (i, s) in [
        "30",
        "29.97",
        "30000/1001",
        "12.5",
        "0",
        "256M",
        "1.5G",
        "500MB",
        "4096",
        "10",
        "00:01:30.5",
        "500ms",
        "2min",
        "1h 30m",
        "yuyv",
        "RGB24",
        "i420",
        "Y10B",
        "moving",
        "moving:60,black:30,frozen:90,soft:5",
    ]
    .iter()
    .enumerate()
    {
        write("units", &format!("{i:02}"), s.as_bytes());
    }
}

/// A frame of one slot: its record and data.
struct Slot {
    generation: u64,
    sequence: u64,
    session: u32,
    data: Vec<u8>,
    /// Damage after encoding: flip a data byte (torn), or make the record
    /// a claim caught before its checksum.
    torn: bool,
    claim: bool,
}

fn slot(sequence: u64, session: u32, len: usize) -> Slot {
    Slot {
        generation: 2 * (sequence / 4 + 1),
        sequence,
        session,
        data: (0..len).map(|i| (i as u64 * 7 + sequence) as u8).collect(),
        torn: false,
        claim: false,
    }
}

/// A plausible-recording input (`pagecam_fuzz::Recording::build`): the
/// shape, the records, then every slot's data (same length each).
fn recording_input(shape: Shape, slots: &[Option<Slot>]) -> Vec<u8> {
    let rec = Recording::build(shape, &mut Bytes::new(&[])).expect("a valid shape");
    let n = rec.layout().slot_count as usize;
    assert_eq!(slots.len(), n);
    let len = slots
        .iter()
        .flatten()
        .map(|s| s.data.len())
        .max()
        .unwrap_or(0);
    let mut out = shape.to_bytes();
    let mut data = Vec::new();
    for s in slots {
        let mut d = vec![0u8; len];
        let mut r = [0u8; 64];
        if let Some(s) = s {
            d[..s.data.len()].copy_from_slice(&s.data);
            r = record(s.generation, s.sequence, s.session, &s.data).encode();
            if s.torn {
                d[0] ^= 1;
            }
            if s.claim {
                r[..8].copy_from_slice(&(s.generation + 1).to_le_bytes());
            }
        }
        out.extend(r);
        data.extend(d);
    }
    out.extend(data);
    out
}

fn shape(flags: u8, slots: u8) -> Shape {
    Shape {
        flags,
        slots: slots - 1,
        pixfmt: 0, // YUYV
        width: 63, // 64 pixels
        height: 15,
        interval: 0,
        created_ns: 1_700_000_000_000_000_000,
        ..Default::default()
    }
}

fn recordings() -> Vec<(&'static str, Vec<u8>)> {
    let mut v = Vec::new();
    // Wrapped once: slots hold 4, 5, 6, 3.
    v.push((
        "wrap",
        recording_input(
            shape(flags::WRAP, 4),
            &[
                Some(slot(4, 1, 200)),
                Some(slot(5, 1, 200)),
                Some(slot(6, 1, 200)),
                Some(slot(3, 1, 200)),
            ],
        ),
    ));
    v.push((
        "stop-partial",
        recording_input(
            shape(0, 4),
            &[Some(slot(0, 1, 100)), Some(slot(1, 1, 100)), None, None],
        ),
    ));
    v.push((
        "stop-full",
        recording_input(
            shape(0, 3),
            &[
                Some(slot(0, 1, 64)),
                Some(slot(1, 1, 64)),
                Some(slot(2, 2, 64)),
            ],
        ),
    ));
    let mut torn = slot(2, 1, 64);
    torn.torn = true;
    let mut claim = slot(3, 1, 64);
    claim.claim = true;
    v.push((
        "torn-and-in-flight",
        recording_input(
            shape(flags::WRAP, 4),
            &[
                Some(slot(0, 1, 64)),
                Some(slot(1, 1, 64)),
                Some(torn),
                Some(claim),
            ],
        ),
    ));
    // Two sessions, the second after a resume: sequences continue.
    v.push((
        "sessions",
        recording_input(
            shape(flags::WRAP, 5),
            &[
                Some(slot(0, 1, 32)),
                Some(slot(1, 1, 32)),
                Some(slot(2, 2, 32)),
                Some(slot(3, 2, 32)),
                None,
            ],
        ),
    ));
    v.push((
        "version-1",
        recording_input(
            shape(flags::V1 | flags::WRAP, 2),
            &[Some(slot(0, 1, 50)), Some(slot(1, 1, 50))],
        ),
    ));
    v.push(("empty", recording_input(shape(0, 2), &[None, None])));
    let mut grey = shape(flags::WRAP, 2);
    grey.pixfmt = 2;
    v.push((
        "grey",
        recording_input(grey, &[Some(slot(8, 3, 16)), Some(slot(9, 3, 16))]),
    ));
    v
}

fn main() {
    // (Overwrites its own files; the regression-* reproducers of findings
    // stay.)
    headers();
    records();
    messages();
    units();
    let recs = recordings();
    for (name, input) in &recs {
        write("resume", name, input);
        // `recording` reads one u32 (slots to probe) before the shape.
        let mut r = 1u32.to_le_bytes().to_vec();
        r.extend(input);
        write("recording", name, &r);
    }
    // `hello`: switches, the hello capture would send for the store (made
    // with the library's encoder), two notices, then the store.
    for (name, input) in &recs {
        let shape = Shape::read(&mut Bytes::new(input));
        let rec = Recording::build(shape, &mut Bytes::new(&input[pagecam_fuzz::SHAPE_LEN..]))
            .expect("a valid shape");
        for (kind, sw) in [("file", 0u8), ("ring", 1 << 4)] {
            let hello = Hello {
                store_kind: if sw == 0 {
                    STORE_RECORDING_FILE
                } else {
                    STORE_MEMFD_RING
                },
                layout: rec.layout(),
                format: rec.header.format,
                client_id: 1,
                next_sequence: 100,
            };
            let mut h = vec![sw];
            h.extend(hello.encode());
            h.push(3);
            // Read slot 0 at its own generation and length; slot 1 at a
            // stale generation; one slot past the end.
            h.extend([0b111, 0, 0, 0, 0]);
            h.extend([0u8; 12]);
            h.extend([0b001, 1, 0, 0, 0]);
            h.extend(2u64.to_le_bytes());
            h.extend(64u32.to_le_bytes());
            h.push(0b001);
            h.extend(rec.layout().slot_count.to_le_bytes());
            h.extend([0u8; 12]);
            h.extend(input);
            write("hello", &format!("{name}-{kind}"), &h);
        }
    }
    println!("seeds written to {}", out_dir().display());
}

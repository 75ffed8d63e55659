//! Properties of the pure encodings and of resume planning, on generated
//! inputs (proptest), where fuzzing does not fit: round trips of what the
//! library itself encodes, checksum sensitivity, layouts, and "resume never
//! overwrites a newer valid frame" on real recording files made with the
//! library. Hostile bytes are the fuzz targets' job (fuzz/README.md).
//!
//! The regression tests at the end pin what the fuzzers found (F1... in
//! fuzz/README.md); each failed before its fix.

use std::os::unix::fs::FileExt;
use std::path::Path;

use pagecam::format::{
    fourcc, FrameFormat, FrameMeta, Header, Interval, Layout, OnFull, Record, RecordCheck, GREY,
    HEADER_SIZE, MAX_DIMENSION, NV12, PAGE, RECORD_SIZE, SOURCE_DESC_LEN, YUYV,
};
use pagecam::protocol::{
    decode, End, EndReason, FrameNotice, Hello, Message, Progress, STORE_MEMFD_RING,
    STORE_RECORDING_FILE,
};
use pagecam::recording::{self, Prealloc, RecordingError, RecordingReader, SlotStatus};
use proptest::prelude::*;

// ---- strategies -------------------------------------------------------

/// (fourcc, bytes per pixel of the first plane, total bytes per pixel x 2)
/// of the formats the header check knows (docs/FORMAT.md), and one it
/// does not.
const FORMATS: [(&[u8; 4], u64, u64); 7] = [
    (b"YUYV", 2, 4),
    (b"UYVY", 2, 4),
    (b"GREY", 1, 2),
    (b"NV12", 1, 3),
    (b"YU12", 1, 3),
    (b"RGB3", 3, 6),
    (b"MJPG", 0, 0),
];

/// The largest frame whose slot size still fits the header's u32 field
/// (see the regression test for F5).
const LARGEST_FRAME: u32 = u32::MAX - (PAGE as u32 - 1);

/// A frame format the header check accepts.
fn plausible_format() -> impl Strategy<Value = FrameFormat> {
    (
        0..FORMATS.len(),
        1..=MAX_DIMENSION,
        1..=MAX_DIMENSION,
        0..=4096u32,
        any::<u32>(),
    )
        .prop_filter_map("frame too large", |(i, w, h, pad, extra)| {
            let (code, bpp, total2) = FORMATS[i];
            let (bpl, size) = if bpp == 0 {
                // Compressed: no line structure; V4L2 drivers report 0.
                (0, 1 + extra as u64 % LARGEST_FRAME as u64)
            } else {
                let bpl = w as u64 * bpp + pad as u64;
                let least = bpl * h as u64 * total2 / (2 * bpp);
                (bpl, least + (extra % 4096) as u64)
            };
            (size <= LARGEST_FRAME as u64).then_some(FrameFormat {
                fourcc: fourcc(code),
                width: w,
                height: h,
                bytes_per_line: bpl as u32,
                frame_size: size as u32,
            })
        })
}

/// A valid interval: a zero numerator, or a non-zero denominator.
fn interval() -> impl Strategy<Value = Interval> {
    prop_oneof![
        (any::<u32>(), 1..=u32::MAX),
        Just((0, 0)),
        (Just(0), any::<u32>())
    ]
    .prop_map(|(numerator, denominator)| Interval {
        numerator,
        denominator,
    })
}

/// A source description as a user or driver names it: any text but NUL
/// (the field is NUL-padded), often longer than the 128 bytes kept.
fn source() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>().prop_filter("NUL", |c| *c != '\0'), 0..80)
        .prop_map(|v| v.into_iter().collect())
}

fn header() -> impl Strategy<Value = Header> {
    (
        plausible_format(),
        prop_oneof![1..=64u32, 1..=1_000_000u32, any::<u32>()],
        interval(),
        any::<bool>(),
        any::<u64>(),
        source(),
    )
        .prop_filter_map("file size overflows", |(f, n, interval, wrap, ns, src)| {
            Some(Header {
                format: f,
                interval,
                layout: Layout::new(f.frame_size, n).ok()?,
                on_full: if wrap { OnFull::Wrap } else { OnFull::Stop },
                created_ns: ns,
                source: src,
            })
        })
}

fn meta() -> impl Strategy<Value = FrameMeta> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(sequence, source_sequence, timestamp_ns, wall_ns, bytes_used, flags, session)| {
                FrameMeta {
                    sequence,
                    source_sequence,
                    timestamp_ns,
                    wall_ns,
                    bytes_used,
                    flags,
                    session,
                }
            },
        )
}

fn record() -> impl Strategy<Value = Record> {
    (any::<u64>(), meta(), any::<u32>()).prop_map(|(generation, meta, crc)| Record {
        generation,
        meta,
        crc,
    })
}

/// What the header keeps of a source description: at most 128 bytes, cut
/// at a character boundary.
fn kept(s: &str) -> String {
    let mut end = s.len().min(SOURCE_DESC_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

// ---- encodings ----------------------------------------------------------

proptest! {
    /// Every header the library writes reads back as the same header (its
    /// source description cut to what the header holds), as version 2.
    #[test]
    fn header_round_trip(h in header()) {
        let (back, version) = Header::decode_versioned(&h.encode()).unwrap();
        prop_assert_eq!(version, 2);
        prop_assert_eq!(back, Header { source: kept(&h.source), ..h });
    }

    /// A record reads back as itself; its own checksum says intact (or
    /// blank, for the all-zero record).
    #[test]
    fn record_round_trip(r in record()) {
        let b = r.encode();
        prop_assert_eq!(Record::decode(&b), Some(r));
        let want = if r == Record::default() { RecordCheck::Blank } else { RecordCheck::Intact };
        prop_assert_eq!(Record::check(&b), want);
    }

    /// Every single-bit flip of an intact record is damage, except the two
    /// that make exactly the states a writer passes through (docs/FORMAT.md,
    /// "Index record"): generation g (even) -> g+1, a claim caught before
    /// its checksum; generation g (odd, bit 1 clear) -> g+2, a claim after
    /// a crash (g-2). Those read as in flight. Never blank, never intact.
    #[test]
    fn every_bit_flip_of_an_intact_record_is_caught(
        r in record().prop_filter("blank", |r| *r != Record::default())
    ) {
        let b = r.encode();
        let g = r.generation;
        for bit in 0..RECORD_SIZE as usize * 8 {
            let mut d = b;
            d[bit / 8] ^= 1 << (bit % 8);
            let in_flight = (bit == 0 && g % 2 == 0) || (bit == 1 && g % 2 == 1 && g & 2 == 0);
            let want = if in_flight { RecordCheck::InFlight } else { RecordCheck::Damaged };
            prop_assert_eq!(Record::check(&d), want, "bit {} of {:?}", bit, r);
        }
    }

    /// The frame checksum covers every metadata field and the data: any
    /// bit flip in either changes it (CRC32C catches every single-bit
    /// error), and so does a field replaced by another value (but for the
    /// 2^-32 chance of a collision in a 64-bit field).
    #[test]
    fn frame_checksum_changes_with_any_field(
        m in meta(), data in prop::collection::vec(any::<u8>(), 1..64), other in meta()
    ) {
        let c = m.checksum(crc32c::crc32c(&data));
        let fields: [fn(&mut FrameMeta, &FrameMeta); 7] = [
            |m, o| m.sequence = o.sequence,
            |m, o| m.source_sequence = o.source_sequence,
            |m, o| m.timestamp_ns = o.timestamp_ns,
            |m, o| m.wall_ns = o.wall_ns,
            |m, o| m.bytes_used = o.bytes_used,
            |m, o| m.flags = o.flags,
            |m, o| m.session = o.session,
        ];
        for (i, set) in fields.iter().enumerate() {
            let mut changed = m;
            set(&mut changed, &other);
            if changed != m {
                prop_assert_ne!(changed.checksum(crc32c::crc32c(&data)), c, "field {}", i);
            }
        }
        let bytes = m.encode_meta();
        for bit in 0..(bytes.len() - 4) * 8 {
            // (bytes 44..48 of the metadata are the reserved record bytes)
            let mut d = bytes;
            d[bit / 8] ^= 1 << (bit % 8);
            let flipped = crc32c::crc32c_append(crc32c::crc32c(&data), &d);
            prop_assert_ne!(flipped, c, "metadata bit {}", bit);
        }
        for bit in 0..data.len() * 8 {
            let mut d = data.clone();
            d[bit / 8] ^= 1 << (bit % 8);
            prop_assert_ne!(m.checksum(crc32c::crc32c(&d)), c, "data bit {}", bit);
        }
    }

    /// A layout never overflows: it is refused, or every region is
    /// page-aligned, in order, and the file is exactly header, index and
    /// slots long.
    #[test]
    fn layouts_never_overflow(
        frame in prop_oneof![1..=1u32 << 24, any::<u32>()],
        slots in prop_oneof![1..=4096u32, any::<u32>()],
    ) {
        let exact = (frame as u128).div_ceil(PAGE as u128) * PAGE as u128 * slots as u128
            + (HEADER_SIZE as u128 + slots as u128 * RECORD_SIZE as u128).div_ceil(PAGE as u128)
                * PAGE as u128;
        match Layout::new(frame, slots) {
            Ok(l) => {
                prop_assert_eq!(l.file_size as u128, exact);
                prop_assert_eq!(l.slot_size % PAGE, 0);
                prop_assert_eq!(l.data_offset % PAGE, 0);
                prop_assert!(l.slot_size >= frame as u64);
                prop_assert_eq!(l.index_offset, HEADER_SIZE);
                prop_assert!(l.record_offset(slots - 1) + RECORD_SIZE <= l.data_offset);
                prop_assert_eq!(l.slot_offset(slots - 1) + l.slot_size, l.file_size);
            }
            Err(_) => prop_assert!(frame == 0 || slots == 0 || exact > u64::MAX as u128),
        }
    }

    /// `Layout::fitting` never overflows and never gives a file larger than
    /// the capacity it was asked to fit.
    #[test]
    fn fitting_layouts_fit(frame in any::<u32>(), capacity in any::<u64>()) {
        if let Ok(l) = Layout::fitting(frame, capacity) {
            prop_assert!(l.file_size <= capacity, "{:?} in {}", l, capacity);
            prop_assert!(l.slot_count >= 1);
            prop_assert_eq!(Layout::new(frame, l.slot_count), Ok(l));
        }
    }

    /// Every protocol message reads back as itself, and any other length
    /// of it is refused.
    #[test]
    fn protocol_round_trips(
        kind in prop_oneof![Just(STORE_RECORDING_FILE), Just(STORE_MEMFD_RING)],
        format in plausible_format(),
        slots in 1..=u32::MAX,
        ids in (any::<u64>(), any::<u64>()),
        layout_bits in (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        notice in (any::<u32>(), any::<u32>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<u32>()),
        reason in prop_oneof![Just(EndReason::Finished), Just(EndReason::Error), Just(EndReason::Refused)],
        count in any::<u64>(),
        extra in any::<u8>(),
    ) {
        // The hello carries any geometry: it is checked against the
        // store's header, not when decoded.
        let hello = Hello {
            store_kind: kind,
            layout: Layout {
                slot_count: slots,
                slot_size: layout_bits.0,
                index_offset: layout_bits.1,
                data_offset: layout_bits.2,
                file_size: layout_bits.3,
            },
            format,
            client_id: ids.0,
            next_sequence: ids.1,
        };
        let (slot, flags, generation, sequence, timestamp_ns, ready_ns, bytes_used) = notice;
        let frame = FrameNotice { slot, flags, generation, sequence, timestamp_ns, ready_ns, bytes_used };
        let end = End { reason, frames: count };
        let progress = Progress { sequence: count };
        let all: [(Message, Vec<u8>); 4] = [
            (Message::Hello(hello), hello.encode().to_vec()),
            (Message::Frame(frame), frame.encode().to_vec()),
            (Message::End(end), end.encode().to_vec()),
            (Message::Progress(progress), progress.encode().to_vec()),
        ];
        for (m, b) in all {
            prop_assert_eq!(decode(&b), Ok(m));
            for k in 0..b.len() {
                prop_assert!(decode(&b[..k]).is_err(), "{:?} cut to {} bytes", m, k);
            }
            let mut longer = b.clone();
            longer.push(extra);
            prop_assert!(decode(&longer).is_err(), "{:?} with a byte more", m);
        }
    }
}

// ---- resume -------------------------------------------------------------

/// What one slot of a generated recording holds.
#[derive(Clone, Debug)]
enum Plan {
    Empty,
    /// A committed frame, intact.
    Valid {
        seq: u64,
        session: u32,
        len: usize,
    },
    /// Committed, then a data byte changed (torn by a power cut).
    Torn {
        seq: u64,
        session: u32,
        len: usize,
    },
    /// A claim caught before its checksum: odd generation (in flight).
    Claim {
        seq: u64,
        session: u32,
        len: usize,
    },
    /// Committed, then one bit of the metadata or frame checksum flipped.
    Damaged {
        seq: u64,
        session: u32,
        len: usize,
        bit: usize,
    },
    /// Committed with a checksum over other data.
    WrongChecksum {
        seq: u64,
        session: u32,
        len: usize,
    },
}

fn sequence() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![8 => 0..40u64, 1 => (u64::MAX - 3)..=u64::MAX, 1 => any::<u64>()]
}

fn session() -> impl Strategy<Value = u32> + Clone {
    prop_oneof![8 => 1..5u32, 1 => Just(u32::MAX), 1 => any::<u32>()]
}

fn plan() -> impl Strategy<Value = Plan> {
    let frame = (sequence(), session(), 0..1500usize);
    prop_oneof![
        2 => Just(Plan::Empty),
        6 => frame.clone().prop_map(|(seq, session, len)| Plan::Valid { seq, session, len }),
        1 => frame.clone().prop_map(|(seq, session, len)| Plan::Torn { seq, session, len: len.max(1) }),
        1 => frame.clone().prop_map(|(seq, session, len)| Plan::Claim { seq, session, len }),
        1 => (frame.clone(), 64..480usize).prop_map(|((seq, session, len), bit)| Plan::Damaged { seq, session, len, bit }),
        1 => frame.prop_map(|(seq, session, len)| Plan::WrongChecksum { seq, session, len }),
    ]
}

fn frame_data(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(31).wrapping_add(seq) as u8)
        .collect()
}

/// Generation of the frames in a generated recording: anything even.
fn generation(seq: u64) -> u64 {
    2 + 2 * (seq % 1000)
}

/// Write one slot as the plan says (record and data), with the library's
/// encoders.
fn write_slot(f: &std::fs::File, h: &Header, slot: u32, plan: &Plan) {
    let (seq, session, len) = match *plan {
        Plan::Empty => return,
        Plan::Valid { seq, session, len }
        | Plan::Torn { seq, session, len }
        | Plan::Claim { seq, session, len }
        | Plan::Damaged {
            seq, session, len, ..
        }
        | Plan::WrongChecksum { seq, session, len } => (seq, session, len),
    };
    let mut data = frame_data(seq, len);
    let meta = FrameMeta {
        sequence: seq,
        source_sequence: seq.wrapping_add(100),
        timestamp_ns: seq.wrapping_mul(33_000_000),
        wall_ns: 1,
        bytes_used: len as u32,
        flags: 0,
        session,
    };
    let crc = match plan {
        Plan::WrongChecksum { .. } => meta.checksum(crc32c::crc32c(b"other data")),
        _ => meta.checksum(crc32c::crc32c(&data)),
    };
    let mut r = Record {
        generation: generation(seq),
        meta,
        crc,
    }
    .encode();
    match plan {
        Plan::Torn { .. } => data[len / 2] ^= 0x20,
        Plan::Claim { .. } => r[..8].copy_from_slice(&(generation(seq) + 1).to_le_bytes()),
        Plan::Damaged { bit, .. } => {
            // Metadata and frame checksum only (bytes 8..60), not the
            // reserved bytes 52..56 (see F3).
            let bit = if (52 * 8..56 * 8).contains(bit) {
                bit - 32
            } else {
                *bit
            };
            r[bit / 8] ^= 1 << (bit % 8);
        }
        _ => {}
    }
    f.write_all_at(&data, h.layout.slot_offset(slot)).unwrap();
    f.write_all_at(&r, h.layout.record_offset(slot)).unwrap();
}

fn scratch_dir() -> tempfile::TempDir {
    // tmpfs where there is one: every case creates and syncs a recording.
    if Path::new("/dev/shm").is_dir() {
        if let Ok(d) = tempfile::tempdir_in("/dev/shm") {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

fn small_header(slots: u32, on_full: OnFull, grey: bool) -> Header {
    let format = if grey {
        FrameFormat::uncompressed(GREY, 64, 32).unwrap()
    } else {
        FrameFormat::uncompressed(YUYV, 32, 16).unwrap()
    };
    Header {
        format,
        interval: Interval::from_fps(30),
        layout: Layout::new(format.frame_size, slots).unwrap(),
        on_full,
        created_ns: 1,
        source: "properties".into(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// Resume never overwrites a newer valid frame: after frames, torn,
    /// in-flight and damaged slots at arbitrary slots, sequences and
    /// sessions, `resume` continues right after the newest valid frame
    /// (next sequence = newest + 1, the slot after it), with a session
    /// above every session any committed record names, and in stop mode a
    /// budget of the slots after the newest frame; or it refuses, when the
    /// sequence or session numbers are exhausted.
    #[test]
    fn resume_never_overwrites_a_newer_valid_frame(
        plans in prop::collection::vec(plan(), 1..=8),
        wrap in any::<bool>(),
        grey in any::<bool>(),
        version_1 in any::<bool>(),
    ) {
        let dir = scratch_dir();
        let path = dir.path().join("r.pcam");
        let n = plans.len() as u32;
        let h = small_header(n, if wrap { OnFull::Wrap } else { OnFull::Stop }, grey);
        let rec = recording::create(&path, &h, Prealloc::Fallocate).unwrap().publish().unwrap();
        if version_1 {
            let mut b = h.encode();
            b[8..12].copy_from_slice(&1u32.to_le_bytes());
            let crc = crc32c::crc32c(&b[..4092]);
            b[4092..].copy_from_slice(&crc.to_le_bytes());
            rec.file.write_all_at(&b, 0).unwrap();
        }
        for (slot, p) in plans.iter().enumerate() {
            write_slot(&rec.file, &h, slot as u32, p);
        }
        drop(rec);

        let newest = plans
            .iter()
            .filter_map(|p| match p { Plan::Valid { seq, .. } => Some(*seq), _ => None })
            .max();
        // Committed-looking records (even generation), valid or not.
        let top_session = plans
            .iter()
            .filter_map(|p| match *p {
                Plan::Valid { session, .. }
                | Plan::Torn { session, .. }
                | Plan::WrongChecksum { session, .. } => Some(session),
                // A damaged record keeps its (even) generation; its session
                // may be the damaged field.
                Plan::Damaged { session, bit, .. } => {
                    let bit = if (52 * 8..56 * 8).contains(&bit) { bit - 32 } else { bit };
                    Some(if (48 * 8..52 * 8).contains(&bit) { session ^ 1 << (bit % 32) } else { session })
                }
                _ => None,
            })
            .max()
            .unwrap_or(0);

        let r = match recording::resume(&path) {
            Ok(r) => r,
            Err(RecordingError::Format { error, .. }) => {
                let e = error.to_string();
                prop_assert!(
                    (e.contains("session") && top_session == u32::MAX)
                        || (e.contains("sequence") && newest == Some(u64::MAX)),
                    "refused: {}", e
                );
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(format!("resume failed: {e}"))),
        };
        let s = r.start;
        drop(r);
        prop_assert!(s.session > top_session);
        prop_assert!(s.next_slot < n);
        let scan = RecordingReader::open(&path).unwrap().scan().unwrap();
        let valid: Vec<(u32, u64)> = scan.valid.iter().map(|(slot, m)| (*slot, m.sequence)).collect();
        // The library's verdicts are the plan's.
        let planned: Vec<(u32, u64)> = {
            let mut v: Vec<_> = plans
                .iter()
                .enumerate()
                .filter_map(|(i, p)| match p { Plan::Valid { seq, .. } => Some((i as u32, *seq)), _ => None })
                .collect();
            v.sort_by_key(|(_, seq)| *seq);
            v
        };
        let mut got = valid.clone();
        got.sort();
        let mut want = planned.clone();
        want.sort();
        prop_assert_eq!(got, want);
        match newest {
            None => prop_assert_eq!((s.next_sequence, s.next_slot), (0, 0)),
            Some(top) => {
                prop_assert_eq!(s.next_sequence, top + 1);
                let before = (s.next_slot + n - 1) % n;
                prop_assert!(valid.contains(&(before, top)), "slot {} does not hold {}", before, top);
            }
        }
        // The slot the next session writes first holds no valid frame as
        // new as what it will write.
        for (slot, seq) in &valid {
            if *slot == s.next_slot {
                prop_assert!(*seq < s.next_sequence);
            }
        }
        match h.on_full {
            OnFull::Wrap => prop_assert_eq!(s.budget, None),
            OnFull::Stop => {
                let want = match newest {
                    Some(_) if s.next_slot == 0 => 0,
                    _ => (n - s.next_slot) as u64,
                };
                prop_assert_eq!(s.budget, Some(want));
            }
        }
        // Every slot is accounted for, and nothing is "busy" in a file
        // nobody writes.
        prop_assert!(scan.busy.is_empty());
        prop_assert_eq!(
            scan.valid.len() + scan.incomplete.len() + scan.corrupt.len() + scan.empty as usize,
            n as usize
        );
    }
}

// ---- regressions: the findings of fuzz/README.md, each failed before its fix

/// F1: `parse_rate` turned rates below about 0.005 fps into an interval
/// with a zero denominator (`0.004` -> 1001/0, `.000350` -> 1001/0): a
/// header that cannot be read back.
#[test]
fn a_slow_frame_rate_never_gives_a_zero_denominator() {
    for s in ["0.004", ".000350", "0.0001"] {
        match pagecam::units::parse_rate(s) {
            Ok(Some(i)) => {
                assert!(i.denominator != 0, "{s} -> {i:?}");
                let mut h = small_header(1, OnFull::Stop, false);
                h.interval = i;
                assert!(
                    Header::decode(&h.encode()).is_ok(),
                    "{s}: unreadable header"
                );
            }
            Ok(None) => panic!("{s} is not 0"),
            Err(_) => {} // refused: fine too
        }
    }
}

/// F2: a header of a pixel format the check does not know (MJPG) may
/// claim any bytes per line; `stats::Analyzer::new` (pagecam-analyzer
/// watch) then allocates a line of that size: 4 GiB from a hostile capture.
#[test]
fn a_header_with_lines_longer_than_its_frames_is_refused() {
    let format = FrameFormat {
        fourcc: fourcc(b"MJPG"),
        width: 640,
        height: 480,
        bytes_per_line: u32::MAX,
        frame_size: 4096,
    };
    let h = Header {
        format,
        interval: Interval::from_fps(30),
        layout: Layout::new(format.frame_size, 2).unwrap(),
        on_full: OnFull::Wrap,
        created_ns: 0,
        source: String::new(),
    };
    assert!(
        Header::decode(&h.encode()).is_err(),
        "a header with 4 GiB lines of 4 KiB frames was accepted"
    );
}

/// F3: docs/FORMAT.md: the frame checksum continues "over record bytes
/// 8..56", which include the reserved bytes 52..56; the library computes
/// it over the decoded metadata (reserved taken as zero). So a record
/// whose reserved bytes are not zero is valid when its checksum does not
/// match the documented one, and corrupt when it does.
#[test]
fn reserved_record_bytes_are_checked() {
    let dir = scratch_dir();
    let path = dir.path().join("r.pcam");
    let h = small_header(1, OnFull::Wrap, false);
    let rec = recording::create(&path, &h, Prealloc::Fallocate)
        .unwrap()
        .publish()
        .unwrap();
    let data = frame_data(0, 100);
    let meta = FrameMeta {
        sequence: 0,
        bytes_used: 100,
        session: 1,
        ..Default::default()
    };
    let mut r = Record {
        generation: 2,
        meta,
        crc: meta.checksum(crc32c::crc32c(&data)),
    }
    .encode();
    // Reserved bytes set, the record checksum made to match them.
    r[52] = 0x5a;
    let crc = crc32c::crc32c(&r[..60]);
    r[60..].copy_from_slice(&crc.to_le_bytes());
    // No writer sets them: the record is damaged, whatever its checksums.
    assert_eq!(Record::check(&r), RecordCheck::Damaged);
    rec.file
        .write_all_at(&data, h.layout.slot_offset(0))
        .unwrap();
    rec.file
        .write_all_at(&r, h.layout.record_offset(0))
        .unwrap();
    drop(rec);
    let status = RecordingReader::open(&path).unwrap().check_slot(0).unwrap();
    assert!(
        matches!(status, SlotStatus::Corrupt { .. }),
        "a record with reserved bytes set: {status:?}"
    );
}

/// F4: a source description that is not UTF-8 decodes with U+FFFD per bad
/// byte (three bytes each), longer than the header holds: re-encoding the
/// decoded header cuts it, so the round trip changes the header.
#[test]
fn a_decoded_header_re_encodes_to_itself() {
    let mut b = small_header(1, OnFull::Stop, false).encode();
    b[96..96 + SOURCE_DESC_LEN].fill(0xff);
    let crc = crc32c::crc32c(&b[..4092]);
    b[4092..].copy_from_slice(&crc.to_le_bytes());
    let h = Header::decode(&b).unwrap();
    assert_eq!(Header::decode(&h.encode()).unwrap(), h);
}

/// F5: `Header::encode` stores the slot size in 32 bits; a frame size
/// above 4 GiB - 4 KiB (possible for formats the geometry check does not
/// know) makes the slot size 4 GiB, stored as 0: the header written cannot
/// be read back.
#[test]
fn a_header_with_the_largest_frames_reads_back() {
    let format = FrameFormat {
        fourcc: fourcc(b"MJPG"),
        width: 640,
        height: 480,
        bytes_per_line: 0,
        frame_size: u32::MAX,
    };
    // Such slots cannot be described: refused when the layout is made.
    assert!(Layout::new(format.frame_size, 1).is_err());
    let largest = Layout::new(u32::MAX - 4095, 1).unwrap();
    let h = Header {
        format: FrameFormat {
            frame_size: u32::MAX - 4095,
            ..format
        },
        interval: Interval::from_fps(30),
        layout: largest,
        on_full: OnFull::Stop,
        created_ns: 0,
        source: String::new(),
    };
    assert_eq!(Header::decode(&h.encode()), Ok(h));
}

/// F6: `RecordingReader::check_slot`/`valid_frame` do not check the slot
/// number: for a slot past the last one, they read frame data as a record
/// and, with `bytes used` 0, report a frame that does not exist as valid.
#[test]
fn a_slot_past_the_recording_is_never_a_frame() {
    let dir = scratch_dir();
    let path = dir.path().join("r.pcam");
    let h = small_header(1, OnFull::Wrap, false);
    let rec = recording::create(&path, &h, Prealloc::Fallocate)
        .unwrap()
        .publish()
        .unwrap();
    // Slot 0's data holds what reads as slot 64's record (record offset
    // 4096 + 64 x 64 = the first data byte).
    let phantom = 64;
    assert_eq!(h.layout.record_offset(phantom), h.layout.slot_offset(0));
    let meta = FrameMeta {
        sequence: 7,
        bytes_used: 0,
        session: 1,
        ..Default::default()
    };
    let r = Record {
        generation: 2,
        meta,
        crc: meta.checksum(crc32c::crc32c(&[])),
    };
    rec.file
        .write_all_at(&r.encode(), h.layout.slot_offset(0))
        .unwrap();
    drop(rec);
    let reader = RecordingReader::open(&path).unwrap();
    let status = reader.check_slot(phantom);
    assert!(
        !matches!(status, Ok(SlotStatus::Valid(_))),
        "slot {phantom} of 1: {status:?}"
    );
    assert!(!matches!(reader.valid_frame(phantom), Ok(Some(_))));
}

/// The seeds of the fuzz targets stay decodable: a guard against an
/// encoder change that would silently make them shallow.
#[test]
fn fuzz_seed_headers_decode() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/header");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return; // a copy of the crate without the fuzz directory
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("regression-")
        {
            continue; // a finding's reproducer, as the target takes it
        }
        let b = std::fs::read(&p).unwrap();
        assert!(Header::decode(&b).is_ok(), "{}", p.display());
    }
    // And a plain NV12 header as pagecam writes it, for comparison.
    let f = FrameFormat::uncompressed(NV12, 64, 48).unwrap();
    let mut h = small_header(1, OnFull::Stop, false);
    h.format = f;
    h.layout = Layout::new(f.frame_size, 1).unwrap();
    assert_eq!(Header::decode(&h.encode()), Ok(h));
}

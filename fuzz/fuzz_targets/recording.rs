//! A whole recording read offline: `RecordingReader::open`, `scan`,
//! `check_slot`, `valid_frame` and the `Scan` counts, on a plausible file
//! made from the input (see `pagecam_fuzz::Shape`). Every slot's verdict
//! must be what docs/FORMAT.md says, worked out here from the bytes: in
//! particular no slot is reported valid whose frame checksum does not
//! match, and nothing is ever "busy" (nobody writes the file meanwhile).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagecam::recording::{RecordingReader, SlotStatus};
use pagecam_fuzz::{scratch, Bytes, Recording, Shape, Verdict};

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes::new(data);
    let probe = b.u32();
    let shape = Shape::read(&mut b);
    let Some(rec) = Recording::build(shape, &mut b) else {
        return;
    };
    let (file, path) = scratch();
    rec.write_to(file).expect("write the memfd");

    let reader = match RecordingReader::open(path) {
        Ok(r) => r,
        Err(e) => {
            assert!(!rec.readable(), "a readable recording refused: {e}");
            return;
        }
    };
    assert!(rec.readable(), "an unreadable recording accepted");
    let (header, version) = rec.decoded().unwrap();
    assert_eq!(reader.header(), &header);
    assert_eq!(reader.version(), version);
    // A header damaged under a valid checksum is refused, or keeps the
    // layout (the index and data are where they were written).
    assert_eq!(header.layout, rec.layout());
    let n = header.layout.slot_count;

    let scan = reader.scan().expect("scan");
    let expected = rec.verdicts(version);
    let mut status = vec![None; n as usize];
    let mut put = |slot: u32, s: SlotStatus| {
        assert!(slot < n);
        assert!(
            status[slot as usize].replace(s).is_none(),
            "slot {slot} twice"
        );
    };
    for &(slot, meta) in &scan.valid {
        put(slot, SlotStatus::Valid(meta));
    }
    for &slot in &scan.incomplete {
        put(slot, SlotStatus::Incomplete { generation: 0 });
    }
    for &slot in &scan.corrupt {
        put(slot, SlotStatus::Corrupt { generation: 0 });
    }
    assert!(scan.busy.is_empty(), "busy slots in a file nobody writes");
    let empty = status.iter().filter(|s| s.is_none()).count();
    assert_eq!(empty, scan.empty as usize);
    for (slot, (s, want)) in status.iter().zip(&expected).enumerate() {
        let s = s.unwrap_or(SlotStatus::Empty);
        assert!(
            want.agrees(&s),
            "slot {slot}: scan says {s:?}, the format {want:?}"
        );
    }
    assert!(scan
        .valid
        .windows(2)
        .all(|w| w[0].1.sequence <= w[1].1.sequence));

    // One slot at a time, as `verify` and the archive reader do: a few
    // slots per input, and `check_slot` for one input in eight (it
    // allocates a megabyte each time, which under AddressSanitizer costs
    // more than all the rest of an input; it is `read_frame`, as `scan`).
    for k in 0..n.min(3) {
        let slot = (probe.wrapping_add(k * 5)) % n;
        let want = expected[slot as usize];
        if k == 0 && probe >> 29 == 0 {
            let s = reader.check_slot(slot).expect("check_slot");
            assert!(
                want.agrees(&s),
                "slot {slot}: check_slot says {s:?}, the format {want:?}"
            );
        }
        let frame = reader.valid_frame(slot).expect("valid_frame");
        match (want, frame) {
            (Verdict::Valid(m), Some((meta, bytes))) => {
                assert_eq!(meta, m);
                assert_eq!(bytes.len(), m.bytes_used as usize);
                assert!(
                    rec.slot_has(slot, 0, &bytes),
                    "slot {slot}: other bytes read"
                );
            }
            (Verdict::Valid(_), None) => panic!("slot {slot}: valid frame not returned"),
            (_, Some(_)) => panic!("slot {slot}: {want:?}, but valid_frame returned a frame"),
            (_, None) => {}
        }
    }
    // A slot number outside the recording is never a frame.
    for slot in [n, n.saturating_add(probe % 256), probe] {
        if slot >= n && probe >> 29 == 1 {
            let s = reader.check_slot(slot);
            assert!(s.is_err(), "slot {slot} of {n}: {s:?}");
        }
    }

    let span = match (scan.valid.first(), scan.valid.last()) {
        (Some(a), Some(b)) => (b.1.sequence - a.1.sequence).saturating_add(1),
        _ => 0,
    };
    let missing = scan.missing_sequences();
    assert!(missing <= span);
    let _ = scan.source_gaps();
});

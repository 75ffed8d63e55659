//! Resume planning (`recording::resume`) on a plausible file made from the
//! input: no panic, and when it succeeds the next session starts right
//! after the newest valid frame (worked out here from the bytes): the next
//! slot holds no valid frame newer than it, the sequence continues without
//! wrapping, the session number is above every session found, and in stop
//! mode the budget is the slots after the newest frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagecam::format::OnFull;
use pagecam::recording::{resume, RecordingError};
use pagecam_fuzz::{le32, le64, scratch, Bytes, Recording, Shape, Verdict};

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes::new(data);
    let shape = Shape::read(&mut b);
    let Some(rec) = Recording::build(shape, &mut b) else {
        return;
    };
    let (file, path) = scratch();
    rec.write_to(file).expect("write the memfd");
    let result = resume(path);
    if !rec.readable() {
        assert!(result.is_err(), "an unreadable recording resumed");
        return;
    }
    let (header, version) = rec.decoded().unwrap();
    let n = header.layout.slot_count;
    let verdicts = rec.verdicts(version);
    let newest = verdicts
        .iter()
        .filter_map(|v| match v {
            Verdict::Valid(m) => Some(m.sequence),
            _ => None,
        })
        .max();
    // Sessions of every committed-looking record (even, non-zero
    // generation), valid or not: a new session must not reuse one.
    let top_session = rec
        .index
        .iter()
        .filter(|r| {
            let g = le64(&r[..], 0);
            g != 0 && g & 1 == 0
        })
        .map(|r| le32(&r[..], 48))
        .max()
        .unwrap_or(0);

    let rf = match result {
        Ok(rf) => rf,
        Err(RecordingError::Format { error, .. }) => {
            let e = error.to_string();
            if e.contains("session numbers are exhausted") {
                assert_eq!(top_session, u32::MAX);
            } else if e.contains("sequence numbers are exhausted") {
                assert_eq!(newest, Some(u64::MAX));
            } else {
                panic!("a readable recording refused: {e}");
            }
            return;
        }
        Err(e) => panic!("a readable recording refused: {e}"),
    };
    let s = rf.start;
    assert_eq!(rf.header, header);
    assert!(s.next_slot < n);
    assert!(
        s.session > top_session,
        "session {} reuses {top_session}",
        s.session
    );
    match newest {
        None => {
            assert_eq!((s.next_sequence, s.next_slot), (0, 0));
        }
        Some(seq) => {
            assert_eq!(Some(s.next_sequence), seq.checked_add(1));
            // The slot before the next one holds a newest frame.
            let before = (s.next_slot + n - 1) % n;
            assert!(
                matches!(verdicts[before as usize], Verdict::Valid(m) if m.sequence == seq),
                "slot {before} before the next slot does not hold the newest frame {seq}"
            );
        }
    }
    // Resume never overwrites a newer valid frame.
    if let Verdict::Valid(m) = verdicts[s.next_slot as usize] {
        assert!(
            m.sequence < s.next_sequence,
            "next slot {} holds frame {} >= next sequence {}",
            s.next_slot,
            m.sequence,
            s.next_sequence
        );
    }
    match header.on_full {
        OnFull::Wrap => assert_eq!(s.budget, None),
        OnFull::Stop => {
            let want = match newest {
                Some(_) if s.next_slot == 0 => 0,
                _ => (n - s.next_slot) as u64,
            };
            assert_eq!(s.budget, Some(want));
            // The slots this session may fill hold no frame newer than
            // what it will write.
            for k in 0..want {
                let slot = (s.next_slot as u64 + k) as usize;
                if let Verdict::Valid(m) = verdicts[slot] {
                    assert!(m.sequence < s.next_sequence);
                }
            }
        }
    }
});

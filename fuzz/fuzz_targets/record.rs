//! `Record::check` and `Record::decode` on arbitrary bytes: the verdict
//! follows docs/FORMAT.md ("Index record": blank, intact, in flight,
//! damaged) as worked out here from the bytes, only the first 64 bytes
//! count, and an intact record re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagecam::format::{Record, RecordCheck};
use pagecam_fuzz::{le32, le64, RECORD};

fuzz_target!(|data: &[u8]| {
    let check = Record::check(data);
    let decoded = Record::decode(data);
    let Some(b) = data.get(..RECORD) else {
        assert_eq!(check, RecordCheck::Damaged, "a short record");
        assert_eq!(decoded, None);
        return;
    };
    let b: &[u8; RECORD] = b.try_into().unwrap();
    assert_eq!(Record::check(b), check, "bytes after the record counted");
    let r = decoded.expect("64 bytes decode");
    assert_eq!(Record::decode(b), Some(r));
    assert_eq!(r.generation, le64(b, 0));
    assert_eq!(r.crc, le32(b, 56));

    let blank = b.iter().all(|&x| x == 0);
    // Reserved bytes 52..56 are zero in every record a writer makes.
    let canonical = b[52..56] == [0; 4];
    let intact = !blank && canonical && crc32c::crc32c(&b[..60]) == le32(b, 60);
    assert_eq!(check == RecordCheck::Blank, blank);
    assert_eq!(check == RecordCheck::Intact, intact);
    if check == RecordCheck::InFlight {
        assert_eq!(r.generation % 2, 1, "in flight with an even generation");
        assert!(canonical, "in flight with reserved bytes set");
    }

    let enc = r.encode();
    assert_eq!(Record::decode(&enc), Some(r));
    assert!(matches!(
        Record::check(&enc),
        RecordCheck::Intact | RecordCheck::Blank
    ));
    // An intact record re-encodes to the same bytes; except, by design,
    // one whose fields are all zero (it encodes as the blank record, so a
    // claim given back untouched leaves a never-written slot blank).
    if intact && r != Record::default() {
        assert_eq!(&enc, b, "an intact record re-encodes differently");
    }
});

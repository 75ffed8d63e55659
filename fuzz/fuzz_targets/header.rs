//! `Header::decode_versioned` on arbitrary bytes, and on the same bytes
//! made a header with a valid magic and checksum (as a hostile writer
//! would), so the checks behind the checksum are fuzzed too. What it
//! accepts must be what docs/FORMAT.md promises (a layout recomputed from
//! frame size and slot count, plausible geometry), must depend on the
//! first 4096 bytes only, and must survive a round trip: encode, decode,
//! the same header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagecam::format::{
    Header, Layout, FORMAT_VERSION, HEADER_SIZE, MAGIC, MAX_DIMENSION, OLDEST_READABLE_VERSION,
    PAGE,
};
use pagecam_fuzz::fix_header_crc;

fn check(data: &[u8]) {
    let decoded = Header::decode_versioned(data);
    if data.len() > HEADER_SIZE as usize {
        assert_eq!(
            decoded,
            Header::decode_versioned(&data[..HEADER_SIZE as usize]),
            "bytes after the header changed the verdict"
        );
    }
    let Ok((h, version)) = decoded else {
        return;
    };
    assert!((OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version));
    let l = h.layout;
    assert_eq!(Layout::new(h.format.frame_size, l.slot_count), Ok(l));
    assert_eq!(l.slot_size % PAGE, 0);
    assert_eq!(l.data_offset % PAGE, 0);
    assert!(l.slot_size >= h.format.frame_size as u64);
    assert_eq!(
        l.slot_offset(l.slot_count - 1) + l.slot_size,
        l.file_size,
        "{l:?}"
    );
    assert!((1..=MAX_DIMENSION).contains(&h.format.width));
    assert!((1..=MAX_DIMENSION).contains(&h.format.height));
    assert!(h.interval.numerator == 0 || h.interval.denominator != 0);
    let _ = (h.interval.as_nanos(), h.interval.fps());

    let (again, v2) = Header::decode_versioned(&h.encode()).expect("a decoded header re-encodes");
    assert_eq!(v2, FORMAT_VERSION);
    assert_eq!(again, h, "round trip changed the header");
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut b = [0u8; HEADER_SIZE as usize];
    let n = data.len().min(b.len());
    b[..n].copy_from_slice(&data[..n]);
    b[..8].copy_from_slice(&MAGIC);
    fix_header_crc(&mut b);
    check(&b);
});

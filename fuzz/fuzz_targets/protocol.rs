//! `protocol::decode` on arbitrary bytes, which is both directions (capture
//! decodes what analyzers send, analyzers what capture sends). What it
//! accepts has the length and preamble of its kind and re-encodes to the
//! same bytes, but for what the decoder ignores by design: the reserved
//! fields (frame bytes 52..56, end bytes 12..16) and end reasons it does
//! not know (read as "error", 1).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagecam::protocol::{
    decode, Message, END_LEN, FRAME_LEN, HELLO_LEN, MAGIC, PROGRESS_LEN, PROTOCOL_VERSION,
    STORE_MEMFD_RING, STORE_RECORDING_FILE,
};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = decode(data) else {
        return;
    };
    assert_eq!(data[..4], MAGIC.to_le_bytes());
    assert_eq!(data[4..6], PROTOCOL_VERSION.to_le_bytes());
    let enc: Vec<u8> = match msg {
        Message::Hello(h) => {
            assert!([STORE_RECORDING_FILE, STORE_MEMFD_RING].contains(&h.store_kind));
            h.encode().to_vec()
        }
        Message::Frame(f) => f.encode().to_vec(),
        Message::End(e) => e.encode().to_vec(),
        Message::Progress(p) => p.encode().to_vec(),
    };
    let len = match msg {
        Message::Hello(_) => HELLO_LEN,
        Message::Frame(_) => FRAME_LEN,
        Message::End(_) => END_LEN,
        Message::Progress(_) => PROGRESS_LEN,
    };
    assert_eq!(data.len(), len);
    assert_eq!(decode(&enc), Ok(msg), "decode(encode(m)) != m");
    let mut canonical = data.to_vec();
    match msg {
        Message::Frame(_) => canonical[52..56].fill(0),
        Message::End(_) => {
            canonical[12..16].fill(0);
            if !(0..=2).contains(&u32::from_le_bytes(data[8..12].try_into().unwrap())) {
                canonical[8..12].copy_from_slice(&1u32.to_le_bytes());
            }
        }
        _ => {}
    }
    assert_eq!(enc, canonical, "{msg:?} re-encodes differently");
});

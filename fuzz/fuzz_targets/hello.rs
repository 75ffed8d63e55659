//! What an analyzer does with a hostile capture: a hello from the input,
//! a live store from the input (a plausible store in a memfd, mapped with
//! `LiveStore::map` as `Subscription::connect` maps the descriptor it is
//! sent), the geometry compared as `connect` compares it, then frame
//! notices with fuzzed slot, generation and length: `snapshot`,
//! `read_frame` and, inside it, what `pagecam-analyzer watch` does with the
//! view (`stats::Analyzer`). Never a panic or an out-of-bounds read; what
//! is read is the slot's bytes.
//!
//! Input: 1 byte of switches, the 88-byte hello, a count and 17-byte
//! notices, then a store as in `pagecam_fuzz::Recording::build`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pagecam::mapping::SlotReadError;
use pagecam::protocol::{self, Hello, Message, HELLO_LEN, STORE_MEMFD_RING, STORE_RECORDING_FILE};
use pagecam::recording::RecordingReader;
use pagecam::stats::Analyzer;
use pagecam::store::LiveStore;
use pagecam_fuzz::{le32, le64, meta_of, scratch, Bytes, Recording, Shape};

/// Switches: what of the hello to make right, so decoding gets further.
const FIX_PREAMBLE: u8 = 1 << 0;
const FIX_GEOMETRY: u8 = 1 << 1;
const FIX_RECORD_SIZE: u8 = 1 << 2;
const FIX_STORE_KIND: u8 = 1 << 3;
const RING: u8 = 1 << 4;

/// Notice switches.
const SLOT_NEAR: u8 = 1 << 0;
const REAL_GENERATION: u8 = 1 << 1;
const REAL_LENGTH: u8 = 1 << 2;

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes::new(data);
    let switches = b.u8();
    let mut hb: [u8; HELLO_LEN] = b.array();
    let notices: Vec<[u8; 17]> = (0..b.u8() % 9).map(|_| b.array()).collect();
    let shape = Shape::read(&mut b);
    let Some(rec) = Recording::build(shape, &mut b) else {
        return;
    };

    // The hello, made right where the switches say (with the library's
    // encoder, from the store's own header).
    let right = Hello {
        store_kind: if switches & RING != 0 {
            STORE_MEMFD_RING
        } else {
            STORE_RECORDING_FILE
        },
        layout: rec.layout(),
        format: rec.header.format,
        client_id: le64(&hb, 72),
        next_sequence: le64(&hb, 80),
    }
    .encode();
    for (flag, range) in [
        (FIX_PREAMBLE, 0..8),
        (FIX_STORE_KIND, 8..12),
        (FIX_GEOMETRY, 12..68),
        (FIX_RECORD_SIZE, 68..72),
    ] {
        if switches & flag != 0 {
            hb[range.clone()].copy_from_slice(&right[range]);
        }
    }
    let hello = match protocol::decode(&hb) {
        Ok(Message::Hello(h)) => Some(h),
        _ => None,
    };

    let (file, path) = scratch();
    rec.write_to(file).expect("write the memfd");
    let live = match LiveStore::map(file, Path::new("<fuzz store>")) {
        Ok(l) => l,
        Err(e) => {
            assert!(!rec.readable(), "a readable store refused: {e}");
            return;
        }
    };
    assert!(rec.readable(), "an unreadable store mapped");
    let (header, version) = rec.decoded().unwrap();
    assert_eq!(live.header(), &header);
    let l = header.layout;
    let n = live.slot_count();
    assert_eq!(n, l.slot_count);

    // As `Subscription::connect`: the hello must describe the store.
    let hello = hello.filter(|h| h.layout == l && h.format == header.format);
    let mut stats = hello.map(|h| Analyzer::new(h.format));
    if let Some(h) = hello.filter(|h| h.store_kind == STORE_MEMFD_RING) {
        // The second descriptor: the recording behind the ring (here the
        // same bytes), read by `backlog` and for archived frames.
        let dup = file.try_clone().expect("dup");
        let archive = RecordingReader::from_file(dup, path).expect("archive");
        assert_eq!(archive.header().format, h.format);
        for (slot, r) in archive.records().expect("records") {
            if r.generation % 2 == 0 && r.generation != 0 && r.meta.sequence < h.next_sequence {
                let _ = archive.valid_frame(slot).expect("valid_frame");
            }
        }
    }

    for notice in notices {
        let mut nb = Bytes::new(&notice);
        let how = nb.u8();
        let mut slot = nb.u32();
        let mut generation = nb.u64();
        let mut len = nb.u32();
        if how & SLOT_NEAR != 0 {
            slot %= n + 1; // one past the end too
        }
        let snap = live.snapshot(slot);
        assert_eq!(snap.is_some(), slot < n, "snapshot of slot {slot} of {n}");
        assert_eq!(live.generation(slot).is_some(), slot < n);
        if let Some(s) = snap {
            // The mapping reads the record where the file has it.
            let r = &rec.index[slot as usize];
            assert_eq!(s.generation, le64(r, 0));
            assert_eq!(s.meta, meta_of(r));
            assert_eq!(s.crc, le32(r, 56));
            if how & REAL_GENERATION != 0 {
                generation = s.generation;
            }
            if how & REAL_LENGTH != 0 {
                len = s.meta.bytes_used;
            }
        }
        let got = live.read_frame(slot, generation, len, |view| {
            let want = (len as u64).min(l.slot_size) as usize;
            assert_eq!(view.len(), want);
            let mut buf = [0u8; 61];
            let at = (generation as usize) % (want + 2);
            let k = view.copy_to(at, &mut buf);
            assert_eq!(k, buf.len().min(want.saturating_sub(at)));
            let head = buf[..k].to_vec();
            assert_eq!(view.copy_to(usize::MAX, &mut buf), 0);
            let mut seen = 0;
            let mut chunk = [0u8; 1021];
            view.chunks(&mut chunk, |off, c| {
                assert_eq!(off, seen);
                seen += c.len();
            });
            assert_eq!(seen, want);
            let analysed = stats.as_mut().map(|a| a.analyse(&view));
            (view.crc32c(), head, at, analysed.is_some())
        });
        match got {
            Ok((crc, head, at, _)) => {
                assert!(slot < n);
                let want = (len as u64).min(l.slot_size) as usize;
                assert_eq!(
                    crc,
                    rec.slot_crc(slot, want),
                    "slot {slot}: other bytes read"
                );
                assert!(
                    rec.slot_has(slot, at, &head),
                    "slot {slot}: other bytes read"
                );
            }
            Err(SlotReadError::NoSuchSlot { slot: s, slots }) => {
                assert_eq!((s, slots), (slot, n));
                assert!(slot >= n);
            }
            Err(SlotReadError::Overwritten { found }) => {
                assert!(slot < n);
                assert_ne!(found, generation);
                assert_eq!(found, le64(&rec.index[slot as usize], 0));
            }
            Err(SlotReadError::Torn) => panic!("torn read of a store nobody writes"),
        }
    }
    let _ = version;
});

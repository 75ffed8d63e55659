//! Bad input gets a clear error and loses nothing.

use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use nix::sys::socket::{
    connect, send, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
};
use pagecam::source::pattern::Pattern;

use crate::util::*;

fn record(dir: &std::path::Path, frames: u32) -> std::path::PathBuf {
    let rec = dir.join("rec.pcam");
    let mut c = capture();
    c.args(["--size", "256x64", "--fps", "0", "--on-full", "stop"])
        .args([
            "--slots",
            &frames.to_string(),
            "--frames",
            &frames.to_string(),
            "-o",
        ])
        .arg(&rec);
    let out = run(c, "capture");
    assert!(out.status.success(), "{}", stderr(&out));
    rec
}

#[test]
fn missing_directory_is_a_clear_error() {
    let dir = workdir();
    let mut c = capture();
    c.arg("-o")
        .arg(dir.path().join("no/such/dir/rec.pcam"))
        .args(["--frames", "1"]);
    let out = run(c, "capture");
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

#[test]
fn impossible_capacities_are_refused_before_anything_is_written() {
    let dir = workdir();
    let rec = dir.path().join("rec.pcam");
    let mut c = capture();
    c.args(["--capacity", "900TiB", "--frames", "1", "-o"])
        .arg(&rec);
    let out = run(c, "capture");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not enough space"),
        "{}",
        stderr(&out)
    );
    assert!(!rec.exists(), "no half-made file is left behind");

    let mut c = capture();
    c.args(["--capacity", "4KiB", "--frames", "1", "-o"])
        .arg(&rec);
    let out = run(c, "capture");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("holds no frame"), "{}", stderr(&out));
    assert!(!rec.exists());
}

#[test]
fn an_existing_recording_is_never_overwritten() {
    let dir = workdir();
    let rec = record(dir.path(), 5);
    let before = std::fs::read(&rec).unwrap();
    let mut c = capture();
    c.args(["--frames", "1", "-o"]).arg(&rec);
    let out = run(c, "capture");
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&rec).unwrap(), before);
}

#[test]
fn unsupported_test_format_is_a_clear_error() {
    let dir = workdir();
    let mut c = capture();
    c.args(["--format", "MJPG", "--frames", "1", "-o"])
        .arg(dir.path().join("x.pcam"));
    let out = run(c, "capture");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unsupported pixel format MJPG"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn truncated_and_corrupt_recordings_are_reported_not_crashed_on() {
    let dir = workdir();
    let rec = record(dir.path(), 4);
    assert!(verify(&rec, &[]).status.success());

    // One flipped byte in a frame: that frame fails, the rest pass.
    let f = std::fs::OpenOptions::new().write(true).open(&rec).unwrap();
    let reader = pagecam::recording::RecordingReader::open(&rec).unwrap();
    let layout = reader.header().layout;
    drop(reader);
    f.write_all_at(&[0x5a], layout.slot_offset(2) + 1000)
        .unwrap();
    let out = verify(&rec, &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAILED") && text.contains("corrupt slots: 2\n"),
        "{text}"
    );

    // Truncated: a clear error, no SIGBUS.
    f.set_len(layout.file_size - 4096).unwrap();
    let out = verify(&rec, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("truncated"), "{}", stderr(&out));

    // A header byte changed: checksum mismatch.
    f.set_len(layout.file_size).unwrap();
    f.write_all_at(&[0xff], 20).unwrap();
    let out = verify(&rec, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("corrupt"), "{}", stderr(&out));

    // Not a recording at all, short or empty: said so, not "truncated"
    // (regression: "recording is truncated: 0 bytes, header says 4096").
    let other = dir.path().join("notes.txt");
    for text in [&b"hello"[..], b""] {
        std::fs::write(&other, text).unwrap();
        let out = verify(&other, &[]);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr(&out).contains("not a pagecam recording") && !stderr(&out).contains("truncated"),
            "{}",
            stderr(&out)
        );
    }
    std::fs::write(&other, vec![b'x'; 8192]).unwrap();
    let out = verify(&other, &[]);
    assert!(
        stderr(&out).contains("not a pagecam recording"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn analyzer_without_capture_says_so() {
    let dir = workdir();
    let mut a = analyzer();
    a.args(["watch", "--socket"])
        .arg(dir.path().join("nobody.sock"));
    let out = run(a, "analyzer");
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).contains("is pagecam-capture running?"),
        "{}",
        stderr(&out)
    );
}

/// Garbage senders and clients that never read are dropped; capture and a
/// well-behaved analyzer carry on untouched.
#[test]
fn garbage_and_silent_clients_are_dropped_without_harm() {
    let dir = workdir();
    let (cap, _rec, sock) = live_capture(
        &dir,
        &[
            "--size",
            "320x240",
            "--fps",
            "100",
            "--slots",
            "500",
            "--frames",
            "500",
            "--on-full",
            "stop",
            "--stuck-timeout",
            "200ms",
        ],
    );
    let good = watch(&sock, &["--checksum"]);

    let addr = UnixAddr::new(&sock).unwrap();
    let garbage = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::empty(),
        None,
    )
    .unwrap();
    connect(garbage.as_raw_fd(), &addr).unwrap();
    send(
        garbage.as_raw_fd(),
        b"GET / HTTP/1.0\r\n\r\n",
        MsgFlags::empty(),
    )
    .unwrap();
    // Connects, then never reads: its socket buffer fills with notices.
    let silent = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::empty(),
        None,
    )
    .unwrap();
    connect(silent.as_raw_fd(), &addr).unwrap();

    let cap_out = finish(cap, Duration::from_secs(60), "capture");
    assert!(cap_out.status.success(), "{}", stderr(&cap_out));
    let s = capture_summary(&cap_out);
    assert_eq!(s["frames"], 500);
    assert_eq!(s["source_dropped"], 0, "{s}");
    assert!(
        s["analyzers_disconnected"].as_u64().unwrap() >= 2,
        "garbage and silent clients dropped: {s}"
    );
    assert!(s["notifications_dropped"].as_u64().unwrap() > 0, "{s}");

    let out = finish(good, Duration::from_secs(30), "analyzer");
    assert!(out.status.success(), "{}", stderr(&out));
    let (frames, summary) = analyzer_lines(&out);
    assert_eq!(summary["missed"], 0, "{summary}");
    assert_frames_match_pattern(&frames, &Pattern::new(yuyv(320, 240)).unwrap());
}

/// Regression: the generation was not covered by the checksum, so a
/// damaged index record could make a frame look empty or in flight and
/// `verify` exited 0. Both stores write records with their own checksum.
#[test]
fn a_damaged_index_record_fails_verify() {
    for store in ["direct", "file"] {
        let dir = workdir();
        let rec = dir.path().join("rec.pcam");
        let mut c = capture();
        c.args(["--size", "256x64", "--fps", "0", "--on-full", "stop"])
            .args(["--slots", "6", "--frames", "6", "--store", store, "-o"])
            .arg(&rec);
        let out = run(c, "capture");
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(verify(&rec, &[]).status.success(), "{store}");
        let layout = pagecam::recording::RecordingReader::open(&rec)
            .unwrap()
            .header()
            .layout;
        let f = std::fs::OpenOptions::new().write(true).open(&rec).unwrap();
        // Slot 1 made to look never written; slot 3 made to look in flight.
        f.write_all_at(&0u64.to_le_bytes(), layout.record_offset(1))
            .unwrap();
        f.write_all_at(&7u64.to_le_bytes(), layout.record_offset(3))
            .unwrap();
        let out = verify(&rec, &["--json"]);
        assert_eq!(out.status.code(), Some(1), "{store}: {}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            report["corrupt_slots"],
            serde_json::json!([1, 3]),
            "{store}: {report}"
        );
        assert_eq!(report["valid_frames"], 4);
    }
}

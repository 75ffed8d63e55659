//! Crash recovery on the host: `kill -9` of capture at many points, then
//! `verify` and `--resume`. (Power cuts need a real kernel to cut: those
//! tests are in `vivid`, on qemu guests.)

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use pagecam::recording::RecordingReader;

use crate::util::*;

/// A tiny deterministic generator, so a failing kill point can be replayed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// The file store: a frame is in the file (page cache) the moment it is
/// published, so a `kill -9` loses nothing an analyzer has seen.
#[test]
fn twenty_kills_each_leave_a_valid_recording_that_resumes_file_store() {
    let lost = twenty_kills("file", 0x9e3779b97f4a7c15);
    assert!(lost.iter().all(|&l| l == 0), "lost per kill: {lost:?}");
}

/// The RAM ring: frames published but not yet written by the writer thread
/// die with the process. The loss per kill is counted and bounded by the
/// ring (16 frames here); what is in the file is always valid and resumes.
#[test]
fn twenty_kills_each_leave_a_valid_recording_that_resumes_direct_store() {
    let lost = twenty_kills("direct", 0x2545f4914f6cdd1d);
    eprintln!("direct store, frames seen by an analyzer but lost per kill -9: {lost:?}");
    assert!(lost.iter().all(|&l| l <= 16), "lost per kill: {lost:?}");
}

/// Kill capture 20 times at random points, each time verifying and resuming
/// the recording. Returns, per kill, how many frames an analyzer had seen
/// that the file does not hold.
fn twenty_kills(store: &str, seed: u64) -> Vec<u64> {
    let mut lost = Vec::new();
    let dir = workdir();
    let rec = dir.path().join("rec.pcam");
    let sock = dir.path().join("rec.sock");
    let mut rng = Lcg(seed);
    let mut last_seen_total = 0u64;
    for round in 1..=20u32 {
        let mut cap = capture();
        cap.args(["--size", "320x240", "--fps", "200", "--slots", "96"])
            .args(["--store", store, "--ram-ring", "16"])
            .arg("-o")
            .arg(&rec);
        cap.arg("--socket").arg(&sock);
        if round > 1 {
            cap.arg("--resume");
        }
        let cap = spawn(cap);
        wait_for(&sock);
        let a = watch(&sock, &["--checksum"]);
        std::thread::sleep(Duration::from_millis(100 + rng.next(400)));
        kill(cap.pid(), Signal::SIGKILL).unwrap();
        let cap_out = finish(cap, Duration::from_secs(10), "killed capture");
        assert!(!cap_out.status.success());

        let out = finish(a, Duration::from_secs(15), "analyzer after the kill");
        assert_eq!(
            out.status.code(),
            Some(4),
            "round {round}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("capture went away"),
            "{}",
            stderr(&out)
        );
        let (frames, _) = analyzer_lines(&out);
        if let Some(last) = frames.last() {
            last_seen_total = last["seq"].as_u64().unwrap();
        }

        let verify = verify(&rec, &["--json"]);
        assert!(
            verify.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&verify.stdout)
        );
        let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
        assert_eq!(report["missing_sequences"], 0, "round {round}: {report}");
        let last_in_file = report["last_sequence"].as_u64().unwrap();
        lost.push(last_seen_total.saturating_sub(last_in_file));
        assert_eq!(
            report["sessions"].as_array().unwrap().last().unwrap(),
            round,
            "{report}"
        );
        // Every valid frame holds exactly its pattern frame.
        assert_file_matches_pattern(&rec);
        std::fs::remove_file(&sock).ok();
    }
    // Sequences only grow across sessions, and sessions are in order.
    let reader = RecordingReader::open(&rec).unwrap();
    let scan = reader.scan().unwrap();
    for w in scan.valid.windows(2) {
        assert!(
            w[1].1.sequence == w[0].1.sequence + 1 && w[1].1.session >= w[0].1.session,
            "{w:?}"
        );
    }
    lost
}

#[test]
fn a_second_writer_is_refused_while_the_first_records() {
    let dir = workdir();
    let rec = dir.path().join("rec.pcam");
    let sock = dir.path().join("rec.sock");
    let mut cap = capture();
    cap.args(["--size", "320x240", "--fps", "30", "--slots", "32", "-o"])
        .arg(&rec)
        .arg("--socket")
        .arg(&sock);
    let first = spawn(cap);
    wait_for(&sock);
    let mut second = capture();
    second
        .args(["--size", "320x240", "--resume", "--frames", "1", "-o"])
        .arg(&rec);
    second.arg("--socket").arg(dir.path().join("other.sock"));
    let out = run(second, "second capture");
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("being recorded by another capture"),
        "{}",
        stderr(&out)
    );
    kill(first.pid(), Signal::SIGTERM).unwrap();
    let out = finish(first, Duration::from_secs(10), "first capture");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_crash_during_creation_leaves_no_recording_at_the_target() {
    let dir = workdir();
    let rec = dir.path().join("rec.pcam");
    // What a power cut during pre-allocation leaves: a partial file.
    std::fs::write(dir.path().join(".rec.pcam.partial"), b"half").unwrap();
    assert_eq!(
        verify(&rec, &[]).status.code(),
        Some(2),
        "nothing at the target path"
    );
    let mut cap = capture();
    cap.args([
        "--size", "320x240", "--fps", "0", "--slots", "8", "--frames", "8", "-o",
    ])
    .arg(&rec);
    let out = run(cap, "capture");
    assert!(
        out.status.success(),
        "the stale partial file is replaced: {}",
        stderr(&out)
    );
    assert!(!dir.path().join(".rec.pcam.partial").exists());
    assert_eq!(assert_file_matches_pattern(&rec), 8);
}

#[test]
fn zero_preallocation_and_cache_dropping_record_the_same_frames() {
    let dir = workdir();
    let rec = dir.path().join("rec.pcam");
    let mut cap = capture();
    cap.args([
        "--size", "320x240", "--fps", "0", "--slots", "40", "--frames", "100",
    ])
    .args([
        "--prealloc",
        "zero",
        "--drop-cache",
        "--max-loss",
        "100ms",
        "-o",
    ])
    .arg(&rec);
    let out = run(cap, "capture");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(assert_file_matches_pattern(&rec), 40);
}

/// A service always passes --resume: the first start creates the file.
#[test]
fn resume_creates_a_missing_recording() {
    let dir = workdir();
    let rec = dir.path().join("rec.pcam");
    for _ in 0..2 {
        let mut cap = capture();
        cap.args([
            "--resume", "--size", "320x240", "--fps", "0", "--slots", "30", "--frames", "10", "-o",
        ])
        .arg(&rec);
        let out = run(cap, "capture --resume");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let reader = RecordingReader::open(&rec).unwrap();
    let scan = reader.scan().unwrap();
    assert_eq!(scan.valid.len(), 20);
    assert_eq!(scan.valid.last().unwrap().1.session, 2);
    drop(reader);
    assert_eq!(assert_file_matches_pattern(&rec), 20);
}

/// --drop-cache keeps a long recording out of memory: once frames are on
/// disk (and read), their pages leave the page cache. Without it, the
/// whole recording stays cached.
#[test]
fn drop_cache_bounds_the_page_cache() {
    let resident_fraction = |drop_cache: bool| {
        let dir = workdir();
        let rec = dir.path().join("rec.pcam");
        let mut cap = capture();
        cap.args([
            "--size",
            "640x480",
            "--fps",
            "0",
            "--slots",
            "150",
            "--frames",
            "150",
            "--on-full",
            "stop",
        ]);
        cap.args(["--store", "file", "--max-loss", "50ms", "-o"])
            .arg(&rec);
        if drop_cache {
            cap.arg("--drop-cache");
        }
        let out = run(cap, "capture");
        assert!(out.status.success(), "{}", stderr(&out));
        let file = std::fs::File::open(&rec).unwrap();
        let live = pagecam::store::LiveStore::map(&file, &rec).unwrap();
        let f = live.resident_bytes() as f64 / live.header().layout.file_size as f64;
        drop(live);
        assert_eq!(
            assert_file_matches_pattern(&rec),
            150,
            "dropped pages read back intact"
        );
        f
    };
    let kept = resident_fraction(false);
    let dropped = resident_fraction(true);
    assert!(
        kept > 0.9,
        "without --drop-cache the recording stays cached ({kept:.2})"
    );
    assert!(
        dropped < 0.1,
        "with --drop-cache {:.0}% of the recording is still cached",
        dropped * 100.0
    );
}

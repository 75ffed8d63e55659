//! End to end with the real binaries on the built-in test source.

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use pagecam::source::pattern::Pattern;

use crate::util::*;

#[test]
fn two_analyzers_read_every_frame_in_place_and_the_file_verifies_direct_store() {
    two_analyzers("direct");
}

#[test]
fn two_analyzers_read_every_frame_in_place_and_the_file_verifies_file_store() {
    two_analyzers("file");
}

fn two_analyzers(store: &str) {
    let dir = workdir();
    let (cap, rec, sock) = live_capture(
        &dir,
        &[
            "--size",
            "320x240",
            "--fps",
            "60",
            "--slots",
            "400",
            "--on-full",
            "stop",
            "--frames",
            "240",
            "--store",
            store,
            "--ram-ring",
            "120",
        ],
    );
    let analyzers: Vec<_> = (0..2).map(|_| watch(&sock, &["--checksum"])).collect();
    let cap_out = finish(cap, Duration::from_secs(60), "capture");
    assert!(
        cap_out.status.success(),
        "capture failed: {}",
        stderr(&cap_out)
    );
    let summary = capture_summary(&cap_out);
    assert_eq!(summary["frames"], 240);
    assert_eq!(summary["store"], store, "{summary}");
    assert_eq!(summary["disk_dropped"], 0, "{summary}");
    assert_eq!(
        summary["bytes_copied"], 0,
        "direct delivery copies nothing: {summary}"
    );

    for a in analyzers {
        let out = finish(a, Duration::from_secs(30), "analyzer");
        assert!(out.status.success(), "analyzer failed: {}", stderr(&out));
        let (frames, s) = analyzer_lines(&out);
        assert_eq!(s["end"], "capture finished");
        assert_eq!(s["torn"], 0);
        assert_eq!(
            s["overwritten"], 0,
            "a 120-frame live ring (2 s) is never overwritten: {s}"
        );
        assert!(
            frames.len() >= 120,
            "analyzer saw only {} of 240 frames",
            frames.len()
        );
        assert_frames_match_recording(&frames, &rec);
        // Consecutive frames of the moving pattern differ.
        assert!(frames
            .iter()
            .filter_map(|f| f["motion"].as_f64())
            .any(|m| m > 0.0));
    }

    let verify = verify(&rec, &[]);
    assert!(
        verify.status.success(),
        "verify: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    assert_eq!(assert_file_matches_pattern(&rec), 240);
}

#[test]
fn copy_delivery_counts_one_copy_per_frame_and_records_the_same_frames() {
    for store in [
        &["--store", "direct"][..],
        &["--store", "file", "--copy-into", "map"],
        &["--store", "file", "--copy-into", "pwrite"],
    ] {
        let dir = workdir();
        let rec = dir.path().join("rec.pcam");
        let mut cap = capture();
        cap.args([
            "--size", "256x64", "--format", "GREY", "--fps", "0", "--slots", "50", "--frames", "50",
        ])
        .args(["--on-full", "stop", "--delivery", "copy"])
        .args(store)
        .arg("-o")
        .arg(&rec);
        let out = run(cap, "capture");
        assert!(out.status.success(), "{store:?}: {}", stderr(&out));
        let s = capture_summary(&out);
        assert_eq!(s["bytes_copied_per_frame"], 256 * 64, "{store:?}: {s}");
        assert_eq!(assert_file_matches_pattern(&rec), 50, "{store:?}");
    }
}

/// The recording format is the same for both stores: a recording started
/// with one continues with the other, sequences and sessions in order.
#[test]
fn resume_across_stores_continues_the_same_recording() {
    let dir = workdir();
    let rec = dir.path().join("rec.pcam");
    for (i, store) in ["direct", "file", "direct"].iter().enumerate() {
        let mut cap = capture();
        cap.args(["--resume", "--store", store, "--size", "320x240"])
            .args(["--fps", "0", "--slots", "100", "--frames", "20", "-o"])
            .arg(&rec);
        let out = run(cap, "capture");
        assert!(out.status.success(), "{store}: {}", stderr(&out));
        assert_eq!(capture_summary(&out)["store"], *store);
        let v = verify(&rec, &["--json"]);
        assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
        let report: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
        assert_eq!(report["valid_frames"], 20 * (i + 1), "{report}");
        assert_eq!(report["missing_sequences"], 0, "{report}");
        assert_eq!(
            report["sessions"],
            serde_json::json!((1..=i as u32 + 1).collect::<Vec<_>>())
        );
    }
    assert_eq!(assert_file_matches_pattern(&rec), 60);
}

/// An analyzer (even root) cannot change the RAM ring capture shares: the
/// descriptors it receives are read-only, and the memfd is sealed, so
/// reopening it read-write through /proc does not help either.
#[test]
fn an_analyzer_cannot_write_the_ram_ring() {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::fs::FileExt;

    let dir = workdir();
    let (cap, _rec, sock) = live_capture(
        &dir,
        &[
            "--store", "direct", "--size", "320x240", "--fps", "30", "--frames", "150",
        ],
    );
    let fd = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    nix::sys::socket::connect(
        fd.as_raw_fd(),
        &nix::sys::socket::UnixAddr::new(&sock).unwrap(),
    )
    .unwrap();
    let mut buf = [0u8; 256];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 2]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = nix::sys::socket::recvmsg::<nix::sys::socket::UnixAddr>(
        fd.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .unwrap();
    let mut fds = Vec::new();
    for c in msg.cmsgs().unwrap() {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: SCM_RIGHTS gave this process new descriptors.
            fds.extend(raw.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
        }
    }
    assert_eq!(fds.len(), 2, "the RAM ring and the recording");
    let ring = std::fs::File::from(fds.remove(0));
    let len = ring.metadata().unwrap().len() as usize;
    // The descriptor as received: read-only.
    assert!(memmap2::MmapOptions::new().len(len).map_raw(&ring).is_err());
    assert!(ring.write_at(b"x", 0).is_err());
    // Reopened read-write through /proc (root can): the seals still refuse
    // a writable mapping and writes.
    let rw = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/fd/{}", ring.as_raw_fd()))
        .expect("root may reopen the memfd read-write");
    let err = memmap2::MmapOptions::new()
        .len(len)
        .map_raw(&rw)
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    assert_eq!(
        rw.write_at(b"x", 0).unwrap_err().raw_os_error(),
        Some(libc::EPERM)
    );
    assert!(rw.set_len(0).is_err(), "the ring cannot shrink");
    // Reading works, from the same pages capture writes.
    assert!(memmap2::MmapOptions::new()
        .len(len)
        .map_raw_read_only(&ring)
        .is_ok());
    drop(fd);
    let out = finish(cap, Duration::from_secs(30), "capture");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn wrap_around_with_a_slow_analyzer_never_yields_torn_frames() {
    let dir = workdir();
    let (cap, rec, sock) = live_capture(
        &dir,
        &[
            "--size", "320x240", "--fps", "100", "--slots", "6", "--frames", "300",
        ],
    );
    // Spends 35 ms inside each in-place read: the writer laps it constantly.
    let a = watch(&sock, &["--checksum", "--slow", "35ms"]);
    let cap_out = finish(cap, Duration::from_secs(60), "capture");
    assert!(cap_out.status.success(), "{}", stderr(&cap_out));
    let summary = capture_summary(&cap_out);
    assert_eq!(summary["frames"], 300);
    // A slow analyzer must not slow capture. (The test source drops frames
    // only when capture itself is starved: on a loaded machine, a few.)
    let drops = summary["source_dropped"].as_u64().unwrap();
    assert!(
        drops < 30,
        "a slow analyzer must not slow capture: {summary}"
    );

    let out = finish(a, Duration::from_secs(60), "analyzer");
    assert!(out.status.success(), "{}", stderr(&out));
    let (frames, s) = analyzer_lines(&out);
    let lost = s["overwritten"].as_u64().unwrap() + s["torn"].as_u64().unwrap();
    assert!(
        lost > 0,
        "the slow analyzer must detect overwritten or torn slots: {s}"
    );
    let accepted = frames.iter().filter(|f| f.get("lost").is_none()).count();
    assert!(accepted > 0, "the analyzer accepted no frame at all: {s}");
    // The essential property: every accepted frame is exactly its frame.
    assert_frames_match_pattern_with_drops(&frames, &Pattern::new(yuyv(320, 240)).unwrap(), drops);

    assert!(verify(&rec, &[]).status.success());
    assert_eq!(assert_file_matches_pattern(&rec), 6);
}

#[test]
fn killing_an_analyzer_does_not_disturb_capture() {
    let dir = workdir();
    let (cap, rec, sock) = live_capture(
        &dir,
        &[
            "--size",
            "320x240",
            "--fps",
            "50",
            "--slots",
            "300",
            "--frames",
            "150",
            "--on-full",
            "stop",
        ],
    );
    let spawn_watch = || watch(&sock, &["--checksum"]);
    let victim = spawn_watch();
    let survivor = spawn_watch();
    std::thread::sleep(Duration::from_millis(1000));
    kill(victim.pid(), Signal::SIGKILL).unwrap();
    let victim_out = finish(victim, Duration::from_secs(10), "killed analyzer");
    assert!(!victim_out.status.success());

    let cap_out = finish(cap, Duration::from_secs(60), "capture");
    assert!(cap_out.status.success(), "{}", stderr(&cap_out));
    let summary = capture_summary(&cap_out);
    assert_eq!(summary["frames"], 150);
    assert_eq!(summary["source_dropped"], 0, "{summary}");
    let out = finish(survivor, Duration::from_secs(30), "surviving analyzer");
    assert!(out.status.success(), "{}", stderr(&out));
    let (frames, s) = analyzer_lines(&out);
    assert_eq!(s["end"], "capture finished");
    assert_eq!(s["missed"], 0, "{s}");
    assert_frames_match_pattern(&frames, &Pattern::new(yuyv(320, 240)).unwrap());
    assert_eq!(assert_file_matches_pattern(&rec), 150);
}

#[test]
fn killing_capture_ends_the_analyzer_clearly_and_committed_frames_verify() {
    let dir = workdir();
    let (cap, rec, sock) = live_capture(
        &dir,
        &[
            "--size",
            "320x240",
            "--fps",
            "50",
            "--slots",
            "1000",
            "--on-full",
            "stop",
            "--store",
            "file",
        ],
    );
    let a = watch(&sock, &["--checksum"]);
    std::thread::sleep(Duration::from_millis(1500));
    kill(cap.pid(), Signal::SIGKILL).unwrap();
    let _ = finish(cap, Duration::from_secs(10), "killed capture");

    let out = finish(a, Duration::from_secs(15), "analyzer after capture died");
    assert_eq!(
        out.status.code(),
        Some(4),
        "analyzer exit code; stderr: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("capture went away"),
        "{}",
        stderr(&out)
    );
    let (frames, s) = analyzer_lines(&out);
    assert_eq!(s["end"], "capture gone");
    assert!(!frames.is_empty());

    // File store: every frame the analyzer was told about is valid in the
    // file: the page cache survives the process. (The RAM ring's bounded
    // loss is measured by `durability`, and avoided by `handover`.)
    let verify = verify(&rec, &["--json"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    let last_seen = frames.last().unwrap()["seq"].as_u64().unwrap();
    assert!(
        report["last_sequence"].as_u64().unwrap() >= last_seen,
        "{report}"
    );
    assert_eq!(report["missing_sequences"], 0);
    assert!(assert_file_matches_pattern(&rec) as u64 > last_seen);
}

#[test]
fn sigterm_stops_cleanly_and_tells_analyzers() {
    let dir = workdir();
    let (cap, rec, sock) =
        live_capture(&dir, &["--size", "320x240", "--fps", "30", "--slots", "64"]);
    let a = watch(&sock, &[]);
    std::thread::sleep(Duration::from_millis(800));
    kill(cap.pid(), Signal::SIGTERM).unwrap();
    let cap_out = finish(cap, Duration::from_secs(10), "capture after SIGTERM");
    assert!(cap_out.status.success(), "{}", stderr(&cap_out));
    assert_eq!(
        capture_summary(&cap_out)["stop_reason"],
        "stopped by signal"
    );
    assert!(!sock.exists(), "socket removed on exit");
    let out = finish(a, Duration::from_secs(10), "analyzer");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(analyzer_lines(&out).1["end"], "capture finished");
    let verify = verify(&rec, &[]);
    assert!(verify.status.success());
    assert!(
        String::from_utf8_lossy(&verify.stdout).contains("0 incomplete"),
        "clean stop leaves no incomplete slot"
    );
}

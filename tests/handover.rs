//! A crashed capture's RAM ring is written by the next capture: the ring
//! is handed to the service manager's descriptor store (`FDSTORE=1`) and
//! back on restart (`LISTEN_FDS`), so a `kill -9` loses no frame.
//!
//! Here the test plays the service manager's part (a stand-in: it listens
//! on `NOTIFY_SOCKET`, keeps the descriptor, and starts the next capture
//! with it as fd 3 and the `LISTEN_*` variables, as systemd does). The disk
//! is made to fall behind for real: the recording lives on a loop-mounted
//! ext4 that is frozen (`fsfreeze`), so the writer thread blocks while
//! capture keeps filling the ring.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
use pagecam::recording::RecordingReader;

use crate::util::*;

/// The service manager's notify socket, as a test stand-in.
struct Manager {
    sock: std::os::unix::net::UnixDatagram,
    path: std::path::PathBuf,
}

impl Manager {
    fn new(dir: &Path) -> Manager {
        let path = dir.join("notify.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Manager { sock, path }
    }

    /// Messages until one contains `want`; the descriptors that came along.
    fn wait_for(&self, want: &str, limit: Duration) -> Vec<OwnedFd> {
        let deadline = Instant::now() + limit;
        let mut fds = Vec::new();
        loop {
            assert!(Instant::now() < deadline, "no {want:?} from capture");
            let mut buf = [0u8; 4096];
            let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            // No MSG_CMSG_CLOEXEC: the descriptor is inherited by the
            // next capture, as the service manager's would be.
            let Ok(msg) = recvmsg::<UnixAddr>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::empty(),
            ) else {
                continue;
            };
            for c in msg.cmsgs().unwrap() {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    for fd in raw {
                        // SAFETY: SCM_RIGHTS gave this process a new descriptor.
                        fds.push(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) });
                    }
                }
            }
            let n = msg.bytes;
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.contains(want) {
                return fds;
            }
        }
    }
}

/// Run capture on the frozen-then-killed disk; returns what the analyzer
/// saw (sequence → CRC) and the stored ring descriptor.
fn crash_with_a_full_ring(
    dir: &Path,
    fs: &mut LoopFs,
    manager: &Manager,
) -> (Vec<(u64, u32)>, OwnedFd) {
    let rec = fs.mount.join("rec.pcam");
    let sock = dir.join("rec.sock");
    let mut cap = capture();
    cap.env("NOTIFY_SOCKET", &manager.path)
        .args(["--resume", "--store", "direct", "--ram-ring", "24"])
        .args(["--size", "320x240", "--fps", "60", "--slots", "400"])
        .arg("-o")
        .arg(&rec)
        .arg("--socket")
        .arg(&sock);
    let cap = spawn(cap);
    let stored = manager.wait_for("FDSTORE=1", Duration::from_secs(20));
    assert_eq!(stored.len(), 1, "FDSTORE=1 carries the ring");
    manager.wait_for("READY=1", Duration::from_secs(20));
    let a = watch(&sock, &["--checksum"]);
    std::thread::sleep(Duration::from_millis(400));
    // The disk stops: the writer blocks, the ring fills (24 frames at
    // 60 fps) and capture starts dropping new frames instead.
    fs.freeze();
    std::thread::sleep(Duration::from_millis(800));
    kill(cap.pid(), Signal::SIGKILL).unwrap();
    let seen = finish(a, Duration::from_secs(15), "analyzer");
    fs.thaw();
    finish(cap, Duration::from_secs(15), "killed capture");
    let (frames, _) = analyzer_lines(&seen);
    let seen = frames
        .iter()
        .filter(|f| f.get("crc32c").is_some())
        .map(|f| {
            (
                f["seq"].as_u64().unwrap(),
                f["crc32c"].as_u64().unwrap() as u32,
            )
        })
        .collect();
    (seen, stored.into_iter().next().unwrap())
}

/// Start capture again on the recording for a few frames, the stored ring
/// passed as fd 3 with the `LISTEN_*` variables (or not at all).
fn restart(dir: &Path, rec: &Path, ring: Option<&OwnedFd>) -> std::process::Output {
    let mut script = String::new();
    if let Some(fd) = ring {
        script.push_str(&format!(
            "exec 3<&{0} {0}<&-; export LISTEN_FDS=1 LISTEN_FDNAMES=pagecam-ring LISTEN_PID=$$; ",
            fd.as_raw_fd()
        ));
    }
    script.push_str("exec \"$0\" \"$@\"");
    let mut cmd = Command::new("sh");
    cmd.env("PAGECAM_LOG", "warn")
        .args(["-c", &script, CAPTURE])
        .args(["--resume", "--store", "direct", "--ram-ring", "24"])
        .args(["--size", "320x240", "--fps", "60", "--slots", "400"])
        .args(["--frames", "5", "-o"])
        .arg(rec)
        .arg("--socket")
        .arg(dir.join("rec2.sock"));
    let out = run(cmd, "restarted capture");
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

/// Which of the frames the analyzer saw the recording holds with the same
/// bytes (CRC of the frame as read in place). A lost frame's sequence
/// number is reused by the next session, so it counts as missing when the
/// bytes differ.
fn kept(rec: &Path, seen: &[(u64, u32)]) -> (usize, Vec<u64>) {
    let reader = RecordingReader::open(rec).unwrap();
    let scan = reader.scan().unwrap();
    assert!(scan.corrupt.is_empty(), "corrupt {:?}", scan.corrupt);
    let by_seq: std::collections::HashMap<u64, u32> =
        scan.valid.iter().map(|(s, m)| (m.sequence, *s)).collect();
    let mut missing = Vec::new();
    let mut same = 0;
    for (seq, crc) in seen {
        match by_seq.get(seq) {
            Some(slot) => {
                let (_, bytes) = reader.valid_frame(*slot).unwrap().unwrap();
                if crc32c::crc32c(&bytes) == *crc {
                    same += 1;
                } else {
                    missing.push(*seq);
                }
            }
            None => missing.push(*seq),
        }
    }
    (same, missing)
}

#[test]
fn a_killed_capture_loses_no_frame_when_its_ring_is_handed_back() {
    let dir = workdir();
    let mut fs = LoopFs::new(dir.path(), "128M", &["mkfs.ext4", "-q"]);
    let manager = Manager::new(dir.path());
    let rec = fs.mount.join("rec.pcam");
    let (seen, ring) = crash_with_a_full_ring(dir.path(), &mut fs, &manager);
    assert!(seen.len() > 30, "the analyzer saw {} frames", seen.len());
    let out = restart(dir.path(), &rec, Some(&ring));
    assert!(
        stderr(&out).contains("recovered"),
        "the restarted capture recovered nothing: {}",
        stderr(&out)
    );
    let (same, missing) = kept(&rec, &seen);
    assert!(
        missing.is_empty(),
        "{} of {} frames the analyzer saw are not in the recording: {missing:?}",
        missing.len(),
        seen.len()
    );
    assert_eq!(same, seen.len());
    assert!(verify(&rec, &[]).status.success());
}

/// The control experiment: the same crash without handing the ring back
/// loses the frames that were only in RAM (so the test above is not
/// passing by luck).
#[test]
fn without_the_handed_back_ring_a_killed_capture_loses_its_unwritten_frames() {
    let dir = workdir();
    let mut fs = LoopFs::new(dir.path(), "128M", &["mkfs.ext4", "-q"]);
    let manager = Manager::new(dir.path());
    let rec = fs.mount.join("rec.pcam");
    let (seen, _ring) = crash_with_a_full_ring(dir.path(), &mut fs, &manager);
    let _ = restart(dir.path(), &rec, None);
    let (_, missing) = kept(&rec, &seen);
    eprintln!(
        "lost without the handed-back ring: {} frames",
        missing.len()
    );
    assert!(
        !missing.is_empty(),
        "frames were lost with the disk frozen for 0.8 s and capture killed"
    );
}

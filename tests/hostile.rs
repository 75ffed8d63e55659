//! Faults as routine tests: other users, hostile and stuck peers, signals,
//! exhausted descriptors, full and copy-on-write disks. Each test is named
//! after the defect it pins (found by an audit; each failed on the code
//! before its fix).

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{
    connect, recvmsg, send, socket, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag,
    SockType, UnixAddr,
};

use crate::util::*;

/// `nobody`: a user that is neither capture's nor in its group.
const NOBODY: u32 = 65534;

/// Run a command as `nobody` (setpriv from util-linux).
fn as_nobody(cmd: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        cmd,
    ]);
    c
}

fn raw_connect(sock: &Path) -> OwnedFd {
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    connect(fd.as_raw_fd(), &UnixAddr::new(sock).unwrap()).unwrap();
    fd
}

/// The hello and its descriptors, as an analyzer receives them.
fn raw_hello(fd: &OwnedFd) -> (Vec<u8>, Vec<OwnedFd>) {
    let mut buf = [0u8; 256];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 2]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<UnixAddr>(
        fd.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .unwrap();
    let mut fds = Vec::new();
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: SCM_RIGHTS gave this process new descriptors.
            fds.extend(raw.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
        }
    }
    let n = msg.bytes;
    (buf[..n].to_vec(), fds)
}

/// Regression: an analyzer stopped and continued (Ctrl-Z, fg; a debugger)
/// died of EINTR with exit 4 and never reported its lag.
#[test]
fn an_analyzer_survives_sigstop_and_sigcont() {
    let dir = workdir();
    let (cap, rec, sock) = live_capture(
        &dir,
        &[
            "--size", "320x240", "--fps", "30", "--frames", "150", "--slots", "200",
        ],
    );
    let a = watch(&sock, &["--checksum"]);
    std::thread::sleep(Duration::from_millis(1000));
    for _ in 0..3 {
        kill(a.pid(), Signal::SIGSTOP).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        kill(a.pid(), Signal::SIGCONT).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    let cap_out = finish(cap, Duration::from_secs(60), "capture");
    assert!(cap_out.status.success(), "{}", stderr(&cap_out));
    let out = finish(a, Duration::from_secs(30), "analyzer");
    assert!(out.status.success(), "analyzer died: {}", stderr(&out));
    let (frames, s) = analyzer_lines(&out);
    assert_eq!(s["end"], "capture finished", "{s}");
    assert!(frames.len() > 60, "{}", frames.len());
    assert_frames_match_recording(&frames, &rec);
}

/// Regression: capture stopped and continued must keep recording.
#[test]
fn capture_survives_sigstop_and_sigcont() {
    let dir = workdir();
    let (cap, rec, sock) = live_capture(
        &dir,
        &[
            "--size", "320x240", "--fps", "30", "--frames", "120", "--slots", "200",
        ],
    );
    let a = watch(&sock, &["--checksum", "--idle-timeout", "5s"]);
    std::thread::sleep(Duration::from_millis(800));
    kill(cap.pid(), Signal::SIGSTOP).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    kill(cap.pid(), Signal::SIGCONT).unwrap();
    let cap_out = finish(cap, Duration::from_secs(60), "capture");
    assert!(cap_out.status.success(), "{}", stderr(&cap_out));
    let out = finish(a, Duration::from_secs(30), "analyzer");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(verify(&rec, &[]).status.success());
    assert!(assert_file_matches_pattern(&rec) >= 100);
}

/// Regression: recordings were created 0644 (any local user could read
/// every frame) and anyone who could open the file could take its writer
/// lock (flock) so that `--resume` failed.
#[test]
fn recordings_and_sockets_are_private_to_their_owner_and_group() {
    let dir = workdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (cap, rec, sock) = live_capture(
        &dir,
        &["--size", "320x240", "--fps", "30", "--frames", "60"],
    );
    assert_eq!(std::fs::metadata(&rec).unwrap().mode() & 0o777, 0o640);
    assert_eq!(std::fs::metadata(&sock).unwrap().mode() & 0o777, 0o660);
    // Another user can neither read the recording nor connect.
    let out = run(
        {
            let mut c = as_nobody(ANALYZER);
            c.arg("verify").arg(&rec);
            c
        },
        "verify as nobody",
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ermission denied"),
        "{}",
        stderr(&out)
    );
    let out = run(
        {
            let mut c = as_nobody(ANALYZER);
            c.arg("watch").arg("--socket").arg(&sock);
            c
        },
        "watch as nobody",
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ermission denied"),
        "{}",
        stderr(&out)
    );
    finish(cap, Duration::from_secs(60), "capture");

    // A reader holding a lock on the file does not keep capture out: the
    // writer lock needs write access (an open-file-description write lock).
    let reader = std::fs::File::open(&rec).unwrap();
    // SAFETY: flock on a valid descriptor.
    assert_eq!(unsafe { libc::flock(reader.as_raw_fd(), libc::LOCK_EX) }, 0);
    let mut c = capture();
    c.args([
        "--resume", "--size", "320x240", "--fps", "0", "--frames", "10", "-o",
    ])
    .arg(&rec);
    let out = run(c, "capture --resume");
    assert!(out.status.success(), "{}", stderr(&out));
}

/// With --allow-user the socket is open to everyone, and the peer's
/// credentials decide: allowed users get frames, others are refused (and
/// told so) before they receive any descriptor.
#[test]
fn analyzers_are_admitted_by_their_credentials() {
    let dir = workdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for (allowed, admitted) in [("nobody", true), ("daemon", false)] {
        let (cap, _rec, sock) = live_capture(
            &dir,
            &[
                "--size",
                "320x240",
                "--fps",
                "30",
                "--frames",
                "60",
                "--allow-user",
                allowed,
            ],
        );
        let mut c = as_nobody(ANALYZER);
        c.arg("watch").arg("--socket").arg(&sock);
        let out = run(c, "watch as nobody");
        if admitted {
            assert!(out.status.success(), "{}", stderr(&out));
            assert!(analyzer_lines(&out).0.len() > 20);
        } else {
            assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
            assert!(stderr(&out).contains("refused"), "{}", stderr(&out));
        }
        let cap_out = finish(cap, Duration::from_secs(60), "capture");
        assert!(cap_out.status.success(), "{}", stderr(&cap_out));
        if !admitted {
            assert!(
                stderr(&cap_out).contains("not allowed"),
                "{}",
                stderr(&cap_out)
            );
        }
        std::fs::remove_file(dir.path().join("rec.pcam")).unwrap();
    }
}

/// Regression: the analyzer did not check who served the socket; a
/// socket planted where capture's would be (here: capture's, handed to
/// another user) is refused.
#[test]
fn an_analyzer_refuses_a_socket_served_by_someone_else() {
    let dir = workdir();
    let (cap, _rec, sock) = live_capture(
        &dir,
        &["--size", "320x240", "--fps", "30", "--frames", "60"],
    );
    std::os::unix::fs::chown(&sock, Some(NOBODY), None).unwrap();
    let out = run(
        {
            let mut c = analyzer();
            c.arg("watch").arg("--socket").arg(&sock);
            c
        },
        "watch",
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("not trusting it"), "{}", stderr(&out));
    finish(cap, Duration::from_secs(60), "capture");
}

/// Regression: a frame notice naming a slot the store does not have hit
/// an assert in the analyzer (exit 101). Here a stand-in capture sends a
/// correct hello with a real recording, then a bad notice, then a good one.
#[test]
fn a_bad_frame_notice_is_counted_not_fatal() {
    use pagecam::protocol::{End, EndReason, FrameNotice, Hello, STORE_RECORDING_FILE};
    let dir = workdir();
    let rec = dir.path().join("rec.pcam");
    let mut c = capture();
    c.args([
        "--size", "320x240", "--fps", "0", "--frames", "4", "--slots", "4",
    ])
    .args(["--store", "file", "-o"])
    .arg(&rec);
    assert!(run(c, "capture").status.success());
    let reader = pagecam::recording::RecordingReader::open(&rec).unwrap();
    let h = reader.header().clone();
    let generation = reader.record(1).unwrap().generation;
    drop(reader);
    let sock = dir.path().join("fake.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    // (SOCK_STREAM listener is not the protocol's socket type; build a
    // SEQPACKET one instead.)
    drop(listener);
    std::fs::remove_file(&sock).unwrap();
    let lfd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    nix::sys::socket::bind(lfd.as_raw_fd(), &UnixAddr::new(&sock).unwrap()).unwrap();
    nix::sys::socket::listen(&lfd, nix::sys::socket::Backlog::new(4).unwrap()).unwrap();
    let a = watch(&sock, &[]);
    let conn = nix::sys::socket::accept(lfd.as_raw_fd()).unwrap();
    // SAFETY: accept returned a new descriptor that nothing else owns.
    let conn = unsafe { OwnedFd::from_raw_fd(conn) };
    let file = std::fs::File::open(&rec).unwrap();
    let hello = Hello {
        store_kind: STORE_RECORDING_FILE,
        layout: h.layout,
        format: h.format,
        client_id: 1,
        next_sequence: 4,
    }
    .encode();
    nix::sys::socket::sendmsg::<()>(
        conn.as_raw_fd(),
        &[std::io::IoSlice::new(&hello)],
        &[nix::sys::socket::ControlMessage::ScmRights(&[
            file.as_raw_fd()
        ])],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    let notice = |slot, generation, sequence| {
        FrameNotice {
            slot,
            generation,
            sequence,
            bytes_used: h.format.frame_size,
            ..Default::default()
        }
        .encode()
    };
    send(conn.as_raw_fd(), &notice(9999, 2, 4), MsgFlags::empty()).unwrap();
    send(
        conn.as_raw_fd(),
        &notice(1, generation, 5),
        MsgFlags::empty(),
    )
    .unwrap();
    let end = End {
        reason: EndReason::Finished,
        frames: 6,
    }
    .encode();
    send(conn.as_raw_fd(), &end, MsgFlags::empty()).unwrap();
    let out = finish(a, Duration::from_secs(20), "analyzer");
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, s) = analyzer_lines(&out);
    assert_eq!(s["bad_notices"], 1, "{s}");
    assert_eq!(s["frames"], 1, "{s}");
}

/// Regression: when descriptors ran out, the accept error was ignored, the
/// listener stayed readable and the notify thread spun at 99% CPU; there
/// was no client limit; an analyzer's connect could hang on a full backlog.
#[test]
fn exhausted_descriptors_neither_spin_nor_hang() {
    let dir = workdir();
    let rec = dir.path().join("rec.pcam");
    let sock = dir.path().join("rec.sock");
    let mut cap = Command::new("prlimit");
    cap.args(["--nofile=40", "--", CAPTURE])
        .env("PAGECAM_LOG", "warn")
        .args([
            "--json",
            "--size",
            "320x240",
            "--fps",
            "30",
            "--duration",
            "6",
        ])
        .args(["--max-analyzers", "100", "-o"])
        .arg(&rec)
        .arg("--socket")
        .arg(&sock);
    let cap = spawn(cap);
    wait_for(&sock);
    // (Once capture is up: running out of descriptors while starting is a
    // clean "cannot start" error, exit 3.)
    std::thread::sleep(Duration::from_millis(500));
    // More connections than capture has descriptors for.
    let held: Vec<OwnedFd> = (0..60)
        .filter_map(|_| {
            let fd = socket(
                AddressFamily::Unix,
                SockType::SeqPacket,
                SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                None,
            )
            .ok()?;
            connect(fd.as_raw_fd(), &UnixAddr::new(&sock).unwrap()).ok()?;
            Some(fd)
        })
        .collect();
    assert!(held.len() > 40, "{} connections", held.len());
    let cpu = |pid: i32| -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_else(|e| panic!("capture (pid {pid}) is gone: {e}"));
        let f: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
    };
    let before = cpu(cap.pid().as_raw());
    std::thread::sleep(Duration::from_secs(2));
    if std::fs::metadata(format!("/proc/{}", cap.pid())).is_err() {
        let out = finish(cap, Duration::from_secs(5), "capture");
        panic!("capture exited early: {:?}\n{}", out.status, stderr(&out));
    }
    let used = cpu(cap.pid().as_raw()) - before;
    // Capture itself at 30 fps uses a few percent; a spinning thread, 100%.
    assert!(
        used < 0.8,
        "capture used {used:.2} s of CPU in 2 s: spinning?"
    );
    // A new analyzer gets a clear answer within its timeout: served, or
    // told capture is too busy; never a hang.
    let started = Instant::now();
    let out = run(
        {
            let mut c = analyzer();
            c.args(["watch", "--idle-timeout", "2s", "--frames", "5", "--socket"])
                .arg(&sock);
            c
        },
        "watch",
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        out.status.success() || !stderr(&out).is_empty(),
        "{}",
        stderr(&out)
    );
    drop(held);
    let cap_out = finish(cap, Duration::from_secs(30), "capture");
    assert!(cap_out.status.success(), "{}", stderr(&cap_out));
    assert!(verify(&rec, &[]).status.success());
}

/// Regression: shutdown took 500 ms per stuck analyzer, one after another
/// (50 s with 100), far past the unit's TimeoutStopSec=15. Also: at most
/// --max-analyzers are served; the rest are refused.
#[test]
fn shutdown_with_a_hundred_stuck_analyzers_is_prompt() {
    let dir = workdir();
    let (cap, rec, sock) = live_capture(
        &dir,
        &[
            "--size",
            "320x240",
            "--fps",
            "100",
            "--stuck-timeout",
            "60s",
            "--max-analyzers",
            "80",
        ],
    );
    // They connect and never read.
    let stuck: Vec<OwnedFd> = (0..100).map(|_| raw_connect(&sock)).collect();
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    kill(cap.pid(), Signal::SIGTERM).unwrap();
    let out = finish(cap, Duration::from_secs(15), "capture with stuck analyzers");
    let took = started.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    assert!(
        stderr(&out).contains("already 80 analyzers"),
        "{}",
        stderr(&out)
    );
    drop(stuck);
    assert!(verify(&rec, &[]).status.success());
}

/// Regression: with --drop-cache, one analyzer that never sent Progress
/// (the protocol calls it optional) kept every page in memory, and
/// Progress(2^64-1) wrapped the bound and killed the housekeeping thread.
#[test]
fn drop_cache_is_not_defeated_by_silent_or_hostile_analyzers() {
    let dir = workdir();
    let (cap, rec, sock) = live_capture(
        &dir,
        &[
            "--store",
            "file",
            "--drop-cache",
            "--max-loss",
            "50ms",
            "--size",
            "640x480",
            "--fps",
            "100",
            "--frames",
            "300",
            "--slots",
            "300",
            "--on-full",
            "stop",
            "--stuck-timeout",
            "60s",
        ],
    );
    let silent = raw_connect(&sock);
    let (_, _fds) = raw_hello(&silent);
    let hostile = raw_connect(&sock);
    let (_, _fds2) = raw_hello(&hostile);
    send(
        hostile.as_raw_fd(),
        &pagecam::protocol::Progress { sequence: u64::MAX }.encode(),
        MsgFlags::empty(),
    )
    .unwrap();
    let cap_out = finish(cap, Duration::from_secs(60), "capture");
    assert!(cap_out.status.success(), "{}", stderr(&cap_out));
    let s = capture_summary(&cap_out);
    assert!(
        s["fdatasyncs"].as_u64().unwrap() > 5,
        "durability went on: {s}"
    );
    let file = std::fs::File::open(&rec).unwrap();
    let live = pagecam::store::LiveStore::map(&file, &rec).unwrap();
    let cached = live.resident_bytes() as f64 / live.header().layout.file_size as f64;
    assert!(cached < 0.2, "{:.0}% still cached", cached * 100.0);
    drop((silent, hostile));
}

/// Regression: socket paths of 99..107 bytes were refused (the temporary
/// name's suffix pushed them past the limit).
#[test]
fn a_long_socket_path_is_accepted() {
    let dir = workdir();
    let base = dir.path().to_string_lossy().into_owned();
    let name = "s".repeat(107 - base.len() - 1);
    let sock = dir.path().join(name);
    assert_eq!(sock.as_os_str().len(), 107);
    let mut c = capture();
    c.args(["--size", "320x240", "--fps", "30", "--frames", "30", "-o"])
        .arg(dir.path().join("rec.pcam"))
        .arg("--socket")
        .arg(&sock);
    let cap = spawn(c);
    wait_for(&sock);
    let a = watch(&sock, &[]);
    let out = finish(a, Duration::from_secs(30), "watch");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(finish(cap, Duration::from_secs(30), "capture")
        .status
        .success());
}

/// Regression: a failure after the recording was created (here: the
/// socket is in use) left the full-size recording behind, and the retry
/// failed with "already exists".
#[test]
fn a_socket_in_use_leaves_no_recording_behind() {
    let dir = workdir();
    let (cap, _rec, sock) = live_capture(&dir, &["--size", "320x240", "--fps", "30"]);
    let other = dir.path().join("other.pcam");
    let mut c = capture();
    c.args(["--size", "320x240", "--frames", "5", "-o"])
        .arg(&other)
        .arg("--socket")
        .arg(&sock);
    let out = run(c, "second capture");
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("in use"), "{}", stderr(&out));
    assert!(!other.exists(), "the recording was left behind");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !names.iter().any(|n| n.to_string_lossy().contains("other")),
        "{names:?}"
    );
    kill(cap.pid(), Signal::SIGTERM).unwrap();
    finish(cap, Duration::from_secs(30), "capture");
}

/// Regression: `verify` on a live recording said frames were "in flight
/// when capture stopped" and left busy slots out of its counts.
#[test]
fn verify_on_a_live_recording_says_so() {
    let dir = workdir();
    let (cap, rec, _sock) = live_capture(
        &dir,
        &["--size", "320x240", "--fps", "100", "--slots", "50"],
    );
    std::thread::sleep(Duration::from_millis(1500));
    let out = verify(&rec, &[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("being recorded"), "{text}");
    assert!(!text.contains("when capture stopped"), "{text}");
    kill(cap.pid(), Signal::SIGTERM).unwrap();
    finish(cap, Duration::from_secs(30), "capture");
    let text = String::from_utf8_lossy(&verify(&rec, &[]).stdout).into_owned();
    assert!(!text.contains("being recorded"), "{text}");
}

/// Regression: a full disk was reported as a truncated file (SIGBUS) or
/// not at all. On ext4 pre-allocation reserves every block, so a full disk
/// cannot stop a recording that has started; on btrfs (copy-on-write) it
/// would, unless the file is No_COW, which pagecam now sets.
#[test]
fn a_full_disk_does_not_stop_a_started_recording_ext4_and_btrfs() {
    for mkfs in [&["mkfs.ext4", "-q"][..], &["mkfs.btrfs", "-q", "-f"]] {
        let dir = workdir();
        let fs = LoopFs::new(dir.path(), "256M", mkfs);
        for store in ["direct", "file"] {
            let rec = fs.mount.join(format!("{store}.pcam"));
            let sock = dir.path().join(format!("{store}.sock"));
            let mut c = capture();
            // 100 slots at 100 fps: a lap a second, for 3.5 s.
            c.args([
                "--size", "320x240", "--fps", "100", "--slots", "100", "--frames", "350",
            ])
            .args(["--store", store, "-o"])
            .arg(&rec)
            .arg("--socket")
            .arg(&sock);
            let cap = spawn(c);
            wait_for(&sock);
            // Fill the rest of the disk while capture laps its recording.
            let filler = fs.mount.join(format!("filler-{store}"));
            let _ = Command::new("dd")
                .args(["if=/dev/zero", "bs=1M", "status=none"])
                .arg(format!("of={}", filler.display()))
                .status();
            let out = finish(cap, Duration::from_secs(60), "capture on a full disk");
            assert!(
                out.status.success(),
                "{}, {store}: {}",
                mkfs[0],
                stderr(&out)
            );
            let v = verify(&rec, &[]);
            assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
            std::fs::remove_file(&filler).unwrap();
            // btrfs frees the filler's space at its next commit.
            let _ = Command::new("sync").arg("-f").arg(&fs.mount).status();
            if mkfs[0] == "mkfs.btrfs" {
                let attrs = Command::new("lsattr").arg(&rec).output().unwrap();
                assert!(
                    String::from_utf8_lossy(&attrs.stdout)
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .contains('C'),
                    "the recording is not No_COW: {}",
                    String::from_utf8_lossy(&attrs.stdout)
                );
            }
        }
    }
}

/// A capture speaking of a store kind this build does not know (a newer
/// capture, or garbage) is refused with a clear error, end to end.
#[test]
fn an_unknown_store_kind_is_refused_clearly() {
    use pagecam::protocol::Hello;
    let dir = workdir();
    let sock = dir.path().join("fake.sock");
    let lfd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    nix::sys::socket::bind(lfd.as_raw_fd(), &UnixAddr::new(&sock).unwrap()).unwrap();
    nix::sys::socket::listen(&lfd, nix::sys::socket::Backlog::new(4).unwrap()).unwrap();
    let a = watch(&sock, &[]);
    let conn = nix::sys::socket::accept(lfd.as_raw_fd()).unwrap();
    // SAFETY: accept returned a new descriptor that nothing else owns.
    let conn = unsafe { OwnedFd::from_raw_fd(conn) };
    let format = pagecam::format::FrameFormat::uncompressed(pagecam::format::YUYV, 64, 48).unwrap();
    let hello = Hello {
        store_kind: 9,
        layout: pagecam::format::Layout::new(format.frame_size, 4).unwrap(),
        format,
        client_id: 1,
        next_sequence: 0,
    }
    .encode();
    send(conn.as_raw_fd(), &hello, MsgFlags::empty()).unwrap();
    let out = finish(a, Duration::from_secs(20), "analyzer");
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unknown frame store kind 9"),
        "{}",
        stderr(&out)
    );
}

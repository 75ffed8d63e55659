//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pagecam::format::{FrameFormat, YUYV};
use pagecam::recording::RecordingReader;
use pagecam::source::pattern::Pattern;

pub const CAPTURE: &str = env!("CARGO_BIN_EXE_pagecam-capture");
pub const ANALYZER: &str = env!("CARGO_BIN_EXE_pagecam-analyzer");

/// A fresh directory on the build's disk (a real filesystem, not tmpfs).
pub fn workdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("pagecam-test-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
}

/// `pagecam-capture --json` (its summary as one JSON line on stdout).
pub fn capture() -> Command {
    let mut c = Command::new(CAPTURE);
    c.env("PAGECAM_LOG", "warn").arg("--json");
    c
}

pub fn analyzer() -> Command {
    Command::new(ANALYZER)
}

/// A started binary whose output is collected from the start, so a chatty
/// child never blocks on a full pipe while the test waits for another one.
pub struct Running {
    pid: Pid,
    done: Receiver<std::io::Result<Output>>,
}

impl Running {
    pub fn pid(&self) -> Pid {
        self.pid
    }
}

pub fn spawn(mut cmd: Command) -> Running {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn binary");
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    Running { pid, done }
}

/// Wait for a child, killing it and failing the test if it takes longer
/// than `limit` (a hang fails fast with a message, it never blocks CI).
pub fn finish(child: Running, limit: Duration, what: &str) -> Output {
    match child.done.recv_timeout(limit) {
        Ok(out) => out.expect("collect output"),
        Err(_) => {
            let _ = kill(child.pid, Signal::SIGKILL);
            let out = child
                .done
                .recv()
                .expect("waiter thread")
                .expect("collect output");
            panic!(
                "{what} did not finish within {limit:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

pub fn run(cmd: Command, what: &str) -> Output {
    finish(spawn(cmd), Duration::from_secs(60), what)
}

/// Start capture recording into `DIR/rec.pcam`, serving `DIR/rec.sock`,
/// and wait until analyzers can connect.
pub fn live_capture(dir: &tempfile::TempDir, args: &[&str]) -> (Running, PathBuf, PathBuf) {
    let rec = dir.path().join("rec.pcam");
    let sock = dir.path().join("rec.sock");
    let mut cap = capture();
    cap.args(args)
        .arg("-o")
        .arg(&rec)
        .arg("--socket")
        .arg(&sock);
    let cap = spawn(cap);
    wait_for(&sock);
    (cap, rec, sock)
}

/// `pagecam-analyzer watch ARGS --socket SOCK`, started.
pub fn watch(sock: &Path, args: &[&str]) -> Running {
    let mut a = analyzer();
    a.arg("watch").args(args).arg("--socket").arg(sock);
    spawn(a)
}

/// `pagecam-analyzer verify ARGS FILE`, finished.
pub fn verify(rec: &Path, args: &[&str]) -> Output {
    let mut v = analyzer();
    v.arg("verify").args(args).arg(rec);
    run(v, "verify")
}

/// Wait until `path` exists (the capture's socket), or fail.
pub fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn stdout_json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// The capture's final JSON summary (its only stdout line).
pub fn capture_summary(out: &Output) -> serde_json::Value {
    let lines = stdout_json_lines(out);
    assert_eq!(
        lines.len(),
        1,
        "capture stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    lines.into_iter().next().unwrap()
}

/// Split an analyzer's output into per-frame lines (frames and lost
/// frames, not events) and its summary.
pub fn analyzer_lines(out: &Output) -> (Vec<serde_json::Value>, serde_json::Value) {
    let mut lines = stdout_json_lines(out);
    let summary = lines.pop().expect("analyzer printed a summary");
    assert!(
        summary.get("summary").is_some(),
        "last line is the summary: {summary}"
    );
    lines.retain(|l| l.get("event").is_none());
    (lines, summary["summary"].clone())
}

/// The events an analyzer printed, as (event, seq).
pub fn analyzer_events(out: &Output) -> Vec<(String, u64)> {
    stdout_json_lines(out)
        .iter()
        .filter_map(|f| Some((f["event"].as_str()?.to_string(), f["seq"].as_u64()?)))
        .collect()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn yuyv(w: u32, h: u32) -> FrameFormat {
    FrameFormat::uncompressed(YUYV, w, h).unwrap()
}

/// CRC32C of the test pattern's frame `seq`: what a reader must see.
pub fn expected_crc(pattern: &Pattern, seq: u64) -> u32 {
    let mut buf = vec![0u8; pattern.format().frame_size as usize];
    pattern.render(seq, &mut buf);
    crc32c::crc32c(&buf)
}

/// Check every frame an analyzer accepted against the pattern, when the
/// source may have dropped up to `drops` frames (a loaded machine): frame
/// `seq` of the recording is then pattern frame `seq + k` for some
/// `k <= drops`.
pub fn assert_frames_match_pattern_with_drops(
    frames: &[serde_json::Value],
    pattern: &Pattern,
    drops: u64,
) {
    for f in frames.iter().filter(|f| f.get("lost").is_none()) {
        let seq = f["seq"].as_u64().unwrap();
        let crc = f["crc32c"].as_u64().expect("analyzer run with --checksum") as u32;
        assert!(
            (0..=drops).any(|k| crc == expected_crc(pattern, seq + k)),
            "frame {seq} as read by an analyzer is no pattern frame {seq}..={}: {f}",
            seq + drops
        );
    }
}

/// Check every frame an analyzer accepted against the pattern. With no
/// source drops, recording sequence == source sequence.
pub fn assert_frames_match_pattern(frames: &[serde_json::Value], pattern: &Pattern) {
    for f in frames.iter().filter(|f| f.get("lost").is_none()) {
        let seq = f["seq"].as_u64().unwrap();
        let crc = f["crc32c"].as_u64().expect("analyzer run with --checksum") as u32;
        assert_eq!(
            crc,
            expected_crc(pattern, seq),
            "frame {seq} as read by an analyzer is not frame {seq}: {f}"
        );
    }
}

/// Every frame an analyzer accepted (`--checksum`) is, byte for byte, the
/// frame the recording holds for that sequence (which
/// `assert_file_matches_pattern` checks against the pattern): independent of
/// frames the source dropped on a loaded machine.
pub fn assert_frames_match_recording(frames: &[serde_json::Value], rec: &Path) {
    let reader = RecordingReader::open(rec).expect("open recording");
    let by_seq: std::collections::HashMap<u64, u32> = reader
        .scan()
        .expect("scan")
        .valid
        .iter()
        .map(|(slot, m)| (m.sequence, *slot))
        .collect();
    for f in frames.iter().filter(|f| f.get("lost").is_none()) {
        let seq = f["seq"].as_u64().unwrap();
        let crc = f["crc32c"].as_u64().expect("analyzer run with --checksum") as u32;
        let slot = by_seq
            .get(&seq)
            .unwrap_or_else(|| panic!("frame {seq} an analyzer read is not in the recording"));
        let (_, bytes) = reader.valid_frame(*slot).unwrap().expect("valid");
        assert_eq!(
            crc,
            crc32c::crc32c(&bytes),
            "frame {seq} differs from the file's"
        );
    }
}

/// Every valid frame in a recording holds exactly the pattern frame its
/// index record names.
pub fn assert_file_matches_pattern(path: &Path) -> usize {
    let reader = RecordingReader::open(path).expect("open recording");
    let pattern = Pattern::new(reader.header().format).unwrap();
    let scan = reader.scan().expect("scan");
    assert!(scan.corrupt.is_empty(), "corrupt slots {:?}", scan.corrupt);
    let mut want = vec![0u8; reader.header().format.frame_size as usize];
    for (slot, meta) in &scan.valid {
        pattern.render(meta.source_sequence, &mut want);
        let (_, got) = reader
            .valid_frame(*slot)
            .expect("read")
            .expect("offline read is stable");
        assert!(
            got == want,
            "slot {slot} (sequence {}) does not hold its frame",
            meta.sequence
        );
    }
    scan.valid.len()
}

/// A small real filesystem of its own (an ext4 image on a loop device),
/// for tests that freeze or fill a disk without touching the build's.
/// Needs root and loop devices (CI has both); fails loudly otherwise.
pub struct LoopFs {
    pub mount: PathBuf,
    device: String,
    frozen: bool,
}

fn sh(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

impl LoopFs {
    /// `mkfs` (e.g. "mkfs.ext4") on a `size` image in `dir`, mounted at `dir/mnt`.
    pub fn new(dir: &Path, size: &str, mkfs: &[&str]) -> LoopFs {
        let image = dir.join("fs.img");
        let mount = dir.join("mnt");
        std::fs::create_dir_all(&mount).unwrap();
        let ok = |o: Output, what: &str| {
            assert!(
                o.status.success(),
                "{what} failed (this test needs root and loop devices): {}",
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        };
        ok(
            sh("truncate", &["-s", size, image.to_str().unwrap()]),
            "truncate",
        );
        let mut args = mkfs[1..].to_vec();
        args.push(image.to_str().unwrap());
        ok(sh(mkfs[0], &args), mkfs[0]);
        let device = ok(
            sh("losetup", &["-f", "--show", image.to_str().unwrap()]),
            "losetup",
        );
        let fs = LoopFs {
            mount,
            device,
            frozen: false,
        };
        ok(
            sh("mount", &[&fs.device, fs.mount.to_str().unwrap()]),
            "mount",
        );
        fs
    }

    /// Block every write to the filesystem until `thaw` (fsfreeze).
    pub fn freeze(&mut self) {
        let o = sh("fsfreeze", &["-f", self.mount.to_str().unwrap()]);
        assert!(o.status.success(), "fsfreeze: {}", stderr(&o));
        self.frozen = true;
    }

    pub fn thaw(&mut self) {
        if self.frozen {
            sh("fsfreeze", &["-u", self.mount.to_str().unwrap()]);
            self.frozen = false;
        }
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        self.thaw();
        let m = self.mount.to_str().unwrap().to_string();
        for _ in 0..50 {
            if sh("umount", &[&m]).status.success() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        sh("losetup", &["-d", &self.device]);
    }
}

/// Keep a result table where the person running the tests will see it:
/// cargo hides a passing test's output, so tables go to
/// `target/test-reports/KIND-NAME.txt`, which `scripts/test.sh` prints at
/// the end.
pub fn report(kind: &str, name: &str, text: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .join("test-reports");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{kind}-{name}.txt")), text);
}

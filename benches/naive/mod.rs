//! The two child processes the benchmark measures pagecam against, run by
//! re-executing the bench binary with a role argument:
//!
//! - the naive design (`ROLE_CAPTURE`, `ROLE_ANALYZER`): capture renders each
//!   frame with the same `Pattern::render` as pagecam's test source into a
//!   private "driver" buffer, copies it into a send buffer behind a 48-byte
//!   header, sends header and frame whole over a Unix `SOCK_STREAM` socket
//!   with a large `SO_SNDBUF`, and `write`s the frame into a ring file of the
//!   same geometry as pagecam's (32 page-aligned slots, preallocated, synced
//!   once at the end like pagecam's final sync). Writeback is left to the
//!   kernel's flusher, or (variant) done with pagecam's policy: writeback
//!   started after each frame and an `fdatasync` every 0.5 s. The analyzer receives header
//!   and frame into its own buffer and runs `pagecam::stats::Analyzer` on it,
//!   printing one JSON line per frame in pagecam-analyzer's format so the
//!   harness parses both the same way.
//! - the bare socket floor (`ROLE_PONG`): the far end of a 64-byte
//!   `SOCK_SEQPACKET` ping-pong, and of a paced one-way probe.
//!
//! Every blocking call has a timeout so a broken run fails instead of hanging.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    connect, recv, send, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag, SockType,
    UnixAddr,
};
use pagecam::format::{FrameFormat, YUYV};
use pagecam::recording::monotonic_ns;
use pagecam::source::pattern::Pattern;
use pagecam::stats::Analyzer;

pub const ROLE_CAPTURE: &str = "__pagecam_bench_naive_capture";
pub const ROLE_ANALYZER: &str = "__pagecam_bench_naive_analyzer";
pub const ROLE_PONG: &str = "__pagecam_bench_pong";

/// Bytes in front of each frame on the naive stream:
/// magic u32, length u32, sequence, source sequence, timestamp, ready (u64 each), pad.
pub const HEADER: usize = 48;
const MAGIC: u32 = 0x4e41_4956; // "NAIV"
/// Message size of the floor probe (the brief's bare 64-byte round trip).
pub const PING_LEN: usize = 64;
const TIMEOUT: Duration = Duration::from_secs(20);

/// Run the role named by `args[0]`, if it is one of ours.
pub fn run_role(args: &[String]) -> Option<ExitCode> {
    let result = match args.first().map(String::as_str) {
        Some(ROLE_CAPTURE) => capture(&args[1..]),
        Some(ROLE_ANALYZER) => analyzer(&args[1..]),
        Some(ROLE_PONG) => pong(&args[1..]),
        _ => return None,
    };
    Some(match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e}", args[0]);
            ExitCode::FAILURE
        }
    })
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

fn num<T: std::str::FromStr>(args: &[String], i: usize) -> io::Result<T> {
    args.get(i)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("argument {i} missing or not a number")))
}

fn yuyv(width: u32, height: u32) -> io::Result<FrameFormat> {
    FrameFormat::uncompressed(YUYV, width, height).map_err(|e| bad(e.to_string()))
}

/// Arguments of the naive capture, in order.
pub struct CaptureArgs<'a> {
    pub socket: &'a Path,
    pub file: &'a Path,
    pub width: u32,
    pub height: u32,
    /// 0 = as fast as possible.
    pub fps: u32,
    pub frames: u64,
    pub slots: u64,
    /// pagecam's durability policy: start writeback of each frame right after
    /// writing it (`sync_file_range(SYNC_FILE_RANGE_WRITE)`) and `fdatasync`
    /// every 0.5 s from a helper thread, as pagecam's housekeeping thread does
    /// with its default `--max-loss 1s`. Otherwise the kernel's flusher writes
    /// back whenever it likes and the file is synced once at the end.
    pub writeback: bool,
}

impl CaptureArgs<'_> {
    pub fn to_args(&self) -> Vec<String> {
        vec![
            ROLE_CAPTURE.into(),
            self.socket.display().to_string(),
            self.file.display().to_string(),
            self.width.to_string(),
            self.height.to_string(),
            self.fps.to_string(),
            self.frames.to_string(),
            self.slots.to_string(),
            u8::from(self.writeback).to_string(),
        ]
    }
}

/// Accept one connection within `TIMEOUT`.
fn accept_one(listener: &UnixListener) -> io::Result<UnixStream> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                return Ok(s);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_micros(200))
            }
            Err(e) => return Err(e),
        }
    }
}

/// Naive capture: render → copy into the send buffer → send whole → write.
fn capture(args: &[String]) -> io::Result<()> {
    let socket = PathBuf::from(args.first().ok_or_else(|| bad("socket path"))?);
    let path = PathBuf::from(args.get(1).ok_or_else(|| bad("file path"))?);
    let format = yuyv(num(args, 2)?, num(args, 3)?)?;
    let fps: u32 = num(args, 4)?;
    let frames: u64 = num(args, 5)?;
    let slots: u64 = num(args, 6)?;
    let writeback = num::<u8>(args, 7)? != 0;
    let pattern = Pattern::new(format).map_err(|e| bad(e.to_string()))?;
    let size = format.frame_size as usize;
    let slot_size = (size as u64).div_ceil(4096) * 4096;

    // The recording: a ring of page-aligned slots, blocks allocated up front
    // like pagecam's (so neither design pays block allocation per frame).
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    // SAFETY: fallocate on a valid descriptor; no memory is passed.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, (slot_size * slots) as i64) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }

    let stop_sync = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let syncer = if writeback {
        let (f, stop) = (file.try_clone()?, stop_sync.clone());
        Some(std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(500));
                let _ = f.sync_data();
            }
        }))
    } else {
        None
    };

    let listener = UnixListener::bind(&socket)?;
    let mut stream = accept_one(&listener)?;
    // Large enough for two whole frames; the kernel caps it at wmem_max
    // (and doubles it); what we got is reported.
    let _ = setsockopt(
        &stream.as_fd(),
        sockopt::SndBuf,
        &(2 * (size + HEADER)).min(64 << 20),
    );
    let sndbuf = nix::sys::socket::getsockopt(&stream.as_fd(), sockopt::SndBuf).unwrap_or(0);
    stream.set_write_timeout(Some(TIMEOUT))?;

    // Both buffers are touched now so their first-use page faults are part
    // of startup (measured by the frames=0 baseline), not of frames.
    let mut driver = vec![1u8; size];
    let mut buf = vec![1u8; HEADER + size];

    let period = 1_000_000_000 / fps.max(1) as u64;
    let start = monotonic_ns();
    let mut next_seq = 0u64;
    let mut dropped = 0u64;
    let (mut memcpy_bytes, mut sent_bytes, mut written_bytes) = (0u64, 0u64, 0u64);
    for n in 0..frames {
        if fps > 0 {
            // The same pacing as pagecam's TestSource: sleep to the frame
            // time; if late by whole periods, those frames are skipped.
            let now = monotonic_ns();
            let due = start + next_seq * period;
            if now + 1000 < due {
                std::thread::sleep(Duration::from_nanos(due - now));
            } else {
                let behind = (now - due) / period;
                next_seq += behind;
                dropped += behind;
            }
        }
        let source_seq = next_seq;
        pattern.render(source_seq, &mut driver);
        let ts = monotonic_ns();
        next_seq += 1;
        // The one user-space copy: driver buffer → process buffer.
        buf[HEADER..].copy_from_slice(&driver);
        memcpy_bytes += size as u64;
        let ready = monotonic_ns();
        let h = &mut buf[..HEADER];
        h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        h[4..8].copy_from_slice(&(size as u32).to_le_bytes());
        h[8..16].copy_from_slice(&n.to_le_bytes());
        h[16..24].copy_from_slice(&source_seq.to_le_bytes());
        h[24..32].copy_from_slice(&ts.to_le_bytes());
        h[32..40].copy_from_slice(&ready.to_le_bytes());
        // Kernel copy 1 (copy_from_user into socket buffers).
        stream.write_all(&buf)?;
        sent_bytes += buf.len() as u64;
        // Kernel copy 2 (copy_from_user into the page cache).
        let at = (n % slots) * slot_size;
        file.write_all_at(&buf[HEADER..], at)?;
        written_bytes += size as u64;
        if writeback {
            // SAFETY: plain syscall on a valid descriptor; no memory is passed.
            unsafe {
                libc::sync_file_range(
                    file.as_raw_fd(),
                    at as i64,
                    size as i64,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
    }
    let seconds = (monotonic_ns() - start) as f64 / 1e9;
    drop(stream); // EOF ends the analyzer
    stop_sync.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(t) = syncer {
        let _ = t.join();
    }
    file.sync_data()?; // the same end-of-run durability as pagecam's final sync
    let _ = std::fs::remove_file(&socket);
    println!(
        "{}",
        serde_json::json!({
            "frames": frames,
            "source_dropped": dropped,
            "bytes_memcpy": memcpy_bytes,
            "bytes_sent": sent_bytes,
            "bytes_written": written_bytes,
            "sndbuf": sndbuf,
            "seconds": seconds,
            "fps": frames as f64 / seconds.max(1e-9),
        })
    );
    Ok(())
}

/// Connect, retrying while the peer is between bind and listen.
fn connect_stream(path: &Path) -> io::Result<UnixStream> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_micros(200)),
            Err(e) => return Err(e),
        }
    }
}

/// Read exactly `buf.len()` bytes; `Ok(false)` on EOF before the first byte.
fn read_whole(s: &mut UnixStream, buf: &mut [u8]) -> io::Result<bool> {
    let mut done = 0;
    while done < buf.len() {
        match s.read(&mut buf[done..]) {
            Ok(0) if done == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Naive analyzer: receive header and frame into its own buffer, analyse.
fn analyzer(args: &[String]) -> io::Result<()> {
    let socket = PathBuf::from(args.first().ok_or_else(|| bad("socket path"))?);
    let format = yuyv(num(args, 1)?, num(args, 2)?)?;
    let mut stream = connect_stream(&socket)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    let mut stats = Analyzer::new(format);
    let mut header = [0u8; HEADER];
    let mut frame = vec![1u8; format.frame_size as usize];
    let mut out = BufWriter::new(io::stdout().lock());
    let mut frames = 0u64;
    let mut received = 0u64;
    let u64_at = |h: &[u8], at: usize| u64::from_le_bytes(h[at..at + 8].try_into().expect("8"));
    while read_whole(&mut stream, &mut header)? {
        if u32::from_le_bytes(header[0..4].try_into().expect("4")) != MAGIC {
            return Err(bad("bad frame header"));
        }
        let len = u32::from_le_bytes(header[4..8].try_into().expect("4")) as usize;
        if len != frame.len() || !read_whole(&mut stream, &mut frame)? {
            return Err(bad("short frame"));
        }
        // The analyzer now holds the whole frame in its own memory.
        let held = monotonic_ns();
        received += (HEADER + len) as u64;
        let s = stats.analyse_bytes(&frame);
        let now = monotonic_ns();
        frames += 1;
        let (seq, ts, ready) = (u64_at(&header, 8), u64_at(&header, 24), u64_at(&header, 32));
        // The same line pagecam-analyzer prints, with the same work per frame.
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({
                "seq": seq,
                "slot": 0,
                "ts_ns": ts,
                "latency_us": now.saturating_sub(ts) as f64 / 1000.0,
                "notify_us": held.saturating_sub(ready) as f64 / 1000.0,
                "bytes": len,
                "error_frame": false,
                "mean_luma": s.map(|s| s.mean_luma),
                "motion": s.and_then(|s| s.motion),
            }),
        )?;
        out.write_all(b"\n")?;
        if seq % 8 == 0 {
            out.flush()?;
        }
    }
    serde_json::to_writer(
        &mut out,
        &serde_json::json!({"summary": {
            "frames": frames, "missed": 0, "overwritten": 0, "torn": 0,
            "end": "capture finished", "bytes_received": received,
        }}),
    )?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Floor probe, far end: echo 64-byte messages; for paced ones also record
/// the one-way time from the sender's timestamp; print those at the end.
fn pong(args: &[String]) -> io::Result<()> {
    let path = PathBuf::from(args.first().ok_or_else(|| bad("socket path"))?);
    let sock = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = UnixAddr::new(&path)?;
    let deadline = Instant::now() + TIMEOUT;
    while let Err(e) = connect(sock.as_raw_fd(), &addr) {
        if Instant::now() >= deadline {
            return Err(e.into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    setsockopt(
        &sock,
        sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(TIMEOUT.as_secs() as i64, 0),
    )?;
    let mut one_way_us = Vec::new();
    let mut buf = [0u8; PING_LEN];
    loop {
        let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        let now = monotonic_ns();
        if n != PING_LEN {
            return Err(bad("short ping"));
        }
        match buf[0] {
            0 => {}
            1 => {
                let sent = u64::from_le_bytes(buf[8..16].try_into().expect("8"));
                one_way_us.push(now.saturating_sub(sent) as f64 / 1000.0);
            }
            _ => break,
        }
        send(sock.as_raw_fd(), &buf, MsgFlags::MSG_NOSIGNAL)?;
    }
    println!("{}", serde_json::json!({ "one_way_us": one_way_us }));
    Ok(())
}

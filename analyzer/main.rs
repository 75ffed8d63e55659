//! `pagecam-analyzer`: analyse live frames in place, or check a recording.
//!
//! `watch` connects to a running capture, maps the recording read-only from
//! the descriptor capture passes, and for each notice computes statistics
//! over the frame where it lies (no copy), writing one JSON line per frame.
//! `inspect` and `verify` work offline on a recording file. A thin binary:
//! the logic is in the `pagecam` crate.

mod export;

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde::Serialize;

use pagecam::format::{fourcc_str, FLAG_ERROR};
use pagecam::mapping::SlotReadError;
use pagecam::protocol::EndReason;
use pagecam::recording::{monotonic_ns, RecordingReader};
use pagecam::stats::Analyzer;
use pagecam::subscribe::{Event, SubscribeError, Subscription};

use pagecam::exit::analyzer::{
    CAPTURE_GONE as EXIT_CAPTURE_GONE, CHECK_FAILED as EXIT_FAILED_CHECK,
    UNREADABLE as EXIT_UNREADABLE, USAGE as EXIT_USAGE,
};

#[derive(Parser, Debug)]
#[command(
    name = "pagecam-analyzer",
    version,
    about = "Analyse pagecam frames in place, or inspect and verify recordings."
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Follow a running capture and print one JSON line per frame.
    Watch(WatchArgs),
    /// Describe a recording: header, frames, time span, drops, slots in use.
    Inspect {
        /// The recording.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check every committed frame's checksum. Exit 0 if all pass, 1 if any
    /// frame is corrupt, 2 if the file cannot be read as a recording.
    Verify {
        /// The recording.
        file: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Get frames out: PNG/JPEG stills, a raw or Y4M clip, a contact sheet.
    Export(Box<export::ExportArgs>),
}

#[derive(clap::Args, Debug)]
struct WatchArgs {
    /// The recording capture writes (its socket is found beside it, as
    /// FILE.sock), or capture's socket itself.
    #[arg(value_name = "RECORDING|SOCKET", required_unless_present = "socket")]
    target: Option<PathBuf>,
    /// Capture's socket (as printed by pagecam-capture; default OUTPUT.sock).
    #[arg(long, conflicts_with = "target")]
    socket: Option<PathBuf>,
    /// Stop after this many frames.
    #[arg(long)]
    frames: Option<u64>,
    /// Give up if capture sends nothing for this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    idle_timeout: Duration,
    /// Add a CRC32C of each frame's bytes as read in place (for checking).
    #[arg(long)]
    checksum: bool,
    /// Simulate slow analysis: spend this long inside each in-place read.
    #[arg(long, value_parser = humantime::parse_duration)]
    slow: Option<Duration>,
    /// Unmap each frame after reading it, so capture's --drop-cache can
    /// drop it from memory (costs a page fault per page on the next read).
    #[arg(long)]
    drop_read: bool,
    /// Print only the final summary, not a line per frame.
    #[arg(long)]
    quiet: bool,
}

#[derive(Serialize)]
struct FrameLine {
    seq: u64,
    slot: u32,
    ts_ns: u64,
    /// Capture timestamp to analysis done, microseconds.
    latency_us: f64,
    /// Capture published the frame to this analyzer holding it, microseconds.
    notify_us: f64,
    bytes: u32,
    error_frame: bool,
    mean_luma: Option<f32>,
    motion: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    crc32c: Option<u32>,
}

#[derive(Serialize)]
struct LostLine {
    seq: u64,
    slot: u32,
    /// `overwritten` (capture reused the slot before we got to it) or
    /// `torn` (it changed while we read it; the result was discarded).
    lost: &'static str,
}

#[derive(Serialize, Default)]
struct WatchSummary {
    frames: u64,
    /// Notices never received (capture dropped them: our socket was full).
    missed: u64,
    overwritten: u64,
    torn: u64,
    /// Notices naming a slot the store does not have.
    bad_notices: u64,
    end: &'static str,
}

/// One JSON line per frame, unless `--quiet` (then nothing is formatted).
fn emit(quiet: bool, out: &mut impl Write, line: &impl Serialize) {
    if !quiet {
        let _ = serde_json::to_writer(&mut *out, line)
            .map_err(std::io::Error::from)
            .and_then(|_| out.write_all(b"\n"));
    }
}

fn main() -> ExitCode {
    pagecam::mapping::sigbus::install();
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    match args.cmd {
        Cmd::Watch(w) => watch(w),
        Cmd::Inspect { file, json } => inspect(file, json),
        Cmd::Verify { file, json } => verify(file, json),
        Cmd::Export(a) => export::export(*a),
    }
}

/// The socket to connect to: `--socket`, a socket given as the target, or
/// the socket beside a recording (`FILE.sock`).
fn socket_of(args: &WatchArgs) -> PathBuf {
    use std::os::unix::fs::FileTypeExt;
    if let Some(s) = &args.socket {
        return s.clone();
    }
    let target = args.target.clone().unwrap_or_default();
    match std::fs::metadata(&target) {
        Ok(m) if m.file_type().is_socket() => target,
        _ => {
            let mut p = target.into_os_string();
            p.push(".sock");
            PathBuf::from(p)
        }
    }
}

fn watch(args: WatchArgs) -> ExitCode {
    let socket = socket_of(&args);
    let mut sub = match Subscription::connect(&socket, args.idle_timeout) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pagecam-analyzer: {e}");
            return ExitCode::from(EXIT_CAPTURE_GONE);
        }
    };
    let format = sub.hello().format;
    eprintln!(
        "pagecam-analyzer: connected as client {}: {} {}x{}, {} live slots{}",
        sub.hello().client_id,
        fourcc_str(format.fourcc),
        format.width,
        format.height,
        sub.hello().layout.slot_count,
        if sub.archive().is_some() {
            " (RAM ring; older frames in the recording)"
        } else {
            " (the recording file)"
        }
    );
    let mut stats = Analyzer::new(format);
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut sum = WatchSummary::default();
    let mut next_seq: Option<u64> = None;
    let result = loop {
        if args.frames.is_some_and(|n| sum.frames >= n) {
            break Ok("frame limit");
        }
        let notice = match sub.next_event() {
            Ok(Event::Frame(f)) => f,
            Ok(Event::End(end)) => {
                break Ok(match end.reason {
                    EndReason::Finished => "capture finished",
                    EndReason::Error => "capture stopped on an error",
                })
            }
            Err(e) => break Err(e),
        };
        if let Some(expected) = next_seq {
            if notice.sequence > expected {
                sum.missed += notice.sequence - expected;
                stats.reset_motion();
            }
        }
        next_seq = Some(notice.sequence + 1);
        let read =
            sub.live()
                .read_frame(notice.slot, notice.generation, notice.bytes_used, |view| {
                    let held_ns = monotonic_ns();
                    let s = stats.analyse(&view);
                    let crc = args.checksum.then(|| view.crc32c());
                    if let Some(d) = args.slow {
                        std::thread::sleep(d);
                    }
                    (held_ns, s, crc)
                });
        if args.drop_read {
            sub.live().forget(notice.slot);
        }
        match read {
            Ok((held_ns, s, crc)) => {
                sum.frames += 1;
                let now = monotonic_ns();
                let us = |t: u64, from: u64| t.saturating_sub(from) as f64 / 1000.0;
                emit(
                    args.quiet,
                    &mut out,
                    &FrameLine {
                        seq: notice.sequence,
                        slot: notice.slot,
                        ts_ns: notice.timestamp_ns,
                        latency_us: us(now, notice.timestamp_ns),
                        notify_us: us(held_ns, notice.ready_ns),
                        bytes: notice.bytes_used,
                        error_frame: notice.flags & FLAG_ERROR != 0,
                        mean_luma: s.map(|s| s.mean_luma),
                        motion: s.and_then(|s| s.motion),
                        crc32c: crc,
                    },
                );
            }
            Err(e) => {
                stats.reset_motion();
                let lost = match e {
                    SlotReadError::Overwritten { .. } => {
                        sum.overwritten += 1;
                        "overwritten"
                    }
                    SlotReadError::Torn => {
                        sum.torn += 1;
                        "torn"
                    }
                    SlotReadError::NoSuchSlot { .. } => {
                        sum.bad_notices += 1;
                        "bad notice"
                    }
                };
                emit(
                    args.quiet,
                    &mut out,
                    &LostLine {
                        seq: notice.sequence,
                        slot: notice.slot,
                        lost,
                    },
                );
            }
        }
        if notice.sequence % 8 == 0 {
            sub.send_progress(notice.sequence);
            let _ = out.flush();
        }
    };
    let code = match &result {
        Ok(end) => {
            sum.end = end;
            ExitCode::SUCCESS
        }
        Err(SubscribeError::CaptureGone) => {
            sum.end = "capture gone";
            ExitCode::from(EXIT_CAPTURE_GONE)
        }
        Err(_) => {
            sum.end = "error";
            ExitCode::from(EXIT_CAPTURE_GONE)
        }
    };
    let _ = serde_json::to_writer(&mut out, &serde_json::json!({ "summary": sum }));
    let _ = out.write_all(b"\n");
    let _ = out.flush();
    match result {
        Ok(end) => eprintln!(
            "pagecam-analyzer: {end}: {} frames analysed, {} missed, {} overwritten before reading, {} torn",
            sum.frames, sum.missed, sum.overwritten, sum.torn
        ),
        Err(e) => eprintln!("pagecam-analyzer: {e} (after {} frames)", sum.frames),
    }
    code
}

#[derive(Serialize)]
struct Report {
    file: PathBuf,
    format: String,
    width: u32,
    height: u32,
    bytes_per_line: u32,
    frame_size: u32,
    fps: f64,
    slot_count: u32,
    slot_size: u64,
    file_size: u64,
    on_full: String,
    source: String,
    created_ns: u64,
    valid_frames: usize,
    incomplete_slots: Vec<u32>,
    corrupt_slots: Vec<u32>,
    empty_slots: u32,
    first_sequence: Option<u64>,
    last_sequence: Option<u64>,
    missing_sequences: u64,
    source_dropped: u64,
    error_frames: usize,
    span_seconds: f64,
    sessions: Vec<u32>,
    /// Wall-clock time of the first and last valid frame, ns since the epoch.
    first_wall_ns: Option<u64>,
    last_wall_ns: Option<u64>,
    /// Slots that changed while being checked (a live recording).
    busy_slots: Vec<u32>,
}

fn report(file: PathBuf) -> Result<Report, ExitCode> {
    let reader = RecordingReader::open(&file).map_err(|e| {
        eprintln!("pagecam-analyzer: {e}");
        ExitCode::from(EXIT_UNREADABLE)
    })?;
    let h = reader.header().clone();
    let scan = reader.scan().map_err(|e| {
        eprintln!("pagecam-analyzer: {}: {e}", file.display());
        ExitCode::from(EXIT_UNREADABLE)
    })?;
    let first = scan.valid.first().map(|v| v.1);
    let last = scan.valid.last().map(|v| v.1);
    let mut sessions: Vec<u32> = scan.valid.iter().map(|v| v.1.session).collect();
    sessions.dedup();
    Ok(Report {
        file,
        format: fourcc_str(h.format.fourcc),
        width: h.format.width,
        height: h.format.height,
        bytes_per_line: h.format.bytes_per_line,
        frame_size: h.format.frame_size,
        fps: h.interval.fps(),
        slot_count: h.layout.slot_count,
        slot_size: h.layout.slot_size,
        file_size: h.layout.file_size,
        on_full: format!("{:?}", h.on_full).to_lowercase(),
        source: h.source,
        created_ns: h.created_ns,
        valid_frames: scan.valid.len(),
        incomplete_slots: scan.incomplete.clone(),
        corrupt_slots: scan.corrupt.clone(),
        empty_slots: scan.empty,
        first_sequence: first.map(|m| m.sequence),
        last_sequence: last.map(|m| m.sequence),
        missing_sequences: scan.missing_sequences(),
        source_dropped: scan.source_gaps(),
        error_frames: scan
            .valid
            .iter()
            .filter(|v| v.1.flags & FLAG_ERROR != 0)
            .count(),
        span_seconds: match (first, last) {
            (Some(a), Some(b)) => (b.timestamp_ns.saturating_sub(a.timestamp_ns)) as f64 / 1e9,
            _ => 0.0,
        },
        sessions,
        first_wall_ns: first.map(|m| m.wall_ns),
        last_wall_ns: last.map(|m| m.wall_ns),
        busy_slots: scan.busy.clone(),
    })
}

/// `2026-11-23 08:47:04 UTC` from nanoseconds since the epoch.
fn utc(ns: u64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_nanos(ns);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
        .replace('Z', " UTC")
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn inspect(file: PathBuf, json: bool) -> ExitCode {
    let r = match report(file) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).expect("report serializes")
        );
        return ExitCode::SUCCESS;
    }
    println!("recording   {}", r.file.display());
    println!("source      {}", r.source);
    println!(
        "format      {} {}x{}, {} bytes per line, {} bytes per frame, {:.3} fps",
        r.format, r.width, r.height, r.bytes_per_line, r.frame_size, r.fps
    );
    println!(
        "capacity    {} of {} bytes ({} MiB); {}",
        plural(r.slot_count as u64, "frame", "frames"),
        r.slot_size,
        r.file_size >> 20,
        if r.on_full == "wrap" {
            "a loop recording: when full, the oldest frames are overwritten"
        } else {
            "recording stops when it is full"
        }
    );
    match (r.first_sequence, r.last_sequence) {
        (Some(a), Some(b)) => {
            println!(
                "frames      {} valid: frame {a} to frame {b}, {}",
                r.valid_frames,
                match r.missing_sequences {
                    0 => "none missing".to_string(),
                    n => format!("{n} missing in between (lost to a crash or damaged)"),
                }
            );
            if let (Some(t0), Some(t1)) = (r.first_wall_ns, r.last_wall_ns) {
                println!(
                    "time        {:.3} s, from {} to {}",
                    r.span_seconds,
                    utc(t0),
                    utc(t1)
                );
            }
        }
        _ => println!("frames      none"),
    }
    println!(
        "dropped     {} by the source, {}",
        r.source_dropped,
        plural(r.error_frames as u64, "error frame", "error frames")
    );
    println!(
        "slots       {} valid, {} incomplete, {} corrupt, {} empty{}",
        r.valid_frames,
        r.incomplete_slots.len(),
        r.corrupt_slots.len(),
        r.empty_slots,
        if r.busy_slots.is_empty() {
            String::new()
        } else {
            format!(", {} being written (live)", r.busy_slots.len())
        }
    );
    let sessions: Vec<String> = r.sessions.iter().map(|s| s.to_string()).collect();
    match sessions.len() {
        0 => println!("sessions    none"),
        1 => println!("sessions    one (number {})", sessions[0]),
        n => println!(
            "sessions    {n} (numbers {}): capture was restarted with --resume",
            sessions.join(", ")
        ),
    }
    ExitCode::SUCCESS
}

fn verify(file: PathBuf, json: bool) -> ExitCode {
    let r = match report(file) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let ok = r.corrupt_slots.is_empty();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).expect("report serializes")
        );
    } else {
        println!(
            "{}: {} frames valid, {} corrupt, {} incomplete (in flight when capture stopped), {} empty",
            if ok { "OK" } else { "FAILED" },
            r.valid_frames,
            r.corrupt_slots.len(),
            r.incomplete_slots.len(),
            r.empty_slots
        );
        if !ok {
            println!("corrupt slots: {:?}", r.corrupt_slots);
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED_CHECK)
    }
}

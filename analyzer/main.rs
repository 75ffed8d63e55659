//! `pagecam-analyzer`: analyse live frames in place, or check a recording.
//!
//! `watch` connects to a running capture, maps the live store read-only from
//! the descriptors capture passes, and for each notice computes statistics
//! over the frame where it lies (no copy), writing one JSON line per frame
//! and per event. `inspect` and `verify` work offline on a recording file.
//! A thin binary: the logic is in the `pagecam` crate.

mod watch;

/// `writeln!` into a `String` (cannot fail).
macro_rules! line {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}

mod export;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde::Serialize;

use pagecam::exit::analyzer::{
    CHECK_FAILED as EXIT_FAILED_CHECK, UNREADABLE as EXIT_UNREADABLE, USAGE as EXIT_USAGE,
};
use pagecam::format::{fourcc_str, FLAG_ERROR};
use pagecam::recording::RecordingReader;

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
    Watch(watch::WatchArgs),
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
        Cmd::Watch(w) => watch::watch(w),
        Cmd::Inspect { file, json } => inspect(file, json),
        Cmd::Verify { file, json } => verify(file, json),
        Cmd::Export(a) => export::export(*a),
    }
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
    /// A capture is recording the file right now.
    live: bool,
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
        live: reader.is_live(),
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
    let mut out = String::new();
    if json {
        out = serde_json::to_string_pretty(&r).expect("report serializes") + "\n";
        return emit(&out, ExitCode::SUCCESS);
    }
    line!(out, "recording   {}", r.file.display());
    line!(out, "source      {}", r.source);
    line!(
        out,
        "format      {} {}x{}, {} bytes per line, {} bytes per frame, {:.3} fps",
        r.format,
        r.width,
        r.height,
        r.bytes_per_line,
        r.frame_size,
        r.fps
    );
    line!(
        out,
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
            line!(
                out,
                "frames      {} valid: frame {a} to frame {b}, {}",
                r.valid_frames,
                match r.missing_sequences {
                    0 => "none missing".to_string(),
                    n => format!("{n} missing in between (lost to a crash or damaged)"),
                }
            );
            if let (Some(t0), Some(t1)) = (r.first_wall_ns, r.last_wall_ns) {
                line!(
                    out,
                    "time        {:.3} s, from {} to {}",
                    r.span_seconds,
                    utc(t0),
                    utc(t1)
                );
            }
        }
        _ => line!(out, "frames      none"),
    }
    line!(
        out,
        "dropped     {} by the source, {}",
        r.source_dropped,
        plural(r.error_frames as u64, "error frame", "error frames")
    );
    line!(
        out,
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
        0 => line!(out, "sessions    none"),
        1 => line!(out, "sessions    one (number {})", sessions[0]),
        n => line!(
            out,
            "sessions    {n} (numbers {}): capture was restarted with --resume",
            sessions.join(", ")
        ),
    }
    emit(&out, ExitCode::SUCCESS)
}

fn verify(file: PathBuf, json: bool) -> ExitCode {
    let r = match report(file) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let ok = r.corrupt_slots.is_empty();
    let code = if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED_CHECK)
    };
    let mut out = String::new();
    if json {
        out = serde_json::to_string_pretty(&r).expect("report serializes") + "\n";
        return emit(&out, code);
    }
    line!(
        out,
        "{}: {} frames valid, {} corrupt, {} incomplete ({}), {} empty{}",
        if ok { "OK" } else { "FAILED" },
        r.valid_frames,
        r.corrupt_slots.len(),
        r.incomplete_slots.len(),
        if r.live {
            "being written"
        } else {
            "in flight when capture stopped"
        },
        r.empty_slots,
        if r.live {
            format!(
                "; the file is being recorded now ({} slots changed while checked)",
                r.busy_slots.len()
            )
        } else {
            String::new()
        }
    );
    if !ok {
        let slots: Vec<String> = r.corrupt_slots.iter().map(|s| s.to_string()).collect();
        line!(out, "corrupt slots: {}", slots.join(", "));
    }
    emit(&out, code)
}

/// Write the report; a reader that went away (`| head`, `| true`) ends
/// the command quietly with its result, instead of a panic (exit 101).
fn emit(text: &str, code: ExitCode) -> ExitCode {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => code,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => code,
        Err(e) => {
            eprintln!("pagecam-analyzer: cannot write the report: {e}");
            ExitCode::from(EXIT_UNREADABLE)
        }
    }
}

//! `pagecam-analyzer watch`: follow a running capture, analyse every frame
//! where it lies (no copy), print one JSON line per frame and per event.
//!
//! A late joiner can first replay the frames still stored (`--from`), then
//! continues with the live notices without a gap or a duplicate at the
//! hand-over: the hello says which sequence the first notice can have, and
//! every notice below the next expected sequence is skipped.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use pagecam::events::{EventConfig, Events};
use pagecam::exit::analyzer::{CAPTURE_GONE as EXIT_CAPTURE_GONE, USAGE as EXIT_USAGE};
use pagecam::format::{fourcc_str, FrameMeta, FLAG_ERROR};
use pagecam::mapping::SlotReadError;
use pagecam::protocol::EndReason;
use pagecam::recording::monotonic_ns;
use pagecam::stats::{Analyzer, FrameStats};
use pagecam::subscribe::{Event, Start, Stored, SubscribeError, Subscription};
use pagecam::units;

#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// The recording capture writes (its socket is found beside it, as
    /// FILE.sock), or capture's socket itself.
    #[arg(value_name = "RECORDING|SOCKET", required_unless_present = "socket")]
    target: Option<PathBuf>,
    /// Capture's socket (as printed by pagecam-capture; default OUTPUT.sock).
    #[arg(long, conflicts_with = "target")]
    socket: Option<PathBuf>,
    /// Where to start: `now` (the next new frame), `oldest` (every frame
    /// still stored: the RAM ring and the recording behind it), a sequence
    /// number, or `-30s` (the frames of the last 30 seconds). Stored frames
    /// are replayed in order, then live ones follow without a gap.
    #[arg(long, default_value = "now", value_parser = parse_start, allow_hyphen_values = true)]
    from: Start,
    /// Stop after this many frames.
    #[arg(long)]
    frames: Option<u64>,
    /// Give up if capture sends nothing for this long.
    #[arg(long, value_parser = units::parse_duration, default_value = "10s")]
    idle_timeout: Duration,
    /// Add a CRC32C of each frame's bytes as read in place (for checking).
    #[arg(long)]
    checksum: bool,
    /// Add the motion of every cell of the 32x18 grid (row-major, 0-255).
    #[arg(long)]
    grid: bool,
    /// Print only events and the final summary, not a line per frame.
    #[arg(long)]
    events_only: bool,
    /// Print only the final summary.
    #[arg(long, conflicts_with = "events_only")]
    quiet: bool,
    /// Black: this fraction of the picture at most 10% above black.
    #[arg(long, default_value_t = 0.98, help_heading = "Events")]
    black_ratio: f32,
    /// Black: for at least this long.
    #[arg(long, value_parser = units::parse_duration, default_value = "500ms", help_heading = "Events")]
    black_min: Duration,
    /// Frozen: mean change from the previous frame at most this (0-255).
    #[arg(long, default_value_t = 0.5, help_heading = "Events")]
    freeze_noise: f32,
    /// Frozen: for at least this long.
    #[arg(long, value_parser = units::parse_duration, default_value = "2s", help_heading = "Events")]
    freeze_min: Duration,
    /// Motion: mean block change at least this (0-255).
    #[arg(long, default_value_t = 2.0, help_heading = "Events")]
    motion_threshold: f32,
    /// Motion: for at least this long.
    #[arg(long, value_parser = units::parse_duration, default_value = "200ms", help_heading = "Events")]
    motion_min: Duration,
    /// Simulate slow analysis: spend this long inside each in-place read.
    #[arg(long, value_parser = units::parse_duration, help_heading = "Testing")]
    slow: Option<Duration>,
    /// Unmap each frame after reading it, so capture's --drop-cache can
    /// drop it from memory (costs a page fault per page on the next read).
    #[arg(long)]
    drop_read: bool,
}

fn parse_start(s: &str) -> Result<Start, String> {
    match s.trim() {
        "now" => Ok(Start::Now),
        "oldest" => Ok(Start::Oldest),
        t if t.starts_with('-') => units::parse_duration(&t[1..]).map(Start::Ago),
        t => t
            .parse()
            .map(Start::Sequence)
            .map_err(|_| format!("'{s}': use now, oldest, a sequence number, or -30s (time ago)")),
    }
}

#[derive(Serialize)]
struct FrameLine {
    seq: u64,
    slot: u32,
    ts_ns: u64,
    /// The frame's capture timestamp (the driver's, CLOCK_MONOTONIC) to
    /// analysis done, microseconds. Signed: a driver that dates frames
    /// with their nominal time (vivid does) can date them slightly ahead.
    latency_us: f64,
    /// Capture published the frame to this analyzer holding it,
    /// microseconds (`null` for replayed frames).
    notify_us: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    replayed: bool,
    bytes: u32,
    error_frame: bool,
    mean_luma: Option<f32>,
    motion: Option<f32>,
    dark: Option<f32>,
    under: Option<f32>,
    over: Option<f32>,
    sharpness: Option<f32>,
    change: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grid: Option<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    crc32c: Option<u32>,
}

#[derive(Serialize)]
struct LostLine {
    seq: u64,
    slot: u32,
    /// `overwritten` (capture reused the slot before we got to it), `torn`
    /// (it changed while we read it; the result was discarded), `corrupt`
    /// (a replayed frame of the recording failed its checksum) or `bad
    /// notice` (the notice named a slot the store does not have).
    lost: &'static str,
}

#[derive(Serialize, Default)]
struct WatchSummary {
    frames: u64,
    /// Of those, replayed from the store at the start (`--from`).
    replayed: u64,
    /// Frames never seen: notices capture dropped (our socket was full),
    /// or sequence gaps.
    missed: u64,
    overwritten: u64,
    torn: u64,
    corrupt: u64,
    /// Notices naming a slot the store does not have.
    bad_notices: u64,
    events: u64,
    end: &'static str,
}

/// Where output goes; a closed pipe (`| head`) ends the watch quietly.
struct Out {
    w: BufWriter<std::io::StdoutLock<'static>>,
    closed: bool,
}

impl Out {
    fn line(&mut self, v: &impl Serialize) {
        if self.closed {
            return;
        }
        let r = serde_json::to_writer(&mut self.w, v)
            .map_err(std::io::Error::from)
            .and_then(|()| self.w.write_all(b"\n"));
        if r.is_err() {
            self.closed = true;
        }
    }
    fn flush(&mut self) {
        if !self.closed && self.w.flush().is_err() {
            self.closed = true;
        }
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

/// One frame to analyse: where it is and what is known about it.
struct Todo {
    meta: FrameMeta,
    slot: u32,
    at: Stored,
    /// A replayed frame's copy in the recording, if the ring loses it first.
    archived: Option<u32>,
    ready_ns: Option<u64>,
}

struct Watcher {
    args: WatchArgs,
    stats: Analyzer,
    events: Events,
    out: Out,
    sum: WatchSummary,
    /// The next sequence expected; anything below is a duplicate.
    next_seq: Option<u64>,
    last: Option<(u64, u64)>,
    buf: Vec<u8>,
}

impl Watcher {
    fn frame(&mut self, sub: &Subscription, t: Todo) {
        if let Some(expected) = self.next_seq {
            if t.meta.sequence < expected {
                return; // already read (replayed, then notified)
            }
            if t.meta.sequence > expected {
                self.sum.missed += t.meta.sequence - expected;
                self.stats.reset_motion();
            }
        }
        self.next_seq = Some(t.meta.sequence.saturating_add(1));
        let (stats, checksum, slow) = (&mut self.stats, self.args.checksum, self.args.slow);
        let mut at = t.at;
        let read = loop {
            let read = match at {
                Stored::Live { slot, generation } => sub
                    .live()
                    .read_frame(slot, generation, t.meta.bytes_used, |view| {
                        let held_ns = monotonic_ns();
                        let s = stats.analyse(&view);
                        let crc = checksum.then(|| view.crc32c());
                        if let Some(d) = slow {
                            std::thread::sleep(d);
                        }
                        (held_ns, s, crc)
                    })
                    .map_err(|e| match e {
                        SlotReadError::Overwritten { .. } => "overwritten",
                        SlotReadError::Torn => "torn",
                        SlotReadError::NoSuchSlot { .. } => "bad notice",
                    }),
                Stored::Archive { slot } => match sub.archive().map(|a| a.valid_frame(slot)) {
                    Some(Ok(Some((meta, bytes)))) if meta == t.meta => {
                        self.buf = bytes;
                        let held_ns = monotonic_ns();
                        let s = stats.analyse_bytes(&self.buf);
                        let crc = checksum.then(|| crc32c::crc32c(&self.buf));
                        Ok((held_ns, s, crc))
                    }
                    Some(Ok(Some(_))) => Err("overwritten"),
                    _ => Err("corrupt"),
                },
            };
            // A replayed frame the ring overwrote meanwhile: the recording
            // behind it has it too.
            match (read, t.archived) {
                (Err("overwritten"), Some(slot)) if matches!(at, Stored::Live { .. }) => {
                    at = Stored::Archive { slot };
                }
                (read, _) => break read,
            }
        };
        if self.args.drop_read {
            if let Stored::Live { slot, .. } = t.at {
                sub.live().forget(slot);
            }
        }
        match read {
            Ok((held_ns, s, crc)) => self.accepted(&t, held_ns, s, crc),
            Err(lost) => {
                self.stats.reset_motion();
                match lost {
                    "overwritten" => self.sum.overwritten += 1,
                    "torn" => self.sum.torn += 1,
                    "corrupt" => self.sum.corrupt += 1,
                    _ => self.sum.bad_notices += 1,
                }
                if !self.args.quiet && !self.args.events_only {
                    self.out.line(&LostLine {
                        seq: t.meta.sequence,
                        slot: t.slot,
                        lost,
                    });
                }
            }
        }
        if t.meta.sequence.is_multiple_of(8) {
            sub.send_progress(t.meta.sequence);
            self.out.flush();
        }
    }

    fn accepted(&mut self, t: &Todo, held_ns: u64, s: Option<FrameStats>, crc: Option<u32>) {
        self.sum.frames += 1;
        if t.ready_ns.is_none() {
            self.sum.replayed += 1;
        }
        let (seq, ts) = (t.meta.sequence, t.meta.timestamp_ns);
        self.last = Some((seq, ts));
        let us = |a: u64, b: u64| a.saturating_sub(b) as f64 / 1000.0;
        if !self.args.quiet && !self.args.events_only {
            let line = FrameLine {
                seq,
                slot: t.slot,
                ts_ns: ts,
                latency_us: (monotonic_ns() as i128 - ts as i128) as f64 / 1000.0,
                notify_us: t.ready_ns.map(|r| us(held_ns, r)),
                replayed: t.ready_ns.is_none(),
                bytes: t.meta.bytes_used,
                error_frame: t.meta.flags & FLAG_ERROR != 0,
                mean_luma: s.map(|s| s.mean_luma),
                motion: s.and_then(|s| s.motion),
                dark: s.map(|s| s.dark),
                under: s.map(|s| s.under),
                over: s.map(|s| s.over),
                sharpness: s.map(|s| s.sharpness),
                change: s.and_then(|s| s.change),
                grid: (self.args.grid && s.is_some()).then(|| self.stats.cells().to_vec()),
                crc32c: crc,
            };
            self.out.line(&line);
        }
        if let Some(s) = s {
            let (out, sum, quiet) = (&mut self.out, &mut self.sum, self.args.quiet);
            self.events.frame(seq, ts, &s, |e| {
                sum.events += 1;
                if !quiet {
                    out.line(&e);
                }
            });
        }
    }
}

pub fn watch(args: WatchArgs) -> ExitCode {
    let socket = socket_of(&args);
    // Ctrl-C / SIGTERM: stop after the frame in hand and print the summary.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if signal_hook::flag::register(sig, stop.clone()).is_err() {
            eprintln!("pagecam-analyzer: cannot install a signal handler");
            return ExitCode::from(EXIT_USAGE);
        }
    }
    let mut sub = match Subscription::connect(&socket, args.idle_timeout) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pagecam-analyzer: {e}");
            return ExitCode::from(EXIT_CAPTURE_GONE);
        }
    };
    let format = sub.hello().format;
    eprintln!(
        "pagecam-analyzer: connected as client {}: {} {}x{}, {} live slots{}, next frame {}",
        sub.hello().client_id,
        fourcc_str(format.fourcc),
        format.width,
        format.height,
        sub.hello().layout.slot_count,
        if sub.archive().is_some() {
            " (RAM ring; older frames in the recording)"
        } else {
            " (the recording file)"
        },
        sub.hello().next_sequence
    );
    let backlog = match sub.backlog(args.from) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("pagecam-analyzer: cannot read the stored frames: {e}");
            Vec::new()
        }
    };
    if args.from != Start::Now {
        eprintln!(
            "pagecam-analyzer: replaying {} stored frames{}",
            backlog.len(),
            match (backlog.first(), backlog.last()) {
                (Some(a), Some(b)) => format!(" ({} to {})", a.meta.sequence, b.meta.sequence),
                _ => String::new(),
            }
        );
    }
    let mut w = Watcher {
        events: Events::new(EventConfig {
            black_ratio: args.black_ratio,
            black_min: args.black_min,
            freeze_noise: args.freeze_noise,
            freeze_min: args.freeze_min,
            motion_threshold: args.motion_threshold,
            motion_min: args.motion_min,
        }),
        args,
        stats: Analyzer::new(format),
        out: Out {
            w: BufWriter::new(std::io::stdout().lock()),
            closed: false,
        },
        sum: WatchSummary::default(),
        next_seq: None,
        last: None,
        buf: Vec::new(),
    };
    let limit = |w: &Watcher| w.args.frames.is_some_and(|n| w.sum.frames >= n);
    for f in backlog {
        if limit(&w) || w.out.closed || stop.load(Ordering::Relaxed) {
            break;
        }
        let slot = match f.at {
            Stored::Live { slot, .. } | Stored::Archive { slot } => slot,
        };
        w.frame(
            &sub,
            Todo {
                meta: f.meta,
                slot,
                at: f.at,
                archived: f.archived,
                ready_ns: None,
            },
        );
    }
    let result = loop {
        if limit(&w) {
            break Ok("frame limit");
        }
        if w.out.closed {
            break Ok("output closed");
        }
        if stop.load(Ordering::Relaxed) {
            break Ok("stopped by signal");
        }
        let notice = match sub.next_event() {
            Ok(Event::Frame(f)) => f,
            Ok(Event::End(end)) => {
                break Ok(match end.reason {
                    EndReason::Finished => "capture finished",
                    EndReason::Error | EndReason::Refused => "capture stopped on an error",
                })
            }
            // Ctrl-Z and fg, or a signal to stop: look at the flag again.
            Err(SubscribeError::Interrupted) => continue,
            Err(e) => break Err(e),
        };
        w.frame(
            &sub,
            Todo {
                meta: FrameMeta {
                    sequence: notice.sequence,
                    timestamp_ns: notice.timestamp_ns,
                    bytes_used: notice.bytes_used,
                    flags: notice.flags,
                    ..Default::default()
                },
                slot: notice.slot,
                at: Stored::Live {
                    slot: notice.slot,
                    generation: notice.generation,
                },
                archived: None,
                ready_ns: Some(notice.ready_ns),
            },
        );
    };
    if let Some((seq, ts)) = w.last {
        let (out, sum, quiet) = (&mut w.out, &mut w.sum, w.args.quiet);
        w.events.finish(seq, ts, |e| {
            sum.events += 1;
            if !quiet {
                out.line(&e);
            }
        });
    }
    let code = match &result {
        Ok(end) => {
            w.sum.end = end;
            ExitCode::SUCCESS
        }
        Err(SubscribeError::CaptureGone) => {
            w.sum.end = "capture gone";
            ExitCode::from(EXIT_CAPTURE_GONE)
        }
        Err(_) => {
            w.sum.end = "error";
            ExitCode::from(EXIT_CAPTURE_GONE)
        }
    };
    w.out.line(&serde_json::json!({ "summary": w.sum }));
    w.out.flush();
    let s = &w.sum;
    match result {
        Ok(end) => eprintln!(
            "pagecam-analyzer: {end}: {} frames analysed ({} replayed), {} missed, {} overwritten before reading, {} torn, {} events",
            s.frames, s.replayed, s.missed, s.overwritten, s.torn, s.events
        ),
        Err(e) => eprintln!("pagecam-analyzer: {e} (after {} frames)", s.frames),
    }
    code
}

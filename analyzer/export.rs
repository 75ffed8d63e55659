//! `pagecam-analyzer export`: the command line of `pagecam::export`.
//!
//! Arguments in the words of ffmpeg and v4l2-ctl users, turned into an
//! `export::Request`; the library does the work; this file prints what it
//! did in words (and as JSON with `--json`) and maps errors to exit codes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use pagecam::exit::analyzer::{CAPTURE_GONE, NO_FRAMES, OUTPUT as EXIT_OUTPUT, UNREADABLE, USAGE};
use pagecam::export::convert::Range;
use pagecam::export::image::{ImageKind, NamePattern};
use pagecam::export::input::{Input, Live};
use pagecam::export::select::{runs_text, Selection, SeqRange, TimeSpec};
use pagecam::export::sheet::SheetSpec;
use pagecam::export::{Destination, Export, ExportError, Output, OutputKind, Report, Request};
use pagecam::units;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    pagecam-analyzer export cam.pcam -o now.png                       # the newest frame\n  \
    pagecam-analyzer export cam.pcam --last 30s -o alarm.y4m          # then: mpv alarm.y4m\n  \
    pagecam-analyzer export cam.pcam --frames 100-200 -o clip.raw     # prints the ffmpeg flags\n  \
    pagecam-analyzer export cam.pcam --since '2026-11-23 09:33:20' --until -10s --every 30 -o f_%06d.jpg\n  \
    pagecam-analyzer export cam.pcam --contact-sheet sheet.png --grid 4x4 --width 1280\n  \
    pagecam-analyzer export cam.pcam --last 10s -o - | ffmpeg -f rawvideo ... -i - out.mp4")]
pub struct ExportArgs {
    /// The recording, or capture's socket. While capture runs, its live
    /// store is read (newest frames included) unless --offline.
    #[arg(value_name = "RECORDING|SOCKET")]
    target: PathBuf,
    /// Output file; its extension picks the format (.png, .jpg, .y4m,
    /// .raw/.yuv/.rgb/.mjpeg) unless --to. `-`: standard output (raw
    /// unless --to y4m). A %d or %05d in an image name becomes the frame
    /// number, for several frames.
    #[arg(
        short,
        long,
        value_name = "FILE",
        required_unless_present = "contact_sheet"
    )]
    output: Option<PathBuf>,
    /// Output format: png, jpeg, raw, y4m.
    #[arg(long, value_parser = OutputKind::parse, value_name = "FORMAT")]
    to: Option<OutputKind>,
    /// Write a contact sheet (PNG grid of thumbnails over the selection's
    /// time span) instead of -o.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["output", "to", "fill"])]
    contact_sheet: Option<PathBuf>,
    /// Contact sheet grid, COLUMNSxROWS.
    #[arg(long, value_parser = SheetSpec::parse_grid, default_value = "4x4")]
    grid: (u32, u32),
    /// Contact sheet width in pixels.
    #[arg(long, default_value_t = 1280, value_parser = clap::value_parser!(u32).range(16..=16384))]
    width: u32,

    /// Frames by recording sequence number: 100-200, 100-, -200.
    #[arg(long, value_parser = SeqRange::parse, value_name = "FIRST-LAST", help_heading = "Selection")]
    frames: Option<SeqRange>,
    /// One frame by sequence number.
    #[arg(
        long,
        conflicts_with = "frames",
        value_name = "N",
        help_heading = "Selection"
    )]
    frame: Option<u64>,
    /// Frames at or after: '2026-11-23 09:33:20' (UTC, or +01:00), or
    /// before the newest frame: -30s.
    #[arg(long, value_parser = TimeSpec::parse, allow_hyphen_values = true, value_name = "TIME", help_heading = "Selection")]
    since: Option<TimeSpec>,
    /// Frames at or before TIME (as for --since).
    #[arg(long, value_parser = TimeSpec::parse, allow_hyphen_values = true, value_name = "TIME", help_heading = "Selection")]
    until: Option<TimeSpec>,
    /// The newest DURATION of frames (30s, 2min, 00:01:30).
    #[arg(long, value_parser = units::parse_duration, value_name = "DURATION", help_heading = "Selection")]
    last: Option<Duration>,
    /// Every Nth frame (by sequence number, from the first selected).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..), value_name = "N", help_heading = "Selection")]
    every: u64,
    /// Clips: repeat the previous frame for each frame missing (dropped by
    /// the source, lost or corrupt), so the clip's timing stays true.
    #[arg(long, help_heading = "Selection")]
    fill: bool,
    /// Leave out frames the source flagged as erroneous.
    #[arg(long, help_heading = "Selection")]
    skip_error_frames: bool,

    /// JPEG quality, 1-100.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100), help_heading = "Conversion")]
    quality: u8,
    /// Range of the Y'CbCr samples for PNG/JPEG and the Y4M tag: tv
    /// (limited, 16-235) or pc (full). Default: tv, and pc for GREY.
    #[arg(long, value_parser = parse_range, value_name = "tv|pc", help_heading = "Conversion")]
    color_range: Option<Range>,

    /// Read a running capture's live store (fail if none is running).
    #[arg(long, conflicts_with = "offline", help_heading = "Input")]
    live: bool,
    /// Read the recording file only, even while capture runs.
    #[arg(long, help_heading = "Input")]
    offline: bool,
    /// Capture's socket [default: RECORDING.sock].
    #[arg(long, value_name = "PATH", help_heading = "Input")]
    socket: Option<PathBuf>,
    /// Give up joining a capture that does not answer for this long.
    #[arg(long, value_parser = units::parse_duration, default_value = "10s", help_heading = "Input")]
    idle_timeout: Duration,

    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

fn parse_range(s: &str) -> Result<Range, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "tv" | "mpeg" | "limited" => Ok(Range::Limited),
        "pc" | "jpeg" | "full" => Ok(Range::Full),
        _ => Err(format!("'{s}' is not a range: tv (limited) or pc (full)")),
    }
}

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("pagecam-analyzer export: {msg}");
    ExitCode::from(USAGE)
}

fn output_of(args: &ExportArgs) -> Result<Output, String> {
    if let Some(path) = &args.contact_sheet {
        return Ok(Output::Sheet {
            path: path.clone(),
            spec: SheetSpec {
                columns: args.grid.0,
                rows: args.grid.1,
                width: args.width,
            },
        });
    }
    let path = args.output.clone().unwrap_or_default();
    let stdout = path == Path::new("-");
    let kind = match (args.to, OutputKind::from_name(&path)) {
        (Some(k), _) | (None, Some(k)) => k,
        (None, None) if stdout => OutputKind::Raw,
        (None, None) => {
            return Err(format!(
                "cannot tell the format from '{}': name it .png, .jpg, .y4m or .raw, or use \
                 --to png|jpeg|raw|y4m (for mp4 and the like, export .y4m and run \
                 ffmpeg -i clip.y4m clip.mp4)",
                path.display()
            ))
        }
    };
    if stdout && args.json {
        return Err("--json prints on standard output, which -o - uses for the clip".into());
    }
    let dest = || {
        if stdout {
            let out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            Destination::Writer("-".into(), Box::new(out))
        } else {
            Destination::File(path.clone())
        }
    };
    Ok(match kind {
        OutputKind::Png | OutputKind::Jpeg => {
            if stdout {
                return Err("stills are written to files: name one (e.g. -o now.png)".into());
            }
            Output::Images {
                pattern: NamePattern::parse(&path.to_string_lossy())?,
                kind: if kind == OutputKind::Png {
                    ImageKind::Png
                } else {
                    ImageKind::Jpeg {
                        quality: args.quality,
                    }
                },
            }
        }
        OutputKind::Raw => Output::Raw(dest()),
        OutputKind::Y4m => Output::Y4m(dest()),
    })
}

fn exit_code(e: &ExportError) -> u8 {
    match e {
        ExportError::Recording(_) | ExportError::Read { .. } | ExportError::Geometry(_) => {
            UNREADABLE
        }
        ExportError::Subscribe(_) => CAPTURE_GONE,
        ExportError::Usage(_) | ExportError::Unsupported { .. } => USAGE,
        ExportError::NothingSelected(_) => NO_FRAMES,
        ExportError::Output { .. } | ExportError::Encode { .. } => EXIT_OUTPUT,
    }
}

pub fn export(args: ExportArgs) -> ExitCode {
    let output = match output_of(&args) {
        Ok(o) => o,
        Err(e) => return usage(e),
    };
    let request = Request {
        selection: Selection {
            frames: args.frames.or(args.frame.map(|n| SeqRange {
                first: Some(n),
                last: Some(n),
            })),
            since: args.since,
            until: args.until,
            last: args.last,
            every: args.every,
        },
        output,
        fill: args.fill,
        skip_error_frames: args.skip_error_frames,
        range: args.color_range,
    };
    let live = match (args.live, args.offline) {
        (true, _) => Live::Always,
        (_, true) => Live::Never,
        _ => Live::Auto,
    };
    let result = Input::open(
        &args.target,
        args.socket.as_deref(),
        live,
        args.idle_timeout,
    )
    .and_then(|input| Export::prepare(input, request))
    .and_then(|export| {
        let plan = export.plan();
        eprintln!(
            "pagecam-analyzer: exporting {} from the {} to {}",
            match plan.selected {
                1 => "1 frame".to_string(),
                n => format!("{n} frames"),
            },
            plan.input,
            plan.output
        );
        if let Some(cmd) = &plan.ffmpeg {
            eprintln!("pagecam-analyzer: read it with: {cmd}");
        }
        export.run()
    });
    match result {
        Ok(report) => {
            tell(&report);
            if args.json {
                let mut out = std::io::stdout().lock();
                let _ = serde_json::to_writer(&mut out, &report);
                let _ = out.write_all(b"\n");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pagecam-analyzer export: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The report in words, on stderr.
fn tell(r: &Report) {
    let what = match (r.to, &r.y4m_colorspace, r.pixel_format) {
        ("y4m", Some(c), Some(p)) => format!("Y4M {c} ({p}), {} fps", r.rate),
        ("raw", _, Some(p)) => format!("raw {p}, {} fps", r.rate),
        ("contact-sheet", _, _) => "a contact sheet".to_string(),
        (to, _, _) => format!("{} {}", plural(r.files, "file", "files"), to.to_uppercase()),
    };
    eprintln!(
        "pagecam-analyzer: wrote {} to {}: {} {}x{} as {what}",
        plural(r.written, "frame", "frames"),
        r.output,
        r.format,
        r.width,
        r.height
    );
    let line = |label: &str, text: String| eprintln!("  {label:<22} {text}");
    line("frames", runs_text(&r.sequences));
    if r.filled > 0 {
        line("filled (--fill)", plural(r.filled, "repeat", "repeats"));
    }
    if r.missing_frames > 0 {
        line(
            "missing",
            format!(
                "{} not in the recording ({})",
                r.missing_frames,
                runs_text(&r.missing)
            ),
        );
    }
    for (label, v) in [
        ("skipped: corrupt", &r.corrupt),
        ("skipped: incomplete", &r.incomplete),
        ("skipped: overwritten", &r.overwritten),
        ("skipped: busy", &r.busy),
        ("skipped: undecodable", &r.undecodable),
        ("skipped: error frames", &r.skipped_error_frames),
    ] {
        if !v.is_empty() {
            line(label, runs_text(v));
        }
    }
    if r.source_dropped > 0 {
        let places: Vec<String> = r
            .source_gaps
            .iter()
            .take(10)
            .map(|g| format!("{} after frame {}", g.dropped, g.after))
            .collect();
        line(
            "dropped by the source",
            format!(
                "{} ({}{})",
                r.source_dropped,
                places.join(", "),
                if r.source_gaps.len() > 10 {
                    ", …"
                } else {
                    ""
                }
            ),
        );
    }
    line(
        "error frames",
        if r.error_frames.is_empty() {
            "none".to_string()
        } else {
            runs_text(&r.error_frames)
        },
    );
    if !r.session_breaks.is_empty() {
        line(
            "capture restarted at",
            r.session_breaks
                .iter()
                .map(|s| format!("frame {s}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    if !r.not_in_recording.is_empty() {
        line("not in the recording", runs_text(&r.not_in_recording));
    }
    for n in &r.notes {
        line("note", n.clone());
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

//! Getting frames out of recordings: `pagecam-analyzer export`.
//!
//! A recording (or a running capture's live store) is turned into files
//! that ordinary tools open: PNG/JPEG stills, a raw clip with the ffmpeg
//! flags that read it, a Y4M clip that players open with no flags, or a
//! contact sheet. Key design choice: export never trusts a byte it has not
//! checked. Frames are chosen from the index alone (`select`), then each
//! one is read exactly as `verify` reads it (CRC32C for a file, the seqlock
//! for a live store: `input`), and whatever could not be read (corrupt,
//! incomplete, overwritten while exporting), whatever the source dropped
//! and every error-flagged frame is counted in the [`Report`], never
//! written half-valid. Clips are written in sequence order (a loop
//! recording's slots are in ring order), and with `fill` a missing frame
//! period repeats the previous frame, so a clip's timing stays true.
//!
//! One module per concern: `input` (where frames come from), `select`
//! (which ones), `convert` (pixel layouts and BT.601), `raw`, `y4m`,
//! `image` and `sheet` (the outputs). Nothing here prints or exits: the
//! binary reports and maps errors to exit codes.

pub mod convert;
pub mod image;
pub mod input;
pub mod raw;
pub mod select;
pub mod sheet;
pub mod y4m;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

use crate::format::{fourcc_str, FrameMeta, FLAG_ERROR};
use crate::recording::RecordingError;
use crate::subscribe::SubscribeError;

use convert::{ConvertError, Geometry, Pixels, Range};
use image::{ImageKind, ImageWriter, NamePattern};
use input::{Candidate, Got, Input};
use raw::RawWriter;
use select::{runs, Selection};
use sheet::{Sheet, SheetSpec};
use y4m::Y4mWriter;

/// Repeats `fill` writes for one gap at most (a bound against garbage
/// sequence numbers and timestamps: about 55 minutes at 30 fps).
pub const MAX_FILL_PER_GAP: u64 = 100_000;

#[derive(Debug, Error)]
pub enum ExportError {
    /// The recording cannot be opened or is not a recording.
    #[error(transparent)]
    Recording(#[from] RecordingError),
    /// The running capture cannot be joined.
    #[error(transparent)]
    Subscribe(#[from] SubscribeError),
    /// Reading the recording failed part-way.
    #[error("{path}: reading the recording: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// The request cannot be carried out as asked.
    #[error("{0}")]
    Usage(String),
    /// The output format cannot hold the recording's frames.
    #[error("{what}; {hint}")]
    Unsupported { what: String, hint: String },
    /// The recording's frames are not a layout export can read.
    #[error("{0}")]
    Geometry(#[from] ConvertError),
    /// No frame matched the selection (or none was valid).
    #[error("{0}")]
    NothingSelected(String),
    /// Writing the output failed (cannot create, disk full, closed pipe).
    #[error("{path}: {source}")]
    Output { path: String, source: io::Error },
    /// The image encoder failed.
    #[error("{path}: {source}")]
    Encode {
        path: String,
        source: ::image::ImageError,
    },
}

/// Why an output could not take a frame.
#[derive(Debug)]
pub enum SinkError {
    /// This frame cannot be converted (short, undecodable): skip it.
    Frame(ConvertError),
    /// Writing failed: stop.
    Io(io::Error),
    /// Any other failure that stops the export.
    Fatal(ExportError),
}

impl From<ConvertError> for SinkError {
    fn from(e: ConvertError) -> Self {
        SinkError::Frame(e)
    }
}

impl From<io::Error> for SinkError {
    fn from(e: io::Error) -> Self {
        SinkError::Io(e)
    }
}

/// An output: takes frames in sequence order.
pub trait Sink {
    /// Write one frame (checked against the recording's geometry first).
    fn frame(&mut self, meta: &FrameMeta, frame: &[u8]) -> Result<(), SinkError>;
    /// Write the last frame `n` more times (`fill`).
    fn repeat(&mut self, n: u64) -> Result<(), SinkError>;
    /// Flush; called once at the end.
    fn finish(&mut self) -> Result<(), SinkError>;
}

/// A frame rate as a fraction, frames per second = `num / den`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub num: u64,
    pub den: u64,
}

impl Rate {
    /// Reduced; `None` if either part is zero.
    pub fn new(num: u64, den: u64) -> Option<Rate> {
        if num == 0 || den == 0 {
            return None;
        }
        let g = gcd(num, den);
        Some(Rate {
            num: num / g,
            den: den / g,
        })
    }

    /// As ffmpeg's `-framerate` takes it: `30`, `30000/1001`.
    pub fn ffmpeg(&self) -> String {
        if self.den == 1 {
            self.num.to_string()
        } else {
            format!("{}/{}", self.num, self.den)
        }
    }

    pub fn fps(&self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Output kinds, as `--to` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    Png,
    Jpeg,
    Raw,
    Y4m,
}

impl OutputKind {
    /// `png`, `jpeg`/`jpg`, `raw`, `y4m`.
    pub fn parse(s: &str) -> Result<OutputKind, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "png" => Ok(OutputKind::Png),
            "jpeg" | "jpg" => Ok(OutputKind::Jpeg),
            "raw" | "rawvideo" => Ok(OutputKind::Raw),
            "y4m" | "yuv4mpegpipe" => Ok(OutputKind::Y4m),
            other => Err(format!(
                "'{other}' is not an output format: png, jpeg, raw or y4m \
                 (for mp4 and the like, export y4m and run ffmpeg -i clip.y4m clip.mp4)"
            )),
        }
    }

    /// By file extension: `.png`, `.jpg`/`.jpeg`, `.y4m`, and for raw
    /// `.raw`, `.yuv`, `.rgb`, `.bgr`, `.gray`, `.nv12`, `.nv21`, `.mjpeg`,
    /// `.mjpg`. `None` for anything else.
    pub fn from_name(path: &Path) -> Option<OutputKind> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "png" => OutputKind::Png,
            "jpg" | "jpeg" => OutputKind::Jpeg,
            "y4m" => OutputKind::Y4m,
            "raw" | "yuv" | "rgb" | "bgr" | "gray" | "grey" | "nv12" | "nv21" | "mjpeg"
            | "mjpg" => OutputKind::Raw,
            _ => return None,
        })
    }
}

/// Where a clip goes.
pub enum Destination {
    /// A file, created or replaced.
    File(PathBuf),
    /// A stream the caller opened (standard output), with a name for messages.
    Writer(String, Box<dyn Write>),
}

impl Destination {
    fn name(&self) -> String {
        match self {
            Destination::File(p) => p.display().to_string(),
            Destination::Writer(n, _) => n.clone(),
        }
    }
}

/// What to produce.
pub enum Output {
    /// One still (a name without `%d`) or one per frame (`frame_%05d.png`).
    Images {
        pattern: NamePattern,
        kind: ImageKind,
    },
    Raw(Destination),
    Y4m(Destination),
    /// A contact sheet (PNG).
    Sheet {
        path: PathBuf,
        spec: SheetSpec,
    },
}

/// An export to carry out.
pub struct Request {
    pub selection: Selection,
    pub output: Output,
    /// Clips: repeat the previous frame for each missing frame period.
    pub fill: bool,
    /// Leave out frames the source flagged as erroneous (they are exported
    /// by default: they are what the camera delivered).
    pub skip_error_frames: bool,
    /// `None`: [`Range::default_for`] the format.
    pub range: Option<Range>,
}

/// Frames the source dropped between two exported frames.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct SourceGap {
    /// The exported frames around the gap (recording sequence numbers).
    pub after: u64,
    pub before: u64,
    /// Frames the source's own counter skipped.
    pub dropped: u64,
}

/// What an export did (or, from [`Export::plan`], is about to do).
/// Sequence lists are inclusive `[first, last]` runs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub input: String,
    pub output: String,
    /// `png`, `jpeg`, `raw`, `y4m` or `contact-sheet`.
    pub to: &'static str,
    /// The recording's pixel format (fourcc) and size.
    pub format: String,
    pub width: u32,
    pub height: u32,
    /// ffmpeg's name for the pixels written (raw and y4m).
    pub pixel_format: Option<&'static str>,
    /// Y4M only: the `C` tag.
    pub y4m_colorspace: Option<String>,
    /// Y'CbCr/GREY range assumed (for conversion, and tagged in Y4M).
    pub range: Option<Range>,
    /// Output frame rate, as ffmpeg writes it, and in frames per second.
    pub rate: String,
    pub fps: f64,
    /// Raw only: the command that reads the clip.
    pub ffmpeg: Option<String>,
    /// Frames chosen by the selection.
    pub selected: u64,
    /// Frames written from the recording (each once).
    pub exported: u64,
    /// Frames in the output, including `fill`'s repeats.
    pub written: u64,
    pub filled: u64,
    /// Image files written.
    pub files: u64,
    pub sequences: Vec<[u64; 2]>,
    pub first_sequence: Option<u64>,
    pub last_sequence: Option<u64>,
    /// Sequence numbers between exported frames that the recording does not
    /// hold at all (lost to the ring, a crash, or never written); with
    /// `--every`, `missing_frames` counts only the Nth frames.
    pub missing: Vec<[u64; 2]>,
    pub missing_frames: u64,
    /// Selected but not exported, by reason.
    pub corrupt: Vec<[u64; 2]>,
    pub incomplete: Vec<[u64; 2]>,
    pub overwritten: Vec<[u64; 2]>,
    pub busy: Vec<[u64; 2]>,
    pub undecodable: Vec<[u64; 2]>,
    pub skipped_error_frames: Vec<[u64; 2]>,
    /// Frames flagged by the source as erroneous (exported unless skipped).
    pub error_frames: Vec<[u64; 2]>,
    /// Frames the source dropped inside the exported span, and where.
    pub source_dropped: u64,
    pub source_gaps: Vec<SourceGap>,
    /// First frames of a new capture session (`--resume`): never filled.
    pub session_breaks: Vec<u64>,
    /// Parts of an explicit `--frames` range the recording does not cover.
    pub not_in_recording: Vec<[u64; 2]>,
    pub notes: Vec<String>,
}

impl Report {
    /// Frames that were selected but could not be exported.
    pub fn skipped(&self) -> u64 {
        let n = |v: &[[u64; 2]]| v.iter().map(|[a, b]| b - a + 1).sum::<u64>();
        n(&self.corrupt)
            + n(&self.incomplete)
            + n(&self.overwritten)
            + n(&self.busy)
            + n(&self.undecodable)
            + n(&self.skipped_error_frames)
    }
}

#[derive(Default)]
struct Skips {
    corrupt: Vec<u64>,
    incomplete: Vec<u64>,
    overwritten: Vec<u64>,
    busy: Vec<u64>,
    undecodable: Vec<u64>,
    error_skipped: Vec<u64>,
}

/// An export, prepared: input open, frames chosen, output checked.
pub struct Export {
    input: Input,
    geometry: Geometry,
    range: Range,
    rate: Rate,
    /// Nanoseconds between output frames (for `fill`), if known.
    frame_ns: Option<f64>,
    request: Request,
    /// The chosen frames, grouped by sequence (a live slot before a file slot).
    chosen: Vec<Vec<Candidate>>,
    every: u64,
    report: Report,
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

impl Export {
    /// Choose the frames and check that the output can hold them.
    pub fn prepare(mut input: Input, request: Request) -> Result<Export, ExportError> {
        let header = input.header().clone();
        let geometry = Geometry::new(&header.format)?;
        let pixels = geometry.pixels;
        let range = request.range.unwrap_or(Range::default_for(pixels));
        let every = request.selection.every.max(1);
        let clip = matches!(request.output, Output::Raw(_) | Output::Y4m(_));
        if request.fill && !clip {
            return Err(ExportError::Usage(
                "--fill applies to clips (raw, y4m): stills are named by frame number".into(),
            ));
        }
        if let Output::Y4m(_) = request.output {
            if y4m::colorspace(pixels).is_none() {
                return Err(ExportError::Unsupported {
                    what: format!(
                        "Y4M carries Y'CbCr only, and this recording is {}",
                        fourcc_str(pixels.fourcc())
                    ),
                    hint: "export a raw clip instead (lossless; the ffmpeg flags are printed) \
                           or PNG stills"
                        .into(),
                });
            }
        }
        if let (
            Some(rec),
            Output::Raw(Destination::File(out)) | Output::Y4m(Destination::File(out)),
        ) = (input.path(), &request.output)
        {
            if same_file(rec, out) {
                return Err(ExportError::Usage(format!(
                    "{} is the recording itself",
                    out.display()
                )));
            }
        }

        let cands = input.candidates()?;
        let mut buf = Vec::new();
        let newest = input.newest(&cands, &mut buf)?.ok_or_else(|| {
            ExportError::NothingSelected("the recording holds no valid frame".into())
        })?;
        let resolved = request.selection.resolve(newest.wall_ns);
        let single_still =
            matches!(&request.output, Output::Images { pattern, .. } if !pattern.has_number());
        let mut wanted: Vec<&Candidate> = if single_still && request.selection.is_everything() {
            // A still without a selection: the newest frame.
            cands
                .iter()
                .filter(|c| c.meta.sequence == newest.sequence)
                .collect()
        } else {
            cands
                .iter()
                .filter(|c| c.meta.sequence <= newest.sequence && resolved.wants(&c.meta))
                .collect()
        };
        if let Some(first) = wanted.first().map(|c| c.meta.sequence) {
            wanted.retain(|c| resolved.on_step(first, c.meta.sequence));
        }
        let mut chosen: Vec<Vec<Candidate>> = Vec::new();
        for c in wanted {
            match chosen.last_mut() {
                Some(g) if g[0].meta.sequence == c.meta.sequence => g.push(*c),
                _ => chosen.push(vec![*c]),
            }
        }

        let oldest = cands.first().map_or(newest.sequence, |c| c.meta.sequence);
        let mut report = Report {
            input: input.describe().to_string(),
            format: fourcc_str(header.format.fourcc),
            width: header.format.width,
            height: header.format.height,
            selected: chosen.len() as u64,
            ..Default::default()
        };
        if let Some(r) = request.selection.frames {
            if let Some(a) = r.first.filter(|&a| a < oldest) {
                report
                    .not_in_recording
                    .push([a, r.last.unwrap_or(u64::MAX).min(oldest - 1)]);
            }
            if let Some(b) = r.last.filter(|&b| b > newest.sequence) {
                let a = r.first.unwrap_or(0).max(newest.sequence + 1);
                if a <= b {
                    report.not_in_recording.push([a, b]);
                }
            }
        }
        if chosen.is_empty() {
            let (t0, t1) = (cands.first().map_or(0, |c| c.meta.wall_ns), newest.wall_ns);
            return Err(ExportError::NothingSelected(format!(
                "no frame matches the selection; the recording holds frames {oldest} to {} \
                 ({} to {} UTC)",
                newest.sequence,
                utc_text(t0),
                utc_text(t1)
            )));
        }
        if single_still && chosen.len() > 1 {
            return Err(ExportError::Usage(format!(
                "{} frames selected, but the file name has no %d for the frame number \
                 (use e.g. frame_%05d.png, or select one frame with --frame)",
                chosen.len()
            )));
        }

        // Output rate: the header's interval, else measured, else 30 fps.
        let interval = header.interval;
        let (rate, frame_ns) = match Rate::new(
            interval.denominator as u64,
            (interval.numerator as u64).saturating_mul(every),
        ) {
            Some(r) => (r, Some(interval.as_nanos() as f64 * every as f64)),
            None => {
                let (a, b) = (chosen[0][0].meta, chosen[chosen.len() - 1][0].meta);
                let frames = b.sequence.saturating_sub(a.sequence);
                let ns = b.timestamp_ns.saturating_sub(a.timestamp_ns);
                match (frames > 0 && ns > 0).then(|| {
                    let millifps = (1e12 * frames as f64 / ns as f64).round() as u64;
                    Rate::new(millifps, 1000 * every)
                }) {
                    Some(Some(r)) => {
                        report.notes.push(format!(
                            "the recording has no frame interval; {} fps measured from timestamps",
                            r.ffmpeg()
                        ));
                        (r, Some(ns as f64 / frames as f64 * every as f64))
                    }
                    _ => {
                        report
                            .notes
                            .push("the recording has no frame interval; 30 fps assumed".into());
                        (
                            Rate {
                                num: 30,
                                den: every,
                            },
                            None,
                        )
                    }
                }
            }
        };
        let rate = Rate::new(rate.num, rate.den).unwrap_or(rate);
        report.rate = rate.ffmpeg();
        report.fps = rate.fps();
        match &request.output {
            Output::Images { pattern, kind } => {
                report.to = match kind {
                    ImageKind::Png => "png",
                    ImageKind::Jpeg { .. } => "jpeg",
                };
                report.output = pattern
                    .name(chosen[0][0].meta.sequence)
                    .display()
                    .to_string();
                if pattern.has_number() {
                    report.output = format!("{} …", report.output);
                }
                report.range = Some(range);
            }
            Output::Raw(d) => {
                report.to = "raw";
                report.output = d.name();
                report.pixel_format = Some(raw::ffmpeg_pix_fmt(pixels));
                report.ffmpeg = Some(raw::ffmpeg_command(&geometry, rate, &d.name()));
            }
            Output::Y4m(d) => {
                report.to = "y4m";
                report.output = d.name();
                report.pixel_format = y4m::ffmpeg_pix_fmt(pixels);
                report.y4m_colorspace = y4m::colorspace(pixels).map(|c| format!("C{c}"));
                report.range = Some(range);
            }
            Output::Sheet { path, .. } => {
                report.to = "contact-sheet";
                report.output = path.display().to_string();
                report.range = Some(range);
            }
        }
        Ok(Export {
            input,
            geometry,
            range,
            rate,
            frame_ns,
            request,
            chosen,
            every,
            report,
        })
    }

    /// What `run` will do: the chosen frames, rates, the ffmpeg command.
    pub fn plan(&self) -> &Report {
        &self.report
    }

    /// Write the output.
    pub fn run(mut self) -> Result<Report, ExportError> {
        let output = std::mem::replace(
            &mut self.request.output,
            Output::Sheet {
                path: PathBuf::new(),
                spec: SheetSpec {
                    columns: 1,
                    rows: 1,
                    width: 1,
                },
            },
        );
        match output {
            Output::Sheet { path, spec } => self.run_sheet(&path, spec),
            Output::Images { pattern, kind } => {
                let sink = ImageWriter::new(pattern, kind, self.geometry.clone(), self.range);
                let name = self.report.output.clone();
                self.run_clip(Box::new(sink), &name)
            }
            Output::Raw(d) => {
                let name = d.name();
                let w = open(d)?;
                let sink = RawWriter::new(w, self.geometry.clone());
                self.run_clip(Box::new(sink), &name)
            }
            Output::Y4m(d) => {
                let name = d.name();
                let w = open(d)?;
                let sink = Y4mWriter::new(w, self.geometry.clone(), self.rate, self.range)
                    .ok_or_else(|| ExportError::Usage("Y4M cannot carry this format".into()))?;
                self.run_clip(Box::new(sink), &name)
            }
        }
    }

    /// Frame periods from `p` to `m` (same session): the source's counter,
    /// bounded by what the timestamps allow; at least 1.
    fn periods(&self, p: &FrameMeta, m: &FrameMeta) -> u64 {
        let every = self.every;
        let by_source = m
            .source_sequence
            .checked_sub(p.source_sequence)
            .map(|d| (d + every / 2) / every);
        let by_time = self.frame_ns.filter(|&ns| ns > 0.0).and_then(|ns| {
            (m.timestamp_ns > p.timestamp_ns)
                .then(|| ((m.timestamp_ns - p.timestamp_ns) as f64 / ns).round() as u64)
        });
        let n = match (by_source, by_time) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => 1,
        };
        n.clamp(1, MAX_FILL_PER_GAP + 1)
    }

    fn run_clip(mut self, mut sink: Box<dyn Sink + '_>, name: &str) -> Result<Report, ExportError> {
        let out_err = |source| ExportError::Output {
            path: name.to_string(),
            source,
        };
        let sink_err = |e: SinkError| match e {
            SinkError::Io(source) => out_err(source),
            SinkError::Fatal(e) => e,
            SinkError::Frame(e) => ExportError::Geometry(e),
        };
        let chosen = std::mem::take(&mut self.chosen);
        let mut buf = Vec::new();
        let mut skips = Skips::default();
        let mut exported: Vec<u64> = Vec::new();
        let mut errors: Vec<u64> = Vec::new();
        let mut prev: Option<FrameMeta> = None;
        let mut last_grid: Option<u64> = None;
        for group in &chosen {
            let seq = group[0].meta.sequence;
            if let Some(l) = last_grid {
                let between = (seq - l) / self.every;
                if between > 1 {
                    self.report.missing_frames += between - 1;
                    if self.every == 1 {
                        self.report.missing.push([l + 1, seq - 1]);
                    }
                }
            }
            last_grid = Some(seq);
            let mut got = Got::Overwritten;
            for c in group {
                got = self.input.read(c, &mut buf)?;
                if let Got::Valid(_) = got {
                    break;
                }
            }
            let m = match got {
                Got::Valid(m) => m,
                Got::Corrupt => {
                    skips.corrupt.push(seq);
                    continue;
                }
                Got::Incomplete => {
                    skips.incomplete.push(seq);
                    continue;
                }
                Got::Overwritten => {
                    skips.overwritten.push(seq);
                    continue;
                }
                Got::Busy => {
                    skips.busy.push(seq);
                    continue;
                }
            };
            if m.flags & FLAG_ERROR != 0 {
                errors.push(seq);
                if self.request.skip_error_frames {
                    skips.error_skipped.push(seq);
                    continue;
                }
            }
            if let Err(e) = self.geometry.check(&buf) {
                skips.undecodable.push(seq);
                self.note_once(format!("frame {seq}: {e}"));
                continue;
            }
            let mut repeats = 0;
            if let Some(p) = prev {
                if p.session != m.session {
                    self.report.session_breaks.push(seq);
                } else {
                    let recorded = m.sequence - p.sequence;
                    let dropped = m
                        .source_sequence
                        .saturating_sub(p.source_sequence)
                        .saturating_sub(recorded);
                    if dropped > 0 {
                        self.report.source_dropped =
                            self.report.source_dropped.saturating_add(dropped);
                        self.report.source_gaps.push(SourceGap {
                            after: p.sequence,
                            before: m.sequence,
                            dropped,
                        });
                    }
                    if self.request.fill {
                        repeats = self.periods(&p, &m) - 1;
                        if repeats == MAX_FILL_PER_GAP {
                            self.note_once(format!(
                                "a gap before frame {seq} was filled with only {MAX_FILL_PER_GAP} repeats"
                            ));
                        }
                    }
                }
            }
            if repeats > 0 {
                sink.repeat(repeats).map_err(sink_err)?;
                self.report.filled += repeats;
            }
            match sink.frame(&m, &buf) {
                Ok(()) => {}
                Err(SinkError::Frame(e)) => {
                    skips.undecodable.push(seq);
                    self.note_once(format!("frame {seq}: {e}"));
                    continue;
                }
                Err(e) => return Err(sink_err(e)),
            }
            exported.push(seq);
            prev = Some(m);
        }
        sink.finish().map_err(sink_err)?;
        self.report.files = if matches!(self.report.to, "png" | "jpeg") {
            exported.len() as u64
        } else {
            0
        };
        self.finish_report(exported, errors, skips)
    }

    fn note_once(&mut self, note: String) {
        const MAX_NOTES: usize = 20;
        if self.report.notes.len() < MAX_NOTES {
            self.report.notes.push(note);
        }
    }

    fn finish_report(
        mut self,
        exported: Vec<u64>,
        errors: Vec<u64>,
        skips: Skips,
    ) -> Result<Report, ExportError> {
        let r = &mut self.report;
        r.exported = exported.len() as u64;
        r.written = r.exported + r.filled;
        r.first_sequence = exported.first().copied();
        r.last_sequence = exported.last().copied();
        r.sequences = runs(exported);
        r.error_frames = runs(errors);
        r.corrupt = runs(skips.corrupt);
        r.incomplete = runs(skips.incomplete);
        r.overwritten = runs(skips.overwritten);
        r.busy = runs(skips.busy);
        r.undecodable = runs(skips.undecodable);
        r.skipped_error_frames = runs(skips.error_skipped);
        if r.exported == 0 {
            return Err(ExportError::NothingSelected(format!(
                "none of the {} selected frames could be read ({} corrupt, {} incomplete, \
                 {} overwritten, {} undecodable)",
                r.selected,
                r.corrupt.len(),
                r.incomplete.len(),
                r.overwritten.len(),
                r.undecodable.len()
            )));
        }
        Ok(self.report)
    }

    fn run_sheet(mut self, path: &Path, spec: SheetSpec) -> Result<Report, ExportError> {
        let chosen = std::mem::take(&mut self.chosen);
        let times: Vec<u64> = chosen.iter().map(|g| g[0].meta.wall_ns).collect();
        let picks = sheet::pick(&times, spec.cells());
        let mut sheet = Sheet::new(spec, self.geometry.clone(), self.range);
        let mut buf = Vec::new();
        let mut skips = Skips::default();
        let mut exported = Vec::new();
        let mut errors = Vec::new();
        for (cell, &at) in picks.iter().enumerate() {
            let end = picks.get(cell + 1).copied().unwrap_or(chosen.len());
            for group in &chosen[at..end] {
                let seq = group[0].meta.sequence;
                let mut got = Got::Overwritten;
                for c in group {
                    got = self.input.read(c, &mut buf)?;
                    if let Got::Valid(_) = got {
                        break;
                    }
                }
                match got {
                    Got::Valid(m) => {
                        if m.flags & FLAG_ERROR != 0 {
                            errors.push(seq);
                            if self.request.skip_error_frames {
                                skips.error_skipped.push(seq);
                                continue;
                            }
                        }
                        match sheet.place(cell, &buf, seq, m.wall_ns) {
                            Ok(()) => {
                                exported.push(seq);
                                break;
                            }
                            Err(e) => {
                                skips.undecodable.push(seq);
                                self.note_once(format!("frame {seq}: {e}"));
                            }
                        }
                    }
                    Got::Corrupt => skips.corrupt.push(seq),
                    Got::Incomplete => skips.incomplete.push(seq),
                    Got::Overwritten => skips.overwritten.push(seq),
                    Got::Busy => skips.busy.push(seq),
                }
            }
        }
        let img = sheet.finish();
        image::write_file(
            path,
            ImageKind::Png,
            img.as_raw(),
            img.width(),
            img.height(),
        )?;
        self.report.files = 1;
        self.finish_report(exported, errors, skips)
    }
}

fn open(d: Destination) -> Result<Box<dyn Write>, ExportError> {
    Ok(match d {
        Destination::File(p) => Box::new(BufWriter::with_capacity(
            1 << 20,
            File::create(&p).map_err(|source| ExportError::Output {
                path: p.display().to_string(),
                source,
            })?,
        )),
        Destination::Writer(_, w) => w,
    })
}

/// `2026-11-23 09:33:20.000` from nanoseconds since the epoch.
pub fn utc_text(ns: u64) -> String {
    let (y, mo, d, h, mi, s, ms) = select::civil_utc(ns);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{ms:03}")
}

impl Pixels {
    /// ffmpeg's name for the frames as recorded (what a raw clip holds).
    pub fn ffmpeg_name(self) -> &'static str {
        raw::ffmpeg_pix_fmt(self)
    }
}

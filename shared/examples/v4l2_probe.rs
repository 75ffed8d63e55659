//! Probe a V4L2 device and record a few frames through the `FrameSource`
//! trait into a real recording, the way capture does (used to check the
//! V4L2 source against real kernels; see tests/vm/vm.sh).
//!
//! ```text
//! v4l2_probe list
//! v4l2_probe formats [DEVICE]
//! v4l2_probe capture [--device D] [--io userptr|mmap|auto] [--fourcc YUYV]
//!     [--size WxH] [--fps N] [--frames N] [--buffers N] [--slots N]
//!     [--timeout-ms N] [--ctrl NAME=VALUE]... [--row N] OUT.pcam
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use pagecam::format::{fourcc, fourcc_str, FrameFormat, FrameMeta, Header, Layout, OnFull};
use pagecam::recording::{self, Prealloc, RecordingReader};
use pagecam::source::v4l2::{list_devices, list_formats, IoMode, V4l2Config, V4l2Source};
use pagecam::source::{Frame, FrameInfo, FrameSource};

type Error = Box<dyn std::error::Error>;

struct Options {
    cfg: V4l2Config,
    frames: u64,
    slots: u32,
    row: Option<u32>,
    out: PathBuf,
}

fn parse_capture(args: &[String]) -> Result<Options, Error> {
    let mut cfg = V4l2Config::default();
    let (mut frames, mut slots, mut row, mut out) = (10, 16, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--device" => cfg.device = value()?.into(),
            "--io" => cfg.io = value()?.parse::<IoMode>()?,
            "--fourcc" => {
                let v = format!("{:<4}", value()?);
                let b: [u8; 4] = v.as_bytes()[..4].try_into()?;
                cfg.fourcc = Some(fourcc(&b));
            }
            "--size" => {
                let v = value()?;
                let (w, h) = v.split_once('x').ok_or("--size wants WxH")?;
                cfg.width = Some(w.parse()?);
                cfg.height = Some(h.parse()?);
            }
            "--fps" => cfg.fps = Some(value()?.parse()?),
            "--frames" => frames = value()?.parse()?,
            "--buffers" => cfg.buffers = value()?.parse()?,
            "--slots" => slots = value()?.parse()?,
            "--timeout-ms" => cfg.frame_timeout = Duration::from_millis(value()?.parse()?),
            "--row" => row = Some(value()?.parse()?),
            "--ctrl" => {
                let v = value()?;
                let (n, x) = v.split_once('=').ok_or("--ctrl wants NAME=VALUE")?;
                cfg.controls.push((n.to_string(), x.parse()?));
            }
            s if s.starts_with("--") => return Err(format!("unknown option {s}").into()),
            s => out = Some(PathBuf::from(s)),
        }
    }
    let out = out.ok_or("capture needs an output path")?;
    Ok(Options {
        cfg,
        frames,
        slots,
        row,
        out,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Row `y` as runs of equal pixel groups: `(b4 80 b4 80)x160 ...`.
fn row_runs(format: &FrameFormat, frame: &[u8], y: u32) -> String {
    let group = match &fourcc_str(format.fourcc)[..] {
        "YUYV" | "UYVY" | "YVYU" | "VYUY" => 4,
        "RGB3" | "BGR3" => 3,
        _ => 1,
    };
    let start = (y * format.bytes_per_line) as usize;
    let end = (start + format.bytes_per_line as usize).min(frame.len());
    let Some(line) = frame.get(start..end) else {
        return "(row outside the frame)".into();
    };
    let mut runs: Vec<(&[u8], usize)> = Vec::new();
    for g in line.chunks(group) {
        match runs.last_mut() {
            Some((last, n)) if *last == g => *n += 1,
            _ => runs.push((g, 1)),
        }
    }
    runs.iter()
        .map(|(g, n)| format!("({})x{n}", hex(g)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn meta(info: &FrameInfo) -> FrameMeta {
    FrameMeta {
        source_sequence: info.source_sequence,
        timestamp_ns: info.timestamp_ns,
        wall_ns: recording::wall_ns(),
        bytes_used: info.bytes_used,
        flags: info.flags,
        ..Default::default()
    }
}

fn capture(o: &Options) -> Result<(), Error> {
    let mut src = V4l2Source::open(&o.cfg)?;
    println!("source: {}", src.describe());
    for n in src.negotiation_notes() {
        println!("note: {n}");
    }
    let format = src.format();
    println!(
        "format: {} {}x{} bytesperline={} sizeimage={} interval={}/{} buffers={}",
        fourcc_str(format.fourcc),
        format.width,
        format.height,
        format.bytes_per_line,
        format.frame_size,
        src.interval().numerator,
        src.interval().denominator,
        src.buffer_count()
    );
    let header = Header {
        format,
        interval: src.interval(),
        layout: Layout::new(format.frame_size, o.slots)?,
        on_full: OnFull::Wrap,
        created_ns: recording::wall_ns(),
        source: src.describe(),
    };
    let mut writer = recording::create(&o.out, &header, Prealloc::Fallocate)?;
    println!(
        "recording: {} ({} slots of {} bytes)",
        o.out.display(),
        o.slots,
        header.layout.slot_size
    );

    for _ in 0..src.slots_wanted() {
        let slot = writer.claim_next().ok_or("recording full")?;
        if src.give_slot(slot)?.is_some() {
            break; // the source switched to copying; the slot handed back stays incomplete
        }
    }
    println!("delivery: {}", src.delivery().name());
    if let Some(n) = src.delivery_note() {
        println!("delivery note: {n}");
    }
    src.start()?;
    let mut copied = 0u64;
    let mut result = Ok(());
    for _ in 0..o.frames {
        let (info, first, row) = match src.next_frame() {
            Ok(Frame::InSlot(mut slot, info)) => {
                let (first, row) = slot.fill_with(|d| {
                    let d = &d[..info.bytes_used as usize];
                    (
                        hex(&d[..d.len().min(16)]),
                        o.row.map(|y| row_runs(&format, d, y)),
                    )
                });
                writer.commit(slot, meta(&info));
                let next = writer.claim_next().ok_or("recording full")?;
                if src.give_slot(next)?.is_some() {
                    return Err("the source refused a slot while streaming".into());
                }
                (info, first, row)
            }
            Ok(Frame::InBuffer(data, info)) => {
                let first = hex(&data[..data.len().min(16)]);
                let row = o.row.map(|y| row_runs(&format, data, y));
                let mut slot = writer.claim_next().ok_or("recording full")?;
                slot.copy_from(data);
                copied += data.len() as u64;
                src.release()?;
                writer.commit(slot, meta(&info));
                (info, first, row)
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        println!(
            "frame seq={} ts={}.{:09} bytesused={} flags={:#x} first={first}",
            info.source_sequence,
            info.timestamp_ns / 1_000_000_000,
            info.timestamp_ns % 1_000_000_000,
            info.bytes_used,
            info.flags
        );
        if let Some(r) = row {
            println!("row {}: {r}", o.row.unwrap_or(0));
        }
    }
    if let Some(n) = src.delivery_note() {
        println!("delivery at the end: {}; note: {n}", src.delivery().name());
    }
    let returned = src.stop();
    let stats = src.stats();
    println!(
        "stopped: {} slots returned; frames={} error_frames={} dropped_by_driver={} \
         bytes_copied={copied}",
        returned.len(),
        stats.frames,
        stats.error_frames,
        stats.dropped_by_driver
    );
    drop(returned); // claims end; those slots stay marked incomplete
    writer.sync()?;
    drop(writer);
    let scan = RecordingReader::open(&o.out)?.scan();
    println!(
        "recording check: valid={} incomplete={} corrupt={} empty={}",
        scan.valid.len(),
        scan.incomplete.len(),
        scan.corrupt.len(),
        scan.empty
    );
    if let Err(e) = result {
        println!("stream error: {e}");
        return Err(e.into());
    }
    Ok(())
}

fn run(args: &[String]) -> Result<(), Error> {
    match args.first().map(String::as_str) {
        Some("list") => {
            for d in list_devices() {
                println!("{d}{}", if d.usable() { "" } else { "  [not usable]" });
            }
            Ok(())
        }
        Some("formats") => {
            let dev = args
                .get(1)
                .map(PathBuf::from)
                .unwrap_or_else(|| "/dev/video0".into());
            for (i, f) in list_formats(Path::new(&dev))?.iter().enumerate() {
                print!("[{i}]: {f}");
            }
            Ok(())
        }
        Some("capture") => capture(&parse_capture(&args[1..])?),
        _ => Err("usage: v4l2_probe list | formats [DEVICE] | capture [options] OUT".into()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("v4l2_probe: {e}");
            ExitCode::FAILURE
        }
    }
}

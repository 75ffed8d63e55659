//! `pagecam-analyzer export`: clips, stills and contact sheets from
//! recordings (made by capture's test source, or built here byte by byte
//! when a test needs exact timestamps, gaps or a format the test source
//! cannot produce), checked with ffprobe/ffmpeg and against the frames
//! themselves. ffmpeg is required: without it these tests fail, they are
//! never skipped.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use pagecam::format::{
    fourcc, FrameFormat, FrameMeta, Header, Interval, Layout, OnFull, Record, FLAG_ERROR,
};
use pagecam::recording::{self, Prealloc, RecordingFile, RecordingReader};
use pagecam::source::pattern::{Pattern, STAMP_BITS, STAMP_ROWS};

use crate::util::{
    analyzer, capture, finish, report, run, spawn, stderr, verify, wait_for, workdir,
};
use crate::vivid::colorbar_line;

const NEED_FFMPEG: &str = "install ffmpeg (scripts/setup.sh --test does)";

/// 2026-11-23 09:33:20 UTC: the wall clock of synthetic frame 0.
const T0: u64 = 1_795_426_400_000_000_000;

/// The ffmpeg sws flags that match export's conversion: nearest-neighbour
/// chroma (each chroma sample covers its 2 or 2x2 pixels), exact rounding.
const SWS_FLAGS: &str = "neighbor+accurate_rnd+full_chroma_int+bitexact";

/// Largest per-channel difference between export's BT.601 RGB and
/// ffmpeg's (SWS_FLAGS) for the same frame, in any format (measured: 2,
/// integer rounding inside the two converters).
const MAX_DIFF_VS_FFMPEG: u8 = 2;

/// Largest difference from the exact BT.601 formula (floating point).
const MAX_DIFF_VS_FORMULA: u8 = 2;

// ---------------------------------------------------------------- tools

/// `ffmpeg` / `ffprobe`, or a failure that says how to get them.
fn tool(name: &str) -> Command {
    match Command::new(name).arg("-version").output() {
        Ok(o) if o.status.success() => {}
        _ => panic!("{name} not found: {NEED_FFMPEG}"),
    }
    let mut c = Command::new(name);
    c.args(["-v", "error"]);
    if name == "ffmpeg" {
        c.arg("-nostdin");
    }
    c
}

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    out
}

/// ffprobe's first video stream, frames counted by decoding.
fn probe(input_flags: &[&str], file: &Path) -> serde_json::Value {
    let mut c = tool("ffprobe");
    c.args(["-count_frames", "-show_streams", "-of", "json"])
        .args(input_flags)
        .arg("-i")
        .arg(file);
    let out = ok(run(c, "ffprobe"), "ffprobe");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["streams"][0].clone()
}

/// Decode `file` (with `input_flags`) to raw `pix_fmt` bytes.
fn decode(input_flags: &[&str], file: &Path, pix_fmt: &str) -> Vec<u8> {
    let mut c = tool("ffmpeg");
    c.args(input_flags).arg("-i").arg(file).args([
        "-sws_flags",
        SWS_FLAGS,
        "-pix_fmt",
        pix_fmt,
        "-f",
        "rawvideo",
        "-",
    ]);
    ok(run(c, "ffmpeg"), "ffmpeg decode").stdout
}

/// A PNG's pixels as RGB (ffmpeg decodes PNG losslessly).
fn png_rgb(file: &Path) -> Vec<u8> {
    decode(&[], file, "rgb24")
}

/// `pagecam-analyzer export ARGS`, finished.
fn export(args: &[&str]) -> Output {
    let mut c = analyzer();
    c.arg("export").args(args);
    run(c, "export")
}

/// `export ARGS --json`, which must succeed; its report.
fn export_ok(args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = ok(export(&a), &format!("export {args:?}"));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("report: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `[[a, b], …]` as the report writes sequence runs.
fn runs(v: &serde_json::Value) -> Vec<[u64; 2]> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|r| [r[0].as_u64().unwrap(), r[1].as_u64().unwrap()])
        .collect()
}

// ------------------------------------------------------- recordings

/// Record `frames` frames of the test source (as fast as possible).
fn record(dir: &Path, name: &str, fourcc: &str, frames: u32) -> PathBuf {
    let rec = dir.join(name);
    let mut c = capture();
    c.args([
        "--format",
        fourcc,
        "--size",
        "320x240",
        "--fps",
        "0",
        "--on-full",
        "stop",
    ])
    .args([
        "--frames",
        &frames.to_string(),
        "--slots",
        &(frames + 4).to_string(),
    ])
    .arg("-o")
    .arg(&rec);
    ok(run(c, "capture"), "capture");
    rec
}

/// Valid frames in sequence order, with their bytes.
fn frames_of(rec: &Path) -> Vec<(FrameMeta, Vec<u8>)> {
    let r = RecordingReader::open(rec).unwrap();
    let scan = r.scan().unwrap();
    scan.valid
        .iter()
        .map(|(slot, _)| r.valid_frame(*slot).unwrap().expect("valid"))
        .collect()
}

/// A recording written here byte by byte, as capture would have.
pub(crate) struct Synth {
    rec: RecordingFile,
}

impl Synth {
    pub(crate) fn new(path: &Path, format: FrameFormat, slots: u32, fps: u32) -> Synth {
        let header = Header {
            format,
            interval: Interval::from_fps(fps),
            layout: Layout::new(format.frame_size, slots).unwrap(),
            on_full: OnFull::Wrap,
            created_ns: T0,
            source: "synthetic (tests/export.rs)".into(),
        };
        Synth {
            rec: recording::create(path, &header, Prealloc::Fallocate)
                .unwrap()
                .publish()
                .unwrap(),
        }
    }

    /// Commit `data` as frame `meta` in `slot` (generation 2, CRC over both).
    pub(crate) fn put(&self, slot: u32, meta: FrameMeta, data: &[u8]) {
        let h = &self.rec.header;
        let meta = FrameMeta {
            bytes_used: data.len() as u32,
            ..meta
        };
        self.rec
            .file
            .write_all_at(data, h.layout.slot_offset(slot))
            .unwrap();
        let r = Record {
            generation: 2,
            meta,
            crc: meta.checksum(crc32c::crc32c(data)),
        };
        self.rec
            .file
            .write_all_at(&r.encode(), h.layout.record_offset(slot))
            .unwrap();
    }
}

/// Frame `seq` captured `seq` periods after T0, source counter = `src`.
fn meta(seq: u64, src: u64, fps: u64) -> FrameMeta {
    let ts = src * 1_000_000_000 / fps;
    FrameMeta {
        sequence: seq,
        source_sequence: src,
        timestamp_ns: 1_000_000_000 + ts,
        wall_ns: T0 + ts,
        session: 1,
        ..Default::default()
    }
}

fn format(code: &[u8; 4], w: u32, h: u32, bpl: u32) -> FrameFormat {
    let size = match code {
        b"NV12" | b"NV21" | b"YU12" | b"YV12" => bpl * h * 3 / 2,
        b"MJPG" => w * h * 3,
        _ => bpl * h,
    };
    FrameFormat {
        fourcc: fourcc(code),
        width: w,
        height: h,
        bytes_per_line: bpl,
        frame_size: size,
    }
}

/// Pseudo-random bytes in `lo..=hi`.
fn noise(len: usize, seed: u64, lo: u8, hi: u8) -> Vec<u8> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            lo + ((s >> 33) % (hi as u64 - lo as u64 + 1)) as u8
        })
        .collect()
}

/// Tight lines of a padded single-plane frame.
fn tight(frame: &[u8], line: usize, stride: usize, lines: usize) -> Vec<u8> {
    (0..lines)
        .flat_map(|y| frame[y * stride..y * stride + line].to_vec())
        .collect()
}

// ------------------------------------------------------- colour

/// BT.601 limited range, exact, rounded and clamped.
fn bt601(y: u8, u: u8, v: u8) -> [u8; 3] {
    let (y, u, v) = (y as f64 - 16.0, u as f64 - 128.0, v as f64 - 128.0);
    let c = |x: f64| x.round().clamp(0.0, 255.0) as u8;
    [
        c(1.164383 * y + 1.596027 * v),
        c(1.164383 * y - 0.391762 * u - 0.812968 * v),
        c(1.164383 * y + 2.017232 * u),
    ]
}

/// Y', Cb, Cr of pixel (x, y) of a tight-stride frame, chroma by repetition.
fn yuv_at(f: &FrameFormat, b: &[u8], x: usize, y: usize) -> (u8, u8, u8) {
    let (h, s) = (f.height as usize, f.bytes_per_line as usize);
    let code = &f.fourcc.to_le_bytes();
    let c420 = s * h + (y / 2) * s + (x / 2) * 2;
    let p420 = |plane: usize| s * h + plane * (s / 2) * (h / 2) + (y / 2) * (s / 2) + x / 2;
    match code {
        b"YUYV" => {
            let g = y * s + (x / 2) * 4;
            (b[g + (x % 2) * 2], b[g + 1], b[g + 3])
        }
        b"UYVY" => {
            let g = y * s + (x / 2) * 4;
            (b[g + 1 + (x % 2) * 2], b[g], b[g + 2])
        }
        b"NV12" => (b[y * s + x], b[c420], b[c420 + 1]),
        b"NV21" => (b[y * s + x], b[c420 + 1], b[c420]),
        b"YU12" => (b[y * s + x], b[p420(0)], b[p420(1)]),
        b"YV12" => (b[y * s + x], b[p420(1)], b[p420(0)]),
        _ => (b[y * s + x], 128, 128),
    }
}

/// Expected RGB of a whole frame (GREY: full range, the identity).
fn expected_rgb(f: &FrameFormat, frame: &[u8]) -> Vec<u8> {
    let (w, h) = (f.width as usize, f.height as usize);
    let grey = f.fourcc == fourcc(b"GREY");
    let mut out = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let (l, u, v) = yuv_at(f, frame, x, y);
            out.extend_from_slice(&if grey { [l, l, l] } else { bt601(l, u, v) });
        }
    }
    out
}

fn max_diff(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len(), "picture sizes differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

// ------------------------------------------------------------ tests

/// Y4M and raw clips of test-source recordings: ffprobe sees the right
/// frame count, size, pixel format and rate (the raw clip with the flags
/// export printed), and ffmpeg decodes both back to the recorded bytes.
#[test]
fn clips_from_a_test_source_recording_round_trip_through_ffmpeg() {
    let dir = workdir();
    for (code, y4m_fmt, raw_fmt) in [
        ("YUYV", "yuv422p", "yuyv422"),
        ("NV12", "yuv420p", "nv12"),
        ("GREY", "gray", "gray"),
    ] {
        let rec = record(dir.path(), &format!("{code}.pcam"), code, 24);
        let frames = frames_of(&rec);
        assert_eq!(frames.len(), 24);
        let recorded: Vec<u8> = frames.iter().flat_map(|(_, b)| b.clone()).collect();

        let y4m = dir.path().join(format!("{code}.y4m"));
        let r = export_ok(&[p(&rec), "-o", p(&y4m)]);
        assert_eq!(r["exported"], 24, "{r}");
        let s = probe(&[], &y4m);
        assert_eq!(s["nb_read_frames"], "24", "{code}: {s}");
        assert_eq!(
            (s["width"].as_u64(), s["height"].as_u64()),
            (Some(320), Some(240))
        );
        assert_eq!(s["pix_fmt"], y4m_fmt, "{code}: {s}");
        assert_eq!(s["r_frame_rate"], "30/1", "{code}: {s}");
        assert!(
            decode(&[], &y4m, raw_fmt) == recorded,
            "{code}: the Y4M does not decode to the recorded frames"
        );

        let raw = dir.path().join(format!("{code}.raw"));
        let out = ok(export(&[p(&rec), "-o", p(&raw)]), "export raw");
        let printed = stderr(&out);
        let cmd = printed
            .lines()
            .find_map(|l| l.split_once("read it with: ").map(|(_, c)| c.to_string()))
            .unwrap_or_else(|| panic!("no ffmpeg line printed:\n{printed}"));
        assert_eq!(
            cmd,
            format!(
                "ffmpeg -f rawvideo -pixel_format {raw_fmt} -video_size 320x240 -framerate 30 -i {}",
                raw.display()
            )
        );
        let words: Vec<&str> = cmd.split(' ').collect();
        let flags = &words[1..words.len() - 2];
        let s = probe(flags, &raw);
        assert_eq!(s["nb_read_frames"], "24", "{code}: {s}");
        assert_eq!(s["pix_fmt"], raw_fmt, "{code}: {s}");
        assert_eq!(s["r_frame_rate"], "30/1", "{code}: {s}");
        assert_eq!(
            (s["width"].as_u64(), s["height"].as_u64()),
            (Some(320), Some(240))
        );
        assert!(
            std::fs::read(&raw).unwrap() == recorded,
            "{code}: raw bytes"
        );
        assert!(
            decode(flags, &raw, raw_fmt) == recorded,
            "{code}: raw via ffmpeg"
        );

        // To standard output, for a pipe into ffmpeg.
        let piped = ok(
            export(&[p(&rec), "-o", "-", "--frames", "3-5"]),
            "export -o -",
        );
        assert!(piped.stdout == recorded[3 * frames[0].1.len()..6 * frames[0].1.len()]);
    }
}

/// A PNG of a test-pattern frame holds the pattern's colours by BT.601
/// (within MAX_DIFF_VS_FORMULA), and its sequence stamp as black and
/// white cells that read back as the frame number.
#[test]
fn png_pixels_are_the_test_pattern_in_bt601() {
    let dir = workdir();
    for code in ["YUYV", "NV12", "GREY"] {
        let rec = record(dir.path(), &format!("{code}.pcam"), code, 12);
        let png = dir.path().join(format!("{code}.png"));
        export_ok(&[p(&rec), "--frame", "7", "-o", p(&png)]);
        let got = png_rgb(&png);
        let f = RecordingReader::open(&rec).unwrap().header().format;
        let pattern = Pattern::new(f).unwrap();
        let mut frame = vec![0u8; f.frame_size as usize];
        pattern.render(7, &mut frame);
        let want = expected_rgb(&f, &frame);
        let d = max_diff(&got, &want);
        assert!(
            d <= MAX_DIFF_VS_FORMULA,
            "{code}: differs from BT.601 by {d}"
        );
        // The stamp: 64 cells, bit 0 leftmost, white = 1.
        let (w, cell) = (f.width as usize, (f.width / STAMP_BITS) as usize);
        let mut seq = 0u64;
        for bit in 0..STAMP_BITS as usize {
            for y in [1, STAMP_ROWS as usize / 2, STAMP_ROWS as usize - 2] {
                let px = &got[(y * w + bit * cell + cell / 2) * 3..][..3];
                // NV12's stamp is luma only (its chroma rows carry the
                // bars), so judge the cell by its luma.
                let luma = (299 * px[0] as u32 + 587 * px[1] as u32 + 114 * px[2] as u32) / 1000;
                let (white, black) = (luma >= 192, luma <= 64);
                assert!(white ^ black, "{code}: stamp cell {bit} is {px:?}");
                if white && y == 1 {
                    seq |= 1 << bit;
                }
            }
        }
        assert_eq!(seq, 7, "{code}: the PNG's stamp");
    }
}

/// Export's colour conversion against ffmpeg's for the same frame, in
/// every Y'CbCr format pagecam records (random samples, so every chroma
/// sample counts), with padded lines for one of them; RGB formats exact.
#[test]
fn conversion_matches_ffmpeg_in_every_format() {
    let dir = workdir();
    let (w, h) = (64u32, 48u32);
    let mut table = String::from("format  max |export - ffmpeg| per channel (sws_flags ");
    table.push_str(SWS_FLAGS);
    table.push_str(")\n");
    for (code, bpl) in [
        (b"YUYV", 128 + 32),
        (b"UYVY", 128),
        (b"NV12", 64),
        (b"NV21", 64),
        (b"YU12", 64),
        (b"YV12", 64),
        (b"GREY", 64),
    ] {
        let f = format(code, w, h, bpl);
        let name = String::from_utf8_lossy(code).to_string();
        let mut frame = noise(f.frame_size as usize, 7, 16, 235);
        if code == b"GREY" {
            frame = noise(f.frame_size as usize, 7, 0, 255);
        }
        let rec = dir.path().join(format!("{name}.pcam"));
        let s = Synth::new(&rec, f, 4, 30);
        s.put(0, meta(0, 0, 30), &frame);
        drop(s);
        let png = dir.path().join(format!("{name}.png"));
        export_ok(&[p(&rec), "-o", p(&png)]);
        let ours = png_rgb(&png);
        let raw = dir.path().join(format!("{name}.raw"));
        let r = export_ok(&[p(&rec), "-o", p(&raw)]);
        let cmd = r["ffmpeg"].as_str().unwrap().to_string();
        let words: Vec<&str> = cmd.split(' ').collect();
        let ff = decode(&words[1..words.len() - 2], &raw, "rgb24");
        let d = max_diff(&ours, &ff);
        table.push_str(&format!("{name}    {d}\n"));
        assert!(
            d <= MAX_DIFF_VS_FFMPEG,
            "{name}: export and ffmpeg differ by {d}"
        );
        // Same frame with tight lines, through the exact formula.
        let tight_f = FrameFormat {
            bytes_per_line: if code == b"YUYV" { 128 } else { bpl },
            ..f
        };
        let tight_frame = if code == b"YUYV" {
            tight(&frame, 128, bpl as usize, h as usize)
        } else {
            frame.clone()
        };
        let d = max_diff(&ours, &expected_rgb(&tight_f, &tight_frame));
        assert!(
            d <= MAX_DIFF_VS_FORMULA,
            "{name}: differs from BT.601 by {d}"
        );
    }
    report("export", "bt601-vs-ffmpeg", &table);

    // RGB3 and BGR3 with padded lines: the PNG is the pixels exactly, and
    // the raw clip (tight lines) reads back through ffmpeg the same.
    for (code, pix) in [(b"RGB3", "rgb24"), (b"BGR3", "bgr24")] {
        let f = format(code, w, h, w * 3 + 8);
        let name = String::from_utf8_lossy(code).to_string();
        let frame = noise(f.frame_size as usize, 9, 0, 255);
        let rec = dir.path().join(format!("{name}.pcam"));
        Synth::new(&rec, f, 4, 25).put(1, meta(0, 0, 25), &frame);
        let mut want = tight(&frame, (w * 3) as usize, (w * 3 + 8) as usize, h as usize);
        if code == b"BGR3" {
            want.chunks_exact_mut(3).for_each(|px| px.swap(0, 2));
        }
        let png = dir.path().join(format!("{name}.png"));
        export_ok(&[p(&rec), "-o", p(&png)]);
        assert!(png_rgb(&png) == want, "{name}: PNG pixels");
        let raw = dir.path().join(format!("{name}.raw"));
        let r = export_ok(&[p(&rec), "-o", p(&raw)]);
        assert_eq!(r["pixel_format"], pix);
        let cmd = r["ffmpeg"].as_str().unwrap().to_string();
        assert!(cmd.contains("-framerate 25 "), "{cmd}");
        let words: Vec<&str> = cmd.split(' ').collect();
        assert!(
            decode(&words[1..words.len() - 2], &raw, "rgb24") == want,
            "{name}: raw"
        );
        // Y4M cannot carry RGB: refused, pointing to raw and PNG.
        let out = export(&[p(&rec), "-o", p(&dir.path().join("x.y4m"))]);
        assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("raw") && stderr(&out).contains("PNG"),
            "{}",
            stderr(&out)
        );
    }
}

/// MJPG (vivid cannot produce it): frames are JPEGs made with the image
/// crate; stills decode them, a raw clip is the MJPEG stream itself.
#[test]
fn mjpg_recordings_give_stills_and_an_mjpeg_stream() {
    let dir = workdir();
    let (w, h) = (64u32, 32u32);
    let colours = [[200u8, 30, 30], [30, 200, 30], [30, 30, 200]];
    let rec = dir.path().join("mjpg.pcam");
    let s = Synth::new(&rec, format(b"MJPG", w, h, 0), 8, 30);
    for (k, c) in colours.iter().enumerate() {
        let rgb: Vec<u8> = c
            .iter()
            .copied()
            .cycle()
            .take((w * h * 3) as usize)
            .collect();
        let jpeg = pagecam::export::image::encode_jpeg(&rgb, w, h, 90).unwrap();
        s.put(k as u32 + 3, meta(k as u64, k as u64, 30), &jpeg);
    }
    drop(s);
    let png = dir.path().join("f1.png");
    export_ok(&[p(&rec), "--frame", "1", "-o", p(&png)]);
    let got = png_rgb(&png);
    assert_eq!(got.len(), (w * h * 3) as usize);
    let d = got
        .chunks_exact(3)
        .map(|px| max_diff(px, &colours[1]))
        .max()
        .unwrap();
    assert!(d <= 6, "MJPG frame 1 decodes {d} away from its colour");
    let mjpeg = dir.path().join("clip.mjpeg");
    let r = export_ok(&[p(&rec), "-o", p(&mjpeg)]);
    let cmd = r["ffmpeg"].as_str().unwrap().to_string();
    assert!(
        cmd.starts_with("ffmpeg -f mjpeg -framerate 30 -i "),
        "{cmd}"
    );
    let s = probe(&["-f", "mjpeg", "-framerate", "30"], &mjpeg);
    assert_eq!(s["codec_name"], "mjpeg", "{s}");
    assert_eq!(s["nb_read_frames"], "3", "{s}");
    let out = export(&[p(&rec), "-o", p(&dir.path().join("x.y4m"))]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
}

/// A loop recording built with exact times (10 fps), its slots in ring
/// order: every selection picks exactly the frames it names.
#[test]
fn selections_pick_exactly_the_right_frames() {
    let dir = workdir();
    let f = FrameFormat::uncompressed(pagecam::format::GREY, 128, 32).unwrap();
    let pattern = Pattern::new(f).unwrap();
    let rec = dir.path().join("loop.pcam");
    let s = Synth::new(&rec, f, 100, 10);
    let mut buf = vec![0u8; f.frame_size as usize];
    // Frames 40..=139 in a 100-slot ring: the oldest sits at slot 40.
    for seq in 40..140u64 {
        pattern.render(seq, &mut buf);
        s.put((seq % 100) as u32, meta(seq, seq, 10), &buf);
    }
    drop(s);
    let out = dir.path().join("sel.raw");
    let sel = |args: &[&str]| {
        let mut a = vec![p(&rec), "-o", p(&out)];
        a.extend_from_slice(args);
        let r = export_ok(&a);
        // The clip holds exactly the reported frames, in order.
        let clip = std::fs::read(&out).unwrap();
        let stamps: Vec<u64> = clip
            .chunks_exact(buf.len())
            .map(|c| Pattern::read_stamp(&f, c).unwrap())
            .collect();
        let seqs: Vec<u64> = runs(&r["sequences"])
            .iter()
            .flat_map(|[a, b]| *a..=*b)
            .collect();
        assert_eq!(stamps, seqs, "{args:?}");
        (runs(&r["sequences"]), r)
    };
    assert_eq!(sel(&[]).0, vec![[40, 139]]);
    assert_eq!(sel(&["--frames", "60-70"]).0, vec![[60, 70]]);
    assert_eq!(sel(&["--frame", "99"]).0, vec![[99, 99]]);
    let (got, r) = sel(&["--frames", "10-50"]);
    assert_eq!(got, vec![[40, 50]]);
    assert_eq!(runs(&r["not_in_recording"]), vec![[10, 39]]);
    assert_eq!(sel(&["--last", "2s"]).0, vec![[120, 139]]);
    assert_eq!(sel(&["--since", "2026-11-23 09:33:30"]).0, vec![[100, 139]]);
    assert_eq!(
        sel(&["--since", "2026-11-23T10:33:30+01:00"]).0,
        vec![[100, 139]]
    );
    assert_eq!(sel(&["--until", "-3s"]).0, vec![[40, 109]]);
    assert_eq!(
        sel(&["--since", "-5s", "--until", "-3s"]).0,
        vec![[89, 109]]
    );
    assert_eq!(
        sel(&[
            "--since",
            "2026-11-23 09:33:30.05",
            "--until",
            "2026-11-23 09:33:31"
        ])
        .0,
        vec![[101, 110]]
    );
    let (got, r) = sel(&["--frames", "50-100", "--every", "10"]);
    assert_eq!(got, [50, 60, 70, 80, 90, 100].map(|s| [s, s]).to_vec());
    assert_eq!(r["rate"], "1", "every 10th frame of 10 fps: {r}");

    // Stills named by frame number: exactly the chosen ones.
    let stills = dir.path().join("stills");
    std::fs::create_dir(&stills).unwrap();
    let pattern_name = stills.join("f_%04d.png");
    let r = export_ok(&[
        p(&rec),
        "--frames",
        "50-100",
        "--every",
        "10",
        "-o",
        p(&pattern_name),
    ]);
    assert_eq!(r["files"], 6);
    let mut names: Vec<String> = std::fs::read_dir(&stills)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "f_0050.png",
            "f_0060.png",
            "f_0070.png",
            "f_0080.png",
            "f_0090.png",
            "f_0100.png"
        ]
    );
    // A still without a selection is the newest frame.
    let now = dir.path().join("now.png");
    let r = export_ok(&[p(&rec), "-o", p(&now)]);
    assert_eq!(runs(&r["sequences"]), vec![[139, 139]]);

    // Nothing matches: exit 1 and the recording's span in words.
    let o = export(&[p(&rec), "--frames", "500-600", "-o", p(&out)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("frames 40 to 139"), "{}", stderr(&o));
    // Several frames, one still name: a usage error.
    let o = export(&[p(&rec), "--last", "1s", "-o", p(&now)]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    // A format export cannot write.
    let o = export(&[p(&rec), "-o", p(&dir.path().join("x.mp4"))]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("ffmpeg -i clip.y4m clip.mp4"),
        "{}",
        stderr(&o)
    );
}

/// Frames corrupted in the file (verify calls them corrupt) are skipped
/// and reported; source drops and error frames are reported; --fill
/// repeats the previous frame once per missing frame period.
#[test]
fn gaps_are_reported_and_fill_keeps_time() {
    let dir = workdir();
    // A test-source recording whose frames 20..=24 are damaged on disk.
    let rec = record(dir.path(), "cap.pcam", "YUYV", 40);
    let reader = RecordingReader::open(&rec).unwrap();
    let layout = reader.header().layout;
    let slots: Vec<u32> = reader
        .scan()
        .unwrap()
        .valid
        .iter()
        .filter(|(_, m)| (20..25).contains(&m.sequence))
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(slots.len(), 5);
    drop(reader);
    let file = std::fs::OpenOptions::new().write(true).open(&rec).unwrap();
    for s in &slots {
        file.write_all_at(b"damage", layout.slot_offset(*s) + 1000)
            .unwrap();
    }
    drop(file);
    let v = verify(&rec, &["--json"]);
    assert_eq!(
        v.status.code(),
        Some(1),
        "verify calls it corrupt: {}",
        stderr(&v)
    );
    let y4m = dir.path().join("cap.y4m");
    let r = export_ok(&[p(&rec), "-o", p(&y4m)]);
    assert_eq!(runs(&r["corrupt"]), vec![[20, 24]], "{r}");
    assert_eq!(runs(&r["sequences"]), vec![[0, 19], [25, 39]]);
    assert_eq!(r["exported"], 35);
    assert_eq!(probe(&[], &y4m)["nb_read_frames"], "35");

    // Exact timing, built here: 30 fps; frames 10..=14 corrupt; the source
    // dropped 2 frames between 19 and 20; frame 25 flagged as an error.
    let f = FrameFormat::uncompressed(pagecam::format::YUYV, 128, 32).unwrap();
    let pattern = Pattern::new(f).unwrap();
    let rec = dir.path().join("gaps.pcam");
    let s = Synth::new(&rec, f, 64, 30);
    let mut buf = vec![0u8; f.frame_size as usize];
    let mut want: Vec<u64> = Vec::new(); // source frame shown at each output position
    for seq in 0..30u64 {
        let src = if seq >= 20 { seq + 2 } else { seq };
        pattern.render(src, &mut buf);
        let mut m = meta(seq, src, 30);
        if seq == 25 {
            m.flags = FLAG_ERROR;
        }
        s.put(seq as u32, m, &buf);
        if (10..15).contains(&seq) {
            // Damage the data after the record was written: CRC fails.
            s.rec
                .file
                .write_all_at(b"torn", s.rec.header.layout.slot_offset(seq as u32) + 99)
                .unwrap();
        }
    }
    drop(s);
    for seq in 0..30u64 {
        let src = if seq >= 20 { seq + 2 } else { seq };
        match seq {
            10..=14 => want.push(9),
            20 => {
                want.extend([19, 19]);
                want.push(src);
            }
            _ => want.push(src),
        }
    }
    let clip = dir.path().join("gaps.raw");
    let r = export_ok(&[p(&rec), "-o", p(&clip)]);
    assert_eq!(runs(&r["corrupt"]), vec![[10, 14]], "{r}");
    assert_eq!(r["source_dropped"], 2, "{r}");
    assert_eq!(r["source_gaps"][0]["after"], 19, "{r}");
    assert_eq!(r["source_gaps"][0]["before"], 20, "{r}");
    assert_eq!(runs(&r["error_frames"]), vec![[25, 25]], "{r}");
    assert_eq!(r["written"], 25, "{r}");

    let r = export_ok(&[p(&rec), "-o", p(&clip), "--fill"]);
    assert_eq!(r["filled"], 7, "5 corrupt + 2 dropped: {r}");
    assert_eq!(r["written"], 32, "{r}");
    let stamps: Vec<u64> = std::fs::read(&clip)
        .unwrap()
        .chunks_exact(buf.len())
        .map(|c| Pattern::read_stamp(&f, c).unwrap())
        .collect();
    assert_eq!(stamps, want, "fill repeats the frame before each gap");

    // The same through Y4M: ffmpeg sees 32 frames at 30 fps.
    let y4m = dir.path().join("gaps.y4m");
    export_ok(&[p(&rec), "-o", p(&y4m), "--fill"]);
    assert_eq!(probe(&[], &y4m)["nb_read_frames"], "32");

    // Error frames left out on request: filled like any missing frame.
    let r = export_ok(&[p(&rec), "-o", p(&clip), "--fill", "--skip-error-frames"]);
    assert_eq!(runs(&r["skipped_error_frames"]), vec![[25, 25]], "{r}");
    assert_eq!(r["written"], 32, "{r}");
    assert_eq!(r["filled"], 8, "{r}");
}

/// Frames from a running capture: the newest second from its live store
/// (and older frames from the recording behind a RAM ring), each frame
/// exactly the one its stamp names, for both stores.
#[test]
fn live_export_from_a_running_capture_direct_store() {
    live_export("direct");
}

#[test]
fn live_export_from_a_running_capture_file_store() {
    live_export("file");
}

fn live_export(store: &str) {
    let dir = workdir();
    let rec = dir.path().join("live.pcam");
    let sock = dir.path().join("live.pcam.sock");
    let mut c = capture();
    c.args([
        "--size", "320x240", "--fps", "30", "--slots", "600", "--store", store,
    ]);
    if store == "direct" {
        c.args(["--ram-ring", "8"]);
    }
    c.arg("-o").arg(&rec);
    let cap = spawn(c);
    wait_for(&sock);
    std::thread::sleep(Duration::from_millis(2000));
    let f = pagecam::format::FrameFormat::uncompressed(pagecam::format::YUYV, 320, 240).unwrap();
    let pattern = Pattern::new(f).unwrap();
    let frame_len = f.frame_size as usize;
    let check = |clip: &Path| -> Vec<u64> {
        let bytes = std::fs::read(clip).unwrap();
        let stamps: Vec<u64> = bytes
            .chunks_exact(frame_len)
            .map(|c| {
                let s = Pattern::read_stamp(&f, c).expect("a clean stamp");
                let mut w = vec![0u8; c.len()];
                pattern.render(s, &mut w);
                assert!(c == w, "{store}: frame with stamp {s} is not that frame");
                s
            })
            .collect();
        assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
        stamps
    };
    // The recording's path while capture runs: read live.
    let clip = dir.path().join("last.raw");
    let r = export_ok(&[p(&rec), "--last", "1s", "-o", p(&clip)]);
    assert!(
        r["input"].as_str().unwrap().contains("running capture"),
        "{store}: {r}"
    );
    let n = check(&clip).len();
    // 30 fps; fewer if the loaded machine made the source drop frames.
    assert!(
        (5..=32).contains(&n),
        "{store}: {n} frames in the last second: {r}"
    );
    assert_eq!(r["exported"], n as u64);
    // Explicitly live, by socket: the first frames (for the RAM ring, from
    // the recording behind it).
    let clip = dir.path().join("first.raw");
    let r = export_ok(&[
        "--live",
        "--socket",
        p(&sock),
        p(&rec),
        "--frames",
        "0-9",
        "-o",
        p(&clip),
    ]);
    assert_eq!(runs(&r["sequences"]), vec![[0, 9]], "{store}: {r}");
    check(&clip);
    kill(cap.pid(), Signal::SIGINT).unwrap();
    let out = finish(cap, Duration::from_secs(30), "capture");
    assert!(out.status.success(), "{}", stderr(&out));
    // Capture has ended: the same command reads the file.
    let r = export_ok(&[p(&rec), "--frames", "0-9", "-o", p(&clip)]);
    assert!(r["input"].as_str().unwrap().starts_with("recording"), "{r}");
    assert_eq!(check(&clip).len(), 10);
    // --live with no capture: exit 4.
    let o = export(&["--live", p(&rec), "-o", p(&clip)]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
}

/// The contact sheet spreads its cells evenly over the time span,
/// row-major in time order.
#[test]
fn contact_sheet_is_ordered_by_time() {
    let dir = workdir();
    let f = FrameFormat::uncompressed(pagecam::format::GREY, 128, 32).unwrap();
    let rec = dir.path().join("sheet.pcam");
    let s = Synth::new(&rec, f, 64, 10);
    for k in 0..64u64 {
        // Ring order: frame k in slot (k + 20) % 64; its luma says which it is.
        let frame = vec![(16 + 3 * k) as u8; f.frame_size as usize];
        s.put(((k + 20) % 64) as u32, meta(k, k, 10), &frame);
    }
    drop(s);
    let sheet = dir.path().join("sheet.png");
    let r = export_ok(&[
        p(&rec),
        "--contact-sheet",
        p(&sheet),
        "--grid",
        "4x2",
        "--width",
        "512",
    ]);
    assert_eq!(r["exported"], 8, "{r}");
    let s = probe(&[], &sheet);
    assert_eq!(
        (s["width"].as_u64(), s["height"].as_u64()),
        (Some(512), Some(64))
    );
    let rgb = png_rgb(&sheet);
    for (cell, k) in [0u64, 9, 18, 27, 36, 45, 54, 63].iter().enumerate() {
        let (x, y) = ((cell % 4) * 128 + 64, (cell / 4) * 32 + 24);
        let px = &rgb[(y * 512 + x) * 3..][..3];
        assert_eq!(px, [(16 + 3 * k) as u8; 3], "cell {cell} shows frame {k}");
    }
}

/// vivid's 75% colour bars in RGB, bar by bar (white … black).
const BARS_RGB: [[u8; 3]; 8] = [
    [191, 191, 191],
    [191, 191, 0],
    [0, 191, 191],
    [0, 191, 0],
    [191, 0, 191],
    [191, 0, 0],
    [0, 0, 191],
    [0, 0, 0],
];

/// Per-channel tolerance against BARS_RGB: vivid's own Y'CbCr values are
/// rounded, and BT.601 limited range steps by 1.16 per code value.
const BARS_TOLERANCE: u8 = 6;

/// Check export on a recording of vivid's 75% colour bars (pulled from a
/// vivid guest by the vivid test, or built here): the newest frame's PNG
/// shows the bars in RGB, and a Y4M clip (raw for RGB) decodes back to the
/// recorded frames through ffmpeg.
pub fn check_vivid_export(rec: &Path, dir: &Path) {
    let frames = frames_of(rec);
    assert!(!frames.is_empty(), "{}: no valid frame", rec.display());
    let f = RecordingReader::open(rec).unwrap().header().format;
    let code = pagecam::format::fourcc_str(f.fourcc);
    let name = rec.file_stem().unwrap().to_string_lossy().into_owned();
    let png = dir.join(format!("{name}-export.png"));
    export_ok(&[p(rec), "-o", p(&png)]);
    let rgb = png_rgb(&png);
    let (w, h) = (f.width as usize, f.height as usize);
    assert_eq!(rgb.len(), w * h * 3, "{name}: PNG size");
    let grey_bars = colorbar_line(fourcc(b"GREY"), 8);
    for b in 0..8 {
        let want = if code == "GREY" {
            [grey_bars[b]; 3]
        } else {
            BARS_RGB[b]
        };
        let x = (w / 8) * b + w / 16;
        for y in [0, h / 2, h - 1] {
            let px = &rgb[(y * w + x) * 3..][..3];
            assert!(
                max_diff(px, &want) <= BARS_TOLERANCE,
                "{name} ({code}): bar {b} at ({x}, {y}) is {px:?}, want {want:?}"
            );
        }
    }
    let tight_len = |fr: &[u8]| -> Vec<u8> {
        let line = match code.as_str() {
            "YUYV" | "UYVY" => w * 2,
            "RGB3" | "BGR3" => w * 3,
            _ => w,
        };
        let lines = match code.as_str() {
            "NV12" | "NV21" => h * 3 / 2,
            _ => h,
        };
        tight(fr, line, f.bytes_per_line as usize, lines)
    };
    let recorded: Vec<u8> = frames.iter().flat_map(|(_, b)| tight_len(b)).collect();
    let (kind, pix) = match code.as_str() {
        "YUYV" => ("y4m", "yuyv422"),
        "NV12" => ("y4m", "nv12"),
        "GREY" => ("y4m", "gray"),
        "RGB3" => ("raw", "rgb24"),
        other => panic!("check_vivid_export: vivid format {other} not covered"),
    };
    let clip = dir.join(format!("{name}-export.{kind}"));
    let r = export_ok(&[p(rec), "-o", p(&clip)]);
    assert_eq!(r["exported"], frames.len() as u64, "{name}: {r}");
    let flags: Vec<String> = match r["ffmpeg"].as_str() {
        Some(cmd) => {
            let words: Vec<&str> = cmd.split(' ').collect();
            words[1..words.len() - 2]
                .iter()
                .map(|s| s.to_string())
                .collect()
        }
        None => Vec::new(),
    };
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    assert_eq!(
        probe(&flags, &clip)["nb_read_frames"],
        frames.len().to_string(),
        "{name}"
    );
    assert!(
        decode(&flags, &clip, pix) == recorded,
        "{name}: the {kind} clip does not decode to the recorded frames"
    );
}

/// `check_vivid_export` on recordings built here from vivid's colour bars
/// (the vivid test runs it on real vivid recordings in the guests).
#[test]
fn vivid_export_check_on_synthetic_colour_bars() {
    let dir = workdir();
    let (w, h) = (320u32, 180u32);
    let yuyv = colorbar_line(fourcc(b"YUYV"), w as usize);
    for code in [b"YUYV", b"NV12", b"RGB3", b"GREY"] {
        let line = colorbar_line(fourcc(code), w as usize);
        let bpl = line.len() as u32;
        let f = format(code, w, h, bpl);
        let mut frame: Vec<u8> = line
            .iter()
            .copied()
            .cycle()
            .take((bpl * h) as usize)
            .collect();
        if code == b"NV12" {
            // Chroma rows: vivid's Cb, Cr per pair, as in its YUYV line.
            let uv: Vec<u8> = yuyv.chunks_exact(4).flat_map(|g| [g[1], g[3]]).collect();
            frame.extend(uv.iter().copied().cycle().take((bpl * h / 2) as usize));
        }
        let name = String::from_utf8_lossy(code).to_lowercase();
        let rec = dir.path().join(format!("{name}.pcam"));
        let s = Synth::new(&rec, f, 8, 30);
        for k in 0..5u64 {
            s.put(k as u32, meta(k, k, 30), &frame);
        }
        drop(s);
        check_vivid_export(&rec, dir.path());
    }
}

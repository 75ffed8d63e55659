//! Per-frame statistics computed in place over a frame, in one pass over
//! its luma: mean luma, motion (per grid cell and overall), a luma
//! histogram with the dark / under- / over-exposed fractions, a sharpness
//! score (variance of the Laplacian) and the change since the previous
//! frame (for frozen-picture detection).
//!
//! Key decision: nothing but a half-resolution luma thumbnail is kept
//! between frames (the previous frame may already be overwritten in the
//! ring). Every line is read once (for a frame in shared memory: through a
//! line buffer of our own, see `SlotView`); motion compares block means on
//! a 32x18 grid; sharpness, the histogram and the frame change are computed
//! on the thumbnail (every second sample of every second line), which
//! costs a quarter of full resolution and is what the detectors need.

use crate::format::{fourcc, FrameFormat, GREY, NV12, YUYV};
use crate::mapping::SlotView;

/// The motion grid.
pub const GRID_W: usize = 32;
pub const GRID_H: usize = 18;

/// Luma at or below this counts as dark (black detection): 10% of the
/// way from black (16) to white (235) in limited range, as ffmpeg's
/// blackdetect's default `pixel_black_th=0.10`.
pub const DARK_LEVEL: u8 = 38;
/// Luma at or below this is under-exposed (crushed to black).
pub const UNDER_LEVEL: u8 = 20;
/// Luma at or above this is over-exposed (clipped white).
pub const OVER_LEVEL: u8 = 232;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameStats {
    /// Mean luma, 0-255.
    pub mean_luma: f32,
    /// Mean absolute change of block luma since the previous frame, 0-255;
    /// `None` for the first frame.
    pub motion: Option<f32>,
    /// Fraction of samples at or below `DARK_LEVEL`.
    pub dark: f32,
    /// Fraction of samples at or below `UNDER_LEVEL`.
    pub under: f32,
    /// Fraction of samples at or above `OVER_LEVEL`.
    pub over: f32,
    /// Variance of the 4-neighbour Laplacian of the half-resolution luma:
    /// higher is sharper (focus score).
    pub sharpness: f32,
    /// Mean absolute difference of the half-resolution luma from the
    /// previous frame's, 0-255; `None` for the first frame. Near 0: frozen.
    pub change: Option<f32>,
}

/// Where the luma of a format lives: (bytes between samples, offset of
/// the first sample) in the first plane; `None` if the format's luma cannot
/// be read without decoding (e.g. MJPG).
fn luma_layout(fourcc_code: u32) -> Option<(usize, usize)> {
    match fourcc_code {
        YUYV => Some((2, 0)),
        c if c == fourcc(b"UYVY") => Some((2, 1)),
        GREY | NV12 => Some((1, 0)),
        c if c == fourcc(b"NV21") || c == fourcc(b"YU12") || c == fourcc(b"YV12") => Some((1, 0)),
        // For packed RGB the green byte is a fair luma proxy.
        c if c == fourcc(b"RGB3") || c == fourcc(b"BGR3") => Some((3, 1)),
        _ => None,
    }
}

/// Sum every `step`-th byte of `seg` starting at `first`. Written per step
/// with fixed-size chunks and a u32 accumulator so the compiler vectorises
/// it (a block row is at most a few hundred samples: no overflow).
fn sum_samples(seg: &[u8], step: usize, first: usize) -> u32 {
    match step {
        1 => seg.iter().map(|&v| v as u32).sum(),
        2 => seg.chunks_exact(2).map(|c| c[first] as u32).sum(),
        _ => seg.chunks_exact(3).map(|c| c[first] as u32).sum(),
    }
}

/// Lines of a frame, one at a time.
trait Lines {
    fn line(&mut self, y: usize) -> &[u8];
}

/// Lines of a frame in shared memory, each read into `buf`.
struct ViewLines<'a, 'v> {
    view: &'a SlotView<'v>,
    bpl: usize,
    buf: Vec<u8>,
}

impl Lines for ViewLines<'_, '_> {
    fn line(&mut self, y: usize) -> &[u8] {
        let n = self.view.copy_to(y.saturating_mul(self.bpl), &mut self.buf);
        &self.buf[..n]
    }
}

/// Lines of a frame in our own memory, borrowed in place.
struct SliceLines<'a> {
    frame: &'a [u8],
    bpl: usize,
}

impl Lines for SliceLines<'_> {
    fn line(&mut self, y: usize) -> &[u8] {
        let start = y.saturating_mul(self.bpl).min(self.frame.len());
        &self.frame[start..start.saturating_add(self.bpl).min(self.frame.len())]
    }
}

/// Per-frame analysis of one stream of frames of one format. Allocates at
/// construction only.
pub struct Analyzer {
    format: FrameFormat,
    layout: Option<(usize, usize)>,
    prev: Vec<u64>,
    cur: Vec<u64>,
    counts: Vec<u64>,
    /// Per-cell motion of the last frame, 0-255.
    cells: Vec<f32>,
    have_prev: bool,
    /// One line of a frame in shared memory, read into our own memory
    /// (it stays in L1: the copy costs little beside the read it replaces).
    row: Vec<u8>,
    /// Half-resolution luma of this frame and of the previous one.
    thumb: Vec<u8>,
    prev_thumb: Vec<u8>,
    thumb_w: usize,
    thumb_h: usize,
    histogram: [u32; 256],
}

impl Analyzer {
    pub fn new(format: FrameFormat) -> Self {
        let layout = luma_layout(format.fourcc);
        let (w, h) = (format.width as usize, format.height as usize);
        let mut counts = vec![0u64; GRID_W * GRID_H];
        if layout.is_some() {
            for (i, c) in counts.iter_mut().enumerate() {
                let (bx, by) = (i % GRID_W, i / GRID_W);
                let cols = (bx + 1) * w / GRID_W - bx * w / GRID_W;
                let rows = (by + 1) * h / GRID_H - by * h / GRID_H;
                *c = (cols * rows).max(1) as u64;
            }
        }
        // Buffers only for formats that are analysed: an unknown format's
        // sizes mean nothing here.
        let (thumb_w, thumb_h) = if layout.is_some() {
            (w / 2, h / 2)
        } else {
            (0, 0)
        };
        let row_len = if layout.is_some() {
            format.bytes_per_line as usize
        } else {
            0
        };
        Analyzer {
            format,
            layout,
            prev: vec![0; GRID_W * GRID_H],
            cur: vec![0; GRID_W * GRID_H],
            counts,
            cells: vec![0.0; GRID_W * GRID_H],
            have_prev: false,
            row: vec![0; row_len],
            thumb: vec![0; thumb_w * thumb_h],
            prev_thumb: vec![0; thumb_w * thumb_h],
            thumb_w,
            thumb_h,
            histogram: [0; 256],
        }
    }

    /// Whether this format's luma can be analysed.
    pub fn supported(&self) -> bool {
        self.layout.is_some()
    }

    /// Motion per grid cell of the last analysed frame (row-major,
    /// `GRID_W` x `GRID_H`, 0-255); all 0 before the second frame.
    pub fn cells(&self) -> &[f32] {
        &self.cells
    }

    /// The luma histogram of the last analysed frame (half resolution).
    pub fn histogram(&self) -> &[u32; 256] {
        &self.histogram
    }

    /// Analyse one frame in shared memory (no allocation): each line is
    /// read through the view into a line buffer of our own.
    pub fn analyse(&mut self, frame: &SlotView<'_>) -> Option<FrameStats> {
        let mut lines = ViewLines {
            view: frame,
            bpl: self.format.bytes_per_line as usize,
            buf: std::mem::take(&mut self.row),
        };
        let out = self.analyse_lines(frame.len(), &mut lines);
        self.row = lines.buf;
        out
    }

    /// Analyse one frame in memory of our own (a copy, a file).
    pub fn analyse_bytes(&mut self, frame: &[u8]) -> Option<FrameStats> {
        let mut lines = SliceLines {
            frame,
            bpl: self.format.bytes_per_line as usize,
        };
        self.analyse_lines(frame.len(), &mut lines)
    }

    /// The analysis over the lines of a frame of `len` bytes.
    fn analyse_lines(&mut self, len: usize, lines: &mut impl Lines) -> Option<FrameStats> {
        let (step, first) = self.layout?;
        let (w, h) = (self.format.width as usize, self.format.height as usize);
        let bpl = self.format.bytes_per_line as usize;
        let need = bpl
            .checked_mul(h.checked_sub(1)?)?
            .checked_add(w.checked_mul(step)?)?;
        if len < need || w < 2 || h < 2 {
            return None;
        }
        self.cur.iter_mut().for_each(|v| *v = 0);
        self.histogram = [0; 256];
        let mut total = 0u64;
        let tw = self.thumb_w;
        for y in 0..h {
            let line = lines.line(y);
            if line.len() < w * step {
                return None;
            }
            let by = y * GRID_H / h;
            for bx in 0..GRID_W {
                let (x0, x1) = (bx * w / GRID_W, (bx + 1) * w / GRID_W);
                let sum = sum_samples(&line[x0 * step..x1 * step], step, first) as u64;
                self.cur[by * GRID_W + bx] += sum;
                total += sum;
            }
            if y % 2 == 0 && y / 2 < self.thumb_h {
                let out = &mut self.thumb[(y / 2) * tw..(y / 2 + 1) * tw];
                for (t, s) in out.iter_mut().zip(line[first..].iter().step_by(2 * step)) {
                    *t = *s;
                }
                for &v in out.iter() {
                    self.histogram[v as usize] += 1;
                }
            }
        }
        let mean_luma = total as f32 / (w * h) as f32;
        let motion = self.have_prev.then(|| {
            let mut diff = 0.0f32;
            for (i, ((c, p), n)) in self
                .cur
                .iter()
                .zip(&self.prev)
                .zip(&self.counts)
                .enumerate()
            {
                let d = (*c as f32 - *p as f32).abs() / *n as f32;
                self.cells[i] = d;
                diff += d;
            }
            diff / (GRID_W * GRID_H) as f32
        });
        let samples = (self.thumb_w * self.thumb_h).max(1) as f32;
        let upto = |level: u8| self.histogram[..=level as usize].iter().sum::<u32>() as f32;
        let dark = upto(DARK_LEVEL) / samples;
        let under = upto(UNDER_LEVEL) / samples;
        let over = self.histogram[OVER_LEVEL as usize..].iter().sum::<u32>() as f32 / samples;
        let sharpness = laplacian_variance(&self.thumb, self.thumb_w, self.thumb_h);
        let change = self.have_prev.then(|| {
            let sum: u64 = self
                .thumb
                .iter()
                .zip(&self.prev_thumb)
                .map(|(a, b)| a.abs_diff(*b) as u64)
                .sum();
            sum as f32 / samples
        });
        std::mem::swap(&mut self.cur, &mut self.prev);
        std::mem::swap(&mut self.thumb, &mut self.prev_thumb);
        self.have_prev = true;
        Some(FrameStats {
            mean_luma,
            motion,
            dark,
            under,
            over,
            sharpness,
            change,
        })
    }

    /// Forget the previous frame (after a gap, motion would be misleading).
    pub fn reset_motion(&mut self) {
        self.have_prev = false;
        self.cells.iter_mut().for_each(|c| *c = 0.0);
    }
}

/// Variance of the 4-neighbour Laplacian over the inner samples of a
/// `w` x `h` image (0 for images too small to have any).
fn laplacian_variance(img: &[u8], w: usize, h: usize) -> f32 {
    if w < 3 || h < 3 {
        return 0.0;
    }
    let (mut sum, mut sum_sq, mut n) = (0i64, 0i64, 0i64);
    for y in 1..h - 1 {
        let (up, row, down) = (
            &img[(y - 1) * w..y * w],
            &img[y * w..(y + 1) * w],
            &img[(y + 1) * w..(y + 2) * w],
        );
        for x in 1..w - 1 {
            let l = 4 * row[x] as i32
                - row[x - 1] as i32
                - row[x + 1] as i32
                - up[x] as i32
                - down[x] as i32;
            sum += l as i64;
            sum_sq += (l * l) as i64;
        }
        n += (w - 2) as i64;
    }
    let mean = sum as f64 / n as f64;
    (sum_sq as f64 / n as f64 - mean * mean) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yuyv(f: &FrameFormat, luma: impl Fn(usize, usize) -> u8) -> Vec<u8> {
        let (w, h) = (f.width as usize, f.height as usize);
        let mut v = vec![128u8; f.frame_size as usize];
        for y in 0..h {
            for x in 0..w {
                v[y * f.bytes_per_line as usize + 2 * x] = luma(x, y);
            }
        }
        v
    }

    #[test]
    fn flat_frames_have_their_luma_and_no_motion() {
        let f = FrameFormat::uncompressed(YUYV, 64, 36).unwrap();
        let mut a = Analyzer::new(f);
        let frame = yuyv(&f, |_, _| 100);
        let s = a.analyse_bytes(&frame).unwrap();
        assert_eq!(s.mean_luma, 100.0);
        assert_eq!(s.motion, None);
        assert_eq!(s.change, None);
        assert_eq!(s.sharpness, 0.0, "a flat frame has no edges");
        let s = a.analyse_bytes(&frame).unwrap();
        assert_eq!(s.motion, Some(0.0));
        assert_eq!(s.change, Some(0.0), "the same frame again: frozen");
        let brighter = yuyv(&f, |_, _| 110);
        let s = a.analyse_bytes(&brighter).unwrap();
        assert!((s.motion.unwrap() - 10.0).abs() < 1e-3, "{s:?}");
        assert!((s.change.unwrap() - 10.0).abs() < 1e-3, "{s:?}");
        assert!(a.cells().iter().all(|c| (c - 10.0).abs() < 1e-3));
    }

    #[test]
    fn exposure_fractions_and_darkness() {
        let f = FrameFormat::uncompressed(YUYV, 64, 36).unwrap();
        let mut a = Analyzer::new(f);
        let s = a.analyse_bytes(&yuyv(&f, |_, _| 16)).unwrap();
        assert_eq!((s.dark, s.under, s.over), (1.0, 1.0, 0.0), "black: {s:?}");
        // Left half white, right half mid grey.
        let s = a
            .analyse_bytes(&yuyv(&f, |x, _| if x < 32 { 235 } else { 128 }))
            .unwrap();
        assert_eq!((s.dark, s.under, s.over), (0.0, 0.0, 0.5), "{s:?}");
    }

    #[test]
    fn sharpness_grows_with_edges() {
        let f = FrameFormat::uncompressed(GREY, 128, 64).unwrap();
        let mut a = Analyzer::new(f);
        let grey = |img: &dyn Fn(usize, usize) -> u8| {
            let mut v = vec![0u8; f.frame_size as usize];
            for y in 0..64 {
                for x in 0..128 {
                    v[y * 128 + x] = img(x, y);
                }
            }
            v
        };
        let soft = a
            .analyse_bytes(&grey(&|x, _| (x * 2) as u8))
            .unwrap()
            .sharpness;
        let sharp = a
            .analyse_bytes(&grey(&|x, y| {
                if (x / 4 + y / 4) % 2 == 0 {
                    30
                } else {
                    220
                }
            }))
            .unwrap()
            .sharpness;
        assert!(sharp > 100.0 * soft.max(1.0), "soft {soft}, sharp {sharp}");
    }

    #[test]
    fn motion_is_located_in_its_cell() {
        let f = FrameFormat::uncompressed(GREY, 320, 180).unwrap();
        let mut a = Analyzer::new(f);
        let frame = |bright: bool| {
            let mut v = vec![50u8; f.frame_size as usize];
            if bright {
                // Cell (0, 0): 10x10 pixels.
                for y in 0..10 {
                    v[y * 320..y * 320 + 10].fill(250);
                }
            }
            v
        };
        a.analyse_bytes(&frame(false)).unwrap();
        a.analyse_bytes(&frame(true)).unwrap();
        assert!(a.cells()[0] > 100.0, "{}", a.cells()[0]);
        assert!(a.cells()[1..].iter().all(|c| *c == 0.0));
    }

    #[test]
    fn unsupported_and_short_frames() {
        let mut f = FrameFormat::uncompressed(GREY, 64, 36).unwrap();
        assert!(Analyzer::new(f).analyse_bytes(&[0u8; 10]).is_none());
        f.fourcc = fourcc(b"MJPG");
        assert!(!Analyzer::new(f).supported());
    }
}

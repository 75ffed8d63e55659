//! Per-frame statistics computed in place over a frame: mean luma and a
//! motion score against the previous frame.
//!
//! Motion compares block means on a coarse grid (32x18) rather than the
//! previous frame's pixels, so no frame data is ever copied or kept: the
//! previous frame may already be overwritten in the ring.

use crate::format::{fourcc, FrameFormat, GREY, NV12, YUYV};
use crate::mapping::SlotView;

const GRID_W: usize = 32;
const GRID_H: usize = 18;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameStats {
    /// Mean luma, 0-255.
    pub mean_luma: f32,
    /// Mean absolute change of block luma since the previous frame, 0-255;
    /// `None` for the first frame.
    pub motion: Option<f32>,
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

pub struct Analyzer {
    format: FrameFormat,
    layout: Option<(usize, usize)>,
    prev: Vec<u64>,
    cur: Vec<u64>,
    counts: Vec<u64>,
    have_prev: bool,
    /// One line of a frame in shared memory, read into our own memory
    /// (it stays in L1: the copy costs little beside the read it replaces).
    row: Vec<u8>,
}

impl Analyzer {
    pub fn new(format: FrameFormat) -> Self {
        let layout = luma_layout(format.fourcc);
        let mut counts = vec![0u64; GRID_W * GRID_H];
        if layout.is_some() {
            let (w, h) = (format.width as usize, format.height as usize);
            for (i, c) in counts.iter_mut().enumerate() {
                let (bx, by) = (i % GRID_W, i / GRID_W);
                let cols = (bx + 1) * w / GRID_W - bx * w / GRID_W;
                let rows = (by + 1) * h / GRID_H - by * h / GRID_H;
                *c = (cols * rows).max(1) as u64;
            }
        }
        Analyzer {
            format,
            layout,
            prev: vec![0; GRID_W * GRID_H],
            cur: vec![0; GRID_W * GRID_H],
            counts,
            have_prev: false,
            row: vec![0; format.bytes_per_line as usize],
        }
    }

    /// Whether this format's luma can be analysed.
    pub fn supported(&self) -> bool {
        self.layout.is_some()
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
        if len < need || w == 0 || h == 0 {
            return None;
        }
        self.cur.iter_mut().for_each(|v| *v = 0);
        let mut total = 0u64;
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
        }
        let mean_luma = total as f32 / (w * h) as f32;
        let motion = self.have_prev.then(|| {
            let diff: f32 = self
                .cur
                .iter()
                .zip(&self.prev)
                .zip(&self.counts)
                .map(|((c, p), n)| (*c as f32 - *p as f32).abs() / *n as f32)
                .sum();
            diff / (GRID_W * GRID_H) as f32
        });
        std::mem::swap(&mut self.cur, &mut self.prev);
        self.have_prev = true;
        Some(FrameStats { mean_luma, motion })
    }

    /// Forget the previous frame (after a gap, motion would be misleading).
    pub fn reset_motion(&mut self) {
        self.have_prev = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_frames_have_their_luma_and_no_motion() {
        let f = FrameFormat::uncompressed(YUYV, 64, 36).unwrap();
        let mut a = Analyzer::new(f);
        let frame: Vec<u8> = (0..f.frame_size)
            .map(|i| if i % 2 == 0 { 100 } else { 128 })
            .collect();
        let s = a.analyse_bytes(&frame).unwrap();
        assert_eq!(s.mean_luma, 100.0);
        assert_eq!(s.motion, None);
        assert_eq!(a.analyse_bytes(&frame).unwrap().motion, Some(0.0));
        let brighter: Vec<u8> = (0..f.frame_size)
            .map(|i| if i % 2 == 0 { 110 } else { 128 })
            .collect();
        let s = a.analyse_bytes(&brighter).unwrap();
        assert!((s.motion.unwrap() - 10.0).abs() < 1e-3, "{s:?}");
    }

    #[test]
    fn unsupported_and_short_frames() {
        let mut f = FrameFormat::uncompressed(GREY, 64, 36).unwrap();
        assert!(Analyzer::new(f).analyse_bytes(&[0u8; 10]).is_none());
        f.fourcc = fourcc(b"MJPG");
        assert!(!Analyzer::new(f).supported());
    }
}

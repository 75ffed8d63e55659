//! The contact sheet: one PNG grid of thumbnails spread evenly over the
//! selection's time span, row-major in time order, each labelled with its
//! frame number and UTC time of day.
//!
//! Cell *i* of *n* shows the frame nearest to `first + i × span / (n − 1)`
//! by wall-clock time (so the first and the newest frame are always on
//! it, and a burst of dropped frames shows as a jump in the labels, not as
//! a shift of everything after it). A frame that does not read valid is
//! replaced by the next valid one before the next cell's frame. Labels are
//! drawn with a built-in 3×5 digit font: no font file, no font crate.

use image::imageops::{self, FilterType};
use image::RgbImage;

use super::convert::{Geometry, Range, Scratch};
use super::select::civil_utc;

/// Grid and size of a contact sheet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SheetSpec {
    pub columns: u32,
    pub rows: u32,
    /// Width of the whole sheet in pixels.
    pub width: u32,
}

impl SheetSpec {
    /// `4x4` (columns x rows).
    pub fn parse_grid(s: &str) -> Result<(u32, u32), String> {
        let bad = || format!("'{s}' is not a grid (e.g. 4x4: columns x rows)");
        let (c, r) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
        let (c, r): (u32, u32) = (
            c.trim().parse().map_err(|_| bad())?,
            r.trim().parse().map_err(|_| bad())?,
        );
        if c == 0 || r == 0 || c.saturating_mul(r) > 10_000 {
            return Err(bad());
        }
        Ok((c, r))
    }

    pub fn cells(&self) -> usize {
        self.columns as usize * self.rows as usize
    }

    /// Thumbnail size for pictures of `w`×`h`.
    pub fn thumb(&self, w: u32, h: u32) -> (u32, u32) {
        let tw = (self.width / self.columns).max(1);
        let th = ((tw as u64 * h as u64 + w as u64 / 2) / w.max(1) as u64).clamp(1, 4096) as u32;
        (tw, th)
    }
}

/// Indices into `times` (sorted ascending) of the frames nearest to `cells`
/// evenly spaced times from the first to the last; strictly increasing,
/// so no frame appears twice (fewer frames than cells: all of them).
pub fn pick(times: &[u64], cells: usize) -> Vec<usize> {
    let n = times.len();
    if n <= cells {
        return (0..n).collect();
    }
    let (t0, t1) = (times[0], times[n - 1]);
    let mut out: Vec<usize> = Vec::with_capacity(cells);
    for i in 0..cells {
        let target = if cells == 1 {
            t1
        } else {
            t0 + ((t1 - t0) as u128 * i as u128 / (cells - 1) as u128) as u64
        };
        let at = times.partition_point(|&t| t < target);
        let mut best = if at == 0 {
            0
        } else if at >= n || target - times[at - 1] <= times[at] - target {
            at - 1
        } else {
            at
        };
        // Keep the picks distinct and in order, leaving room for the rest.
        let lo = out.last().map_or(0, |&p| p + 1);
        let hi = n - (cells - i);
        best = best.clamp(lo, hi);
        out.push(best);
    }
    out
}

/// A sheet being filled.
pub struct Sheet {
    spec: SheetSpec,
    geometry: Geometry,
    range: Range,
    image: Option<RgbImage>,
    thumb: (u32, u32),
    rgb: Vec<u8>,
    scratch: Scratch,
}

impl Sheet {
    pub fn new(spec: SheetSpec, geometry: Geometry, range: Range) -> Self {
        let thumb = spec.thumb(geometry.width, geometry.height);
        Sheet {
            spec,
            geometry,
            range,
            image: None,
            thumb,
            rgb: Vec::new(),
            scratch: Scratch::default(),
        }
    }

    /// Put `frame` (recording sequence `seq`, captured at `wall_ns`) into
    /// cell `cell`.
    pub fn place(
        &mut self,
        cell: usize,
        frame: &[u8],
        seq: u64,
        wall_ns: u64,
    ) -> Result<(), super::convert::ConvertError> {
        let (w, h) = self
            .geometry
            .to_rgb(frame, self.range, &mut self.rgb, &mut self.scratch)?;
        let (tw, th) = self.thumb;
        let sheet = self
            .image
            .get_or_insert_with(|| RgbImage::new(self.spec.columns * tw, self.spec.rows * th));
        let Some(pic) = RgbImage::from_raw(w, h, std::mem::take(&mut self.rgb)) else {
            return Err(super::convert::ConvertError::Decode(
                "picture size does not match its pixels".into(),
            ));
        };
        let mut small = imageops::resize(&pic, tw, th, FilterType::Triangle);
        self.rgb = pic.into_raw();
        let (_, _, _, hh, mm, ss, ms) = civil_utc(wall_ns);
        let label = format!("{seq} {hh:02}:{mm:02}:{ss:02}.{ms:03}");
        let short = seq.to_string();
        let scale = if th >= 60 { 2 } else { 1 };
        let text = if text_width(&label, scale) + 4 <= tw {
            label
        } else {
            short
        };
        draw_label(&mut small, &text, scale);
        let (col, row) = (
            cell as u32 % self.spec.columns,
            cell as u32 / self.spec.columns,
        );
        imageops::replace(sheet, &small, (col * tw) as i64, (row * th) as i64);
        Ok(())
    }

    /// The finished sheet (black where no frame was placed).
    pub fn finish(self) -> RgbImage {
        let (tw, th) = self.thumb;
        self.image
            .unwrap_or_else(|| RgbImage::new(self.spec.columns * tw, self.spec.rows * th))
    }
}

/// 3×5 glyphs, one row per byte, bit 2 = left column.
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        ':' => [0, 2, 0, 2, 0],
        '.' => [0, 0, 0, 0, 2],
        _ => [0; 5],
    }
}

fn text_width(text: &str, scale: u32) -> u32 {
    text.chars().count() as u32 * 4 * scale
}

/// White digits on a black box in the top-left corner.
fn draw_label(img: &mut RgbImage, text: &str, scale: u32) {
    let (w, h) = img.dimensions();
    let box_w = (text_width(text, scale) + 2 * scale).min(w);
    let box_h = (7 * scale).min(h);
    for y in 0..box_h {
        for x in 0..box_w {
            img.put_pixel(x, y, image::Rgb([0, 0, 0]));
        }
    }
    for (i, c) in text.chars().enumerate() {
        let g = glyph(c);
        for (gy, bits) in g.iter().enumerate() {
            for gx in 0..3u32 {
                if bits >> (2 - gx) & 1 == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let x = scale + (i as u32 * 4 + gx) * scale + dx;
                        let y = scale + gy as u32 * scale + dy;
                        if x < w && y < h {
                            img.put_pixel(x, y, image::Rgb([255, 255, 255]));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_spread_over_time_and_stay_distinct() {
        let times: Vec<u64> = (0..64).map(|k| k * 100).collect();
        assert_eq!(pick(&times, 8), vec![0, 9, 18, 27, 36, 45, 54, 63]);
        assert_eq!(pick(&times[..3], 8), vec![0, 1, 2]);
        // A burst of frames at the start does not crowd out the rest.
        let mut bursty = vec![0u64, 1, 2, 3, 4, 5];
        bursty.extend([1000, 2000, 3000]);
        let p = pick(&bursty, 4);
        assert_eq!(p.len(), 4);
        assert!(p.windows(2).all(|w| w[0] < w[1]), "{p:?}");
        assert_eq!(*p.last().unwrap(), bursty.len() - 1);
        assert_eq!(pick(&times, 1), vec![63]);
    }

    #[test]
    fn grids() {
        assert_eq!(SheetSpec::parse_grid("4x3"), Ok((4, 3)));
        assert!(SheetSpec::parse_grid("0x3").is_err());
        assert!(SheetSpec::parse_grid("4").is_err());
        let s = SheetSpec {
            columns: 4,
            rows: 4,
            width: 1280,
        };
        assert_eq!(s.thumb(640, 480), (320, 240));
    }
}

//! Pixels: where the planes of a recorded V4L2 frame lie, copying them out
//! with tight lines, and turning a frame into 8-bit RGB.
//!
//! Every format pagecam records is described by one [`Geometry`], built
//! from the recording header with checked arithmetic (the header is outside
//! input) and checked against each frame's length before any byte is read,
//! so a short or odd frame is an error, never a panic. Lines are `bytes per
//! line` apart as the driver reported (padding is dropped on the way out);
//! the chroma planes of YU12/YV12 are half as wide, as V4L2 defines them.
//!
//! Colour: Y'CbCr formats are BT.601 ([`Range::Limited`] unless asked
//! otherwise: the header has no range field, and limited range is what
//! V4L2 drivers deliver for YUYV, NV12 and friends). GREY is taken as full
//! range, as ffmpeg's `gray` and vivid's GREY are (V4L2 maps a luma-only
//! format's default quantization per driver; the ones we know deliver
//! 0..255). The matrix work is done by `yuvutils-rs` (integer, SIMD) from
//! tight planes; chroma is upsampled by repetition (each chroma sample
//! covers its 2 or 2×2 pixels). MJPG frames are decoded with the `image`
//! crate's JPEG decoder.

use thiserror::Error;
use yuvutils_rs::{
    YuvBiPlanarImage, YuvConversionMode, YuvGrayImage, YuvPackedImage, YuvPlanarImage, YuvRange,
    YuvStandardMatrix,
};

use crate::format::{fourcc, fourcc_str, FrameFormat};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConvertError {
    /// The recording's pixel format is not one export knows.
    #[error("pixel format {0} is not supported by export")]
    Unsupported(String),
    /// Width, height or stride do not describe a frame of this format.
    #[error("{format} {width}x{height}: {why}")]
    Geometry {
        format: String,
        width: u32,
        height: u32,
        why: String,
    },
    /// The frame holds fewer bytes than its geometry needs.
    #[error("frame holds {have} bytes, {format} {width}x{height} needs {need}")]
    ShortFrame {
        format: String,
        width: u32,
        height: u32,
        have: usize,
        need: usize,
    },
    /// An MJPG frame that is not a decodable JPEG.
    #[error("MJPG frame does not decode: {0}")]
    Decode(String),
    /// The conversion library refused the planes (should not happen after
    /// the checks above; kept as an error, not a panic).
    #[error("colour conversion failed: {0}")]
    Yuv(String),
}

/// The pixel formats export understands (the ones pagecam records).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pixels {
    Yuyv,
    Uyvy,
    Grey,
    Nv12,
    Nv21,
    Yu12,
    Yv12,
    Rgb3,
    Bgr3,
    Mjpg,
}

impl Pixels {
    pub fn from_fourcc(code: u32) -> Option<Self> {
        Some(match &code.to_le_bytes() {
            b"YUYV" => Pixels::Yuyv,
            b"UYVY" => Pixels::Uyvy,
            b"GREY" => Pixels::Grey,
            b"NV12" => Pixels::Nv12,
            b"NV21" => Pixels::Nv21,
            b"YU12" => Pixels::Yu12,
            b"YV12" => Pixels::Yv12,
            b"RGB3" => Pixels::Rgb3,
            b"BGR3" => Pixels::Bgr3,
            b"MJPG" => Pixels::Mjpg,
            _ => return None,
        })
    }

    pub fn fourcc(self) -> u32 {
        fourcc(match self {
            Pixels::Yuyv => b"YUYV",
            Pixels::Uyvy => b"UYVY",
            Pixels::Grey => b"GREY",
            Pixels::Nv12 => b"NV12",
            Pixels::Nv21 => b"NV21",
            Pixels::Yu12 => b"YU12",
            Pixels::Yv12 => b"YV12",
            Pixels::Rgb3 => b"RGB3",
            Pixels::Bgr3 => b"BGR3",
            Pixels::Mjpg => b"MJPG",
        })
    }

    /// Y'CbCr with chroma (BT.601 applies).
    pub fn is_yuv(self) -> bool {
        !matches!(
            self,
            Pixels::Grey | Pixels::Rgb3 | Pixels::Bgr3 | Pixels::Mjpg
        )
    }
}

/// Quantization range of Y'CbCr (and GREY) samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Range {
    /// "tv": Y' 16..235, Cb/Cr 16..240.
    Limited,
    /// "pc": 0..255.
    Full,
}

impl Range {
    /// The range assumed when the user did not say: limited for Y'CbCr,
    /// full for GREY (see the module documentation).
    pub fn default_for(pixels: Pixels) -> Range {
        if pixels == Pixels::Grey {
            Range::Full
        } else {
            Range::Limited
        }
    }

    fn yuv(self) -> YuvRange {
        match self {
            Range::Limited => YuvRange::Limited,
            Range::Full => YuvRange::Full,
        }
    }
}

/// One plane: `lines` lines of `line` bytes, `stride` bytes apart, from `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Plane {
    offset: usize,
    stride: usize,
    line: usize,
    lines: usize,
}

/// Where the bytes of one frame are, for one recording's format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub pixels: Pixels,
    pub width: u32,
    pub height: u32,
    /// Memory order, as V4L2 lays the planes out in one buffer.
    planes: Vec<Plane>,
    /// Bytes a frame must hold (the end of its last line).
    need: usize,
}

impl Geometry {
    /// The geometry of `format`'s frames. Refuses unknown formats, odd
    /// sizes where chroma is subsampled, and strides shorter than a line.
    pub fn new(format: &FrameFormat) -> Result<Self, ConvertError> {
        let pixels = Pixels::from_fourcc(format.fourcc)
            .ok_or_else(|| ConvertError::Unsupported(fourcc_str(format.fourcc)))?;
        let (w, h, bpl) = (
            format.width as u64,
            format.height as u64,
            format.bytes_per_line as u64,
        );
        let bad = |why: &str| ConvertError::Geometry {
            format: fourcc_str(format.fourcc),
            width: format.width,
            height: format.height,
            why: why.to_string(),
        };
        if w == 0 || h == 0 {
            return Err(bad("empty frame"));
        }
        let subsampled_x = pixels.is_yuv();
        let subsampled_y = matches!(
            pixels,
            Pixels::Nv12 | Pixels::Nv21 | Pixels::Yu12 | Pixels::Yv12
        );
        if subsampled_x && w % 2 != 0 {
            return Err(bad("width must be even for subsampled chroma"));
        }
        if subsampled_y && h % 2 != 0 {
            return Err(bad("height must be even for 4:2:0 chroma"));
        }
        let first_line = match pixels {
            Pixels::Yuyv | Pixels::Uyvy => w * 2,
            Pixels::Rgb3 | Pixels::Bgr3 => w * 3,
            _ => w,
        };
        let plane = |offset: u64, stride: u64, line: u64, lines: u64| -> Result<Plane, _> {
            if stride < line {
                return Err(bad(&format!(
                    "{stride} bytes per line, a line needs {line}"
                )));
            }
            let conv = |v: u64| usize::try_from(v).map_err(|_| bad("frame too large"));
            Ok(Plane {
                offset: conv(offset)?,
                stride: conv(stride)?,
                line: conv(line)?,
                lines: conv(lines)?,
            })
        };
        // w, h and bpl are u32, so products of two of them fit in u64.
        let planes = match pixels {
            Pixels::Mjpg => Vec::new(),
            Pixels::Yuyv | Pixels::Uyvy | Pixels::Grey | Pixels::Rgb3 | Pixels::Bgr3 => {
                vec![plane(0, bpl, first_line, h)?]
            }
            Pixels::Nv12 | Pixels::Nv21 => {
                vec![plane(0, bpl, w, h)?, plane(bpl * h, bpl, w, h / 2)?]
            }
            Pixels::Yu12 | Pixels::Yv12 => {
                if bpl % 2 != 0 {
                    return Err(bad("bytes per line must be even for YU12/YV12"));
                }
                let c = bpl / 2;
                vec![
                    plane(0, bpl, w, h)?,
                    plane(bpl * h, c, w / 2, h / 2)?,
                    plane(bpl * h + c * (h / 2), c, w / 2, h / 2)?,
                ]
            }
        };
        let mut need = 0usize;
        for p in &planes {
            let end = (p.lines - 1)
                .checked_mul(p.stride)
                .and_then(|v| v.checked_add(p.offset))
                .and_then(|v| v.checked_add(p.line))
                .ok_or_else(|| bad("frame too large"))?;
            need = need.max(end);
        }
        if pixels != Pixels::Mjpg && need as u64 > format.frame_size as u64 {
            return Err(bad(&format!(
                "needs {need} bytes per frame, the recording's frames hold {}",
                format.frame_size
            )));
        }
        // RGB output is w × h × 3 bytes: it must fit too.
        usize::try_from(w * h)
            .ok()
            .and_then(|p| p.checked_mul(3))
            .ok_or_else(|| bad("frame too large"))?;
        Ok(Geometry {
            pixels,
            width: format.width,
            height: format.height,
            planes,
            need,
        })
    }

    /// Check that `frame` holds every byte the geometry reads.
    pub fn check(&self, frame: &[u8]) -> Result<(), ConvertError> {
        if frame.len() < self.need || (self.pixels == Pixels::Mjpg && frame.is_empty()) {
            return Err(ConvertError::ShortFrame {
                format: fourcc_str(self.pixels.fourcc()),
                width: self.width,
                height: self.height,
                have: frame.len(),
                need: self.need.max(1),
            });
        }
        Ok(())
    }

    /// Bytes of a frame with tight lines (MJPG: not defined, 0).
    pub fn tight_len(&self) -> usize {
        self.planes.iter().map(|p| p.line * p.lines).sum()
    }

    /// Append `frame`'s planes to `out` with tight lines, in memory order
    /// (for YV12 that is Y, V, U). `frame` was checked.
    pub fn append_tight(&self, frame: &[u8], out: &mut Vec<u8>) -> Result<(), ConvertError> {
        self.check(frame)?;
        for p in &self.planes {
            self.append_plane(frame, p, out);
        }
        Ok(())
    }

    fn append_plane(&self, frame: &[u8], p: &Plane, out: &mut Vec<u8>) {
        for y in 0..p.lines {
            let at = p.offset + y * p.stride;
            out.extend_from_slice(&frame[at..at + p.line]);
        }
    }

    /// Append plane `i` (memory order) with tight lines.
    fn plane_tight(&self, frame: &[u8], i: usize, out: &mut Vec<u8>) {
        out.clear();
        if let Some(p) = self.planes.get(i) {
            self.append_plane(frame, p, out);
        }
    }

    /// Append the frame as planar Y', Cb, Cr (4:2:2 for YUYV/UYVY, 4:2:0
    /// for NV12/NV21/YU12/YV12) or Y' alone (GREY), as Y4M stores it.
    /// `None` for formats without a planar Y'CbCr form (RGB, MJPG).
    pub fn append_planar_yuv(
        &self,
        frame: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<()>, ConvertError> {
        self.check(frame)?;
        let (w, h) = (self.width as usize, self.height as usize);
        match self.pixels {
            Pixels::Grey | Pixels::Yu12 => {
                for p in &self.planes {
                    self.append_plane(frame, p, out);
                }
            }
            Pixels::Yv12 => {
                for i in [0, 2, 1] {
                    self.append_plane(frame, &self.planes[i], out);
                }
            }
            Pixels::Yuyv | Pixels::Uyvy => {
                // Offsets of Y0, Cb, Cr inside each 4-byte group.
                let (y0, cb, cr) = if self.pixels == Pixels::Yuyv {
                    (0, 1, 3)
                } else {
                    (1, 0, 2)
                };
                let p = &self.planes[0];
                let base = out.len();
                out.resize(base + w * h * 2, 0);
                let (luma, chroma) = out[base..].split_at_mut(w * h);
                let (u, v) = chroma.split_at_mut(w * h / 2);
                for y in 0..h {
                    let line = &frame[p.offset + y * p.stride..][..p.line];
                    for (i, g) in line.chunks_exact(4).enumerate() {
                        luma[y * w + 2 * i] = g[y0];
                        luma[y * w + 2 * i + 1] = g[y0 + 2];
                        u[y * (w / 2) + i] = g[cb];
                        v[y * (w / 2) + i] = g[cr];
                    }
                }
            }
            Pixels::Nv12 | Pixels::Nv21 => {
                self.append_plane(frame, &self.planes[0], out);
                let p = &self.planes[1];
                let (first, second) = if self.pixels == Pixels::Nv12 {
                    (0, 1)
                } else {
                    (1, 0)
                };
                let c = (w / 2) * (h / 2);
                let base = out.len();
                out.resize(base + 2 * c, 0);
                let (u, v) = out[base..].split_at_mut(c);
                for y in 0..h / 2 {
                    let line = &frame[p.offset + y * p.stride..][..p.line];
                    for (i, pair) in line.chunks_exact(2).enumerate() {
                        u[y * (w / 2) + i] = pair[first];
                        v[y * (w / 2) + i] = pair[second];
                    }
                }
            }
            Pixels::Rgb3 | Pixels::Bgr3 | Pixels::Mjpg => return Ok(None),
        }
        Ok(Some(()))
    }

    /// Convert `frame` to tightly packed 8-bit RGB in `rgb` (resized);
    /// returns the picture's size (for MJPG, the size the JPEG says).
    /// `scratch` is reused between calls for the tight planes.
    pub fn to_rgb(
        &self,
        frame: &[u8],
        range: Range,
        rgb: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> Result<(u32, u32), ConvertError> {
        self.check(frame)?;
        let (w, h) = (self.width, self.height);
        let (wu, hu) = (w as usize, h as usize);
        if self.pixels == Pixels::Mjpg {
            return decode_jpeg(frame, rgb);
        }
        rgb.clear();
        rgb.resize(wu * hu * 3, 0);
        let m = YuvStandardMatrix::Bt601;
        let r = range.yuv();
        let yuv_err = |e: yuvutils_rs::YuvError| ConvertError::Yuv(e.to_string());
        let Scratch { a, b, c } = scratch;
        self.plane_tight(frame, 0, a);
        match self.pixels {
            Pixels::Yuyv | Pixels::Uyvy => {
                let img = YuvPackedImage {
                    yuy: a.as_slice(),
                    yuy_stride: w * 2,
                    width: w,
                    height: h,
                };
                if self.pixels == Pixels::Yuyv {
                    yuvutils_rs::yuyv422_to_rgb(&img, rgb, w * 3, r, m)
                } else {
                    yuvutils_rs::uyvy422_to_rgb(&img, rgb, w * 3, r, m)
                }
                .map_err(yuv_err)?;
            }
            Pixels::Nv12 | Pixels::Nv21 => {
                self.plane_tight(frame, 1, b);
                let img = YuvBiPlanarImage {
                    y_plane: a.as_slice(),
                    y_stride: w,
                    uv_plane: b.as_slice(),
                    uv_stride: w,
                    width: w,
                    height: h,
                };
                let mode = YuvConversionMode::Balanced;
                if self.pixels == Pixels::Nv12 {
                    yuvutils_rs::yuv_nv12_to_rgb(&img, rgb, w * 3, r, m, mode)
                } else {
                    yuvutils_rs::yuv_nv21_to_rgb(&img, rgb, w * 3, r, m, mode)
                }
                .map_err(yuv_err)?;
            }
            Pixels::Yu12 | Pixels::Yv12 => {
                self.plane_tight(frame, 1, b);
                self.plane_tight(frame, 2, c);
                let (u, v) = if self.pixels == Pixels::Yu12 {
                    (&*b, &*c)
                } else {
                    (&*c, &*b)
                };
                let img = YuvPlanarImage {
                    y_plane: a.as_slice(),
                    y_stride: w,
                    u_plane: u.as_slice(),
                    u_stride: w / 2,
                    v_plane: v.as_slice(),
                    v_stride: w / 2,
                    width: w,
                    height: h,
                };
                yuvutils_rs::yuv420_to_rgb(&img, rgb, w * 3, r, m).map_err(yuv_err)?;
            }
            Pixels::Grey => match range {
                Range::Full => {
                    for (px, &y) in rgb.chunks_exact_mut(3).zip(a.iter()) {
                        px.fill(y);
                    }
                }
                Range::Limited => {
                    let img = YuvGrayImage {
                        y_plane: a.as_slice(),
                        y_stride: w,
                        width: w,
                        height: h,
                    };
                    yuvutils_rs::yuv400_to_rgb(&img, rgb, w * 3, r, m).map_err(yuv_err)?;
                }
            },
            Pixels::Rgb3 => rgb.copy_from_slice(a),
            Pixels::Bgr3 => {
                for (px, bgr) in rgb.chunks_exact_mut(3).zip(a.chunks_exact(3)) {
                    px.copy_from_slice(&[bgr[2], bgr[1], bgr[0]]);
                }
            }
            Pixels::Mjpg => unreachable!("decoded above"),
        }
        Ok((w, h))
    }
}

/// Buffers reused between conversions (tight planes).
#[derive(Default)]
pub struct Scratch {
    a: Vec<u8>,
    b: Vec<u8>,
    c: Vec<u8>,
}

/// Decode a JPEG (an MJPG frame) to RGB.
fn decode_jpeg(jpeg: &[u8], rgb: &mut Vec<u8>) -> Result<(u32, u32), ConvertError> {
    let img = image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)
        .map_err(|e| ConvertError::Decode(e.to_string()))?
        .into_rgb8();
    let size = img.dimensions();
    *rgb = img.into_raw();
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(code: &[u8; 4], w: u32, h: u32, bpl: u32, size: u32) -> FrameFormat {
        FrameFormat {
            fourcc: fourcc(code),
            width: w,
            height: h,
            bytes_per_line: bpl,
            frame_size: size,
        }
    }

    #[test]
    fn hostile_geometry_is_an_error_not_a_panic() {
        // Stride shorter than a line.
        assert!(Geometry::new(&fmt(b"YUYV", 64, 4, 100, 1000)).is_err());
        // Odd sizes with subsampled chroma.
        assert!(Geometry::new(&fmt(b"NV12", 63, 4, 64, 1000)).is_err());
        assert!(Geometry::new(&fmt(b"YU12", 64, 5, 64, 1000)).is_err());
        // Frame size smaller than the planes.
        assert!(Geometry::new(&fmt(b"NV12", 64, 4, 64, 300)).is_err());
        // Huge numbers do not overflow.
        assert!(Geometry::new(&fmt(b"RGB3", u32::MAX, u32::MAX, u32::MAX, u32::MAX)).is_err());
        assert!(matches!(
            Geometry::new(&fmt(b"Y10B", 64, 4, 64, 1000)),
            Err(ConvertError::Unsupported(_))
        ));
        // A short frame is refused before it is read.
        let g = Geometry::new(&fmt(b"GREY", 8, 2, 8, 16)).unwrap();
        let mut rgb = Vec::new();
        assert!(matches!(
            g.to_rgb(&[0u8; 15], Range::Full, &mut rgb, &mut Scratch::default()),
            Err(ConvertError::ShortFrame { need: 16, .. })
        ));
    }

    #[test]
    fn padded_lines_come_out_tight() {
        // RGB3 2x2 with 2 bytes of padding per line.
        let g = Geometry::new(&fmt(b"RGB3", 2, 2, 8, 16)).unwrap();
        let frame = [1, 2, 3, 4, 5, 6, 99, 99, 7, 8, 9, 10, 11, 12, 99, 99];
        let mut out = Vec::new();
        g.append_tight(&frame, &mut out).unwrap();
        assert_eq!(out, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let mut rgb = Vec::new();
        g.to_rgb(&frame, Range::Full, &mut rgb, &mut Scratch::default())
            .unwrap();
        assert_eq!(rgb, out);
        let g = Geometry::new(&fmt(b"BGR3", 2, 2, 8, 16)).unwrap();
        g.to_rgb(&frame, Range::Full, &mut rgb, &mut Scratch::default())
            .unwrap();
        assert_eq!(rgb, [3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10]);
    }

    #[test]
    fn planar_forms_of_every_yuv_layout_agree() {
        // The same 4x2 picture in every layout, as Y4M's planes.
        let y = [10u8, 11, 12, 13, 20, 21, 22, 23];
        let (u, v) = ([100u8, 101], [200u8, 201]); // 4:2:0 (one chroma row)
        let want420 = [&y[..], &u[..], &v[..]].concat();
        let mut nv12 = y.to_vec();
        nv12.extend_from_slice(&[100, 200, 101, 201]);
        let mut nv21 = y.to_vec();
        nv21.extend_from_slice(&[200, 100, 201, 100 + 1]);
        let mut yv12 = y.to_vec();
        yv12.extend_from_slice(&[200, 201, 100, 101]);
        for (code, frame) in [
            (b"NV12", nv12),
            (b"NV21", nv21),
            (b"YU12", want420.clone()),
            (b"YV12", yv12),
        ] {
            let g = Geometry::new(&fmt(code, 4, 2, 4, 12)).unwrap();
            let mut out = Vec::new();
            g.append_planar_yuv(&frame, &mut out).unwrap().unwrap();
            assert_eq!(out, want420, "{}", String::from_utf8_lossy(code));
        }
        // 4:2:2 packed: both rows carry chroma.
        let yuyv = [
            10, 100, 11, 200, 12, 101, 13, 201, 20, 102, 21, 202, 22, 103, 23, 203,
        ];
        let uyvy = [
            100, 10, 200, 11, 101, 12, 201, 13, 102, 20, 202, 21, 103, 22, 203, 23,
        ];
        let want422 = [&y[..], &[100, 101, 102, 103], &[200, 201, 202, 203]].concat();
        for (code, frame) in [(b"YUYV", yuyv), (b"UYVY", uyvy)] {
            let g = Geometry::new(&fmt(code, 4, 2, 8, 16)).unwrap();
            let mut out = Vec::new();
            g.append_planar_yuv(&frame, &mut out).unwrap().unwrap();
            assert_eq!(out, want422);
        }
    }

    #[test]
    fn bt601_limited_corners() {
        // Black, white and 75% red in YUYV (limited range).
        let g = Geometry::new(&fmt(b"YUYV", 6, 1, 12, 12)).unwrap();
        let frame = [16, 128, 16, 128, 235, 128, 235, 128, 65, 100, 65, 212];
        let mut rgb = Vec::new();
        g.to_rgb(&frame, Range::Limited, &mut rgb, &mut Scratch::default())
            .unwrap();
        let near = |got: &[u8], want: [u8; 3]| {
            got.iter()
                .zip(want)
                .all(|(&g, w)| (g as i32 - w as i32).abs() <= 2)
        };
        assert!(near(&rgb[0..3], [0, 0, 0]), "{rgb:?}");
        assert!(near(&rgb[6..9], [255, 255, 255]), "{rgb:?}");
        assert!(near(&rgb[12..15], [191, 0, 0]), "{rgb:?}");
    }

    #[test]
    fn mjpg_frames_decode_with_the_image_crate() {
        let (w, h) = (32u32, 16u32);
        let mut src = image::RgbImage::new(w, h);
        for (x, _, p) in src.enumerate_pixels_mut() {
            *p = if x < 16 {
                image::Rgb([200, 40, 40])
            } else {
                image::Rgb([40, 40, 200])
            };
        }
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
            .encode_image(&src)
            .unwrap();
        let g = Geometry::new(&fmt(b"MJPG", w, h, 0, 65536)).unwrap();
        let mut rgb = Vec::new();
        let size = g
            .to_rgb(&jpeg, Range::Limited, &mut rgb, &mut Scratch::default())
            .unwrap();
        assert_eq!(size, (w, h));
        let px = |x: usize, y: usize| &rgb[(y * w as usize + x) * 3..][..3];
        for (got, want) in [(px(4, 8), [200, 40, 40]), (px(28, 8), [40, 40, 200])] {
            for c in 0..3 {
                assert!((got[c] as i32 - want[c]).abs() <= 8, "{got:?} vs {want:?}");
            }
        }
        assert!(matches!(
            g.to_rgb(
                b"not a jpeg",
                Range::Limited,
                &mut rgb,
                &mut Scratch::default()
            ),
            Err(ConvertError::Decode(_))
        ));
    }
}

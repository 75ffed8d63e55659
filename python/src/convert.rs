//! Pixel conversions for OpenCV users, on a checked copy of a frame (memory
//! of our own, tightly packed: lines of `width * channels` bytes).
//!
//! YUV is taken as BT.601 limited range (Y 16–235, Cb/Cr 16–240), what
//! V4L2 cameras deliver as `V4L2_COLORSPACE_SMPTE170M`/`_470_SYSTEM_BG`, with
//! OpenCV's fixed-point coefficients (`cvtColor(..., COLOR_YUV2BGR_YUYV)`
//! gives the same values). Gray of a YUV frame is its luma plane as stored
//! (as OpenCV's `COLOR_YUV2GRAY_*`); gray of RGB is BT.601 luma
//! `0.299 R + 0.587 G + 0.114 B` (OpenCV's `COLOR_RGB2GRAY`).

use pagecam::format::{fourcc, GREY, NV12, YUYV};

use crate::view::{BGR24, NV21, RGB24};

/// Byte offsets of (Y0, U, Y1, V) in a 4-byte pixel pair.
fn yuv422_order(code: u32) -> Option<[usize; 4]> {
    match code {
        YUYV => Some([0, 1, 2, 3]),
        c if c == fourcc(b"UYVY") => Some([1, 0, 3, 2]),
        c if c == fourcc(b"YVYU") => Some([0, 3, 2, 1]),
        c if c == fourcc(b"VYUY") => Some([1, 2, 3, 0]),
        _ => None,
    }
}

/// BT.601 limited range, OpenCV's `ITUR_BT_601_*` constants (2^20 scale).
const SHIFT: u32 = 20;
const CY: i32 = 1_220_542;
const CUB: i32 = 2_116_026;
const CUG: i32 = -409_993;
const CVG: i32 = -852_492;
const CVR: i32 = 1_673_527;

fn clamp(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// One pixel, Y, U (Cb), V (Cr) to B, G, R.
#[inline]
fn yuv_to_bgr(y: u8, u: u8, v: u8) -> [u8; 3] {
    let y = (y as i32 - 16).max(0) * CY;
    let (u, v) = (u as i32 - 128, v as i32 - 128);
    let round = 1 << (SHIFT - 1);
    [
        clamp((y + CUB * u + round) >> SHIFT),
        clamp((y + CUG * u + CVG * v + round) >> SHIFT),
        clamp((y + CVR * v + round) >> SHIFT),
    ]
}

/// BT.601 luma of R, G, B (OpenCV's 14-bit fixed point).
#[inline]
fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 4899 + g as u32 * 9617 + b as u32 * 1868 + (1 << 13)) >> 14) as u8
}

/// Why a conversion is not possible.
pub struct Unsupported;

/// A conversion: (fourcc, width, height, packed frame) to packed pixels.
pub type Conversion = fn(u32, usize, usize, &[u8]) -> Result<Vec<u8>, Unsupported>;

/// `(h, w)` luma of a packed frame of `code`.
pub fn gray(code: u32, w: usize, h: usize, src: &[u8]) -> Result<Vec<u8>, Unsupported> {
    let n = w * h;
    let need = |bpp: usize| {
        if src.len() < n * bpp {
            Err(Unsupported)
        } else {
            Ok(())
        }
    };
    if let Some([y0, ..]) = yuv422_order(code) {
        need(2)?;
        // Y0 and Y1 alternate with chroma: every second byte from Y0's place.
        return Ok(src[..n * 2].iter().skip(y0).step_by(2).copied().collect());
    }
    match code {
        GREY => {
            need(1)?;
            Ok(src[..n].to_vec())
        }
        c if c == NV12 || c == NV21 => {
            need(1)?;
            Ok(src[..n].to_vec())
        }
        c if c == RGB24 || c == BGR24 => {
            need(3)?;
            let rgb = c == RGB24;
            Ok(src[..n * 3]
                .chunks_exact(3)
                .map(|p| {
                    if rgb {
                        luma(p[0], p[1], p[2])
                    } else {
                        luma(p[2], p[1], p[0])
                    }
                })
                .collect())
        }
        _ => Err(Unsupported),
    }
}

/// `(h, w, 3)` BGR of a packed frame of `code`.
pub fn bgr(code: u32, w: usize, h: usize, src: &[u8]) -> Result<Vec<u8>, Unsupported> {
    let n = w * h;
    let mut out = vec![0u8; n * 3];
    if let Some([y0, u, y1, v]) = yuv422_order(code) {
        if src.len() < n * 2 || w < 2 {
            return Err(Unsupported);
        }
        for (line, dst) in src[..n * 2]
            .chunks_exact(w * 2)
            .zip(out.chunks_exact_mut(w * 3))
        {
            for (x, px) in dst.chunks_exact_mut(3).enumerate() {
                // The pair holding pixel x (an odd last pixel: the last pair).
                let p = (x / 2 * 4).min(line.len().saturating_sub(4));
                let pair = &line[p..p + 4];
                let y = if x % 2 == 0 { pair[y0] } else { pair[y1] };
                px.copy_from_slice(&yuv_to_bgr(y, pair[u], pair[v]));
            }
        }
        return Ok(out);
    }
    match code {
        GREY => {
            if src.len() < n {
                return Err(Unsupported);
            }
            for (px, &y) in out.chunks_exact_mut(3).zip(&src[..n]) {
                px.copy_from_slice(&[y, y, y]);
            }
        }
        c if c == NV12 || c == NV21 => {
            let chroma_rows = h.div_ceil(2);
            if src.len() < n + chroma_rows * w || w < 2 {
                return Err(Unsupported);
            }
            let (uo, vo) = if c == NV12 { (0, 1) } else { (1, 0) };
            let (luma, chroma) = src.split_at(n);
            for (y, dst) in out.chunks_exact_mut(w * 3).enumerate() {
                let crow = &chroma[(y / 2) * w..(y / 2 + 1) * w];
                for (x, px) in dst.chunks_exact_mut(3).enumerate() {
                    let p = (x / 2 * 2).min(w.saturating_sub(2));
                    let (u, v) = (crow[p + uo], crow[p + vo]);
                    px.copy_from_slice(&yuv_to_bgr(luma[y * w + x], u, v));
                }
            }
        }
        c if c == RGB24 || c == BGR24 => {
            if src.len() < n * 3 {
                return Err(Unsupported);
            }
            out.copy_from_slice(&src[..n * 3]);
            if c == RGB24 {
                out.chunks_exact_mut(3).for_each(|p| p.swap(0, 2));
            }
        }
        _ => return Err(Unsupported),
    }
    Ok(out)
}

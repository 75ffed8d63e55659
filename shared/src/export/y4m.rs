//! YUV4MPEG2 (`.y4m`): a clip that mpv, ffplay and ffmpeg open with no
//! flags, because the header says what the frames are.
//!
//! Y4M carries planar Y'CbCr only, so the samples are re-arranged, never
//! changed (lossless): YUYV and UYVY become planar 4:2:2 (`C422`); NV12,
//! NV21, YU12 and YV12 planar 4:2:0; GREY `Cmono`. For 4:2:0 the tag is
//! `C420jpeg`: V4L2 sites 4:2:0 chroma between the luma samples both
//! horizontally and vertically (the "Color Sample Location" figures of
//! the V4L2 YUV formats), which is JPEG/MPEG-1 siting; `C420mpeg2` would
//! claim chroma co-sited with the left luma column. The range is written as
//! `XCOLORRANGE` (ffmpeg reads it), since the recording has no range field.
//!
//! RGB and MJPG are refused: converting them to Y'CbCr would lose
//! precision and invent a range; raw (lossless, ffmpeg flags printed) and
//! PNG keep them exact.

use std::io::Write;

use super::convert::{Geometry, Pixels, Range};
use super::Rate;

/// The `C` tag for `pixels`, or `None` when Y4M cannot carry them.
pub fn colorspace(pixels: Pixels) -> Option<&'static str> {
    match pixels {
        Pixels::Yuyv | Pixels::Uyvy => Some("422"),
        Pixels::Nv12 | Pixels::Nv21 | Pixels::Yu12 | Pixels::Yv12 => Some("420jpeg"),
        Pixels::Grey => Some("mono"),
        Pixels::Rgb3 | Pixels::Bgr3 | Pixels::Mjpg => None,
    }
}

/// ffmpeg's name for what the Y4M holds (what ffprobe will report).
pub fn ffmpeg_pix_fmt(pixels: Pixels) -> Option<&'static str> {
    Some(match colorspace(pixels)? {
        "422" => "yuv422p",
        "420jpeg" => "yuv420p",
        _ => "gray",
    })
}

/// The stream header line.
pub fn header(g: &Geometry, rate: Rate, range: Range) -> Option<String> {
    Some(format!(
        "YUV4MPEG2 W{} H{} F{}:{} Ip A1:1 C{} XCOLORRANGE={}\n",
        g.width,
        g.height,
        rate.num,
        rate.den,
        colorspace(g.pixels)?,
        match range {
            Range::Limited => "LIMITED",
            Range::Full => "FULL",
        }
    ))
}

/// Writes a Y4M clip (the header first, then one `FRAME` per frame).
pub struct Y4mWriter<W: Write> {
    out: W,
    geometry: Geometry,
    header: Option<String>,
    /// The last frame's planes (repeated by `--fill`).
    last: Vec<u8>,
}

impl<W: Write> Y4mWriter<W> {
    /// `None` when Y4M cannot carry the format (see `colorspace`).
    pub fn new(out: W, geometry: Geometry, rate: Rate, range: Range) -> Option<Self> {
        let header = header(&geometry, rate, range)?;
        Some(Y4mWriter {
            out,
            geometry,
            header: Some(header),
            last: Vec::new(),
        })
    }

    fn write_header(&mut self) -> std::io::Result<()> {
        if let Some(h) = self.header.take() {
            self.out.write_all(h.as_bytes())?;
        }
        Ok(())
    }
}

impl<W: Write> super::Sink for Y4mWriter<W> {
    fn frame(
        &mut self,
        _meta: &crate::format::FrameMeta,
        frame: &[u8],
    ) -> Result<(), super::SinkError> {
        self.last.clear();
        self.geometry.append_planar_yuv(frame, &mut self.last)?;
        self.write_header()?;
        self.out.write_all(b"FRAME\n")?;
        self.out.write_all(&self.last)?;
        Ok(())
    }

    fn repeat(&mut self, n: u64) -> Result<(), super::SinkError> {
        for _ in 0..n {
            self.out.write_all(b"FRAME\n")?;
            self.out.write_all(&self.last)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), super::SinkError> {
        // A clip with no frame is still a valid (empty) stream.
        self.write_header()?;
        self.out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::Sink;
    use crate::format::{fourcc, FrameFormat};

    #[test]
    fn header_and_frames() {
        let g = Geometry::new(&FrameFormat {
            fourcc: fourcc(b"YUYV"),
            width: 4,
            height: 1,
            bytes_per_line: 8,
            frame_size: 8,
        })
        .unwrap();
        let mut out = Vec::new();
        let mut w =
            Y4mWriter::new(&mut out, g, Rate::new(30000, 1001).unwrap(), Range::Limited).unwrap();
        w.frame(&Default::default(), &[1, 2, 3, 4, 5, 6, 7, 8])
            .unwrap();
        w.repeat(1).unwrap();
        w.finish().unwrap();
        let head = b"YUV4MPEG2 W4 H1 F30000:1001 Ip A1:1 C422 XCOLORRANGE=LIMITED\n";
        let frame = b"FRAME\n\x01\x03\x05\x07\x02\x06\x04\x08";
        assert_eq!(out, [&head[..], frame, frame].concat());
        assert_eq!(colorspace(Pixels::Rgb3), None);
    }
}

//! Raw video: the frames' pixels back to back, in sequence order, with
//! tight lines, and the ffmpeg command line that reads them.
//!
//! The bytes are the recorded samples unchanged (driver padding at the end
//! of lines dropped), so a raw clip is lossless and ffmpeg needs only the
//! flags printed with it. Each V4L2 format maps to the ffmpeg pixel format
//! with the same memory layout; YV12 has none (ffmpeg's yuv420p has Cb
//! before Cr), so its chroma planes are swapped into yuv420p. MJPG frames
//! are written as they are: an MJPEG stream (`-f mjpeg`).

use std::io::Write;

use super::convert::{Geometry, Pixels};
use super::Rate;

/// ffmpeg's name for the raw layout export writes for `pixels`.
pub fn ffmpeg_pix_fmt(pixels: Pixels) -> &'static str {
    match pixels {
        Pixels::Yuyv => "yuyv422",
        Pixels::Uyvy => "uyvy422",
        Pixels::Grey => "gray",
        Pixels::Nv12 => "nv12",
        Pixels::Nv21 => "nv21",
        Pixels::Yu12 | Pixels::Yv12 => "yuv420p",
        Pixels::Rgb3 => "rgb24",
        Pixels::Bgr3 => "bgr24",
        Pixels::Mjpg => "mjpeg",
    }
}

/// Quote a path for a POSIX shell when it needs it.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_./,:+=@%".contains(&c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The ffmpeg input options that read a raw clip of `g`'s frames from
/// `file` (`-` for a pipe), e.g. `ffmpeg -f rawvideo -pixel_format yuyv422
/// -video_size 640x480 -framerate 30 -i clip.raw`.
pub fn ffmpeg_command(g: &Geometry, rate: Rate, file: &str) -> String {
    let input = if g.pixels == Pixels::Mjpg {
        "-f mjpeg".to_string()
    } else {
        format!(
            "-f rawvideo -pixel_format {} -video_size {}x{}",
            ffmpeg_pix_fmt(g.pixels),
            g.width,
            g.height
        )
    };
    format!(
        "ffmpeg {input} -framerate {} -i {}",
        rate.ffmpeg(),
        shell_word(file)
    )
}

/// Writes a raw clip.
pub struct RawWriter<W: Write> {
    out: W,
    geometry: Geometry,
    /// The last frame as written (repeated by `--fill`).
    last: Vec<u8>,
}

impl<W: Write> RawWriter<W> {
    pub fn new(out: W, geometry: Geometry) -> Self {
        RawWriter {
            out,
            geometry,
            last: Vec::new(),
        }
    }

    /// The frame's bytes in the clip's layout (checked against the geometry).
    fn layout(&mut self, frame: &[u8]) -> Result<(), super::convert::ConvertError> {
        self.last.clear();
        match self.geometry.pixels {
            Pixels::Mjpg => {
                self.geometry.check(frame)?;
                self.last.extend_from_slice(frame);
            }
            // Y, then Cb before Cr: yuv420p.
            Pixels::Yv12 => {
                self.geometry.append_planar_yuv(frame, &mut self.last)?;
            }
            _ => self.geometry.append_tight(frame, &mut self.last)?,
        }
        Ok(())
    }
}

impl<W: Write> super::Sink for RawWriter<W> {
    fn frame(
        &mut self,
        _meta: &crate::format::FrameMeta,
        frame: &[u8],
    ) -> Result<(), super::SinkError> {
        self.layout(frame)?;
        self.out.write_all(&self.last)?;
        Ok(())
    }

    fn repeat(&mut self, n: u64) -> Result<(), super::SinkError> {
        for _ in 0..n {
            self.out.write_all(&self.last)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), super::SinkError> {
        self.out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{fourcc, FrameFormat};

    #[test]
    fn the_printed_command_names_the_layout() {
        let g = Geometry::new(&FrameFormat {
            fourcc: fourcc(b"YV12"),
            width: 64,
            height: 48,
            bytes_per_line: 64,
            frame_size: 64 * 48 * 3 / 2,
        })
        .unwrap();
        assert_eq!(
            ffmpeg_command(&g, Rate::new(30000, 1001).unwrap(), "my clip.raw"),
            "ffmpeg -f rawvideo -pixel_format yuv420p -video_size 64x48 \
             -framerate 30000/1001 -i 'my clip.raw'"
        );
        assert_eq!(shell_word("-"), "-");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}

//! Still images: one frame, or every selected frame, as PNG or JPEG
//! (through the `image` crate), named ffmpeg-style.
//!
//! A name with a `%d` (`%05d`, …) pattern gets the frame's recording
//! sequence number, not a counter: `frame_00150.png` *is* frame 150, which
//! is what someone looking for an event needs. A name without one takes
//! exactly one frame. Frames are converted to RGB first (`convert`), so a
//! PNG is exact for RGB formats and BT.601 for Y'CbCr.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};

use super::convert::{Geometry, Range, Scratch};
use super::{ExportError, SinkError};

/// Which still-image format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageKind {
    Png,
    /// Quality 1..=100.
    Jpeg {
        quality: u8,
    },
}

/// A file name with an optional ffmpeg-style number pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamePattern {
    before: String,
    after: String,
    /// `Some(width)` when the name has a `%d` / `%0Nd`.
    width: Option<usize>,
}

impl NamePattern {
    /// Parse `frame_%05d.png`; `%%` is a literal `%`. At most one number.
    pub fn parse(name: &str) -> Result<NamePattern, String> {
        let mut before = String::new();
        let mut after = String::new();
        let mut width = None;
        let mut chars = name.chars().peekable();
        while let Some(c) = chars.next() {
            let out = if width.is_some() {
                &mut after
            } else {
                &mut before
            };
            if c != '%' {
                out.push(c);
                continue;
            }
            if chars.peek() == Some(&'%') {
                chars.next();
                out.push('%');
                continue;
            }
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            if chars.next() != Some('d') || width.is_some() {
                return Err(format!(
                    "'{name}': use one %d or %05d for the frame number (and %% for a %)"
                ));
            }
            width = Some(digits.parse::<usize>().unwrap_or(0).min(20));
        }
        Ok(NamePattern {
            before,
            after,
            width,
        })
    }

    pub fn has_number(&self) -> bool {
        self.width.is_some()
    }

    /// The name for frame `seq`.
    pub fn name(&self, seq: u64) -> PathBuf {
        let n = match self.width {
            Some(w) => format!("{seq:0w$}"),
            None => String::new(),
        };
        PathBuf::from(format!("{}{n}{}", self.before, self.after))
    }
}

/// Encode RGB pixels into `out`.
pub fn encode(
    kind: ImageKind,
    rgb: &[u8],
    width: u32,
    height: u32,
    out: impl Write,
) -> image::ImageResult<()> {
    match kind {
        ImageKind::Png => {
            PngEncoder::new(out).write_image(rgb, width, height, ExtendedColorType::Rgb8)
        }
        ImageKind::Jpeg { quality } => JpegEncoder::new_with_quality(out, quality.clamp(1, 100))
            .write_image(rgb, width, height, ExtendedColorType::Rgb8),
    }
}

/// A JPEG of RGB pixels (what an MJPG camera delivers; tests make MJPG
/// recordings with it).
pub fn encode_jpeg(
    rgb: &[u8],
    width: u32,
    height: u32,
    quality: u8,
) -> image::ImageResult<Vec<u8>> {
    let mut v = Vec::new();
    encode(ImageKind::Jpeg { quality }, rgb, width, height, &mut v)?;
    Ok(v)
}

/// Write an image file (created or replaced).
pub fn write_file(
    path: &Path,
    kind: ImageKind,
    rgb: &[u8],
    width: u32,
    height: u32,
) -> Result<(), ExportError> {
    let out_err = |source| ExportError::Output {
        path: path.display().to_string(),
        source,
    };
    let mut w = BufWriter::new(File::create(path).map_err(out_err)?);
    encode(kind, rgb, width, height, &mut w).map_err(|e| match e {
        image::ImageError::IoError(source) => out_err(source),
        e => ExportError::Encode {
            path: path.display().to_string(),
            source: e,
        },
    })?;
    w.flush().map_err(out_err)
}

/// Writes each frame it is given as an image file.
pub struct ImageWriter {
    pattern: NamePattern,
    kind: ImageKind,
    geometry: Geometry,
    range: Range,
    rgb: Vec<u8>,
    scratch: Scratch,
}

impl ImageWriter {
    pub fn new(pattern: NamePattern, kind: ImageKind, geometry: Geometry, range: Range) -> Self {
        ImageWriter {
            pattern,
            kind,
            geometry,
            range,
            rgb: Vec::new(),
            scratch: Scratch::default(),
        }
    }
}

impl super::Sink for ImageWriter {
    fn frame(&mut self, meta: &crate::format::FrameMeta, frame: &[u8]) -> Result<(), SinkError> {
        let (w, h) = self
            .geometry
            .to_rgb(frame, self.range, &mut self.rgb, &mut self.scratch)?;
        write_file(
            &self.pattern.name(meta.sequence),
            self.kind,
            &self.rgb,
            w,
            h,
        )
        .map_err(SinkError::Fatal)?;
        Ok(())
    }

    fn repeat(&mut self, _n: u64) -> Result<(), SinkError> {
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_ffmpeg_writes_them() {
        let p = NamePattern::parse("out/frame_%05d.png").unwrap();
        assert!(p.has_number());
        assert_eq!(p.name(150), PathBuf::from("out/frame_00150.png"));
        let p = NamePattern::parse("f%d-100%%.jpg").unwrap();
        assert_eq!(p.name(7), PathBuf::from("f7-100%.jpg"));
        let p = NamePattern::parse("still.png").unwrap();
        assert!(!p.has_number());
        assert_eq!(p.name(7), PathBuf::from("still.png"));
        assert!(NamePattern::parse("a%d%d.png").is_err());
        assert!(NamePattern::parse("a%s.png").is_err());
        assert!(NamePattern::parse("a%5").is_err());
    }
}

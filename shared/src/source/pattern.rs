//! The built-in test source: a moving pattern in a real pixel format, with
//! each frame's number stamped into its pixels so any reader can check that
//! the bytes it holds are the frame it was told about.
//!
//! Pattern (docs/FORMAT.md, "Test pattern"): rows `0..16` carry the frame's
//! source sequence number as 64 cells (bit 0 leftmost), luma 235 for 1 and
//! 16 for 0, chroma neutral. Every other row is a horizontal luma ramp with
//! eight chroma bars, shifted left by `2 * ((y + 4 * (seq % (width / 2))) % (width / 2))`
//! pixels: diagonal stripes that move every frame. Rendering is one memcpy
//! per row from a precomputed double-width row, so it costs about what a
//! driver's DMA would cost the CPU: nothing but memory bandwidth.

use std::collections::VecDeque;
use std::time::Duration;

use crate::format::{FrameFormat, Interval, GREY, NV12, YUYV};
use crate::mapping::ClaimedSlot;
use crate::recording::monotonic_ns;

use super::{Delivery, Frame, FrameInfo, FrameSource, SourceError};

pub const STAMP_ROWS: u32 = 16;
pub const STAMP_BITS: u32 = 64;
/// Buffers a paced test source holds before it drops frames, like a driver.
pub const QUEUE_DEPTH: u64 = 4;
const LUMA_ONE: u8 = 235;
const LUMA_ZERO: u8 = 16;
/// (U, V) of the eight bars: white, yellow, cyan, green, magenta, red, blue, black.
const BARS_UV: [(u8, u8); 8] = [
    (128, 128),
    (16, 146),
    (166, 16),
    (54, 34),
    (202, 222),
    (90, 240),
    (240, 110),
    (128, 128),
];

/// What a stretch of frames shows (`--pattern`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scene {
    /// The moving diagonal bars (sharp edges, motion every frame).
    Moving,
    /// A uniformly black picture (no sequence stamp either).
    Black,
    /// The first frame of the stretch, repeated exactly (a frozen camera).
    Frozen,
    /// A still, smooth luma ramp with neutral chroma (out of focus), with
    /// the sequence stamp.
    Soft,
}

impl Scene {
    fn name(&self) -> &'static str {
        match self {
            Scene::Moving => "moving",
            Scene::Black => "black",
            Scene::Frozen => "frozen",
            Scene::Soft => "soft",
        }
    }
}

/// A script of scenes, each for a number of frames, repeated: what the
/// test source shows (`moving`, or e.g. `moving:60,black:30,frozen:90`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script(Vec<(Scene, u64)>);

impl Script {
    /// The default: the moving pattern only.
    pub fn moving() -> Script {
        Script(vec![(Scene::Moving, 1)])
    }

    /// Parse `SCENE[:FRAMES][,SCENE:FRAMES]...`.
    pub fn parse(s: &str) -> Result<Script, String> {
        let mut v = Vec::new();
        for part in s.split(',') {
            let (name, frames) = match part.split_once(':') {
                Some((n, f)) => (
                    n.trim(),
                    f.trim()
                        .parse::<u64>()
                        .ok()
                        .filter(|&f| f > 0)
                        .ok_or_else(|| format!("'{part}': frames must be a positive number"))?,
                ),
                None => (part.trim(), 1),
            };
            let scene = match name {
                "moving" => Scene::Moving,
                "black" => Scene::Black,
                "frozen" => Scene::Frozen,
                "soft" => Scene::Soft,
                _ => {
                    return Err(format!(
                        "unknown scene '{name}' (moving, black, frozen, soft)"
                    ))
                }
            };
            v.push((scene, frames));
        }
        if v.is_empty() || v.len() > 1000 {
            return Err("a pattern script has 1 to 1000 scenes".into());
        }
        Ok(Script(v))
    }

    fn total(&self) -> u64 {
        self.0
            .iter()
            .map(|(_, n)| n)
            .fold(0u64, |a, n| a.saturating_add(*n))
    }

    /// The scene of frame `seq`, and the first frame of its stretch.
    pub fn scene(&self, seq: u64) -> (Scene, u64) {
        let total = self.total().max(1);
        let mut at = seq % total;
        let base = seq - at;
        let mut start = base;
        for (scene, n) in &self.0 {
            if at < *n {
                return (*scene, start);
            }
            at -= n;
            start += n;
        }
        (Scene::Moving, seq)
    }
}

impl std::fmt::Display for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(s, n)| format!("{}:{n}", s.name()))
            .collect();
        write!(f, "{}", parts.join(","))
    }
}

/// Precomputed rows for one frame format.
pub struct Pattern {
    format: FrameFormat,
    script: Script,
    /// Two copies of the first-plane row, so any shift is one contiguous copy.
    row2: Vec<u8>,
    /// NV12 only: two copies of the interleaved chroma row.
    chroma_row2: Vec<u8>,
}

impl Pattern {
    pub fn new(format: FrameFormat) -> Result<Self, SourceError> {
        let w = format.width as usize;
        if format.width < STAMP_BITS * 2 || format.height <= STAMP_ROWS {
            return Err(SourceError::Unsupported(format!(
                "test pattern needs at least {}x{} pixels",
                STAMP_BITS * 2,
                STAMP_ROWS + 2
            )));
        }
        let luma = |x: usize| (16 + x * 219 / w) as u8;
        let bar = |x: usize| BARS_UV[x * 8 / w];
        let mut row = Vec::new();
        let mut chroma = Vec::new();
        match format.fourcc {
            YUYV => {
                for x in (0..w).step_by(2) {
                    let (u, v) = bar(x);
                    row.extend_from_slice(&[luma(x), u, luma(x + 1), v]);
                }
            }
            GREY => row.extend((0..w).map(luma)),
            NV12 => {
                row.extend((0..w).map(luma));
                for x in (0..w).step_by(2) {
                    let (u, v) = bar(x);
                    chroma.extend_from_slice(&[u, v]);
                }
            }
            other => {
                return Err(SourceError::Unsupported(format!(
                    "test source cannot produce {}",
                    crate::format::fourcc_str(other)
                )))
            }
        }
        let double = |r: Vec<u8>| [r.as_slice(), r.as_slice()].concat();
        Ok(Pattern {
            format,
            script: Script::moving(),
            row2: double(row),
            chroma_row2: double(chroma),
        })
    }

    /// The pattern following `script` (`Pattern::new` is `moving` only).
    pub fn with_script(format: FrameFormat, script: Script) -> Result<Self, SourceError> {
        Ok(Pattern {
            script,
            ..Pattern::new(format)?
        })
    }

    pub fn script(&self) -> &Script {
        &self.script
    }

    pub fn format(&self) -> &FrameFormat {
        &self.format
    }

    /// Byte offset into a doubled row for line `y` of frame `seq`.
    fn shift(&self, y: u32, seq: u64, bytes_per_pair: usize) -> usize {
        let pairs = (self.format.width / 2) as u64;
        ((y as u64 + 4 * (seq % pairs)) % pairs) as usize * bytes_per_pair
    }

    /// Render frame `seq` into `dst` (at least `frame_size` bytes): a pure
    /// function of the format, the script and `seq`.
    pub fn render(&self, seq: u64, dst: &mut [u8]) {
        match self.script.scene(seq) {
            (Scene::Moving, _) => self.render_moving(seq, dst),
            (Scene::Frozen, first) => self.render_moving(first, dst),
            (Scene::Black, _) => self.render_flat(dst, |_| 16),
            (Scene::Soft, _) => {
                let w = self.format.width as usize;
                self.render_flat(dst, |x| (16 + x * 219 / w.max(1)) as u8);
                self.stamp(seq, dst);
            }
        }
    }

    /// Every line `luma(x)`, chroma neutral.
    fn render_flat(&self, dst: &mut [u8], luma: impl Fn(usize) -> u8) {
        let f = &self.format;
        let bpl = f.bytes_per_line as usize;
        let (h, w) = (f.height as usize, f.width as usize);
        for y in 0..h {
            let line = &mut dst[y * bpl..];
            for x in 0..w {
                match f.fourcc {
                    YUYV => {
                        line[2 * x] = luma(x);
                        line[2 * x + 1] = 128;
                    }
                    _ => line[x] = luma(x),
                }
            }
        }
        if f.fourcc == NV12 {
            let base = bpl * h;
            for y in 0..h / 2 {
                dst[base + y * bpl..base + y * bpl + w].fill(128);
            }
        }
    }

    fn render_moving(&self, seq: u64, dst: &mut [u8]) {
        let f = &self.format;
        let bpl = f.bytes_per_line as usize;
        let (h, w) = (f.height as usize, f.width as usize);
        let pair = if f.fourcc == YUYV { 4 } else { 2 };
        let row_len = if f.fourcc == YUYV { w * 2 } else { w };
        for y in 0..h {
            let off = self.shift(y as u32, seq, pair);
            dst[y * bpl..y * bpl + row_len].copy_from_slice(&self.row2[off..off + row_len]);
        }
        if f.fourcc == NV12 {
            let base = bpl * h;
            for y in 0..h / 2 {
                let off = self.shift(y as u32, seq, 2);
                let at = base + y * bpl;
                dst[at..at + w].copy_from_slice(&self.chroma_row2[off..off + w]);
            }
        }
        self.stamp(seq, dst);
    }

    fn stamp(&self, seq: u64, dst: &mut [u8]) {
        let f = &self.format;
        let cell = (f.width / STAMP_BITS) as usize;
        let bpl = f.bytes_per_line as usize;
        for y in 0..STAMP_ROWS as usize {
            let line = &mut dst[y * bpl..];
            for bit in 0..STAMP_BITS as usize {
                let v = if seq >> bit & 1 == 1 {
                    LUMA_ONE
                } else {
                    LUMA_ZERO
                };
                for x in bit * cell..(bit + 1) * cell {
                    match f.fourcc {
                        YUYV => {
                            line[x * 2] = v;
                            line[x * 2 + 1] = 128;
                        }
                        _ => line[x] = v,
                    }
                }
            }
        }
    }

    /// Read the frame number stamped into a frame, or `None` if the stamp
    /// is not clean (not a test-pattern frame, or damaged).
    pub fn read_stamp(format: &FrameFormat, frame: &[u8]) -> Option<u64> {
        let cell = (format.width / STAMP_BITS) as usize;
        let bpl = format.bytes_per_line as usize;
        let step = if format.fourcc == YUYV { 2 } else { 1 };
        let mut seq = 0u64;
        for bit in 0..STAMP_BITS as usize {
            let mut ones = 0;
            for y in [1usize, STAMP_ROWS as usize / 2, STAMP_ROWS as usize - 2] {
                let v = *frame.get(y * bpl + (bit * cell + cell / 2) * step)?;
                match v {
                    LUMA_ONE => ones += 1,
                    LUMA_ZERO => {}
                    _ => return None,
                }
            }
            match ones {
                3 => seq |= 1 << bit,
                0 => {}
                _ => return None,
            }
        }
        Some(seq)
    }
}

/// The built-in test source.
pub struct TestSource {
    pattern: Pattern,
    interval: Interval,
    delivery: Delivery,
    /// Pace frames in real time at `interval`; false = as fast as possible.
    paced: bool,
    /// Frames produced, and the source sequence of the next one.
    next_seq: u64,
    start_ns: u64,
    own_buffer: Vec<u8>,
    queued: VecDeque<ClaimedSlot>,
}

impl TestSource {
    /// `interval`: the frame interval to pace at; `None` = as fast as possible.
    pub fn new(
        format: FrameFormat,
        interval: Option<Interval>,
        delivery: Delivery,
    ) -> Result<Self, SourceError> {
        Self::with_script(format, interval, delivery, Script::moving())
    }

    /// A test source showing `script` (see `Scene`).
    pub fn with_script(
        format: FrameFormat,
        interval: Option<Interval>,
        delivery: Delivery,
        script: Script,
    ) -> Result<Self, SourceError> {
        let pattern = Pattern::with_script(format, script)?;
        let own_buffer = match delivery {
            Delivery::Copy => vec![0u8; format.frame_size as usize],
            Delivery::Direct => Vec::new(),
        };
        Ok(TestSource {
            pattern,
            interval: interval
                .filter(|i| i.as_nanos() > 0)
                .unwrap_or(Interval::from_fps(30)),
            delivery,
            paced: interval.is_some_and(|i| i.as_nanos() > 0),
            next_seq: 0,
            start_ns: 0,
            own_buffer,
            queued: VecDeque::new(),
        })
    }

    /// Wait for the next frame time, like a sensor does. A camera does not
    /// wait for a late reader either: it has `QUEUE_DEPTH` buffers, and a
    /// frame that finds them all full is lost, which shows up as a gap in
    /// the source sequence.
    fn pace(&mut self) {
        if !self.paced {
            return;
        }
        // Frame k is due at k * numerator / denominator seconds: exact for
        // fractional rates such as 30000/1001, with no drift.
        let (num, den) = (
            self.interval.numerator as u128 * 1_000_000_000,
            self.interval.denominator.max(1) as u128,
        );
        let now = monotonic_ns();
        let due = self.start_ns as u128 + self.next_seq as u128 * num / den;
        if (now as u128) + 1000 < due {
            std::thread::sleep(Duration::from_nanos((due - now as u128) as u64));
        } else {
            let newest = (now.saturating_sub(self.start_ns) as u128 * den / num.max(1)) as u64;
            self.next_seq = self
                .next_seq
                .max(newest.saturating_add(1).saturating_sub(QUEUE_DEPTH));
        }
    }

    fn info(&mut self) -> FrameInfo {
        let info = FrameInfo {
            source_sequence: self.next_seq,
            timestamp_ns: monotonic_ns(),
            bytes_used: self.pattern.format.frame_size,
            flags: 0,
        };
        self.next_seq += 1;
        info
    }
}

impl FrameSource for TestSource {
    fn format(&self) -> FrameFormat {
        self.pattern.format
    }
    fn interval(&self) -> Interval {
        self.interval
    }
    fn describe(&self) -> String {
        let f = &self.pattern.format;
        let script = self.pattern.script();
        format!(
            "pagecam test pattern {} {}x{} @{}fps{}",
            crate::format::fourcc_str(f.fourcc),
            f.width,
            f.height,
            if self.paced {
                format!("{:.3}", self.interval.fps())
                    .trim_end_matches('0')
                    .trim_end_matches('.')
                    .to_string()
            } else {
                "0".to_string()
            },
            if *script == Script::moving() {
                String::new()
            } else {
                format!(" [{script}]")
            }
        )
    }
    fn delivery(&self) -> Delivery {
        self.delivery
    }
    fn slots_wanted(&self) -> usize {
        match self.delivery {
            Delivery::Direct => 2,
            Delivery::Copy => 0,
        }
    }
    fn give_slot(&mut self, slot: ClaimedSlot) -> Result<Option<ClaimedSlot>, SourceError> {
        self.queued.push_back(slot);
        Ok(None)
    }
    fn start(&mut self) -> Result<(), SourceError> {
        self.start_ns = monotonic_ns();
        Ok(())
    }
    fn next_frame(&mut self) -> Result<Frame<'_>, SourceError> {
        self.pace();
        let seq = self.next_seq;
        match self.delivery {
            Delivery::Direct => {
                let mut slot = self
                    .queued
                    .pop_front()
                    .ok_or_else(|| SourceError::Unsupported("no slot queued".into()))?;
                slot.fill_with(|dst| self.pattern.render(seq, dst));
                let info = self.info();
                Ok(Frame::InSlot(slot, info))
            }
            Delivery::Copy => {
                self.pattern.render(seq, &mut self.own_buffer);
                let info = self.info();
                Ok(Frame::InBuffer(&self.own_buffer, info))
            }
        }
    }
    fn stop(&mut self) -> Vec<ClaimedSlot> {
        self.queued.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_in_every_format() {
        for fourcc in [YUYV, GREY, NV12] {
            let f = FrameFormat::uncompressed(fourcc, 320, 240).unwrap();
            let p = Pattern::new(f).unwrap();
            let mut buf = vec![0u8; f.frame_size as usize];
            for seq in [0u64, 1, 2, 77, 1 << 40 | 5, u64::MAX] {
                p.render(seq, &mut buf);
                assert_eq!(Pattern::read_stamp(&f, &buf), Some(seq), "{fourcc:x} {seq}");
            }
        }
    }

    #[test]
    fn frames_differ_and_move() {
        let f = FrameFormat::uncompressed(YUYV, 320, 240).unwrap();
        let p = Pattern::new(f).unwrap();
        let (mut a, mut b) = (
            vec![0u8; f.frame_size as usize],
            vec![0u8; f.frame_size as usize],
        );
        p.render(10, &mut a);
        p.render(11, &mut b);
        let body = (STAMP_ROWS * f.bytes_per_line) as usize..;
        assert_ne!(a[body.clone()], b[body]);
        // Chroma bars exist (not a grey frame).
        assert!(a.iter().skip(1).step_by(2).any(|&c| c != 128));
    }

    #[test]
    fn scripts_show_their_scenes() {
        let f = FrameFormat::uncompressed(YUYV, 320, 240).unwrap();
        let script = Script::parse("moving:3,black:2,frozen:3,soft:1").unwrap();
        assert_eq!(script.to_string(), "moving:3,black:2,frozen:3,soft:1");
        let p = Pattern::with_script(f, script).unwrap();
        let frame = |seq| {
            let mut b = vec![0u8; f.frame_size as usize];
            p.render(seq, &mut b);
            b
        };
        assert_ne!(frame(0), frame(1), "moving");
        assert!(frame(3).iter().step_by(2).all(|&y| y == 16), "black");
        assert_eq!(frame(5), frame(7), "frozen: one picture");
        assert_eq!(
            Pattern::read_stamp(&f, &frame(6)),
            Some(5),
            "frozen on frame 5"
        );
        assert_eq!(
            Pattern::read_stamp(&f, &frame(8)),
            Some(8),
            "soft keeps the stamp"
        );
        assert_eq!(frame(9 + 4), frame(4), "the script repeats");
        assert!(Script::parse("moving:0").is_err());
        assert!(Script::parse("sparkles").is_err());
    }

    #[test]
    fn damaged_stamp_is_not_read() {
        let f = FrameFormat::uncompressed(GREY, 256, 64).unwrap();
        let p = Pattern::new(f).unwrap();
        let mut buf = vec![0u8; f.frame_size as usize];
        p.render(5, &mut buf);
        buf[f.bytes_per_line as usize * 8 + 2] = 99;
        assert_eq!(Pattern::read_stamp(&f, &buf), None);
        assert_eq!(
            Pattern::read_stamp(&f, &vec![0u8; f.frame_size as usize]),
            None
        );
    }
}

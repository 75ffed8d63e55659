//! Events from per-frame statistics: a black picture, a frozen picture and
//! motion, each with a start and an end, the way ffmpeg's blackdetect and
//! freezedetect report them.
//!
//! Each detector is a small state machine over frame timestamps: a
//! condition must hold for its minimum duration before its `*_start` is
//! reported (dated at the first frame where it held). Black and frozen end
//! at the first frame where they stop holding, as ffmpeg's detectors do;
//! motion must stop for its minimum duration too before `motion_end`, so
//! flicker around the threshold yields no storm of events.

use std::time::Duration;

use serde::Serialize;

use crate::stats::FrameStats;

/// Thresholds and minimum durations.
#[derive(Clone, Copy, Debug)]
pub struct EventConfig {
    /// Black: at least this fraction of samples is dark (`stats::DARK_LEVEL`).
    pub black_ratio: f32,
    pub black_min: Duration,
    /// Frozen: the mean change from the previous frame is at most this (0-255).
    pub freeze_noise: f32,
    pub freeze_min: Duration,
    /// Motion: the motion score (mean block change, 0-255) is at least this.
    pub motion_threshold: f32,
    pub motion_min: Duration,
}

impl Default for EventConfig {
    fn default() -> Self {
        EventConfig {
            black_ratio: 0.98,
            black_min: Duration::from_millis(500),
            freeze_noise: 0.5,
            freeze_min: Duration::from_secs(2),
            motion_threshold: 2.0,
            motion_min: Duration::from_millis(200),
        }
    }
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    BlackStart,
    BlackEnd,
    FrozenStart,
    FrozenEnd,
    MotionStart,
    MotionEnd,
}

/// An event, dated by the frame where it began.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    pub event: EventKind,
    /// Recording sequence of the frame where the condition began / ended.
    pub seq: u64,
    /// That frame's capture timestamp (CLOCK_MONOTONIC ns).
    pub ts_ns: u64,
}

/// One condition's state machine.
#[derive(Default)]
struct Detector {
    /// Reported as started (and not yet ended).
    active: bool,
    /// The condition's current state differs from `active` since this
    /// frame (seq, ts_ns).
    pending: Option<(u64, u64)>,
}

impl Detector {
    /// Feed one frame; returns the (seq, ts) the state changed at, if the
    /// change has now lasted `min` (to start) or `min_end` (to end).
    fn step(
        &mut self,
        holds: bool,
        seq: u64,
        ts: u64,
        min: Duration,
        min_end: Duration,
    ) -> Option<(u64, u64)> {
        if holds == self.active {
            self.pending = None;
            return None;
        }
        let (s0, t0) = *self.pending.get_or_insert((seq, ts));
        let need = if holds { min } else { min_end };
        if ts.saturating_sub(t0) >= need.as_nanos() as u64 {
            self.active = holds;
            self.pending = None;
            return Some((s0, t0));
        }
        None
    }
}

/// The three detectors of one stream.
pub struct Events {
    cfg: EventConfig,
    black: Detector,
    frozen: Detector,
    motion: Detector,
}

impl Events {
    pub fn new(cfg: EventConfig) -> Self {
        Events {
            cfg,
            black: Detector::default(),
            frozen: Detector::default(),
            motion: Detector::default(),
        }
    }

    /// Feed one frame's statistics; calls `emit` for each event it ends a
    /// wait for (at most three per frame; no allocation).
    pub fn frame(&mut self, seq: u64, ts_ns: u64, s: &FrameStats, mut emit: impl FnMut(Event)) {
        let c = self.cfg;
        let mut out = |d: &Detector, at: Option<(u64, u64)>, start, end| {
            if let Some((seq, ts_ns)) = at {
                emit(Event {
                    event: if d.active { start } else { end },
                    seq,
                    ts_ns,
                });
            }
        };
        let at = self.black.step(
            s.dark >= c.black_ratio,
            seq,
            ts_ns,
            c.black_min,
            Duration::ZERO,
        );
        out(&self.black, at, EventKind::BlackStart, EventKind::BlackEnd);
        if let Some(change) = s.change {
            let at = self.frozen.step(
                change <= c.freeze_noise,
                seq,
                ts_ns,
                c.freeze_min,
                Duration::ZERO,
            );
            out(
                &self.frozen,
                at,
                EventKind::FrozenStart,
                EventKind::FrozenEnd,
            );
        }
        if let Some(motion) = s.motion {
            let at = self.motion.step(
                motion >= c.motion_threshold,
                seq,
                ts_ns,
                c.motion_min,
                c.motion_min,
            );
            out(
                &self.motion,
                at,
                EventKind::MotionStart,
                EventKind::MotionEnd,
            );
        }
    }

    /// The stream ended: close what is open (dated at the last frame).
    pub fn finish(&mut self, seq: u64, ts_ns: u64, mut emit: impl FnMut(Event)) {
        for (d, kind) in [
            (&mut self.black, EventKind::BlackEnd),
            (&mut self.frozen, EventKind::FrozenEnd),
            (&mut self.motion, EventKind::MotionEnd),
        ] {
            if d.active {
                d.active = false;
                emit(Event {
                    event: kind,
                    seq,
                    ts_ns,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(dark: f32, change: f32, motion: f32) -> FrameStats {
        FrameStats {
            mean_luma: 0.0,
            motion: Some(motion),
            dark,
            under: 0.0,
            over: 0.0,
            sharpness: 0.0,
            change: Some(change),
        }
    }

    #[test]
    fn a_black_stretch_longer_than_the_minimum_starts_and_ends() {
        let mut e = Events::new(EventConfig {
            black_min: Duration::from_millis(100),
            ..Default::default()
        });
        let mut got = Vec::new();
        let ms = 1_000_000u64;
        // 10 ms frames: normal 0..10, black 10..40, normal 40..60.
        for i in 0..60u64 {
            let dark = if (10..40).contains(&i) { 1.0 } else { 0.0 };
            e.frame(i, i * 10 * ms, &stats(dark, 5.0, 0.0), |ev| got.push(ev));
        }
        assert_eq!(
            got,
            vec![
                Event {
                    event: EventKind::BlackStart,
                    seq: 10,
                    ts_ns: 100 * ms
                },
                Event {
                    event: EventKind::BlackEnd,
                    seq: 40,
                    ts_ns: 400 * ms
                },
            ]
        );
    }

    #[test]
    fn a_short_blip_is_not_an_event() {
        let mut e = Events::new(EventConfig::default());
        let mut got = Vec::new();
        for i in 0..100u64 {
            let motion = if i == 50 { 50.0 } else { 0.0 };
            e.frame(i, i * 33_000_000, &stats(0.0, 5.0, motion), |ev| {
                got.push(ev)
            });
        }
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn open_events_are_closed_at_the_end() {
        let mut e = Events::new(EventConfig {
            freeze_min: Duration::ZERO,
            ..Default::default()
        });
        let mut got = Vec::new();
        e.frame(0, 0, &stats(0.0, 0.0, 0.0), |ev| got.push(ev));
        e.finish(9, 99, |ev| got.push(ev));
        let kinds: Vec<_> = got.iter().map(|e| e.event).collect();
        assert_eq!(kinds, vec![EventKind::FrozenStart, EventKind::FrozenEnd]);
    }
}

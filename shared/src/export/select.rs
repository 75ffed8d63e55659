//! Which frames to export: sequence ranges, wall-clock windows, "the last
//! 30 seconds", every Nth frame; and the ranges notation reports use.
//!
//! Selection works on index records only (no frame data is read to
//! decide), so choosing the last 30 s of a 2 GiB loop recording costs one
//! read of its index. Times are the frames' wall-clock capture times
//! (`wall_ns`, comparable across `--resume` sessions, unlike the monotonic
//! timestamps); relative times count back from the newest valid frame.
//! Parsing accepts what users type: `100-200`, `150`, `2026-11-23 09:33:20`
//! (UTC), `2026-11-23T09:33:20.5+01:00`, `-30s`, `-00:00:30`.

use std::time::Duration;

use crate::format::FrameMeta;
use crate::units;

/// A point in time as given on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSpec {
    /// Nanoseconds since the Unix epoch.
    Wall(u64),
    /// This long before the newest frame.
    BeforeNewest(Duration),
}

impl TimeSpec {
    /// `-30s`, `-1:30` (before the newest frame), or a wall-clock time
    /// `YYYY-MM-DD HH:MM:SS[.frac]` (`T` may replace the space) in UTC, or
    /// followed by `Z`, `UTC` or an offset `+HH:MM` / `-HHMM`.
    pub fn parse(s: &str) -> Result<TimeSpec, String> {
        let t = s.trim();
        if let Some(rel) = t.strip_prefix('-') {
            return units::parse_duration(rel)
                .map(TimeSpec::BeforeNewest)
                .map_err(|e| format!("'{s}': {e}"));
        }
        parse_wall(t).map(TimeSpec::Wall).ok_or_else(|| {
            format!(
                "'{s}' is not a time: use a wall-clock time like '2026-11-23 09:33:20' (UTC), \
                 '2026-11-23 10:33:20+01:00', or a time before the newest frame like -30s"
            )
        })
    }

    fn resolve(self, newest_wall_ns: u64) -> u64 {
        match self {
            TimeSpec::Wall(ns) => ns,
            TimeSpec::BeforeNewest(d) => {
                newest_wall_ns.saturating_sub(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            }
        }
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date and time of `ns` since the epoch, UTC (for labels).
pub fn civil_utc(ns: u64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let secs = (ns / 1_000_000_000) as i64;
    let millis = ((ns / 1_000_000) % 1000) as u32;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem / 60 % 60) as u32,
        (rem % 60) as u32,
        millis,
    )
}

fn parse_wall(t: &str) -> Option<u64> {
    let num = |s: &str, len: usize| -> Option<i64> {
        (s.len() == len && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (date, rest) = t.split_at_checked(10)?;
    let mut d = date.split('-');
    let (y, mo, da) = (num(d.next()?, 4)?, num(d.next()?, 2)?, num(d.next()?, 2)?);
    let rest = rest.strip_prefix([' ', 'T', 't'])?;
    let (clock, mut zone) = rest.split_at_checked(8)?;
    let mut c = clock.split(':');
    let (h, mi, se) = (num(c.next()?, 2)?, num(c.next()?, 2)?, num(c.next()?, 2)?);
    let mut frac_ns = 0i64;
    if let Some(f) = zone.strip_prefix('.') {
        let digits = f.bytes().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        frac_ns = f[..digits].parse::<i64>().ok()? * 10i64.pow(9 - digits as u32);
        zone = &f[digits..];
    }
    let zone = zone.trim();
    let offset_s = match zone {
        "" | "Z" | "z" | "UTC" => 0,
        _ => {
            let sign = match zone.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let z = zone[1..].replace(':', "");
            let (zh, zm) = (num(z.get(..2)?, 2)?, num(z.get(2..)?, 2)?);
            if zh > 23 || zm > 59 {
                return None;
            }
            sign * (zh * 3600 + zm * 60)
        }
    };
    let days_in = [31, 28 + 1, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo)
        || !(1..=days_in[mo as usize - 1]).contains(&da)
        || h > 23
        || mi > 59
        || se > 60
    {
        return None;
    }
    let secs = days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60 + se - offset_s;
    let ns = i128::from(secs) * 1_000_000_000 + i128::from(frac_ns);
    u64::try_from(ns).ok()
}

/// An inclusive range of recording sequence numbers; open ends allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqRange {
    pub first: Option<u64>,
    pub last: Option<u64>,
}

impl SeqRange {
    /// `100-200`, `100-` (from 100 on), `-200` (up to 200), `150`.
    pub fn parse(s: &str) -> Result<SeqRange, String> {
        let t = s.trim();
        let bad = || format!("'{s}' is not a frame range (e.g. 100-200, 150, 100-, -200)");
        let n = |v: &str| -> Result<Option<u64>, String> {
            let v = v.trim();
            if v.is_empty() {
                Ok(None)
            } else {
                v.parse().map(Some).map_err(|_| bad())
            }
        };
        let r = match t.split_once('-') {
            Some((a, b)) => SeqRange {
                first: n(a)?,
                last: n(b)?,
            },
            None => {
                let v = n(t)?.ok_or_else(bad)?;
                SeqRange {
                    first: Some(v),
                    last: Some(v),
                }
            }
        };
        if let (Some(a), Some(b)) = (r.first, r.last) {
            if a > b {
                return Err(format!("'{s}': the range ends before it starts"));
            }
        }
        Ok(r)
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.first.is_none_or(|a| seq >= a) && self.last.is_none_or(|b| seq <= b)
    }
}

/// What to export. Every criterion given must hold (they intersect).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub frames: Option<SeqRange>,
    /// At or after this time.
    pub since: Option<TimeSpec>,
    /// At or before this time.
    pub until: Option<TimeSpec>,
    /// Frames less than this long before the newest frame (`--last 30s`:
    /// exactly 30 s of frames, 900 at 30 fps).
    pub last: Option<Duration>,
    /// Keep every Nth frame, counted in sequence numbers from the first
    /// selected one (1 = all).
    pub every: u64,
}

impl Selection {
    /// No criterion given: everything.
    pub fn is_everything(&self) -> bool {
        self.frames.is_none() && self.since.is_none() && self.until.is_none() && self.last.is_none()
    }

    /// The selection with times resolved against the newest valid frame.
    pub fn resolve(&self, newest_wall_ns: u64) -> Resolved {
        let mut since = self.since.map(|t| t.resolve(newest_wall_ns));
        if let Some(d) = self.last {
            let d = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
            // Strictly less than `d` before the newest: `d` worth of frames.
            let from = newest_wall_ns.saturating_sub(d).saturating_add(1);
            since = Some(since.map_or(from, |s| s.max(from)));
        }
        Resolved {
            frames: self.frames.unwrap_or(SeqRange {
                first: None,
                last: None,
            }),
            since_ns: since,
            until_ns: self.until.map(|t| t.resolve(newest_wall_ns)),
            every: self.every.max(1),
        }
    }
}

/// A selection with absolute times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub frames: SeqRange,
    pub since_ns: Option<u64>,
    pub until_ns: Option<u64>,
    pub every: u64,
}

impl Resolved {
    /// Whether a frame's metadata is inside the range and time window
    /// (`--every` is applied afterwards, from the first frame kept).
    pub fn wants(&self, m: &FrameMeta) -> bool {
        self.frames.contains(m.sequence)
            && self.since_ns.is_none_or(|t| m.wall_ns >= t)
            && self.until_ns.is_none_or(|t| m.wall_ns <= t)
    }

    /// Whether `seq` survives `--every` counted from `first`.
    pub fn on_step(&self, first: u64, seq: u64) -> bool {
        seq >= first && (seq - first).is_multiple_of(self.every)
    }
}

/// Sorted, distinct numbers as inclusive `[first, last]` runs: how reports
/// list sequences without one number per frame.
pub fn runs(sorted: impl IntoIterator<Item = u64>) -> Vec<[u64; 2]> {
    let mut out: Vec<[u64; 2]> = Vec::new();
    for n in sorted {
        match out.last_mut() {
            Some(r) if r[1].checked_add(1) == Some(n) => r[1] = n,
            Some(r) if r[1] == n => {}
            _ => out.push([n, n]),
        }
    }
    out
}

/// Runs as text: `100-150, 153, 160-200`.
pub fn runs_text(runs: &[[u64; 2]]) -> String {
    runs.iter()
        .map(|[a, b]| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_795_426_400_000_000_000; // 2026-11-23 09:33:20 UTC

    #[test]
    fn wall_clock_times_as_users_type_them() {
        let w = |s| TimeSpec::parse(s).unwrap();
        assert_eq!(w("2026-11-23 09:33:20"), TimeSpec::Wall(T0));
        assert_eq!(w("2026-11-23T09:33:20Z"), TimeSpec::Wall(T0));
        assert_eq!(w("2026-11-23 09:33:20 UTC"), TimeSpec::Wall(T0));
        assert_eq!(w("2026-11-23 10:33:20+01:00"), TimeSpec::Wall(T0));
        assert_eq!(w("2026-11-23 04:33:20-0500"), TimeSpec::Wall(T0));
        assert_eq!(
            w("2026-11-23 09:33:20.25"),
            TimeSpec::Wall(T0 + 250_000_000)
        );
        assert_eq!(w("-30s"), TimeSpec::BeforeNewest(Duration::from_secs(30)));
        assert_eq!(
            w("-00:01:30"),
            TimeSpec::BeforeNewest(Duration::from_secs(90))
        );
        for bad in [
            "2026-13-01 00:00:00",
            "2026-11-31 00:00:00",
            "2026-11-23",
            "09:33:20",
            "2026-11-23 09:33:20+25:00",
            "yesterday",
            "2026-11-23 09:33:20.",
        ] {
            assert!(TimeSpec::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(civil_utc(T0 + 5_000_000), (2026, 11, 23, 9, 33, 20, 5));
        assert_eq!(civil_utc(0), (1970, 1, 1, 0, 0, 0, 0));
    }

    #[test]
    fn frame_ranges() {
        let r = |s| SeqRange::parse(s).unwrap();
        assert_eq!(
            r("100-200"),
            SeqRange {
                first: Some(100),
                last: Some(200)
            }
        );
        assert_eq!(
            r("150"),
            SeqRange {
                first: Some(150),
                last: Some(150)
            }
        );
        assert!(r("100-").contains(u64::MAX) && !r("100-").contains(99));
        assert!(r("-5").contains(0) && !r("-5").contains(6));
        assert!(SeqRange::parse("200-100").is_err());
        assert!(SeqRange::parse("x").is_err());
        assert!(SeqRange::parse("").is_err());
    }

    #[test]
    fn last_means_exactly_that_long() {
        let sel = Selection {
            last: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        let newest = T0 + 10_000_000_000;
        let r = sel.resolve(newest);
        // Frames 100 ms apart: the newest 10 are less than 1 s old.
        let kept = (0..=100u64)
            .filter(|k| {
                r.wants(&FrameMeta {
                    sequence: *k,
                    wall_ns: T0 + k * 100_000_000,
                    ..Default::default()
                })
            })
            .count();
        assert_eq!(kept, 10);
        let r = Selection {
            since: Some(TimeSpec::BeforeNewest(Duration::from_secs(u64::MAX))),
            ..Default::default()
        }
        .resolve(5);
        assert_eq!(r.since_ns, Some(0));
    }

    #[test]
    fn runs_of_numbers() {
        assert_eq!(
            runs([1, 2, 3, 5, 7, 8, u64::MAX]),
            vec![[1, 3], [5, 5], [7, 8], [u64::MAX, u64::MAX]]
        );
        assert_eq!(runs_text(&runs([1, 2, 3, 5])), "1-3, 5");
    }
}

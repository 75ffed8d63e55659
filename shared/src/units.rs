//! The words and numbers users type, parsed the way the tools they know
//! parse them: frame rates as `v4l2-ctl`/ffmpeg take them (`30`, `29.97`,
//! `30000/1001`), sizes as `dd`/`truncate` (`256M` is MiB, `256MB` is 10^6),
//! durations as ffmpeg's `-t` (`10` is seconds, `00:01:30.5`) or `10s`,
//! `2min`, and pixel formats by fourcc or by ffmpeg's names, any case.

use crate::format::{fourcc, fourcc_str, Interval};

/// Pixel formats pagecam knows by name: (fourcc, other names, what it is).
pub const PIXEL_FORMATS: &[(&[u8; 4], &[&str], &str)] = &[
    (b"YUYV", &["YUY2", "YUYV422"], "packed YUV 4:2:2"),
    (b"UYVY", &["UYVY422"], "packed YUV 4:2:2, chroma first"),
    (b"GREY", &["GRAY", "GRAY8", "Y8", "Y800"], "8-bit luma only"),
    (b"NV12", &[], "YUV 4:2:0, Y plane then interleaved UV"),
    (b"NV21", &[], "YUV 4:2:0, Y plane then interleaved VU"),
    (
        b"YU12",
        &["I420", "YUV420P", "YUV420"],
        "YUV 4:2:0, three planes",
    ),
    (b"YV12", &[], "YUV 4:2:0, three planes, V before U"),
    (b"RGB3", &["RGB24", "RGB"], "packed 8-bit R, G, B"),
    (b"BGR3", &["BGR24", "BGR"], "packed 8-bit B, G, R"),
    (
        b"MJPG",
        &["MJPEG", "JPEG"],
        "motion JPEG (stored as delivered)",
    ),
];

/// A pixel format by fourcc (any case) or by name (`RGB24`, `I420`, …).
/// Other four-character codes are taken as they are (a driver may know
/// them); anything else is refused with the list of names.
pub fn parse_pixel_format(s: &str) -> Result<u32, String> {
    let up = s.trim().to_ascii_uppercase();
    for (code, names, _) in PIXEL_FORMATS {
        if up.as_bytes() == &code[..] || names.iter().any(|n| *n == up) {
            return Ok(fourcc(code));
        }
    }
    let b = s.trim().as_bytes();
    if b.len() == 4 && b.iter().all(|c| c.is_ascii_graphic()) {
        return Ok(fourcc(&[b[0], b[1], b[2], b[3]]));
    }
    let known: Vec<String> = PIXEL_FORMATS
        .iter()
        .map(|(code, names, _)| {
            let code = fourcc_str(fourcc(code));
            if names.is_empty() {
                code
            } else {
                format!("{code} ({})", names.join(", "))
            }
        })
        .collect();
    Err(format!(
        "unknown pixel format '{s}'; known: {} (or any V4L2 fourcc)",
        known.join(", ")
    ))
}

/// A frame rate: `30`, `29.97`, `30000/1001`. `0` means "as fast as
/// possible" (`None`). NTSC-style rates given as decimals (29.97, 59.94,
/// 23.976) become their exact x000/1001 fractions.
pub fn parse_rate(s: &str) -> Result<Option<Interval>, String> {
    let s = s.trim();
    let bad = || format!("'{s}' is not a frame rate (e.g. 30, 29.97, 30000/1001)");
    if let Some((num, den)) = s.split_once('/') {
        let num: u32 = num.trim().parse().map_err(|_| bad())?;
        let den: u32 = den.trim().parse().map_err(|_| bad())?;
        if den == 0 {
            return Err(bad());
        }
        // fps = num/den, so the frame interval is den/num seconds.
        return Ok((num != 0).then_some(Interval {
            numerator: den,
            denominator: num,
        }));
    }
    let fps: f64 = s.parse().map_err(|_| bad())?;
    if !fps.is_finite() || !(0.0..=100_000.0).contains(&fps) {
        return Err(bad());
    }
    if fps == 0.0 {
        return Ok(None);
    }
    let ntsc = (fps * 1.001).round();
    // NTSC rates (29.97 = 30000/1001); below 1 fps "1.001 x fps" rounds to
    // 0, which would make a zero denominator.
    if ntsc >= 1.0 && fps.fract() != 0.0 && (fps * 1.001 - ntsc).abs() < 0.005 {
        return Ok(Some(Interval {
            numerator: 1001,
            denominator: ntsc as u32 * 1000,
        }));
    }
    // Up to 3 decimals, exactly: 12.5 fps = 1000/12500 s.
    let millis = (fps * 1000.0).round() as u32;
    if millis == 0 {
        return Err(format!(
            "'{s}' fps is below the slowest rate a recording holds (0.001)"
        ));
    }
    let g = gcd(1000, millis);
    Ok(Some(Interval {
        numerator: 1000 / g,
        denominator: millis / g,
    }))
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// A size in bytes as `dd` and `truncate` read it: `K`, `M`, `G`, `T` (and
/// `KiB`, `MiB`, …) are powers of 1024; `KB`, `MB`, `GB`, `TB` of 1000.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("'{s}' is not a size (e.g. 256M = 256 MiB, 2G, 500MB, 1048576)");
    let value: f64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KIB" => 1 << 10,
        "M" | "MIB" => 1 << 20,
        "G" | "GIB" => 1 << 30,
        "T" | "TIB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// A duration: `10` or `2.5` (seconds), `01:30` or `00:01:30.5`
/// (ffmpeg's `-t`), or `10s`, `500ms`, `2min`, `1h`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let bad = || format!("'{s}' is not a duration (e.g. 10 = 10 s, 00:01:30, 500ms, 2min)");
    let secs = |v: f64| {
        if v.is_finite() && (0.0..1e12).contains(&v) {
            Ok(std::time::Duration::from_secs_f64(v))
        } else {
            Err(bad())
        }
    };
    if let Ok(v) = t.parse::<f64>() {
        return secs(v);
    }
    if t.contains(':') {
        let parts: Vec<&str> = t.split(':').collect();
        if parts.len() > 3 {
            return Err(bad());
        }
        let mut total = 0.0;
        for (i, p) in parts.iter().enumerate() {
            let v: f64 = p.parse().map_err(|_| bad())?;
            let last = i + 1 == parts.len();
            if v < 0.0 || (!last && v.fract() != 0.0) {
                return Err(bad());
            }
            total = total * 60.0 + v;
        }
        return secs(total);
    }
    humantime::parse_duration(t).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_formats_by_any_name() {
        assert_eq!(parse_pixel_format("yuyv"), Ok(fourcc(b"YUYV")));
        assert_eq!(parse_pixel_format("RGB24"), Ok(fourcc(b"RGB3")));
        assert_eq!(parse_pixel_format("i420"), Ok(fourcc(b"YU12")));
        assert_eq!(parse_pixel_format("Y10B"), Ok(fourcc(b"Y10B")));
        let e = parse_pixel_format("RGB48X").unwrap_err();
        assert!(e.contains("RGB3 (RGB24, RGB)"), "{e}");
    }

    #[test]
    fn rates_as_v4l2_ctl_and_ffmpeg_take_them() {
        let i = |n, d| {
            Some(Interval {
                numerator: n,
                denominator: d,
            })
        };
        assert_eq!(parse_rate("30"), Ok(i(1, 30)));
        assert_eq!(parse_rate("29.97"), Ok(i(1001, 30000)));
        assert_eq!(parse_rate("30000/1001"), Ok(i(1001, 30000)));
        assert_eq!(parse_rate("59.94"), Ok(i(1001, 60000)));
        assert_eq!(parse_rate("12.5"), Ok(i(2, 25)));
        assert_eq!(parse_rate("0"), Ok(None));
        assert!(parse_rate("abc").is_err());
        assert!(parse_rate("30/0").is_err());
        assert!(parse_rate("-5").is_err());
    }

    #[test]
    fn sizes_as_dd_reads_them() {
        assert_eq!(parse_bytes("256M"), Ok(256 << 20));
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("500MB"), Ok(500_000_000));
        assert_eq!(parse_bytes("2g"), Ok(2 << 30));
        assert_eq!(parse_bytes("1.5G"), Ok(3 << 29));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("99999999999T").is_err());
    }

    #[test]
    fn durations_as_ffmpeg_reads_them() {
        use std::time::Duration;
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("01:30"), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_duration("00:01:30.5"),
            Ok(Duration::from_millis(90_500))
        );
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("1:2:3:4").is_err());
        assert!(parse_duration("soon").is_err());
    }
}

//! What users type: `units::{parse_rate, parse_bytes, parse_duration,
//! parse_pixel_format}` and `Script::parse` on arbitrary strings. No panic;
//! an accepted frame rate is one a recording header can hold (readers
//! refuse an interval with a zero denominator); pixel formats and scripts
//! read back what they print.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagecam::format::fourcc_str;
use pagecam::source::pattern::Script;
use pagecam::units::{parse_bytes, parse_duration, parse_pixel_format, parse_rate};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Ok(Some(i)) = parse_rate(&s) {
        assert!(
            i.numerator > 0 && i.denominator > 0,
            "rate {s:?} parsed to the interval {i:?}"
        );
        let _ = (i.as_nanos(), i.fps());
    }
    let _ = parse_bytes(&s);
    let _ = parse_duration(&s);
    if let Ok(code) = parse_pixel_format(&s) {
        assert_eq!(parse_pixel_format(&fourcc_str(code)), Ok(code), "{s:?}");
    }
    if let Ok(script) = Script::parse(&s) {
        assert_eq!(Script::parse(&script.to_string()), Ok(script.clone()));
        let seq = data.iter().fold(0u64, |a, &b| a.rotate_left(8) ^ b as u64);
        for q in [0, 1, seq, u64::MAX - 1, u64::MAX] {
            let (_, start) = script.scene(q);
            assert!(start <= q, "scene of {q} starts at {start}");
        }
    }
});

//! The analyzer's detectors on frames whose answer is known (the test
//! source's scripted scenes), and late-joining analyzers that replay the
//! stored frames before following live ones.

use std::time::Duration;

use pagecam::source::pattern::{Pattern, Script};

use crate::util::*;

#[test]
fn black_frozen_and_motion_events_start_and_end_on_the_right_frames() {
    let dir = workdir();
    let script = "moving:60,black:45,moving:45,frozen:90,soft:30,moving:30";
    let (cap, _rec, sock) = live_capture(
        &dir,
        &[
            "--size",
            "320x240",
            "--fps",
            "60",
            "--frames",
            "300",
            "--slots",
            "400",
            "--on-full",
            "stop",
            "--ram-ring",
            "400",
            "--pattern",
            script,
        ],
    );
    let a = watch(
        &sock,
        &[
            "--from",
            "oldest",
            "--black-min",
            "300ms",
            "--freeze-min",
            "500ms",
            "--motion-min",
            "100ms",
        ],
    );
    let cap_out = finish(cap, Duration::from_secs(60), "capture");
    assert!(cap_out.status.success(), "{}", stderr(&cap_out));
    let out = finish(a, Duration::from_secs(30), "analyzer");
    assert!(out.status.success(), "{}", stderr(&out));
    let (lines, summary) = analyzer_lines(&out);
    assert_eq!(summary["frames"], 300, "every frame analysed: {summary}");
    let got = analyzer_events(&out);
    let want = |e: &str, seq: u64| {
        assert!(
            got.contains(&(e.to_string(), seq)),
            "no {e} at frame {seq}: {got:?}"
        );
    };
    // Black from frame 60 to 105.
    want("black_start", 60);
    want("black_end", 105);
    // Frozen: frame 150 is new, 151.. repeat it until the soft scene at 240
    // (which is still too, but for less than the 500 ms minimum).
    want("frozen_start", 151);
    want("frozen_end", 240);
    // The black scene is also a still picture.
    want("frozen_start", 61);
    want("frozen_end", 105);
    // Motion around the moving scenes, not during black or frozen ones.
    for (e, seq) in &got {
        if e == "motion_start" {
            assert!(
                *seq < 60 || (105..150).contains(seq) || *seq >= 270,
                "motion at frame {seq}: {got:?}"
            );
        }
    }
    // Per frame: black frames are dark, the soft scene is far less sharp
    // than the moving bars, frozen frames do not change.
    let frame = |seq: u64| {
        lines
            .iter()
            .find(|l| l["seq"].as_u64() == Some(seq) && l.get("mean_luma").is_some())
            .unwrap_or_else(|| panic!("no line for frame {seq}"))
    };
    assert!(frame(80)["dark"].as_f64().unwrap() > 0.99, "{}", frame(80));
    // The moving bars: a ramp from black to white, a sixth of it dark.
    assert!(frame(30)["dark"].as_f64().unwrap() < 0.3, "{}", frame(30));
    let sharp = frame(30)["sharpness"].as_f64().unwrap();
    let soft = frame(250)["sharpness"].as_f64().unwrap();
    // (The soft scene keeps its sharp sequence stamp: 16 of 240 lines.)
    assert!(sharp > 4.0 * soft, "moving {sharp} vs soft {soft}");
    assert_eq!(frame(200)["change"].as_f64(), Some(0.0), "{}", frame(200));
    assert!(frame(31)["motion"].as_f64().unwrap() > 1.0, "{}", frame(31));
}

/// A late joiner replays what is stored, then follows live frames: every
/// sequence once, in order, no gap at the hand-over, each frame the one
/// the pattern says.
fn late_joiner(store: &str) {
    let dir = workdir();
    let (cap, _rec, sock) = live_capture(
        &dir,
        &[
            "--size",
            "320x240",
            "--fps",
            "60",
            "--frames",
            "360",
            "--slots",
            "500",
            "--on-full",
            "stop",
            "--store",
            store,
            "--ram-ring",
            "32",
        ],
    );
    std::thread::sleep(Duration::from_millis(2500));
    let all = watch(&sock, &["--from", "oldest", "--checksum"]);
    let from = watch(&sock, &["--from", "100", "--checksum"]);
    let cap_out = finish(cap, Duration::from_secs(60), "capture");
    assert!(cap_out.status.success(), "{}", stderr(&cap_out));
    let pattern = Pattern::with_script(yuyv(320, 240), Script::moving()).unwrap();
    for (a, first) in [(all, 0u64), (from, 100)] {
        let out = finish(a, Duration::from_secs(30), "analyzer");
        assert!(out.status.success(), "{}", stderr(&out));
        let (frames, summary) = analyzer_lines(&out);
        let seqs: Vec<u64> = frames.iter().filter_map(|f| f["seq"].as_u64()).collect();
        let want: Vec<u64> = (first..360).collect();
        assert_eq!(
            seqs, want,
            "{store}: replay then live, no gap, no duplicate"
        );
        assert!(
            summary["replayed"].as_u64().unwrap() >= 40,
            "{store}: stored frames were replayed: {summary}"
        );
        assert_eq!(summary["overwritten"], 0, "{store}: {summary}");
        assert!(frames.iter().any(|f| f["replayed"] == true));
        assert!(frames.iter().any(|f| f.get("replayed").is_none()));
        assert_frames_match_pattern(&frames, &pattern);
    }
}

#[test]
fn a_late_joiner_replays_then_follows_without_a_gap_direct_store() {
    late_joiner("direct");
}

#[test]
fn a_late_joiner_replays_then_follows_without_a_gap_file_store() {
    late_joiner("file");
}

/// `watch | head` ends the watch when the reader goes away.
#[test]
fn watch_stops_when_its_output_closes() {
    let dir = workdir();
    let (cap, _rec, sock) = live_capture(&dir, &["--size", "320x240", "--fps", "30"]);
    let mut w = std::process::Command::new(ANALYZER)
        .arg("watch")
        .arg("--socket")
        .arg(&sock)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut stdout = std::io::BufReader::new(w.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert!(first.contains("\"seq\""), "{first}");
    drop(stdout);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = w.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "watch went on after its reader left"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    nix::sys::signal::kill(cap.pid(), nix::sys::signal::Signal::SIGTERM).unwrap();
    finish(cap, Duration::from_secs(20), "capture");
}

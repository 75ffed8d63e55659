//! The real binaries against the vivid camera on Linux 6.1 and 6.12 (qemu
//! guests): both frame stores, I/O modes, formats, the multi-planar queue,
//! a dma-contig driver that refuses USERPTR, and vivid's error injection.
//! One boot per kernel runs every step; the host then pulls the recordings
//! out of the guest's ext4 disk and checks frame contents.

use std::path::Path;
use std::time::Duration;

use pagecam::format::{fourcc, FLAG_ERROR};
use pagecam::recording::RecordingReader;

use crate::guest::{skipped, Guest, KERNELS};
use crate::util::workdir;

/// Every step writes NAME.pcam, NAME.json (capture summary), NAME.err
/// (capture log), NAME.rc (capture exit code) and, with an analyzer,
/// NAME.jsonl into /data. vivid keeps control values between opens, so
/// every fault is switched off again right after its step.
const SCRIPT: &str = r#"
ctl() { v4l2-ctl -d /dev/video0 "$@" >/dev/null 2>&1; }
cap() {
    name=$1; shift
    pagecam-capture --json -o /data/$name.pcam --slots 100 --on-full stop \
        --ctrl test_pattern=0 --ctrl osd_text_mode=2 "$@" >/data/$name.json 2>/data/$name.err
    echo $? >/data/$name.rc
}
watched() {
    name=$1; shift
    cap $name "$@" &
    c=$!
    i=0; while [ ! -S /data/$name.pcam.sock ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
    pagecam-analyzer watch --checksum --socket /data/$name.pcam.sock >/data/$name.jsonl 2>/data/$name.aerr
    wait $c
}
watched userptr --source /dev/video0 --size 320x180 --fps 30 --frames 40 --io userptr --store direct
watched auto    --source /dev/video0 --size 320x180 --fps 30 --frames 40 --io auto --store direct
watched file_userptr --source /dev/video0 --size 320x180 --fps 30 --frames 40 --io userptr --store file
watched file_auto --source /dev/video0 --size 320x180 --fps 30 --frames 40 --io auto --store file
watched dmacontig --source /dev/video2 --size 320x180 --fps 30 --frames 40 --io auto
cap dmacontig_userptr --source /dev/video2 --size 320x180 --fps 30 --frames 10 --io userptr
cap mmap    --source /dev/video0 --size 320x180 --fps 30 --frames 20 --io mmap
cap file_mmap --source /dev/video0 --size 320x180 --fps 30 --frames 20 --io mmap --store file
cap nv12    --source /dev/video0 --size 320x180 --fps 30 --frames 20 --format NV12
cap rgb3    --source /dev/video0 --size 320x180 --fps 30 --frames 20 --format RGB3
cap grey    --source /dev/video0 --size 320x180 --fps 30 --frames 20 --format GREY
cap mplane  --source /dev/video1 --size 320x180 --fps 30 --frames 20 --format NV12
cap mplane_yuyv --source /dev/video1 --size 320x180 --fps 30 --frames 20 --format YUYV
cap drops   --source /dev/video0 --size 320x180 --fps 30 --frames 60 --io mmap --ctrl percentage_of_dropped_buffers=30
ctl -c percentage_of_dropped_buffers=0
cap errflag --source /dev/video0 --size 320x180 --fps 30 --frames 10 --io mmap --ctrl inject_v4l2_buf_flag_error=1
cap streamon --source /dev/video0 --size 320x180 --fps 30 --frames 10 --ctrl inject_vidioc_streamon_error=1
cap nodevice --source /dev/video9 --frames 10
cap notcapture --source /dev/media0 --frames 10
cap stalled --source /dev/video0 --size 320x180 --fps 30 --io mmap --frame-timeout 1s --ctrl percentage_of_dropped_buffers=100
ctl -c percentage_of_dropped_buffers=0
cap odd_size --source /dev/video0 --size 333x200 --fps 30 --frames 5
pagecam-capture --list-devices >/data/devices.txt 2>&1
pagecam-capture --list-formats /dev/video0 >/data/formats.txt 2>&1
cap disconnect --source /dev/video0 --size 320x180 --fps 30 --io mmap &
sleep 1.5; ctl -c disconnect=1; wait
for f in /data/*.pcam; do pagecam-analyzer verify --json $f >${f%.pcam}.verify; echo $? >${f%.pcam}.vrc; done
ls /data
"#;

/// vivid's 75% colour bars, one line of `width` pixels.
pub(crate) fn colorbar_line(fmt: u32, width: usize) -> Vec<u8> {
    let bar = width / 8;
    let mut line = Vec::new();
    for b in 0..8 {
        match fmt {
            f if f == fourcc(b"YUYV") => {
                let yuyv: [[u8; 4]; 8] = [
                    [0xb3, 0x80, 0xb3, 0x80],
                    [0xa0, 0x2c, 0xa0, 0x8d],
                    [0x82, 0x9c, 0x82, 0x2c],
                    [0x6f, 0x48, 0x6f, 0x3a],
                    [0x53, 0xb7, 0x53, 0xc5],
                    [0x40, 0x63, 0x40, 0xd3],
                    [0x22, 0xd3, 0x22, 0x72],
                    [0x10, 0x80, 0x10, 0x80],
                ];
                (0..bar / 2).for_each(|_| line.extend_from_slice(&yuyv[b]));
            }
            f if f == fourcc(b"NV12") => {
                let y = [0xb3, 0xa0, 0x82, 0x6f, 0x53, 0x40, 0x22, 0x10];
                line.extend(std::iter::repeat_n(y[b], bar));
            }
            f if f == fourcc(b"RGB3") => {
                let rgb: [[u8; 3]; 8] = [
                    [0xbf, 0xbf, 0xbf],
                    [0xbf, 0xbf, 0x00],
                    [0x00, 0xbf, 0xbf],
                    [0x00, 0xbf, 0x00],
                    [0xbf, 0x00, 0xbf],
                    [0xbf, 0x00, 0x00],
                    [0x00, 0x00, 0xbf],
                    [0x00, 0x00, 0x00],
                ];
                (0..bar).for_each(|_| line.extend_from_slice(&rgb[b]));
            }
            _ => {
                let g = [0xbe, 0xb0, 0x95, 0x88, 0x36, 0x28, 0x0d, 0x00];
                line.extend(std::iter::repeat_n(g[b], bar));
            }
        }
    }
    line
}

/// Every valid frame of the recording is vivid's colour bars on every line
/// of its first plane: real frames, not zeros or stale memory. Returns the
/// number of frames checked.
pub(crate) fn assert_colorbars(path: &Path) -> usize {
    let reader = RecordingReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let f = reader.header().format;
    let want = colorbar_line(f.fourcc, f.width as usize);
    let scan = reader.scan().expect("scan");
    assert!(
        scan.corrupt.is_empty(),
        "{}: corrupt {:?}",
        path.display(),
        scan.corrupt
    );
    for (slot, meta) in &scan.valid {
        let (_, b) = reader.valid_frame(*slot).unwrap().expect("stable");
        let bad_line = (0..f.height as usize).find(|y| {
            let at = y * f.bytes_per_line as usize;
            b.get(at..at + want.len()) != Some(want.as_slice())
        });
        assert_eq!(
            bad_line,
            None,
            "{}: frame {} line {bad_line:?} is not the colour bars",
            path.display(),
            meta.sequence
        );
    }
    scan.valid.len()
}

/// Every frame an analyzer accepted (its `--checksum` CRC of the frame as
/// read in place) is, byte for byte, the frame the file holds for that
/// sequence.
pub(crate) fn analyzer_matches_file(rec: &Path, jsonl: &str, log: &str) {
    let reader = RecordingReader::open(rec).unwrap();
    let by_seq: std::collections::HashMap<u64, u32> = reader
        .scan()
        .unwrap()
        .valid
        .iter()
        .map(|(slot, m)| (m.sequence, *slot))
        .collect();
    let lines: Vec<serde_json::Value> = jsonl.lines().map(|l| json(l, "jsonl")).collect();
    let frames: Vec<_> = lines.iter().filter(|l| l.get("crc32c").is_some()).collect();
    assert!(
        frames.len() >= 20,
        "{}: analyzer saw {} frames:\n{log}",
        rec.display(),
        frames.len()
    );
    for f in frames {
        let seq = f["seq"].as_u64().unwrap();
        let (_, bytes) = reader.valid_frame(by_seq[&seq]).unwrap().expect("valid");
        assert_eq!(
            f["crc32c"].as_u64().unwrap() as u32,
            crc32c::crc32c(&bytes),
            "{}: frame {seq}",
            rec.display()
        );
    }
}

fn json(text: &str, what: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}: {text:?}"))
}

fn vivid_on(kernel: &str) {
    let dir = workdir();
    let disk = dir.path().join("disk.img");
    let guest = Guest {
        kernel,
        disk: &disk,
        mkdisk: Some("384M"),
        // Instance 0: single-planar (/dev/video0); 1: multi-planar
        // (/dev/video1); 2: dma-contig buffers, which refuse USERPTR as
        // SoC camera drivers do (/dev/video2).
        vivid: "n_devs=3 node_types=0x1,0x1,0x1 multiplanar=1,2,1 allocators=0,0,1",
        kill_on: None,
        timeout: Duration::from_secs(400),
    };
    let run = guest.run(SCRIPT);
    assert_eq!(run.code, Some(0), "guest script failed:\n{}", run.console);
    let text = |name: &str| guest.pull_text(&format!("/data/{name}"), dir.path());
    let rc = |name: &str| text(&format!("{name}.rc")).trim().to_string();
    let summary = |name: &str| json(&text(&format!("{name}.json")), name);
    let recording = |name: &str| {
        let p = dir.path().join(format!("{name}.pcam"));
        guest.pull(&format!("/data/{name}.pcam"), &p);
        p
    };
    let verified = |name: &str| {
        assert_eq!(
            text(&format!("{name}.vrc")).trim(),
            "0",
            "verify {name}: {}",
            text(&format!("{name}.verify"))
        );
        json(&text(&format!("{name}.verify")), name)
    };

    // I/O modes. The RAM ring (--store direct, a memfd): USERPTR works on
    // both kernels, zero copies. The file store: USERPTR into an ext4
    // MAP_SHARED mapping works on 6.1; since 6.5 it is refused (EFAULT) and
    // auto falls back to MMAP with one copy.
    for name in ["userptr", "auto"] {
        assert_eq!(rc(name), "0", "{name}: {}", text(&format!("{name}.err")));
        let s = summary(name);
        assert_eq!(s["bytes_copied"], 0, "{name}: {s}");
        assert_eq!(s["store"], "direct", "{s}");
        assert!(s["delivery"].as_str().unwrap().starts_with("direct"), "{s}");
    }
    if kernel == "6.1" {
        assert_eq!(rc("file_userptr"), "0", "{}", text("file_userptr.err"));
        assert_eq!(summary("file_userptr")["bytes_copied"], 0);
        assert_eq!(summary("file_auto")["bytes_copied"], 0);
    } else {
        assert_eq!(
            rc("file_userptr"),
            "2",
            "explicit userptr fails on {kernel}"
        );
        assert!(
            text("file_userptr.err").contains("EFAULT"),
            "{}",
            text("file_userptr.err")
        );
        assert_eq!(rc("file_auto"), "0", "{}", text("file_auto.err"));
        let s = summary("file_auto");
        assert_eq!(s["bytes_copied_per_frame"], 320 * 180 * 2, "{s}");
        assert!(
            text("file_auto.err").contains("USERPTR"),
            "auto says why it fell back: {}",
            text("file_auto.err")
        );
    }
    // A dma-contig driver refuses USERPTR for any memory: auto uses MMAP
    // and one copy into the RAM ring, and says why; explicit userptr fails.
    assert_eq!(rc("dmacontig"), "0", "{}", text("dmacontig.err"));
    let s = summary("dmacontig");
    assert_eq!(s["bytes_copied_per_frame"], 320 * 180 * 2, "{s}");
    assert!(
        text("dmacontig.err").contains("does not support USERPTR"),
        "{}",
        text("dmacontig.err")
    );
    assert_eq!(
        rc("dmacontig_userptr"),
        "2",
        "{}",
        text("dmacontig_userptr.err")
    );
    for name in [
        "userptr",
        "auto",
        "file_userptr",
        "file_auto",
        "dmacontig",
        "mmap",
        "file_mmap",
        "nv12",
        "rgb3",
        "grey",
        "mplane",
        "mplane_yuyv",
    ] {
        if name == "file_userptr" && kernel != "6.1" {
            continue;
        }
        assert_eq!(rc(name), "0", "{name}: {}", text(&format!("{name}.err")));
        verified(name);
        let rec = recording(name);
        let n = assert_colorbars(&rec);
        // Exported stills and clips of vivid's bars, checked with ffmpeg.
        if ["auto", "nv12", "rgb3", "grey"].contains(&name) {
            crate::export::check_vivid_export(&rec, dir.path());
        }
        assert!(n >= 20, "{name}: {n} frames");
    }
    assert!(summary("mmap")["bytes_copied_per_frame"].as_u64().unwrap() > 0);

    // The analyzers read frames in place; each one they accepted is, byte
    // for byte, the frame the file holds for that sequence.
    for watched in ["userptr", "file_auto", "dmacontig"] {
        analyzer_matches_file(
            &recording(watched),
            &text(&format!("{watched}.jsonl")),
            &text(&format!("{watched}.aerr")),
        );
    }
    // Dropped buffers: counted exactly as the sequence gaps in the file say.
    assert_eq!(rc("drops"), "0", "{}", text("drops.err"));
    let dropped = summary("drops")["source_dropped"].as_u64().unwrap();
    assert!(dropped > 0, "30% of buffers dropped, none counted");
    assert_eq!(
        verified("drops")["source_dropped"].as_u64().unwrap(),
        dropped
    );

    // V4L2_BUF_FLAG_ERROR: the frame is kept, flagged in the index.
    assert_eq!(rc("errflag"), "0", "{}", text("errflag.err"));
    let errors = summary("errflag")["error_frames"].as_u64().unwrap();
    assert!(errors >= 1, "{}", text("errflag.json"));
    assert_eq!(
        verified("errflag")["error_frames"].as_u64().unwrap(),
        errors
    );
    let reader = RecordingReader::open(&recording("errflag")).unwrap();
    assert!(reader
        .scan()
        .unwrap()
        .valid
        .iter()
        .any(|(_, m)| m.flags & FLAG_ERROR != 0));

    // Start-streaming failure and a missing device: clear errors, exit 2.
    assert_eq!(rc("streamon"), "2");
    assert!(
        text("streamon.err").contains("STREAMON"),
        "{}",
        text("streamon.err")
    );
    assert_eq!(rc("nodevice"), "2");
    assert!(
        text("nodevice.err").contains("/dev/video9"),
        "{}",
        text("nodevice.err")
    );

    // A node that is not a video capture device, and a driver that stops
    // delivering: clear errors; the stalled recording stays valid.
    assert_eq!(rc("notcapture"), "2");
    assert!(
        text("notcapture.err").contains("/dev/media0"),
        "{}",
        text("notcapture.err")
    );
    assert_eq!(rc("stalled"), "2", "{}", text("stalled.err"));
    assert!(
        text("stalled.err").contains("no frame"),
        "{}",
        text("stalled.err")
    );
    verified("stalled");

    // The header records what the driver chose, and capture says it differs.
    assert_eq!(rc("odd_size"), "0", "{}", text("odd_size.err"));
    let h = RecordingReader::open(&recording("odd_size"))
        .unwrap()
        .header()
        .clone();
    assert_ne!((h.format.width, h.format.height), (333, 200));
    assert!(
        text("odd_size.err").contains(&format!(
            "asked 333x200, driver chose {}x{}",
            h.format.width, h.format.height
        )),
        "{}",
        text("odd_size.err")
    );

    // Discovery, in v4l2-ctl's vocabulary.
    let devices = text("devices.txt");
    assert!(
        devices.contains("/dev/video0") && devices.contains("vivid"),
        "{devices}"
    );
    let formats = text("formats.txt");
    assert!(
        formats.contains("YUYV") && formats.contains("NV12") && formats.contains("320x180"),
        "{formats}"
    );

    // Disconnect while streaming: non-zero exit, a clear message, and a
    // valid recording of everything before it.
    assert_eq!(rc("disconnect"), "5", "{}", text("disconnect.err"));
    assert!(
        text("disconnect.err").to_lowercase().contains("went away"),
        "{}",
        text("disconnect.err")
    );
    let v = verified("disconnect");
    assert!(v["valid_frames"].as_u64().unwrap() >= 10, "{v}");
    assert_colorbars(&recording("disconnect"));
}

#[test]
fn vivid_on_linux_6_1() {
    if !skipped("vivid_on_linux_6_1") {
        vivid_on(KERNELS[0]);
    }
}

#[test]
fn vivid_on_linux_6_12() {
    if !skipped("vivid_on_linux_6_12") {
        vivid_on(KERNELS[1]);
    }
}

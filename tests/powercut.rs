//! Power cuts on real kernels (qemu guests, Linux 6.1 and 6.12), for both
//! frame stores: record vivid onto the guest's ext4 disk, SIGKILL qemu at a
//! random moment, boot again on the same disk image (ext4 replays its
//! journal at mount) and check what survived.
//!
//! One chain of boots per kernel; the boot that verifies cut k also records
//! for cut k+1, so the 7 cuts cost 8 boots (about 90 s per kernel):
//!
//! * boot 1 records `keep.pcam` (20 frames, clean stop), then creates
//!   `rec.pcam`; boots 2..=6 run `verify --json` on both and continue
//!   `rec.pcam` with `--resume`, so every later cut hits a resumed session
//!   (cut 4 lands right after capture starts: while it reopens and scans
//!   the file, or on its first frames). `keep.pcam` must stay exactly as
//!   it was through every cut;
//! * boot 7 verifies the last cut, then creates `big.pcam` (150 MiB,
//!   `--prealloc zero`, on a disk where a second such file would not fit)
//!   and is cut during that pre-allocation, with the temporary
//!   `.big.pcam.partial` and all its blocks already on disk;
//! * boot 8 checks all three files (`rec.pcam` must be exactly as after
//!   its last cut) and, if `big.pcam` does not exist, records it again at the
//!   same path, which must succeed.
//!
//! Frames: vivid 320x180 YUYV at 30 fps with `test_pattern=0
//! osd_text_mode=2`, so every frame is the same 75% colour bars. `--io
//! auto`: with `--store file` it takes both paths, USERPTR on 6.1 (the
//! driver writes the file's pages through its own mapping, not capture's
//! page tables) and MMAP plus one CPU copy on 6.12 (which refuses USERPTR
//! into file pages); with `--store direct` the driver writes the RAM ring
//! through USERPTR on both, and the ring is written to the file with
//! O_DIRECT. `--max-loss 1s`.
//!
//! The ring (800 slots, `--on-full stop`) never wraps: frame `seq` lives in
//! slot `seq` for the whole chain (resume continues right after the newest
//! valid frame), so what survived is known exactly per frame, and "every
//! frame older than the bound is valid" needs no guessing about which
//! slots a wrapping writer may already have reclaimed. (Wrap-around after
//! crashes is covered on the host by `durability`.)
//!
//! What existed before a cut: an analyzer in the guest prints one JSON line
//! per frame to the serial console (flushed every 8 frames); the host keeps
//! what the console showed before the SIGKILL. Right after each cut the host
//! pulls the recording out of the image (`vm.sh pull` replays the journal
//! on a copy, as the next mount does) and checks it slot by slot:
//!
//! * the file has its full size; nothing before this session changed;
//! * every valid frame is the colour bars on every line, sits in the slot
//!   of its sequence, and has the timestamp the analyzer saw live;
//! * every frame at least `--max-loss` older than the newest frame the
//!   console showed is valid (torn frames may be corrupt or incomplete only
//!   inside that window);
//!
//! and the next boot's `verify --json` (after the real journal replay)
//! must report exactly the same. The cut delays come from a seeded PRNG,
//! printed with the measured loss per cut (visible with `--nocapture`);
//! `PAGECAM_POWERCUT_SEED=0x...` replays or varies them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pagecam::format::{fourcc, FrameMeta};
use pagecam::recording::{RecordingReader, SlotStatus};

use crate::guest::{skipped, Guest, KERNELS};
use crate::util::workdir;

const DEFAULT_SEED: u64 = 0x7063_616d_6375_7431;
/// Recording cuts per kernel (plus one during pre-allocation).
const ROUNDS: usize = 6;
/// This round (1-based) is cut right after capture starts, not mid-stream.
const STARTUP_ROUND: usize = 4;
const SLOTS: usize = 800;
const MAX_LOSS_NS: u64 = 1_000_000_000;
/// keep.pcam (5 MB) + rec.pcam (95 MB) + big.pcam (157 MB) fit (276 MB
/// free on a fresh 320M ext4); big.pcam beside a left-over temporary
/// big.pcam does not.
const DISK: &str = "320M";
const BIG_FRAMES: u64 = 30;

/// Shell functions of every boot's script.
///
/// * `v NAME`: `verify --json` /data/NAME as one console line
///   `PC_VERIFY NAME rc=RC size=BYTES {json}` (or `PC_VERIFY NAME absent`).
/// * `cap NAME ARGS`: capture into /data/NAME; its log goes to the console
///   prefixed `cap: `, then `PC_CAPTURE_EXIT NAME rc=RC`.
/// * `rec ARGS`: capture rec.pcam with an analyzer printing every frame to
///   the console; it waits for capture's "analyzers connect to" line, not
///   for the socket file, which a power cut leaves behind (stale).
/// * `big`: create big.pcam with zero pre-allocation and cut power in the
///   middle, deterministically in the state a real power cut during any
///   long creation (GiBs on an SD card: minutes of zeros, so many of ext4's
///   5-second journal commits) leaves: once the temporary file has all its
///   blocks (fallocate done, zeros being written), capture is frozen
///   (SIGSTOP), `sync` plays the periodic commit, and the cut follows
///   PC_PREALLOC_COMMITTED. (Unfrozen, the cut would race the creation,
///   which takes about 1 s here, and the outcome would change from run to
///   run.)
const FUNCS: &str = r#"
v() {
    f=/data/$1
    if [ ! -e "$f" ]; then echo "PC_VERIFY $1 absent"; return; fi
    pagecam-analyzer verify --json "$f" >/tmp/v.out 2>/tmp/v.err
    rc=$?
    echo "PC_VERIFY $1 rc=$rc size=$(stat -c %s "$f") $(tr -d '\n' </tmp/v.out)"
    sed "s/^/PC_VERIFY_ERR $1: /" /tmp/v.err
}
cap() {
    name=$1; shift
    { PAGECAM_LOG=info pagecam-capture -o /data/$name --source /dev/video0 \
        --size 320x180 --fps 30 --io auto --max-loss 1s --store "$PC_STORE" \
        --ctrl test_pattern=0 --ctrl osd_text_mode=2 "$@" 2>&1
      echo "PC_CAPTURE_EXIT $name rc=$?"; } |
    while IFS= read -r l; do
        echo "cap: $l"
        case $l in *"analyzers connect to"*) : >/tmp/ready ;; esac
    done
}
rec() {
    rm -f /tmp/ready
    echo PC_REC_START
    cap rec.pcam --slots 800 --on-full stop --duration 25s "$@" &
    i=0; while [ ! -e /tmp/ready ] && [ $i -lt 400 ]; do usleep 50000; i=$((i+1)); done
    pagecam-analyzer watch --socket /data/rec.pcam.sock
    wait
}
big() {
    echo PC_PREALLOC_START
    cap big.pcam --prealloc zero --capacity 150MiB --duration 20s &
    p=/data/.big.pcam.partial; i=0
    while [ "$(stat -c %s $p 2>/dev/null || echo 0)" -lt 150000000 ] && [ $i -lt 1000 ]; do
        usleep 10000; i=$((i+1))
    done
    kill -STOP $(pidof pagecam-capture)
    sync
    partial cut
    echo PC_PREALLOC_COMMITTED
    wait
}
partial() {
    if [ -e /data/.big.pcam.partial ]; then
        echo "PC_PARTIAL $1 present $(stat -c '%s bytes, %b blocks' /data/.big.pcam.partial)"
    else
        echo "PC_PARTIAL $1 none"
    fi
}
"#;

/// The script after boot 8's checks: record big.pcam again if the cut left
/// no file at its path.
const FINAL: &str = r#"
v keep.pcam
v rec.pcam
v big.pcam
partial before
df -k /data
if [ ! -e /data/big.pcam ]; then
    cap big.pcam --prealloc zero --capacity 150MiB --frames 30
    v big.pcam
    partial after
fi
"#;

/// SplitMix64: a small seeded generator, so every cut point replays.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi), rounded to 10 ms (what vm.sh's timer resolves).
    fn delay(&mut self, lo: f64, hi: f64) -> f64 {
        let x = lo + (self.next() >> 11) as f64 / (1u64 << 53) as f64 * (hi - lo);
        (x * 100.0).floor() / 100.0
    }
}

fn base_seed() -> u64 {
    match std::env::var("PAGECAM_POWERCUT_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("PAGECAM_POWERCUT_SEED={s:?}: {e}"))
        }
        Err(_) => DEFAULT_SEED,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Cut `delay` seconds after the first frame reached the console.
    Recording,
    /// Cut `delay` seconds after the script starts capture.
    Startup,
}

impl Kind {
    fn marker(self) -> &'static str {
        match self {
            Kind::Recording => "{\"seq\":",
            Kind::Startup => "PC_REC_START",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Recording => "recording",
            Kind::Startup => "startup",
        }
    }
}

/// A recording as the next mount sees it, slot by slot.
struct Recovered {
    slots: Vec<SlotStatus>,
    file_size: u64,
}

impl Recovered {
    fn valid(&self) -> impl Iterator<Item = (usize, &FrameMeta)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| match s {
            SlotStatus::Valid(m) => Some((i, m)),
            _ => None,
        })
    }
    fn is_valid(&self, seq: u64) -> bool {
        matches!(self.slots.get(seq as usize), Some(SlotStatus::Valid(_)))
    }
    fn newest(&self) -> Option<&FrameMeta> {
        self.valid().map(|(_, m)| m).max_by_key(|m| m.sequence)
    }
    fn max_session(&self) -> u32 {
        self.valid().map(|(_, m)| m.session).max().unwrap_or(0)
    }
    fn slots_where(&self, f: impl Fn(&SlotStatus) -> bool) -> Vec<u64> {
        (0..self.slots.len() as u64)
            .filter(|&i| f(&self.slots[i as usize]))
            .collect()
    }
    fn corrupt(&self) -> Vec<u64> {
        self.slots_where(|s| matches!(s, SlotStatus::Corrupt { .. }))
    }
    fn incomplete(&self) -> Vec<u64> {
        self.slots_where(|s| matches!(s, SlotStatus::Incomplete { .. }))
    }
}

/// Open a recording pulled out of the image: its full size, every slot's
/// state, and every valid frame the colour bars on every line.
fn recovered(path: &Path, what: &str) -> Recovered {
    let reader = RecordingReader::open(path).unwrap_or_else(|e| panic!("{what}: {e}"));
    let h = reader.header();
    let f = h.format;
    let len = std::fs::metadata(path).unwrap().len();
    assert_eq!(len, h.layout.file_size, "{what}: file size");
    assert_eq!(f.fourcc, fourcc(b"YUYV"), "{what}");
    assert_eq!((f.width, f.height), (320, 180), "{what}");
    let want = crate::vivid::colorbar_line(pagecam::format::YUYV, f.width as usize);
    let slots: Vec<SlotStatus> = (0..h.layout.slot_count)
        .map(|s| reader.check_slot(s).expect("read"))
        .collect();
    for (slot, status) in slots.iter().enumerate() {
        let slot = slot as u32;
        match status {
            SlotStatus::Busy => panic!("{what}: slot {slot} busy in a file nobody writes"),
            SlotStatus::Valid(m) => {
                assert_eq!(m.bytes_used, f.frame_size, "{what}: slot {slot}: {m:?}");
                let (_, b) = reader
                    .valid_frame(slot)
                    .expect("read")
                    .expect("offline read is stable");
                let bad_line = (0..f.height as usize).find(|y| {
                    let at = y * f.bytes_per_line as usize;
                    b.get(at..at + want.len()) != Some(want.as_slice())
                });
                assert_eq!(
                    bad_line, None,
                    "{what}: frame {} (slot {slot}) is reported valid, but line {bad_line:?} is not the colour bars",
                    m.sequence
                );
            }
            _ => {}
        }
    }
    Recovered {
        slots,
        file_size: h.layout.file_size,
    }
}

/// What one `v NAME` printed.
enum Verified {
    Absent,
    Ran {
        rc: i64,
        size: u64,
        report: Option<serde_json::Value>,
    },
}

/// Every `PC_VERIFY NAME ...` line of a console, in order.
fn verify_lines(console: &str, name: &str) -> Vec<Verified> {
    let prefix = format!("PC_VERIFY {name} ");
    console
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .map(|rest| {
            if rest.trim() == "absent" {
                return Verified::Absent;
            }
            let (rc, rest) = rest.split_once(' ').expect("rc=N size=S");
            let (size, json) = rest.split_once(' ').unwrap_or((rest, ""));
            let num = |s: &str, key: &str| -> i64 {
                s.strip_prefix(key)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("bad verify line: {rest}"))
            };
            Verified::Ran {
                rc: num(rc, "rc="),
                size: num(size, "size=") as u64,
                report: serde_json::from_str(json).ok(),
            }
        })
        .collect()
}

/// The guest's `verify --json` after the journal replay says exactly what
/// the host found in its own replayed copy.
fn assert_verified_as(v: &Verified, want: &Recovered, what: &str, console: &str) {
    let Verified::Ran { rc, size, report } = v else {
        panic!("{what}: the recording is gone after the cut\n{console}");
    };
    let report = report
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: verify (exit {rc}) printed no report\n{console}"));
    let corrupt = want.corrupt();
    assert_eq!(*size, want.file_size, "{what}: size on the guest's disk");
    assert_eq!(report["file_size"], want.file_size, "{what}: {report}");
    assert_eq!(
        report["valid_frames"],
        want.valid().count(),
        "{what}: {report}"
    );
    assert_eq!(
        report["corrupt_slots"],
        serde_json::json!(corrupt),
        "{what}"
    );
    assert_eq!(
        report["incomplete_slots"],
        serde_json::json!(want.incomplete()),
        "{what}"
    );
    assert_eq!(
        report["last_sequence"],
        serde_json::json!(want.newest().map(|m| m.sequence)),
        "{what}: {report}"
    );
    assert_eq!(
        *rc,
        if corrupt.is_empty() { 0 } else { 1 },
        "{what}: verify's exit code: {report}"
    );
}

/// The frames an analyzer printed on the console before the cut: seq → ts_ns.
fn seen_frames(console: &str, what: &str) -> BTreeMap<u64, u64> {
    let mut seen = BTreeMap::new();
    for line in console.lines() {
        let Some(at) = line.find("{\"seq\":") else {
            continue;
        };
        // The line the cut interrupted does not parse; it is not evidence.
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line[at..]) else {
            continue;
        };
        assert!(
            v.get("lost").is_none(),
            "{what}: the analyzer lost a frame in a ring that never wraps: {v}"
        );
        let (Some(seq), Some(ts)) = (v["seq"].as_u64(), v["ts_ns"].as_u64()) else {
            panic!("{what}: unexpected analyzer line {v}");
        };
        seen.insert(seq, ts);
    }
    seen
}

/// One line of the loss table.
struct Row {
    cut: String,
    kind: &'static str,
    delay: f64,
    start: u64,
    seen_newest: Option<u64>,
    recovered_newest: Option<u64>,
    /// Frames the console showed that did not survive.
    seen_lost: usize,
    loss_frames: Option<i64>,
    loss_ms: Option<f64>,
    /// Newest frame that had to survive (older than the bound).
    required_upto: Option<u64>,
    incomplete: usize,
    corrupt: usize,
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn table(kernel: &str, store: &str, seed: u64, rows: &[Row], took: Duration) -> String {
    let mut t = format!(
        "\npower cuts on Linux {kernel}, --store {store} (seed {seed:#x}; replay: PAGECAM_POWERCUT_SEED={:#x}), max-loss bound 1000 ms, {:.0} s\n\
         loss = newest frame the console showed before the cut - newest valid frame recovered\n\
         (negative: the disk held frames newer than the console had shown; it lags up to 8 frames)\n\
         first: the session's first frame; seen: newest frame on the console before the cut;\n\
         valid: the session's newest valid frame after the cut; seen-lost: frames the console\n\
         showed that did not survive; required: frames first..=required were older than the\n\
         bound, so had to be (and were) valid; incmpl, corrupt: the session's slots in those states\n\
         {:<4} {:<9} {:>6} {:>6} {:>6} {:>6} {:>9} {:>6} {:>8} {:>9} {:>6} {:>7}\n",
        base_seed(),
        took.as_secs_f64(),
        "cut",
        "kind",
        "delay",
        "first",
        "seen",
        "valid",
        "seen-lost",
        "loss",
        "loss-ms",
        "required",
        "incmpl",
        "corrupt",
    );
    for r in rows {
        t += &format!(
            "{:<4} {:<9} {:>6.2} {:>6} {:>6} {:>6} {:>9} {:>6} {:>8} {:>9} {:>6} {:>7}\n",
            r.cut,
            r.kind,
            r.delay,
            r.start,
            opt(r.seen_newest),
            opt(r.recovered_newest),
            r.seen_lost,
            opt(r.loss_frames),
            opt(r.loss_ms.map(|m| format!("{m:.0}"))),
            opt(r.required_upto),
            r.incomplete,
            r.corrupt,
        );
    }
    t
}

/// Check a recording cut mid-session against what existed before it.
/// `prev` is the file after the previous cut (None: created this round).
fn check_cut(
    what: &str,
    prev: Option<&Recovered>,
    now: &Recovered,
    console: &str,
    kind: Kind,
    delay: f64,
) -> Row {
    let start = prev.and_then(|p| p.newest()).map_or(0, |m| m.sequence + 1);
    let session = prev.map_or(1, |p| p.max_session() + 1);
    // (Not the console's last line: the cut may have truncated that one.)
    let lines: Vec<&str> = console.lines().collect();
    let complete = &lines[..lines.len().saturating_sub(1)];
    match complete.iter().find(|l| l.contains("resuming at sequence")) {
        Some(line) => assert!(
            prev.is_some() && line.contains(&format!("at sequence {start} as session {session}")),
            "{what}: resume should continue after the newest valid frame ({start}, session {session}): {line}"
        ),
        // Frames were recorded, so capture had said where it resumed.
        None => assert!(
            prev.is_none() || kind == Kind::Startup,
            "{what}: no \"resuming at\" line\n{console}"
        ),
    }
    // Nothing before this session changed: earlier frames, and the torn
    // ones earlier cuts left behind.
    if let Some(prev) = prev {
        for s in 0..start as usize {
            assert_eq!(
                now.slots[s], prev.slots[s],
                "{what}: slot {s}, written before this session, changed"
            );
        }
    }
    // The ring never wraps: frame `seq` is in slot `seq`.
    for (slot, m) in now.valid() {
        assert_eq!(m.sequence, slot as u64, "{what}: slot {slot} holds {m:?}");
        if slot as u64 >= start {
            assert_eq!(m.session, session, "{what}: slot {slot}: {m:?}");
        }
    }
    let seen = seen_frames(console, what);
    for (&seq, &ts) in &seen {
        assert!(
            seq >= start && (seq as usize) < SLOTS,
            "{what}: the analyzer saw frame {seq}, outside this session (from {start})"
        );
        if let SlotStatus::Valid(m) = &now.slots[seq as usize] {
            assert_eq!(
                m.timestamp_ns, ts,
                "{what}: frame {seq} is valid but is not the frame the analyzer saw"
            );
        }
    }
    // The loss bound: frames older than (newest seen - max_loss) survive.
    // A frame the console did not show is older than a later one it did.
    let newest_seen = seen.iter().next_back().map(|(&s, &t)| (s, t));
    let required_upto = newest_seen.and_then(|(_, newest_ts)| {
        seen.iter()
            .filter(|(_, &ts)| ts + MAX_LOSS_NS <= newest_ts)
            .map(|(&s, _)| s)
            .next_back()
    });
    if let Some(upto) = required_upto {
        let lost: Vec<u64> = (start..=upto).filter(|&s| !now.is_valid(s)).collect();
        assert!(
            lost.is_empty(),
            "{what}: frames {lost:?} are older than the {} ms loss bound (newest seen: {newest_seen:?}, \
             frames {start}..={upto} must survive) but are {:?}",
            MAX_LOSS_NS / 1_000_000,
            lost.iter()
                .map(|&s| now.slots[s as usize])
                .collect::<Vec<_>>()
        );
    }
    let this_session = |s: &u64| *s >= start;
    let newest_valid = now.newest().filter(|m| m.sequence >= start);
    let (loss_frames, loss_ms) = match (newest_seen, newest_valid) {
        (Some((s, t)), Some(m)) => (
            Some(s as i64 - m.sequence as i64),
            Some((t as f64 - m.timestamp_ns as f64) / 1e6),
        ),
        (Some((s, _)), None) => (Some(s as i64 - start as i64 + 1), None),
        _ => (None, None),
    };
    Row {
        cut: String::new(),
        kind: kind.name(),
        delay,
        start,
        seen_newest: newest_seen.map(|(s, _)| s),
        recovered_newest: newest_valid.map(|m| m.sequence),
        seen_lost: seen.keys().filter(|&&s| !now.is_valid(s)).count(),
        loss_frames,
        loss_ms,
        required_upto,
        incomplete: now.incomplete().iter().filter(|s| this_session(s)).count(),
        corrupt: now.corrupt().iter().filter(|s| this_session(s)).count(),
    }
}

fn powercut_on(kernel: &str, store: &str, index: u64) {
    let started = Instant::now();
    let seed = base_seed() ^ (index + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
    let mut rng = Rng(seed);
    let plan: Vec<(Kind, f64)> = (1..=ROUNDS)
        .map(|r| match r {
            STARTUP_ROUND => (Kind::Startup, rng.delay(0.0, 0.3)),
            _ => (Kind::Recording, rng.delay(1.0, 3.5)),
        })
        .collect();
    eprintln!(
        "powercut {kernel} --store {store}: seed {seed:#x} (PAGECAM_POWERCUT_SEED={:#x}); cut delays {:?}",
        base_seed(),
        plan.iter()
            .map(|(k, d)| format!("{d:.2}s after {}", k.marker()))
            .collect::<Vec<_>>()
    );

    let dir = workdir();
    let disk = dir.path().join("disk.img");
    let guest = |mkdisk: bool, kill_on: Option<(&'static str, f64)>| Guest {
        kernel,
        disk: &disk,
        mkdisk: mkdisk.then_some(DISK),
        vivid: "node_types=0x1",
        kill_on,
        timeout: Duration::from_secs(150),
    };
    let pull = |name: &str, tag: &str| -> PathBuf {
        let host = dir.path().join(format!("{tag}-{name}"));
        guest(false, None).pull(&format!("/data/{name}"), &host);
        host
    };
    let mut rows = Vec::new();
    let mut prev: Option<Recovered> = None;
    // Another recording on the same disk, finished in boot 1 before any
    // cut: every later boot must find it exactly as it was.
    let mut keep: Option<Recovered> = None;
    let keep_unchanged = |keep: &Recovered, console: &str, what: &str| {
        let v = verify_lines(console, "keep.pcam");
        assert_eq!(
            v.len(),
            1,
            "{what}: no verify line for keep.pcam\n{console}"
        );
        assert_verified_as(&v[0], keep, &format!("{what}: keep.pcam"), console);
    };

    for (round, &(kind, delay)) in (1..).zip(&plan) {
        let what = format!(
            "Linux {kernel}, --store {store}, seed {seed:#x}, cut {round} ({delay:.2} s after {:?})",
            kind.marker()
        );
        let mut script = format!("PC_STORE={store}\n{FUNCS}");
        if round > 1 {
            script += "v keep.pcam\nv rec.pcam\nrec --resume\n";
        } else {
            script += "cap keep.pcam --slots 40 --on-full stop --frames 20\nrec\n";
        }
        let run = guest(round == 1, Some((kind.marker(), delay))).run(&script);
        match &keep {
            Some(keep) => keep_unchanged(keep, &run.console, &what),
            None => {
                assert!(
                    run.console.contains("PC_CAPTURE_EXIT keep.pcam rc=0"),
                    "{what}: recording keep.pcam failed\n{}",
                    run.console
                );
                let k = recovered(&pull("keep.pcam", "cut1"), &format!("{what}: keep.pcam"));
                assert_eq!(k.valid().count(), 20, "{what}: keep.pcam");
                assert!(k.corrupt().is_empty(), "{what}: keep.pcam");
                keep = Some(k);
            }
        }
        if let Some(prev) = &prev {
            let v = verify_lines(&run.console, "rec.pcam");
            assert_eq!(v.len(), 1, "{what}: no verify line\n{}", run.console);
            assert_verified_as(
                &v[0],
                prev,
                &format!("{what}, verify after the previous cut"),
                &run.console,
            );
        }
        assert_eq!(
            run.code,
            Some(137),
            "{what}: the power was not cut\n{}\n{}",
            run.console,
            run.harness
        );
        assert!(
            !run.console.contains("PC_CAPTURE_EXIT rec.pcam"),
            "{what}: capture stopped before the cut\n{}",
            run.console
        );
        let now = recovered(&pull("rec.pcam", &format!("cut{round}")), &what);
        let mut row = check_cut(&what, prev.as_ref(), &now, &run.console, kind, delay);
        row.cut = round.to_string();
        eprintln!(
            "powercut {kernel}: cut {round}: seen up to {}, valid up to {}, loss {} frames / {} ms",
            opt(row.seen_newest),
            opt(row.recovered_newest),
            opt(row.loss_frames),
            opt(row.loss_ms.map(|m| format!("{m:.0}")))
        );
        rows.push(row);
        prev = Some(now);
    }
    let rec = prev.expect("at least one round");
    let keep = keep.expect("keep.pcam recorded in boot 1");
    // The loss table now: the pre-allocation checks below may still fail.
    let t = table(kernel, store, seed, &rows, started.elapsed());
    eprintln!("{t}");
    crate::util::report("powercut", &format!("{kernel}-{store}"), &t);
    // The direct store writes a frame's record only after the fdatasync
    // that made its data durable, and marks a slot odd on stable storage
    // before overwriting it: a cut leaves frames valid, incomplete or
    // empty, never corrupt (verify exits 0 after every power cut). The
    // file store cannot order page-cache writeback like that.
    if store == "direct" {
        let torn: Vec<_> = rows
            .iter()
            .filter(|r| r.corrupt > 0)
            .map(|r| (&r.cut, r.corrupt))
            .collect();
        assert!(
            torn.is_empty(),
            "{kernel}, --store direct: corrupt frames after cuts (cut, count): {torn:?}"
        );
    }

    // Cut during pre-allocation of a second, large file.
    let what =
        format!("Linux {kernel}, --store {store}, seed {seed:#x}, cut during pre-allocation");
    let run = guest(false, Some(("PC_PREALLOC_COMMITTED", 0.1))).run(&format!(
        "PC_STORE={store}\n{FUNCS}v keep.pcam\nv rec.pcam\nbig\n"
    ));
    keep_unchanged(&keep, &run.console, &what);
    let v = verify_lines(&run.console, "rec.pcam");
    assert_eq!(v.len(), 1, "{what}\n{}", run.console);
    assert_verified_as(
        &v[0],
        &rec,
        &format!("{what}, rec.pcam after the last cut"),
        &run.console,
    );
    assert_eq!(
        run.code,
        Some(137),
        "{what}: the power was not cut\n{}\n{}",
        run.console,
        run.harness
    );
    assert!(
        !run.console.contains("PC_CAPTURE_EXIT big.pcam"),
        "{what}: creating big.pcam failed\n{}",
        run.console
    );
    let creation_done = run.console.contains("recording /data/big.pcam");
    let frames_begun = run.console.contains("analyzers connect to /data/big.pcam");
    let at_cut = run
        .console
        .lines()
        .find_map(|l| l.strip_prefix("PC_PARTIAL cut "))
        .unwrap_or("?")
        .to_string();
    assert!(
        at_cut.starts_with("present"),
        "{what}: the cut was to find the temporary file on disk\n{}",
        run.console
    );

    // The next boot: a clear answer for big.pcam; the others untouched.
    let what =
        format!("Linux {kernel}, --store {store}, seed {seed:#x}, after the pre-allocation cut");
    let run = guest(false, None).run(&format!("PC_STORE={store}\n{FUNCS}{FINAL}"));
    assert_eq!(run.code, Some(0), "{what}\n{}", run.console);
    keep_unchanged(&keep, &run.console, &what);
    let kept = recovered(&pull("keep.pcam", "final"), &format!("{what}: keep.pcam"));
    assert!(kept.slots == keep.slots, "{what}: keep.pcam changed");
    let v = verify_lines(&run.console, "rec.pcam");
    assert_eq!(v.len(), 1, "{what}\n{}", run.console);
    assert_verified_as(&v[0], &rec, &format!("{what}: rec.pcam"), &run.console);
    let after = recovered(&pull("rec.pcam", "final"), &format!("{what}: rec.pcam"));
    assert!(
        after.slots == rec.slots,
        "{what}: rec.pcam changed after its last cut"
    );
    let partial = |tag: &str| {
        run.console
            .lines()
            .find_map(|l| l.strip_prefix(&format!("PC_PARTIAL {tag} ")))
            .unwrap_or("?")
            .to_string()
    };
    let big = verify_lines(&run.console, "big.pcam");
    let outcome = match big.first() {
        Some(Verified::Absent) => {
            // Cut before the link: no recording at the path, a new one
            // must be possible there.
            assert!(
                !creation_done,
                "{what}: capture had created big.pcam, yet it is gone\n{}",
                run.console
            );
            let exit = run.console.lines().find_map(|l| {
                l.find("PC_CAPTURE_EXIT big.pcam rc=")
                    .map(|at| &l[at + "PC_CAPTURE_EXIT big.pcam rc=".len()..])
            });
            assert_eq!(
                exit,
                Some("0"),
                "{what}: a new capture to the path of the cut creation failed (temporary file: {})\n{}",
                partial("before"),
                run.console
            );
            assert_eq!(big.len(), 2, "{what}\n{}", run.console);
            let retried = recovered(&pull("big.pcam", "final"), &format!("{what}: big.pcam"));
            assert_verified_as(
                &big[1],
                &retried,
                &format!("{what}: new big.pcam"),
                &run.console,
            );
            assert_eq!(retried.valid().count() as u64, BIG_FRAMES, "{what}");
            // (Slots still queued to the driver when capture stopped after
            // its frames stay incomplete: their bytes are unknown.)
            assert!(retried.corrupt().is_empty(), "{what}");
            assert_eq!(
                partial("after"),
                "none",
                "{what}: the new capture left the old temporary file"
            );
            format!(
                "no big.pcam (temporary file: {}); a new capture there recorded {BIG_FRAMES} frames",
                partial("before")
            )
        }
        Some(v @ Verified::Ran { rc, .. }) => {
            // Cut after the link: a complete, readable recording.
            let got = recovered(&pull("big.pcam", "final"), &format!("{what}: big.pcam"));
            assert_verified_as(v, &got, &format!("{what}: big.pcam"), &run.console);
            assert!(
                *rc == 0 || frames_begun,
                "{what}: big.pcam has corrupt frames though none was recorded\n{}",
                run.console
            );
            format!(
                "big.pcam exists and verifies (exit {rc}, {} valid frames); temporary file: {}",
                got.valid().count(),
                partial("before")
            )
        }
        None => panic!("{what}: no verify line for big.pcam\n{}", run.console),
    };
    let line = format!(
        "power cuts on Linux {kernel}, --store {store}: pre-allocation cut (temporary file at the cut: {at_cut}): \
         {outcome}; rec.pcam and keep.pcam unchanged; {:.0} s in all",
        started.elapsed().as_secs_f64()
    );
    eprintln!("{line}");
    crate::util::report("powercut", &format!("{kernel}-{store}-prealloc"), &line);
}

#[test]
fn power_cuts_on_linux_6_1_direct_store() {
    if !skipped("power_cuts_on_linux_6_1_direct_store") {
        powercut_on(KERNELS[0], "direct", 0);
    }
}

#[test]
fn power_cuts_on_linux_6_12_direct_store() {
    if !skipped("power_cuts_on_linux_6_12_direct_store") {
        powercut_on(KERNELS[1], "direct", 1);
    }
}

#[test]
fn power_cuts_on_linux_6_1_file_store() {
    if !skipped("power_cuts_on_linux_6_1_file_store") {
        powercut_on(KERNELS[0], "file", 2);
    }
}

#[test]
fn power_cuts_on_linux_6_12_file_store() {
    if !skipped("power_cuts_on_linux_6_12_file_store") {
        powercut_on(KERNELS[1], "file", 3);
    }
}

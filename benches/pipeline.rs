//! `cargo bench --bench pipeline`: pagecam's capture → analyzer pipeline
//! against the naive copy-and-send design, measured in one run on this
//! machine and printed as markdown tables of absolute figures and ratios.
//!
//! Designs, each a real capture process and a real analyzer process:
//! - A: pagecam, `--delivery direct` (the source renders into the slot: zero copies)
//! - B: pagecam, `--delivery copy` (one memcpy into the slot, the V4L2 MMAP path)
//! - C: pagecam, direct with `--no-prefault`
//! - A-lazy: A with `--no-writeback --max-loss 2h` (diagnostic: writeback
//!   left to the kernel, as in D)
//! - D: the naive design (`naive` module, after README's "copies a frame up
//!   to five times"): copy into a process buffer, send the whole frame over a
//!   Unix stream socket, the analyzer receives it into its own buffer;
//!   capture also `write`s it to a ring file.
//! - D-eager: D with pagecam's durability work (diagnostic: writeback started
//!   after each frame, `fdatasync` every 0.5 s)
//!
//! Per size (640x480, 1280x720, 1920x1080 YUYV) it measures bytes copied per
//! frame, CPU per frame of capture + analyzer, the highest unpaced frame rate
//! and its drops, notification latency at 30 fps beside the bare 64-byte
//! `SOCK_SEQPACKET` floor, and minor page faults of the capture process
//! (whole run, and after the 32-slot ring has wrapped). About 100 s;
//! `cargo bench --bench pipeline -- --quick` is a shorter smoke run.
//!
//! Key decision: the machine is small and shared, so every figure is compared
//! only with figures from the same run. CPU comes from the kernel's accounting
//! of the child processes (whole run: `wait4` rusage, all threads, user and
//! kernel, minus a zero-frame startup run; steady state: /proc schedstat of
//! all threads sampled every 5 ms), and the test pattern's own rendering cost,
//! calibrated here, is subtracted from every design's capture CPU because a
//! camera's DMA would not cost it. The bench must not change what it
//! measures: it only spawns the real binaries (`CARGO_BIN_EXE_*`) and
//! re-executes itself for the naive roles.

mod naive;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    accept, bind, listen, recv, send, setsockopt, socket, sockopt, AddressFamily, Backlog,
    MsgFlags, SockFlag, SockType, UnixAddr,
};
use pagecam::format::{FrameFormat, YUYV};
use pagecam::protocol::{FRAME_LEN, PROGRESS_LEN};
use pagecam::recording::monotonic_ns;
use pagecam::source::pattern::Pattern;
use pagecam::stats::Analyzer;
use serde_json::Value;

const SIZES: [(u32, u32); 3] = [(640, 480), (1280, 720), (1920, 1080)];
/// Ring size for every design: smaller than any run, so slots are reused.
const SLOTS: u32 = 32;
const PACED_FPS: u32 = 30;
/// A child that has not exited after this long is killed and the run fails.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Design {
    Direct,
    Copy,
    NoPrefault,
    NoWriteback,
    Naive,
    NaiveWriteback,
}

impl Design {
    fn label(self) -> &'static str {
        match self {
            Design::Direct => "A pagecam direct",
            Design::Copy => "B pagecam copy",
            Design::NoPrefault => "C direct --no-prefault",
            Design::NoWriteback => "A-lazy direct, lazy writeback",
            Design::Naive => "D naive (stream socket)",
            Design::NaiveWriteback => "D-eager naive, eager writeback",
        }
    }
}

/// Frame counts for one size (unpaced, paced).
fn frame_counts(w: u32, quick: bool) -> (u64, u64) {
    let unpaced = match w {
        ..=640 => 1200,
        641..=1280 => 500,
        _ => 250,
    };
    if quick {
        (unpaced / 4, 45)
    } else {
        (unpaced, 120)
    }
}

struct Bins {
    capture: PathBuf,
    analyzer: PathBuf,
    me: PathBuf,
}

// ---------------------------------------------------------------- processes

/// What the kernel accounted to a child over its whole life.
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    /// utime + stime of all its threads, ns.
    cpu_ns: u64,
    /// ru_minflt of all its threads.
    minflt: u64,
    /// Minor faults of its main thread only (read from /proc while it was a
    /// zombie); for pagecam-capture that is the capture loop's thread.
    main_minflt: u64,
}

struct Child {
    pid: i32,
    name: String,
    stdout: JoinHandle<String>,
    log: PathBuf,
}

fn spawn(cmd: &mut Command, name: &str, log: &Path) -> Result<Child, String> {
    let err = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    let mut out = child.stdout.take().expect("piped stdout");
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    Ok(Child {
        pid: child.id() as i32,
        name: name.to_string(),
        stdout,
        log: log.to_path_buf(),
    })
}

/// Fields after the command name of /proc/PID/stat or /proc/PID/task/TID/stat.
fn proc_stat(path: &str) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(path).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Wait (with a timeout) for a child to exit, read its main thread's fault
/// count while it is a zombie, then reap it with wait4 for its rusage.
fn finish(child: Child) -> Result<(String, Usage), String> {
    let deadline = Instant::now() + CHILD_TIMEOUT;
    loop {
        // SAFETY: waitid with WNOWAIT only inspects our own child's state;
        // `info` is a plain C struct the kernel fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                child.pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid is valid for the SIGCHLD-style siginfo waitid fills.
        if rc == 0 && unsafe { info.si_pid() } == child.pid {
            break;
        }
        if rc != 0 {
            return Err(format!(
                "waitid {}: {}",
                child.name,
                std::io::Error::last_os_error()
            ));
        }
        if Instant::now() > deadline {
            // Only this one child, which we started, by its pid.
            // SAFETY: plain kill(2) of our own unreaped child.
            unsafe { libc::kill(child.pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let main_minflt = proc_stat(&format!("/proc/{0}/task/{0}/stat", child.pid))
        .and_then(|f| f.get(7)?.parse().ok())
        .unwrap_or(0);
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter; wait4 reaps our child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(child.pid, &mut status, 0, &mut ru) };
    if rc != child.pid {
        return Err(format!(
            "wait4 {}: {}",
            child.name,
            std::io::Error::last_os_error()
        ));
    }
    let out = child.stdout.join().unwrap_or_default();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        let log = std::fs::read_to_string(&child.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(8).collect();
        return Err(format!(
            "{} failed (status {status:#x}); stderr ends:\n{}",
            child.name,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    Ok((
        out,
        Usage {
            cpu_ns: tv(ru.ru_utime) + tv(ru.ru_stime),
            minflt: ru.ru_minflt as u64,
            main_minflt,
        },
    ))
}

fn wait_listening(path: &Path, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    // pagecam-capture listens under a temporary name and renames the socket
    // into place, so once the path exists, connecting succeeds.
    while !path.exists() {
        if Instant::now() > deadline {
            return Err(format!("{what}: nothing listens on {}", path.display()));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

/// CPU time of all of a process's threads (their schedstat run time, ns).
fn proc_cpu_ns(pid: i32) -> Option<u64> {
    let mut total = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let mut p = t.path();
        p.push("schedstat");
        if let Some(ns) = std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        {
            total += ns;
        }
    }
    Some(total)
}

/// Counters of the capture and analyzer processes of a run, sampled every
/// 5 ms while both live, to measure the steady state after the ring wrapped.
#[derive(Clone, Copy, Debug)]
struct Sample {
    t_ns: u64,
    /// Capture: minor faults of the process and of its main thread.
    flt: u64,
    main_flt: u64,
    cap_cpu_ns: u64,
    ana_cpu_ns: u64,
}

struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    fn start(cap: i32, ana: i32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut v = Vec::new();
            let (all, main) = (
                format!("/proc/{cap}/stat"),
                format!("/proc/{cap}/task/{cap}/stat"),
            );
            while !flag.load(Ordering::Relaxed) {
                let t_ns = monotonic_ns();
                let (Some(a), Some(m)) = (proc_stat(&all), proc_stat(&main)) else {
                    break;
                };
                if a[0] == "Z" || a[0] == "X" {
                    break;
                }
                let (Some(cap_cpu_ns), Some(ana_cpu_ns)) = (proc_cpu_ns(cap), proc_cpu_ns(ana))
                else {
                    break;
                };
                let n = |f: &Vec<String>| f.get(7).and_then(|x| x.parse().ok()).unwrap_or(0);
                v.push(Sample {
                    t_ns,
                    flt: n(&a),
                    main_flt: n(&m),
                    cap_cpu_ns,
                    ana_cpu_ns,
                });
                std::thread::sleep(Duration::from_millis(5));
            }
            v
        });
        Sampler { stop, thread }
    }

    fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

// ---------------------------------------------------------------- runs

#[derive(Clone, Copy, Debug)]
struct FrameRec {
    seq: u64,
    ts_ns: u64,
    latency_us: f64,
    notify_us: f64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Drops {
    source: u64,
    missed: u64,
    overwritten: u64,
    torn: u64,
    notices: u64,
}

impl Drops {
    fn total(&self) -> u64 {
        self.source + self.missed + self.overwritten + self.torn + self.notices
    }
    fn describe(&self) -> String {
        if self.total() == 0 {
            return "none".into();
        }
        let mut parts = Vec::new();
        for (n, what) in [
            (self.source, "source"),
            (self.missed, "missed"),
            (self.overwritten, "overwritten"),
            (self.torn, "torn"),
            (self.notices, "notices dropped"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        parts.join(", ")
    }
}

struct Run {
    cap: Usage,
    ana: Usage,
    cap_frames: u64,
    frames: Vec<FrameRec>,
    cap_fps: f64,
    drops: Drops,
    /// Bytes memcpy'd in user space per frame.
    user_copy: f64,
    /// Bytes copied by the kernel per frame (send + recv + write).
    kernel_copy: f64,
    samples: Vec<Sample>,
}

impl Run {
    /// Frames the analyzer held, end to end per second: from the capture
    /// timestamp of the first to the analysis end of the last.
    fn e2e_fps(&self) -> f64 {
        let (Some(first), Some(last)) = (
            self.frames.iter().min_by_key(|f| f.seq),
            self.frames.iter().max_by_key(|f| f.seq),
        ) else {
            return 0.0;
        };
        let done = last.ts_ns as f64 + last.latency_us * 1000.0;
        let span = (done - first.ts_ns as f64) / 1e9;
        (self.frames.len().saturating_sub(1)) as f64 / span.max(1e-9)
    }

    fn notify(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.frames.iter().map(|f| f.notify_us).collect();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The steady state after the ring has wrapped once: counters sampled
    /// during the run, against the frames captured (by capture timestamp)
    /// and analysed (by analysis end) between the samples.
    fn steady(&self) -> Option<Steady> {
        let mut by_seq: Vec<&FrameRec> = self.frames.iter().collect();
        by_seq.sort_by_key(|f| f.seq);
        let start_ts = by_seq.iter().find(|f| f.seq >= SLOTS as u64 + 2)?.ts_ns;
        let end_ts = by_seq.last()?.ts_ns;
        let s0 = self.samples.iter().find(|s| s.t_ns >= start_ts)?;
        let s1 = self.samples.iter().rev().find(|s| s.t_ns <= end_ts)?;
        let captured_by = |t: u64| {
            by_seq
                .iter()
                .filter(|f| f.ts_ns <= t)
                .map(|f| f.seq + 1)
                .max()
        };
        let captured = captured_by(s1.t_ns)?.checked_sub(captured_by(s0.t_ns)?)?;
        let done = |f: &&FrameRec| f.ts_ns + (f.latency_us * 1000.0) as u64;
        let analysed = by_seq
            .iter()
            .filter(|f| (s0.t_ns..s1.t_ns).contains(&done(f)))
            .count() as u64;
        if captured < 8 || analysed < 8 {
            return None;
        }
        Some(Steady {
            flt: (s1.flt - s0.flt) as f64 / captured as f64,
            main_flt: (s1.main_flt - s0.main_flt) as f64 / captured as f64,
            cap_ns: (s1.cap_cpu_ns - s0.cap_cpu_ns) as f64 / captured as f64,
            ana_ns: (s1.ana_cpu_ns - s0.ana_cpu_ns) as f64 / analysed as f64,
        })
    }
}

/// Per-frame figures of a run's steady state.
#[derive(Clone, Copy, Debug)]
struct Steady {
    flt: f64,
    main_flt: f64,
    cap_ns: f64,
    ana_ns: f64,
}

impl Steady {
    /// Capture (net of rendering) + analyzer CPU per frame, µs.
    fn total_us(&self, cal: &Calibration) -> f64 {
        (self.cap_ns - cal.render_ns + self.ana_ns) / 1000.0
    }
}

fn parse_analyzer(out: &str) -> (Vec<FrameRec>, Drops, u64) {
    let mut frames = Vec::new();
    let mut drops = Drops::default();
    let mut received = 0;
    // pagecam-analyzer's --quiet still writes its frame objects (without
    // newlines), so the output is read as a stream of JSON values.
    for v in serde_json::Deserializer::from_str(out).into_iter::<Value>() {
        let Ok(v) = v else { break };
        if let Some(s) = v.get("summary") {
            let n = |k: &str| s.get(k).and_then(Value::as_u64).unwrap_or(0);
            drops.missed = n("missed");
            drops.overwritten = n("overwritten");
            drops.torn = n("torn");
            received = n("bytes_received");
        } else if let (Some(seq), Some(ts), Some(lat), Some(notify)) = (
            v.get("seq").and_then(Value::as_u64),
            v.get("ts_ns").and_then(Value::as_u64),
            v.get("latency_us").and_then(Value::as_f64),
            v.get("notify_us").and_then(Value::as_f64),
        ) {
            frames.push(FrameRec {
                seq,
                ts_ns: ts,
                latency_us: lat,
                notify_us: notify,
            });
        }
    }
    (frames, drops, received)
}

fn json(out: &str, what: &str) -> Result<Value, String> {
    out.lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .ok_or_else(|| format!("{what} printed no JSON summary"))
}

struct Cfg<'a> {
    bins: &'a Bins,
    dir: &'a Path,
    w: u32,
    h: u32,
    fps: u32,
    frames: u64,
    sample: bool,
}

fn run_pagecam(c: &Cfg, design: Design, tag: &str) -> Result<Run, String> {
    let out = c.dir.join(format!("{tag}.pcam"));
    let sock = c.dir.join(format!("{tag}.pcam.sock"));
    let mut cmd = Command::new(&c.bins.capture);
    cmd.env("PAGECAM_LOG", "warn").args([
        "-o".as_ref(),
        out.as_os_str(),
        "--slots".as_ref(),
        SLOTS.to_string().as_ref(),
        "--size".as_ref(),
        format!("{}x{}", c.w, c.h).as_ref(),
        "--fps".as_ref(),
        c.fps.to_string().as_ref(),
        "--frames".as_ref(),
        c.frames.to_string().as_ref(),
        "--delivery".as_ref(),
        if design == Design::Copy {
            "copy"
        } else {
            "direct"
        }
        .as_ref(),
    ]);
    match design {
        Design::NoPrefault => {
            cmd.arg("--no-prefault");
        }
        Design::NoWriteback => {
            cmd.args(["--no-writeback", "--max-loss", "2h"]);
        }
        _ => {}
    }
    let cap = spawn(
        &mut cmd,
        "pagecam-capture",
        &c.dir.join(format!("{tag}.capture.log")),
    )?;
    let analyzer = if c.frames > 0 {
        wait_listening(&sock, "pagecam-capture")?;
        Some(spawn(
            Command::new(&c.bins.analyzer).args([
                "watch".as_ref(),
                "--socket".as_ref(),
                sock.as_os_str(),
            ]),
            "pagecam-analyzer",
            &c.dir.join(format!("{tag}.analyzer.log")),
        )?)
    } else {
        None
    };
    let sampler = analyzer
        .as_ref()
        .filter(|_| c.sample)
        .map(|a| Sampler::start(cap.pid, a.pid));
    let (cap_out, cap_usage) = finish(cap)?;
    let samples = sampler.map(Sampler::stop).unwrap_or_default();
    let (ana_out, ana_usage) = match analyzer {
        Some(a) => finish(a)?,
        None => (String::new(), Usage::default()),
    };
    let _ = std::fs::remove_file(&out);
    let s = json(&cap_out, "pagecam-capture")?;
    let n = |k: &str| s.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (frames, mut drops, _) = parse_analyzer(&ana_out);
    drops.source = n("source_dropped");
    drops.notices = n("notifications_dropped");
    let cap_frames = n("frames");
    Ok(Run {
        cap: cap_usage,
        ana: ana_usage,
        cap_frames,
        cap_fps: s.get("fps").and_then(Value::as_f64).unwrap_or(0.0),
        drops,
        user_copy: n("bytes_copied_per_frame") as f64,
        // Per frame: the notice, sent by capture and received by the analyzer;
        // every 8 frames a progress message the other way.
        kernel_copy: (2 * FRAME_LEN) as f64 + (2 * PROGRESS_LEN) as f64 / 8.0,
        frames,
        samples,
    })
}

fn run_naive(c: &Cfg, writeback: bool, tag: &str) -> Result<Run, String> {
    let file = c.dir.join(format!("{tag}.naive"));
    let sock = c.dir.join(format!("{tag}.naive.sock"));
    let args = naive::CaptureArgs {
        socket: &sock,
        file: &file,
        width: c.w,
        height: c.h,
        fps: c.fps,
        frames: c.frames,
        slots: SLOTS as u64,
        writeback,
    };
    let cap = spawn(
        Command::new(&c.bins.me).args(args.to_args()),
        "naive capture",
        &c.dir.join(format!("{tag}.capture.log")),
    )?;
    wait_listening(&sock, "naive capture")?;
    let analyzer = spawn(
        Command::new(&c.bins.me).args([
            naive::ROLE_ANALYZER.to_string(),
            sock.display().to_string(),
            c.w.to_string(),
            c.h.to_string(),
        ]),
        "naive analyzer",
        &c.dir.join(format!("{tag}.analyzer.log")),
    )?;
    let sampler = c.sample.then(|| Sampler::start(cap.pid, analyzer.pid));
    let (cap_out, cap_usage) = finish(cap)?;
    let samples = sampler.map(Sampler::stop).unwrap_or_default();
    let (ana_out, ana_usage) = finish(analyzer)?;
    let _ = std::fs::remove_file(&file);
    let s = json(&cap_out, "naive capture")?;
    let n = |k: &str| s.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (frames, mut drops, received) = parse_analyzer(&ana_out);
    drops.source = n("source_dropped");
    let cap_frames = n("frames");
    let per = |b: u64| b as f64 / cap_frames.max(1) as f64;
    Ok(Run {
        cap: cap_usage,
        ana: ana_usage,
        cap_frames,
        cap_fps: s.get("fps").and_then(Value::as_f64).unwrap_or(0.0),
        drops,
        user_copy: per(n("bytes_memcpy")),
        kernel_copy: per(n("bytes_sent") + n("bytes_written") + received),
        frames,
        samples,
    })
}

fn run(c: &Cfg, design: Design, tag: &str) -> Result<Run, String> {
    if matches!(design, Design::Naive | Design::NaiveWriteback) {
        run_naive(c, design == Design::NaiveWriteback, tag)
    } else {
        run_pagecam(c, design, tag)
    }
}

// ---------------------------------------------------------------- calibration

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU ns per call of `f`, the best of three batches of `n` after a warm-up.
fn per_call(n: u64, mut f: impl FnMut(u64)) -> f64 {
    for i in 0..5 {
        f(i);
    }
    let mut best = f64::MAX;
    for b in 0..3 {
        let t = thread_cpu_ns();
        for i in 0..n {
            f(b * n + i);
        }
        best = best.min((thread_cpu_ns() - t) as f64 / n as f64);
    }
    best
}

#[derive(Clone, Copy, Debug, Default)]
struct Calibration {
    render_ns: f64,
    crc_ns: f64,
    analyse_ns: f64,
    memcpy_ns: f64,
}

fn calibrate(format: FrameFormat) -> Calibration {
    let size = format.frame_size as usize;
    let n = (200_000_000 / size as u64).clamp(20, 400);
    let pattern = Pattern::new(format).expect("YUYV pattern");
    let mut buf = vec![1u8; size];
    let render_ns = per_call(n, |i| {
        pattern.render(i, &mut buf);
        std::hint::black_box(&buf);
    });
    let crc_ns = per_call(n, |_| {
        std::hint::black_box(crc32c::crc32c(std::hint::black_box(&buf)));
    });
    let mut stats = Analyzer::new(format);
    let analyse_ns = per_call(n, |_| {
        std::hint::black_box(stats.analyse_bytes(std::hint::black_box(&buf)));
    });
    let mut dst = vec![1u8; size];
    let memcpy_ns = per_call(n, |_| {
        dst.copy_from_slice(std::hint::black_box(&buf));
        std::hint::black_box(&dst);
    });
    Calibration {
        render_ns,
        crc_ns,
        analyse_ns,
        memcpy_ns,
    }
}

// ---------------------------------------------------------------- socket floor

struct Floor {
    rtt_us: Vec<f64>,
    paced_one_way_us: Vec<f64>,
}

/// 64-byte SOCK_SEQPACKET ping-pong with a child process: `hot` back-to-back
/// round trips, then `paced` one-way probes, one per frame interval of the
/// paced runs, to a receiver blocked in recv (as an analyzer between frames).
fn measure_floor(bins: &Bins, dir: &Path, hot: usize, paced: usize) -> Result<Floor, String> {
    let path = dir.join("floor.sock");
    fn e(what: &'static str) -> impl Fn(nix::errno::Errno) -> String {
        move |err| format!("floor {what}: {err}")
    }
    let listener = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(e("socket"))?;
    bind(
        listener.as_raw_fd(),
        &UnixAddr::new(&path).map_err(e("address"))?,
    )
    .map_err(e("bind"))?;
    listen(&listener, Backlog::new(1).expect("backlog")).map_err(e("listen"))?;
    let child = spawn(
        Command::new(&bins.me).args([naive::ROLE_PONG.to_string(), path.display().to_string()]),
        "floor pong",
        &dir.join("floor.log"),
    )?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let fd = loop {
        match accept(listener.as_raw_fd()) {
            Ok(fd) => break fd,
            Err(nix::errno::Errno::EAGAIN) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_micros(200))
            }
            Err(err) => return Err(format!("floor accept: {err}")),
        }
    };
    // SAFETY: accept returned a fresh descriptor that we alone own.
    let conn = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // Blocking, with a receive timeout so a lost peer fails the run.
    // SAFETY: fcntl on our own descriptor.
    unsafe { libc::fcntl(conn.as_raw_fd(), libc::F_SETFL, 0) };
    setsockopt(
        &conn,
        sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(20, 0),
    )
    .map_err(e("timeout"))?;
    let mut msg = [0u8; naive::PING_LEN];
    let mut back = [0u8; naive::PING_LEN];
    let mut rtt_us = Vec::with_capacity(hot);
    let round = |msg: &[u8], back: &mut [u8]| -> Result<(), String> {
        send(conn.as_raw_fd(), msg, MsgFlags::MSG_NOSIGNAL).map_err(e("send"))?;
        match recv(conn.as_raw_fd(), back, MsgFlags::empty()) {
            Ok(n) if n == naive::PING_LEN => Ok(()),
            Ok(n) => Err(format!("floor: echo of {n} bytes")),
            Err(err) => Err(format!("floor recv: {err}")),
        }
    };
    for i in 0..hot + hot / 10 {
        let t = monotonic_ns();
        round(&msg, &mut back)?;
        if i >= hot / 10 {
            rtt_us.push((monotonic_ns() - t) as f64 / 1000.0);
        }
    }
    msg[0] = 1;
    for _ in 0..paced {
        std::thread::sleep(Duration::from_nanos(1_000_000_000 / PACED_FPS as u64));
        msg[8..16].copy_from_slice(&monotonic_ns().to_le_bytes());
        round(&msg, &mut back)?;
    }
    msg[0] = 2;
    send(conn.as_raw_fd(), &msg, MsgFlags::MSG_NOSIGNAL).map_err(e("send"))?;
    let (out, _) = finish(child)?;
    let _ = std::fs::remove_file(&path);
    let v = json(&out, "floor pong")?;
    let paced_one_way_us = v
        .get("one_way_us")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    rtt_us.sort_by(f64::total_cmp);
    Ok(Floor {
        rtt_us,
        paced_one_way_us,
    })
}

// ---------------------------------------------------------------- report

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn machine(dir: &Path) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU")
        .to_string();
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1048576.0);
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let fs = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && dir.starts_with(f[1])).then(|| (f[1].len(), f[2], f[0], f[1]))
        })
        .max_by_key(|m| m.0)
        .map(|(_, t, dev, mnt)| format!("{t} ({dev} on {mnt})"))
        .unwrap_or_else(|| "unknown filesystem".into());
    format!(
        "{model}, {cpus} CPUs, {mem_gib:.0} GiB, Linux {}, files on {fs} at {}",
        kernel.trim(),
        dir.display()
    )
}

/// Per-frame CPU of capture (net of fixed startup and of rendering) and of
/// the analyzer, in microseconds.
fn cpu_us(r: &Run, baseline: &Usage, cal: &Calibration) -> (f64, f64) {
    let cap = (r.cap.cpu_ns.saturating_sub(baseline.cpu_ns)) as f64 / r.cap_frames.max(1) as f64
        - cal.render_ns;
    let ana = r.ana.cpu_ns as f64 / (r.frames.len().max(1)) as f64;
    (cap / 1000.0, ana / 1000.0)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() && b.is_finite() {
        format!("{:.2}x", a / b)
    } else {
        "-".into()
    }
}

struct SizeResult {
    w: u32,
    h: u32,
    cal: Calibration,
    unpaced: BTreeMap<Design, Run>,
    paced: BTreeMap<Design, Run>,
    base_pagecam: Usage,
    base_naive: Usage,
    frames: (u64, u64),
}

impl SizeResult {
    fn base(&self, d: Design) -> &Usage {
        match d {
            Design::Naive | Design::NaiveWriteback => &self.base_naive,
            _ => &self.base_pagecam,
        }
    }

    /// Whole-run (wait4) capture and analyzer CPU per frame, µs.
    fn whole(&self, d: Design) -> (f64, f64) {
        cpu_us(&self.unpaced[&d], self.base(d), &self.cal)
    }

    fn steady_us(&self, paced: bool, d: Design) -> Option<f64> {
        let runs = if paced { &self.paced } else { &self.unpaced };
        Some(runs.get(&d)?.steady()?.total_us(&self.cal))
    }
}

const DESIGNS: [Design; 6] = [
    Design::Direct,
    Design::Copy,
    Design::NoPrefault,
    Design::NoWriteback,
    Design::Naive,
    Design::NaiveWriteback,
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = naive::run_role(&args) {
        return code;
    }
    let quick =
        args.iter().any(|a| a == "--quick") || std::env::var_os("PAGECAM_BENCH_QUICK").is_some();
    match bench(quick) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pipeline bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(quick: bool) -> Result<(), String> {
    let started = Instant::now();
    let bins = Bins {
        capture: PathBuf::from(env!("CARGO_BIN_EXE_pagecam-capture")),
        analyzer: PathBuf::from(env!("CARGO_BIN_EXE_pagecam-analyzer")),
        me: std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?,
    };
    let tmp = tempfile::Builder::new()
        .prefix("pipeline-bench")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .map_err(|e| format!("tempdir: {e}"))?;
    let dir = tmp.path();
    let machine = machine(dir);
    eprintln!("pipeline bench: {machine}");

    let (hot, paced) = if quick { (2000, 20) } else { (10000, 60) };
    eprintln!("pipeline bench: socket floor");
    let f1 = measure_floor(&bins, dir, hot, paced)?;

    let mut results = Vec::new();
    for (w, h) in SIZES {
        let format = FrameFormat::uncompressed(YUYV, w, h).map_err(|e| e.to_string())?;
        let (n_unpaced, n_paced) = frame_counts(w, quick);
        eprintln!("pipeline bench: {w}x{h}: calibrating");
        let cal = calibrate(format);
        let cfg = |fps, frames, sample| Cfg {
            bins: &bins,
            dir,
            w,
            h,
            fps,
            frames,
            sample,
        };
        // Fixed costs (start, file creation, connection, exit) of each
        // design's capture, subtracted from whole-run CPU before dividing.
        let base_pagecam = run_pagecam(&cfg(0, 0, false), Design::NoPrefault, "base")?.cap;
        let base_naive = run_naive(&cfg(0, 0, false), false, "base")?.cap;
        // Unpaced runs are short: each design runs twice, the second round
        // in reverse order, and the run with less CPU per frame is kept
        // (a noisy neighbour only ever adds CPU time).
        let mut unpaced: BTreeMap<Design, Run> = BTreeMap::new();
        let mut paced_runs = BTreeMap::new();
        let order: Vec<Design> = DESIGNS
            .iter()
            .chain(DESIGNS.iter().rev())
            .copied()
            .collect();
        for (i, d) in order.into_iter().enumerate() {
            eprintln!(
                "pipeline bench: {w}x{h}: {}: {n_unpaced} frames unpaced",
                d.label()
            );
            let r = run(&cfg(0, n_unpaced, true), d, &format!("u{w}-{d:?}-{i}"))?;
            let base = if matches!(d, Design::Naive | Design::NaiveWriteback) {
                &base_naive
            } else {
                &base_pagecam
            };
            let total = |r: &Run| {
                let (c, a) = cpu_us(r, base, &cal);
                c + a
            };
            if unpaced.get(&d).is_none_or(|old| total(&r) < total(old)) {
                unpaced.insert(d, r);
            }
        }
        for d in DESIGNS {
            eprintln!(
                "pipeline bench: {w}x{h}: {}: {n_paced} frames at {PACED_FPS} fps",
                d.label()
            );
            let r = run(&cfg(PACED_FPS, n_paced, true), d, &format!("p{w}-{d:?}"))?;
            paced_runs.insert(d, r);
        }
        results.push(SizeResult {
            w,
            h,
            cal,
            unpaced,
            paced: paced_runs,
            base_pagecam,
            base_naive,
            frames: (n_unpaced, n_paced),
        });
    }
    eprintln!("pipeline bench: socket floor again");
    let f2 = measure_floor(&bins, dir, hot, paced)?;
    let floor = Floor {
        rtt_us: sorted(f1.rtt_us.into_iter().chain(f2.rtt_us).collect()),
        paced_one_way_us: sorted(
            f1.paced_one_way_us
                .into_iter()
                .chain(f2.paced_one_way_us)
                .collect(),
        ),
    };
    report(&machine, &floor, &results, started.elapsed());
    Ok(())
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.filter(|v| v.is_finite())
        .map_or("-".into(), |v| format!("{v:.digits$}"))
}

fn report(machine: &str, floor: &Floor, results: &[SizeResult], took: Duration) {
    let rtt50 = pct(&floor.rtt_us, 50.0);
    let hot_one_way = rtt50 / 2.0;
    let paced50 = pct(&floor.paced_one_way_us, 50.0);
    let wmem = std::fs::read_to_string("/proc/sys/net/core/wmem_max").unwrap_or_default();
    println!("# pagecam pipeline benchmark\n");
    println!("Machine: {machine}.\n");
    println!(
        "One run of {:.0} s; every ratio compares figures of this run only. YUYV frames; every design records into a ring of {SLOTS} page-aligned slots of a preallocated file (so slots are reused), synced at the end. Naive = `SOCK_STREAM` Unix socket with SO_SNDBUF set to 2 frames (capped by net.core.wmem_max = {}).\n",
        took.as_secs_f64(),
        wmem.trim()
    );
    println!("Designs: A = pagecam `--delivery direct` (zero-copy); B = pagecam `--delivery copy` (one memcpy, the V4L2 MMAP path); C = A with `--no-prefault`; A-lazy = A with `--no-writeback --max-loss 2h` (diagnostic: no `sync_file_range`, no periodic `fdatasync`: writeback left to the kernel as in D); D = naive: memcpy into a process buffer, send whole over the stream socket, analyzer receives into its own buffer, capture `write`s to the ring file, writeback left to the kernel; D-eager = D with pagecam's default durability work (diagnostic: `sync_file_range(WRITE)` after each frame, `fdatasync` every 0.5 s).\n");
    println!(
        "Socket floor, 64-byte `SOCK_SEQPACKET` between two processes: back-to-back RTT p50 {:.1} µs / p99 {:.1} µs, so one-way = RTT/2 = {:.1} µs. Paced one-way (one message per frame interval of the paced runs, 1/{PACED_FPS} s, to a receiver blocked in recv, as an analyzer between frames): p50 {:.1} µs / p99 {:.1} µs. ({} round trips, {} paced messages, measured before and after the designs.)\n",
        rtt50,
        pct(&floor.rtt_us, 99.0),
        hot_one_way,
        paced50,
        pct(&floor.paced_one_way_us, 99.0),
        floor.rtt_us.len(),
        floor.paced_one_way_us.len()
    );
    println!("Calibrated in this process, CPU µs per frame (best of 3): `Pattern::render` into a reused private buffer (subtracted from every design's capture CPU: all designs render); for reference crc32c of a frame, `Analyzer::analyse` of a frame, memcpy of a frame.\n");
    println!("| size | render | crc32c | analyse | memcpy | pagecam startup (subtracted) | naive startup (subtracted) |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in results {
        println!(
            "| {}x{} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} ms | {:.1} ms |",
            r.w,
            r.h,
            r.cal.render_ns / 1e3,
            r.cal.crc_ns / 1e3,
            r.cal.analyse_ns / 1e3,
            r.cal.memcpy_ns / 1e3,
            r.base_pagecam.cpu_ns as f64 / 1e6,
            r.base_naive.cpu_ns as f64 / 1e6,
        );
    }

    println!("\n## 1. Copies and throughput (unpaced: `--fps 0`)\n");
    println!("User memcpy: B = the slot copy from the source's own buffer (capture's `bytes_copied_per_frame`); D = driver buffer → process buffer. Kernel copy (copy_from/to_user): pagecam = the 56-byte notice sent and received, plus a 16-byte progress message each way every 8 frames; D = send (frame + 48-byte header) + recv (the same) + `write` into the page cache, counted by the naive processes. The test pattern's render (all designs) and writeback to disk (DMA) are not copies by the CPU in user space and are not counted. End-to-end fps = frames the analyzer held ÷ (first frame's capture time → last frame's analysis end). pagecam never blocks capture on an analyzer, so unpaced it can outrun the analyzer: then frames are overwritten or notices dropped, listed under drops (not a sustainable rate); D blocks on its socket instead.\n");
    println!("| size | design | frames | user memcpy B/frame | kernel copy B/frame | capture fps | end-to-end fps | e2e fps vs naive | drops |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---|");
    for r in results {
        let naive_fps = r.unpaced[&Design::Naive].e2e_fps();
        for (d, run) in &r.unpaced {
            println!(
                "| {}x{} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} |",
                r.w,
                r.h,
                d.label(),
                run.cap_frames,
                run.user_copy,
                run.kernel_copy,
                run.cap_fps,
                run.e2e_fps(),
                ratio(run.e2e_fps(), naive_fps),
                run.drops.describe()
            );
        }
    }

    println!("\n## 2. CPU µs per frame, capture (net of render) + analyzer, unpaced\n");
    println!("Whole run = wait4 rusage (utime+stime, all threads) minus the startup baseline, over all frames. Steady state = /proc schedstat of all threads between samples taken after the ring wrapped.\n");
    println!("| size | design | whole run: capture | analyzer | total | vs naive | steady state: capture | analyzer | total | vs naive |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let rat = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => ratio(x, y),
        _ => "-".into(),
    };
    for r in results {
        let (nc, na) = r.whole(Design::Naive);
        let nu = r.steady_us(false, Design::Naive);
        for (d, run) in &r.unpaced {
            let (c, a) = r.whole(*d);
            let st = run.steady();
            println!(
                "| {}x{} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
                r.w,
                r.h,
                d.label(),
                c,
                a,
                c + a,
                ratio(c + a, nc + na),
                opt(st.map(|s| (s.cap_ns - r.cal.render_ns) / 1e3), 0),
                opt(st.map(|s| s.ana_ns / 1e3), 0),
                opt(r.steady_us(false, *d), 0),
                rat(r.steady_us(false, *d), nu),
            );
        }
    }

    println!("\n## 3. CPU µs per frame at a camera's pace (`--fps {PACED_FPS}`), steady state\n");
    println!("The last two columns also subtract the calibrated `Analyzer::analyse` cost: what is left is each design's own cost of moving, storing and announcing frames.\n");
    println!("| size | design | capture | analyzer | total | vs naive | total excl. analyse | vs naive |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let np = r.steady_us(true, Design::Naive);
        let an = r.cal.analyse_ns / 1e3;
        for (d, run) in &r.paced {
            let st = run.steady();
            let p = r.steady_us(true, *d);
            println!(
                "| {}x{} | {} | {} | {} | {} | {} | {} | {} |",
                r.w,
                r.h,
                d.label(),
                opt(st.map(|s| (s.cap_ns - r.cal.render_ns) / 1e3), 0),
                opt(st.map(|s| s.ana_ns / 1e3), 0),
                opt(p, 0),
                rat(p, np),
                opt(p.map(|p| p - an), 0),
                rat(p.map(|p| p - an), np.map(|n| n - an)),
            );
        }
    }

    println!("\n## 4. Notification latency at a camera's pace (`--fps {PACED_FPS}`): frame ready in capture → analyzer holds it\n");
    println!("pagecam: the analyzer's `notify_us` (capture stamps `ready_ns` after commit, just before the send; the analyzer stamps inside `read_frame`). Naive: stamped after the memcpy, just before the send; stamped again when the whole frame is in the analyzer's buffer.\n");
    println!("| size | design | frames held | p50 µs | p99 µs | p50 vs floor RTT/2 | p50 vs paced floor | p50 vs naive | drops |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---|");
    for r in results {
        let n50 = pct(&r.paced[&Design::Naive].notify(), 50.0);
        for (d, run) in &r.paced {
            let lat = run.notify();
            let p50 = pct(&lat, 50.0);
            println!(
                "| {}x{} | {} | {} | {:.1} | {:.1} | {} | {} | {} | {} |",
                r.w,
                r.h,
                d.label(),
                lat.len(),
                p50,
                pct(&lat, 99.0),
                ratio(p50, hot_one_way),
                ratio(p50, paced50),
                ratio(p50, n50),
                run.drops.describe()
            );
        }
    }

    println!("\n## 5. Minor page faults per frame of the capture process\n");
    println!("| size | design | unpaced whole run (ru_minflt) | of which capture thread | unpaced steady state | of which capture thread | {PACED_FPS} fps steady state | of which capture thread |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for r in results {
        for (d, run) in &r.unpaced {
            let u = run.steady();
            let p = r.paced.get(d).and_then(Run::steady);
            println!(
                "| {}x{} | {} | {:.1} | {:.1} | {} | {} | {} | {} |",
                r.w,
                r.h,
                d.label(),
                run.cap.minflt as f64 / run.cap_frames.max(1) as f64,
                run.cap.main_minflt as f64 / run.cap_frames.max(1) as f64,
                opt(u.map(|s| s.flt), 1),
                opt(u.map(|s| s.main_flt), 1),
                opt(p.map(|s| s.flt), 1),
                opt(p.map(|s| s.main_flt), 1),
            );
        }
    }

    println!("\n## Targets at 1920x1080\n");
    if let Some(r) = results.iter().find(|r| r.w == 1920) {
        let (nc, na) = r.whole(Design::Naive);
        for d in [Design::Direct, Design::Copy] {
            let (c, a) = r.whole(d);
            let x = (nc + na) / (c + a);
            let steady = match (r.steady_us(true, Design::Naive), r.steady_us(true, d)) {
                (Some(n), Some(p)) => format!("{:.2}x", n / p),
                _ => "-".into(),
            };
            println!(
                "- CPU/frame, naive ÷ {}: {x:.2}x (target >= 2.5x): {} (unpaced whole run; at {PACED_FPS} fps steady state: {steady})",
                d.label(),
                if x >= 2.5 { "MET" } else { "NOT MET" },
            );
        }
        let (n, l) = (
            r.steady_us(true, Design::Naive),
            r.steady_us(true, Design::NoWriteback),
        );
        if let (Some(n), Some(l)) = (n, l) {
            let an = r.cal.analyse_ns / 1e3;
            println!(
                "- like for like (no writeback during the run in either): naive ÷ A-lazy at {PACED_FPS} fps steady state: {:.2}x; excluding `analyse`: {:.2}x",
                n / l,
                (n - an) / (l - an)
            );
        }
        for d in [Design::Direct, Design::Copy] {
            let p50 = pct(&r.paced[&d].notify(), 50.0);
            let x = p50 / hot_one_way;
            println!(
                "- notify p50, {}: {p50:.1} µs = {x:.2}x the floor RTT/2 of {hot_one_way:.1} µs (target <= 1.5x): {}; {:.2}x the paced one-way floor of {paced50:.1} µs",
                d.label(),
                if x <= 1.5 { "MET" } else { "NOT MET" },
                p50 / paced50
            );
        }
    }
    let counts: Vec<String> = results
        .iter()
        .map(|r| {
            format!(
                "{}x{}: {} unpaced / {} paced",
                r.w, r.h, r.frames.0, r.frames.1
            )
        })
        .collect();
    println!("\nFrames per run: {}. Steady state = from the first frame after the ring wrapped (sequence {}) to the last, from /proc counters sampled every 5 ms.", counts.join(", "), SLOTS + 2);
}

//! `pagecam-capture`: record frames from a camera (or the built-in test
//! source) into a pre-allocated recording file and notify analyzers.
//!
//! A thin binary: parse arguments, validate them into the library's types,
//! run `pagecam::capture::run`, map errors to exit codes. All frame handling
//! lives in the `pagecam` crate.

mod status;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, ValueEnum};
use serde::Serialize;

use pagecam::capture::{Limits, StopReason};
use pagecam::format::{self, FrameFormat, Header, Layout, OnFull};
use pagecam::persist::{PersistConfig, SyncMode};
use pagecam::recording::{wall_ns, Prealloc};
use pagecam::service::{self, Notify, RING_FD_NAME};
use pagecam::session::{RecordingPlan, Session, SessionConfig, SessionError};
use pagecam::source::pattern::TestSource;
use pagecam::source::v4l2::{self, IoMode, V4l2Config, V4l2Source};
use pagecam::source::{Delivery, FrameSource};
use pagecam::store::StoreKind;

/// Exit codes (README, "Exit codes").
const EXIT_USAGE: u8 = 1;
const EXIT_SOURCE: u8 = 2;
const EXIT_STORAGE: u8 = pagecam::EXIT_STORAGE as u8;
const EXIT_SOCKET: u8 = 4;

#[derive(Parser, Debug)]
#[command(
    name = "pagecam-capture",
    version,
    about = "Record a camera into a pre-allocated recording file; analyzers read frames in place."
)]
struct Args {
    /// Recording file to create (must not exist, unless --resume).
    #[arg(short, long, required_unless_present_any = ["list_devices", "list_formats"])]
    output: Option<PathBuf>,
    /// List V4L2 devices (driver, card, bus, capabilities) and exit.
    #[arg(long)]
    list_devices: bool,
    /// List a device's formats, frame sizes and intervals and exit.
    #[arg(long, value_name = "DEVICE")]
    list_formats: Option<PathBuf>,
    /// Continue an existing recording after its newest valid frame, with a
    /// new session number (format and size come from the file); creates it
    /// if it does not exist yet (so a service can always pass --resume).
    #[arg(long)]
    resume: bool,
    /// How to reserve the file's blocks: `fallocate` (instant) or `zero`
    /// (write the whole file once: no metadata changes while recording).
    #[arg(long, value_enum, default_value_t = PreallocArg::Fallocate)]
    prealloc: PreallocArg,
    /// Frames older than this survive a power cut (fdatasync every half of it).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    max_loss: Duration,
    /// Drop frames from the page cache once on disk and read by every
    /// analyzer (keeps memory bounded on small boards; in wrap mode the next
    /// lap must read pages back before rewriting them).
    #[arg(long)]
    drop_cache: bool,
    /// `test` for the built-in pattern, or a V4L2 device such as /dev/video0.
    #[arg(long, default_value = "test")]
    source: String,
    /// Pixel format (fourcc), e.g. YUYV, GREY, NV12.
    /// [default: YUYV for the test source; the device's current format for V4L2]
    #[arg(long)]
    format: Option<String>,
    /// Frame size WIDTHxHEIGHT.
    /// [default: 640x480 for the test source; the device's current size for V4L2]
    #[arg(long, value_parser = parse_geometry)]
    size: Option<(u32, u32)>,
    /// Frames per second (test source: 0 = as fast as possible).
    /// [default: 30 for the test source; the device's current rate for V4L2]
    #[arg(long)]
    fps: Option<u32>,
    /// V4L2 I/O: `userptr` (the driver writes into the recording: zero
    /// copies), `mmap` (driver buffers, one copy per frame), or `auto`
    /// (userptr, falling back to mmap when the driver or kernel refuses).
    #[arg(long, default_value = "auto")]
    io: IoMode,
    /// V4L2 buffers to request.
    #[arg(long, default_value_t = 4)]
    buffers: u32,
    /// Stop with an error if the device delivers no frame for this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    frame_timeout: Duration,
    /// Set a V4L2 control before streaming, by its v4l2-ctl name
    /// (e.g. --ctrl test_pattern=0); repeatable.
    #[arg(long = "ctrl", value_name = "NAME=VALUE", value_parser = parse_ctrl)]
    controls: Vec<(String, i64)>,
    /// Test source: fill slots in place like a USERPTR driver (`direct`),
    /// or fill a buffer of its own that is copied once like MMAP (`copy`).
    #[arg(long, value_enum, default_value_t = DeliveryArg::Direct)]
    delivery: DeliveryArg,
    /// Size of the recording file, e.g. 512MiB, 2GiB (unless --slots or --ring-seconds).
    #[arg(long, value_parser = parse_size, default_value = "256MiB")]
    capacity: u64,
    /// Number of frame slots (overrides --capacity).
    #[arg(long)]
    slots: Option<u32>,
    /// Size the ring to hold this many seconds at --fps (overrides --capacity).
    #[arg(long)]
    ring_seconds: Option<u32>,
    /// When every slot holds a frame: `wrap` reuses the oldest, `stop` ends.
    #[arg(long, value_enum, default_value_t = OnFullArg::Wrap)]
    on_full: OnFullArg,
    /// Unix socket for analyzers [default: OUTPUT.sock].
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Stop after this many frames.
    #[arg(long)]
    frames: Option<u64>,
    /// Stop after this long, e.g. 10s, 2min.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Drop an analyzer whose socket has stayed full this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    stuck_timeout: Duration,
    /// Where live frames are kept. `direct` (default): a small sealed RAM
    /// ring (memfd) that the driver fills and that is written to the
    /// recording with O_DIRECT from the same pages: no copies, no page
    /// faults, no page cache, on every kernel. `file`: the recording file's
    /// own mapping (the page cache is the frame store; writeback persists
    /// it; faults once per page after each writeback).
    #[arg(long, value_enum, default_value_t = StoreArg::Direct)]
    store: StoreArg,
    /// Size of the RAM ring of `--store direct`: a duration at the frame
    /// rate (e.g. 500ms, 2s) or a number of frames (e.g. 16). It bounds
    /// memory and how long the disk may stall before frames are dropped.
    #[arg(long, default_value = "500ms", value_parser = parse_ring)]
    ram_ring: RingSize,
    /// How `--store direct` makes frames durable: `cadence` (an fdatasync
    /// every --max-loss/2) or `dsync` (every write O_DSYNC: durable at once,
    /// in order).
    #[arg(long, value_enum, default_value_t = SyncArg::Cadence)]
    sync: SyncArg,
    /// File store, when frames are copied (MMAP, `--delivery copy`): copy
    /// through the mapping (`map`) or with `pwrite` into the page cache
    /// (`pwrite`: no page faults on write-protected pages).
    #[arg(long, value_enum, default_value_t = CopyArg::Map)]
    copy_into: CopyArg,
    /// Do not prefault upcoming slots (file store; for measurements).
    #[arg(long)]
    no_prefault: bool,
    /// Do not start writeback of finished slots (for measurements).
    #[arg(long)]
    no_writeback: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StoreArg {
    Direct,
    File,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum CopyArg {
    Map,
    Pwrite,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SyncArg {
    Cadence,
    Dsync,
}

#[derive(Clone, Copy, Debug)]
enum RingSize {
    Frames(u32),
    Time(Duration),
}

fn parse_ring(s: &str) -> Result<RingSize, String> {
    if let Ok(n) = s.parse::<u32>() {
        return if n == 0 {
            Err("the RAM ring needs at least one frame".into())
        } else {
            Ok(RingSize::Frames(n))
        };
    }
    humantime::parse_duration(s)
        .map(RingSize::Time)
        .map_err(|e| format!("{e} (a duration such as 500ms or 2s, or a number of frames)"))
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DeliveryArg {
    Direct,
    Copy,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PreallocArg {
    Fallocate,
    Zero,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OnFullArg {
    Wrap,
    Stop,
}

fn parse_geometry(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or("expected WIDTHxHEIGHT, e.g. 1280x720")?;
    Ok((
        w.parse().map_err(|_| "bad width")?,
        h.parse().map_err(|_| "bad height")?,
    ))
}

fn parse_ctrl(s: &str) -> Result<(String, i64), String> {
    let (k, v) = s.split_once('=').ok_or("expected NAME=VALUE")?;
    let v = v
        .trim()
        .parse()
        .map_err(|_| format!("control value '{v}' is not an integer"))?;
    Ok((k.trim().to_string(), v))
}

fn parse_size(s: &str) -> Result<u64, String> {
    parse_size::parse_size(s).map_err(|e| format!("{e} (e.g. 512MiB, 2GiB)"))
}

fn parse_fourcc(s: &str) -> anyhow::Result<u32> {
    let b = s.as_bytes();
    if b.len() > 4 || b.is_empty() {
        bail!("pixel format must be a fourcc such as YUYV");
    }
    let mut code = [b' '; 4];
    code[..b.len()].copy_from_slice(b);
    Ok(format::fourcc(&code))
}

/// What the run printed on stdout at the end (one JSON object).
#[derive(Serialize)]
struct SummaryOut {
    frames: u64,
    source_dropped: u64,
    error_frames: u64,
    bytes_copied: u64,
    bytes_copied_per_frame: u64,
    delivery: &'static str,
    store: &'static str,
    /// Frames dropped because the disk was behind by the whole RAM ring.
    disk_dropped: u64,
    notifications_dropped: u64,
    analyzers_disconnected: u64,
    /// fdatasyncs run, and the longest: a frame is durable at most
    /// max_loss/2 plus one fdatasync after its commit.
    fdatasyncs: u64,
    worst_fdatasync_ms: f64,
    /// Longest write of one frame to the recording (direct store).
    worst_write_ms: f64,
    stop_reason: String,
    seconds: f64,
    fps: f64,
    output: PathBuf,
}

struct Failure(u8, anyhow::Error);

fn fail(code: u8) -> impl FnOnce(anyhow::Error) -> Failure {
    move |e| Failure(code, e)
}

fn main() -> ExitCode {
    // Before any thread exists: this reads and clears LISTEN_* variables.
    let handed_over = service::take_listen_fds();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PAGECAM_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    pagecam::mapping::sigbus::install();
    let args = Args::parse();
    if args.list_devices || args.list_formats.is_some() {
        return list(&args);
    }
    match run(args, handed_over) {
        Ok(code) => code,
        Err(Failure(code, e)) => {
            eprintln!("pagecam-capture: error: {e:#}");
            ExitCode::from(code)
        }
    }
}

fn open_source(args: &Args) -> Result<Box<dyn FrameSource>, Failure> {
    let fourcc = args
        .format
        .as_deref()
        .map(parse_fourcc)
        .transpose()
        .map_err(fail(EXIT_USAGE))?;
    if args.source == "test" {
        let (w, h) = args.size.unwrap_or((640, 480));
        let format = FrameFormat::uncompressed(fourcc.unwrap_or(format::YUYV), w, h)
            .map_err(|e| Failure(EXIT_USAGE, e.into()))?;
        let delivery = match args.delivery {
            DeliveryArg::Direct => Delivery::Direct,
            DeliveryArg::Copy => Delivery::Copy,
        };
        let src = TestSource::new(format, args.fps.unwrap_or(30), delivery)
            .map_err(|e| Failure(EXIT_USAGE, e.into()))?;
        return Ok(Box::new(src));
    }
    let cfg = V4l2Config {
        device: PathBuf::from(&args.source),
        fourcc,
        width: args.size.map(|s| s.0),
        height: args.size.map(|s| s.1),
        fps: args.fps,
        io: args.io,
        frame_timeout: args.frame_timeout,
        buffers: args.buffers,
        controls: args.controls.clone(),
    };
    let src = V4l2Source::open(&cfg).map_err(|e| Failure(EXIT_SOURCE, e.into()))?;
    for note in src.negotiation_notes() {
        if differs(&note) {
            tracing::warn!("{note}");
        } else {
            tracing::info!("{note}");
        }
    }
    Ok(Box::new(src))
}

/// Whether a negotiation note says the driver did not do what was asked.
fn differs(note: &str) -> bool {
    if let Some(rest) = note.strip_prefix("asked ") {
        if let Some((asked, chose)) = rest.split_once(", driver chose ") {
            return asked.split_whitespace().next() != chose.split_whitespace().next();
        }
        return true;
    }
    note.contains("cannot") || note.contains("does not") || note.contains("assuming")
}

/// `--list-devices` / `--list-formats`.
fn list(args: &Args) -> ExitCode {
    if args.list_devices {
        let devices = v4l2::list_devices();
        if devices.is_empty() {
            println!("no V4L2 devices (/dev/video*)");
        }
        for d in devices {
            println!("{d}");
        }
    }
    if let Some(dev) = &args.list_formats {
        match v4l2::list_formats(dev) {
            Ok(formats) => formats.iter().for_each(|f| println!("{f}")),
            Err(e) => {
                eprintln!("pagecam-capture: error: {e}");
                return ExitCode::from(EXIT_SOURCE);
            }
        }
    }
    ExitCode::SUCCESS
}

fn layout_for(args: &Args, format: &FrameFormat, fps: f64) -> anyhow::Result<Layout> {
    let layout = if let Some(n) = args.slots {
        Layout::new(format.frame_size, n)?
    } else if let Some(secs) = args.ring_seconds {
        let n = (secs as f64 * fps.max(1.0)).ceil() as u32;
        Layout::new(format.frame_size, n.max(1))?
    } else {
        Layout::fitting(format.frame_size, args.capacity)?
    };
    Ok(layout)
}

/// The recording to create (or resume) for this source.
fn recording_plan(args: &Args, source: &dyn FrameSource) -> Result<RecordingPlan, Failure> {
    let format = source.format();
    let interval = source.interval();
    let layout = layout_for(args, &format, interval.fps()).map_err(fail(EXIT_USAGE))?;
    let header = Header {
        format,
        interval,
        layout,
        on_full: match args.on_full {
            OnFullArg::Wrap => OnFull::Wrap,
            OnFullArg::Stop => OnFull::Stop,
        },
        created_ns: wall_ns(),
        source: source.describe(),
    };
    let prealloc = match args.prealloc {
        PreallocArg::Fallocate => Prealloc::Fallocate,
        PreallocArg::Zero => Prealloc::Zero,
    };
    Ok(if args.resume {
        RecordingPlan::Resume {
            create: Some((header, prealloc)),
        }
    } else {
        RecordingPlan::Create { header, prealloc }
    })
}

/// Slots of the RAM ring: enough for the driver's queue plus room for the
/// disk to fall behind.
fn ram_slots(args: &Args, fps: f64) -> u32 {
    let wanted = match args.ram_ring {
        RingSize::Frames(n) => n,
        RingSize::Time(d) => (d.as_secs_f64() * fps.max(1.0)).ceil().min(u32::MAX as f64) as u32,
    };
    wanted.max(args.buffers.saturating_add(3)).max(4)
}

fn session_error(e: SessionError) -> Failure {
    let code = match &e {
        SessionError::FormatMismatch { .. } => EXIT_USAGE,
        SessionError::Socket(_) => EXIT_SOCKET,
        _ => EXIT_STORAGE,
    };
    Failure(
        code,
        anyhow::Error::new(e).context("cannot start recording"),
    )
}

/// What capture tells the service manager: READY=1 once the first frame is
/// committed (the socket listens by then), WATCHDOG=1 from the capture loop
/// (a stuck driver or loop stops the pings and the manager restarts us).
struct ServiceHooks {
    notify: Arc<Notify>,
    ready: AtomicBool,
    watchdog: Option<Duration>,
    started: std::time::Instant,
    /// Milliseconds since `started` of the last ping.
    last_ping_ms: std::sync::atomic::AtomicU64,
}

impl ServiceHooks {
    fn on_frame(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.notify.enabled() {
            return;
        }
        if !self.ready.swap(true, Relaxed) {
            let _ = self.notify.send("READY=1\nSTATUS=recording");
        }
        if let Some(every) = self.watchdog {
            let now = self.started.elapsed().as_millis() as u64;
            if now.saturating_sub(self.last_ping_ms.load(Relaxed)) >= every.as_millis() as u64 / 2 {
                self.last_ping_ms.store(now, Relaxed);
                let _ = self.notify.send("WATCHDOG=1");
            }
        }
    }
}

fn run(args: Args, handed_over: Vec<(String, std::os::fd::OwnedFd)>) -> Result<ExitCode, Failure> {
    let output = args.output.clone().expect("clap requires --output");
    let notify = Arc::new(Notify::from_env());
    let recover_ring = handed_over
        .into_iter()
        .find(|(name, _)| name == RING_FD_NAME)
        .map(|(_, fd)| std::fs::File::from(fd));
    let mut source = open_source(&args)?;
    let format = source.format();
    let socket = args.socket.clone().unwrap_or_else(|| {
        let mut p = output.clone().into_os_string();
        p.push(".sock");
        PathBuf::from(p)
    });
    let cfg = SessionConfig {
        output: output.clone(),
        plan: recording_plan(&args, source.as_ref())?,
        format,
        store: match args.store {
            StoreArg::Direct => StoreKind::Direct,
            StoreArg::File => StoreKind::File,
        },
        ram_slots: ram_slots(&args, source.interval().fps()),
        copy_by_pwrite: args.copy_into == CopyArg::Pwrite,
        socket: socket.clone(),
        persist: PersistConfig {
            max_loss: args.max_loss,
            sync: match args.sync {
                SyncArg::Cadence => SyncMode::Cadence,
                SyncArg::Dsync => SyncMode::Dsync,
            },
            prefault_slots: if args.no_prefault { 0 } else { 3 },
            writeback: !args.no_writeback,
            drop_cache: args.drop_cache,
            ..Default::default()
        },
        stuck_after: args.stuck_timeout,
        recover_ring,
        service: notify.clone(),
    };
    let (mut session, opened) = Session::open(cfg).map_err(session_error)?;
    if let Some(r) = &opened.recovered {
        if let (Some(a), Some(b)) = (r.first, r.last) {
            tracing::warn!(
                "recovered {} frames ({a}..={b}) that a crashed capture had not written yet",
                r.frames
            );
        }
    }
    if let Some(e) = &opened.recovery_failed {
        tracing::warn!("could not recover the previous capture's RAM ring: {e}");
    }
    let header = session.header().clone();
    let layout = header.layout;
    if opened.resumed {
        tracing::info!(
            "resuming at sequence {} as session {}",
            session.ring().next_sequence(),
            session.ring().session()
        );
    }
    tracing::info!(
        "recording {}: {format}, {} slots of {} bytes, {} MiB, on full: {:?}",
        output.display(),
        layout.slot_count,
        layout.slot_size,
        layout.file_size >> 20,
        header.on_full
    );
    if let Some(ring) = &opened.ring {
        tracing::info!(
            "store: RAM ring of {} frames ({} MiB, sealed memfd), persisted with {}",
            session.live_layout().slot_count,
            ring.bytes >> 20,
            opened.persist_mode
        );
        if let Some(e) = &ring.populate_error {
            tracing::warn!(
                "could not populate the RAM ring ({e}); its pages fault in on first use"
            );
        }
        if let Some(e) = &ring.lock_error {
            tracing::warn!(
                "could not lock the RAM ring in memory ({e}; raise LimitMEMLOCK or RLIMIT_MEMLOCK): \
                 under memory pressure its pages may be swapped out"
            );
        }
    } else {
        tracing::info!(
            "store: the recording file's mapping, persisted by {}",
            opened.persist_mode
        );
    }
    tracing::info!("analyzers connect to {}", socket.display());

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| {
            Failure(
                EXIT_USAGE,
                anyhow::anyhow!("cannot install signal handler: {e}"),
            )
        })?;
    }
    let status = status::Status::spawn(status::Watched {
        counters: session.counters().clone(),
        notifier: session.notifier().clone(),
        progress: session.progress().clone(),
        map: session.store().mapping().clone(),
        store: session.store().kind(),
    });

    let limits = Limits {
        frames: args.frames,
        duration: args.duration,
    };
    let hooks = ServiceHooks {
        notify: notify.clone(),
        ready: AtomicBool::new(false),
        watchdog: service::watchdog_interval(),
        started: std::time::Instant::now(),
        last_ping_ms: Default::default(),
    };
    let on_frame = || hooks.on_frame();
    let summary = session.run(source.as_mut(), limits, &stop, Some(&on_frame));
    let _ = notify.send("STOPPING=1");
    drop(status);
    if let Some(note) = source.delivery_note() {
        tracing::warn!("{note}");
    }
    drop(source);
    let store = session.store().kind();
    let finished = session.finish(summary);
    let summary = &finished.summary;
    let secs = summary.elapsed.as_secs_f64();
    let out = SummaryOut {
        frames: summary.frames,
        source_dropped: summary.source_dropped,
        error_frames: summary.error_frames,
        bytes_copied: summary.bytes_copied,
        bytes_copied_per_frame: summary
            .bytes_copied
            .checked_div(summary.frames)
            .unwrap_or(0),
        delivery: summary.delivery.name(),
        store: store.name(),
        disk_dropped: summary.disk_dropped,
        notifications_dropped: finished.notifications_dropped,
        fdatasyncs: finished.syncs,
        worst_fdatasync_ms: finished.worst_sync_ms,
        worst_write_ms: finished.worst_write_ms,
        analyzers_disconnected: finished.analyzers_disconnected,
        stop_reason: summary.reason.to_string(),
        seconds: secs,
        fps: summary.frames as f64 / secs.max(1e-9),
        output: output.clone(),
    };
    println!(
        "{}",
        serde_json::to_string(&out).expect("summary serializes")
    );
    tracing::info!(
        "{} frames in {:.1} s ({:.1} fps), {} dropped by the source, {} by a slow disk, {} error frames; {}",
        out.frames,
        secs,
        out.fps,
        out.source_dropped,
        out.disk_dropped,
        out.error_frames,
        summary.reason
    );
    if let Some(e) = &finished.storage_failure {
        return Err(Failure(
            EXIT_STORAGE,
            anyhow::anyhow!("storage failed: {e}"),
        ));
    }
    match &finished.summary.reason {
        StopReason::Source(e) => Err(Failure(EXIT_SOURCE, anyhow::anyhow!("{e}"))),
        StopReason::Storage(e) => Err(Failure(
            EXIT_STORAGE,
            anyhow::anyhow!("storage failed: {e}"),
        )),
        _ => Ok(ExitCode::SUCCESS),
    }
}

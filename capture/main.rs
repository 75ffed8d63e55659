//! `pagecam-capture`: record frames from a camera (or the built-in test
//! source) into a pre-allocated recording file and notify analyzers.
//!
//! A thin binary: parse arguments, validate them into the library's types,
//! run `pagecam::capture::run`, map errors to exit codes. All frame handling
//! lives in the `pagecam` crate.

mod args;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use serde::Serialize;

use args::{Args, CopyArg, DeliveryArg, OnFullArg, PreallocArg, RingSize, StoreArg, SyncArg};

use pagecam::capture::{Limits, StopReason};
use pagecam::exit;
use pagecam::format::{self, FrameFormat, Header, Layout, OnFull};
use pagecam::persist::{PersistConfig, SyncMode};
use pagecam::recording::{wall_ns, Prealloc};
use pagecam::service::{self, Notify, RING_FD_NAME};
use pagecam::session::{RecordingPlan, Session, SessionConfig, SessionError};
use pagecam::source::pattern::TestSource;
use pagecam::source::v4l2::{self, V4l2Config, V4l2Source};
use pagecam::source::{Delivery, FrameSource, SourceError};
use pagecam::store::StoreKind;

use exit::capture::{
    SOCKET as EXIT_SOCKET, SOURCE as EXIT_SOURCE, SOURCE_GONE as EXIT_SOURCE_GONE,
    STORAGE as EXIT_STORAGE, USAGE as EXIT_USAGE,
};

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

/// The end of a run in words: what was recorded, what the file now holds,
/// what was lost and why.
fn human_summary(
    out: &SummaryOut,
    finished: &pagecam::session::Finished,
    header: &Header,
    live_slots: u32,
) -> String {
    let fps = header.interval.fps();
    let slots = header.layout.slot_count as u64;
    let total = finished.frames_in_recording;
    let mut t = format!(
        "pagecam-capture: {}: {} frames in {:.1} s ({:.1} fps)\n",
        out.stop_reason, out.frames, out.seconds, out.fps
    );
    let held = total.min(slots);
    let secs = if fps > 0.0 { held as f64 / fps } else { 0.0 };
    t += &format!(
        "  {} ({} MiB) holds {} frames, {:.1} s at {:.3} fps",
        out.output.display(),
        header.layout.file_size >> 20,
        held,
        secs,
        fps
    );
    if total > slots {
        t += &match header.on_full {
            OnFull::Wrap => format!(
                "; it is a loop recording of {slots} frames, so the {} oldest were overwritten\n",
                total - slots
            ),
            OnFull::Stop => " (full)\n".to_string(),
        };
    } else {
        t += "\n";
    }
    t += &format!(
        "  dropped: {} by the camera/source, {} because the disk was behind; {} error frames\n",
        out.source_dropped, out.disk_dropped, out.error_frames
    );
    t += &format!(
        "  {}: {} bytes copied per frame; store: {}{}; {} fdatasyncs, longest {:.1} ms\n",
        out.delivery,
        out.bytes_copied_per_frame,
        out.store,
        if out.store == "direct" {
            format!(" (RAM ring of {live_slots} frames)")
        } else {
            String::new()
        },
        out.fdatasyncs,
        out.worst_fdatasync_ms
    );
    if out.notifications_dropped > 0 || out.analyzers_disconnected > 0 {
        t += &format!(
            "  analyzers: {} notices dropped (an analyzer fell behind), {} disconnected\n",
            out.notifications_dropped, out.analyzers_disconnected
        );
    }
    t
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
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            // --help and --version are not errors; everything else is a
            // usage error (exit 1, as documented), not clap's default 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
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
    let fourcc = args.format;
    if args.device == "test" {
        let (w, h) = args.size.unwrap_or((640, 480));
        let format = FrameFormat::uncompressed(fourcc.unwrap_or(format::YUYV), w, h)
            .map_err(|e| Failure(EXIT_USAGE, e.into()))?;
        let delivery = match args.delivery {
            DeliveryArg::Direct => Delivery::Direct,
            DeliveryArg::Copy => Delivery::Copy,
        };
        let rate = args
            .fps
            .map_or(Some(format::Interval::from_fps(30)), |r| r.0);
        let script = args
            .pattern
            .clone()
            .unwrap_or_else(pagecam::source::pattern::Script::moving);
        let src = TestSource::with_script(format, rate, delivery, script)
            .map_err(|e| Failure(EXIT_USAGE, e.into()))?;
        return Ok(Box::new(src));
    }
    let cfg = V4l2Config {
        device: PathBuf::from(&args.device),
        fourcc,
        width: args.size.map(|s| s.0),
        height: args.size.map(|s| s.1),
        fps: args.fps.and_then(|r| r.0),
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
        let dev = if dev.is_empty() { &args.device } else { dev };
        if dev == "test" {
            eprintln!(
                "pagecam-capture: --list-formats needs a device: -d /dev/videoN --list-formats"
            );
            return ExitCode::from(EXIT_USAGE);
        }
        match v4l2::list_formats(std::path::Path::new(dev)) {
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

/// Who may connect as an analyzer, and the group for the recording.
fn access_of(args: &Args) -> Result<(pagecam::notify::Access, Option<u32>), Failure> {
    use nix::unistd::{Group, User};
    let usage = |m: String| Failure(EXIT_USAGE, anyhow::anyhow!(m));
    let group = match &args.group {
        Some(name) => Some(
            Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| usage(format!("--group {name}: no such group")))?
                .gid
                .as_raw(),
        ),
        None => None,
    };
    let mut uids = Vec::new();
    for name in &args.allow_users {
        let u = User::from_name(name)
            .ok()
            .flatten()
            .ok_or_else(|| usage(format!("--allow-user {name}: no such user")))?;
        uids.push(u.uid.as_raw());
    }
    let gids = vec![group.unwrap_or_else(|| nix::unistd::getegid().as_raw())];
    Ok((pagecam::notify::Access { uids, gids }, group))
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
    let (access, group) = access_of(&args)?;
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
        access,
        max_clients: args.max_analyzers.max(1),
        group,
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
        every: args.status_interval,
        notify: Some(notify.clone()),
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
    drop(source);
    let store = session.store().kind();
    let header = session.header().clone();
    let live_slots = session.live_layout().slot_count;
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
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&out).expect("summary serializes")
        );
    }
    eprint!("{}", human_summary(&out, &finished, &header, live_slots));
    if let Some(e) = &finished.storage_failure {
        return Err(Failure(
            EXIT_STORAGE,
            anyhow::anyhow!("storage failed: {e}"),
        ));
    }
    match &finished.summary.reason {
        StopReason::Source(e @ SourceError::Gone(_)) => {
            Err(Failure(EXIT_SOURCE_GONE, anyhow::anyhow!("{e}")))
        }
        StopReason::Source(e) => Err(Failure(EXIT_SOURCE, anyhow::anyhow!("{e}"))),
        StopReason::Storage(e) => Err(Failure(
            EXIT_STORAGE,
            anyhow::anyhow!("storage failed: {e}"),
        )),
        _ => Ok(ExitCode::SUCCESS),
    }
}

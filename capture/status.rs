//! The live status line (terminal) or periodic log lines (not a terminal).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pagecam::capture::Counters;
use pagecam::mapping::Mapping;
use pagecam::notify::Notifier;
use pagecam::ring::Progress;
use pagecam::service::Notify;
use pagecam::store::StoreKind;

/// What the status line watches.
pub struct Watched {
    pub counters: Arc<Counters>,
    pub notifier: Arc<Notifier>,
    pub progress: Arc<Progress>,
    pub map: Arc<Mapping>,
    pub store: StoreKind,
    /// How often to print.
    pub every: Duration,
    /// The service manager, told a short status every `STATUS_EVERY`
    /// (`systemctl status` shows it), whatever `every` is.
    pub notify: Option<Arc<Notify>>,
}

/// How often the service manager gets `STATUS=`.
const STATUS_EVERY: Duration = Duration::from_secs(2);

pub struct Status {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Status {
    pub fn spawn(w: Watched) -> Status {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let tty = std::io::stderr().is_terminal();
        let thread = std::thread::Builder::new()
            .name("pagecam-status".into())
            .spawn(move || status_loop(&w, tty, &flag))
            .ok();
        Status { stop, thread }
    }
}

impl Drop for Status {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Dirty bytes of the mapping starting at `start`, from /proc/self/smaps:
/// the `*_Dirty:` lines of the block whose header line starts `start-`.
fn dirty_bytes(start: usize) -> u64 {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let head = format!("{start:x}-");
    let Some(at) = smaps.find(&head) else {
        return 0;
    };
    let kb: u64 = smaps[at..]
        .lines()
        .skip(1)
        .take_while(|l| !is_mapping_header(l))
        .filter(|l| l.starts_with("Shared_Dirty:") || l.starts_with("Private_Dirty:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    kb * 1024
}

/// `7f12a000-7f13b000 rw-s ...`: the first line of a mapping's block.
fn is_mapping_header(line: &str) -> bool {
    line.split_whitespace()
        .next()
        .is_some_and(|t| t.contains('-') && t.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
}

fn status_loop(w: &Watched, tty: bool, stop: &AtomicBool) {
    let (c, n) = (&w.counters, &w.notifier);
    let every = w.every.max(Duration::from_millis(100));
    let (mut last_t, mut last_frames, mut last_bytes) = (Instant::now(), 0u64, 0u64);
    let mut service = w.notify.as_ref().filter(|n| n.enabled()).map(|n| {
        let frames = c.frames.load(Ordering::Relaxed);
        (n, Instant::now(), frames)
    });
    while !stop.load(Ordering::Relaxed) {
        let deadline = Instant::now() + every;
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            if let Some((n, t, f)) = &mut service {
                if t.elapsed() >= STATUS_EVERY {
                    let frames = c.frames.load(Ordering::Relaxed);
                    let fps = frames.saturating_sub(*f) as f64 / t.elapsed().as_secs_f64();
                    (*t, *f) = (Instant::now(), frames);
                    let published = w.progress.published.load(Ordering::Relaxed);
                    let durable = w.progress.durable.load(Ordering::Relaxed);
                    let _ = n.send(&format!(
                        "STATUS=recording: {fps:.1} fps, {frames} frames, {} dropped, {} analyzers, {} not yet durable",
                        c.source_dropped.load(Ordering::Relaxed)
                            + c.disk_dropped.load(Ordering::Relaxed),
                        w.notifier.clients().len(),
                        published.saturating_sub(durable),
                    ));
                }
            }
        }
        let frames = c.frames.load(Ordering::Relaxed);
        let bytes = c.bytes_stored.load(Ordering::Relaxed);
        let dt = last_t.elapsed().as_secs_f64().max(1e-6);
        let fps = frames.saturating_sub(last_frames) as f64 / dt;
        let mbs = bytes.saturating_sub(last_bytes) as f64 / dt / 1e6;
        (last_t, last_frames, last_bytes) = (Instant::now(), frames, bytes);
        let published = w.progress.published.load(Ordering::Relaxed);
        let clients = n.clients();
        let lag = clients
            .iter()
            .map(|s| published.saturating_sub(s.acked.map_or(0, |a| a.saturating_add(1))))
            .max();
        let durable = w.progress.durable.load(Ordering::Relaxed);
        let unsaved = published.saturating_sub(w.progress.persisted.load(Ordering::Relaxed));
        let memory = match w.store {
            StoreKind::File => format!(
                "{} MiB cached, {} MiB dirty",
                w.map.resident_bytes() >> 20,
                dirty_bytes(w.map.address_range().0) >> 20
            ),
            StoreKind::Direct => format!("{unsaved} in RAM not yet written"),
        };
        let mode = if c.copying.load(Ordering::Relaxed) {
            "copy (one copy per frame)"
        } else {
            "direct (zero-copy)"
        };
        let line = format!(
            "{fps:6.1} fps  {frames} frames  {} dropped  {} errors  {mbs:7.1} MB/s  {} analyzers{}  {} notices dropped  {} not yet durable  {memory}  [{} store, {mode}]",
            c.source_dropped.load(Ordering::Relaxed) + c.disk_dropped.load(Ordering::Relaxed),
            c.error_frames.load(Ordering::Relaxed),
            clients.len(),
            lag.map(|l| format!(" (slowest {l} behind)")).unwrap_or_default(),
            n.total_dropped(),
            published.saturating_sub(durable),
            w.store.name(),
        );
        if tty {
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[2K{line}");
            let _ = e.flush();
        } else {
            tracing::info!("{line}");
        }
    }
    if tty {
        eprintln!();
    }
}

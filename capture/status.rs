//! The live status line (terminal) or periodic log lines (not a terminal).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pagecam::capture::Counters;
use pagecam::notify::Notifier;

pub struct Status {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Status {
    pub fn spawn(counters: Arc<Counters>, notifier: Arc<Notifier>, mode: String) -> Status {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let tty = std::io::stderr().is_terminal();
        let thread = std::thread::Builder::new()
            .name("pagecam-status".into())
            .spawn(move || status_loop(&counters, &notifier, &mode, tty, &flag))
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

fn status_loop(c: &Counters, n: &Notifier, mode: &str, tty: bool, stop: &AtomicBool) {
    let every = if tty {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    let (mut last_t, mut last_frames, mut last_bytes) = (Instant::now(), 0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        let deadline = Instant::now() + every;
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let frames = c.frames.load(Ordering::Relaxed);
        let bytes = c.bytes_stored.load(Ordering::Relaxed);
        let dt = last_t.elapsed().as_secs_f64().max(1e-6);
        let fps = (frames - last_frames) as f64 / dt;
        let mbs = (bytes - last_bytes) as f64 / dt / 1e6;
        (last_t, last_frames, last_bytes) = (Instant::now(), frames, bytes);
        let committed = c.committed.load(Ordering::Relaxed);
        let clients = n.clients();
        let lag = clients
            .iter()
            .map(|s| committed.saturating_sub(s.acked.map_or(0, |a| a + 1)))
            .max();
        let line = format!(
            "{fps:6.1} fps  {frames} frames  {} dropped  {} errors  {mbs:7.1} MB/s  {} analyzers{}  {} notices dropped  [{mode}]",
            c.source_dropped.load(Ordering::Relaxed),
            c.error_frames.load(Ordering::Relaxed),
            clients.len(),
            lag.map(|l| format!(" (slowest {l} behind)")).unwrap_or_default(),
            n.total_dropped(),
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

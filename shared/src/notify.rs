//! Capture's side of the socket: accepts analyzers and notifies them of
//! each committed frame.
//!
//! Key decision: the capture thread sends each notification itself, one
//! non-blocking `send` per analyzer, so the notification latency is one
//! socket hop; a control thread does everything that may wait (accepting,
//! the hello with the descriptor, reading progress, dropping bad clients).
//! A slow or stuck analyzer therefore never blocks capture: a notification
//! that does not fit in its socket buffer is dropped and counted, and an
//! analyzer that has accepted nothing for `stuck_after` is disconnected.

use std::fs::File;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    accept4, bind, connect, listen, recv, send, sendmsg, socket, AddressFamily, Backlog,
    ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
};
use thiserror::Error;

use crate::protocol::{self, End, FrameNotice, Hello, Message};
use crate::ring::Progress;

#[derive(Debug, Error)]
pub enum NotifyError {
    #[error("socket {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("socket {0} is in use by another running capture")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
}

/// Counters for one analyzer, as shown in the status line.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientStatus {
    pub id: u64,
    pub sent: u64,
    pub dropped: u64,
    /// Newest sequence the analyzer reported finishing (`Progress`).
    pub acked: Option<u64>,
}

struct Client {
    fd: OwnedFd,
    status: ClientStatus,
    /// When sends to it started failing, if they are failing now.
    failing_since: Option<Instant>,
    dead: bool,
}

struct Shared {
    clients: Mutex<Vec<Client>>,
    stop: AtomicBool,
    next_id: AtomicU64,
    total_dropped: AtomicU64,
    disconnected: AtomicU64,
}

/// The listening side. Dropping it stops the control thread, closes every
/// client and removes the socket file.
pub struct Notifier {
    shared: Arc<Shared>,
    path: PathBuf,
    control: Option<JoinHandle<()>>,
}

pub struct NotifierConfig {
    pub path: PathBuf,
    /// Read-only descriptors of the frame store, passed to each analyzer
    /// (one per part: `protocol::descriptors_for(hello.store_kind)`).
    pub store: Vec<File>,
    /// The hello; its `client_id` and `next_sequence` are filled per client.
    pub hello: Hello,
    /// Where the session's frames are (for the hello's `next_sequence`).
    pub progress: Arc<Progress>,
    /// Disconnect an analyzer whose socket has been full this long.
    pub stuck_after: Duration,
}

fn sock_err(path: &Path) -> impl Fn(Errno) -> NotifyError + '_ {
    move |e| NotifyError::Socket {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// Remove a stale socket left by a dead capture; refuse to touch a live one
/// or anything that is not a socket.
fn clear_stale(path: &Path) -> Result<(), NotifyError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(NotifyError::NotASocket(path.to_path_buf()));
    }
    let probe = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(sock_err(path))?;
    let addr = UnixAddr::new(path).map_err(sock_err(path))?;
    match connect(probe.as_raw_fd(), &addr) {
        Ok(()) => Err(NotifyError::InUse(path.to_path_buf())),
        Err(_) => std::fs::remove_file(path).map_err(|source| NotifyError::Socket {
            path: path.to_path_buf(),
            source,
        }),
    }
}

impl Notifier {
    pub fn bind(cfg: NotifierConfig) -> Result<Self, NotifyError> {
        let path = cfg.path.clone();
        clear_stale(&path)?;
        let listener = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(sock_err(&path))?;
        // Bind and listen under a temporary name, then rename into place:
        // an analyzer that sees the path can always connect (a socket
        // that is bound but not yet listening refuses connections).
        let mut tmp = path.clone().into_os_string();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let addr = UnixAddr::new(&tmp).map_err(sock_err(&path))?;
        bind(listener.as_raw_fd(), &addr).map_err(sock_err(&path))?;
        listen(&listener, Backlog::new(16).expect("16 is a valid backlog"))
            .and_then(|_| {
                std::fs::rename(&tmp, &path)
                    .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))
            })
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                sock_err(&path)(e)
            })?;
        let shared = Arc::new(Shared {
            clients: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            total_dropped: AtomicU64::new(0),
            disconnected: AtomicU64::new(0),
        });
        let thread_shared = shared.clone();
        let control = std::thread::Builder::new()
            .name("pagecam-notify".into())
            .spawn(move || control_loop(&thread_shared, listener, cfg))
            .map_err(|source| NotifyError::Socket {
                path: path.clone(),
                source,
            })?;
        Ok(Notifier {
            shared,
            path,
            control: Some(control),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Per-frame: one non-blocking send per analyzer, nothing else. A full
    /// socket drops this notification for that analyzer only.
    pub fn notify(&self, notice: &FrameNotice) {
        let msg = notice.encode();
        let mut clients = lock(&self.shared.clients);
        for c in clients.iter_mut().filter(|c| !c.dead) {
            match send(
                c.fd.as_raw_fd(),
                &msg,
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(_) => {
                    c.status.sent += 1;
                    c.failing_since = None;
                }
                Err(Errno::EAGAIN) => {
                    c.status.dropped += 1;
                    self.shared.total_dropped.fetch_add(1, Ordering::Relaxed);
                    c.failing_since.get_or_insert_with(Instant::now);
                }
                Err(_) => c.dead = true, // peer gone; the control thread reaps it
            }
        }
    }

    /// Tell every analyzer the stream ended, giving each a short grace
    /// period if its socket is full, then disconnect them all.
    pub fn finish(&self, end: End) {
        let msg = end.encode();
        let mut clients = lock(&self.shared.clients);
        for c in clients.iter_mut().filter(|c| !c.dead) {
            let deadline = Instant::now() + Duration::from_millis(500);
            loop {
                match send(
                    c.fd.as_raw_fd(),
                    &msg,
                    MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                ) {
                    Err(Errno::EAGAIN) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    _ => break,
                }
            }
        }
        clients.clear();
    }

    pub fn clients(&self) -> Vec<ClientStatus> {
        lock(&self.shared.clients)
            .iter()
            .filter(|c| !c.dead)
            .map(|c| c.status)
            .collect()
    }

    /// Notifications dropped because an analyzer's socket was full.
    pub fn total_dropped(&self) -> u64 {
        self.shared.total_dropped.load(Ordering::Relaxed)
    }

    /// Analyzers disconnected for misbehaving (garbage, stuck).
    pub fn disconnected(&self) -> u64 {
        self.shared.disconnected.load(Ordering::Relaxed)
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.control.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the client list in a state
    // worse than "some counters stale"; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn control_loop(shared: &Shared, listener: OwnedFd, cfg: NotifierConfig) {
    let hello_template = cfg.hello;
    let mut fds: Vec<(i32, u64)> = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        // Snapshot the descriptors to wait on; the list changes rarely.
        fds.clear();
        fds.extend(
            lock(&shared.clients)
                .iter()
                .map(|c| (c.fd.as_raw_fd(), c.status.id)),
        );
        let mut pollfds = Vec::with_capacity(fds.len() + 1);
        pollfds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
        for (fd, _) in &fds {
            // SAFETY: the fds stay open for this iteration: only this thread
            // removes clients (and so closes their fds), after the poll.
            pollfds.push(PollFd::new(
                unsafe { BorrowedFd::borrow_raw(*fd) },
                PollFlags::POLLIN,
            ));
        }
        if poll(&mut pollfds, PollTimeout::from(100u16)).is_err() {
            continue;
        }
        let ready: Vec<bool> = pollfds
            .iter()
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(pollfds);
        if ready[0] {
            accept_client(shared, &listener, &cfg.store, hello_template, &cfg.progress);
        }
        for (i, (fd, id)) in fds.iter().enumerate() {
            if ready[i + 1] {
                read_client(shared, *fd, *id);
            }
        }
        reap(shared, cfg.stuck_after);
    }
}

fn accept_client(
    shared: &Shared,
    listener: &OwnedFd,
    store: &[File],
    mut hello: Hello,
    progress: &Progress,
) {
    let fd = match accept4(
        listener.as_raw_fd(),
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    ) {
        // SAFETY: accept4 returned a fresh descriptor that nothing else owns.
        Ok(fd) => unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) },
        Err(_) => return,
    };
    hello.client_id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    // Under the client-list lock, which `notify` also takes: every frame
    // published after `next_sequence` is read here is notified to this
    // client once it is in the list (a frame just below may be notified
    // too: analyzers skip what they already read).
    let mut clients = lock(&shared.clients);
    hello.next_sequence = progress.published.load(Ordering::Acquire);
    let msg = hello.encode();
    let fds: [i32; 2] = [
        store.first().map_or(-1, |f| f.as_raw_fd()),
        store.get(1).map_or(-1, |f| f.as_raw_fd()),
    ];
    let fds = &fds[..store.len().min(2)];
    let sent = sendmsg::<()>(
        fd.as_raw_fd(),
        &[IoSlice::new(&msg)],
        &[ControlMessage::ScmRights(fds)],
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        None,
    );
    if sent.is_ok() {
        tracing::info!(client = hello.client_id, "analyzer connected");
        let status = ClientStatus {
            id: hello.client_id,
            ..Default::default()
        };
        clients.push(Client {
            fd,
            status,
            failing_since: None,
            dead: false,
        });
    }
}

/// Read what an analyzer sent: `Progress` updates its position; EOF means
/// it left; anything else is a protocol violation and it is disconnected.
/// What one packet from an analyzer means.
enum Inbound {
    Progress(u64),
    Left,
    Violation(String),
}

fn read_client(shared: &Shared, fd: i32, id: u64) {
    let mut buf = [0u8; protocol::MAX_LEN + 1];
    loop {
        let inbound = match recv(fd, &mut buf, MsgFlags::MSG_DONTWAIT) {
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => return,
            Ok(0) | Err(_) => Inbound::Left,
            Ok(n) => match protocol::decode(&buf[..n]) {
                Ok(Message::Progress(p)) => Inbound::Progress(p.sequence),
                Ok(other) => Inbound::Violation(format!("sent an unexpected message ({other:?})")),
                Err(e) => Inbound::Violation(format!("sent garbage: {e}")),
            },
        };
        let mut clients = lock(&shared.clients);
        let Some(c) = clients.iter_mut().find(|c| c.status.id == id) else {
            return;
        };
        match inbound {
            Inbound::Progress(seq) => c.status.acked = Some(seq),
            Inbound::Left => {
                tracing::info!(client = id, "analyzer disconnected");
                c.dead = true;
                return;
            }
            Inbound::Violation(why) => {
                tracing::warn!(client = id, "analyzer {why}; dropping it");
                shared.disconnected.fetch_add(1, Ordering::Relaxed);
                c.dead = true;
                return;
            }
        }
    }
}

fn reap(shared: &Shared, stuck_after: Duration) {
    let mut clients = lock(&shared.clients);
    for c in clients.iter_mut() {
        if let Some(since) = c.failing_since {
            if !c.dead && since.elapsed() > stuck_after {
                tracing::warn!(
                    client = c.status.id,
                    "analyzer has read nothing for {stuck_after:?}; dropping it"
                );
                shared.disconnected.fetch_add(1, Ordering::Relaxed);
                c.dead = true;
            }
        }
    }
    clients.retain(|c| !c.dead);
}

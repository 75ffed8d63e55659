//! Capture's side of the socket: accepts analyzers and notifies them of
//! each committed frame.
//!
//! Key decision: the capture thread sends each notification itself, one
//! non-blocking `send` per analyzer, so the notification latency is one
//! socket hop; a control thread does everything that may wait (accepting,
//! the hello with the descriptors, reading progress, dropping bad clients).
//! A slow or stuck analyzer therefore never blocks capture: a notification
//! that does not fit in its socket buffer is dropped and counted, and an
//! analyzer that has accepted nothing for `stuck_after` is disconnected.
//!
//! Who may connect: the socket file is `0660` (owner and group), and each
//! peer's credentials (`SO_PEERCRED`, `SO_PEERGROUPS`) are checked against
//! the allowed users and groups before it gets any descriptor. At most
//! `max_clients` analyzers are served; when descriptors run out (`EMFILE`)
//! the listener rests instead of spinning.

use std::fs::File;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    accept4, bind, connect, getsockopt, listen, recv, send, sendmsg, socket, sockopt,
    AddressFamily, Backlog, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
};
use thiserror::Error;

use crate::protocol::{self, End, EndReason, FrameNotice, Hello, Message};
use crate::ring::Progress;

#[derive(Debug, Error)]
pub enum NotifyError {
    // (The cause is in the message, not chained: see `RecordingError`.)
    #[error("socket {path}: {error}")]
    Socket {
        path: PathBuf,
        error: std::io::Error,
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

/// Who may connect: root, capture's own user, these users, and members
/// (primary or supplementary group) of these groups.
#[derive(Clone, Debug, Default)]
pub struct Access {
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
}

impl Access {
    fn allows(&self, uid: u32, gid: u32, groups: &[u32]) -> bool {
        uid == 0
            || uid == nix::unistd::geteuid().as_raw()
            || self.uids.contains(&uid)
            || self.gids.contains(&gid)
            || groups.iter().any(|g| self.gids.contains(g))
    }
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
    refused: AtomicU64,
}

/// The listening side. `finish` (or dropping it) stops the control
/// thread, tells every client the stream ended, closes them and removes
/// the socket file.
pub struct Notifier {
    shared: Arc<Shared>,
    path: PathBuf,
    control: Mutex<Option<JoinHandle<()>>>,
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
    /// Who may connect.
    pub access: Access,
    /// Serve at most this many analyzers at once.
    pub max_clients: usize,
}

/// Longest `sockaddr_un` path (108 bytes with its NUL).
const SUN_PATH_MAX: usize = 107;
/// How long `finish` waits, in all, for analyzers whose sockets are full.
const END_GRACE: Duration = Duration::from_millis(500);
/// How long the listener rests when the process is out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(200);
/// Messages read from one analyzer per wake-up (a flood cannot starve
/// the others or the listener).
const READ_BUDGET: usize = 64;

fn sock_err(path: &Path) -> impl Fn(Errno) -> NotifyError + '_ {
    move |e| NotifyError::Socket {
        path: path.to_path_buf(),
        error: e.into(),
    }
}

/// Read and drop what an analyzer sent that was not read yet (progress
/// messages), before its socket is closed: Linux resets a connection
/// closed with unread data, and the analyzer would see the reset before
/// the notices and the End still queued for it. Bounded, so a peer that
/// keeps sending cannot hold capture here.
fn discard_incoming(fd: std::os::fd::RawFd) {
    let mut buf = [0u8; 128];
    for _ in 0..READ_BUDGET {
        if !matches!(recv(fd, &mut buf, MsgFlags::MSG_DONTWAIT), Ok(n) if n > 0) {
            break;
        }
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
        Err(_) => std::fs::remove_file(path).map_err(|error| NotifyError::Socket {
            path: path.to_path_buf(),
            error,
        }),
    }
}

/// A temporary name for binding beside `path`, short enough for a socket
/// address whenever `path` itself is (`.pcNNNNN` is shorter than most names).
fn temporary_name(path: &Path) -> Option<PathBuf> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(".pc{}", std::process::id()));
    (tmp.as_os_str().len() <= SUN_PATH_MAX).then_some(tmp)
}

impl Notifier {
    pub fn bind(cfg: NotifierConfig) -> Result<Self, NotifyError> {
        let path = cfg.path.clone();
        if path.as_os_str().len() > SUN_PATH_MAX {
            return Err(NotifyError::Socket {
                path,
                error: std::io::Error::other(format!(
                    "a socket path is at most {SUN_PATH_MAX} bytes (use --socket with a shorter one)"
                )),
            });
        }
        clear_stale(&path)?;
        let listener = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(sock_err(&path))?;
        // Bind and listen under a temporary name, then rename into place:
        // an analyzer that sees the path can always connect (a socket that
        // is bound but not yet listening refuses connections). If even the
        // short temporary name is too long, bind in place.
        let at = temporary_name(&path).unwrap_or_else(|| path.clone());
        let _ = std::fs::remove_file(&at);
        let addr = UnixAddr::new(&at).map_err(sock_err(&path))?;
        bind(listener.as_raw_fd(), &addr).map_err(sock_err(&path))?;
        let placed = (|| {
            // Owner and group only (analyzers run in the recording's group);
            // with users allowed by name, anyone may connect and the peer's
            // credentials decide.
            let mode = if cfg.access.uids.is_empty() {
                0o660
            } else {
                0o666
            };
            std::fs::set_permissions(&at, std::fs::Permissions::from_mode(mode))?;
            listen(&listener, Backlog::new(64).expect("64 is a valid backlog"))?;
            if at != path {
                std::fs::rename(&at, &path)?;
            }
            Ok::<(), std::io::Error>(())
        })();
        if let Err(error) = placed {
            let _ = std::fs::remove_file(&at);
            return Err(NotifyError::Socket { path, error });
        }
        let shared = Arc::new(Shared {
            clients: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            total_dropped: AtomicU64::new(0),
            disconnected: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let thread_shared = shared.clone();
        let control = std::thread::Builder::new()
            .name("pagecam-notify".into())
            .spawn(move || control_loop(&thread_shared, listener, cfg))
            .map_err(|error| {
                let _ = std::fs::remove_file(&path);
                NotifyError::Socket {
                    path: path.clone(),
                    error,
                }
            })?;
        Ok(Notifier {
            shared,
            path,
            control: Mutex::new(Some(control)),
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

    /// Tell every analyzer the stream ended and disconnect them all, within
    /// `END_GRACE` in all however many are stuck; remove the socket file.
    ///
    /// The control thread is stopped first, so no other thread holds a
    /// client's descriptor number when the descriptors are closed.
    pub fn finish(&self, end: End) {
        self.stop_control();
        let msg = end.encode();
        let mut clients = std::mem::take(&mut *lock(&self.shared.clients));
        clients.retain(|c| !c.dead);
        let deadline = Instant::now() + END_GRACE;
        loop {
            clients.retain(|c| {
                let done = matches!(
                    send(
                        c.fd.as_raw_fd(),
                        &msg,
                        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                    ),
                    Ok(_) | Err(Errno::EPIPE) | Err(Errno::ECONNRESET) | Err(Errno::ENOTCONN)
                );
                if done {
                    discard_incoming(c.fd.as_raw_fd());
                }
                !done
            });
            let left = deadline.saturating_duration_since(Instant::now());
            if clients.is_empty() || left.is_zero() {
                break;
            }
            // Wait, all at once, until one of the full sockets has room.
            let mut fds: Vec<PollFd> = clients
                .iter()
                .map(|c| PollFd::new(c.fd.as_fd(), PollFlags::POLLOUT))
                .collect();
            let wait = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            let _ = poll(&mut fds, wait);
        }
        // Dropping `clients` closes what is left.
        let _ = std::fs::remove_file(&self.path);
    }

    fn stop_control(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = lock(&self.control).take() {
            let _ = t.join();
        }
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

    /// Connections refused (not allowed, or too many analyzers).
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.stop_control();
        lock(&self.shared.clients).clear();
        let _ = std::fs::remove_file(&self.path);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the client list in a state
    // worse than "some counters stale"; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn control_loop(shared: &Shared, listener: OwnedFd, cfg: NotifierConfig) {
    let mut resting_until: Option<Instant> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        // Poll under the client-list lock's protection of the descriptors:
        // only this thread closes them (reap, or `finish` after joining it).
        let ids: Vec<u64>;
        let ready: Vec<bool>;
        let listen_ready;
        {
            let clients = lock(&shared.clients);
            ids = clients.iter().map(|c| c.status.id).collect();
            let accepting = resting_until.is_none_or(|t| Instant::now() >= t);
            let mut pollfds = poll_set(&listener, accepting, clients.iter().map(|c| &c.fd));
            // Not while holding the lock for long: capture's `notify` needs
            // it. A zero timeout, then the real wait below without it.
            let _ = poll(&mut pollfds, PollTimeout::ZERO);
            let any = pollfds
                .iter()
                .any(|p| p.revents().is_some_and(|r| !r.is_empty()));
            if !any {
                drop(pollfds);
                drop(clients);
                wait_readable(shared, &listener, accepting);
                continue;
            }
            listen_ready = pollfds[0].revents().is_some_and(|r| !r.is_empty());
            ready = pollfds[1..]
                .iter()
                .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
                .collect();
        }
        if listen_ready {
            if let Err(e) = accept_client(shared, &listener, &cfg) {
                // Out of descriptors (or memory): rest instead of spinning
                // on a listener that stays readable.
                tracing::warn!("cannot accept an analyzer: {e}; retrying shortly");
                resting_until = Some(Instant::now() + ACCEPT_BACKOFF);
            } else {
                resting_until = None;
            }
        }
        for (id, _) in ids.iter().zip(ready).filter(|(_, r)| *r) {
            read_client(shared, *id);
        }
        reap(shared, cfg.stuck_after);
    }
}

/// Wait up to 100 ms for the listener or any client to be readable,
/// without holding the client-list lock. Descriptors are duplicated for
/// the wait, so a client closed meanwhile (by this thread only) cannot
/// leave a number another file could take.
fn wait_readable(shared: &Shared, listener: &OwnedFd, accepting: bool) {
    let dups: Vec<OwnedFd> = lock(&shared.clients)
        .iter()
        .filter_map(|c| c.fd.try_clone().ok())
        .collect();
    let mut pollfds = poll_set(listener, accepting, dups.iter());
    let _ = poll(&mut pollfds, PollTimeout::from(100u16));
}

/// The listener (watched only while `accepting`) and then each client,
/// for `poll`.
fn poll_set<'a>(
    listener: &'a OwnedFd,
    accepting: bool,
    clients: impl ExactSizeIterator<Item = &'a OwnedFd>,
) -> Vec<PollFd<'a>> {
    let mut pollfds = Vec::with_capacity(clients.len() + 1);
    let listen_for = if accepting {
        PollFlags::POLLIN
    } else {
        PollFlags::empty()
    };
    pollfds.push(PollFd::new(listener.as_fd(), listen_for));
    pollfds.extend(clients.map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN)));
    pollfds
}

/// Accept one analyzer: check who it is and the client limit, then send
/// the hello with the store's descriptors. `Err` only when accepting
/// itself failed (e.g. `EMFILE`).
fn accept_client(shared: &Shared, listener: &OwnedFd, cfg: &NotifierConfig) -> Result<(), Errno> {
    let fd = match accept4(
        listener.as_raw_fd(),
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    ) {
        // SAFETY: accept4 returned a fresh descriptor that nothing else owns.
        Ok(fd) => unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) },
        Err(Errno::EAGAIN) | Err(Errno::ECONNABORTED) | Err(Errno::EINTR) => return Ok(()),
        Err(e) => return Err(e),
    };
    let refuse = |why: String| {
        tracing::warn!("analyzer refused: {why}");
        shared.refused.fetch_add(1, Ordering::Relaxed);
        let end = End {
            reason: EndReason::Refused,
            frames: 0,
        }
        .encode();
        let _ = send(
            fd.as_raw_fd(),
            &end,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        );
    };
    match getsockopt(&fd, sockopt::PeerCredentials) {
        Ok(cred) => {
            let groups = crate::sys::peer_groups(&fd).unwrap_or_default();
            if !cfg.access.allows(cred.uid(), cred.gid(), &groups) {
                refuse(format!(
                    "uid {} (gid {}) is not allowed (--allow-user / --group)",
                    cred.uid(),
                    cred.gid()
                ));
                return Ok(());
            }
        }
        Err(e) => {
            refuse(format!("cannot read its credentials: {e}"));
            return Ok(());
        }
    }
    let mut hello = cfg.hello;
    hello.client_id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    // Under the client-list lock, which `notify` also takes: every frame
    // published after `next_sequence` is read here is notified to this
    // client once it is in the list (a frame just below may be notified
    // too: analyzers skip what they already read).
    let mut clients = lock(&shared.clients);
    if clients.iter().filter(|c| !c.dead).count() >= cfg.max_clients {
        drop(clients);
        refuse(format!(
            "already {} analyzers (--max-analyzers)",
            cfg.max_clients
        ));
        return Ok(());
    }
    hello.next_sequence = cfg.progress.published.load(Ordering::Acquire);
    let msg = hello.encode();
    let raw: Vec<i32> = cfg.store.iter().map(|f| f.as_raw_fd()).collect();
    let sent = sendmsg::<()>(
        fd.as_raw_fd(),
        &[IoSlice::new(&msg)],
        &[ControlMessage::ScmRights(&raw)],
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        None,
    );
    if sent.is_ok() {
        tracing::info!(client = hello.client_id, "analyzer connected");
        clients.push(Client {
            fd,
            status: ClientStatus {
                id: hello.client_id,
                ..Default::default()
            },
            failing_since: None,
            dead: false,
        });
    }
    Ok(())
}

/// What one packet from an analyzer means.
enum Inbound {
    Progress(u64),
    Left,
    Violation(String),
}

/// Read what an analyzer sent: `Progress` updates its position; EOF means
/// it left; anything else is a protocol violation and it is disconnected.
fn read_client(shared: &Shared, id: u64) {
    let mut buf = [0u8; protocol::MAX_LEN + 1];
    for _ in 0..READ_BUDGET {
        let mut clients = lock(&shared.clients);
        let Some(c) = clients.iter_mut().find(|c| c.status.id == id && !c.dead) else {
            return;
        };
        let inbound = match recv(c.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => return,
            Ok(0) | Err(_) => Inbound::Left,
            Ok(n) => match protocol::decode(&buf[..n]) {
                Ok(Message::Progress(p)) => Inbound::Progress(p.sequence),
                Ok(other) => Inbound::Violation(format!("sent an unexpected message ({other:?})")),
                Err(e) => Inbound::Violation(format!("sent garbage: {e}")),
            },
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

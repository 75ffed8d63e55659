//! Talking to the service manager (systemd's `sd_notify` protocol and its
//! descriptor passing), without linking libsystemd.
//!
//! * `READY=1`, `STATUS=...`, `WATCHDOG=1`, `STOPPING=1` on `$NOTIFY_SOCKET`
//!   (a datagram socket; `@` means the abstract namespace).
//! * `FDSTORE=1` hands a descriptor to the manager's file descriptor store:
//!   capture stores its RAM ring there, so that after a crash the restarted
//!   capture gets the ring back (`$LISTEN_FDS`, named by `$LISTEN_FDNAMES`)
//!   and writes the frames the dead one had not yet persisted.
//!
//! Every call is a no-op when the variables are not set (not under systemd).

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::socket::{
    sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
};

/// The name capture gives its RAM ring in the descriptor store.
pub const RING_FD_NAME: &str = "pagecam-ring";

/// A connection to `$NOTIFY_SOCKET`, or nothing.
pub struct Notify {
    target: Option<(OwnedFd, UnixAddr)>,
}

impl Notify {
    /// From `$NOTIFY_SOCKET` (absent or unusable: notifications are off).
    pub fn from_env() -> Notify {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.to_string_lossy().into_owned();
            let addr = match path.strip_prefix('@') {
                Some(name) => UnixAddr::new_abstract(name.as_bytes()).ok()?,
                None => UnixAddr::new(path.as_str()).ok()?,
            };
            let sock = socket(
                AddressFamily::Unix,
                SockType::Datagram,
                SockFlag::SOCK_CLOEXEC,
                None,
            )
            .ok()?;
            Some((sock, addr))
        });
        Notify { target }
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Send `state` (newline-separated `KEY=VALUE` lines).
    pub fn send(&self, state: &str) -> std::io::Result<()> {
        self.send_with_fds(state, &[])
    }

    /// Send `state` with descriptors attached (`FDSTORE=1`).
    pub fn send_with_fds(&self, state: &str, fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
        let Some((sock, addr)) = &self.target else {
            return Ok(());
        };
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let cmsg = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsg };
        sendmsg(
            sock.as_raw_fd(),
            &[IoSlice::new(state.as_bytes())],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            Some(addr),
        )
        .map(|_| ())
        .map_err(std::io::Error::from)
    }
}

/// How often the manager wants `WATCHDOG=1` (`$WATCHDOG_USEC`, for this
/// process per `$WATCHDOG_PID`), or `None`.
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_str()?.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

static TAKEN: AtomicBool = AtomicBool::new(false);

/// The descriptors the manager passed (`$LISTEN_FDS` from fd 3, for this
/// process per `$LISTEN_PID`), with their names, each owned once: later
/// calls return nothing. The variables are removed so children do not
/// inherit them.
pub fn take_listen_fds() -> Vec<(String, OwnedFd)> {
    if TAKEN.swap(true, Ordering::AcqRel) {
        return Vec::new();
    }
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let count: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|n| n.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    if !for_us || !(1..=64).contains(&count) {
        return Vec::new();
    }
    (0..count)
        .filter_map(|i| {
            let fd = 3 + i;
            // Only descriptors that are actually open are taken.
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).ok()?;
            let _ = nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            );
            let name = names.get(i as usize).cloned().unwrap_or_default();
            // SAFETY: sd_listen_fds(3): the manager passes `LISTEN_FDS`
            // open descriptors from 3 to this process (LISTEN_PID checked);
            // nothing else in the process owns them, and TAKEN makes sure
            // they are wrapped only once.
            Some((name, unsafe { OwnedFd::from_raw_fd(fd) }))
        })
        .collect()
}

//! An analyzer's side of the socket: connect, receive the hello with the
//! store's read-only descriptors, map the live store, then receive frame
//! notices.
//!
//! One blocking `recv` per frame (with `SO_RCVTIMEO` as the idle bound), so
//! waiting costs no extra syscall. The analyzer never opens the recording
//! by path: what it maps is exactly what capture writes, and read-only.
//! With a RAM ring (`--store direct`) the hello also carries the recording
//! file, from which frames older than the ring can be read (`archive`).

use std::fs::File;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    connect, getsockopt, recv, recvmsg, send, setsockopt, socket, sockopt, AddressFamily,
    ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::sys::time::{TimeVal, TimeValLike};
use thiserror::Error;

use crate::format::{generation_state, FrameMeta, GenerationState};
use crate::protocol::{self, End, EndReason, FrameNotice, Hello, Message, Progress, ProtocolError};
use crate::recording::{RecordingError, RecordingReader};
use crate::store::LiveStore;

#[derive(Debug, Error)]
pub enum SubscribeError {
    #[error("cannot connect to capture at {path}: {error} (is pagecam-capture running?)")]
    Connect {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("capture sent a bad message: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("capture's hello carried {got} descriptors, its store kind needs {want}")]
    NoDescriptor { got: usize, want: usize },
    #[error("capture sent an unexpected message: {0:?}")]
    Unexpected(Box<Message>),
    #[error("capture refused this analyzer (not an allowed user or group, or too many analyzers: see capture's log)")]
    Refused,
    #[error("{path} is served by uid {served_by}, but the socket belongs to uid {owner}: not trusting it")]
    Impostor {
        path: PathBuf,
        served_by: u32,
        owner: u32,
    },
    #[error("capture's hello does not match the recording header")]
    Mismatch,
    #[error(transparent)]
    Recording(#[from] RecordingError),
    #[error("capture went away without ending the stream (killed or crashed?)")]
    CaptureGone,
    #[error("no notification from capture for {0:?} (capture stalled?)")]
    Idle(Duration),
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    /// A signal interrupted the wait (Ctrl-Z/fg, Ctrl-C): the caller decides
    /// whether to wait on.
    #[error("interrupted")]
    Interrupted,
}

/// Where a frame already in the store is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// In the live store: read it like a notice's frame.
    Live { slot: u32, generation: u64 },
    /// In the recording behind a RAM ring (`Subscription::archive`).
    Archive { slot: u32 },
}

/// A frame that was already in the store when the analyzer connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredFrame {
    pub meta: FrameMeta,
    pub at: Stored,
    /// The same frame's slot in the recording behind a RAM ring, if it is
    /// there too: where to read it if the ring overwrites it first.
    pub archived: Option<u32>,
}

/// Where a late-joining analyzer starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// With the next new frame (no backlog).
    Now,
    /// With the oldest frame still stored.
    Oldest,
    /// With this sequence number (or the oldest stored after it).
    Sequence(u64),
    /// With the frames captured in the last this long.
    Ago(Duration),
}

pub enum Event {
    Frame(FrameNotice),
    End(End),
}

/// An analyzer's connection to capture (see the `impl` for the methods).
pub struct Subscription {
    sock: OwnedFd,
    live: LiveStore,
    /// RAM ring: the recording file behind it (older frames).
    archive: Option<RecordingReader>,
    hello: Hello,
    idle: Duration,
}

/// A connection to a running capture: the hello, the live store mapped
/// read-only, and the stream of frame notices. See the crate docs ("Your
/// own analyzer") for the reading rule.
impl Subscription {
    /// Connect to capture's socket and complete the handshake: receive the
    /// hello and the store's descriptors, map the live store read-only and
    /// check it against the hello. `idle` bounds how long `next_event`
    /// waits for a notice.
    pub fn connect(path: &Path, idle: Duration) -> Result<Self, SubscribeError> {
        let conn = |error: std::io::Error| SubscribeError::Connect {
            path: path.to_path_buf(),
            error,
        };
        let sock = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(|e| conn(e.into()))?;
        let addr = UnixAddr::new(path).map_err(|e| conn(e.into()))?;
        // Non-blocking: a full backlog (capture too busy or out of
        // descriptors) answers EAGAIN instead of hanging; retry until `idle`.
        let deadline = std::time::Instant::now() + idle;
        loop {
            match connect(sock.as_raw_fd(), &addr) {
                Ok(()) => break,
                Err(Errno::EAGAIN) | Err(Errno::EINTR) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(Errno::EAGAIN) => return Err(SubscribeError::Idle(idle)),
                Err(e) => return Err(conn(e.into())),
            }
        }
        let flags = nix::fcntl::fcntl(sock.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)
            .map_err(std::io::Error::from)?;
        let blocking =
            nix::fcntl::OFlag::from_bits_truncate(flags) & !nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(sock.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(blocking))
            .map_err(std::io::Error::from)?;
        // Is this capture, or someone who put a socket where capture's would
        // be? The server must be the socket file's owner.
        let served_by = getsockopt(&sock, sockopt::PeerCredentials)
            .map_err(std::io::Error::from)?
            .uid();
        let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(path)?);
        if served_by != owner {
            return Err(SubscribeError::Impostor {
                path: path.to_path_buf(),
                served_by,
                owner,
            });
        }
        // time_t is 32 bits on 32-bit glibc: a year is the longest wait.
        let micros = idle.min(Duration::from_secs(365 * 86400)).as_micros() as i64;
        let tv = TimeVal::microseconds(micros.max(1));
        setsockopt(&sock, sockopt::ReceiveTimeout, &tv).map_err(std::io::Error::from)?;

        let mut buf = [0u8; protocol::MAX_LEN + 1];
        let mut cmsg = nix::cmsg_space!([RawFd; 2]);
        let (n, fds) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            // A real address buffer (not a zero-length one): qemu's user-mode
            // emulation writes the peer address even when none was asked for.
            let msg = match recvmsg::<UnixAddr>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(m) => m,
                // Stopped and continued (Ctrl-Z, fg; a debugger): wait on.
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Err(SubscribeError::Idle(idle)),
                Err(e) => return Err(SubscribeError::Io(e.into())),
            };
            let mut fds = Vec::new();
            for c in msg.cmsgs().map_err(std::io::Error::from)? {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    for fd in raw {
                        // SAFETY: SCM_RIGHTS installed `fd` as a new descriptor
                        // in this process; we are its only owner.
                        fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                    }
                }
            }
            break (msg.bytes, fds);
        };
        if n == 0 {
            return Err(SubscribeError::CaptureGone);
        }
        let hello = match protocol::decode(&buf[..n])? {
            Message::Hello(h) => h,
            Message::End(End {
                reason: EndReason::Refused,
                ..
            }) => return Err(SubscribeError::Refused),
            other => return Err(SubscribeError::Unexpected(Box::new(other))),
        };
        let want = protocol::descriptors_for(hello.store_kind);
        if fds.len() != want {
            return Err(SubscribeError::NoDescriptor {
                got: fds.len(),
                want,
            });
        }
        let mut fds = fds.into_iter().map(File::from);
        let live_file = fds
            .next()
            .ok_or(SubscribeError::NoDescriptor { got: 0, want })?;
        let live = LiveStore::map(&live_file, Path::new("<frame store from capture>"))?;
        if live.header().layout != hello.layout || live.header().format != hello.format {
            return Err(SubscribeError::Mismatch);
        }
        let archive = match fds.next() {
            Some(f) => {
                let r = RecordingReader::from_file(f, Path::new("<recording from capture>"))?;
                if r.header().format != hello.format {
                    return Err(SubscribeError::Mismatch);
                }
                Some(r)
            }
            None => None,
        };
        Ok(Subscription {
            sock,
            live,
            archive,
            hello,
            idle,
        })
    }

    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// The live store, where every notice's frame is read in place.
    pub fn live(&self) -> &LiveStore {
        &self.live
    }

    /// RAM ring only: the recording file behind it, read-only, for frames
    /// older than the ring (`None` when the live store is the file itself).
    pub fn archive(&self) -> Option<&RecordingReader> {
        self.archive.as_ref()
    }

    /// How long `next_event` waits for a notice before `Idle`.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// Wait up to `timeout` until a message is there to read (or the
    /// connection ended): `Ok(true)`, then `next_event` does not block.
    /// For callers that must look at something else while they wait (an
    /// interpreter's pending signals, which may have arrived on another
    /// thread or just before a blocking `recv`).
    pub fn wait_readable(&self, timeout: Duration) -> Result<bool, SubscribeError> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) => Ok(n > 0),
            Err(Errno::EINTR) => Err(SubscribeError::Interrupted),
            Err(e) => Err(SubscribeError::Io(e.into())),
        }
    }

    /// Wait for the next notice: one `recv`. `Event::Frame` announces a
    /// committed frame (read it with `live().read_frame`); `Event::End` is
    /// the last message. `Err(Interrupted)`: a signal arrived (retry, or
    /// stop if it was yours); `Err(CaptureGone)`: capture died.
    pub fn next_event(&mut self) -> Result<Event, SubscribeError> {
        let mut buf = [0u8; protocol::MAX_LEN + 1];
        let mut reset = false;
        let n = loop {
            match recv(self.sock.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(0) => return Err(SubscribeError::CaptureGone),
                Ok(n) => break n,
                // Ctrl-Z and fg, a debugger, Ctrl-C: the caller decides.
                Err(Errno::EINTR) => return Err(SubscribeError::Interrupted),
                Err(Errno::EAGAIN) if !reset => return Err(SubscribeError::Idle(self.idle)),
                // Linux reports a reset (capture closed with our progress
                // messages unread) before the notices and the End still
                // queued here: read those first.
                Err(Errno::ECONNRESET) if !reset => reset = true,
                Err(Errno::ECONNRESET | Errno::EAGAIN) => return Err(SubscribeError::CaptureGone),
                Err(e) => return Err(SubscribeError::Io(e.into())),
            }
        };
        match protocol::decode(&buf[..n])? {
            Message::Frame(f) => Ok(Event::Frame(f)),
            Message::End(e) => Ok(Event::End(e)),
            other => Err(SubscribeError::Unexpected(Box::new(other))),
        }
    }

    /// The frames already stored when this analyzer connected (below the
    /// hello's `next_sequence`), from `start` on, in sequence order: the
    /// live store's, and for a RAM ring the recording's older ones. Read
    /// them before the notices; a notice for a sequence already read is a
    /// duplicate to skip.
    pub fn backlog(&self, start: Start) -> std::io::Result<Vec<StoredFrame>> {
        let end = self.hello.next_sequence;
        let mut frames: std::collections::BTreeMap<u64, StoredFrame> = Default::default();
        if start == Start::Now {
            return Ok(Vec::new());
        }
        if let Some(archive) = &self.archive {
            for (slot, r) in archive.records()? {
                if generation_state(r.generation) == GenerationState::Committed
                    && r.meta.sequence < end
                {
                    frames.insert(
                        r.meta.sequence,
                        StoredFrame {
                            meta: r.meta,
                            at: Stored::Archive { slot },
                            archived: Some(slot),
                        },
                    );
                }
            }
        }
        for slot in 0..self.live.slot_count() {
            let Some(snap) = self.live.snapshot(slot) else {
                continue;
            };
            if generation_state(snap.generation) == GenerationState::Committed
                && snap.meta.sequence < end
            {
                // The live copy wins: it is read in place.
                let archived = frames.get(&snap.meta.sequence).and_then(|f| f.archived);
                frames.insert(
                    snap.meta.sequence,
                    StoredFrame {
                        meta: snap.meta,
                        at: Stored::Live {
                            slot,
                            generation: snap.generation,
                        },
                        archived,
                    },
                );
            }
        }
        let keep = |f: &StoredFrame| match start {
            Start::Now => false,
            Start::Oldest => true,
            Start::Sequence(s) => f.meta.sequence >= s,
            Start::Ago(d) => {
                let since = crate::recording::monotonic_ns().saturating_sub(d.as_nanos() as u64);
                f.meta.timestamp_ns >= since
            }
        };
        Ok(frames.into_values().filter(keep).collect())
    }

    /// Tell capture how far this analyzer has got (best effort).
    pub fn send_progress(&self, sequence: u64) {
        let msg = Progress { sequence }.encode();
        let _ = send(
            self.sock.as_raw_fd(),
            &msg,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{FrameFormat, Header, Interval, Layout, OnFull, Record, YUYV};
    use crate::protocol::{FrameNotice, STORE_RECORDING_FILE};
    use std::io::IoSlice;
    use std::os::unix::fs::FileExt;

    /// The analyzer's whole receive path (connect, the hello with its
    /// descriptor, notices, an in-place read, the end) against a stand-in
    /// capture in a thread. scripts/test.sh also runs it under qemu's
    /// user-mode emulation of aarch64 and armv7, which once crashed on a
    /// zero-length address buffer in recvmsg.
    #[test]
    fn receive_path_end_to_end() {
        receive_path(false);
    }

    /// Capture closes a connection whose progress messages it has not
    /// read: Linux then reports ECONNRESET to the analyzer *before* the
    /// notices and the End still queued for it. They must still be read
    /// (a slow analyzer lost the End and reported capture as crashed).
    #[test]
    fn end_is_read_after_capture_closes_with_progress_unread() {
        receive_path(true);
    }

    /// A stand-in capture in a thread serves one frame and the End; with
    /// `unread_progress`, the analyzer acknowledges the frame first and
    /// the stand-in closes without reading that.
    fn receive_path(unread_progress: bool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.pcam");
        let format = FrameFormat::uncompressed(YUYV, 128, 32).unwrap();
        let header = Header {
            format,
            interval: Interval::from_fps(30),
            layout: Layout::new(format.frame_size, 2).unwrap(),
            on_full: OnFull::Wrap,
            created_ns: 0,
            source: String::new(),
        };
        let rec = crate::recording::create(&path, &header, crate::recording::Prealloc::Fallocate)
            .unwrap()
            .publish()
            .unwrap();
        let data = vec![42u8; format.frame_size as usize];
        rec.file
            .write_all_at(&data, header.layout.slot_offset(1))
            .unwrap();
        let meta = FrameMeta {
            sequence: 7,
            bytes_used: format.frame_size,
            ..Default::default()
        };
        let r = Record {
            generation: 2,
            meta,
            crc: meta.checksum(crc32c::crc32c(&data)),
        };
        rec.file
            .write_all_at(&r.encode(), header.layout.record_offset(1))
            .unwrap();
        let sock = dir.path().join("r.sock");
        let listener = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        nix::sys::socket::bind(listener.as_raw_fd(), &UnixAddr::new(&sock).unwrap()).unwrap();
        nix::sys::socket::listen(&listener, nix::sys::socket::Backlog::new(1).unwrap()).unwrap();
        let store = File::open(&path).unwrap();
        let capture = std::thread::spawn(move || {
            let fd = nix::sys::socket::accept(listener.as_raw_fd()).unwrap();
            // SAFETY: accept returned a new descriptor nothing else owns.
            let conn = unsafe { OwnedFd::from_raw_fd(fd) };
            let hello = Hello {
                store_kind: STORE_RECORDING_FILE,
                layout: header.layout,
                format,
                client_id: 1,
                next_sequence: 7,
            }
            .encode();
            nix::sys::socket::sendmsg::<()>(
                conn.as_raw_fd(),
                &[IoSlice::new(&hello)],
                &[nix::sys::socket::ControlMessage::ScmRights(&[
                    store.as_raw_fd()
                ])],
                MsgFlags::empty(),
                None,
            )
            .unwrap();
            let notice = FrameNotice {
                slot: 1,
                generation: 2,
                sequence: 7,
                bytes_used: format.frame_size,
                ..Default::default()
            };
            send(conn.as_raw_fd(), &notice.encode(), MsgFlags::empty()).unwrap();
            let end = End {
                reason: EndReason::Finished,
                frames: 8,
            };
            send(conn.as_raw_fd(), &end.encode(), MsgFlags::empty()).unwrap();
            if unread_progress {
                // Wait until the progress message is queued, leave it.
                let mut b = [0u8; 64];
                recv(conn.as_raw_fd(), &mut b, MsgFlags::MSG_PEEK).unwrap();
                drop(conn);
                return None;
            }
            Some(conn)
        });
        let mut sub = Subscription::connect(&sock, Duration::from_secs(10)).unwrap();
        assert_eq!(sub.hello().next_sequence, 7);
        let capture = if unread_progress {
            sub.send_progress(7);
            // The stand-in has closed the connection with it unread.
            drop(capture.join().unwrap());
            None
        } else {
            Some(capture)
        };
        let Event::Frame(n) = sub.next_event().unwrap() else {
            panic!("expected a frame notice")
        };
        let sum = sub
            .live()
            .read_frame(n.slot, n.generation, n.bytes_used, |v| v.crc32c())
            .unwrap();
        assert_eq!(sum, crc32c::crc32c(&data));
        assert!(matches!(sub.next_event().unwrap(), Event::End(_)));
        if let Some(capture) = capture {
            drop(capture.join().unwrap());
        }
    }
}

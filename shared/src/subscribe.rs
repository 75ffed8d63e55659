//! An analyzer's side of the socket: connect, receive the hello with the
//! recording's read-only descriptor, map it, then receive frame notices.
//!
//! One blocking `recv` per frame (with `SO_RCVTIMEO` as the idle bound), so
//! waiting costs no extra syscall. The analyzer never opens the recording
//! by path: what it maps is exactly what capture writes, and read-only.

use std::fs::File;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    connect, recv, recvmsg, send, setsockopt, socket, sockopt, AddressFamily, ControlMessageOwned,
    MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::sys::time::TimeVal;
use thiserror::Error;

use crate::protocol::{self, End, FrameNotice, Hello, Message, Progress, ProtocolError};
use crate::recording::{RecordingError, RecordingReader};

#[derive(Debug, Error)]
pub enum SubscribeError {
    #[error("cannot connect to capture at {path}: {source} (is pagecam-capture running?)")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("capture sent a bad message: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("capture's hello carried no descriptor")]
    NoDescriptor,
    #[error("capture sent an unexpected message: {0:?}")]
    Unexpected(Box<Message>),
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
}

pub enum Event {
    Frame(FrameNotice),
    End(End),
}

pub struct Subscription {
    sock: OwnedFd,
    reader: RecordingReader,
    hello: Hello,
    idle: Duration,
}

impl Subscription {
    /// Connect and complete the handshake. `idle` bounds how long `next`
    /// waits for a notification.
    pub fn connect(path: &Path, idle: Duration) -> Result<Self, SubscribeError> {
        let conn = |source: std::io::Error| SubscribeError::Connect {
            path: path.to_path_buf(),
            source,
        };
        let sock = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| conn(e.into()))?;
        let addr = UnixAddr::new(path).map_err(|e| conn(e.into()))?;
        connect(sock.as_raw_fd(), &addr).map_err(|e| conn(e.into()))?;
        let tv = TimeVal::new(idle.as_secs() as i64, idle.subsec_micros() as i64);
        setsockopt(&sock, sockopt::ReceiveTimeout, &tv).map_err(std::io::Error::from)?;

        let mut buf = [0u8; protocol::MAX_LEN + 1];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let (n, fd) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map_err(|e| match e {
                Errno::EAGAIN => SubscribeError::Idle(idle),
                e => SubscribeError::Io(e.into()),
            })?;
            let mut fd = None;
            for c in msg.cmsgs().map_err(std::io::Error::from)? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    for raw in fds {
                        // SAFETY: SCM_RIGHTS installed `raw` as a new descriptor
                        // in this process; we are its only owner.
                        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                        if fd.is_none() {
                            fd = Some(owned);
                        }
                    }
                }
            }
            (msg.bytes, fd)
        };
        if n == 0 {
            return Err(SubscribeError::CaptureGone);
        }
        let hello = match protocol::decode(&buf[..n])? {
            Message::Hello(h) => h,
            other => return Err(SubscribeError::Unexpected(Box::new(other))),
        };
        let fd = fd.ok_or(SubscribeError::NoDescriptor)?;
        let reader =
            RecordingReader::from_file(File::from(fd), Path::new("<recording from capture>"))?;
        if reader.header().layout != hello.layout || reader.header().format != hello.format {
            return Err(SubscribeError::Mismatch);
        }
        Ok(Subscription {
            sock,
            reader,
            hello,
            idle,
        })
    }

    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    pub fn reader(&self) -> &RecordingReader {
        &self.reader
    }

    /// Wait for the next notice: one `recv`.
    pub fn next_event(&mut self) -> Result<Event, SubscribeError> {
        let mut buf = [0u8; protocol::MAX_LEN + 1];
        let n = match recv(self.sock.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(0) => return Err(SubscribeError::CaptureGone),
            Ok(n) => n,
            Err(Errno::EAGAIN) => return Err(SubscribeError::Idle(self.idle)),
            Err(Errno::ECONNRESET) => return Err(SubscribeError::CaptureGone),
            Err(e) => return Err(SubscribeError::Io(e.into())),
        };
        match protocol::decode(&buf[..n])? {
            Message::Frame(f) => Ok(Event::Frame(f)),
            Message::End(e) => Ok(Event::End(e)),
            other => Err(SubscribeError::Unexpected(Box::new(other))),
        }
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

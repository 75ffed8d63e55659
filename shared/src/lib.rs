//! pagecam: the recording file, the frame store and ring, the notification
//! protocol and the frame sources shared by `pagecam-capture` and
//! `pagecam-analyzer`.
//!
//! Key design decision: a frame exists in memory once. Capture writes it
//! (or a V4L2 driver does, through USERPTR) into a slot of a shared frame
//! store; analyzers in other processes map the same pages read-only, are
//! told about each frame by a tiny message on a Unix socket, and read it in
//! place, validated by per-slot generation counters (a seqlock). The store
//! is either the recording file's own mapping (`StoreKind::File`) or a
//! sealed memfd ring persisted to the file with `O_DIRECT` from the same
//! pages (`StoreKind::Direct`). Nothing here copies frame data except the
//! single copy of the V4L2 MMAP fallback.
//!
//! Layers, each using only the ones above it: `format` and `protocol`
//! (pure encoding); `sys` (syscall wrappers) and `mapping` (the only module
//! touching shared memory); `recording` (files); `store` (the frame store,
//! writer and reader side); `ring` (the single writer of a store);
//! `persist` (how frames reach the disk); `notify` / `subscribe` (sockets);
//! `source` (frame producers); `capture` (the per-frame loop); `session`
//! (composes them for one run); `stats` (analysis).
//! This crate must not print to the terminal or exit the process: that is
//! the binaries' job.
//!
//! # Your own analyzer
//!
//! Connect to a running capture, wait for a notice per frame, and read the
//! frame where it lies. The bytes are reached through a [`mapping::SlotView`]
//! that is valid only inside the closure (copy a line at a time into memory
//! of your own, or use `crc32c`); the result counts only if `read_frame`
//! returns `Ok`, because capture may reuse the slot before or while you read
//! it (`Overwritten`, `Torn`), and then what you computed is thrown away.
//! A runnable version: `shared/examples/own_analyzer.rs`.
//!
//! ```no_run
//! use std::time::Duration;
//! use pagecam::subscribe::{Event, Subscription};
//!
//! let mut sub = Subscription::connect("/tmp/cam.pcam.sock".as_ref(), Duration::from_secs(10))?;
//! let f = sub.hello().format;
//! let mut line = vec![0u8; f.bytes_per_line as usize];
//! while let Event::Frame(n) = sub.next_event()? {
//!     let first_line_mean = sub.live().read_frame(n.slot, n.generation, n.bytes_used, |view| {
//!         view.copy_to(0, &mut line);
//!         line.iter().map(|&b| b as u64).sum::<u64>() / line.len() as u64
//!     });
//!     match first_line_mean {
//!         Ok(mean) => println!("frame {}: {mean}", n.sequence),
//!         Err(lost) => println!("frame {}: lost ({lost:?})", n.sequence),
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `unsafe` is allowed in these places only: `mapping` (shared memory),
//! `sys` (syscalls beyond std and nix), `source::v4l2` (driver ioctls),
//! and where descriptors are handed over by the kernel or the service
//! manager (`notify`, `subscribe`, `service`).
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(unsafe_code)]

#[cfg(feature = "capture")]
pub mod capture;
pub mod events;
#[cfg(feature = "export")]
pub mod export;
pub mod format;
#[allow(unsafe_code)]
// (The writer's half is unused by an analyzer-only build.)
#[cfg_attr(not(feature = "capture"), allow(dead_code))]
pub mod mapping;
#[cfg(feature = "capture")]
#[allow(unsafe_code)]
pub mod notify;
#[cfg(feature = "capture")]
pub mod persist;
pub mod protocol;
pub mod recording;
pub mod ring;
#[cfg(feature = "capture")]
#[allow(unsafe_code)]
pub mod service;
#[cfg(feature = "capture")]
pub mod session;
pub mod source;
pub mod stats;
pub mod store;
#[allow(unsafe_code)]
pub mod subscribe;
#[allow(unsafe_code)]
pub mod sys;
pub mod units;

/// The binaries' exit codes, in one place (the README's "Exit codes" table
/// lists the same).
pub mod exit {
    /// `pagecam-capture`.
    pub mod capture {
        /// Bad arguments.
        pub const USAGE: u8 = 1;
        /// The source failed: device missing, unsupported, stalled, or the
        /// driver broke the stream.
        pub const SOURCE: u8 = 2;
        /// Storage: cannot create the recording, a write or sync failed, or
        /// the mapped file was truncated under the process (SIGBUS).
        pub const STORAGE: u8 = 3;
        /// The socket is in use or cannot be created.
        pub const SOCKET: u8 = 4;
        /// The camera went away while recording (unplugged, driver
        /// unbound: ENODEV); the recording is valid. A service stops here
        /// instead of restarting: udev starts it again on replug.
        pub const SOURCE_GONE: u8 = 5;
    }
    /// `pagecam-analyzer`.
    pub mod analyzer {
        /// `verify`: some committed frame is corrupt.
        pub const CHECK_FAILED: u8 = 1;
        /// The file is not a readable recording.
        pub const UNREADABLE: u8 = 2;
        /// Storage failed under a mapping (SIGBUS).
        pub const STORAGE: u8 = 3;
        /// Capture is not running, or went away without ending the stream.
        pub const CAPTURE_GONE: u8 = 4;
        /// Bad arguments (sysexits' EX_USAGE: 1 and 2 already mean results).
        pub const USAGE: u8 = 64;
        /// `export`: no frame matched the selection, or none of them could
        /// be read (the same number as `verify`'s failed check: a result,
        /// not an error of the tool).
        pub const NO_FRAMES: u8 = 1;
        /// `export`: the output cannot be written (cannot create, disk
        /// full, closed pipe, encoder failure).
        pub const OUTPUT: u8 = 5;
    }
}

/// Exit code for storage failures, for the SIGBUS handler of both binaries.
pub const EXIT_STORAGE: i32 = exit::capture::STORAGE as i32;
const _: () = assert!(exit::capture::STORAGE == exit::analyzer::STORAGE);

//! Integration tests: they run the real `pagecam-capture` and
//! `pagecam-analyzer` binaries on real files and sockets in a fresh
//! directory under cargo's target tmpdir, and check frame contents.
//!
//! Modules:
//! - `util`: spawning the binaries with timeouts, reading their output.
//! - `analytics`: the detectors on known scenes; late-joining analyzers.
//! - `pipeline`: end to end with analyzers, wrap-around, kills, signals.
//! - `bad_input`: bad paths, sizes, files and socket peers.
//! - `export`: frames out of recordings (PNG, JPEG, raw, Y4M, contact sheet), checked with ffmpeg.
//! - `durability`: kill -9 and resume, the writer lock, crash-safe creation.
//! - `hostile`: other users, hostile and stuck peers, signals, exhausted
//!   descriptors, full and copy-on-write disks.
//! - `handover`: a killed capture's RAM ring written by the next one (fd store).
//! - `systemd`: the units in systemd/ pass systemd-analyze verify.
//! - `guest`: booting Debian kernels with vivid under qemu (tests/vm/vm.sh).
//! - `vivid`: the same binaries against the vivid camera on Linux 6.1 and 6.12.
//! - `powercut`: power cuts (qemu SIGKILL) while recording vivid on Linux 6.1 and 6.12.
//! - `arm64`: the static aarch64 build against vivid on Debian's arm64 Linux 6.1 (qemu).
//! - `service`: the units under systemd as PID 1 (Debian 12 guests, Linux 6.1 and 6.12): udev, watchdog, fd store, unplug.

mod analytics;
mod arm64;
mod bad_input;
mod durability;
mod export;
mod guest;
mod handover;
mod hostile;
mod pipeline;
mod powercut;
mod service;
mod systemd;
mod util;
mod vivid;

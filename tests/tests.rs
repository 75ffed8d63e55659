//! Integration tests: they run the real `pagecam-capture` and
//! `pagecam-analyzer` binaries on real files and sockets in a fresh
//! directory under cargo's target tmpdir, and check frame contents.
//!
//! Modules:
//! - `util`: spawning the binaries with timeouts, reading their output.
//! - `pipeline`: end to end with analyzers, wrap-around, kills, signals.
//! - `bad_input`: bad paths, sizes, files and socket peers.
//! - `durability`: kill -9 and resume, the writer lock, crash-safe creation.
//! - `vivid`: the same binaries against the vivid camera in a qemu guest.

mod bad_input;
mod durability;
mod pipeline;
mod util;

//! The V4L2 kernel ABI: the `#[repr(C)]` structs, unions and constants of
//! `<linux/videodev2.h>` that pagecam uses, under bindgen's names
//! (`v4l2_memory_V4L2_MEMORY_USERPTR`, `__bindgen_anon_1`, ...).
//!
//! Key decision: the bindings are generated once and checked in, so a build
//! needs no libclang and no kernel headers, native or cross. One file per
//! ABI family, both written by `scripts/gen-v4l2-abi.sh` from Debian 12's
//! kernel headers:
//! - `lp64.rs`: x86_64 and aarch64 (the script generates both and fails
//!   unless they are identical);
//! - `arm32.rs`: 32-bit ARM with glibc (`armv7-unknown-linux-gnueabihf`),
//!   32-bit `time_t` in `v4l2_buffer.timestamp`, which is the layout the
//!   ioctl request numbers in `sys` are then computed from.
//!
//! Each file keeps bindgen's compile-time size, alignment and offset
//! assertions for its target, so a file used on the wrong target fails the
//! build; the `tests` module also compares every struct and field with the
//! build machine's C header, compiled by `cc`.
//!
//! With the `v4l` cargo feature the names come instead from the `v4l`
//! crate's bindings, generated at build time against this machine's headers
//! (needs libclang). The checked-in ones are still compiled (where the
//! target has them), so the tests compare those too.
//!
//! Must not: hold hand-written definitions. To add a struct, field or
//! constant, extend the lists in the script and rerun it.

#[cfg(all(
    target_os = "linux",
    target_pointer_width = "64",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    clippy::all
)]
mod lp64;

#[cfg(all(target_os = "linux", target_arch = "arm", target_env = "gnu"))]
#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    clippy::all
)]
mod arm32;

/// The checked-in bindings for the target being built (empty on a target
/// that has none, which only builds with the `v4l` feature).
pub mod checked {
    #[cfg(all(
        target_os = "linux",
        target_pointer_width = "64",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    #[cfg_attr(feature = "v4l", allow(unused_imports))] // then only the tests use them
    pub use super::lp64::*;

    #[cfg(all(target_os = "linux", target_arch = "arm", target_env = "gnu"))]
    #[cfg_attr(feature = "v4l", allow(unused_imports))]
    pub use super::arm32::*;
}

#[cfg(not(feature = "v4l"))]
pub use checked::*;

#[cfg(feature = "v4l")]
pub use v4l::v4l_sys::*;

#[cfg(not(any(
    feature = "v4l",
    all(
        target_os = "linux",
        target_pointer_width = "64",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ),
    all(target_os = "linux", target_arch = "arm", target_env = "gnu")
)))]
compile_error!(
    "pagecam has checked-in V4L2 bindings only for x86_64, aarch64 and 32-bit ARM (glibc) Linux. \
     Build with `--features pagecam/v4l` (bindgen at build time, needs libclang), or add this \
     target to scripts/gen-v4l2-abi.sh and shared/src/source/v4l2/abi/mod.rs."
);

#[cfg(all(
    test,
    target_os = "linux",
    any(
        all(
            target_pointer_width = "64",
            any(target_arch = "x86_64", target_arch = "aarch64")
        ),
        all(target_arch = "arm", target_env = "gnu")
    )
))]
mod tests;

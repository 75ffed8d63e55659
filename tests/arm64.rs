//! The static aarch64 (musl) build of both binaries on Debian's arm64
//! Linux 6.1 with vivid (qemu-system-aarch64 -M virt -cpu cortex-a72, TCG):
//! what users run on Raspberry Pi, Jetson, i.MX and Rockchip boards, on a
//! real arm64 kernel. Every I/O mode records with an analyzer attached; the
//! host checks every line of every frame against vivid's colour bars and
//! every CRC the analyzer computed in place against the file.
//!
//! The binaries come from `PAGECAM_AARCH64_BIN_DIR`: `scripts/test.sh`
//! builds them with `scripts/cross.sh aarch64-unknown-linux-musl` and sets
//! it. Unset, the test fails and says how to set it (unless
//! `PAGECAM_SKIP_VM` is set, as for every guest test). It runs whatever is
//! in that directory: after changing the source, build them again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::guest::{skipped, Guest, GuestArch};
use crate::util::workdir;
use crate::vivid::{analyzer_matches_file, assert_colorbars};

/// The I/O modes, each with an analyzer attached. Every step writes
/// NAME.pcam, NAME.json (capture summary), NAME.err, NAME.rc,
/// NAME.jsonl / NAME.aerr (analyzer), NAME.verify / NAME.vrc into /data.
const SCRIPT: &str = r#"
watched() {
    name=$1; shift
    pagecam-capture --json -o /data/$name.pcam --slots 100 --on-full stop \
        --source /dev/video0 --size 320x180 --fps 30 --frames 40 \
        --ctrl test_pattern=0 --ctrl osd_text_mode=2 "$@" >/data/$name.json 2>/data/$name.err &
    c=$!
    i=0; while [ ! -S /data/$name.pcam.sock ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
    pagecam-analyzer watch --checksum --socket /data/$name.pcam.sock >/data/$name.jsonl 2>/data/$name.aerr
    wait $c
    echo $? >/data/$name.rc
    pagecam-analyzer verify --json /data/$name.pcam >/data/$name.verify
    echo $? >/data/$name.vrc
}
watched userptr --io userptr
watched mmap --io mmap
watched auto --io auto
watched file_userptr --io userptr --store file
uname -m >/data/uname
"#;

const FRAMES: u64 = 40;
const FRAME_BYTES: u64 = 320 * 180 * 2;

fn json(text: &str, what: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}: {text:?}"))
}

/// Boot the arm64 6.1 guest, record with each I/O mode, check on the host.
fn io_modes_on_arm64(arch: &GuestArch) {
    let dir = workdir();
    let disk = dir.path().join("disk.img");
    let guest = Guest {
        kernel: "6.1",
        disk: &disk,
        mkdisk: Some("128M"),
        vivid: "node_types=0x1",
        kill_on: None,
        timeout: Duration::from_secs(300),
    };
    let run = guest.run_on(arch, SCRIPT);
    assert_eq!(
        run.code,
        Some(0),
        "{}: guest script failed:\n{}\n{}",
        arch.label,
        run.harness,
        run.console
    );
    let text = |name: &str| guest.pull_text(&format!("/data/{name}"), dir.path());
    assert_eq!(text("uname").trim(), "aarch64", "the guest's machine");

    for name in ["userptr", "mmap", "auto", "file_userptr"] {
        let what = format!("{} --io {name}", arch.label);
        let err = text(&format!("{name}.err"));
        assert_eq!(text(&format!("{name}.rc")).trim(), "0", "{what}: {err}");
        let summary = json(&text(&format!("{name}.json")), &what);
        assert_eq!(summary["frames"], FRAMES, "{what}: {summary}");
        // Linux 6.1 still pins file-backed pages for USERPTR: zero copies,
        // and auto picks it; MMAP copies each frame once.
        if name == "mmap" {
            assert_eq!(
                summary["bytes_copied_per_frame"], FRAME_BYTES,
                "{what}: {summary}"
            );
        } else {
            assert_eq!(summary["bytes_copied"], 0, "{what}: {summary}");
            let delivery = summary["delivery"].as_str().unwrap_or_default();
            assert!(delivery.starts_with("direct"), "{what}: {summary}");
        }
        let verify = text(&format!("{name}.verify"));
        assert_eq!(
            text(&format!("{name}.vrc")).trim(),
            "0",
            "{what}: verify: {verify}"
        );
        assert_eq!(
            json(&verify, &what)["valid_frames"],
            FRAMES,
            "{what}: {verify}"
        );

        let rec: PathBuf = dir.path().join(format!("{name}.pcam"));
        guest.pull(&format!("/data/{name}.pcam"), &rec);
        let frames = assert_colorbars(&rec);
        assert_eq!(frames as u64, FRAMES, "{what}: colour-bar frames");
        analyzer_matches_file(
            &rec,
            &text(&format!("{name}.jsonl")),
            &text(&format!("{name}.aerr")),
        );
    }
}

#[test]
fn aarch64_static_on_arm64_linux_6_1() {
    if skipped("aarch64_static_on_arm64_linux_6_1") {
        return;
    }
    let Some(dir) = std::env::var_os("PAGECAM_AARCH64_BIN_DIR") else {
        panic!(
            "PAGECAM_AARCH64_BIN_DIR is not set: it names the directory holding the static \
             aarch64 builds of pagecam-capture and pagecam-analyzer. scripts/test.sh sets it. \
             By hand: scripts/cross.sh aarch64-unknown-linux-musl && \
             PAGECAM_AARCH64_BIN_DIR=$PWD/target/aarch64-unknown-linux-musl/release \
             cargo test --test tests -- arm64:: (PAGECAM_SKIP_VM=1 leaves out every qemu guest)"
        );
    };
    io_modes_on_arm64(&GuestArch::arm64("aarch64 musl", Path::new(&dir)));
}

/// 32-bit ARM userspace on the same arm64 kernel through CONFIG_COMPAT
/// (Raspberry Pi OS armhf with its 64-bit kernel), which also exercises the
/// kernel's 32-bit V4L2 ioctl translation (v4l2_buffer with a 32-bit
/// timeval). The static armv7 build comes from `PAGECAM_ARMV7_BIN_DIR`
/// (scripts/test.sh builds armv7-unknown-linux-gnueabihf with
/// `-C target-feature=+crt-static` and sets it); unset, the test fails.
#[test]
fn armv7_static_on_arm64_linux_6_1() {
    if skipped("armv7_static_on_arm64_linux_6_1") {
        return;
    }
    let Some(dir) = std::env::var_os("PAGECAM_ARMV7_BIN_DIR") else {
        panic!(
            "PAGECAM_ARMV7_BIN_DIR is not set: it names the directory of the static armv7 \
             builds (scripts/test.sh sets it). By hand: \
             CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUSTFLAGS='-C target-feature=+crt-static' \
             scripts/cross.sh armv7-unknown-linux-gnueabihf && \
             PAGECAM_ARMV7_BIN_DIR=$PWD/target/armv7-unknown-linux-gnueabihf/release \
             cargo test --test tests -- arm64::"
        );
    };
    io_modes_on_arm64(&GuestArch::arm64("armv7 static (compat)", Path::new(&dir)));
}

//! Running the real binaries in a qemu guest with a real Debian kernel and
//! the vivid camera, through `tests/vm/vm.sh` (which installs qemu, fetches
//! the kernels and caches them outside the repository on first use).
//!
//! These tests need no camera or loadable modules on the host. Set
//! `PAGECAM_SKIP_VM=1` to leave them out on a machine that cannot run qemu:
//! they then print that they did NOT run (CI never sets it).
//!
//! A [`Guest`] describes the boot (kernel, disk, vivid options); a
//! [`GuestArch`] what runs there: the machine (`vm.sh --arch`) and the
//! binaries built for it. [`Guest::run`] boots the x86_64 guest with this
//! build's binaries, [`Guest::run_on`] any other.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::{finish, spawn, ANALYZER, CAPTURE};

pub const KERNELS: [&str; 2] = ["6.1", "6.12"];

pub fn skipped(test: &str) -> bool {
    if std::env::var_os("PAGECAM_SKIP_VM").is_some() {
        eprintln!("NOT RUN: {test}: PAGECAM_SKIP_VM is set, so no qemu guest was booted");
        return true;
    }
    false
}

pub fn vm_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/vm.sh")
}

/// The guest's architecture and the `pagecam-capture` and
/// `pagecam-analyzer` executables put into it (`vm.sh --bin`).
pub struct GuestArch {
    /// `vm.sh --arch`: `x86_64` or `arm64`.
    pub vm_arch: &'static str,
    /// What the binaries are, for messages (e.g. "aarch64 musl").
    pub label: &'static str,
    pub capture: PathBuf,
    pub analyzer: PathBuf,
    /// Also put v4l2-ctl in the guest (`vm.sh --v4l2-ctl`, x86_64 only).
    pub v4l2_ctl: bool,
}

impl GuestArch {
    /// The x86_64 guest with the binaries of this build.
    pub fn host() -> GuestArch {
        GuestArch {
            vm_arch: "x86_64",
            label: "x86_64",
            capture: CAPTURE.into(),
            analyzer: ANALYZER.into(),
            v4l2_ctl: true,
        }
    }

    /// The arm64 guest with the binaries in `dir`, which must be static
    /// (vm.sh refuses dynamic ones: the guest has no C library). 32-bit
    /// ARM binaries run there too, through the kernel's CONFIG_COMPAT.
    pub fn arm64(label: &'static str, dir: &Path) -> GuestArch {
        let arch = GuestArch {
            vm_arch: "arm64",
            label,
            capture: dir.join("pagecam-capture"),
            analyzer: dir.join("pagecam-analyzer"),
            v4l2_ctl: false,
        };
        for bin in [&arch.capture, &arch.analyzer] {
            assert!(
                bin.is_file(),
                "{label}: {} does not exist (build it with scripts/cross.sh)",
                bin.display()
            );
        }
        arch
    }
}

pub struct Guest<'a> {
    pub kernel: &'a str,
    pub disk: &'a Path,
    /// Create the disk first with this size (fresh ext4).
    pub mkdisk: Option<&'a str>,
    pub vivid: &'a str,
    /// Power cut: SIGKILL qemu this long after the console shows MARKER.
    pub kill_on: Option<(&'a str, f64)>,
    pub timeout: Duration,
}

pub struct GuestRun {
    /// The guest command's exit status (137: power was cut; 124: timeout).
    pub code: Option<i32>,
    /// Console output of the command.
    pub console: String,
    pub harness: String,
}

impl Guest<'_> {
    /// Boot the x86_64 guest with this build's binaries and run `script`;
    /// see [`Guest::run_on`].
    pub fn run(&self, script: &str) -> GuestRun {
        self.run_on(&GuestArch::host(), script)
    }

    /// Boot `arch`'s guest and run `script`. A kernel that dies before the
    /// command starts is booted again (at most twice): Debian's 6.12 under
    /// qemu TCG with 2 vCPUs now and then takes an "Oops: int3" in early boot
    /// (a jump label patched while the other vCPU runs it; about 1 boot in 30
    /// here). Nothing has touched the disk then. A guest that dies later is a
    /// failure.
    pub fn run_on(&self, arch: &GuestArch, script: &str) -> GuestRun {
        let mut attempt = 1;
        loop {
            let run = self.run_once(arch, script);
            // (vm.sh's own errors, e.g. a refused --bin, also exit 125
            // before any boot: those are not retried.)
            let died_booting = run.code == Some(125)
                && !run.harness.contains("booted in")
                && !run.harness.contains("[vm.sh] error:");
            if !died_booting || attempt == 3 {
                assert_ne!(
                    run.code,
                    Some(125),
                    "the VM harness failed:\n{}\n{}",
                    run.harness,
                    run.console
                );
                assert_ne!(run.code, Some(124), "the guest timed out:\n{}", run.console);
                return run;
            }
            eprintln!(
                "guest {} {}: the kernel died while booting (qemu TCG flake): booting again\n{}",
                arch.vm_arch, self.kernel, run.harness
            );
            attempt += 1;
        }
    }

    fn run_once(&self, arch: &GuestArch, script: &str) -> GuestRun {
        let mut cmd = Command::new(vm_sh());
        cmd.args(["run", "--arch", arch.vm_arch, "--kernel", self.kernel]);
        if arch.v4l2_ctl {
            cmd.arg("--v4l2-ctl");
        }
        cmd.arg("--bin").arg(&arch.capture);
        cmd.arg("--bin").arg(&arch.analyzer);
        cmd.arg("--disk").arg(self.disk);
        if let Some(size) = self.mkdisk {
            cmd.args(["--mkdisk", size]);
        }
        if !self.vivid.is_empty() {
            cmd.args(["--vivid", self.vivid]);
        }
        if let Some((marker, delay)) = self.kill_on {
            cmd.args(["--kill-on", marker, "--kill-delay", &format!("{delay:.2}")]);
        }
        cmd.args([
            "--timeout",
            &self.timeout.as_secs().to_string(),
            "--",
            script,
        ]);
        let out = finish(
            spawn(cmd),
            self.timeout + Duration::from_secs(120),
            "qemu guest",
        );
        GuestRun {
            code: out.status.code(),
            console: String::from_utf8_lossy(&out.stdout).into_owned(),
            harness: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Copy a file out of the guest's disk image.
    pub fn pull(&self, guest_path: &str, host_path: &Path) {
        let out = Command::new(vm_sh())
            .arg("pull")
            .arg(self.disk)
            .arg(guest_path)
            .arg(host_path)
            .output()
            .expect("vm.sh pull");
        assert!(
            out.status.success(),
            "pull {guest_path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn pull_text(&self, guest_path: &str, dir: &Path) -> String {
        let host = dir.join(guest_path.trim_start_matches("/data/").replace('/', "_"));
        self.pull(guest_path, &host);
        std::fs::read_to_string(&host).unwrap_or_default()
    }
}

/// Copy a file out of a guest's disk image (`vm.sh pull`).
pub fn pull_file(disk: &Path, guest_path: &str, host_path: &Path) {
    let out = Command::new(vm_sh())
        .arg("pull")
        .arg(disk)
        .arg(guest_path)
        .arg(host_path)
        .output()
        .expect("vm.sh pull");
    assert!(
        out.status.success(),
        "pull {guest_path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A guest that boots Debian 12 with systemd as PID 1 (`vm.sh run
/// --systemd`, x86_64): the cached Debian root, with `files` copied in and
/// the disk mounted at `disk_at`. Unlike [`Guest`], vivid is not loaded at
/// boot: the script loads it (`modprobe vivid` uses the `vivid` options),
/// so udev and systemd see the camera appear.
pub struct SystemdGuest<'a> {
    pub kernel: &'a str,
    pub disk: &'a Path,
    /// Create the disk first with this size (fresh ext4).
    pub mkdisk: Option<&'a str>,
    /// Where the disk is mounted in the guest.
    pub disk_at: &'a str,
    pub vivid: &'a str,
    /// Host files and where they go in the guest (`vm.sh --add`).
    pub files: Vec<(PathBuf, String)>,
    pub timeout: Duration,
}

impl SystemdGuest<'_> {
    /// Boot and run `script` (as root, in /root, once basic.target is
    /// reached). A kernel that dies before the command starts is booted
    /// again, at most twice, as in [`Guest::run_on`].
    pub fn run(&self, script: &str) -> GuestRun {
        let mut attempt = 1;
        loop {
            let run = self.run_once(script);
            let died_booting = run.code == Some(125)
                && !run.harness.contains("booted in")
                && !run.harness.contains("[vm.sh] error:");
            if !died_booting || attempt == 3 {
                assert_ne!(
                    run.code,
                    Some(125),
                    "the VM harness failed:\n{}\n{}",
                    run.harness,
                    run.console
                );
                assert_ne!(
                    run.code,
                    Some(124),
                    "the guest timed out:\n{}\n{}",
                    run.harness,
                    run.console
                );
                return run;
            }
            eprintln!(
                "systemd guest {}: the kernel died while booting (qemu TCG flake): booting again\n{}",
                self.kernel, run.harness
            );
            attempt += 1;
        }
    }

    fn run_once(&self, script: &str) -> GuestRun {
        let mut cmd = Command::new(vm_sh());
        cmd.args(["run", "--systemd", "--kernel", self.kernel]);
        cmd.arg("--disk").arg(self.disk);
        cmd.args(["--disk-at", self.disk_at]);
        if let Some(size) = self.mkdisk {
            cmd.args(["--mkdisk", size]);
        }
        if !self.vivid.is_empty() {
            cmd.args(["--vivid", self.vivid]);
        }
        for (host, guest) in &self.files {
            let mut add = host.clone().into_os_string();
            add.push(":");
            add.push(guest);
            cmd.arg("--add").arg(add);
        }
        cmd.args([
            "--timeout",
            &self.timeout.as_secs().to_string(),
            "--",
            script,
        ]);
        let out = finish(
            spawn(cmd),
            self.timeout + Duration::from_secs(600),
            "qemu guest (systemd)",
        );
        GuestRun {
            code: out.status.code(),
            console: String::from_utf8_lossy(&out.stdout).into_owned(),
            harness: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Copy a file out of the guest's disk (a path on that disk, e.g.
    /// `/video0.pcam` for `{disk_at}/video0.pcam`).
    pub fn pull(&self, guest_path: &str, host_path: &Path) {
        pull_file(self.disk, guest_path, host_path);
    }
}

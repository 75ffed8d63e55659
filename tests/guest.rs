//! Running the real binaries in a qemu guest with a real Debian kernel and
//! the vivid camera, through `tests/vm/vm.sh` (which installs qemu, fetches
//! the kernels and caches them outside the repository on first use).
//!
//! These tests need no camera or loadable modules on the host. Set
//! `PAGECAM_SKIP_VM=1` to leave them out on a machine that cannot run qemu:
//! they then print that they did NOT run (CI never sets it).

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
    /// Boot and run `script`. A kernel that dies before the command starts
    /// is booted again (at most twice): Debian's 6.12 under qemu TCG with 2
    /// vCPUs now and then takes an "Oops: int3" in early boot (a jump label
    /// patched while the other vCPU runs it; about 1 boot in 30 here). Nothing
    /// has touched the disk then. A guest that dies later is a failure.
    pub fn run(&self, script: &str) -> GuestRun {
        let mut attempt = 1;
        loop {
            let run = self.run_once(script);
            let died_booting = run.code == Some(125) && !run.harness.contains("booted in");
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
                "guest {}: the kernel died while booting (qemu TCG flake): booting again\n{}",
                self.kernel, run.harness
            );
            attempt += 1;
        }
    }

    fn run_once(&self, script: &str) -> GuestRun {
        let mut cmd = Command::new(vm_sh());
        cmd.args([
            "run",
            "--kernel",
            self.kernel,
            "--v4l2-ctl",
            "--bin",
            CAPTURE,
            "--bin",
            ANALYZER,
        ]);
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

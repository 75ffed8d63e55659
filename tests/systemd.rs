//! The shipped systemd units.

use crate::util::*;

/// The shipped systemd units are valid for systemd's own checker, with
/// the real binaries in place of the installed paths.
#[test]
fn systemd_units_verify() {
    let dir = workdir();
    let units = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let mut paths = Vec::new();
    for name in ["pagecam-capture.service", "pagecam-analyzer.service"] {
        let text = std::fs::read_to_string(units.join(name)).unwrap();
        let text = text
            .replace("/usr/local/bin/pagecam-capture", CAPTURE)
            .replace("/usr/local/bin/pagecam-analyzer", ANALYZER);
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        paths.push(p);
    }
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
        .expect("systemd-analyze (Debian package systemd; scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "warnings: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

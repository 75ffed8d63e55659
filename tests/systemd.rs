//! The shipped systemd units, users and udev rule, checked offline with
//! systemd's own tools (Debian 12: systemd 252). `service` runs them under
//! systemd as PID 1.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

const UNITS: [&str; 2] = ["pagecam-capture@.service", "pagecam-analyzer@.service"];

/// The highest `systemd-analyze security` exposure allowed (0.0 to 10.0).
const MAX_EXPOSURE: f64 = 2.0;

/// What is left exposed, and why: everything else systemd-analyze security
/// knows about is locked down. (capture, analyzer) per item.
const ACCEPTED: [(&str, bool, bool, &str); 6] = [
    (
        "SystemCallFilter=~@resources",
        true,
        false,
        "capture's writer thread lowers its own priority (setpriority)",
    ),
    (
        "SupplementaryGroups=",
        true,
        false,
        "capture is in group video, for /dev/videoN",
    ),
    (
        "DeviceAllow=",
        true,
        true,
        "capture: /dev/%I rw; both: char-rtc r, which ProtectClock= adds",
    ),
    (
        "RestrictAddressFamilies=~AF_UNIX",
        true,
        true,
        "the analyzers' socket (and sd_notify) are Unix sockets",
    ),
    (
        "RootDirectory=/RootImage=",
        true,
        true,
        "the binaries and their libraries come from the host's /usr",
    ),
    (
        "UMask=",
        true,
        false,
        "0027: the group (analyzers) may read what capture creates",
    ),
];

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd")
}

/// The units with the real binaries in place of the installed paths, in a
/// fresh directory.
fn installed_units(dir: &Path) -> Vec<PathBuf> {
    UNITS
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(units_dir().join(name)).unwrap();
            let text = text
                .replace("/usr/local/bin/pagecam-capture", CAPTURE)
                .replace("/usr/local/bin/pagecam-analyzer", ANALYZER);
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        })
        .collect()
}

/// `pagecam-capture@video0.service` for `pagecam-capture@.service`.
fn instance(template: &Path) -> PathBuf {
    let name = template.file_name().unwrap().to_str().unwrap();
    template.with_file_name(name.replace("@.", "@video0."))
}

fn systemd_analyze() -> Command {
    Command::new("systemd-analyze")
}

fn output(mut cmd: Command) -> std::process::Output {
    cmd.output()
        .expect("systemd-analyze (Debian package systemd; scripts/setup.sh installs it)")
}

/// The shipped units are valid for systemd's own checker, as instances
/// (video0) of the templates, with the real binaries in place of the
/// installed paths.
#[test]
fn systemd_units_verify() {
    let dir = workdir();
    let instances: Vec<PathBuf> = installed_units(dir.path())
        .iter()
        .map(|t| instance(t))
        .collect();
    let mut cmd = systemd_analyze();
    cmd.arg("verify").args(&instances);
    let out = output(cmd);
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

/// One `systemd-analyze security` verdict: the overall exposure and the
/// items that count against it (name, exposure).
struct Security {
    overall: f64,
    exposed: Vec<(String, f64)>,
    text: String,
}

fn security(unit: &Path) -> Security {
    let mut cmd = systemd_analyze();
    // --threshold is on systemd's internal 0-100 scale: 20 = 2.0.
    cmd.args([
        "security",
        "--offline=true",
        &format!("--threshold={}", (MAX_EXPOSURE * 10.0) as u32),
        "--no-pager",
    ])
    .arg(unit);
    let out = output(cmd);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let overall = text
        .lines()
        .find_map(|l| {
            let rest = l.split_once("Overall exposure level for ")?.1;
            rest.split_once(": ")?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| {
            panic!(
                "no overall exposure in:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    // Failed items: "✗ NAME   DESCRIPTION   EXPOSURE" (the exposure is the
    // last word).
    let exposed = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('✗'))
        .filter_map(|l| {
            let name = l.split_whitespace().next()?.to_string();
            let e = l.split_whitespace().last()?.parse().ok()?;
            Some((name, e))
        })
        .collect();
    assert_eq!(
        out.status.success(),
        overall <= MAX_EXPOSURE,
        "systemd-analyze's own threshold check disagrees:\n{text}"
    );
    Security {
        overall,
        exposed,
        text,
    }
}

/// Both units are hardened to an exposure of at most 2.0, and what is left
/// is exactly the list of accepted items above (a new one fails here and
/// must be justified there).
#[test]
fn systemd_units_are_hardened_to_an_exposure_of_at_most_2() {
    let dir = workdir();
    let mut table = String::new();
    for (i, template) in installed_units(dir.path()).iter().enumerate() {
        let unit = instance(template);
        let s = security(&unit);
        let name = unit.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            s.overall <= MAX_EXPOSURE,
            "{name}: exposure {} > {MAX_EXPOSURE}:\n{}",
            s.overall,
            s.text
        );
        table += &format!("{name}: overall exposure {:.1}\n", s.overall);
        for (item, e) in &s.exposed {
            let accepted = ACCEPTED
                .iter()
                .find(|a| a.0 == item && if i == 0 { a.1 } else { a.2 });
            let why = accepted.unwrap_or_else(|| {
                panic!(
                    "{name}: {item} ({e}) is exposed and not in ACCEPTED:\n{}",
                    s.text
                )
            });
            table += &format!("  {item:<36} {e:.1}  {}\n", why.3);
        }
        for a in ACCEPTED.iter().filter(|a| if i == 0 { a.1 } else { a.2 }) {
            assert!(
                s.exposed.iter().any(|(item, _)| item == a.0),
                "{name}: {} is no longer exposed: take it out of ACCEPTED",
                a.0
            );
        }
    }
    report("systemd", "exposure", &table);
}

/// The sysusers.d file makes the users the units run as: capture as
/// `pagecam` (group pagecam, also in video), analyzers as
/// `pagecam-analyzer` in group pagecam and nothing else.
#[test]
fn sysusers_makes_the_users_the_units_run_as() {
    let dir = workdir();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nvideo:x:44:\n").unwrap();
    let out = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.display()))
        .arg(units_dir().join("pagecam.sysusers"))
        .output()
        .expect("systemd-sysusers (Debian package systemd)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    let field = |text: &str, name: &str, i: usize| -> String {
        text.lines()
            .find(|l| l.split(':').next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .split(':')
            .nth(i)
            .unwrap()
            .to_string()
    };
    let gid = field(&group, "pagecam", 2);
    assert_eq!(field(&passwd, "pagecam", 3), gid, "{passwd}");
    assert_eq!(field(&passwd, "pagecam-analyzer", 3), gid, "{passwd}");
    assert_ne!(
        field(&passwd, "pagecam", 2),
        field(&passwd, "pagecam-analyzer", 2),
        "{passwd}"
    );
    assert_eq!(field(&group, "video", 3), "pagecam", "{group}");
    assert_eq!(field(&group, "pagecam", 3), "", "{group}");
    assert!(
        field(&passwd, "pagecam-analyzer", 6).ends_with("nologin"),
        "{passwd}"
    );

    // The units use these names.
    let unit = |name: &str| std::fs::read_to_string(units_dir().join(name)).unwrap();
    let capture = unit("pagecam-capture@.service");
    let analyzer = unit("pagecam-analyzer@.service");
    for line in [
        "User=pagecam\n",
        "Group=pagecam\n",
        "SupplementaryGroups=video\n",
    ] {
        assert!(capture.contains(line), "capture unit: no {line}");
    }
    for line in ["User=pagecam-analyzer\n", "Group=pagecam\n"] {
        assert!(analyzer.contains(line), "analyzer unit: no {line}");
    }
}

/// The udev rule starts the template for capture nodes only, and the
/// units agree with it and with each other on names and paths.
#[test]
fn udev_rule_and_units_agree() {
    let read = |name: &str| std::fs::read_to_string(units_dir().join(name)).unwrap();
    let rule = read("70-pagecam.rules");
    let rules: Vec<&str> = rule
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(rules.len(), 1, "{rule}");
    for part in [
        "SUBSYSTEM==\"video4linux\"",
        "ENV{ID_V4L_CAPABILITIES}==\"*:capture:*\"",
        "TAG+=\"systemd\"",
        "ENV{SYSTEMD_WANTS}+=\"pagecam-capture@%k.service\"",
    ] {
        assert!(rules[0].contains(part), "no {part} in {}", rules[0]);
    }
    let capture = read("pagecam-capture@.service");
    let analyzer = read("pagecam-analyzer@.service");
    for line in [
        "BindsTo=dev-%i.device\n",
        "After=dev-%i.device\n",
        "Type=notify\n",
        "NotifyAccess=main\n",
        "FileDescriptorStoreMax=1\n",
        "Restart=on-failure\n",
        "StateDirectory=pagecam\n",
        "RuntimeDirectory=pagecam\n",
        "RuntimeDirectoryPreserve=yes\n",
    ] {
        assert!(capture.contains(line), "capture unit: no {line}");
    }
    let exec = capture
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .unwrap();
    for arg in [
        " --resume ",
        " -d /dev/%I ",
        " -o /var/lib/pagecam/%i.pcam ",
        " --socket /run/pagecam/%i.sock ",
    ] {
        assert!(exec.contains(arg), "capture's ExecStart lacks{arg}: {exec}");
    }
    for line in [
        "BindsTo=pagecam-capture@%i.service\n",
        "After=pagecam-capture@%i.service\n",
        "WantedBy=pagecam-capture@%i.service\n",
    ] {
        assert!(analyzer.contains(line), "analyzer unit: no {line}");
    }
    assert!(
        analyzer.contains("--socket /run/pagecam/%i.sock"),
        "the analyzer follows capture's socket"
    );
    // Only capture owns the directories (the analyzer declaring them
    // would make systemd hand them to its user).
    for key in ["StateDirectory", "RuntimeDirectory"] {
        assert!(!analyzer.contains(key), "analyzer unit: {key}");
    }
}

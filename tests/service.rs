//! The shipped units under systemd as PID 1: a Debian 12 guest (`vm.sh run
//! --systemd`, qemu TCG; Linux 6.12, and 6.1, Debian 12's default kernel)
//! installs them as the README says and plugs in vivid; udev starts
//! `pagecam-capture@video0`, which pulls in the enabled
//! `pagecam-analyzer@video0`. One boot per kernel then goes through what
//! the units promise, in order:
//!
//! 1. plug: READY=1 (the unit is `active` only then), `STATUS=`, the
//!    sandbox (users, groups, no capabilities, seccomp), the recording's
//!    owner and mode, the analyzer user reads it but cannot write it;
//! 2. watchdog: `kill -STOP` of capture; systemd's watchdog aborts it, the
//!    restarted capture resumes the recording, the analyzer follows;
//! 3. crash: the recording's disk is frozen (`fsfreeze`) so frames pile up
//!    in the RAM ring, capture is `kill -KILL`ed; the restarted one gets the
//!    ring back from the descriptor store (FDSTORE) and writes them;
//! 4. unplug: vivid's device is unbound (the kernel's view of a camera
//!    pulled out while in use); BindsTo= stops both units; vivid can then
//!    be unloaded (capture let go of the device);
//! 5. replug: `modprobe vivid`; udev starts capture again, it resumes;
//! 6. stop: capture's SIGTERM path ends within TimeoutStopSec (exit 0,
//!    "Deactivated successfully", no SIGKILL), an analyzer gets End.
//!
//! The host then pulls the recording and the journal: `verify` passes,
//! every frame is vivid's colour bars, the sessions are in order, and every
//! frame the analyzer service read in place is the frame on disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pagecam::recording::RecordingReader;

use crate::guest::{skipped, SystemdGuest};
use crate::util::{report, verify, workdir, ANALYZER, CAPTURE};
use crate::vivid::{analyzer_matches_file, assert_colorbars};

/// The guest side. Facts go to the console as `@@ key=value` lines; each
/// step also marks the journal (`PHASE name`, tag pagecam-test), which is
/// dumped to the disk at the end.
const SCRIPT: &str = r#"
set -u
cap=pagecam-capture@video0.service
ana=pagecam-analyzer@video0.service
state=/var/lib/pagecam
rec=$state/video0.pcam
say() { echo "@@ $1=$2"; } # one line each
phase() { echo "PHASE $1" | systemd-cat -t pagecam-test; say phase "$1"; }
prop() { systemctl show -P "$2" "$1"; }
# within SECONDS CMD...: CMD succeeds within SECONDS (polled every 0.2 s).
within() { n=$(($1 * 5)); shift; until "$@"; do n=$((n - 1)); [ $n -gt 0 ] || return 1; sleep 0.2; done; }
# running UNIT OLD_PID: active (READY=1 for capture) with a new main PID.
running() { [ "$(prop $1 ActiveState)" = active ] && p=$(prop $1 MainPID) && [ "$p" != 0 ] && [ "$p" != "$2" ]; }
stopped() { case $(prop $1 ActiveState) in inactive | failed) true ;; *) false ;; esac; }
yes_no() { if "$@"; then echo yes; else echo no; fi; }
as_analyzer() { setpriv --reuid=pagecam-analyzer --regid=pagecam --clear-groups "$@"; }

phase install
src=/root/pagecam/systemd
install -m 0644 $src/pagecam-capture@.service $src/pagecam-analyzer@.service /etc/systemd/system/
install -m 0644 $src/pagecam.sysusers /usr/lib/sysusers.d/pagecam.conf
install -m 0644 $src/70-pagecam.rules /etc/udev/rules.d/
install -m 0644 $src/pagecam.default /etc/default/pagecam
systemd-sysusers
udevadm control --reload
systemctl daemon-reload
systemctl enable pagecam-analyzer@video0.service
# Per camera: vivid's colour bars without its text, small frames, a
# status line every 2 s, CRCs from the analyzer.
cat >/etc/default/pagecam-video0 <<EOF
PAGECAM_CAPACITY=256M
PAGECAM_STATUS_INTERVAL=2s
PAGECAM_ARGS=--size 320x180 --fps 30 --ctrl test_pattern=0 --ctrl osd_text_mode=2
PAGECAM_ANALYZER_ARGS=--checksum
EOF
say user_capture "$(id pagecam)"
say user_analyzer "$(id pagecam-analyzer)"

phase plug
modprobe vivid
say plug_started "$(yes_no within 90 running $cap 0)"
pid1=$(prop $cap MainPID)
say plug_status "$(prop $cap StatusText)"
say plug_analyzer "$(yes_no within 30 running $ana 0)"
apid1=$(prop $ana MainPID)
sleep 3
say plug_status_later "$(prop $cap StatusText)"
say rec "$(stat -c %U:%G:%a $rec)"
say sock "$(stat -c %U:%G:%a:%F /run/pagecam/video0.sock)"
say state_dir "$(stat -c %U:%G:%a $state)"
say run_dir "$(stat -c %U:%G:%a /run/pagecam)"
say capture_proc "$(stat -c %U:%G /proc/$pid1) $(grep -E '^(Groups|CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/$pid1/status | tr -s '\t\n' '  ')"
say analyzer_proc "$(stat -c %U:%G /proc/$apid1) $(grep -E '^(Groups|CapEff|Seccomp):' /proc/$apid1/status | tr -s '\t\n' '  ')"
say capture_memlock "$(grep 'Max locked memory' /proc/$pid1/limits | tr -s ' ')"
as_analyzer sh -c "echo x >>$rec" 2>/dev/null
say analyzer_append $?
as_analyzer sh -c "exec 3<>$rec" 2>/dev/null
say analyzer_open_rw $?
as_analyzer pagecam-analyzer verify $rec >/dev/null 2>&1
say analyzer_verify $?
setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c "exec 3<$rec" 2>/dev/null
say nobody_read $?

phase watchdog
kill -STOP $pid1
say watchdog_restarted "$(yes_no within 60 running $cap $pid1)"
pid2=$(prop $cap MainPID)
say watchdog_analyzer "$(yes_no within 30 running $ana $apid1)"
apid2=$(prop $ana MainPID)
sleep 3

phase crash
# The disk stops: the writer blocks, the RAM ring (500 ms) fills. SIGKILL
# takes effect once the disk thaws (the writer sleeps uninterruptibly).
fsfreeze -f $state
sleep 1.5
kill -KILL $pid2
sleep 0.5
fsfreeze -u $state
say crash_restarted "$(yes_no within 60 running $cap $pid2)"
pid3=$(prop $cap MainPID)
say crash_analyzer "$(yes_no within 30 running $ana $apid2)"
sleep 3

phase unplug
echo vivid.0 >/sys/bus/platform/drivers/vivid/unbind
say unplug_stopped "$(yes_no within 30 stopped $cap)"
say unplug_analyzer_stopped "$(yes_no within 30 stopped $ana)"
sleep 3
rmmod vivid
say unplug_rmmod $?

phase replug
modprobe vivid
say replug_started "$(yes_no within 90 running $cap $pid3)"
say replug_analyzer "$(yes_no within 30 running $ana 0)"
sleep 3

phase stop
# A second analyzer, outside systemd, to see End arrive (the units' own
# analyzer is stopped first: it is ordered after capture).
as_analyzer pagecam-analyzer watch --quiet --socket /run/pagecam/video0.sock >/dev/null 2>/tmp/end.txt &
a=$!
sleep 1
systemctl stop $cap
wait $a
say stop_end "$(tr '\n' ' ' </tmp/end.txt)"

phase end
journalctl -b -o short-monotonic --no-pager >$state/journal.txt
sync
"#;

/// The `@@ key=value` facts the guest printed.
fn facts(console: &str) -> BTreeMap<String, String> {
    console
        .lines()
        .filter_map(|l| l.strip_prefix("@@ ")?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// The journal, split at the test's `PHASE name` marks.
fn phases(journal: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut at = "boot".to_string();
    for line in journal.lines() {
        if let Some((_, name)) = line.split_once("pagecam-test[") {
            if let Some((_, p)) = name.split_once("]: PHASE ") {
                at = p.trim().to_string();
                continue;
            }
        }
        out.entry(at.clone()).or_default().push(line.to_string());
    }
    out
}

/// Lines of a phase containing all of `words`.
fn lines_with<'a>(phase: &'a [String], words: &[&str]) -> Vec<&'a str> {
    phase
        .iter()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .map(String::as_str)
        .collect()
}

/// `N` in capture's "recovered N frames (...)", if logged in `phase`.
fn recovered(phase: &[String]) -> Option<u64> {
    phase.iter().find_map(|l| {
        let rest = l.split_once("recovered ")?.1;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The analyzer service's JSON lines (one per frame) from the journal.
fn analyzer_json(journal: &str) -> String {
    journal
        .lines()
        .filter(|l| l.contains(" pagecam-analyzer["))
        .filter_map(|l| l.split_once("]: ").map(|(_, j)| j))
        .filter(|j| j.starts_with('{') && j.contains("\"seq\""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn repo_file(rel: &str) -> (PathBuf, String) {
    (
        Path::new(env!("CARGO_MANIFEST_DIR")).join(rel),
        format!("/root/pagecam/{rel}"),
    )
}

/// Linux 6.12, Debian 12's newest (backports/point release) kernel.
#[test]
fn the_units_under_systemd_watchdog_fdstore_unplug_replug_linux_6_12() {
    if skipped("service::the_units_under_systemd_watchdog_fdstore_unplug_replug_linux_6_12") {
        return;
    }
    the_units_under_systemd("6.12");
}

/// Linux 6.1, the kernel a Debian 12 board runs by default: the sandbox
/// (user and mount namespaces, seccomp, ProtectProc=) on the older kernel.
#[test]
fn the_units_under_systemd_watchdog_fdstore_unplug_replug_linux_6_1() {
    if skipped("service::the_units_under_systemd_watchdog_fdstore_unplug_replug_linux_6_1") {
        return;
    }
    the_units_under_systemd("6.1");
}

fn the_units_under_systemd(kernel: &str) {
    let dir = workdir();
    let disk = dir.path().join("state.img");
    let mut files = vec![
        (
            PathBuf::from(CAPTURE),
            "/usr/local/bin/pagecam-capture".to_string(),
        ),
        (
            PathBuf::from(ANALYZER),
            "/usr/local/bin/pagecam-analyzer".to_string(),
        ),
    ];
    for f in [
        "systemd/pagecam-capture@.service",
        "systemd/pagecam-analyzer@.service",
        "systemd/pagecam.sysusers",
        "systemd/70-pagecam.rules",
        "systemd/pagecam.default",
    ] {
        files.push(repo_file(f));
    }
    let guest = SystemdGuest {
        kernel,
        disk: &disk,
        mkdisk: Some("512M"),
        // The recording's own disk, mounted where the unit's
        // StateDirectory= is, so that it alone can be frozen.
        disk_at: "/var/lib/pagecam",
        vivid: "node_types=0x1",
        files,
        timeout: Duration::from_secs(300),
    };
    let run = guest.run(SCRIPT);
    let f = facts(&run.console);
    assert_eq!(
        (run.code, f.get("phase").map(String::as_str)),
        (Some(0), Some("end")),
        "the guest script failed:\n{}\n{}",
        run.harness,
        run.console
    );
    let journal_path = dir.path().join("journal.txt");
    guest.pull("/journal.txt", &journal_path);
    let journal = std::fs::read_to_string(&journal_path).unwrap();
    // Kept for a look after a failure (not a table: scripts/test.sh does
    // not print it).
    let kept = reports_dir().join(format!("service-journal-linux-{kernel}.log"));
    let _ = std::fs::create_dir_all(reports_dir());
    let _ = std::fs::write(&kept, &journal);
    let p = phases(&journal);
    let phase = |name: &str| p.get(name).map(Vec::as_slice).unwrap_or_default();
    let fact = |k: &str| f.get(k).map(String::as_str).unwrap_or("(missing)");
    let has = |name: &str, words: &[&str]| !lines_with(phase(name), words).is_empty();
    // Every check names its phase; a failure shows that phase's journal
    // (without the analyzer's line per frame) and the facts.
    let check = |ok: bool, name: &str, what: &str| {
        if !ok {
            let lines: Vec<&str> = phase(name)
                .iter()
                .filter(|l| !l.contains("]: {\"seq\""))
                .map(String::as_str)
                .collect();
            panic!(
                "{name}: {what}\n--- journal, phase {name} ({}):\n{}\n--- console:\n{}",
                kept.display(),
                lines.join("\n"),
                run.console
            );
        }
    };
    let fact_is = |name: &str, k: &str, want: &str| {
        check(
            fact(k) == want,
            name,
            &format!("{k} = {:?}, want {want:?}", fact(k)),
        );
    };

    // 1. Plug: udev started capture, READY=1 made it active (Type=notify),
    // the enabled analyzer came with it; users, sandbox, file modes.
    let users = format!("{} / {}", fact("user_capture"), fact("user_analyzer"));
    check(
        fact("user_capture").contains("gid=")
            && fact("user_capture").contains("(pagecam)")
            && fact("user_capture").contains("(video)"),
        "install",
        &users,
    );
    check(
        fact("user_analyzer").contains("(pagecam)") && !fact("user_analyzer").contains("video"),
        "install",
        &users,
    );
    fact_is("plug", "plug_started", "yes");
    check(
        fact("plug_status").starts_with("recording"),
        "plug",
        &format!("StatusText right after READY: {:?}", fact("plug_status")),
    );
    // Then the status line, every 2 s: "recording: 30.0 fps, 95 frames, ..."
    check(
        fact("plug_status_later").starts_with("recording: ")
            && fact("plug_status_later").contains(" fps, ")
            && fact("plug_status_later").contains(" frames, "),
        "plug",
        &format!("StatusText 3 s later: {:?}", fact("plug_status_later")),
    );
    fact_is("plug", "plug_analyzer", "yes");
    check(
        has(
            "plug",
            &["pagecam-capture[", "recording /var/lib/pagecam/video0.pcam"],
        ),
        "plug",
        "capture's start",
    );
    check(
        has("plug", &["pagecam-analyzer[", "connected as client"]),
        "plug",
        "the analyzer connected",
    );
    fact_is("plug", "rec", "pagecam:pagecam:640");
    fact_is("plug", "sock", "pagecam:pagecam:660:socket");
    fact_is("plug", "state_dir", "pagecam:pagecam:750");
    fact_is("plug", "run_dir", "pagecam:pagecam:750");
    let cap_proc = fact("capture_proc");
    for want in [
        "pagecam:pagecam ",
        "CapEff: 0000000000000000",
        "CapBnd: 0000000000000000",
        "NoNewPrivs: 1",
        "Seccomp: 2",
    ] {
        check(
            cap_proc.contains(want),
            "plug",
            &format!("capture process: {cap_proc}"),
        );
    }
    let ana_proc = fact("analyzer_proc");
    for want in [
        "pagecam-analyzer:pagecam ",
        "CapEff: 0000000000000000",
        "Seccomp: 2",
    ] {
        check(
            ana_proc.contains(want),
            "plug",
            &format!("analyzer process: {ana_proc}"),
        );
    }
    check(
        fact("capture_memlock").contains("536870912"),
        "plug",
        fact("capture_memlock"),
    );
    for k in ["analyzer_append", "analyzer_open_rw", "nobody_read"] {
        check(fact(k) != "0", "plug", &format!("{k} succeeded"));
    }
    fact_is("plug", "analyzer_verify", "0");
    // The RAM ring was locked, and the sandbox refused nothing.
    for l in journal
        .lines()
        .filter(|l| l.contains(" pagecam-capture[") || l.contains(" pagecam-analyzer["))
    {
        for bad in [
            "could not lock",
            "could not populate",
            "not permitted",
            "Permission denied",
            "could not recover",
        ] {
            check(!l.contains(bad), "plug", l);
        }
    }

    // 2. Watchdog: the stopped capture stopped pinging; systemd aborted
    // it and restarted it; it continued the recording; the analyzer
    // followed (a new process, connected again).
    fact_is("watchdog", "watchdog_restarted", "yes");
    check(
        has(
            "watchdog",
            &["pagecam-capture@video0.service: Watchdog timeout"],
        ),
        "watchdog",
        "no watchdog timeout",
    );
    check(
        has(
            "watchdog",
            &["pagecam-capture@video0.service: Failed with result 'watchdog'"],
        ),
        "watchdog",
        "result",
    );
    check(
        has("watchdog", &["pagecam-capture[", "resuming at sequence"]),
        "watchdog",
        "no resume after the watchdog",
    );
    fact_is("watchdog", "watchdog_analyzer", "yes");
    check(
        has("watchdog", &["pagecam-analyzer[", "connected as client"]),
        "watchdog",
        "the analyzer did not reconnect",
    );

    // 3. Crash with frames only in the RAM ring: they came back from the
    // descriptor store.
    fact_is("crash", "crash_restarted", "yes");
    check(
        has(
            "crash",
            &["pagecam-capture@video0.service: Main process exited, code=killed, status=9/KILL"],
        ),
        "crash",
        "SIGKILL",
    );
    let recovered_frames = recovered(phase("crash"));
    check(
        recovered_frames.is_some_and(|n| n > 0),
        "crash",
        "the restarted capture recovered no frames from the descriptor store",
    );
    fact_is("crash", "crash_analyzer", "yes");

    // 4. Unplug: capture's process ended and no new one started until the
    // camera came back; the analyzer stopped with it (BindsTo=); capture
    // let go of the device (vivid unloads). The journal says how (the
    // unit's properties are gone once systemd unloads the inactive unit).
    // Two orders happen: systemd sees the device go first (BindsTo= stops
    // capture), or capture sees ENODEV first and exits 5, a clean end
    // (SuccessExitStatus=, RestartPreventExitStatus=): never a restart.
    fact_is("unplug", "unplug_stopped", "yes");
    fact_is("unplug", "unplug_analyzer_stopped", "yes");
    fact_is("unplug", "unplug_rmmod", "0");
    for started in [
        "Starting pagecam-capture@video0.service",
        "Started pagecam-capture@video0.service",
        "pagecam-capture@video0.service: Scheduled restart job",
        "pagecam-capture@video0.service: Failed with result",
    ] {
        check(
            !has("unplug", &[started]),
            "unplug",
            &format!("after the unplug: {started}"),
        );
    }
    // (With SuccessExitStatus=5 systemd logs no "Main process exited" for
    // it, only "Deactivated successfully".)
    let saw_enodev = has("unplug", &["pagecam-capture[", "the device went away"]);
    let stopped = has("unplug", &["Stopping pagecam-capture@video0.service"]);
    check(
        saw_enodev || stopped,
        "unplug",
        "capture neither saw the camera go nor was stopped by systemd",
    );
    check(
        has(
            "unplug",
            &["pagecam-capture@video0.service: Deactivated successfully"],
        ),
        "unplug",
        "capture's unit did not end cleanly",
    );
    let unplug = if stopped {
        "BindsTo= stopped capture (SIGTERM)"
    } else {
        "capture saw ENODEV first and exited 5: a clean stop, no restart"
    };

    // 5. Replug: udev started it again and it resumed.
    fact_is("replug", "replug_started", "yes");
    fact_is("replug", "replug_analyzer", "yes");
    check(
        has("replug", &["pagecam-capture[", "resuming at sequence"]),
        "replug",
        "no resume after replugging",
    );

    // 6. Stop: capture's own SIGTERM path, in time (systemd: exit 0,
    // "Deactivated successfully", no timeout, no SIGKILL), End for an
    // analyzer.
    for want in [
        "Stopping pagecam-capture@video0.service",
        "pagecam-capture@video0.service: Deactivated successfully.",
        "Stopped pagecam-capture@video0.service",
        "Stopped pagecam-analyzer@video0.service",
    ] {
        check(has("stop", &[want]), "stop", want);
    }
    check(
        has("stop", &["pagecam-capture[", "stopped by signal"]),
        "stop",
        "capture's summary",
    );
    check(
        !has("stop", &["pagecam-capture@video0.service", "timed out"]),
        "stop",
        "TimeoutStopSec was hit",
    );
    check(
        !has("stop", &["pagecam-capture@video0.service", "SIGKILL"]),
        "stop",
        "capture was SIGKILLed",
    );
    check(
        fact("stop_end").contains("capture finished"),
        "stop",
        &format!("no End for the analyzer: {}", fact("stop_end")),
    );

    // The recording: valid, vivid's frames, sessions in order, and every
    // frame the analyzer service read in place is the one on disk.
    let rec = dir.path().join("video0.pcam");
    guest.pull("/video0.pcam", &rec);
    let v = verify(&rec, &["--json"]);
    assert!(
        v.status.success(),
        "verify: {}",
        String::from_utf8_lossy(&v.stdout)
    );
    let frames = assert_colorbars(&rec);
    let scan = RecordingReader::open(&rec).unwrap().scan().unwrap();
    for w in scan.valid.windows(2) {
        assert!(
            w[1].1.sequence > w[0].1.sequence && w[1].1.session >= w[0].1.session,
            "out of order: {w:?}"
        );
    }
    let mut sessions: Vec<u32> = scan.valid.iter().map(|(_, m)| m.session).collect();
    sessions.dedup();
    assert!(
        sessions.len() >= 4,
        "sessions {sessions:?}: want the first start, after the watchdog, after the crash, after the replug"
    );
    analyzer_matches_file(&rec, &analyzer_json(&journal), "the analyzer service");

    let at = |words: &[&str]| {
        lines_with(phase("stop"), words).first().and_then(|l| {
            l.strip_prefix('[')?
                .split_once(']')?
                .0
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    let stop_ms = match (
        at(&["Stopping pagecam-capture@video0.service"]),
        at(&["Stopped pagecam-capture@video0.service"]),
    ) {
        (Some(a), Some(b)) => (b - a) * 1000.0,
        _ => f64::NAN,
    };
    let booted: Vec<&str> = run
        .harness
        .lines()
        .filter(|l| l.contains("booted in"))
        .collect();
    report(
        "service",
        &format!("linux-{kernel}"),
        &format!(
            "{}\nrecording: sessions {sessions:?}, {frames} valid frames\n\
             after SIGKILL with the disk frozen: {} frames recovered from the fd store\n\
             unplug: {unplug}\n\
             stop: \"Stopping\" to \"Stopped\" in {stop_ms:.0} ms (TimeoutStopSec=15s)\n",
            booted.join("\n"),
            recovered_frames.unwrap_or(0),
        ),
    );
}

/// Where `util::report` keeps its tables.
fn reports_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .join("test-reports")
}

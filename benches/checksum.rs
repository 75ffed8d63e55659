//! `cargo bench --bench checksum`: what checksumming one 1920x1080 YUYV
//! frame costs with CRC32C (the `crc32c` crate, what the recording format
//! uses) against faster well-kept alternatives, on data in the cache and on
//! data coming from DRAM, natively and for aarch64.
//!
//! - `crc32c` crate: CRC-32C with the SSE4.2 / ARMv8 CRC instructions.
//! - `crc-fast`: the same CRC-32C (CRC-32/ISCSI: the same value, checked
//!   here), by carry-less multiplication folding (PCLMULQDQ/VPCLMULQDQ,
//!   PMULL): a drop-in that keeps the file format.
//! - `crc32fast`: CRC-32/IEEE (another polynomial: a format change).
//! - `xxhash-rust` xxh3_64: a 64-bit non-cryptographic hash (a format change).
//! - a read-only pass (xor of all 64-bit words): the memory floor.
//!
//! "In cache": the same frame again and again (it stays in the largest
//! cache that holds it). "From DRAM": one pass over each frame of a ring at
//! least twice the last-level cache (at least 256 MiB), as the writer
//! thread meets a frame a camera has just written by DMA.
//!
//! aarch64: this same file is built as a small static program for
//! `aarch64-unknown-linux-musl` (with `rust-lld`) and run under
//! `qemu-aarch64` user emulation, when both are installed. Emulated figures
//! say only how the algorithms compare under the emulator's instruction
//! translation, not how fast a real ARM core is.
//!
//! Key decision: CPU time of this thread (`CLOCK_THREAD_CPUTIME_ID`), best
//! of three batches, so another process on this shared machine taking the
//! CPU away does not count; nothing asserts a time.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const FRAME: usize = 1920 * 1080 * 2;

struct Algo {
    name: &'static str,
    what: &'static str,
    f: fn(&[u8]) -> u64,
}

fn read_only(d: &[u8]) -> u64 {
    d.chunks_exact(8).fold(0u64, |a, c| {
        a ^ u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))
    })
}

const ALGOS: [Algo; 5] = [
    Algo {
        name: "crc32c",
        what: "`crc32c` 0.6: CRC-32C, hardware CRC instructions (the format's checksum today)",
        f: |d| crc32c::crc32c(d) as u64,
    },
    Algo {
        name: "crc-fast",
        what: "`crc-fast` 1.9: the same CRC-32C by carry-less multiply folding",
        f: |d| crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, d),
    },
    Algo {
        name: "crc32fast",
        what: "`crc32fast` 1.x: CRC-32/IEEE (another polynomial)",
        f: |d| crc32fast::hash(d) as u64,
    },
    Algo {
        name: "xxh3_64",
        what: "`xxhash-rust` 0.8 xxh3_64: 64-bit hash, not a CRC",
        f: xxhash_rust::xxh3::xxh3_64,
    },
    Algo {
        name: "read-only",
        what: "xor of every 64-bit word: reading the frame, nothing else",
        f: read_only,
    },
];

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A frame that is not all zeros (some algorithms shortcut nothing, but
/// the check below should compare real values).
fn fill(buf: &mut [u8], seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for c in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        c.copy_from_slice(&b[..c.len()]);
    }
}

/// Last-level cache of CPU 0 in bytes, from sysfs (0 if unknown).
fn llc_bytes() -> u64 {
    (0..8)
        .filter_map(|i| {
            let s = std::fs::read_to_string(format!(
                "/sys/devices/system/cpu/cpu0/cache/index{i}/size"
            ))
            .ok()?;
            let s = s.trim();
            let (n, mult) = match s.strip_suffix('K') {
                Some(n) => (n, 1024),
                None => match s.strip_suffix('M') {
                    Some(n) => (n, 1 << 20),
                    None => (s, 1),
                },
            };
            Some(n.parse::<u64>().ok()? * mult)
        })
        .max()
        .unwrap_or(0)
}

/// µs of CPU per frame: (in cache, from DRAM) for each algorithm.
fn measure(reps: usize, dram_bytes: u64) -> Vec<(f64, f64)> {
    let mut hot = vec![0u8; FRAME];
    fill(&mut hot, 1);
    let frames = (dram_bytes as usize).div_ceil(FRAME).max(2);
    let mut ring: Vec<Vec<u8>> = (0..frames)
        .map(|i| {
            let mut v = vec![0u8; FRAME];
            fill(&mut v, i as u64 + 2);
            v
        })
        .collect();
    ring.shrink_to_fit();
    ALGOS
        .iter()
        .map(|a| {
            for _ in 0..2 {
                black_box((a.f)(black_box(&hot)));
            }
            let mut cache = f64::MAX;
            for _ in 0..3 {
                let t = thread_cpu_ns();
                for _ in 0..reps {
                    black_box((a.f)(black_box(&hot)));
                }
                cache = cache.min((thread_cpu_ns() - t) as f64 / reps as f64);
            }
            // One lap evicts what the last algorithm left in the cache.
            let mut dram = f64::MAX;
            for lap in 0..3 {
                let t = thread_cpu_ns();
                for f in &ring {
                    black_box((a.f)(black_box(f)));
                }
                if lap > 0 {
                    dram = dram.min((thread_cpu_ns() - t) as f64 / frames as f64);
                }
            }
            (cache / 1e3, dram / 1e3)
        })
        .collect()
}

fn arch() -> &'static str {
    std::env::consts::ARCH
}

/// One line per algorithm: `name in_cache_us dram_us`, then facts.
fn child_output(reps: usize, dram: u64) -> String {
    let mut out = String::new();
    for (a, (c, d)) in ALGOS.iter().zip(measure(reps, dram)) {
        out.push_str(&format!("{} {c} {d}\n", a.name));
    }
    out.push_str(&format!(
        "target {}\n",
        crc_fast::get_calculator_target(crc_fast::CrcAlgorithm::Crc32Iscsi)
    ));
    out
}

struct Table {
    rows: Vec<(String, f64, f64)>,
    crc_fast_target: String,
}

fn parse(out: &str) -> Table {
    let mut t = Table {
        rows: Vec::new(),
        crc_fast_target: String::new(),
    };
    for l in out.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        match f.as_slice() {
            ["target", rest @ ..] => t.crc_fast_target = rest.join(" "),
            [name, c, d] => {
                if let (Ok(c), Ok(d)) = (c.parse(), d.parse()) {
                    t.rows.push((name.to_string(), c, d));
                }
            }
            _ => {}
        }
    }
    t
}

fn print_table(t: &Table, dram: u64) {
    let base = t.rows.iter().find(|r| r.0 == "crc32c").map(|r| (r.1, r.2));
    println!("| checksum | what | in cache: µs/frame | GB/s | vs crc32c | from DRAM: µs/frame | GB/s | vs crc32c |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (name, c, d) in &t.rows {
        let what = ALGOS.iter().find(|a| a.name == name).map_or("", |a| a.what);
        let gbs = |us: f64| FRAME as f64 / (us * 1e3);
        let vs = |x: f64, b: Option<f64>| b.map_or("-".into(), |b| format!("{:.2}x", x / b));
        println!(
            "| {name} | {what} | {c:.0} | {:.1} | {} | {d:.0} | {:.1} | {} |",
            gbs(*c),
            vs(*c, base.map(|b| b.0)),
            gbs(*d),
            vs(*d, base.map(|b| b.1)),
        );
    }
    println!(
        "\ncrc-fast chose `{}`. DRAM ring: {} frames ({} MiB). \"vs crc32c\" < 1 is faster.",
        t.crc_fast_target,
        (dram as usize).div_ceil(FRAME).max(2),
        dram >> 20
    );
}

/// Build this file for aarch64-unknown-linux-musl as a standalone program
/// (its own throw-away package with the same dependencies) and return it.
fn build_aarch64(dir: &Path) -> Result<PathBuf, String> {
    let target = "aarch64-unknown-linux-musl";
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("rustc: {e}"))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    if !Path::new(&sysroot)
        .join("lib/rustlib")
        .join(target)
        .exists()
    {
        return Err(format!(
            "the Rust target {target} is not installed (rustup target add {target})"
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let me = Path::new(option_env!("CARGO_MANIFEST_DIR").unwrap_or("."));
    let manifest = format!(
        r#"[package]
name = "checksum-aarch64"
version = "0.0.0"
edition = "2021"
publish = false

[[bin]]
name = "checksum"
path = "{}"

[dependencies]
libc = "0.2"
crc32c = "0.6"
crc-fast = {{ version = "~1.9", default-features = false, features = ["std"] }}
crc32fast = "1.4"
xxhash-rust = {{ version = "0.8", features = ["xxh3"] }}

[profile.release]
debug = 0

[workspace]
"#,
        me.join("benches/checksum.rs").display()
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).map_err(|e| e.to_string())?;
    // The workspace's lock file, so the same versions are built.
    let _ = std::fs::copy(me.join("Cargo.lock"), dir.join("Cargo.lock"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_with_timeout(
        Command::new(cargo)
            .args(["build", "--release", "--quiet", "--target", target])
            .arg("--manifest-path")
            .arg(dir.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", dir.join("target"))
            .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER", "rust-lld"),
        Duration::from_secs(900),
    )
    .map_err(|e| format!("cross build failed: {e}"))?;
    Ok(dir.join("target").join(target).join("release/checksum"))
}

/// Run a program with a time limit; its stdout.
fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Result<String, String> {
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!(
                    "exited with {status}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no result within {} s", limit.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1)?.parse::<u64>().ok())
    };
    let quick =
        args.iter().any(|a| a == "--quick") || std::env::var_os("PAGECAM_BENCH_QUICK").is_some();
    let dram = arg("--dram-mib")
        .map(|m| m << 20)
        .unwrap_or_else(|| (2 * llc_bytes()).max(256 << 20));
    let reps = arg("--reps").unwrap_or(if quick { 10 } else { 60 }) as usize;
    if args.iter().any(|a| a == "--child") {
        print!("{}", child_output(reps, dram));
        return;
    }

    // Correctness before speed: crc-fast must give the format's CRC32C.
    let mut probe = vec![0u8; 1 << 20];
    fill(&mut probe, 99);
    let same = crc32c::crc32c(&probe) as u64
        == crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, &probe);

    println!("# Checksum per 1920x1080 YUYV frame ({FRAME} bytes)\n");
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "Machine: {cpu}, {} CPUs, last-level cache {} MiB, Linux {}, 1-minute load average {} at the start. CPU time of the measuring thread per frame, best of 3 batches ({reps} frames in cache; one lap over the DRAM ring per batch). crc-fast gives the same value as crc32c: **{}**.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        llc_bytes() >> 20,
        kernel.trim(),
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_string))
            .unwrap_or_else(|| "?".into()),
        if same { "yes" } else { "NO" }
    );
    println!("## {} (native)\n", arch());
    eprintln!("checksum bench: native");
    print_table(&parse(&child_output(reps, dram)), dram);
    println!("\nxxhash-rust picks its SIMD width when it is compiled (`cfg(target_feature)`): this build, like pagecam's release build, has no `-C target-cpu`, so x86_64 gets its SSE2 code; crc32c, crc-fast and crc32fast choose at run time.");

    println!("\n## aarch64 (EMULATED: qemu-aarch64 user mode; relative figures only)\n");
    let qemu = Command::new("qemu-aarch64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !qemu {
        println!(
            "Not measured: `qemu-aarch64` is not installed (Debian: `apt-get install qemu-user`)."
        );
        return;
    }
    eprintln!("checksum bench: building for aarch64-unknown-linux-musl");
    // (Read when built by cargo as this package's bench; the aarch64 copy,
    // built as a plain program, never gets here.)
    let dir = option_env!("CARGO_TARGET_TMPDIR")
        .map_or_else(std::env::temp_dir, PathBuf::from)
        .join("checksum-aarch64");
    let bin = match build_aarch64(&dir) {
        Ok(b) => b,
        Err(e) => {
            println!("Not measured: {e}");
            return;
        }
    };
    // Emulation is slow: a smaller DRAM ring (still larger than the host's
    // caches as the emulator sees them) and fewer frames.
    let dram_emu: u64 = if quick { 64 << 20 } else { 256 << 20 };
    eprintln!("checksum bench: aarch64 under qemu-aarch64");
    let reps_emu = (reps / 6).max(2);
    match run_with_timeout(
        Command::new("qemu-aarch64")
            .args(["-cpu", "max"])
            .arg(&bin)
            .args([
                "--child",
                "--reps",
                &reps_emu.to_string(),
                "--dram-mib",
                &(dram_emu >> 20).to_string(),
            ]),
        Duration::from_secs(900),
    ) {
        Ok(out) => {
            println!("Every instruction is translated by qemu (TCG) on the host above: the CRC and PMULL instructions become calls into qemu helpers, so these figures rank the algorithms under emulation only; they are not an ARM core's speed. `-cpu max` (CRC32, PMULL, SHA3 available). {reps_emu} frames in cache.\n");
            print_table(&parse(&out), dram_emu);
        }
        Err(e) => println!("Not measured: {e}"),
    }
}

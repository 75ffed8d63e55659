//! What the benchmark reads from the kernel about the machine and about the
//! processes it runs: system-wide CPU (`/proc/stat`), memory
//! (`/proc/meminfo`, `/proc/PID/status`), per-thread CPU and faults
//! (`/proc/PID/task/TID/{stat,schedstat,comm}`), the page-cache state of one
//! file (`cachestat(2)`), and the benchmark's own CPU (`getrusage`).
//!
//! Key decision: every reader returns `None` rather than a made-up zero when
//! the kernel does not provide the figure, so the report can print "-"
//! instead of a wrong number.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// `USER_HZ`: the unit of the tick counts in `/proc/stat` and `/proc/PID/stat`.
pub fn user_hz() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as u64
    } else {
        100
    }
}

/// The `cpu ` line of `/proc/stat` (ticks of `USER_HZ`), read at `t_ns`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTimes {
    /// CLOCK_MONOTONIC when it was read.
    pub t_ns: u64,
    /// Online CPUs (the `cpuN` lines).
    pub cpus: u64,
    /// idle + iowait of all CPUs.
    pub idle: u64,
    pub steal: u64,
}

pub fn cpu_times() -> Option<CpuTimes> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let t_ns = pagecam::recording::monotonic_ns();
    let line = s.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    if f.len() < 8 {
        return None;
    }
    let cpus = s
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count() as u64;
    Some(CpuTimes {
        t_ns,
        cpus,
        idle: f[3] + f[4],
        steal: f[7],
    })
}

impl CpuTimes {
    /// Busy CPU time of all CPUs between two readings, nanoseconds: elapsed
    /// time × CPUs − idle − iowait. (Tickless kernels account idle and
    /// iowait exactly when a CPU leaves idle; user, system, irq, softirq and
    /// steal are charged a tick at a time, which samples short bursts.)
    pub fn busy_ns_since(&self, earlier: &CpuTimes) -> f64 {
        let wall = self.t_ns.saturating_sub(earlier.t_ns) as f64 * self.cpus as f64;
        (wall - ticks_ns(self.idle.saturating_sub(earlier.idle))).max(0.0)
    }
    pub fn steal_ns_since(&self, earlier: &CpuTimes) -> f64 {
        ticks_ns(self.steal.saturating_sub(earlier.steal))
    }
}

pub fn ticks_ns(ticks: u64) -> f64 {
    ticks as f64 * 1e9 / user_hz() as f64
}

/// User + system CPU of this process (all its threads), nanoseconds.
pub fn self_cpu_ns() -> u64 {
    // SAFETY: a zeroed rusage is a valid out-parameter for getrusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we pass.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// System-wide memory, from `/proc/meminfo`, bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemInfo {
    pub cached: u64,
    pub dirty: u64,
}

pub fn meminfo() -> Option<MemInfo> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb = |key: &str| -> Option<u64> {
        let l = s.lines().find(|l| l.starts_with(key))?;
        Some(l.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
    };
    Some(MemInfo {
        cached: kb("Cached:")?,
        dirty: kb("Dirty:")?,
    })
}

/// Resident memory of a process, from `/proc/PID/status`, bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rss {
    pub rss: u64,
    /// Peak RSS (VmHWM).
    pub hwm: u64,
    pub anon: u64,
    pub file: u64,
    pub shmem: u64,
}

pub fn rss(pid: i32) -> Option<Rss> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| -> Option<u64> {
        let l = s.lines().find(|l| l.starts_with(key))?;
        Some(l.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
    };
    Some(Rss {
        rss: kb("VmRSS:")?,
        hwm: kb("VmHWM:")?,
        anon: kb("RssAnon:").unwrap_or(0),
        file: kb("RssFile:").unwrap_or(0),
        shmem: kb("RssShmem:").unwrap_or(0),
    })
}

/// Fields after the command name of /proc/PID/stat or /proc/PID/task/TID/stat.
pub fn proc_stat(path: &str) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(path).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Minor faults (field 10 of stat, index 7 after the name).
pub fn minflt(fields: &[String]) -> u64 {
    fields.get(7).and_then(|x| x.parse().ok()).unwrap_or(0)
}

/// One thread of a process: its name, CPU (schedstat run time) and faults.
#[derive(Clone, Debug)]
pub struct ThreadStat {
    pub tid: i32,
    pub name: String,
    pub run_ns: u64,
    pub minflt: u64,
}

/// Every thread of `pid`; `names` caches thread names by tid (the readings
/// are taken often). A new thread starts with its creator's name and names
/// itself a moment later, so a name equal to the main thread's is read again.
pub fn threads(
    pid: i32,
    names: &mut std::collections::HashMap<i32, String>,
) -> Option<Vec<ThreadStat>> {
    let mut v = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let base = format!("/proc/{pid}/task/{tid}");
        let Some(run_ns) = std::fs::read_to_string(format!("{base}/schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        else {
            continue;
        };
        let Some(stat) = proc_stat(&format!("{base}/stat")) else {
            continue;
        };
        let main = names.get(&pid).cloned();
        let stale = names
            .get(&tid)
            .is_none_or(|n| tid != pid && Some(n) == main.as_ref());
        if stale {
            let n = std::fs::read_to_string(format!("{base}/comm"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            names.insert(tid, n);
        }
        let name = names.get(&tid).cloned().unwrap_or_default();
        v.push(ThreadStat {
            tid,
            name,
            run_ns,
            minflt: minflt(&stat),
        });
    }
    Some(v)
}

/// Page-cache state of one file (`cachestat(2)`, Linux 6.5), bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheStat {
    pub cached: u64,
    pub dirty: u64,
    pub writeback: u64,
}

/// cachestat(2): the same number on every architecture (451).
const SYS_CACHESTAT: libc::c_long = 451;

pub fn cachestat(file: &File) -> Option<CacheStat> {
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    let range = Range { off: 0, len: 0 }; // len 0: to the end of the file
    let mut st = Stat::default();
    // SAFETY: cachestat(2) reads `range` and writes `st`, both live and of
    // the layouts the kernel's uapi defines (struct cachestat_range,
    // struct cachestat); flags must be 0.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd() as libc::c_uint,
            &range as *const Range,
            &mut st as *mut Stat,
            0 as libc::c_uint,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    Some(CacheStat {
        cached: st.nr_cache * page,
        dirty: st.nr_dirty * page,
        writeback: st.nr_writeback * page,
    })
}

/// The 1-minute load average.
pub fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU model, CPUs, memory, kernel, and the filesystem holding `dir`.
pub fn machine(dir: &Path) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name") || l.starts_with("Model"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU")
        .to_string();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1048576.0);
    let hypervisor = if cpuinfo.contains(" hypervisor") {
        ", virtual machine"
    } else {
        ""
    };
    let caches = cache_sizes();
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let fs = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && dir.starts_with(f[1])).then(|| (f[1].len(), f[2], f[0], f[1]))
        })
        .max_by_key(|m| m.0)
        .map(|(_, t, dev, mnt)| format!("{t} ({dev} on {mnt})"))
        .unwrap_or_else(|| "unknown filesystem".into());
    format!(
        "{model} ({cpus} CPUs{hypervisor}; caches {caches}), {mem_gib:.0} GiB RAM, Linux {}, files on {fs}",
        kernel.trim(),
    )
}

/// "L1d 48K, L2 2048K, L3 ..." of CPU 0, from sysfs.
pub fn cache_sizes() -> String {
    let mut v = Vec::new();
    for i in 0..8 {
        let base = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
        let read = |f: &str| std::fs::read_to_string(format!("{base}/{f}")).ok();
        let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
        else {
            continue;
        };
        if kind.trim() == "Instruction" {
            continue;
        }
        let d = if kind.trim() == "Data" { "d" } else { "" };
        v.push(format!("L{}{d} {}", level.trim(), size.trim()));
    }
    if v.is_empty() {
        "unknown".into()
    } else {
        v.join(", ")
    }
}

//! Counting what a process asks of the kernel: the benchmark runs a design
//! once more under `strace -f` (a separate run: tracing slows every system
//! call, so no CPU figure comes from it) and reads the trace back for
//! system calls per frame, per thread, and the bytes each call moved, by
//! kind of descriptor (socket, file through the page cache, file opened
//! with `O_DIRECT`, pipe).
//!
//! Key decision: bytes are the calls' own return values, so "kernel copy
//! per frame" is a count, not a formula. A call on an `O_DIRECT` descriptor
//! is counted apart: the device reads or writes those pages by DMA, the
//! CPU copies nothing. Only calls between the first and the last frame
//! (marked by one call per frame, see [`Marker`]) are counted, so start-up
//! (loading libraries, creating the file) and the final sync are left out.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::Command;

/// Whether `strace` can be run here.
pub fn available() -> bool {
    Command::new("strace")
        .arg("-V")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `strace` running `program args...`, writing its trace to `out`.
pub fn command(out: &Path, program: &Path) -> Command {
    let mut c = Command::new("strace");
    // -f: all threads; -qq: no attach/exit notes; -yy: descriptors with
    // what they are (path, socket kind); -s 32: short strings (enough for
    // thread names set with prctl(PR_SET_NAME)).
    // -ttt: timestamps, to count only the frames' window.
    c.args(["-f", "-qq", "-ttt", "-yy", "-s", "32", "-o"])
        .arg(out)
        .arg("--")
        .arg(program);
    c
}

/// Bytes moved by the traced process's calls, by kind of descriptor.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bytes {
    pub socket_sent: u64,
    pub socket_received: u64,
    /// write/pwrite into the page cache (copy_from_user).
    pub file_written: u64,
    /// read/pread from the page cache (copy_to_user).
    pub file_read: u64,
    /// Calls on `O_DIRECT` descriptors: DMA, no CPU copy.
    pub direct_written: u64,
    pub direct_read: u64,
}

impl Bytes {
    /// Bytes the CPU copied between user space and the kernel.
    pub fn cpu_copied(&self) -> u64 {
        self.socket_sent + self.socket_received + self.file_written + self.file_read
    }
}

/// What a trace counted between its first and last frame.
#[derive(Debug, Default)]
pub struct Trace {
    /// Frame intervals in the window (markers - 1).
    pub frames: u64,
    /// Thread name → system call → calls.
    pub calls: BTreeMap<String, BTreeMap<String, u64>>,
    pub bytes: Bytes,
}

impl Trace {
    pub fn total_calls(&self) -> u64 {
        self.calls.values().flat_map(|m| m.values()).sum()
    }
    /// `x` per frame of the window.
    pub fn per_frame(&self, x: u64) -> f64 {
        x as f64 / self.frames.max(1) as f64
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Socket,
    File,
    Direct,
    /// stdin/stdout/stderr (the benchmark's pipes and log files), pipes,
    /// devices, /proc and /sys: not the design's data path.
    Other,
}

/// The call that happens once per frame on the main thread.
#[derive(Clone, Copy, Debug)]
pub enum Marker {
    /// A send on a socket (pagecam's notice, the naive frame).
    SocketSend,
    /// A write to a file (the naive capture's pwrite of the frame).
    FileWrite,
}

/// One system call of a trace.
#[derive(Clone, Debug)]
pub struct Call {
    tid: i64,
    t: f64,
    name: String,
    kind: Kind,
    /// Bytes moved, if it is a read/write-family call that succeeded.
    bytes: Option<(bool, u64)>,
}

/// A parsed trace: its calls in order and its threads' names.
#[derive(Debug, Default)]
pub struct Calls {
    calls: Vec<Call>,
    main_tid: Option<i64>,
    names: HashMap<i64, String>,
}

/// The descriptor argument `7</path>` or `5<UNIX-STREAM:[1->2]>` at the
/// start of `args`: (number, what it is).
fn fd_arg(args: &str) -> Option<(i64, &str)> {
    let digits = args.bytes().take_while(u8::is_ascii_digit).count();
    let fd = args[..digits].parse().ok()?;
    let rest = &args[digits..];
    let Some(rest) = rest.strip_prefix('<') else {
        return Some((fd, ""));
    };
    // The annotation may hold "->" and commas; it ends at ">," or ">)".
    let end = [">, ", ">)", ">,"]
        .iter()
        .filter_map(|m| rest.find(m))
        .min()
        .unwrap_or(rest.len().saturating_sub(1));
    Some((fd, &rest[..end]))
}

fn kind_of(fd: i64, what: &str) -> Kind {
    if fd <= 2 {
        Kind::Other
    } else if what.starts_with("UNIX")
        || what.starts_with("socket:")
        || what.starts_with("TCP")
        || what.starts_with("UDP")
    {
        Kind::Socket
    } else if what.starts_with('/')
        && !what.starts_with("/proc/")
        && !what.starts_with("/sys/")
        && !what.starts_with("/dev/")
    {
        Kind::File
    } else {
        Kind::Other
    }
}

/// The return value after the last " = ".
fn ret_val(line: &str) -> Option<i64> {
    let r = &line[line.rfind(" = ")? + 3..];
    let n = r
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'-')
        .count();
    r[..n].parse().ok()
}

const WRITES: [&str; 7] = [
    "write", "pwrite64", "writev", "pwritev", "pwritev2", "sendmsg", "sendto",
];
const READS: [&str; 7] = [
    "read", "pread64", "readv", "preadv", "preadv2", "recvmsg", "recvfrom",
];

/// Read a trace written by `command`.
pub fn parse(path: &Path) -> std::io::Result<Calls> {
    let text = std::fs::read_to_string(path)?;
    let mut out = Calls::default();
    let mut direct_fds: HashSet<i64> = HashSet::new();
    // Calls split by another thread's line: tid → (name, time, first part).
    let mut pending: HashMap<i64, (String, f64, String)> = HashMap::new();
    for raw in text.lines() {
        // strace pads the thread id to a width ("2844  1795437187.16 ..."
        // with a small pid): fields are split by runs of spaces.
        let Some((tid, rest)) = raw.split_once(' ') else {
            continue;
        };
        let Some((t, line)) = rest.trim_start().split_once(' ') else {
            continue;
        };
        let (Ok(tid), Ok(mut t)) = (tid.parse::<i64>(), t.parse::<f64>()) else {
            continue;
        };
        out.main_tid.get_or_insert(tid);
        if line.starts_with("---") || line.starts_with("+++") {
            continue;
        }
        // Reassemble "<unfinished ...>" / "<... NAME resumed>".
        let full: String;
        let line = if let Some(head) = line.strip_suffix(" <unfinished ...>") {
            let name = head.split('(').next().unwrap_or("").to_string();
            pending.insert(tid, (name, t, head.to_string()));
            continue;
        } else if let Some(rest) = line.strip_prefix("<... ") {
            let Some((name, tail)) = rest.split_once(" resumed>") else {
                continue;
            };
            match pending.remove(&tid) {
                Some((n, started, head)) if n == name => {
                    t = started;
                    full = format!("{head}{tail}");
                    &full
                }
                _ => continue,
            }
        } else {
            line
        };
        let Some(open) = line.find('(') else { continue };
        let name = &line[..open];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        let args = &line[open + 1..];
        let ret = ret_val(line);
        match name {
            "prctl" if args.starts_with("PR_SET_NAME") => {
                if let Some(n) = args.split('"').nth(1) {
                    out.names.insert(tid, n.to_string());
                }
            }
            "openat" | "open" if args.contains("O_DIRECT") => {
                if let Some(fd) = ret.filter(|r| *r >= 0) {
                    direct_fds.insert(fd);
                }
            }
            "close" => {
                if let Some((fd, _)) = fd_arg(args) {
                    direct_fds.remove(&fd);
                }
            }
            _ => {}
        }
        let (is_write, is_read) = (WRITES.contains(&name), READS.contains(&name));
        let mut call = Call {
            tid,
            t,
            name: name.to_string(),
            kind: Kind::Other,
            bytes: None,
        };
        if is_write || is_read {
            if let Some((fd, what)) = fd_arg(args) {
                call.kind = match kind_of(fd, what) {
                    Kind::File if direct_fds.contains(&fd) => Kind::Direct,
                    k => k,
                };
                call.bytes = ret.filter(|n| *n > 0).map(|n| (is_write, n as u64));
            }
        }
        out.calls.push(call);
    }
    Ok(out)
}

impl Calls {
    /// The window from the main thread's first to its last frame marker,
    /// and the frame intervals in it.
    pub fn window(&self, marker: Marker) -> Option<(f64, f64, u64)> {
        let main = self.main_tid?;
        let marks: Vec<f64> = self
            .calls
            .iter()
            .filter(|c| c.tid == main)
            .filter(|c| match marker {
                Marker::SocketSend => c.kind == Kind::Socket && matches!(c.bytes, Some((true, _))),
                Marker::FileWrite => c.kind == Kind::File && matches!(c.bytes, Some((true, _))),
            })
            .map(|c| c.t)
            .collect();
        let (first, last) = (*marks.first()?, *marks.last()?);
        (marks.len() >= 2).then(|| (first, last, marks.len() as u64 - 1))
    }

    /// Calls and bytes in `[t0, t1)`, over `frames` frames.
    pub fn count(&self, (t0, t1, frames): (f64, f64, u64)) -> Trace {
        let mut t = Trace {
            frames,
            ..Default::default()
        };
        for c in self.calls.iter().filter(|c| c.t >= t0 && c.t < t1) {
            let thread = if Some(c.tid) == self.main_tid {
                "main".to_string()
            } else {
                self.names
                    .get(&c.tid)
                    .cloned()
                    .unwrap_or_else(|| "other".into())
            };
            *t.calls
                .entry(thread)
                .or_default()
                .entry(c.name.clone())
                .or_default() += 1;
            let Some((write, n)) = c.bytes else { continue };
            let b = &mut t.bytes;
            match (c.kind, write) {
                (Kind::Socket, true) => b.socket_sent += n,
                (Kind::Socket, false) => b.socket_received += n,
                (Kind::File, true) => b.file_written += n,
                (Kind::File, false) => b.file_read += n,
                (Kind::Direct, true) => b.direct_written += n,
                (Kind::Direct, false) => b.direct_read += n,
                (Kind::Other, _) => {}
            }
        }
        t
    }
}

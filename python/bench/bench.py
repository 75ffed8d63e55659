"""Per-frame CPU cost of the Python path, against the Rust analyzer and a
Python client that copies every frame, in one run.

    scripts/test-python.sh -k nothing        # once: venv, package, binaries
    target/python-venv/bin/python python/bench/bench.py             # 1080p, 600 frames (25 s)
    target/python-venv/bin/python python/bench/bench.py --size 1280x720 --frames 600

One capture (the test source, YUYV, 30 fps) serves every consumer at
once, each in its own process:

* the Rust analyzer, `pagecam-analyzer watch --quiet` (statistics over
  every line of every frame: mean luma, motion grid, histogram, sharpness);
* Python in place: receive + `frame.array()` + the check (`with frame:`),
  touching no pixel: the overhead pagecam's Python path adds per frame;
* Python in place + numpy: the same plus `array[:, :, 0].mean()`, a
  pass over the whole luma plane;
* Python copy: receive + `np.frombuffer(frame.array(), np.uint8).copy()`
  + the check: what a client that copies each frame pays.

CPU per frame = the process's user + system time from /proc/PID/stat
(from the moment it reports being connected to its exit, sampled before it
is reaped) divided by the frames it received. Prints a markdown table
that names the machine.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = Path(os.environ.get("PAGECAM_CAPTURE", ROOT / "target/release/pagecam-capture"))
ANALYZER = Path(os.environ.get("PAGECAM_ANALYZER", ROOT / "target/release/pagecam-analyzer"))
TICK = os.sysconf("SC_CLK_TCK")

CLIENTS = {
    "view": "Python in place: receive + view + check",
    "mean": "Python in place + numpy mean of the luma plane",
    "copy": "Python copy: receive + `np.frombuffer(view).copy()` + check",
}


def client(mode: str, socket: str) -> None:
    """One Python consumer: print `ready`, handle frames until the end of
    the stream, print what it saw as JSON."""
    import numpy as np

    import pagecam

    sub = pagecam.Subscription(socket, idle_timeout=30)
    print("ready", flush=True)
    frames = lost = 0
    sink = 0.0
    for f in sub:
        frames += 1
        try:
            with f:
                a = f.array()
                if mode == "mean":
                    sink += float(a[:, :, 0].mean())
                elif mode == "copy":
                    own = np.frombuffer(a, np.uint8).copy()
                    sink += own[0]
        except pagecam.FrameLost:
            lost += 1
    print(json.dumps({"frames": frames, "lost": lost, "stats": sub.stats}), flush=True)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (/proc/PID/stat fields 14 and 15)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Consumer:
    def __init__(self, name, args, ready_on_stderr=False):
        self.name = name
        self.p = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.ready = threading.Event()
        self.cpu0 = None
        self.out = []
        self.err = []
        self.cpu1 = None
        stream = self.p.stderr if ready_on_stderr else self.p.stdout
        other = self.p.stdout if ready_on_stderr else self.p.stderr
        threading.Thread(target=self._watch, args=(stream, True), daemon=True).start()
        threading.Thread(target=self._watch, args=(other, False), daemon=True).start()

    def _watch(self, stream, signals_ready):
        sink = self.err if stream is self.p.stderr else self.out
        for line in stream:
            sink.append(line)
            if signals_ready and not self.ready.is_set() and (
                line.startswith("ready") or "connected as client" in line
            ):
                self.cpu0 = cpu_seconds(self.p.pid)
                self.ready.set()

    def finish(self, timeout):
        # Wait for the exit without reaping, read its CPU, then reap.
        deadline = time.monotonic() + timeout
        while True:
            try:
                info = os.waitid(os.P_PID, self.p.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
            except ChildProcessError:
                info = None
            if info is not None:
                break
            if time.monotonic() > deadline:
                self.p.kill()
                raise SystemExit(f"bench: {self.name} did not finish: {''.join(self.err)}")
            time.sleep(0.05)
        self.cpu1 = cpu_seconds(self.p.pid)
        self.p.wait()
        time.sleep(0.1)  # the reader threads drain the pipes


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().split()[1]
    import numpy

    return (
        f"{model}, {os.cpu_count()} CPUs, {int(mem) // 1024 // 1024} GiB, Linux {platform.release()}, "
        f"Python {platform.python_version()}, numpy {numpy.__version__}"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--client", choices=CLIENTS, help=argparse.SUPPRESS)
    ap.add_argument("--socket", help=argparse.SUPPRESS)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--fps", default="30")
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--dir", default=str(ROOT / "target/python-bench"))
    args = ap.parse_args()
    if args.client:
        return client(args.client, args.socket)
    for b in (CAPTURE, ANALYZER):
        if not b.is_file():
            raise SystemExit(f"bench: {b} missing: cargo build --release (or set PAGECAM_CAPTURE/_ANALYZER)")
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    rec = d / "bench.pcam"
    for p in (rec, d / "bench.pcam.sock"):
        p.unlink(missing_ok=True)
    sock = d / "bench.pcam.sock"
    # A head start of frames for the consumers to connect and warm up.
    total = args.frames + 60
    cap = subprocess.Popen(
        [CAPTURE, "-o", rec, "--size", args.size, "--fps", args.fps, "--frames", str(total),
         "--capacity", "512M", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PAGECAM_LOG": "warn"},
    )
    deadline = time.monotonic() + 20
    while not sock.exists():
        if time.monotonic() > deadline or cap.poll() is not None:
            raise SystemExit("bench: capture did not start")
        time.sleep(0.01)
    consumers = [
        Consumer("rust", [ANALYZER, "watch", "--quiet", "--idle-timeout", "30s", "--socket", sock],
                 ready_on_stderr=True)
    ] + [
        Consumer(m, [sys.executable, __file__, "--client", m, "--socket", str(sock)]) for m in CLIENTS
    ]
    for c in consumers:
        if not c.ready.wait(30):
            raise SystemExit(f"bench: {c.name} never connected: {''.join(c.err)}")
    wait = total / float(Fraction(args.fps))
    for c in consumers:
        c.finish(wait + 60)
    summary = json.loads(cap.communicate(timeout=60)[0].strip().splitlines()[-1])
    rows = []
    for c in consumers:
        if c.name == "rust":
            s = json.loads(c.out[-1])["summary"]
            frames, lost = s["frames"] + s["overwritten"] + s["torn"], s["overwritten"] + s["torn"]
        else:
            s = json.loads(c.out[-1])
            frames, lost = s["frames"], s["lost"]
        us = (c.cpu1 - c.cpu0) / max(frames, 1) * 1e6
        rows.append((c.name, frames, lost, us))
    rust_us = rows[0][3]
    view_us = rows[1][3]
    w, h = args.size.split("x")
    print(f"\n{args.size} YUYV ({int(w) * int(h) * 2:,} bytes/frame), {args.fps} fps, "
          f"{summary['frames']} frames captured; machine: {machine()}\n")
    print("| consumer (one process each, all at once) | frames | lost | CPU µs/frame | vs Rust analyzer | vs Python in place |")
    print("|---|---:|---:|---:|---:|---:|")
    names = {"rust": "Rust analyzer: `watch --quiet` (full statistics, every line read)", **CLIENTS}
    for name, frames, lost, us in rows:
        print(f"| {names[name]} | {frames} | {lost} | {us:,.0f} | {us / rust_us:.2f}x | {us / view_us:.2f}x |")
    print(f"\nCPU from /proc/PID/stat (utime+stime, {TICK} ticks/s) between connecting and exit; "
          "`lost`: frames whose check failed (overwritten or torn), included in `frames`.")


if __name__ == "__main__":
    main()

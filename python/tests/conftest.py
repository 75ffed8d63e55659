"""Helpers for the pagecam Python tests: the real binaries, run in a fresh
directory, with every wait bounded so that a hang fails fast with a message.

PAGECAM_CAPTURE / PAGECAM_ANALYZER name the binaries (default:
target/debug/pagecam-{capture,analyzer} of this checkout);
PAGECAM_TEST_TMPDIR the directory recordings go to (default
target/python-tmp: a real filesystem, since --store direct writes with
O_DIRECT, which tmpfs refuses).
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = Path(os.environ.get("PAGECAM_CAPTURE", ROOT / "target/debug/pagecam-capture"))
ANALYZER = Path(os.environ.get("PAGECAM_ANALYZER", ROOT / "target/debug/pagecam-analyzer"))
TMP = Path(os.environ.get("PAGECAM_TEST_TMPDIR", ROOT / "target/python-tmp"))

# The longest any single wait may take before the test fails as hung.
HANG = 60.0

STAMP_ROWS = 16
STAMP_BITS = 64


def _require(path: Path) -> Path:
    if not path.is_file():
        pytest.fail(f"{path} does not exist: build it (cargo build) or set the environment variable")
    return path


class Proc:
    """A started binary whose stdout and stderr go to files (a chatty child
    never blocks on a full pipe)."""

    def __init__(self, args, workdir: Path, name: str, log: str = "warn"):
        self.name = name
        self.out_path = workdir / f"{name}.out"
        self.err_path = workdir / f"{name}.err"
        self.args = [str(a) for a in args]
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.args, stdout=out, stderr=err, env={**os.environ, "PAGECAM_LOG": log}
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stdout(self) -> str:
        return self.out_path.read_text()

    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait(self, timeout: float = HANG) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(
                f"{self.name} did not finish within {timeout} s: {' '.join(self.args)}\n"
                f"stderr: {self.stderr()}"
            )

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self) -> int:
        """SIGINT (capture and analyzer finish cleanly on it), then wait."""
        self.signal(signal.SIGINT)
        return self.wait()

    def json_lines(self):
        return [json.loads(l) for l in self.stdout().splitlines() if l.strip()]


class Capture(Proc):
    """pagecam-capture from the test source, recording DIR/rec.pcam and
    serving DIR/rec.pcam.sock; started and ready for analyzers."""

    def __init__(self, workdir: Path, *args, log: str = "warn"):
        self.recording = workdir / "rec.pcam"
        self.socket = workdir / "rec.pcam.sock"
        super().__init__(
            [_require(CAPTURE), "--json", "-o", self.recording, *args], workdir, "capture", log
        )
        deadline = time.monotonic() + 20
        while not self.socket.exists():
            if self.proc.poll() is not None:
                pytest.fail(f"capture exited with {self.proc.returncode}: {self.stderr()}")
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"capture's socket {self.socket} never appeared: {self.stderr()}")
            time.sleep(0.01)

    def summary(self) -> dict:
        return self.json_lines()[-1]


class Watch(Proc):
    """pagecam-analyzer watch (the Rust analyzer) on a capture's socket."""

    def __init__(self, workdir: Path, socket: Path, *args, name="watch"):
        super().__init__(
            [_require(ANALYZER), "watch", "--socket", socket, *args], workdir, name
        )

    def frames(self):
        """Per-frame lines (accepted and lost) and the summary."""
        lines = self.json_lines()
        assert lines and "summary" in lines[-1], f"no summary: {self.stdout()[-2000:]}"
        frames = [l for l in lines[:-1] if "seq" in l and "event" not in l]
        return frames, lines[-1]["summary"]


@pytest.fixture
def workdir():
    TMP.mkdir(parents=True, exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix="pytest-", dir=TMP))
    procs = []
    yield d, procs
    for p in procs:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def capture(workdir):
    """capture(*args): start pagecam-capture (killed at the end if still running)."""
    d, procs = workdir

    def start(*args, log="warn"):
        c = Capture(d, *args, log=log)
        procs.append(c)
        return c

    return start


@pytest.fixture
def watch(workdir):
    """watch(socket, *args): start pagecam-analyzer watch."""
    d, procs = workdir

    def start(socket, *args, name="watch"):
        w = Watch(d, socket, *args, name=name)
        procs.append(w)
        return w

    return start


def read_stamp(a, fmt: str, width: int):
    """The frame number the test source stamped into rows 0..16 of a frame
    (docs/FORMAT.md, "Test pattern"; `Pattern::read_stamp`), or None if the
    stamp is not clean. `a` is the frame as `Frame.array()` shapes it."""
    cell = width // STAMP_BITS
    seq = 0
    for bit in range(STAMP_BITS):
        x = bit * cell + cell // 2
        ones = 0
        for y in (1, STAMP_ROWS // 2, STAMP_ROWS - 2):
            v = int(a[y, x, 0]) if fmt == "YUYV" else int(a[y, x])
            if v == 235:
                ones += 1
            elif v != 16:
                return None
        if ones == 3:
            seq |= 1 << bit
        elif ones:
            return None
    return seq


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c_py(data: bytes) -> int:
    """CRC32C in plain Python (slow): the reference pagecam.crc32c is checked against."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF

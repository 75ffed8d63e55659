"""The stream: replaying stored frames then live ones without a gap,
Ctrl-C and other threads while waiting, timeouts, capture dying, a
missing socket."""

import datetime
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import pagecam
from conftest import HANG, read_stamp


@pytest.mark.parametrize("store", ["direct", "file"])
def test_from_oldest_replays_stored_frames_then_live_ones_without_a_gap(capture, store):
    cap = capture(
        "--size", "320x240", "--fps", "100", "--frames", "600", "--store", store, "--slots", "1000"
    )
    time.sleep(1.5)  # about 150 frames stored before we connect
    seqs, lost = [], 0
    with pagecam.Subscription(cap.socket, from_="oldest") as sub:
        live_from = sub.hello.next_seq
        assert live_from >= 20
        in_place = set()
        for f in sub:
            seqs.append(f.seq)
            assert f.replayed == (f.seq < live_from), f
            try:
                with f:
                    a = f.array()
                    stamp = read_stamp(a[:, :, 0], "GREY", f.width)
                assert stamp == f.source_seq
                in_place.add(f.in_place)
            except pagecam.FrameLost:
                lost += 1
            if f.seq >= live_from + 50:
                break
        assert sub.stats["replayed"] == live_from
        assert sub.stats["missed"] == 0
    assert seqs == list(range(len(seqs))), "a gap or a duplicate"
    assert seqs[-1] == live_from + 50
    assert lost <= len(seqs) // 20, f"{lost} of {len(seqs)} frames lost"
    if store == "direct":
        # The ring holds 500 ms: the oldest frames come from the recording.
        assert in_place == {False, True}
    else:
        assert in_place == {True}


def test_from_a_sequence_number_or_a_duration(capture):
    cap = capture("--size", "320x240", "--fps", "100", "--frames", "600")
    time.sleep(1.0)
    with pagecam.Subscription(cap.socket, from_=10) as sub:
        assert sub.next().seq == 10
    with pagecam.Subscription(cap.socket, from_=datetime.timedelta(seconds=0.2)) as sub:
        first = sub.next()
        assert first.replayed and sub.hello.next_seq - 40 <= first.seq < sub.hello.next_seq
    for bad in ("yesterday", -1, True, 1.5):
        with pytest.raises((ValueError, TypeError)):
            pagecam.Subscription(cap.socket, from_=bad)


CHILD = textwrap.dedent(
    """
    import signal, sys, pagecam
    # A background job of a non-interactive shell (CI under nohup, `cmd &`)
    # starts with SIGINT ignored, and Python then installs no handler for
    # it: install the one an interactive Python has.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sub = pagecam.Subscription(sys.argv[1], idle_timeout=None)
    print("waiting", flush=True)
    while True:
        f = sub.next()
        print("got", f.seq, flush=True)
    """
)


def test_ctrl_c_interrupts_a_blocked_next(capture, workdir):
    # One frame every 30 s: the child waits in next() for a long time.
    cap = capture("--size", "320x240", "--fps", "1/30")
    script = workdir[0] / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script), str(cap.socket)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline() == "waiting\n"
        # Frame 0 may come at once; after it, nothing for 30 s.
        time.sleep(0.5)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        child.kill()
        pytest.fail("SIGINT did not interrupt next()")
    assert "KeyboardInterrupt" in err, err
    assert "sub.next()" in err, err  # raised from inside the wait
    assert child.returncode != 0
    assert "got 1" not in out


def test_waiting_releases_the_gil_and_end_of_stream_stops_iteration(capture):
    cap = capture("--size", "320x240", "--fps", "1/30")
    sub = pagecam.Subscription(cap.socket, idle_timeout=None)
    got = []

    def consume():
        for f in sub:
            got.append(f.seq)

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.3)
    # The consumer is blocked in next(); this thread still runs Python.
    n, end = 0, time.monotonic() + 0.2
    while time.monotonic() < end:
        n += 1
    assert n > 1000 and t.is_alive()
    cap.stop()  # capture ends the stream: the loop ends
    t.join(HANG)
    assert not t.is_alive(), "the iteration did not end with the stream"
    assert sub.end is not None and sub.end["reason"] == "finished"
    assert sub.next() is None


def test_idle_timeout(capture):
    cap = capture("--size", "320x240", "--fps", "1/30")
    with pagecam.Subscription(cap.socket, idle_timeout=0.3) as sub:
        with pytest.raises(pagecam.Timeout) as e:
            for _ in range(3):  # frame 0 may come first
                sub.next()
        assert isinstance(e.value, TimeoutError)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError):
            pagecam.Subscription(cap.socket, idle_timeout=bad)


def test_capture_killed_raises_capture_gone(capture):
    cap = capture("--size", "320x240", "--fps", "100")
    with pagecam.Subscription(cap.socket) as sub:
        f = sub.next()
        cap.signal(signal.SIGKILL)
        cap.wait()
        with pytest.raises(pagecam.CaptureGone) as e:
            for _ in range(10_000):  # the notices queued before the kill first
                sub.next()
        assert isinstance(e.value, ConnectionError)
        # Frames handed out before still read (the mapping stays).
        try:
            with f:
                f.array().sum()
        except pagecam.FrameLost:
            pass


def test_progress_is_acknowledged_every_8th_frame(capture):
    # Capture's status line shows how far the slowest analyzer is behind,
    # from the progress it acknowledged: without acknowledgements it would
    # be every frame published since it connected.
    cap = capture(
        "--size", "320x240", "--fps", "100", "--frames", "2000", "--status-interval", "100ms",
        log="info",
    )
    with pagecam.Subscription(cap.socket) as sub:
        for f in sub:
            if f.seq >= 300:
                break
        lag_lines = [l for l in cap.stderr().splitlines() if "1 analyzers (slowest" in l]
    assert len(lag_lines) >= 5, cap.stderr()[-2000:]
    lag = int(lag_lines[-1].split("(slowest ")[1].split()[0])
    assert lag <= 50, lag_lines[-1]


def test_a_missing_socket_raises_a_clear_error(workdir):
    d, _ = workdir
    with pytest.raises(pagecam.ConnectError) as e:
        pagecam.Subscription(d / "nothing.pcam")
    msg = str(e.value)
    assert "nothing.pcam.sock" in msg and "pagecam-capture running" in msg, msg
    assert isinstance(e.value, ConnectionError)

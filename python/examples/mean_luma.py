"""Mean luma of every live frame, computed by numpy on the frame in place.

    # terminal 1: record the built-in test pattern
    pagecam-capture -o /tmp/cam.pcam --size 1280x720 --fps 30
    # terminal 2:
    python3 python/examples/mean_luma.py /tmp/cam.pcam

One line per frame: sequence number, mean luma (0-255), and how long after
capture published the frame it was read. Frames capture reused before or
while they were read are reported as lost, never with a number.
"""

import sys
import time

import pagecam


def luma(frame, a):
    """The luma plane of a frame's array (a view: no copy)."""
    if frame.format in ("YUYV", "YVYU"):
        return a[:, :, 0]
    if frame.format in ("UYVY", "VYUY"):
        return a[:, :, 1]
    if frame.format in ("NV12", "NV21"):
        return a[: frame.height]
    if frame.format == "GREY":
        return a
    raise SystemExit(f"mean_luma.py: no luma plane in {frame.format}; try frame.gray()")


def main():
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} RECORDING|SOCKET")
    with pagecam.Subscription(sys.argv[1]) as sub:
        h = sub.hello
        print(f"# {h.format} {h.width}x{h.height}, {h.slots} live slots ({h.store} store)", file=sys.stderr)
        try:
            for frame in sub:
                try:
                    with frame:
                        mean = float(luma(frame, frame.array()).mean())
                    # The with block's check passed: `mean` is this frame's.
                except pagecam.FrameLost as e:
                    print(f"{frame.seq}\tlost ({type(e).__name__})")
                    continue
                late_ms = (time.monotonic_ns() - frame.ready_ns) / 1e6 if frame.ready_ns else 0.0
                print(f"{frame.seq}\t{mean:6.2f}\t{late_ms:6.2f} ms")
        except KeyboardInterrupt:
            pass
        print(f"# {sub.stats}", file=sys.stderr)


if __name__ == "__main__":
    main()

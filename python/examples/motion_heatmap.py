"""Where the picture moves: a motion heat map of live frames.

    # terminal 1: record the built-in test pattern (moving diagonal bars)
    pagecam-capture -o /tmp/cam.pcam --size 1280x720 --fps 30
    # terminal 2: 300 frames, then the map
    python3 python/examples/motion_heatmap.py /tmp/cam.pcam --frames 300

Each frame's luma is reduced to block means on a 32x18 grid inside the
frame's `with` block (numpy on the view: the only copy is the reduction's);
the map accumulates the mean absolute change of every block between
consecutive frames. A lost frame (overwritten before or while it was read)
resets the comparison, so no change is ever measured against a torn frame.
Printed as shades, brightest where the picture changed most.
"""

import argparse
import sys

import numpy as np

import pagecam

GRID_W, GRID_H = 32, 18
SHADES = " .:-=+*#%@"


def luma(frame, a):
    if frame.format in ("YUYV", "YVYU"):
        return a[:, :, 0]
    if frame.format in ("UYVY", "VYUY"):
        return a[:, :, 1]
    if frame.format in ("NV12", "NV21"):
        return a[: frame.height]
    if frame.format == "GREY":
        return a
    raise SystemExit(f"motion_heatmap.py: no luma plane in {frame.format}")


def block_means(y):
    """Mean of each cell of the grid (cells of whole pixels; edges dropped)."""
    bh, bw = y.shape[0] // GRID_H, y.shape[1] // GRID_W
    cells = y[: bh * GRID_H, : bw * GRID_W].reshape(GRID_H, bh, GRID_W, bw)
    return cells.mean(axis=(1, 3), dtype=np.float64)


def show(heat):
    top = heat.max() or 1.0
    for row in np.sqrt(heat / top):  # square root: faint motion still shows
        print("".join(SHADES[min(int(v * len(SHADES)), len(SHADES) - 1)] for v in row))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", help="the recording (or capture's socket)")
    ap.add_argument("--frames", type=int, default=300)
    args = ap.parse_args()
    heat = np.zeros((GRID_H, GRID_W))
    prev, pairs = None, 0
    with pagecam.Subscription(args.target) as sub:
        try:
            for frame in sub:
                try:
                    with frame:
                        cur = block_means(luma(frame, frame.array()))
                except pagecam.FrameLost:
                    prev = None  # never compare across a lost frame
                    continue
                if prev is not None:
                    heat += np.abs(cur - prev)
                    pairs += 1
                prev = cur
                if sub.stats["frames"] >= args.frames:
                    break
        except KeyboardInterrupt:
            pass
        print(f"# {pairs} frame pairs, {sub.stats}", file=sys.stderr)
    if pairs:
        show(heat / pairs)
        print(f"# mean block change {heat.mean() / pairs:.2f} (0-255), peak {heat.max() / pairs:.2f}")


if __name__ == "__main__":
    main()

"""Focus score of live frames with OpenCV: the variance of the Laplacian.

    pip install opencv-python-headless      # OpenCV is not a pagecam dependency
    # terminal 1: a sharp scene, then a soft (out-of-focus) one, repeated
    pagecam-capture -o /tmp/cam.pcam --size 1280x720 --fps 30 --pattern moving:60,soft:60
    # terminal 2:
    python3 python/examples/focus_opencv.py /tmp/cam.pcam

`frame.gray()` is a checked copy of the luma (OpenCV keeps and may hand
arrays to other threads, so give it memory of its own, not the live view);
`frame.bgr()` gives a BGR image for any other cv2 function. Higher scores
are sharper: the test source's soft scene scores several times lower
than the moving bars (its only edges are the frame-number stamp).
"""

import sys

import pagecam

try:
    import cv2
except ImportError:
    raise SystemExit(
        "focus_opencv.py needs OpenCV: pip install opencv-python-headless "
        "(or on Debian: apt-get install python3-opencv)"
    )


def main():
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} RECORDING|SOCKET")
    with pagecam.Subscription(sys.argv[1]) as sub:
        try:
            for frame in sub:
                try:
                    gray = frame.gray()  # copies and checks: raises if the frame was reused
                except pagecam.FrameLost:
                    continue
                score = cv2.Laplacian(gray, cv2.CV_64F).var()
                bar = "#" * min(60, int(score / 50))
                print(f"{frame.seq}\t{score:10.1f}\t{bar}")
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

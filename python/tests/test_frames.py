"""A frame as numpy sees it: the view is in place, read-only, shaped per
format with the line stride; copies and conversions are right; a closed
frame gives no more pixels; the memory outlives the subscription."""

import gc

import numpy as np
import pytest

import pagecam
from conftest import read_stamp, crc32c_py

W, H = 320, 240


def first_good_frame(sub):
    """Open frames until one opens (a loaded machine may lose some)."""
    for _ in range(100):
        f = sub.next()
        assert f is not None, "stream ended early"
        try:
            f.__enter__()
            return f
        except pagecam.FrameLost:
            continue
    pytest.fail("100 frames in a row were lost")


# BT.601 limited range, in floating point: what bgr() must give within 1.
def bgr_reference(y, u, v):
    y = (np.maximum(y.astype(np.float64) - 16, 0)) * 1.164
    u = u.astype(np.float64) - 128
    v = v.astype(np.float64) - 128
    b = y + 2.018 * u
    g = y - 0.391 * u - 0.813 * v
    r = y + 1.596 * v
    return np.clip(np.rint(np.stack([b, g, r], axis=-1)), 0, 255)


@pytest.mark.parametrize(
    "fmt, shape, strides",
    [
        ("YUYV", (H, W, 2), (2 * W, 2, 1)),
        ("GREY", (H, W), (W, 1)),
        ("NV12", (H * 3 // 2, W), (W, 1)),
    ],
)
def test_view_is_in_place_read_only_and_shaped_per_format(capture, fmt, shape, strides):
    cap = capture("--format", fmt, "--size", f"{W}x{H}", "--fps", "60", "--frames", "600")
    with pagecam.Subscription(cap.socket) as sub:
        assert (sub.hello.format, sub.hello.width, sub.hello.height) == (fmt, W, H)
        assert sub.hello.store == "direct"
        f = first_good_frame(sub)
        assert (f.format, f.width, f.height, f.in_place, f.replayed) == (fmt, W, H, True, False)
        a = f.array()
        assert a.dtype == np.uint8
        assert a.shape == shape
        assert a.strides == strides
        assert f.stride == strides[0]
        # In place: no data of its own, the frame memory is its base.
        assert not a.flags.owndata
        assert type(a.base).__name__ == "_FrameMemory"
        # Read-only, and it cannot be made writeable.
        assert a.flags.writeable is False
        with pytest.raises(ValueError):
            a[0, 0] = 1
        with pytest.raises(ValueError):
            a.flags.writeable = True
        # The frame is the one announced: its stamp is its source number.
        luma = a if a.ndim == 2 else a[:, :, 0]
        stamp = read_stamp(luma, "GREY", W)
        c = f.copy()
        g = f.gray()
        b = f.bgr()
        crc = pagecam.crc32c(a.tobytes())
        f.__exit__(None, None, None)  # the check: raises if torn
        assert stamp == f.source_seq, (stamp, f.source_seq)
        # The copy: owned, writeable, contiguous, equal.
        assert c.flags.owndata or c.base is None or c.base.flags.owndata
        assert c.flags.writeable and c.flags.c_contiguous and c.shape == shape
        assert pagecam.crc32c(c.tobytes()) == crc
        # gray(): the luma plane as stored.
        assert g.shape == (H, W) and g.dtype == np.uint8
        np.testing.assert_array_equal(g, c if fmt == "GREY" else (c[:H] if fmt == "NV12" else c[:, :, 0]))
        # bgr(): BT.601 limited range, within 1 of the exact formula.
        assert b.shape == (H, W, 3) and b.dtype == np.uint8
        if fmt == "YUYV":
            y = c[:, :, 0]
            u = np.repeat(c[:, 0::2, 1], 2, axis=1)
            v = np.repeat(c[:, 1::2, 1], 2, axis=1)
            ref = bgr_reference(y, u, v)
        elif fmt == "NV12":
            y = c[:H]
            uv = np.repeat(np.repeat(c[H:], 2, axis=0), 1, axis=1)
            u = np.repeat(uv[:, 0::2], 2, axis=1)
            v = np.repeat(uv[:, 1::2], 2, axis=1)
            ref = bgr_reference(y, u, v)
        else:
            ref = np.stack([c, c, c], axis=-1)
        assert np.abs(b.astype(int) - ref.astype(int)).max() <= 1
        # Closed: no more pixels from the frame...
        assert f.closed
        for access in (f.array, f.copy, f.gray, f.bgr, f.check):
            with pytest.raises(pagecam.FrameClosed):
                access()
        # ...but the arrays made before cannot be revoked (documented).
        assert a.shape == shape
    # The memory outlives the subscription: the array holds the mapping.
    del sub
    gc.collect()
    assert int(a.sum()) >= 0


def test_crc32c_matches_a_reference_implementation():
    assert pagecam.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    data = bytes(range(256)) * 7
    assert pagecam.crc32c(data) == crc32c_py(data)
    assert pagecam.crc32c(data[100:], pagecam.crc32c(data[:100])) == crc32c_py(data)


def test_with_block_checks_and_closes(capture):
    cap = capture("--size", f"{W}x{H}", "--fps", "60", "--frames", "600")
    with pagecam.Subscription(str(cap.recording)) as sub:  # the recording's path works too
        assert sub.socket.name == "rec.pcam.sock"
        for _ in range(100):
            f = sub.next()
            try:
                with f as g:
                    assert g is f
                    mean = float(f.array()[:, :, 0].mean())
                    f.check()  # may be called inside too
                break
            except pagecam.FrameLost:
                continue
        else:
            pytest.fail("100 frames in a row were lost")
        assert f.closed and 16 <= mean <= 235
        # An exception inside the block propagates when the frame is intact.
        f2 = first_good_frame(sub)
        f2.__exit__(None, None, None)
        f3 = sub.next()
        with pytest.raises(ZeroDivisionError):
            with f3:
                1 / 0
        assert f3.closed
    assert sub.closed
    with pytest.raises(pagecam.Error):
        sub.next()

"""pagecam: live frames from ``pagecam-capture`` as numpy arrays read in place.

    import pagecam

    with pagecam.Subscription("/data/cam.pcam") as sub:
        for frame in sub:
            try:
                with frame:                       # opens: Overwritten if already reused
                    y = frame.array()[:, :, 0]    # YUYV luma, a view: no copy
                    mean = float(y.mean())
                # the check passed: `mean` is frame.seq's
            except pagecam.FrameLost:             # Overwritten or Torn: discard
                continue
            print(frame.seq, mean)

The rule: a view (``frame.array()``) shows whatever the slot holds *now*;
capture may reuse the slot at any moment. What you compute from a view
counts only if the check after it passes — the end of ``with frame:`` or
``frame.check()``. A view must not outlive its check: after ``with`` ends,
``array()`` raises ``FrameClosed``, but arrays made before cannot be
revoked, so do not keep them; keep ``frame.copy()`` (checked) instead.

SIGBUS: with the default ``--store direct`` the live store is a sealed
memfd that cannot shrink, so reading a view can never fault. With
``--store file`` the views are the recording file's pages: if another
process truncates the recording while it is mapped, the next read kills
the interpreter with SIGBUS (it cannot be turned into an exception).
"""

import datetime
import os
import pathlib
from types import TracebackType
from typing import Dict, Iterator, List, Literal, Optional, Type, Union, final

import numpy as np
import numpy.typing as npt

__version__: str
__all__: List[str]

class Error(Exception):
    """Base class of every pagecam error."""

class FrameLost(Error):
    """The frame's bytes cannot be trusted: discard whatever was computed from it.

    Raised as itself for a replayed frame that failed its checksum or a
    notice naming a slot the store does not have."""

class Overwritten(FrameLost):
    """Capture had already reused the frame's slot when the frame was opened."""

class Torn(FrameLost):
    """Capture reused the frame's slot while it was in use (between opening and the check)."""

class FrameClosed(Error, ValueError):
    """The frame was closed: its pixels can no longer be reached."""

class ConnectError(Error, ConnectionError):
    """No capture serves the socket, it refused this analyzer, or it is not a pagecam capture."""

class CaptureGone(Error, ConnectionError):
    """Capture went away without ending the stream (killed, crashed, or it dropped this analyzer)."""

class Timeout(Error, TimeoutError):
    """No frame from capture within idle_timeout."""

@final
class Hello:
    """What capture said about the stream on connecting."""

    format: str
    """Pixel format (fourcc), e.g. ``"YUYV"``."""
    width: int
    height: int
    stride: int
    """Bytes per line of the first plane."""
    frame_size: int
    """Largest frame in bytes."""
    slots: int
    """Frames the live store holds: how far an analyzer may fall behind."""
    store: Literal["direct", "file", "unknown"]
    """``"direct"``: a sealed RAM ring (older frames in the recording); ``"file"``: the recording itself."""
    client_id: int
    next_seq: int
    """The first live frame's sequence number; lower ones were already stored."""

@final
class Frame:
    """One frame. Use its pixels inside ``with frame:`` (or call ``check()`` after).

    Opening (``with``, ``array()``, ``copy()``…) raises ``Overwritten`` if
    capture already reused the slot; the check at the end of ``with`` (or
    ``check()``) raises ``Torn`` if it did meanwhile. Frames replayed from
    the recording file (``in_place`` False) are copies read by ``pread`` and
    are never torn.
    """

    seq: int
    """Sequence number in the recording."""
    source_seq: Optional[int]
    """The source's own frame number (``None`` if unknown)."""
    ts_ns: int
    """Capture timestamp, CLOCK_MONOTONIC nanoseconds."""
    wall_ns: Optional[int]
    """Wall-clock time, nanoseconds since the epoch (``None`` if unknown)."""
    ready_ns: Optional[int]
    """When capture published the frame, CLOCK_MONOTONIC ns (``None`` for replayed frames)."""
    bytes_used: int
    flags: int
    error: bool
    """The source marked the frame damaged (V4L2_BUF_FLAG_ERROR)."""
    format: str
    """Pixel format (fourcc), e.g. ``"YUYV"``."""
    width: int
    height: int
    stride: int
    """Bytes per line."""
    slot: int
    replayed: bool
    """Replayed from the store (``from_=``), not announced live."""
    in_place: bool
    """Read in place from the live store (False: a copy read from the recording)."""
    closed: bool

    def array(self) -> npt.NDArray[np.uint8]:
        """A read-only numpy view of the frame where it lies (no copy).

        Shape per format: YUYV/UYVY ``(h, w, 2)``, GREY ``(h, w)``, NV12/NV21
        ``(h*3//2, w)``, RGB24/BGR24 ``(h, w, 3)``, others ``(bytes_used,)``;
        the line stride is the first stride. Results count only after the
        check; the array must not be used after it.
        """
    def copy(self) -> npt.NDArray[np.uint8]:
        """An owned, writeable, C-contiguous copy in the shape of ``array()`` (checked)."""
    def gray(self) -> npt.NDArray[np.uint8]:
        """An owned ``(h, w)`` luma copy (checked): the Y plane of YUV, BT.601 luma of RGB."""
    def bgr(self) -> npt.NDArray[np.uint8]:
        """An owned ``(h, w, 3)`` BGR copy for OpenCV (checked; YUV as BT.601 limited range)."""
    def check(self) -> None:
        """Raise ``Overwritten``/``Torn`` if what was read since opening may not be this frame."""
    def close(self) -> None:
        """Close without checking: pixel access raises ``FrameClosed`` afterwards."""
    def __enter__(self) -> "Frame": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]] = None,
        exc: Optional[BaseException] = None,
        tb: Optional[TracebackType] = None,
    ) -> bool:
        """Check and close; raises ``Overwritten``/``Torn`` if the check fails."""

@final
class Subscription:
    """A connection to a running ``pagecam-capture`` and the stream of its frames.

    ``path``: capture's socket, or the recording (``PATH.sock`` is used).
    ``idle_timeout``: seconds ``next()`` waits before raising ``Timeout``
    (``None``: forever). ``from_``: ``None``/``"now"``, ``"oldest"``, a
    sequence number, or a ``timedelta`` (frames of the last that long):
    stored frames are replayed first, then live ones, with no gap or
    duplicate.
    """

    def __new__(
        cls,
        socket_path: Union[str, "os.PathLike[str]"],
        idle_timeout: Optional[float] = 10.0,
        from_: Union[None, Literal["now", "oldest"], int, datetime.timedelta] = None,
    ) -> "Subscription": ...
    @property
    def hello(self) -> Hello: ...
    @property
    def socket(self) -> pathlib.Path: ...
    @property
    def end(self) -> Optional[Dict[str, Union[str, int]]]:
        """``None`` while the stream runs; then ``{"reason": "finished"|"error", "frames": n}``."""
    @property
    def stats(self) -> Dict[str, int]:
        """``frames``, ``replayed``, ``missed``, ``overwritten``, ``torn``, ``other_lost``."""
    @property
    def closed(self) -> bool: ...
    def next(self) -> Optional[Frame]:
        """The next frame (``None`` once capture ended the stream).

        Waits without the GIL; Ctrl-C raises ``KeyboardInterrupt``; raises
        ``Timeout`` or ``CaptureGone``."""
    def __iter__(self) -> Iterator[Frame]: ...
    def __next__(self) -> Frame: ...
    def close(self) -> None:
        """Close the connection (frames handed out stay readable)."""
    def __enter__(self) -> "Subscription": ...
    def __exit__(self, *args: object) -> bool: ...

def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC32C of ``data`` (as ``pagecam-analyzer watch --checksum`` prints)."""

def socket_for(path: Union[str, "os.PathLike[str]"]) -> pathlib.Path:
    """The socket capture serves for a recording or socket path."""

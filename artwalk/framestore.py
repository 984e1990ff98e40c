"""How frames are kept between stages: keyframes as PNG files, the motion frames of a
segment as one lossless video file.

A manifest's frame entry is ``{"path": ..., "sha256": ...}`` for a PNG, and
``{"path": ".../motion.mkv", "index": k, "sha256": ...}`` for the k-th frame of a
segment file; there ``sha256`` is the hash of the frame's pixels (:func:`pixels_sha256`),
so it names the frame and not the file. :class:`FrameReader` reads either.

The segment files are H.264 in RGB (``libx264rgb``) at qp 0: lossless, so a decoded frame
equals the computed one bit for bit (the tests check it), in a Matroska file. Measured on
the examples' motion frames at 1280x720 (2 cores): 0.85 MB and 0.027 s to write a
frame, against 1.38 MB and 0.134 s for a fast-level PNG; FFV1 took 0.88 MB and 0.058 s.
A segment's frames are decoded in order, so a reader keeps each file open where it
stopped and a few frames back, which is how stages 3 and 4 walk through them.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

import av
import numpy as np

from artwalk.errors import InputError, StageOrderError
from artwalk.images import read_frame_u8
from artwalk.video import encoder_threads, rgb_array, x264_options

SEGMENT_FILE = "motion.mkv"
CODEC, OPTIONS = "libx264rgb", {"qp": "0", "preset": "ultrafast"}
_BACK = 16  # frames a reader keeps behind where it stopped (reader threads a few frames apart)
_OPEN = 4  # segment files a reader keeps open


def pixels_sha256(rgb: np.ndarray) -> str:
    """The hash of an RGB uint8 frame's size and pixels."""
    h, w = rgb.shape[:2]
    return hashlib.sha256(f"{w}x{h}\n".encode("ascii") + np.ascontiguousarray(rgb).tobytes()).hexdigest()


def write_segment(path: Path, frames: Iterable[np.ndarray]) -> list[str]:
    """Encode RGB uint8 frames losslessly into ``path``; returns each frame's pixel hash."""
    hashes: list[str] = []
    with av.open(str(path), "w", format="matroska", options={"fflags": "+bitexact"}) as container:
        stream = None
        for i, rgb in enumerate(frames):
            if stream is None:
                stream = container.add_stream(CODEC, rate=24, options={**OPTIONS, **x264_options()})
                stream.height, stream.width = rgb.shape[:2]
                stream.pix_fmt = "rgb24"
                stream.codec_context.thread_count = encoder_threads()
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
            hashes.append(pixels_sha256(rgb))
        if stream is not None:
            container.mux(stream.encode(None))
    return hashes


class _Segment:
    """One segment file, decoded forward from where the last read stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.container = None
        self.frames: Iterator | None = None
        self.next = 0
        self.recent: OrderedDict[int, np.ndarray] = OrderedDict()

    def read(self, index: int) -> np.ndarray:
        with self.lock:
            if index in self.recent:
                return self.recent[index]
            if self.frames is None or index < self.next:
                self._open()
            try:
                while self.next <= index:
                    frame = next(self.frames, None)
                    if frame is None:
                        raise StageOrderError(f"{self.path}: holds {self.next} frame(s), not frame {index}; rerun "
                                              "`python -m frame_interpolation`")
                    rgb = rgb_array(frame)
                    rgb.flags.writeable = False
                    self.recent[self.next] = rgb
                    if len(self.recent) > _BACK + 1:
                        self.recent.popitem(last=False)
                    self.next += 1
            except av.FFmpegError:
                raise self._broken() from None
            return self.recent[index]

    def _open(self) -> None:
        self.close()
        try:
            self.container = av.open(str(self.path))
        except av.FFmpegError:
            raise self._broken() from None
        self.frames = self.container.decode(video=0)
        self.next = 0
        self.recent.clear()

    def _broken(self) -> InputError:
        return InputError(f"{self.path}: segment file is missing or corrupt; rerun `python -m frame_interpolation`")

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
        self.container, self.frames = None, None


class FrameReader:
    """Reads a run folder's frame entries (PNG files, or frames of segment files) as RGB
    uint8 arrays; safe to use from several threads. Close it (or use ``with``) when done."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self._segments: OrderedDict[Path, _Segment] = OrderedDict()
        self._lock = threading.Lock()

    def path(self, entry: dict) -> Path:
        return self.run_dir.joinpath(*PurePosixPath(entry["path"]).parts)

    def u8(self, entry: dict) -> np.ndarray:
        path = self.path(entry)
        if "index" not in entry:
            return read_frame_u8(path)
        with self._lock:
            segment = self._segments.get(path)
            if segment is None:
                segment = self._segments[path] = _Segment(path)
                while len(self._segments) > _OPEN:
                    _, old = self._segments.popitem(last=False)
                    with old.lock:
                        old.close()
            self._segments.move_to_end(path)
        return segment.read(int(entry["index"]))

    def rgb(self, entry: dict) -> np.ndarray:
        """The frame as float32 in [0, 1], as :func:`artwalk.images.read_frame` gives a PNG."""
        return self.u8(entry).astype(np.float32) / 255.0

    def close(self) -> None:
        with self._lock:
            for segment in self._segments.values():
                with segment.lock:
                    segment.close()
            self._segments.clear()

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""Short videos the tests write themselves (no camera on CI): :func:`make_video`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["make_video", "video_frame", "RED", "STEP"]

#: The top-left quarter of every frame (RGB): checks the channel order after decoding.
RED = (255, 0, 0)
#: Frame ``i``'s bottom-left quarter is gray ``(i * STEP) % 256``: checks the frame order.
STEP = 8


def video_frame(i: int, size: tuple[int, int] = (96, 64)) -> np.ndarray:
    """Frame ``i`` of :func:`make_video` as H x W x 3 uint8 RGB: a red top-left quarter, a green
    top-right one, a gray bottom-left quarter of level ``(i * STEP) % 256`` and a white bar
    moving across the bottom-right quarter on a blue ground."""
    width, height = size
    frame = np.zeros((height, width, 3), np.uint8)
    h2, w2 = height // 2, width // 2
    frame[:h2, :w2] = RED
    frame[:h2, w2:] = (0, 255, 0)
    frame[h2:, :w2] = (i * STEP) % 256
    frame[h2:, w2:] = (0, 0, 255)
    bar = w2 + (i * 3) % max(1, width - w2 - 4)
    frame[h2:, bar:bar + 4] = 255
    return frame


def make_video(path, frames: int = 30, size: tuple[int, int] = (96, 64), fps: float = 15) -> Path:
    """Write ``frames`` frames of :func:`video_frame` as a video (MJPG .avi; mp4v for .mp4) at
    ``fps``; returns ``path``. ``size`` is (width, height)."""
    import cv2

    path = Path(path)
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix.lower() == ".mp4" else "MJPG"))
    writer = cv2.VideoWriter(str(path), fourcc, float(fps), (int(size[0]), int(size[1])))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    try:
        for i in range(frames):
            writer.write(cv2.cvtColor(video_frame(i, size), cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path

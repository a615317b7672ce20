"""The frame-exactness matrix's test files, written with FFmpeg through PyAV.

Every file holds ``pattern_frames``: each frame shows its own index in binary along the bottom
rows, so a decoded picture says which frame it is. The files cover what real footage does to
decoders: H.264 with B-frames and a long GOP, variable frame rate (mp4 and mkv), an AVI, an AVI
whose header claims twice the frames it holds, an mp4 cut short behind an intact header, and a
frame folder.
"""

from __future__ import annotations

import fractions
import struct
from pathlib import Path
from typing import NamedTuple

import av
import cv2
import numpy as np

MATRIX_SIZE = (128, 96)  # (width, height)
MATRIX_FRAMES = 160
X264_LONG_GOP = "bframes=3:b-adapt=0:b-pyramid=normal:keyint=150:min-keyint=150:scenecut=0"


class MatrixFile(NamedTuple):
    """One file of the matrix: its ``path``, the number of frames that really decode and the
    RGB frames written (``frames[:real_frames]`` are in the file)."""

    path: Path
    real_frames: int
    frames: np.ndarray


def written_index(frames: np.ndarray) -> np.ndarray:
    """The frame indices that ``pattern_frames`` wrote into ``(N, H, W, 3)`` frames, read back."""
    strip = frames[:, -6:-2].astype(np.float32).mean(axis=(1, 3))  # (N, W), inside the blocks
    block = frames.shape[2] // 8
    bits = np.stack([strip[:, b * block + 2 : (b + 1) * block - 2].mean(1) > 128 for b in range(8)], 1)
    return (bits * (1 << np.arange(8))).sum(1)


def write_with_pyav(
    path: Path,
    frames_rgb: np.ndarray,
    codec: str = "libx264",
    fps: int = 25,
    options: dict[str, str] | None = None,
    pts_ms: np.ndarray | None = None,
) -> Path:
    """Encode RGB frames ``(N, H, W, 3)``; ``pts_ms`` gives each frame's time (variable frame rate)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height = frames_rgb.shape[2], frames_rgb.shape[1]
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if pts_ms is not None:
            stream.time_base = stream.codec_context.time_base = fractions.Fraction(1, 1000)
        for i, image in enumerate(frames_rgb):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = int(pts_ms[i]), fractions.Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def claim_more_frames_in_avi(path: Path, factor: int = 2) -> None:
    """Multiply the frame counts in an AVI's headers (``avih`` total frames, ``strh`` length)
    by ``factor``, as some real files do, leaving the frames and the index as they are."""
    data = bytearray(path.read_bytes())
    avih = data.index(b"avih")
    total_at = avih + 8 + 16  # dwMicroSecPerFrame, dwMaxBytesPerSec, dwPaddingGranularity, dwFlags
    data[total_at : total_at + 4] = struct.pack("<I", struct.unpack("<I", data[total_at : total_at + 4])[0] * factor)
    strh = data.index(b"strh")
    length_at = strh + 8 + 32  # fccType, fccHandler, dwFlags, wPriority+wLanguage, dwInitialFrames, dwScale, dwRate, dwStart
    data[length_at : length_at + 4] = struct.pack("<I", struct.unpack("<I", data[length_at : length_at + 4])[0] * factor)
    path.write_bytes(bytes(data))


def _variable_frame_times(count: int, seed: int = 0) -> np.ndarray:
    steps = np.random.default_rng(seed).choice([20, 40, 40, 60, 100], count)
    return np.concatenate([[0], np.cumsum(steps[:-1])])


def write_matrix(folder: Path, frames: np.ndarray) -> dict[str, MatrixFile]:
    """Write every file of the matrix into ``folder``; return them by name."""
    folder.mkdir(parents=True, exist_ok=True)
    count = len(frames)
    files: dict[str, MatrixFile] = {}
    x264 = {"x264-params": X264_LONG_GOP}
    files["h264-bframes-long-gop.mp4"] = MatrixFile(write_with_pyav(folder / "h264-bframes-long-gop.mp4", frames, options=x264), count, frames)
    times = _variable_frame_times(count)
    for suffix in ("mp4", "mkv"):
        name = f"h264-vfr.{suffix}"
        files[name] = MatrixFile(write_with_pyav(folder / name, frames, options=x264, pts_ms=times), count, frames)
    files["mpeg4.avi"] = MatrixFile(write_with_pyav(folder / "mpeg4.avi", frames, codec="mpeg4", options={"g": "40"}), count, frames)
    lying = write_with_pyav(folder / "header-claims-double.avi", frames, codec="mpeg4", options={"g": "40"})
    claim_more_frames_in_avi(lying)
    files[lying.name] = MatrixFile(lying, count, frames)
    frame_folder = folder / "frame-folder"
    frame_folder.mkdir(exist_ok=True)
    for i, image in enumerate(frames):
        cv2.imwrite(str(frame_folder / f"{i:06d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    files["frame-folder"] = MatrixFile(frame_folder, count, frames)
    return files

"""Fixtures of the data-layer tests: tiny mp4 files, hand-written datasets, a larger synthetic dataset."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import cv2
import numpy as np
import pytest

from restaurant_action.data.annotations import ActionAnnotations
from restaurant_action.data.synthetic import make_synthetic_dataset

VIDEO_SIZE = (64, 48)  # (width, height) of the hand-written datasets' videos
VIDEO_LENGTHS = {"a": 30, "b": 20}
CLASSES = ("cut", "wipe", "pour")
HEADER = "video,frame,x1,y1,x2,y2,action,track"


def write_mp4(path: Path, frames_rgb: np.ndarray, fps: float = 25.0) -> Path:
    """Write RGB frames ``(N, H, W, 3)`` as an mp4v file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames_rgb.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened(), "OpenCV cannot write mp4v"
    for frame in frames_rgb:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def pattern_frames(num_frames: int, size: tuple[int, int] = VIDEO_SIZE) -> np.ndarray:
    """RGB frames that tell their index apart.

    A grey ramp whose level changes each frame, a red square that moves, and the frame index
    written in binary as 8 black/white blocks along the bottom 8 rows (so any two frames differ
    in at least one 8×8 block).
    """
    width, height = size
    ramp = np.linspace(0, 60, width, dtype=np.float32)[None, :, None]
    block = width // 8
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for i in range(num_frames):
        image = np.clip(ramp + 40 + (i * 7) % 120, 0, 255).repeat(height, 0).repeat(3, 2).astype(np.uint8)
        x, y = (i * 3) % (width - 12), 4 + (i % 4) * 8
        image[y : y + 10, x : x + 10] = (230, 20, 20)
        for bit in range(8):
            image[height - 8 :, bit * block : (bit + 1) * block] = 235 if (i >> bit) & 1 else 20
        frames[i] = image
    return frames


@pytest.fixture(scope="session")
def mp4_writer() -> Callable[..., Path]:
    """``write_mp4(path, frames_rgb, fps=25.0) -> path``."""
    return write_mp4


@pytest.fixture(scope="session")
def frame_pattern() -> Callable[..., np.ndarray]:
    """``pattern_frames(num_frames, size=(64, 48)) -> uint8 (N, H, W, 3)`` RGB."""
    return pattern_frames


class PatternVideo(NamedTuple):
    """An mp4 written from known frames: ``path``, ``frames`` (the RGB frames written), ``fps``."""

    path: Path
    frames: np.ndarray
    fps: float


@pytest.fixture(scope="session")
def pattern_video(tmp_path_factory: pytest.TempPathFactory) -> PatternVideo:
    """150 frames at 64×48, 25 fps: several GOPs, so random access really seeks. Read-only."""
    frames = pattern_frames(150)
    path = write_mp4(tmp_path_factory.mktemp("pattern") / "pattern.mp4", frames, fps=25.0)
    return PatternVideo(path, frames, 25.0)


@pytest.fixture(scope="session")
def video_bank(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Videos ``a`` (30 frames) and ``b`` (20 frames) at 64×48, copied into each hand-written dataset."""
    folder = tmp_path_factory.mktemp("video_bank")
    return {name: write_mp4(folder / f"{name}.mp4", pattern_frames(n)) for name, n in VIDEO_LENGTHS.items()}


DatasetFactory = Callable[..., Path]


@pytest.fixture
def make_dataset(tmp_path: Path, video_bank: dict[str, Path]) -> DatasetFactory:
    """Write a dataset folder from text lines; return its root.

    Call as ``make_dataset(rows, classes=CLASSES, videos=("a", "b"), header=HEADER, ranges=None)``:
    ``rows`` are the lines after the header (line 2 on), ``ranges`` the lines of
    ``annotated_ranges.csv`` after its header (``None``: no such file).
    """
    counter = iter(range(1_000_000))

    def make(
        rows: Sequence[str],
        classes: Sequence[str] | None = CLASSES,
        videos: Sequence[str] = ("a", "b"),
        header: str | None = HEADER,
        ranges: Sequence[str] | None = None,
    ) -> Path:
        root = tmp_path / f"dataset{next(counter)}"
        (root / "videos").mkdir(parents=True)
        for name in videos:
            shutil.copy(video_bank[name], root / "videos" / f"{name}.mp4")
        if classes is not None:
            (root / "classes.txt").write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")
        lines = ([header] if header is not None else []) + list(rows)
        (root / "annotations.csv").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        if ranges is not None:
            (root / "annotated_ranges.csv").write_text("video,start,end\n" + "".join(f"{r}\n" for r in ranges), encoding="utf-8")
        return root

    return make


class SyntheticDataset(NamedTuple):
    """A generated dataset: its ``root`` and its loaded ``annotations``."""

    root: Path
    annotations: ActionAnnotations


MEDIUM_SIZE = (128, 72)


@pytest.fixture(scope="session")
def synthetic_medium(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataset:
    """8 videos × 900 frames at 128×72: enough clips (~100) for the class statistics. Read-only."""
    root = tmp_path_factory.mktemp("synthetic_medium") / "dataset"
    annotations = make_synthetic_dataset(root, num_videos=8, frames_per_video=900, size=MEDIUM_SIZE, seed=0, workers=1)
    return SyntheticDataset(root, annotations)

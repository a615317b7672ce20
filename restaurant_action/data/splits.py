"""Train/validation splits that keep correlated frames together.

Neighbouring frames of a video are near-duplicates, so a random frame split leaks validation
frames into training. Frames are split in 120-frame blocks instead, and clips as a whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Hashable, Sequence, TypeVar

import numpy as np

from restaurant_action.errors import DatasetError

BLOCK_FRAMES = 120
T = TypeVar("T", bound=Hashable)


def block_split(
    num_frames_per_video: dict[str, int], val_fraction: float = 0.2, block_frames: int = BLOCK_FRAMES, seed: int = 0
) -> dict[str, dict[str, np.ndarray]]:
    """Split every video's frames into train and val by whole blocks of ``block_frames``.

    Blocks are numbered per video (block ``b`` holds frames ``b*block_frames`` to
    ``(b+1)*block_frames - 1``; the last block may be shorter). ``round(val_fraction * n)``
    of all ``n`` blocks, drawn with ``seed`` from every video's blocks together, go to val.

    Example: a 300-frame video has blocks 0 (0–119), 1 (120–239), 2 (240–299); with
    ``val_fraction=0.34`` one block, say block 1, goes to val: val frames are 120–239.

    Args:
        num_frames_per_video: video name -> number of frames.
        val_fraction: fraction of blocks for validation, in ``[0, 1)``.
        block_frames: frames per block.
        seed: the same seed gives the same split.

    Returns:
        ``{"train": {video: frames}, "val": {video: frames}}`` with sorted int64 frame arrays.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    blocks = [(video, b) for video, n in num_frames_per_video.items() for b in range(-(-n // block_frames))]
    rng = np.random.default_rng(seed)
    val_count = int(round(val_fraction * len(blocks)))
    val_blocks = {blocks[i] for i in rng.permutation(len(blocks))[:val_count]}
    split: dict[str, dict[str, np.ndarray]] = {"train": {}, "val": {}}
    for video, n in num_frames_per_video.items():
        block_of_frame = np.arange(n) // block_frames
        in_val = np.array([(video, b) in val_blocks for b in range(-(-n // block_frames))], bool)[block_of_frame]
        split["train"][video] = np.flatnonzero(~in_val)
        split["val"][video] = np.flatnonzero(in_val)
    return split


def item_split(items: Sequence[T], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[T], list[T]]:
    """Split items (clip ids, video names) into train and val; ``round(val_fraction * n)`` go to val.

    Returns:
        ``(train, val)`` lists, each in the input order.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    val_index = set(rng.permutation(len(items))[: int(round(val_fraction * len(items)))].tolist())
    return [x for i, x in enumerate(items) if i not in val_index], [x for i, x in enumerate(items) if i in val_index]


def read_video_split(path: str | Path, videos: Sequence[str]) -> dict[str, list[str]] | None:
    """Read ``splits.json`` (``{"train": [videos], "val": [videos]}``) if it exists.

    Raises:
        DatasetError: malformed JSON, missing keys, or a video the dataset does not hold.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DatasetError(path, f"not valid JSON: {error.msg}", line=error.lineno) from None
    if not isinstance(data, dict) or not {"train", "val"} <= set(data):
        raise DatasetError(path, 'must be an object with "train" and "val" lists of video names')
    known = set(videos)
    for key in ("train", "val"):
        unknown = [v for v in data[key] if v not in known]
        if unknown:
            raise DatasetError(path, f'"{key}" names video {unknown[0]!r}, which the dataset does not hold')
    return {"train": list(data["train"]), "val": list(data["val"])}

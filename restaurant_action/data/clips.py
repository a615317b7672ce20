"""Hybrid-shuffle segmentation: videos cut into clips of continuous action for sequence models.

A clip is a stretch of continuous labelled action (gaps of up to ``max_gap`` unlabelled frames
bridged), padded by ``padding`` frames on each side so the model sees the action start and end
from background, and brought to ``min_frames..max_frames`` frames. Clips are shuffled per
epoch; the frames inside a clip never are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from restaurant_action.data.annotations import ActionAnnotations

CLIP_PADDING = 30
MIN_CLIP_FRAMES = 100
MAX_CLIP_FRAMES = 1000


@dataclass(frozen=True)
class ActionClip:
    """A clip: frames ``start..end`` (inclusive) of one video.

    Attributes:
        clip_id: index of the clip in its segmentation.
        video: the video's name.
        start: first frame.
        end: last frame (inclusive).
        tracks: track ids with boxes inside the clip.
    """

    clip_id: int
    video: str
    start: int
    end: int
    tracks: tuple[int, ...]

    @property
    def num_frames(self) -> int:
        """Frames in the clip."""
        return self.end - self.start + 1


def segment_clips(
    annotations: ActionAnnotations,
    max_gap: int = 15,
    padding: int = CLIP_PADDING,
    min_frames: int = MIN_CLIP_FRAMES,
    max_frames: int = MAX_CLIP_FRAMES,
) -> list[ActionClip]:
    """Cut every video into action clips.

    Labelled frames of all tracks form runs (gaps ≤ ``max_gap`` bridged); each run is padded by
    ``padding`` frames per side; a clip shorter than ``min_frames`` grows evenly on both sides;
    one longer than ``max_frames`` is cut into equal pieces of at most ``max_frames``. Clips stay
    inside the video and may overlap.

    Example: labelled frames 200–259 of a 900-frame video give the padded run 170–289
    (120 frames); with ``min_frames=150`` it grows to 155–304.

    Returns:
        Clips ordered by video and start, with ``clip_id`` their position in the list.
    """
    spans: list[tuple[str, int, int]] = []
    for video in annotations.video_names:
        frames = annotations.labelled_frames(video)
        if frames.size == 0:
            continue
        num_frames = annotations.videos[video].num_frames
        breaks = np.flatnonzero(np.diff(frames) > max_gap + 1)
        for run_start, run_end in zip(np.r_[frames[0], frames[breaks + 1]], np.r_[frames[breaks], frames[-1]]):
            start, end = max(0, int(run_start) - padding), min(num_frames - 1, int(run_end) + padding)
            start, end = _grow(start, end, min_frames, num_frames)
            pieces = -(-(end - start + 1) // max_frames)
            bounds = np.linspace(start, end + 1, pieces + 1).round().astype(int)
            spans += [(video, int(a), int(b) - 1) for a, b in zip(bounds[:-1], bounds[1:])]
    clips = []
    for clip_id, (video, start, end) in enumerate(spans):
        vid = annotations.video_names.index(video)
        inside = (annotations.video_ids == vid) & (annotations.frames >= start) & (annotations.frames <= end)
        clips.append(ActionClip(clip_id, video, start, end, tuple(int(t) for t in np.unique(annotations.tracks[inside]))))
    return clips


def _grow(start: int, end: int, min_frames: int, num_frames: int) -> tuple[int, int]:
    """Widen ``start..end`` evenly to ``min_frames`` (or the whole video), staying inside it."""
    missing = min_frames - (end - start + 1)
    if missing <= 0:
        return start, end
    start -= missing // 2
    end += missing - missing // 2
    if start < 0:
        end, start = end - start, 0
    if end > num_frames - 1:
        start, end = max(0, start - (end - num_frames + 1)), num_frames - 1
    return start, end


def split_clips(clips: list[ActionClip], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[ActionClip], list[ActionClip]]:
    """Split clips into train and val, about ``val_fraction`` of the clips to val.

    Overlapping clips of one video share frames, so they go to the same side: the split draws
    whole groups of overlapping clips, adding groups to val until it holds
    ``round(val_fraction * len(clips))`` clips or more.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    groups: list[list[ActionClip]] = []
    for clip in sorted(clips, key=lambda c: (c.video, c.start)):
        if groups and groups[-1][-1].video == clip.video and clip.start <= max(c.end for c in groups[-1]):
            groups[-1].append(clip)
        else:
            groups.append([clip])
    target = int(round(val_fraction * len(clips)))
    val_ids: set[int] = set()
    for g in np.random.default_rng(seed).permutation(len(groups)):
        if len(val_ids) >= target:
            break
        val_ids.update(c.clip_id for c in groups[g])
    return [c for c in clips if c.clip_id not in val_ids], [c for c in clips if c.clip_id in val_ids]

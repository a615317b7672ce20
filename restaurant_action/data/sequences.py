"""Stateful subsequence batching of ordered clips, with every clip pinned to one DDP rank.

A recurrent model carries its state from one step to the next, so each of the ``B`` lanes of a
batch plays whole clips back to back, ``T`` frames per step. Every epoch:

1. **Assignment** (``assign_clips``): the clips go to ``world_size × lanes`` bins by a
   randomised longest-first greedy (balanced by frame count), drawn from ``(seed, epoch)``,
   redrawn until no bin exceeds the fixed ``capacity`` (plain longest-first + 5%), so that
   every epoch has the same number of steps. Bin ``b`` is lane ``b % lanes`` of rank
   ``b // lanes``; the clips of a bin play in a seeded random order.
2. **Schedule** (``lane_schedule``): each lane's clips are cut into steps of ``T`` frames;
   the last step of a clip is padded (``valid`` false), and a lane that runs out early is
   padded with masked steps to ``capacity``, so every rank runs the same number of steps.
3. **Loading**: ``SequenceSampler`` (a ``DistributedSampler``, which Lightning leaves in place
   under DDP) yields ``StepKey(epoch, rank, world_size, step)`` for this rank's steps in
   order; ``SequenceDataset`` turns a key into the step's frames. The DataLoader runs with
   ``batch_size=None``, so one key is one batch, and hands batches back in sampler order
   whatever the number of workers. ``SequenceDataLoader`` saves and restores the position
   inside an epoch through Lightning's checkpoints.

Example of a schedule with ``T = 4``, 2 lanes on 1 rank and clips A (10 frames), B (4 frames),
C (6 frames): lane 0 plays A: steps A0 A1 A2 (A2 holds 2 valid frames); lane 1 plays C then B:
C0 C1 B0 pad. ``reset`` is true at A0, C0, B0 and on the padding step.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from restaurant_action.data.annotations import ActionAnnotations
from restaurant_action.data.clips import ActionClip
from restaurant_action.data.datasets import _VideoFrames
from restaurant_action.data.transforms import PAD_VALUE, ClipTransform

CAPACITY_SLACK = 0.05
ASSIGNMENT_ATTEMPTS = 16


@dataclass(frozen=True)
class StepKey:
    """What the sampler hands the dataset: one step of one rank's schedule."""

    epoch: int
    rank: int
    world_size: int
    step: int


def clip_steps(num_frames: int, steps: int, frame_step: int = 1) -> int:
    """Steps of ``steps`` frames needed to play a clip of ``num_frames`` taking every ``frame_step``-th frame."""
    return math.ceil(math.ceil(num_frames / frame_step) / steps)


def _longest_first(lengths: np.ndarray, num_bins: int, keys: np.ndarray) -> tuple[list[list[int]], int]:
    """Greedy: items in descending ``keys`` each go to the least loaded bin; returns bins and makespan."""
    loads = np.zeros(num_bins, np.int64)
    bins: list[list[int]] = [[] for _ in range(num_bins)]
    for item in np.argsort(-keys, kind="stable"):
        target = int(np.argmin(loads))
        bins[target].append(int(item))
        loads[target] += lengths[item]
    return bins, int(loads.max()) if num_bins else 0


def epoch_capacity(lengths: Sequence[int], num_bins: int) -> int:
    """Steps per epoch: the plain longest-first makespan plus 5% slack for the per-epoch redraws."""
    lengths = np.asarray(lengths, np.int64)
    _, makespan = _longest_first(lengths, num_bins, lengths.astype(np.float64))
    return max(1, math.ceil(makespan * (1 + CAPACITY_SLACK)))


def assign_clips(lengths: Sequence[int], num_bins: int, capacity: int, seed: int, epoch: int, shuffle: bool = True) -> list[list[int]]:
    """Assign clips (given by their lengths in steps) to bins, in play order.

    With ``shuffle``, the greedy sees lengths scaled by a random factor in ``[0.7, 1.3]`` (drawn
    from ``(seed, epoch, attempt)``) so that bins hold other clips every epoch, and the bins and
    the order inside each are permuted; an attempt whose makespan exceeds ``capacity`` is redrawn
    and after ``ASSIGNMENT_ATTEMPTS`` the plain greedy (which fits by construction) is used.
    Without ``shuffle`` the plain greedy is used and each bin plays its clips by clip index.

    Returns:
        ``num_bins`` lists of clip indices.
    """
    lengths = np.asarray(lengths, np.int64)
    plain = lengths.astype(np.float64)
    if not shuffle:
        bins, _ = _longest_first(lengths, num_bins, plain)
        return [sorted(b) for b in bins]
    for attempt in range(ASSIGNMENT_ATTEMPTS + 1):
        rng = np.random.default_rng([seed, epoch, attempt])
        keys = plain * rng.uniform(0.7, 1.3, len(lengths)) if attempt < ASSIGNMENT_ATTEMPTS else plain
        bins, makespan = _longest_first(lengths, num_bins, keys)
        if makespan <= capacity:
            break
    order = rng.permutation(num_bins)
    bins = [bins[i] for i in order]
    for b in bins:
        rng.shuffle(b)
    return bins


def lane_schedule(clips_in_play_order: Sequence[int], lengths: Sequence[int], capacity: int) -> np.ndarray:
    """Steps of one lane: ``(capacity, 2)`` rows ``[clip index, step within clip]``, ``-1`` for padding."""
    rows = [(c, k) for c in clips_in_play_order for k in range(lengths[c])]
    if len(rows) > capacity:
        raise ValueError(f"lane needs {len(rows)} steps but the epoch holds {capacity}")
    schedule = np.full((capacity, 2), -1, np.int64)
    if rows:
        schedule[: len(rows)] = rows
    return schedule


def current_rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class SequenceDataset(Dataset):
    """Turns a ``StepKey`` into one step of ``lanes`` clip subsequences.

    A step is a dict:
      - ``frames`` uint8 ``(B, T, 3, H, W)``;
      - ``targets`` float32 ``(M, 7)`` rows ``[lane, t, class, x1, y1, x2, y2]`` (pixels);
      - ``reset`` bool ``(B,)``: the lane starts a new clip (or is padding): zero its state;
      - ``valid`` bool ``(B, T)``: real frames (false on padding);
      - ``clip_ids`` int64 ``(B,)`` (``-1`` on padding), ``frame_indices`` int64 ``(B, T)``
        (video frames, ``-1`` on padding), ``videos`` (names, ``""`` on padding), ``step``.

    One random augmentation is drawn per clip and epoch (seeded by ``(seed, epoch, clip)``), so
    every subsequence of a clip, whichever worker loads it, gets the same crop and colours.

    Args:
        annotations: the dataset.
        clips: the clips to play.
        lanes: ``B``, sequences per rank.
        steps: ``T``, frames per step.
        frame_step: take every ``frame_step``-th frame (sparse frames).
        image_size: output side in pixels.
        transform: letterbox/augmentation (one draw per clip).
        shuffle: redraw the assignment and play order every epoch.
        seed: seed of assignment and augmentation.
        cache_dir, decode_threads, video_backend: as for ``FrameDataset``.
    """

    def __init__(
        self,
        annotations: ActionAnnotations,
        clips: Sequence[ActionClip],
        lanes: int,
        steps: int,
        frame_step: int = 1,
        image_size: int = 320,
        transform: ClipTransform | None = None,
        shuffle: bool = True,
        seed: int = 0,
        cache_dir: str | None = None,
        decode_threads: int = 1,
        video_backend: str = "auto",
    ) -> None:
        if lanes < 1 or steps < 1 or frame_step < 1:
            raise ValueError(f"lanes, steps and frame_step must be ≥ 1, got {lanes}, {steps}, {frame_step}")
        self.annotations = annotations
        self.clips = list(clips)
        self.lanes, self.steps, self.frame_step = lanes, steps, frame_step
        self.image_size = (image_size, image_size)
        self.transform = transform or ClipTransform(self.image_size)
        self.shuffle, self.seed = shuffle, seed
        self.lengths = np.array([clip_steps(c.num_frames, steps, frame_step) for c in self.clips], np.int64)
        self.videos = _VideoFrames(annotations, self.image_size, cache_dir, decode_threads, video_backend=video_backend)

    def capacity(self, world_size: int) -> int:
        """Steps per epoch on every rank."""
        return epoch_capacity(self.lengths, world_size * self.lanes)

    @lru_cache(maxsize=4)
    def rank_schedule(self, epoch: int, rank: int, world_size: int) -> np.ndarray:
        """Schedule of one rank: ``(capacity, lanes, 2)`` rows ``[clip index, step within clip]``."""
        capacity = self.capacity(world_size)
        bins = assign_clips(self.lengths, world_size * self.lanes, capacity, self.seed, epoch, self.shuffle)
        lanes = bins[rank * self.lanes : (rank + 1) * self.lanes]
        return np.stack([lane_schedule(lane, self.lengths, capacity) for lane in lanes], 1)

    def __len__(self) -> int:
        return self.capacity(1)

    def clip_frames(self, clip: ActionClip, chunk: int) -> np.ndarray:
        """Video frames of step ``chunk`` of ``clip``: up to ``T`` indices."""
        frames = np.arange(clip.start, clip.end + 1, self.frame_step)
        return frames[chunk * self.steps : (chunk + 1) * self.steps]

    def __getitem__(self, key: StepKey) -> dict[str, Any]:
        schedule = self.rank_schedule(key.epoch, key.rank, key.world_size)[key.step]
        B, T = self.lanes, self.steps
        width, height = self.image_size
        frames = np.full((B, T, height, width, 3), PAD_VALUE, np.uint8)
        valid = np.zeros((B, T), bool)
        reset = np.ones(B, bool)
        clip_ids = np.full(B, -1, np.int64)
        frame_indices = np.full((B, T), -1, np.int64)
        videos = [""] * B
        requests, lanes_with_clips = [], []
        for lane, (clip_index, chunk) in enumerate(schedule):
            if clip_index < 0:
                continue
            clip = self.clips[clip_index]
            indices = self.clip_frames(clip, chunk)
            valid[lane, : len(indices)] = True
            reset[lane] = chunk == 0
            clip_ids[lane] = clip.clip_id
            frame_indices[lane, : len(indices)] = indices
            videos[lane] = clip.video
            requests.append((clip.video, np.r_[indices, np.repeat(indices[-1:], T - len(indices))]))
            lanes_with_clips.append(lane)
        targets = []
        for lane, decoded in zip(lanes_with_clips, self.videos.decode(requests)):
            clip = self.clips[schedule[lane, 0]]
            out = self._transform_lane(clip, key.epoch, decoded, frame_indices[lane], self.videos.scale(clip.video))
            frames[lane] = out.frames
            if len(out.labels):
                targets.append(
                    np.concatenate([np.full((len(out.labels), 1), lane), out.box_frames[:, None], out.labels[:, None], out.boxes], 1)
                )
        return {
            "frames": torch.from_numpy(frames).permute(0, 1, 4, 2, 3),
            "targets": torch.from_numpy(np.concatenate(targets).astype(np.float32)) if targets else torch.zeros(0, 7),
            "reset": torch.from_numpy(reset),
            "valid": torch.from_numpy(valid),
            "clip_ids": torch.from_numpy(clip_ids),
            "frame_indices": torch.from_numpy(frame_indices),
            "videos": videos,
            "step": key.step,
        }

    def _transform_lane(self, clip: ActionClip, epoch: int, decoded: np.ndarray, frame_indices: np.ndarray, scale: float):
        """Letterbox/augment one lane's frames with the clip's own random draw."""
        boxes, labels, box_frames = [], [], []
        for t, frame in enumerate(frame_indices):
            if frame < 0:
                continue
            frame_boxes, frame_labels, _ = self.annotations.targets(clip.video, int(frame))
            boxes.append(frame_boxes * scale)
            labels.append(frame_labels)
            box_frames.append(np.full(len(frame_labels), t))
        digest = hashlib.blake2b(f"{self.seed}/{epoch}/{clip.clip_id}".encode(), digest_size=4).digest()
        self.transform.seed_draw(int.from_bytes(digest, "little"))
        return self.transform(decoded, np.concatenate(boxes), np.concatenate(labels), np.concatenate(box_frames))


def sequence_batch_as_frames(batch: dict[str, Any]) -> dict[str, Any]:
    """The valid frames of a sequence batch as a frame batch, for frame models fed the same stream.

    Args:
        batch: a ``SequenceDataModule`` batch: ``frames`` ``(B, T, 3, S, S)``, ``valid`` ``(B, T)``,
            ``targets`` ``(M, 7)`` ``[lane, t, class, x1, y1, x2, y2]``, ``videos``, ``frame_indices``.

    Returns:
        ``images`` ``(N, 3, S, S)`` (the ``N`` valid frames, lane-major), ``targets`` ``(M, 6)``
        ``[image_index, class, x1, y1, x2, y2]``, ``videos`` (N names) and ``frames`` ``(N,)``
        video frame indices, as ``FrameDataModule`` batches hold them.
    """
    valid = batch["valid"].flatten()
    lanes = valid.nonzero().flatten() // batch["valid"].shape[1]
    return {
        "images": batch["frames"].flatten(0, 1)[valid],
        "targets": valid_frame_targets(batch["targets"], batch["valid"]),
        "videos": [batch["videos"][lane] for lane in lanes.tolist()],
        "frames": batch["frame_indices"].flatten()[valid],
    }


def valid_frame_targets(targets: Tensor, valid: Tensor) -> Tensor:
    """Sequence targets ``(M, 7)`` ``[lane, t, class, x1, y1, x2, y2]`` as targets of the valid
    frames only, ``(M', 6)`` ``[n, class, x1, y1, x2, y2]`` with ``n`` the frame's position among
    the valid frames of ``valid (B, T)`` in lane-major order; rows on padding frames are dropped."""
    flat_valid = valid.flatten()
    position = torch.cumsum(flat_valid.long(), 0) - 1
    flat_index = (targets[:, 0] * valid.shape[1] + targets[:, 1]).long()
    keep = flat_valid[flat_index]
    return torch.cat([position[flat_index[keep]].to(targets.dtype)[:, None], targets[keep, 2:]], 1)


class SequenceSampler(DistributedSampler):
    """Yields this rank's ``StepKey``s in order; a ``DistributedSampler`` so Lightning keeps it under DDP.

    Rank and world size come from the initialised process group (or are 0 and 1). Lightning
    calls ``set_epoch`` every epoch; ``resume_at(epoch, step)`` makes every iteration of that
    epoch start at ``step`` (an iterator made and dropped before training cannot lose it).
    """

    def __init__(self, dataset: SequenceDataset, num_replicas: int | None = None, rank: int | None = None) -> None:
        own_rank, own_world = current_rank_and_world()
        world = num_replicas if num_replicas is not None else own_world
        rank = rank if rank is not None else own_rank
        super().__init__(dataset, num_replicas=world, rank=rank, shuffle=False, seed=dataset.seed, drop_last=False)
        self.sequence_dataset = dataset
        self.resume: tuple[int, int] | None = None

    def resume_at(self, epoch: int, step: int) -> None:
        """Start epoch ``epoch`` at ``step`` (the first ``step`` steps were trained already)."""
        self.set_epoch(epoch)
        self.resume = (epoch, step)

    @property
    def start_step(self) -> int:
        """First step of the current epoch's iteration."""
        return self.resume[1] if self.resume is not None and self.resume[0] == self.epoch else 0

    def __len__(self) -> int:
        return self.sequence_dataset.capacity(self.num_replicas)

    def __iter__(self) -> Iterator[StepKey]:  # type: ignore[override]
        for step in range(self.start_step, len(self)):
            yield StepKey(self.epoch, self.rank, self.num_replicas, step)
        self.resume = None


class SequenceDataLoader(DataLoader):
    """DataLoader of sequence steps whose position inside an epoch is saved in checkpoints.

    Lightning saves ``state_dict()`` of a stateful train loader with every checkpoint and
    restores it on resume; the restored loader continues at the next step of the same epoch.
    The count is of the batches handed to the training loop (Lightning 2.x asks for the batch
    it trains, no further ahead, when it saves in ``on_train_batch_end``).
    """

    def __init__(self, dataset: SequenceDataset, num_workers: int = 0, **kwargs: Any) -> None:
        super().__init__(
            dataset, batch_size=None, sampler=SequenceSampler(dataset), num_workers=num_workers,
            persistent_workers=False, **kwargs,
        )
        self._handed_out = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:  # type: ignore[override]
        self._handed_out = self.sampler.start_step
        for batch in super().__iter__():
            self._handed_out += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "steps_done"}``: the epoch and how many of its steps were handed out."""
        return {"epoch": self.sampler.epoch, "steps_done": self._handed_out}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue at step ``steps_done`` of epoch ``epoch`` (a finished epoch restarts from 0)."""
        if state["steps_done"] < len(self.sampler):
            self.sampler.resume_at(state["epoch"], state["steps_done"])

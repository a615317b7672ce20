"""Stateful subsequence batching: assignment, schedules, DDP pinning (by rank arguments), resumption."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from restaurant_action.data.datamodules import SequenceDataModule
from restaurant_action.data.sequences import (
    SequenceDataLoader,
    SequenceSampler,
    StepKey,
    assign_clips,
    clip_steps,
    epoch_capacity,
    lane_schedule,
    sequence_batch_as_frames,
)


def test_clip_steps_with_sparse_frames() -> None:
    assert clip_steps(100, 8) == 13
    assert clip_steps(100, 8, frame_step=3) == 5  # 34 frames


def test_schedule_example_from_the_docstring() -> None:
    lengths = [clip_steps(n, 4) for n in (10, 4, 6)]
    assert lengths == [3, 1, 2]
    capacity = 3
    assert lane_schedule([0], lengths, capacity).tolist() == [[0, 0], [0, 1], [0, 2]]
    assert lane_schedule([2, 1], lengths, capacity).tolist() == [[2, 0], [2, 1], [1, 0]]
    assert lane_schedule([], lengths, capacity).tolist() == [[-1, -1]] * 3
    with pytest.raises(ValueError, match="needs 4 steps"):
        lane_schedule([0, 1], lengths, capacity)


@pytest.mark.parametrize("seed", range(5))
def test_assignment_covers_every_clip_once_fits_capacity_and_changes_per_epoch(seed: int) -> None:
    lengths = np.random.default_rng(seed).integers(13, 125, 60)
    bins = 2 * 4
    capacity = epoch_capacity(lengths, bins)
    plans = [assign_clips(lengths, bins, capacity, seed, epoch) for epoch in range(3)]
    for plan in plans:
        assert sorted(c for b in plan for c in b) == list(range(60))
        assert max(lengths[b].sum() for b in plan) <= capacity
    assert plans[0] != plans[1]
    assert assign_clips(lengths, bins, capacity, seed, 1) == plans[1]
    assert capacity <= np.ceil(1.05 * (lengths.sum() / bins + lengths.max()))


def test_ranks_get_disjoint_clips_equal_steps_and_ordered_frames(synthetic_root) -> None:
    dm = SequenceDataModule(synthetic_root, image_size=64, lanes=2, steps=4, num_workers=0, min_clip_frames=60)
    dm.setup()
    dataset = dm.datasets["train"]
    seen: dict[int, dict[int, list[int]]] = {}
    steps = []
    for rank in range(2):
        sampler = SequenceSampler(dataset, num_replicas=2, rank=rank)
        sampler.set_epoch(3)
        keys = list(sampler)
        steps.append(len(keys))
        assert [k.step for k in keys] == list(range(len(keys)))
        clip_frames: dict[int, list[int]] = {}
        for key in keys:
            batch = dataset[key]
            assert batch["frames"].shape == (2, 4, 3, 64, 64)
            for lane in range(2):
                clip = int(batch["clip_ids"][lane])
                if clip >= 0:
                    clip_frames.setdefault(clip, []).extend(batch["frame_indices"][lane][batch["valid"][lane]].tolist())
        seen[rank] = clip_frames
    assert steps[0] == steps[1]
    assert not set(seen[0]) & set(seen[1])
    every_clip = {c.clip_id: c for c in dm.clips["train"]}
    assert set(seen[0]) | set(seen[1]) == set(every_clip)
    for frames_by_clip in seen.values():
        for clip_id, frames in frames_by_clip.items():
            clip = every_clip[clip_id]
            assert frames == list(range(clip.start, clip.end + 1))


def test_reset_marks_clip_starts_and_targets_follow_valid_frames(synthetic_root) -> None:
    dm = SequenceDataModule(synthetic_root, image_size=64, lanes=2, steps=8, num_workers=0, min_clip_frames=60, augment=None)
    dm.setup()
    dataset = dm.datasets["train"]
    previous = [None, None]
    for key in SequenceSampler(dataset, num_replicas=1, rank=0):
        batch = dataset[key]
        for lane in range(2):
            clip = int(batch["clip_ids"][lane])
            starts_clip = clip != previous[lane]
            assert bool(batch["reset"][lane]) == (starts_clip or clip < 0)
            previous[lane] = clip
        targets = batch["targets"]
        if len(targets):
            lanes, ts = targets[:, 0].long(), targets[:, 1].long()
            assert batch["valid"][lanes, ts].all()
            for lane, t, label in zip(lanes.tolist(), ts.tolist(), targets[:, 2].long().tolist()):
                frame = int(batch["frame_indices"][lane, t])
                assert label in dm.annotations.targets(batch["videos"][lane], frame)[1].tolist()


def test_one_augmentation_per_clip_whichever_step_or_worker_loads_it(synthetic_root) -> None:
    """The grey border the random shift/zoom leaves (R = G = B after colour jitter) is the same on every step of a clip."""
    dm = SequenceDataModule(synthetic_root, image_size=64, lanes=1, steps=4, num_workers=0, min_clip_frames=60)
    dm.setup()
    dataset = dm.datasets["train"]
    schedule = dataset.rank_schedule(0, 0, 1)[:, 0, 0]
    border_by_clip: dict[int, list[torch.Tensor]] = {}
    for step in range(len(schedule)):
        if schedule[step] >= 0:
            frames = dataset[StepKey(0, 0, 1, step)]["frames"][0]
            border_by_clip.setdefault(int(schedule[step]), []).append((frames[:, 0] == frames[:, 1]) & (frames[:, 1] == frames[:, 2]))
    assert len(border_by_clip) >= 2
    for borders in border_by_clip.values():
        first = borders[0][0]
        assert first.float().mean() > 0.01  # the draw left a visible border
        for border in borders:
            assert (border == first).float().mean() > 0.97
    firsts = [b[0][0] for b in border_by_clip.values()]
    assert any((a != b).float().mean() > 0.05 for a, b in zip(firsts, firsts[1:]))


def test_workers_keep_step_order(synthetic_root) -> None:
    dm = SequenceDataModule(synthetic_root, image_size=64, lanes=2, steps=4, num_workers=2, min_clip_frames=60)
    loader = dm.train_dataloader()
    assert [batch["step"] for batch in loader] == list(range(len(loader)))


def test_loader_state_resumes_at_the_next_step(synthetic_root) -> None:
    dm = SequenceDataModule(synthetic_root, image_size=64, lanes=2, steps=4, num_workers=0, min_clip_frames=60)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(2)
    iterator = iter(loader)
    trained = [next(iterator)["step"] for _ in range(5)]
    assert trained == list(range(5))
    state = loader.state_dict()
    assert state == {"epoch": 2, "steps_done": 5}
    fresh = SequenceDataModule(synthetic_root, image_size=64, lanes=2, steps=4, num_workers=0, min_clip_frames=60).train_dataloader()
    fresh.load_state_dict(state)
    rest = [(batch["step"], batch["clip_ids"].tolist()) for batch in fresh]
    assert [s for s, _ in rest] == list(range(5, len(loader)))
    expected = loader.dataset.rank_schedule(2, 0, 1)[5:, :, 0]
    assert [ids for _, ids in rest] == [[loader.dataset.clips[c].clip_id if c >= 0 else -1 for c in row] for row in expected]
    assert [b["step"] for b in fresh] == list(range(len(loader)))


def test_sampler_is_a_distributed_sampler_so_lightning_keeps_it(synthetic_root) -> None:
    """Lightning replaces any sampler under DDP unless it is a ``DistributedSampler`` (see notes/lightning-ddp.md)."""
    dm = SequenceDataModule(synthetic_root, image_size=64, lanes=2, steps=4, num_workers=0, min_clip_frames=60)
    loader = dm.train_dataloader()
    assert isinstance(loader, SequenceDataLoader)
    assert isinstance(loader.sampler, torch.utils.data.DistributedSampler)
    assert len(loader) == len(list(loader.sampler))


def test_a_sequence_batch_as_frames_keeps_the_valid_frames_and_their_targets() -> None:
    frames = torch.arange(2 * 3, dtype=torch.uint8).reshape(2, 3, 1, 1, 1).expand(2, 3, 3, 4, 4).clone()
    valid = torch.tensor([[True, True, False], [True, False, False]])
    targets = torch.tensor([  # [lane, t, class, x1, y1, x2, y2]; the last row is on a padding frame
        [0, 1, 5, 1, 1, 2, 2],
        [1, 0, 2, 0, 0, 3, 3],
        [0, 2, 7, 0, 0, 1, 1],
    ], dtype=torch.float32)
    batch = {"frames": frames, "valid": valid, "targets": targets, "videos": ["a", "b"],
             "frame_indices": torch.tensor([[10, 11, -1], [40, -1, -1]])}

    out = sequence_batch_as_frames(batch)

    assert out["images"][:, 0, 0, 0].tolist() == [0, 1, 3]  # lane 0 t 0, lane 0 t 1, lane 1 t 0
    assert out["targets"].tolist() == [[1, 5, 1, 1, 2, 2], [2, 2, 0, 0, 3, 3]]
    assert out["videos"] == ["a", "a", "b"]
    assert out["frames"].tolist() == [10, 11, 40]

"""Real 2-process (gloo) sync of every metric: ranks' states concatenate to the single-process result,
also when rank 1 re-submits frames of rank 0 (DistributedSampler padding)."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from restaurant_action.metrics import ClassificationAccuracy, FrameMAP, LocalizationRecall, VideoMAP

WORLD_SIZE = 2
FRAMES = list(range(16))


def _assert_same(actual: dict, expected: dict, what: str) -> None:
    assert actual.keys() == expected.keys(), what
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], equal_nan=True, msg=lambda m: f"{what} {key}: {m}")


def _with_tracks(targets: list[dict]) -> list[dict]:
    return [{**t, "tracks": torch.arange(len(t["labels"]))} for t in targets]


def _update_padded(metric, rank: int, shares: list, targets_of=lambda targets: targets) -> None:
    """This rank's share as video ``rank``, frames 0-15; as ``DistributedSampler`` padding does,
    rank 1 also gets frames 2-5 of rank 0's video, with slightly different outputs (another batch
    composition). Rank 0's submission must be kept."""
    preds, targets = shares[rank]
    metric.update(preds, targets_of(targets), [rank] * 16, FRAMES)
    if rank == 1:
        repeat_preds = [{**p, "boxes": p["boxes"] + 0.25, "scores": (p["scores"] + 1e-4).clamp(max=1)} for p in shares[0][0][2:6]]
        metric.update(repeat_preds, targets_of(shares[0][1][2:6]), video_ids=[0] * 4, frame_indices=FRAMES[2:6])


def _worker(rank: int, init_file: str, random_case) -> None:
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        shares = [random_case(seed, num_frames=16, tied_scores=True, crowd=seed == 1) for seed in range(WORLD_SIZE)]
        preds, targets = shares[rank]

        for interpolation in ("voc", "coco101"):
            distributed, single = FrameMAP(5, interpolation=interpolation), FrameMAP(5, interpolation=interpolation, sync_on_compute=False)
            distributed.update(preds, targets)
            for share_preds, share_targets in shares:  # ranks are concatenated in rank order
                single.update(share_preds, share_targets)
            _assert_same(distributed.compute(), single.compute(), f"FrameMAP {interpolation}")
            padded = FrameMAP(5, interpolation=interpolation)
            _update_padded(padded, rank, shares)
            _assert_same(padded.compute(), single.compute(), f"FrameMAP {interpolation} with repeated frames")

        # a rank that saw no frame at all (empty list states of every dtype and shape)
        lonely, alone = FrameMAP(5), FrameMAP(5, sync_on_compute=False)
        if rank == 0:
            lonely.update(preds, targets)
        alone.update(*shares[0])
        _assert_same(lonely.compute(), alone.compute(), "FrameMAP with an idle rank")

        for metric_class in (LocalizationRecall, ClassificationAccuracy):
            distributed, padded, single = metric_class(5), metric_class(5), metric_class(5, sync_on_compute=False)
            distributed.update(preds, targets)
            _update_padded(padded, rank, shares)
            for share in shares:
                single.update(*share)
            detail = "per_class" if metric_class is LocalizationRecall else "confusion_matrix"
            for metric, what in ((distributed, metric_class.__name__), (padded, f"{metric_class.__name__} with repeated frames")):
                torch.testing.assert_close(metric.compute(), single.compute(), equal_nan=True, msg=what)
                torch.testing.assert_close(getattr(metric, detail)(), getattr(single, detail)(), equal_nan=True, msg=f"{what}: {detail}")

        distributed, single = VideoMAP(5), VideoMAP(5, sync_on_compute=False)
        distributed.update(preds, _with_tracks(targets), [rank] * 16, FRAMES)
        for video, (share_preds, share_targets) in enumerate(shares):
            single.update(share_preds, _with_tracks(share_targets), [video] * 16, FRAMES)
        _assert_same(distributed.compute(), single.compute(), "VideoMAP")
        assert len(distributed.tubes()) == len(single.tubes())

        padded = VideoMAP(5)
        _update_padded(padded, rank, shares, _with_tracks)
        _assert_same(padded.compute(), single.compute(), "VideoMAP with a repeated frame")
        assert [t.frames.tolist() for t in padded.ground_truth_tubes()] == [t.frames.tolist() for t in single.ground_truth_tubes()]
        assert [t.scores.tolist() for t in padded.tubes()] == [t.scores.tolist() for t in single.tubes()]
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
@pytest.mark.timeout(180)
def test_two_process_gloo_sync_equals_single_process(tmp_path, random_case):
    init_file = str(tmp_path / "rendezvous")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    # fork: the children inherit the imported library (spawning re-imports Lightning, ~10 s each)
    mp.start_processes(_worker, args=(init_file, random_case), nprocs=WORLD_SIZE, join=True, start_method="fork")

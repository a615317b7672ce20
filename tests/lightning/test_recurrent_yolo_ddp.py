"""A real 2-process DDP run (CPU, gloo) of the sequence pipeline with ConvLSTM-YOLO."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from restaurant_action.data.datamodules import SequenceDataModule

SCRIPT = Path(__file__).with_name("ddp_sequence_script.py")


@pytest.mark.ddp
def test_two_rank_ddp_pins_clips_keeps_order_equal_steps_and_learns(synthetic_root: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(synthetic_root), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]

    # Ranks ran the same number of steps (DDP would hang otherwise), every epoch.
    for epoch in range(3):
        counts = [sum(1 for s in r["steps"] if s["epoch"] == epoch) for r in ranks]
        assert counts[0] == counts[1] > 0

    clips = {c.clip_id: c for c in SequenceDataModule(synthetic_root, image_size=64, lanes=2, steps=4, min_clip_frames=60).clips["train"]}
    for epoch in range(3):
        owner: dict[int, int] = {}
        frames_seen: dict[int, list[int]] = {}
        for rank, record in enumerate(ranks):
            for step in (s for s in record["steps"] if s["epoch"] == epoch):
                for lane, clip_id in enumerate(step["clip_ids"]):
                    if clip_id < 0:
                        continue
                    # No clip is split across ranks.
                    assert owner.setdefault(clip_id, rank) == rank
                    valid = np.array(step["valid"][lane])
                    frames_seen.setdefault(clip_id, []).extend(np.array(step["frame_indices"][lane])[valid].tolist())
        # Every clip played once, whole, in frame order.
        assert set(frames_seen) == set(clips)
        for clip_id, frames in frames_seen.items():
            assert frames == list(range(clips[clip_id].start, clips[clip_id].end + 1))
        if epoch:
            assert owner != previous_owner  # the assignment is redrawn every epoch
        previous_owner = owner

    # Training works: every epoch plays the same clips, so the mean loss over both ranks compares.
    def epoch_loss(epoch: int) -> float:
        return float(np.mean([s["loss"] for r in ranks for s in r["steps"] if s["epoch"] == epoch and any(map(any, s["valid"]))]))

    assert epoch_loss(2) < 0.9 * epoch_loss(0)

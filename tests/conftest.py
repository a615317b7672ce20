"""Fixtures shared by every test folder: a tiny synthetic dataset generated once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from restaurant_action.data.synthetic import make_synthetic_dataset

# Two pytest-xdist workers share two cores: one thread each avoids oversubscription.
torch.set_num_threads(1)

SYNTHETIC_SIZE = (96, 64)
SYNTHETIC_FRAMES = 360


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic dataset: 2 videos × 360 frames at 96×64 (3 blocks of 120 frames each).

    Shared by the whole session: read it, never write into it (copy it with
    ``shutil.copytree`` first).
    """
    root = tmp_path_factory.mktemp("synthetic") / "dataset"
    make_synthetic_dataset(root, num_videos=2, frames_per_video=SYNTHETIC_FRAMES, size=SYNTHETIC_SIZE, seed=0, workers=1)
    return root

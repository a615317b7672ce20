"""Fixtures of the Lightning-module tests."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch
from torch import Tensor

from restaurant_action.lightning._detection import targets_per_image

Detector = Callable[[dict[str, Any]], list[dict[str, Tensor]]]


@pytest.fixture
def detector_wrong_on_repeat() -> Detector:
    """A ``detect`` stand-in for a frame sent twice, as DDP padding does: the first call returns
    every target box exactly (score 1), the second one shifted by 25 px with the next class."""
    shifts = iter([0.0, 25.0])

    def detect(batch: dict[str, Any]) -> list[dict[str, Tensor]]:
        shift = next(shifts)
        targets = targets_per_image(batch["targets"], len(batch["frames"]))
        return [{"boxes": t["boxes"] + shift, "scores": torch.ones(len(t["labels"])), "labels": (t["labels"] + int(shift > 0)) % 3}
                for t in targets]

    return detect

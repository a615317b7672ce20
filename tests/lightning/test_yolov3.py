"""YOLOv3Module evaluation: frames repeated by DDP padding count once."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch
from torch import Tensor

from restaurant_action.lightning.yolov3 import YOLOv3Module


def test_a_frame_repeated_by_ddp_padding_counts_once_in_frame_map(
    detector_wrong_on_repeat: Callable[[dict[str, Any]], list[dict[str, Tensor]]],
) -> None:
    model = YOLOv3Module(3, width=0.125, depth=0.34)
    rows = torch.tensor([[0, 1, 2, 2, 20, 20], [1, 2, 30, 30, 60, 60]], dtype=torch.float32)
    images = torch.zeros(2, 3, 64, 64, dtype=torch.uint8)
    batch = {"images": images, "targets": rows, "videos": ["a", "b"], "frames": torch.tensor([5, 9])}
    # DistributedSampler padding sends frame 5 of "a" again; its detections there are wrong
    repeat = {"images": images[:1], "targets": rows[:1], "videos": ["a"], "frames": torch.tensor([5])}
    model.detect = detector_wrong_on_repeat  # type: ignore[method-assign]
    model.validation_step(batch, 0)
    model.validation_step(repeat, 1)
    result = model.val_map.compute()
    assert result["map"].item() == pytest.approx(1.0)
    assert result["num_detections_per_class"].sum().item() == 2

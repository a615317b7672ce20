"""NonFiniteLossGuard: bad steps skipped and named, good steps untouched, a clear stop."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import restaurant_action as ra
from restaurant_action.lightning.nonfinite import (
    NonFiniteLossError,
    NonFiniteLossGuard,
    describe_batch,
)

QUIET = {"accelerator": "cpu", "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
         "enable_model_summary": False, "num_sanity_val_steps": 0, "limit_val_batches": 0}


class PoisonedYOLOv3(ra.YOLOv3Module):
    """A YOLOv3 whose loss is NaN (or infinite) on chosen steps: the fault injected."""

    def __init__(self, *args, poisoned: set[int], value: float = float("nan"), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.poisoned, self.value, self.trained_on = poisoned, value, []

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.trained_on.append(batch_idx)
        return loss * self.value if batch_idx in self.poisoned else loss


def _datamodule(root: Path) -> ra.FrameDataModule:
    return ra.FrameDataModule(root, image_size=64, batch_size=4, num_workers=0, augment=None)


def _model(datamodule: ra.FrameDataModule, poisoned: set[int], value: float = float("nan")) -> PoisonedYOLOv3:
    return PoisonedYOLOv3(datamodule.num_classes, datamodule.anchors(9), width=0.125, depth=0.34, lr=1e-3,
                          poisoned=poisoned, value=value)


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_bad_steps_are_skipped_with_a_warning_naming_the_frames(synthetic_root, caplog, value) -> None:
    torch.manual_seed(0)
    datamodule = _datamodule(synthetic_root)
    model = _model(datamodule, poisoned={1, 2}, value=value)
    guard = NonFiniteLossGuard(max_consecutive=3)
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    class Snapshots(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            snapshots[batch_idx] = _weights(module)

    with caplog.at_level(logging.WARNING, logger="restaurant_action.lightning.nonfinite"):
        pl.Trainer(max_epochs=1, limit_train_batches=5, callbacks=[guard, Snapshots()], **QUIET).fit(model, datamodule)

    assert model.trained_on == [0, 1, 2, 3, 4] and guard.skipped == 2 and guard.consecutive == 0
    for step in (1, 2):  # a skipped step leaves every weight as it was
        after = snapshots[step + 1]
        assert all(torch.equal(after[name], weight) for name, weight in snapshots[step].items()), step
    assert not all(torch.equal(snapshots[1][n], w) for n, w in snapshots[0].items())  # a good step does update
    assert all(torch.isfinite(p).all() for p in model.parameters())
    warnings = [r.getMessage() for r in caplog.records if "step skipped" in r.getMessage()]
    assert len(warnings) == 2 and all("non-finite loss" in w for w in warnings)
    assert "cam" in warnings[0] and ":" in warnings[0].split("batch: ")[1]  # video:frame pairs


def test_too_many_bad_steps_in_a_row_stop_the_run(synthetic_root) -> None:
    datamodule = _datamodule(synthetic_root)
    model = _model(datamodule, poisoned={0, 2, 3, 4, 5, 6})
    guard = NonFiniteLossGuard(max_consecutive=3)
    with pytest.raises(NonFiniteLossError, match="3 consecutive steps with a non-finite loss"):
        pl.Trainer(max_epochs=1, limit_train_batches=10, callbacks=[guard], **QUIET).fit(model, datamodule)
    assert model.trained_on == [0, 1, 2, 3, 4] and guard.skipped == 4  # step 1 was good: the count restarted


def test_batch_descriptions_of_the_three_batch_kinds() -> None:
    frame = {"videos": ["a", "b"], "frames": torch.tensor([5, 9]), "images": torch.zeros(2, 3, 8, 8, dtype=torch.uint8)}
    sequence = {"videos": ["a", "b"], "frames": torch.zeros(2, 3, 3, 8, 8, dtype=torch.uint8),
                "frame_indices": torch.tensor([[1, 2, 3], [7, 8, 9]])}
    assert describe_batch(frame) == "a:5, b:9"
    assert describe_batch(sequence) == "a:[1, 2, 3], b:[7, 8, 9]"
    assert describe_batch({"videos": [f"v{i}" for i in range(10)], "frames": list(range(10))}).endswith("v7:7 and 2 more")
    assert describe_batch(torch.zeros(2)) == "(no video names in the batch)"
    with pytest.raises(ValueError, match="max_consecutive"):
        NonFiniteLossGuard(0)

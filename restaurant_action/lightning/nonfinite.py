"""A Lightning callback that skips optimizer steps with a non-finite loss or gradient."""

from __future__ import annotations

import logging
from typing import Any, Mapping

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

logger = logging.getLogger(__name__)

# Batch entries shown in a warning, at most (a batch of 64 clips would be a long line).
_SHOWN = 8


class NonFiniteLossError(RuntimeError):
    """Training met a non-finite loss or gradient on too many consecutive steps."""


class NonFiniteLossGuard(Callback):
    """Skip every optimizer step whose loss or gradients hold NaN or infinity; stop after
    ``max_consecutive`` such steps in a row.

    A skipped step applies no update (every gradient is dropped before the optimizer runs) and
    logs a warning naming the step and the batch's videos and frames. Under DDP the decision is
    taken by all ranks together (a bad value on any rank skips the step everywhere), so the
    replicas stay equal. Works with every model of the library, and with any LightningModule
    that uses automatic optimization.

    Args:
        max_consecutive: bad steps in a row that stop the run with ``NonFiniteLossError``.
    """

    def __init__(self, max_consecutive: int = 10) -> None:
        if max_consecutive < 1:
            raise ValueError(f"max_consecutive must be >= 1, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.skipped = 0
        self.consecutive = 0
        self._loss_finite = True
        self._batch_text = ""

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self._loss_finite = True
        self._batch_text = describe_batch(batch)

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        self._loss_finite = bool(torch.isfinite(loss.detach()).all())

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer) -> None:
        gradients = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        finite = self._loss_finite and all(bool(torch.isfinite(g).all()) for g in gradients)
        bad = trainer.strategy.reduce_boolean_decision(not finite, all=False)
        if not bad:
            self.consecutive = 0
            return
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                parameter.grad = None
        self.skipped += 1
        self.consecutive += 1
        what = "loss" if not self._loss_finite else ("gradient" if not finite else "loss or gradient on another rank")
        logger.warning("step %d: non-finite %s, step skipped (%d in a row); batch: %s",
                       trainer.global_step, what, self.consecutive, self._batch_text)
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteLossError(
                f"{self.consecutive} consecutive steps with a non-finite loss or gradient (the last at step "
                f"{trainer.global_step}, batch: {self._batch_text}); lower the learning rate, check the data of "
                "these frames, or raise max_consecutive"
            )

    def state_dict(self) -> dict[str, int]:
        return {"skipped": self.skipped, "consecutive": self.consecutive}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = int(state_dict.get("skipped", 0))
        self.consecutive = int(state_dict.get("consecutive", 0))


def describe_batch(batch: Any) -> str:
    """``video:frame`` pairs of a library batch (frame, clip or sequence), the first few of them."""
    if not isinstance(batch, Mapping) or "videos" not in batch:
        return "(no video names in the batch)"
    videos = list(batch["videos"])
    frames = batch.get("frame_indices", batch.get("frames"))
    if isinstance(frames, torch.Tensor) and frames.dtype != torch.uint8:
        frames = frames.tolist()
    if not isinstance(frames, (list, tuple)) or len(frames) != len(videos):
        pairs = [str(video) for video in videos]
    else:
        pairs = [f"{video}:{frame}" for video, frame in zip(videos, frames)]
    more = f" and {len(pairs) - _SHOWN} more" if len(pairs) > _SHOWN else ""
    return ", ".join(pairs[:_SHOWN]) + more

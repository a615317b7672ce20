"""Run by tests/lightning/test_recurrent_yolo_ddp.py: a real 2-process CPU DDP fit of ConvLSTM-YOLO.

Usage: ``python ddp_sequence_script.py DATASET OUT_DIR``. Every rank writes ``rank<r>.json``
with what it saw at every training step (clip ids, frame indices, valid mask, loss).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

from restaurant_action.data.datamodules import SequenceDataModule
from restaurant_action.lightning.recurrent_yolo import ConvLSTMYOLOModule


class Recorder(pl.Callback):
    """Keeps, per training step, the batch's clip layout and the loss."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.steps: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append({
            "epoch": trainer.current_epoch,
            "step": int(batch["step"]),
            "clip_ids": batch["clip_ids"].tolist(),
            "frame_indices": batch["frame_indices"].tolist(),
            "valid": batch["valid"].tolist(),
            "reset": batch["reset"].tolist(),
            "loss": float(outputs["loss"]),
        })

    def on_train_end(self, trainer, pl_module) -> None:
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(
            json.dumps({"world_size": trainer.world_size, "steps": self.steps})
        )


def main() -> None:
    root, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    pl.seed_everything(0, workers=True)
    dm = SequenceDataModule(root, image_size=64, lanes=2, steps=4, num_workers=1, min_clip_frames=60, augment=None)
    model = ConvLSTMYOLOModule(
        dm.num_classes, dm.anchors(9), width=0.125, depth=0.34, optimizer="adamw", lr=3e-3, warmup_fraction=0.02,
    )
    trainer = pl.Trainer(
        devices=2, strategy="ddp", accelerator="cpu", max_epochs=3, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[Recorder(out_dir)],
    )
    trainer.fit(model, dm)


if __name__ == "__main__":
    main()

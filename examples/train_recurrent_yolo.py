"""Train ConvLSTM-YOLO in two stages: YOLOv3 on frames, then its ConvLSTMs on ordered clips.

Stage 1 is ``examples/train_yolov3.py``'s recipe (skipped with ``--yolov3-checkpoint``).
Stage 2 ports its best checkpoint into ``ConvLSTMYOLOModule`` — the ConvLSTMs start as the
identity, so training starts from the YOLOv3's mAP — and trains on ``SequenceDataModule``
batches (``--lanes`` clips per GPU played in order, ``--steps`` frames per step, state carried
and detached) under the plain ``Trainer(devices=N, strategy="ddp")``: every clip stays on one
rank. For ``--freeze-ported-epochs`` epochs only the ConvLSTMs learn.

Stage 2 optimiser: AdamW, lr 3e-4 (scale-free, so it does not depend on how many of the
``lanes × steps`` frames of a step are really independent; lower than from scratch because it
fine-tunes a trained detector), EMA decay 0.999 (stage 2 runs far fewer optimizer steps than
stage 1). The anchors are the stage-1 model's, read from its checkpoint: the sequence split
yields other k-means anchors, and the ported heads only fit the ones they were trained with.

Usage::

    python examples/train_recurrent_yolo.py --root data/restaurant --pretrained darknet53.conv.74
    python examples/train_recurrent_yolo.py --root data/restaurant --yolov3-checkpoint runs/recurrent_yolo/yolov3/checkpoints/best.ckpt
    python examples/train_recurrent_yolo.py --root data/synth --accelerator cpu --devices 1 --precision 32-true \
        --width 0.125 --depth 0.34 --image-size 160 --yolov3-batch-size 4 --lanes 2 --steps 4 --fast-dev-run
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities import rank_zero_only

import restaurant_action as ra
from train_yolov3 import add_trainer_arguments, ddp_strategy, fit_yolov3

logger = logging.getLogger("train_recurrent_yolo")


def fit_recurrent_yolo(
    root: Path,
    out: Path,
    yolov3_checkpoint: Path,
    *,
    image_size: int = 416,
    width: float = 1.0,
    depth: float = 1.0,
    lanes: int = 4,
    steps: int = 8,
    devices: int = 4,
    accelerator: str = "auto",
    precision: str = "bf16-mixed",
    max_epochs: int = 30,
    freeze_ported_epochs: int = 1,
    lr: float = 3e-4,
    ema_decay: float = 0.999,
    num_workers: int = 8,
    cache_dir: Path | None = None,
    seed: int = 0,
    fast_dev_run: bool = False,
) -> Path | None:
    """Stage 2: train a ``ConvLSTMYOLOModule`` ported from ``yolov3_checkpoint`` on ``SequenceDataModule(root)``.

    Returns the best checkpoint by ``val/map`` (``out/checkpoints/best.ckpt``), or ``None`` after
    a ``fast_dev_run``, which saves none.
    """
    pl.seed_everything(seed, workers=True)
    dm = ra.SequenceDataModule(root, image_size=image_size, lanes=lanes, steps=steps, num_workers=num_workers,
                               seed=seed, cache_dir=cache_dir)
    model = ra.ConvLSTMYOLOModule(
        dm.num_classes, width=width, depth=depth,
        yolov3_checkpoint=str(yolov3_checkpoint), freeze_ported_epochs=freeze_ported_epochs,
        class_names=dm.classes, class_ranking=dm.top_classes(24), optimizer="adamw", lr=lr, ema_decay=ema_decay,
    )
    best = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor="val/map", mode="max", save_last=True)
    trainer = pl.Trainer(
        accelerator=accelerator, devices=devices, strategy=ddp_strategy(devices), precision=precision,
        max_epochs=max_epochs, callbacks=[best, LearningRateMonitor(logging_interval="step")],
        logger=CSVLogger(out, name="logs"), fast_dev_run=fast_dev_run,
    )
    trainer.fit(model, dm)
    if not best.best_model_path:
        return None
    logger.info("best val/map %.4f: %s", float(best.best_model_score), best.best_model_path)
    return Path(best.best_model_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_trainer_arguments(parser)
    parser.set_defaults(out=Path("runs/recurrent_yolo"))
    stage1 = parser.add_argument_group("stage 1 (YOLOv3, see examples/train_yolov3.py)")
    stage1.add_argument("--yolov3-checkpoint", type=Path, default=None, help="a trained YOLOv3Module checkpoint: skip stage 1")
    stage1.add_argument("--yolov3-epochs", type=int, default=100)
    stage1.add_argument("--yolov3-batch-size", type=int, default=16, help="images per GPU")
    stage1.add_argument("--pretrained", default=None, help="darknet53.conv.74, a darknet .weights file or a checkpoint")
    stage2 = parser.add_argument_group("stage 2 (ConvLSTM-YOLO)")
    stage2.add_argument("--lanes", type=int, default=4, help="clips per GPU and step (B)")
    stage2.add_argument("--steps", type=int, default=8, help="frames per step: the truncated-BPTT length (T)")
    stage2.add_argument("--max-epochs", type=int, default=30)
    stage2.add_argument("--freeze-ported-epochs", type=int, default=1, help="epochs training the ConvLSTMs only")
    stage2.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate")
    stage2.add_argument("--ema-decay", type=float, default=0.999, help="0 turns the EMA off")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    shared = {"image_size": args.image_size, "width": args.width, "depth": args.depth, "devices": args.devices,
              "accelerator": args.accelerator, "precision": args.precision, "num_workers": args.num_workers,
              "cache_dir": args.cache_dir, "seed": args.seed, "fast_dev_run": args.fast_dev_run}
    yolov3_checkpoint = args.yolov3_checkpoint or fit_yolov3(
        args.root, args.out / "yolov3", batch_size=args.yolov3_batch_size, max_epochs=args.yolov3_epochs,
        pretrained=args.pretrained, **shared,
    )
    rank_zero_only(print)(f"stage 1 (YOLOv3) checkpoint: {yolov3_checkpoint}")
    path = fit_recurrent_yolo(
        args.root, args.out / "recurrent_yolo", yolov3_checkpoint, lanes=args.lanes, steps=args.steps,
        max_epochs=args.max_epochs, freeze_ported_epochs=args.freeze_ported_epochs, lr=args.lr,
        ema_decay=args.ema_decay, **shared,
    )
    rank_zero_only(print)(f"stage 2 (ConvLSTM-YOLO) checkpoint: {path if path is not None else 'none (fast dev run)'}")


if __name__ == "__main__":
    main()

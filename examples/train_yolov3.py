"""Train YOLOv3 frame by frame: the full-size multi-GPU recipe.

Defaults are the recipe: 416 px, width and depth 1.0 (the layers of darknet's yolov3.cfg),
k-means anchors of the training boxes, 16 images per GPU on 4 GPUs (``strategy="ddp"``,
``precision="bf16-mixed"``), SGD with Nesterov momentum 0.937, 5% linear warm-up then cosine
to 1%, an EMA of the weights (decay 0.9998) for validation and checkpoints, and the best
checkpoint by ``val/map`` kept as ``<out>/checkpoints/best.ckpt``.

Learning rate: ``YOLOv3Module``'s loss is a mean over the frames, while YOLOv5 (whose
hyper-parameters these are) multiplies its loss by the per-GPU batch size. The same SGD update
therefore needs ``lr = 0.01 × batch`` and ``weight_decay = 5e-4 / batch`` here (SGD adds the
decay to the gradient, so it must shrink by the factor the gradient grew). AdamW is scale-free:
``--optimizer adamw`` defaults to lr 1e-3.

Usage::

    python examples/train_yolov3.py --root data/restaurant --pretrained darknet53.conv.74
    python examples/train_yolov3.py --root data/synth --accelerator cpu --devices 1 \
        --precision 32-true --width 0.125 --depth 0.34 --image-size 160 --batch-size 4 --fast-dev-run
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

logger = logging.getLogger("train_yolov3")

SGD_LR_PER_IMAGE = 0.01
SGD_WEIGHT_DECAY_TIMES_BATCH = 5e-4
ADAMW_LR = 1e-3
ADAMW_WEIGHT_DECAY = 5e-4


def default_optimisation(optimizer: str, batch_size: int) -> tuple[float, float]:
    """``(lr, weight_decay)`` of the recipe for ``optimizer`` and a per-GPU batch of ``batch_size`` frames."""
    if optimizer == "sgd":
        return SGD_LR_PER_IMAGE * batch_size, SGD_WEIGHT_DECAY_TIMES_BATCH / batch_size
    return ADAMW_LR, ADAMW_WEIGHT_DECAY


def ddp_strategy(devices: int) -> str:
    """``"ddp"`` for several devices, Lightning's choice for one."""
    return "ddp" if devices > 1 else "auto"


def add_trainer_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by the training examples: data, hardware and run length."""
    parser.add_argument("--root", type=Path, default=Path("data/synth"), help="dataset in the canonical layout")
    parser.add_argument("--out", type=Path, default=Path("runs/yolov3"), help="logs and checkpoints")
    parser.add_argument("--image-size", type=int, default=416, help="square training size (multiple of 32)")
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier (1.0: yolov3.cfg)")
    parser.add_argument("--depth", type=float, default=1.0, help="depth multiplier (1.0: yolov3.cfg)")
    parser.add_argument("--devices", type=int, default=4, help="GPUs (or CPU processes) per node")
    parser.add_argument("--accelerator", default="auto", help="gpu, cpu, auto, …")
    parser.add_argument("--precision", default="bf16-mixed", help="Lightning precision (32-true on CPUs)")
    parser.add_argument("--num-workers", type=int, default=8, help="loader processes per GPU")
    parser.add_argument("--cache-dir", type=Path, default=None, help="resized-frame cache (saves decoding)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast-dev-run", action="store_true", help="one training and one validation batch, to check the setup")


def fit_yolov3(
    root: Path,
    out: Path,
    *,
    image_size: int = 416,
    width: float = 1.0,
    depth: float = 1.0,
    batch_size: int = 16,
    devices: int = 4,
    accelerator: str = "auto",
    precision: str = "bf16-mixed",
    max_epochs: int = 100,
    optimizer: str = "sgd",
    lr: float | None = None,
    weight_decay: float | None = None,
    ema_decay: float = 0.9998,
    pretrained: str | None = None,
    num_workers: int = 8,
    cache_dir: Path | None = None,
    seed: int = 0,
    fast_dev_run: bool = False,
) -> Path:
    """Train a ``YOLOv3Module`` on ``FrameDataModule(root)``; returns its best checkpoint.

    ``lr`` and ``weight_decay`` default to :func:`default_optimisation`. The best checkpoint is
    ``out/checkpoints/best.ckpt`` (by ``val/map``); a ``fast_dev_run`` saves no checkpoint of its
    own, so its final weights are saved as ``out/checkpoints/fast-dev-run.ckpt`` and returned.
    """
    pl.seed_everything(seed, workers=True)
    default_lr, default_weight_decay = default_optimisation(optimizer, batch_size)
    dm = ra.FrameDataModule(root, image_size=image_size, batch_size=batch_size, num_workers=num_workers,
                            seed=seed, cache_dir=cache_dir)
    model = ra.YOLOv3Module(
        dm.num_classes, anchors=dm.anchors(9), width=width, depth=depth, pretrained=pretrained,
        class_names=dm.classes, class_ranking=dm.top_classes(24), optimizer=optimizer,
        lr=lr if lr is not None else default_lr,
        weight_decay=weight_decay if weight_decay is not None else default_weight_decay, ema_decay=ema_decay,
    )
    checkpoints = out / "checkpoints"
    best = ModelCheckpoint(dirpath=checkpoints, filename="best", monitor="val/map", mode="max", save_last=True)
    trainer = pl.Trainer(
        accelerator=accelerator, devices=devices, strategy=ddp_strategy(devices), precision=precision,
        max_epochs=max_epochs, callbacks=[best, LearningRateMonitor(logging_interval="step")],
        logger=CSVLogger(out, name="logs"), fast_dev_run=fast_dev_run,
    )
    trainer.fit(model, dm)
    if best.best_model_path:
        logger.info("best val/map %.4f: %s", float(best.best_model_score), best.best_model_path)
        return Path(best.best_model_path)
    path = checkpoints / "fast-dev-run.ckpt"
    trainer.save_checkpoint(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_trainer_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=16, help="images per GPU")
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    parser.add_argument("--lr", type=float, default=None, help="None: 0.01 × batch size (sgd), 1e-3 (adamw)")
    parser.add_argument("--weight-decay", type=float, default=None, help="None: 5e-4 / batch size (sgd), 5e-4 (adamw)")
    parser.add_argument("--ema-decay", type=float, default=0.9998, help="0 turns the EMA off")
    parser.add_argument("--pretrained", default=None, help="darknet53.conv.74, a darknet .weights file or a checkpoint")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    path = fit_yolov3(
        args.root, args.out, image_size=args.image_size, width=args.width, depth=args.depth, batch_size=args.batch_size,
        devices=args.devices, accelerator=args.accelerator, precision=args.precision, max_epochs=args.max_epochs,
        optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay, ema_decay=args.ema_decay,
        pretrained=args.pretrained, num_workers=args.num_workers, cache_dir=args.cache_dir, seed=args.seed,
        fast_dev_run=args.fast_dev_run,
    )
    rank_zero_only(print)(f"YOLOv3 checkpoint: {path}")


if __name__ == "__main__":
    main()

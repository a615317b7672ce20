"""Train YOWO on UCF101-24 with the paper's recipe (``configs/yowo_ucf24.yaml``) on a GPU machine.

1. Imports the YOWO-layout dataset (``rgb-images/``, ``labels/``, ``trainlist.txt``,
   ``testlist.txt``) into the canonical layout with ``import_yowo`` unless ``--data`` holds it.
2. Builds ``ClipDataModule`` and ``YOWOModule`` from the config (ResNeXt-101 + Darknet-19,
   16-frame clips at 224 px, 8 clips per GPU), sets gradient accumulation so that each optimizer
   step sees ``--total-batch-size`` clips (128 in YOWO), and trains with
   ``Trainer(devices=N, strategy="ddp")``, keeping the checkpoints of best ``val/map``.
3. Tests the best checkpoint on the validation (test list) videos.

Run (pretrained files from Hara et al. and darknet; nothing is downloaded):

    python examples/train_yowo_ucf24.py --src /data/ucf24 --data data/ucf24 --devices 4 \\
        --pretrained-3d weights/resnext-101-kinetics.pth --pretrained-2d weights/yolo.weights

The config is LightningCLI's format, so ``restaurant-action fit --config configs/yowo_ucf24.yaml``
trains the same model. Under DDP the test loader pads the last batch with repeated clips; for
numbers to compare with the paper, test the best checkpoint on one GPU.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import yaml

from restaurant_action.data.datamodules import ClipDataModule
from restaurant_action.data.importers import import_yowo
from restaurant_action.data.transforms import AugmentConfig
from restaurant_action.lightning.yowo import YOWOModule

logger = logging.getLogger("train_yowo_ucf24")

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "yowo_ucf24.yaml"


def instantiate(spec: dict[str, Any]) -> Any:
    """An object from a LightningCLI ``{"class_path": ..., "init_args": {...}}`` entry."""
    module, _, name = spec["class_path"].rpartition(".")
    return getattr(importlib.import_module(module), name)(**spec.get("init_args", {}))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="LightningCLI-format YAML recipe")
    parser.add_argument("--src", type=Path, default=None, help="YOWO-layout UCF101-24 folder to import (once)")
    parser.add_argument("--data", type=Path, default=None, help="canonical dataset folder (default: the config's)")
    parser.add_argument("--devices", type=int, default=None, help="GPUs (default: the config's)")
    parser.add_argument("--accelerator", default=None, help="gpu, cpu, … (default: the config's)")
    parser.add_argument("--batch-size", type=int, default=None, help="clips per GPU (default: the config's)")
    parser.add_argument("--total-batch-size", type=int, default=128, help="clips per optimizer step")
    parser.add_argument("--num-workers", type=int, default=None, help="loader workers per GPU")
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--pretrained-3d", default=None, help="Kinetics 3D weights (default: the config's)")
    parser.add_argument("--pretrained-2d", default=None, help="darknet yolo.weights (default: the config's)")
    parser.add_argument("--no-pretrained", action="store_true", help="start from random weights")
    parser.add_argument("--out", type=Path, default=Path("runs/yowo_ucf24"), help="logs and checkpoints")
    parser.add_argument("--resume", type=Path, default=None, help="a checkpoint to resume training from")
    parser.add_argument("--fast-dev-run", action="store_true",
                        help="one training and one validation batch, to check the setup")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = yaml.safe_load(args.config.read_text(encoding="utf-8"))
    pl.seed_everything(config.get("seed_everything", 0), workers=True)

    data_args = dict(config["data"]["init_args"])
    overrides = {"root": args.data, "batch_size": args.batch_size, "num_workers": args.num_workers}
    data_args.update({key: value for key, value in overrides.items() if value is not None})
    if isinstance(data_args.get("augment"), dict):
        data_args["augment"] = AugmentConfig(**{key: tuple(value) if isinstance(value, list) else value
                                                for key, value in data_args["augment"].items()})
    root = Path(data_args["root"])
    if not (root / "annotations.csv").exists():
        if args.src is None:
            raise SystemExit(f"{root} holds no dataset: pass --src with the YOWO-layout UCF101-24 folder to import")
        annotations = import_yowo(args.src, root)
        logger.info("imported %d boxes in %d videos, %d classes into %s", len(annotations), len(annotations.videos),
                    annotations.num_classes, root)
    dm = ClipDataModule(**data_args)

    model_args = dict(config["model"]["init_args"])
    model_args.update({key: value for key, value in (("pretrained_3d", args.pretrained_3d),
                                                     ("pretrained_2d", args.pretrained_2d)) if value is not None})
    if args.no_pretrained:
        model_args.update(pretrained_yowo=None, pretrained_3d=None, pretrained_2d=None)
    model = YOWOModule(num_classes=dm.num_classes, class_names=dm.classes, class_ranking=dm.top_classes(24),
                       **model_args)

    trainer_args = dict(config["trainer"])
    callbacks = [instantiate(spec) for spec in trainer_args.pop("callbacks", [])]
    trainer_args.update({key: value for key, value in (("devices", args.devices), ("accelerator", args.accelerator),
                                                       ("max_epochs", args.max_epochs)) if value is not None})
    trainer_args["accumulate_grad_batches"] = max(1, round(args.total_batch_size
                                                          / (dm.batch_size * trainer_args["devices"])))
    logger.info("%d clips per GPU x %d GPUs x %d accumulated = %d clips per step", dm.batch_size,
                trainer_args["devices"], trainer_args["accumulate_grad_batches"],
                dm.batch_size * trainer_args["devices"] * trainer_args["accumulate_grad_batches"])
    trainer = pl.Trainer(default_root_dir=args.out, callbacks=callbacks, fast_dev_run=args.fast_dev_run, **trainer_args)
    trainer.fit(model, dm, ckpt_path=args.resume)
    trainer.test(model, dm, ckpt_path="best" if trainer.checkpoint_callback.best_model_path else None)


if __name__ == "__main__":
    main()

"""The demo behind ``make demo``: synthetic restaurant data in, a trained detector and a report out.

1. Generates the synthetic dataset (8 videos × 900 frames, two camera views) unless it exists.
   The demo camera is low-resolution (160×90) with people and tools drawn twice as large
   (``object_scale=2``), so that a detector learns something within minutes on a CPU.
2. Writes the dataset report: statistics, class histogram, annotated frames.
3. Trains a tiny YOLOv3 (width 0.125) at 128 px for 5 epochs (about 5 minutes on 2 cores),
   stopping early at a time cap (8 minutes) on slower machines.
4. Predicts the validation frames, writes ``predictions.json`` and evaluates it with the
   library's evaluation report (per-class AP, PR curves, confusion, top-5/top-24 tables).
5. Writes ``<out>/report.md`` joining both.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

import restaurant_action as ra
from restaurant_action.data.datasets import letterbox_to_frame
from restaurant_action.data.stats import dataset_stats, write_dataset_report
from restaurant_action.report import FramePredictions, write_evaluation_report, write_predictions

logger = logging.getLogger("demo")
IMAGE_SIZE = 128


def train_yolov3(root: Path, out: Path, epochs: int, minutes: float) -> tuple[ra.FrameDataModule, ra.YOLOv3Module]:
    """Train the tiny YOLOv3 for ``epochs`` (at most ``minutes``); return the datamodule and the model."""
    dm = ra.FrameDataModule(root, image_size=IMAGE_SIZE, batch_size=16, num_workers=1, cache_dir=out / "frame_cache")
    model = ra.YOLOv3Module(
        dm.num_classes, dm.anchors(9), width=0.125, depth=0.34, class_names=dm.classes,
        class_ranking=dm.top_classes(24), optimizer="adamw", lr=2e-3,
    )
    trainer = pl.Trainer(
        max_epochs=epochs, max_time={"minutes": minutes}, accelerator="cpu", logger=pl.loggers.CSVLogger(out, name="yolov3"),
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    trainer.fit(model, dm)
    return dm, model


def predict_validation_frames(dm: ra.FrameDataModule, model: ra.YOLOv3Module) -> list[FramePredictions]:
    """Detections of every validation frame, in the videos' own pixels."""
    model.eval()
    predictions = []
    with torch.inference_mode():
        for batch in dm.val_dataloader():
            for video, frame, det in zip(batch["videos"], batch["frames"].tolist(), model.detect(batch)):
                info = dm.annotations.videos[video]
                boxes = letterbox_to_frame(det["boxes"].numpy(), (info.width, info.height), (IMAGE_SIZE, IMAGE_SIZE))
                predictions.append(FramePredictions(video, frame, boxes, det["scores"].numpy(), det["labels"].numpy()))
    return predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("data/synth"), help="synthetic dataset folder")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="report folder")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=900)
    parser.add_argument("--epochs", type=int, default=5, help="training epochs (the learning-rate schedule spans them)")
    parser.add_argument("--train-minutes", type=float, default=8.0, help="training time cap")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)  # one core trains, the other decodes
    pl.seed_everything(0)

    if not (args.root / "annotations.csv").exists():
        start = time.perf_counter()
        ra.make_synthetic_dataset(args.root, args.videos, args.frames, size=(160, 90), object_scale=2.0, seed=0)
        logger.info("generated %s in %.1f s", args.root, time.perf_counter() - start)
    annotations = ra.ActionAnnotations.load(args.root)
    stats = dataset_stats(annotations)
    logger.info(
        "%d videos, %d frames, %.1f%% labelled, imbalance %.1fx", stats.num_videos, stats.num_frames,
        100 * stats.labelled_fraction, stats.imbalance,
    )
    dataset_page = write_dataset_report(annotations, args.out)

    start = time.perf_counter()
    dm, model = train_yolov3(args.root, args.out, args.epochs, args.train_minutes)
    train_seconds = time.perf_counter() - start
    predictions = predict_validation_frames(dm, model)
    predictions_path = write_predictions(args.out / "yolov3" / "predictions.json", predictions, dm.classes)
    evaluation_page = write_evaluation_report(
        predictions_path, args.root, args.out / "yolov3", class_ranking=dm.top_classes(24),
        title="YOLOv3 (tiny, 128 px) on the validation frames",
    )
    logger.info("evaluation written to %s", evaluation_page)

    report = args.out / "report.md"
    report.write_text(
        "# restaurant_action demo\n\n"
        + dataset_page.read_text(encoding="utf-8").replace("# Dataset", "## Dataset", 1)
        + f"\n## YOLOv3\n\nTiny YOLOv3 (width 0.125, depth 0.34, {sum(p.numel() for p in model.parameters()):,} parameters) "
        f"trained at {IMAGE_SIZE} px for {train_seconds / 60:.1f} minutes ({model.current_epoch} epochs) on the CPU, "
        f"evaluated on {len(predictions)} validation frames (120-frame blocks held out). "
        f"Full evaluation: [yolov3/report.md](yolov3/report.md).\n\n"
        + _embed(evaluation_page, "yolov3"),
        encoding="utf-8",
    )
    logger.info("report written to %s", report)


def _embed(page: Path, folder: str) -> str:
    """The evaluation page's body with its links made relative to the demo folder."""
    text = page.read_text(encoding="utf-8").split("\n", 1)[1]
    return text.replace("](figures/", f"]({folder}/figures/").replace("\n# ", "\n### ").replace("\n## ", "\n### ")


if __name__ == "__main__":
    main()

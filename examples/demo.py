"""The demo behind ``make demo``: synthetic restaurant data in, a trained detector and a report out.

1. Generates the synthetic dataset (8 videos × 900 frames, two camera views) unless it exists.
   The demo camera is low-resolution (160×90) with people and tools drawn twice as large
   (``object_scale=2``), so that a detector learns something within minutes on a CPU. The last
   video of each view is held out (``splits.json``): every model is validated on them.
2. Writes the dataset report: statistics, class histogram, annotated frames.
3. Trains a tiny YOLOv3 (width 0.125) at 128 px for 5 epochs (a few minutes on 2 cores),
   stopping early at a time cap (8 minutes) on slower machines.
4. Predicts the validation frames, writes ``predictions.json`` and evaluates it with the
   library's evaluation report (per-class AP, PR curves, confusion, top-5/top-24 tables).
5. Ports that YOLOv3 into a ConvLSTM-YOLO, trains its ConvLSTMs on ordered clips (the ported
   layers fixed) and compares both per class on the validation clips, the motion-only pairs
   marked.
6. Writes ``<out>/report.md`` joining all of it.
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
from restaurant_action.data.synthetic import MOTION_ONLY_PAIRS
from restaurant_action.plots import plot_ap_comparison
from restaurant_action.report import FramePredictions, ap_comparison_table, write_evaluation_report, write_predictions

logger = logging.getLogger("demo")
IMAGE_SIZE = 128
DEMO_WIDTH = {"width": 0.125, "depth": 0.34}
# Every 8th frame: the hand moves about half a stride-8 cell per step, enough for the ConvLSTMs
# to learn the direction from (docs/recurrent.md).
RECURRENT_FRAME_STEP = 8


def train_yolov3(root: Path, out: Path, epochs: int, minutes: float) -> tuple[ra.FrameDataModule, ra.YOLOv3Module, Path]:
    """Train the tiny YOLOv3 for ``epochs`` (at most ``minutes``); return the datamodule, the model and its checkpoint."""
    dm = ra.FrameDataModule(root, image_size=IMAGE_SIZE, batch_size=16, num_workers=1, cache_dir=out / "frame_cache")
    model = ra.YOLOv3Module(
        dm.num_classes, dm.anchors(9), **DEMO_WIDTH, class_names=dm.classes,
        class_ranking=dm.top_classes(24), optimizer="adamw", lr=2e-3,
    )
    trainer = pl.Trainer(
        max_epochs=epochs, max_time={"minutes": minutes}, accelerator="cpu", logger=pl.loggers.CSVLogger(out, name="yolov3"),
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    trainer.fit(model, dm)
    checkpoint = out / "yolov3" / "yolov3.ckpt"
    trainer.save_checkpoint(checkpoint)
    return dm, model, checkpoint


def compare_recurrent(root: Path, out: Path, checkpoint: Path, epochs: int, minutes: float) -> str:
    """Port the YOLOv3 into a ConvLSTM-YOLO, train its ConvLSTMs, evaluate both on the validation clips;
    return the comparison section (markdown)."""
    dm = ra.SequenceDataModule(root, image_size=IMAGE_SIZE, lanes=4, steps=8, frame_step=RECURRENT_FRAME_STEP, num_workers=1,
                               cache_dir=out / "frame_cache")
    trainer_options = {"accelerator": "cpu", "enable_checkpointing": False, "enable_progress_bar": False,
                       "enable_model_summary": False, "num_sanity_val_steps": 0}
    ported = ra.YOLOv3Module.load_from_checkpoint(checkpoint)
    pl.Trainer(logger=False, **trainer_options).validate(ported, dm, verbose=False)
    yolov3_ap = ported.last_metrics["ap_per_class"].reshape(-1).numpy()
    recurrent = ra.ConvLSTMYOLOModule(dm.num_classes, yolov3_checkpoint=str(checkpoint), class_names=dm.classes,
                                      lr=3e-3, warmup_fraction=0.02, freeze_ported_epochs=epochs, **DEMO_WIDTH)
    trainer = pl.Trainer(max_epochs=epochs, max_time={"minutes": minutes}, logger=pl.loggers.CSVLogger(out, name="recurrent_yolo"),
                         **trainer_options)
    trainer.fit(recurrent, dm)
    recurrent_ap = recurrent.last_metrics["ap_per_class"].reshape(-1).numpy()
    columns = {"YOLOv3 (ported)": yolov3_ap, "ConvLSTM-YOLO": recurrent_ap}
    motion = [name for pair in MOTION_ONLY_PAIRS for name in pair if name in dm.classes]
    figure = plot_ap_comparison(columns, dm.classes, out / "recurrent_yolo" / "ap_comparison.png", marked=motion,
                                title="YOLOv3 vs ConvLSTM-YOLO on the validation clips")
    counts = dm.annotations.class_counts("clips")
    return (
        f"The YOLOv3 above, ported into a ConvLSTM-YOLO (a ConvLSTM before each head's final conv, "
        f"its own zero-initialised output weights: it starts as that YOLOv3), then {trainer.current_epoch} epochs "
        f"({trainer.global_step} steps of 4 clips × 8 frames, every {RECURRENT_FRAME_STEP}th frame) training the ConvLSTMs only, the "
        f"ported layers and their BatchNorm statistics fixed. Both are evaluated on the validation clips "
        f"(the held-out videos' labelled actions with 30 frames either side, played in order with the state carried). "
        f"★ marks the motion-only pairs (same hand, tool and path, opposite directions).\n\n"
        + ap_comparison_table(dm.classes, columns, marked=motion, class_counts=counts, marked_label="motion-only pairs")
        + f"\n![AP per class](recurrent_yolo/{figure.name})\n"
    )


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
    parser.add_argument("--recurrent-epochs", type=int, default=8, help="ConvLSTM training epochs (0 skips the comparison)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)  # one core trains, the other decodes
    pl.seed_everything(0)

    if not (args.root / "splits.json").exists():  # a dataset of an older demo lacks the held-out videos
        start = time.perf_counter()
        ra.make_synthetic_dataset(args.root, args.videos, args.frames, size=(160, 90), object_scale=2.0, seed=0, val_videos=2)
        logger.info("generated %s in %.1f s", args.root, time.perf_counter() - start)
    annotations = ra.ActionAnnotations.load(args.root)
    stats = dataset_stats(annotations)
    logger.info(
        "%d videos, %d frames, %.1f%% labelled, imbalance %.1fx", stats.num_videos, stats.num_frames,
        100 * stats.labelled_fraction, stats.imbalance,
    )
    dataset_page = write_dataset_report(annotations, args.out)

    start = time.perf_counter()
    dm, model, checkpoint = train_yolov3(args.root, args.out, args.epochs, args.train_minutes)
    train_seconds = time.perf_counter() - start
    predictions = predict_validation_frames(dm, model)
    predictions_path = write_predictions(args.out / "yolov3" / "predictions.json", predictions, dm.classes)
    evaluation_page = write_evaluation_report(
        predictions_path, args.root, args.out / "yolov3", class_ranking=dm.top_classes(24),
        title="YOLOv3 (tiny, 128 px) on the validation frames",
    )
    logger.info("evaluation written to %s", evaluation_page)
    recurrent_section = ""
    if args.recurrent_epochs > 0:
        start = time.perf_counter()
        comparison = compare_recurrent(args.root, args.out, checkpoint, args.recurrent_epochs, args.train_minutes)
        recurrent_section = f"\n## ConvLSTM-YOLO vs YOLOv3 ({(time.perf_counter() - start) / 60:.1f} minutes)\n\n" + comparison

    report = args.out / "report.md"
    report.write_text(
        "# restaurant_action demo\n\n"
        + dataset_page.read_text(encoding="utf-8").replace("# Dataset", "## Dataset", 1)
        + f"\n## YOLOv3\n\nTiny YOLOv3 (width 0.125, depth 0.34, {sum(p.numel() for p in model.parameters()):,} parameters) "
        f"trained at {IMAGE_SIZE} px for {train_seconds / 60:.1f} minutes ({model.current_epoch} epochs) on the CPU, "
        f"evaluated on {len(predictions)} validation frames (the held-out videos). "
        f"Full evaluation: [yolov3/report.md](yolov3/report.md).\n\n"
        + _embed(evaluation_page, "yolov3")
        + recurrent_section,
        encoding="utf-8",
    )
    logger.info("report written to %s", report)


def _embed(page: Path, folder: str) -> str:
    """The evaluation page's body with its links made relative to the demo folder."""
    text = page.read_text(encoding="utf-8").split("\n", 1)[1]
    return text.replace("](figures/", f"]({folder}/figures/").replace("\n# ", "\n### ").replace("\n## ", "\n### ")


if __name__ == "__main__":
    main()

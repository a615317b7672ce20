"""The demo behind ``make demo``: synthetic restaurant data in; the three models trained, scored on
held-out videos through the prediction path, an annotated video and a report out.

1. Generates the demo dataset unless it exists: 10 videos × 900 frames of a low-resolution camera
   (160×90) with people and tools drawn large, four actions that appearance tells apart and the
   two motion-only pairs (same hand, tool and path, opposite directions), drawn equally often.
   The last video of each camera view is held out (``splits.json``).
2. Writes the dataset report: statistics, class histogram, annotated frames.
3. Trains the library's recommended configurations, tiny, from random weights, on the CPU:
   a YOLOv3 (width 0.125) at 128 px; a ConvLSTM-YOLO ported from it (the default ConvLSTMs,
   every 8th frame, ported layers fixed); a YOWO with the RoI action head and the box refiner
   (ResNet-18-3D, 4-frame clips of every 4th frame).
4. Predicts both held-out videos with each model's checkpoint through ``VideoPredictor`` (what
   ``restaurant-action predict`` runs), scores the predictions JSON with the evaluation report
   on the same frames for all three, and writes ``<out>/annotated.mp4`` (the best model) and a
   strip of its annotated frames.
5. Writes ``<out>/report.md``: the headline table, the study's Tables 1–3 beside ours, and links
   to each model's full evaluation.

``--full`` runs the harder data of docs/training.md's tables instead (people drawn twice as large)
with the longer YOWO schedule (4 epochs) and 8 ConvLSTM epochs: about 15 minutes on 2 cores; its
measured numbers are in docs/training.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

import restaurant_action as ra
from restaurant_action.data.stats import dataset_stats, write_dataset_report
from restaurant_action.data.synthetic import MOTION_ONLY_PAIRS
from restaurant_action.plots import plot_ap_comparison, save_annotated_frames
from restaurant_action.report import ap_comparison_table, metrics_table, write_evaluation_report

logger = logging.getLogger("demo")
IMAGE_SIZE = 128
TINY_YOLO = {"width": 0.125, "depth": 0.34}
APPEARANCE = ["Operating POS", "Operating sushi roll cutter", "Using a cell phone", "Clean counter"]
MOTION = [*MOTION_ONLY_PAIRS[0], *MOTION_ONLY_PAIRS[1]]
# Every 8th frame: the hand moves about half a stride-8 cell per step, enough for the ConvLSTMs
# to learn the direction from (docs/recurrent.md).
RECURRENT_FRAME_STEP = 8
# The CPU recipe of docs/training.md: 4-frame clips of every 4th frame, small branches, a strong box
# loss, the box-aligned action head and box refiner at stride 8.
YOWO_CLIP = {"clip_length": 4, "frame_stride": 4}
YOWO_RECOMMENDED = {"backbone_3d": "resnet18", "width_2d": 0.25, "width_3d": 0.25, "cfam_channels": 64, "clip_length": 4,
                    "lr": 1e-3, "coord_scale": 5.0, "roi_stride": 8, "roi_refine": True}
QUIET = {"accelerator": "cpu", "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False,
         "num_sanity_val_steps": 0}
# The study's published figures (DESIGN.md section 1), as fractions.
STUDY_TABLE1 = {"Pick up from bin with tong or scooper": (0.680, 0.3395), "Put tongs or scooper back in bin": (0.171, 0.2957)}
STUDY_TABLE2 = {"YOWO with ResNet-50": (0.611, 0.913), "YOWO with ResNet-18": (0.564, 0.868),
                "YOWO with ResNeXt-101": (0.581, 0.906), "pretrained YOWO (UCF101-24)": (0.588, 0.896),
                "ResNeXt-101 without custom anchors": (0.571, 0.921)}
STUDY_TABLE3 = {"freeze 2D and 3D": (0.5337, 0.9302), "custom anchors + freeze 2D and 3D": (0.5616, 0.9363),
                "custom anchors + fine-tune 2D and 3D": (0.5833, 0.9437)}
SYNTHETIC_FILES = {"annotations.csv", "annotated_ranges.csv", "classes.txt", "splits.json", "videos"}
MEASURES = ("frame mAP", "appearance", "motion-only pairs", "loc. recall", "cls. accuracy")


@dataclass(frozen=True)
class Profile:
    """One demo recipe: the data and each model's training budget."""

    object_scale: float
    yolov3_epochs: int
    recurrent_epochs: int
    yowo_epochs: int
    minutes_cap: float  # per model, on slower machines
    train_batches: int | None = None  # training batches per epoch (None: all; the smoke test's few)


PROFILES = {
    "quick": Profile(object_scale=3.5, yolov3_epochs=4, recurrent_epochs=16, yowo_epochs=3, minutes_cap=9.0),
    "full": Profile(object_scale=2.0, yolov3_epochs=4, recurrent_epochs=8, yowo_epochs=4, minutes_cap=60.0),
}


def fit(model: pl.LightningModule, dm: pl.LightningDataModule, out: Path, name: str, epochs: int, minutes: float,
        train_batches: int | None = None) -> tuple[Path, float]:
    """Train ``model`` without validation; save its checkpoint (which records what prediction needs). Returns it and the minutes."""
    trainer = pl.Trainer(max_epochs=epochs, max_time={"minutes": minutes}, limit_train_batches=train_batches,
                         limit_val_batches=0, logger=pl.loggers.CSVLogger(out, name=name), **QUIET)
    start = time.perf_counter()
    trainer.fit(model, dm)
    minutes_spent = (time.perf_counter() - start) / 60
    checkpoint = out / name / f"{name}.ckpt"
    trainer.save_checkpoint(checkpoint)
    logger.info("%s: %d steps, %d epochs in %.1f minutes", name, trainer.global_step, trainer.current_epoch, minutes_spent)
    return checkpoint, minutes_spent


def train_all(root: Path, out: Path, profile: Profile) -> dict[str, dict[str, Any]]:
    """The three recommended models; per model its checkpoint, training minutes and a description."""
    cache = out / "frame_cache"
    frames = ra.FrameDataModule(root, image_size=IMAGE_SIZE, batch_size=16, num_workers=1, cache_dir=cache)
    yolov3 = ra.YOLOv3Module(frames.num_classes, frames.anchors(9), **TINY_YOLO, class_names=frames.classes,
                             class_ranking=frames.top_classes(24), lr=2e-3)
    yolov3_checkpoint, yolov3_minutes = fit(yolov3, frames, out, "yolov3", profile.yolov3_epochs, profile.minutes_cap,
                                            profile.train_batches)

    sequences = ra.SequenceDataModule(root, image_size=IMAGE_SIZE, lanes=4, steps=8, frame_step=RECURRENT_FRAME_STEP,
                                      num_workers=1, cache_dir=cache)
    recurrent = ra.ConvLSTMYOLOModule(sequences.num_classes, yolov3_checkpoint=str(yolov3_checkpoint),
                                      class_names=sequences.classes, lr=3e-3, warmup_fraction=0.02,
                                      freeze_ported_epochs=profile.recurrent_epochs, **TINY_YOLO)
    recurrent_checkpoint, recurrent_minutes = fit(recurrent, sequences, out, "recurrent_yolo", profile.recurrent_epochs,
                                                  profile.minutes_cap, profile.train_batches)

    clips = ra.ClipDataModule(root, image_size=IMAGE_SIZE, batch_size=8, num_workers=1, cache_dir=cache, **YOWO_CLIP)
    yowo = ra.YOWOModule(clips.num_classes, clips.anchors(5), **YOWO_RECOMMENDED, class_names=clips.classes,
                         class_ranking=clips.top_classes(24))
    yowo_checkpoint, yowo_minutes = fit(yowo, clips, out, "yowo", profile.yowo_epochs, profile.minutes_cap, profile.train_batches)
    parameters = {name: sum(p.numel() for p in model.parameters()) for name, model in
                  (("YOLOv3", yolov3), ("ConvLSTM-YOLO", recurrent), ("YOWO", yowo))}
    return {
        "YOLOv3": {"checkpoint": yolov3_checkpoint, "minutes": yolov3_minutes,
                   "recipe": f"Darknet-53 ×0.125 width, {profile.yolov3_epochs} epochs", "parameters": parameters["YOLOv3"]},
        "ConvLSTM-YOLO": {"checkpoint": recurrent_checkpoint, "minutes": yolov3_minutes + recurrent_minutes,
                          "recipe": f"the YOLOv3 ported, + {profile.recurrent_epochs} epochs of its ConvLSTMs "
                                    f"(every {RECURRENT_FRAME_STEP}th frame)", "parameters": parameters["ConvLSTM-YOLO"]},
        "YOWO": {"checkpoint": yowo_checkpoint, "minutes": yowo_minutes,
                 "recipe": f"ResNet-18-3D ×0.25 + RoI action head + box refiner, {profile.yowo_epochs} epochs",
                 "parameters": parameters["YOWO"]},
    }


def predict_and_score(root: Path, out: Path, models: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Predict the held-out videos with each checkpoint and score the predictions on the validation
    frames (the same frames for every model): the prediction path a user takes."""
    dm = ra.FrameDataModule(root, image_size=IMAGE_SIZE)
    val_frames: dict[str, set[int]] = {}
    for ref in dm.frames_of("val"):
        val_frames.setdefault(ref.video, set()).add(ref.frame)
    annotations = ra.ActionAnnotations.load(root)
    for name, model in models.items():
        folder = out / "predict" / name.lower().replace("-", "_")
        predictor = ra.VideoPredictor.from_checkpoint(model["checkpoint"], "cpu")
        records, seconds, frames = [], 0.0, 0
        for video in sorted(val_frames):
            result = predictor.predict(annotations.videos[video].path, folder / video, progress=False)
            seconds += result.seconds
            frames += result.frames
            records += [r for r in json.loads(result.detections_json.read_text(encoding="utf-8")) if r["frame"] in val_frames[video]]
            model.setdefault("videos", {})[video] = result
        scored = folder / "validation_frames.json"
        scored.write_text(json.dumps(records), encoding="utf-8")
        page = write_evaluation_report(scored, root, folder, class_ranking=dm.top_classes(24),
                                       title=f"{name} on the held-out videos' validation frames")
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        ap = np.array([math.nan if value is None else value for value in metrics["frame"]["ap_per_class"]])
        mean_of = lambda names: float(np.nanmean([ap[dm.classes.index(n)] for n in names if n in dm.classes] or [math.nan]))  # noqa: E731
        model.update(ap=ap, page=page, fps=frames / seconds, measures={
            "frame mAP": float(np.nanmean(ap)), "appearance": mean_of(APPEARANCE), "motion-only pairs": mean_of(MOTION),
            "loc. recall": metrics["localization_recall"], "cls. accuracy": metrics["classification_accuracy"]})
        logger.info("%s: %s, predicted at %.0f frames/s", name, model["measures"], model["fps"])
    return models


def annotated_strip(root: Path, out: Path, name: str, model: dict[str, Any]) -> tuple[Path, Path]:
    """Copy the best model's annotated mp4 of the first held-out video to ``out`` and draw a strip of 8 of its frames."""
    video, result = sorted(model["videos"].items())[0]
    target = shutil.copyfile(result.video, out / "annotated.mp4")
    annotations = ra.ActionAnnotations.load(root)
    labelled = annotations.labelled_frames(video)
    picks = labelled[np.linspace(0, len(labelled) - 1, 8).round().astype(int)]
    frames = ra.open_video(target).frames(picks)
    strip = save_annotated_frames(list(frames), [np.zeros((0, 4))] * 8, [[]] * 8, out / "annotated_frames.png",
                                  titles=[f"{video}, frame {int(f)} ({name})" for f in picks])
    return target, strip


def write_report(out: Path, dataset_page: Path, models: dict[str, dict[str, Any]], classes: list[str], counts: np.ndarray,
                 best: str, profile_name: str, total_minutes: float) -> Path:
    """The demo report: headline, the study's tables beside ours, links."""
    rows = {f"{name} ({model['recipe']})": {**model["measures"], "train min.": f"{model['minutes']:.1f}",
                                              "predict frames/s": f"{model['fps']:.0f}"}
            for name, model in models.items()}
    headline = metrics_table(rows, [*MEASURES, "train min.", "predict frames/s"], row_label="model")
    motion = [name for name in MOTION if name in classes]
    figure = plot_ap_comparison({name: model["ap"] for name, model in models.items()}, classes, out / "ap_comparison.png",
                                marked=motion, title="AP per class on the held-out videos")

    yolov3, yowo = models["YOLOv3"], models["YOWO"]
    # The Δ column is the last column's gain over the first: YOWO's over YOLOv3's, both here.
    table1 = {"YOLOv3, here": yolov3["ap"],
              "YOLOv3, study": [STUDY_TABLE1.get(c, (math.nan,))[0] for c in classes],
              "YOWO, study": [STUDY_TABLE1.get(c, (math.nan, math.nan))[1] for c in classes],
              "YOWO, here": yowo["ap"]}
    ours = {"loc. recall": yowo["measures"]["loc. recall"], "cls. accuracy": yowo["measures"]["cls. accuracy"]}
    table2 = {"**here: tiny YOWO, ResNet-18-3D + RoI action head + box refiner, random init**": ours,
              **{f"study: {k}": {"loc. recall": v[0], "cls. accuracy": v[1]} for k, v in STUDY_TABLE2.items()}}
    table3 = {"**here: k-means anchors, both branches trained (from random weights)**": ours,
              **{f"study: {k}": {"loc. recall": v[0], "cls. accuracy": v[1]} for k, v in STUDY_TABLE3.items()}}
    links = "\n".join(f"- {name}: [full evaluation]({model['page'].relative_to(out)}), checkpoint "
                      f"`{model['checkpoint'].relative_to(out.parent) if model['checkpoint'].is_relative_to(out.parent) else model['checkpoint']}`"
                      for name, model in models.items())
    text = (
        f"# restaurant_action demo\n\n"
        f"Profile `{profile_name}`, {total_minutes:.1f} minutes from the dataset to this report. Three tiny models trained from random "
        f"weights on the CPU, then each checkpoint run over the two held-out videos by `VideoPredictor` (what "
        f"`restaurant-action predict` runs) and its predictions JSON scored by the evaluation report on the same "
        f"validation frames (labelled frames and a sample of background frames of the held-out videos). Appearance: "
        f"the four actions appearance tells apart; motion-only pairs: the four actions of the two pairs that only the "
        f"direction of the motion tells apart (★ below).\n\n"
        + headline
        + f"\n![AP per class]({figure.name})\n\n"
        f"## What the best model ({best}) sees\n\n"
        f"[annotated.mp4](annotated.mp4): boxes in the colour of their action, `#track action score` (tubes linked "
        f"by video-mAP's linker), at the source's 30 frames/s. Frames of it:\n\n"
        f"![annotated frames](annotated_frames.png)\n\n"
        f"Reproduce on any video: `restaurant-action predict VIDEO --ckpt {models[best]['checkpoint']} --out DIR`, "
        f"then `restaurant-action evaluate DIR/detections.json DATASET` on a labelled one.\n\n"
        f"## The study's tables beside ours\n\n"
        f"The study (arXiv 2008.11149) trained on 36k frames of real 720p footage with pretrained branches; ours are "
        f"tiny models trained for minutes on synthetic data: the columns are side by side, not comparable. The "
        f"study's AP of the classes it shares with the demo (its \"/\" written \" or \") are shown, – where it has none, "
        f"so its mean rows average those two classes only.\n\n"
        f"### Table 1: per-class AP@0.5, YOLOv3 vs YOWO\n\n"
        + ap_comparison_table(classes, table1, marked=motion, class_counts=counts, marked_label="motion-only pairs")
        + "\n### Table 2: YOWO, localization recall and classification accuracy\n\n"
        + metrics_table(table2, ["loc. recall", "cls. accuracy"], row_label="YOWO")
        + "\n### Table 3: anchors and frozen branches\n\n"
        + metrics_table(table3, ["loc. recall", "cls. accuracy"], row_label="setting")
        + "\nThe other 3D backbones and the frozen-branch settings train and predict too (tested in "
        "`tests/lightning/test_yowo.py`); minutes of CPU cannot rank them, so the demo does not.\n\n"
        f"## Details\n\n{links}\n\n"
        + dataset_page.read_text(encoding="utf-8").replace("# Dataset", "## Dataset", 1)
    )
    report = out / "report.md"
    report.write_text(text, encoding="utf-8")
    return report


def run(root: Path, out: Path, profile: Profile, profile_name: str) -> Path:
    """Train, predict, score and report on the dataset at ``root``; returns the report."""
    start = time.perf_counter()
    annotations = ra.ActionAnnotations.load(root)
    stats = dataset_stats(annotations)
    logger.info("%d videos, %d frames, %.1f%% labelled", stats.num_videos, stats.num_frames, 100 * stats.labelled_fraction)
    out.mkdir(parents=True, exist_ok=True)
    dataset_page = write_dataset_report(annotations, out)
    models = predict_and_score(root, out, train_all(root, out, profile))
    best = max(models, key=lambda name: models[name]["measures"]["frame mAP"])
    annotated_strip(root, out, best, models[best])
    return write_report(out, dataset_page, models, annotations.classes, annotations.class_counts("clips"), best,
                        profile_name, (time.perf_counter() - start) / 60)


def _generated(path: Path) -> bool:
    """Whether ``path`` (in a dataset folder) is one the synthetic generator or this demo writes."""
    return path.name in SYNTHETIC_FILES or path.name.startswith("demo_object_scale_")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("data/synth"), help="demo dataset folder")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="report folder")
    parser.add_argument("--full", action="store_true", help="the docs' harder data, longer YOWO schedule (about 15 minutes on 2 cores)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)  # one core trains, the other decodes
    pl.seed_everything(0)
    start = time.perf_counter()
    profile_name = "full" if args.full else "quick"
    profile = PROFILES[profile_name]
    root = args.root if profile_name == "quick" else args.root.with_name(args.root.name + "_full")
    marker = root / f"demo_object_scale_{profile.object_scale:g}"
    if not marker.exists():  # a dataset of an older demo has other actions and sizes: replace it, nothing else
        if root.exists() and any(not _generated(path) for path in root.iterdir()):
            raise SystemExit(f"{root} holds files the synthetic generator does not write; pass another --root")
        shutil.rmtree(root, ignore_errors=True)
        ra.make_synthetic_dataset(root, num_videos=10, frames_per_video=900, size=(160, 90), object_scale=profile.object_scale,
                                  seed=1, actions=APPEARANCE + MOTION, long_tail=False, val_videos=2)
        marker.touch()
    report = run(root, args.out, profile, profile_name)
    logger.info("report written to %s (%.1f minutes)", report, (time.perf_counter() - start) / 60)


if __name__ == "__main__":
    main()

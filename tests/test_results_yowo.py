"""What a tiny YOWO with this library's box-aligned heads reaches on synthetic restaurant data
(slow: it trains for about ten minutes on one core).

The data of docs/training.md's YOWO tables: 10 videos of 900 frames at 160×90 with people and
tools drawn 3.5× as large, four actions that appearance tells apart and the two motion-only
pairs; the last video of each camera view is held out. The full bar (localization recall
≥ 0.7, classification accuracy ≥ 0.8 and the pairs' AP above a same-budget YOLOv3's) takes 4
epochs of 604 steps, over half an hour on a core (docs/training.md, "A box refiner lets YOWO
localize small hands"); this test trains the same model for 906 steps and checks what it has
learnt by then: it localizes the held-out hands (recall 0.85 here) and names the direction of
both motion-only pairs (0.87 and 0.63 of their localized boxes with PyAV's frames, 0.87 and 0.68
with decord's: the backends' resize filters differ by a mean 2 grey levels of 255, and this short
run moves by that much; chance 0.5). Classification accuracy over all actions (0.71 here) needs
the longer run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

import restaurant_action as ra
from restaurant_action.data.synthetic import MOTION_ONLY_PAIRS

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("results_yowo")]

MOTION_ACTIONS = [*MOTION_ONLY_PAIRS[0], *MOTION_ONLY_PAIRS[1]]
RESULT_ACTIONS = ["Operating POS", "Operating sushi roll cutter", "Using a cell phone", "Clean counter", *MOTION_ACTIONS]
QUIET = {"accelerator": "cpu", "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
         "enable_model_summary": False, "num_sanity_val_steps": 0}

logger = logging.getLogger(__name__)


class ValidationConfusion(pl.Callback):
    """The classification confusion of the localized validation boxes, read before the module resets it."""

    def __init__(self) -> None:
        self.matrix = np.zeros((0, 0))

    def on_validation_epoch_end(self, trainer: pl.Trainer, module: ra.YOWOModule) -> None:
        self.matrix = module.frame_measures["val"]["classification_accuracy"].confusion_matrix().numpy()


def test_tiny_yowo_with_the_box_aligned_heads_localizes_and_tells_the_pairs_apart(tmp_path: Path) -> None:
    root = tmp_path / "dataset"
    ra.make_synthetic_dataset(root, num_videos=10, frames_per_video=900, size=(160, 90), object_scale=3.5, seed=1,
                              actions=RESULT_ACTIONS, long_tail=False, val_videos=2)
    torch.set_num_threads(1)
    pl.seed_everything(0)
    dm = ra.ClipDataModule(root, image_size=128, clip_length=4, frame_stride=4, batch_size=8, num_workers=1,
                           cache_dir=tmp_path / "frame_cache")
    model = ra.YOWOModule(dm.num_classes, dm.anchors(5), backbone_3d="resnet18", width_2d=0.25, width_3d=0.25,
                          clip_length=4, cfam_channels=64, lr=1e-3, coord_scale=5.0, roi_stride=8, roi_refine=True,
                          class_names=dm.classes)
    # three epochs of half the training key frames each (a random half every epoch): 906 steps
    confusion = ValidationConfusion()
    trainer = pl.Trainer(max_epochs=3, limit_train_batches=302, check_val_every_n_epoch=3, callbacks=[confusion],
                         **QUIET)
    trainer.fit(model, dm)

    logged = trainer.callback_metrics
    within_pair = []  # of each pair's localized boxes, the fraction whose best detection names the right one
    for first, second in MOTION_ONLY_PAIRS[:2]:
        pair = [dm.classes.index(first), dm.classes.index(second)]
        counts = confusion.matrix[np.ix_(pair, pair)]
        within_pair.append(float(np.trace(counts) / counts.sum()))
    recall = float(logged["val/localization_recall"])
    logger.info("YOWO + RoI head + refiner after %d steps: localization recall %.3f, classification accuracy %.3f, "
                "within-pair %s, frame mAP %.3f", trainer.global_step, recall,
                float(logged["val/classification_accuracy"]), within_pair, float(logged["val/map"]))
    assert recall >= 0.7
    assert min(within_pair) >= 0.6  # chance is 0.5

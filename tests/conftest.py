"""Fixtures shared by every test folder: a tiny synthetic dataset and checkpoints of the three
model kinds, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import restaurant_action as ra
from restaurant_action.data.synthetic import make_synthetic_dataset

# Two pytest-xdist workers share two cores: one thread each avoids oversubscription.
torch.set_num_threads(1)

SYNTHETIC_SIZE = (96, 64)
SYNTHETIC_FRAMES = 360


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic dataset: 2 videos × 360 frames at 96×64 (3 blocks of 120 frames each).

    Shared by the whole session: read it, never write into it (copy it with
    ``shutil.copytree`` first).
    """
    root = tmp_path_factory.mktemp("synthetic") / "dataset"
    make_synthetic_dataset(root, num_videos=2, frames_per_video=SYNTHETIC_FRAMES, size=SYNTHETIC_SIZE, seed=0, workers=1)
    return root


PREDICT_IMAGE_SIZE = 64
PREDICT_FRAME_STRIDE = 2  # YOWO's clip stride and ConvLSTM-YOLO's frame step in the checkpoints below
TINY_YOLO = {"width": 0.125, "depth": 0.34}


def _fit_briefly(model: pl.LightningModule, datamodule: pl.LightningDataModule, path: Path) -> Path:
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(model, datamodule)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="session")
def checkpoints(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoints of the three model kinds at 64 px, fitted for 2 steps through their datamodules
    (so they record image size and frame stride): ``{"YOLOv3Module": path, "YOWOModule": …,
    "ConvLSTMYOLOModule": …}``. Their score threshold is 0, so that these barely trained models
    detect something (100 boxes a frame). The ConvLSTM-YOLO's recurrent weights are randomised,
    so its state changes its outputs (a ported one starts with no LSTM contribution).
    """
    folder = tmp_path_factory.mktemp("checkpoints")
    pl.seed_everything(0)
    size = PREDICT_IMAGE_SIZE
    frames = ra.FrameDataModule(synthetic_root, image_size=size, batch_size=4)
    yolo = ra.YOLOv3Module(frames.num_classes, frames.anchors(9), **TINY_YOLO, class_names=frames.classes, score_threshold=0.0)
    clips = ra.ClipDataModule(synthetic_root, image_size=size, batch_size=4, clip_length=4, frame_stride=PREDICT_FRAME_STRIDE)
    yowo = ra.YOWOModule(clips.num_classes, clips.anchors(5), backbone_3d="resnet18", width_2d=0.25, width_3d=0.25,
                         cfam_channels=32, clip_length=4, roi_stride=8, roi_refine=True, class_names=clips.classes,
                         score_threshold=0.0)
    sequences = ra.SequenceDataModule(synthetic_root, image_size=size, lanes=2, steps=4, frame_step=PREDICT_FRAME_STRIDE)
    recurrent = ra.ConvLSTMYOLOModule(sequences.num_classes, sequences.anchors(9), **TINY_YOLO, class_names=sequences.classes,
                                      score_threshold=0.0)
    with torch.no_grad():
        for parameter in recurrent.network.recurrent.parameters():
            parameter.normal_(0.0, 0.05)
    return {
        "YOLOv3Module": _fit_briefly(yolo, frames, folder / "yolov3.ckpt"),
        "YOWOModule": _fit_briefly(yowo, clips, folder / "yowo.ckpt"),
        "ConvLSTMYOLOModule": _fit_briefly(recurrent, sequences, folder / "recurrent.ckpt"),
    }


@pytest.fixture(scope="session")
def checkpoint_settings() -> dict[str, int]:
    """The image size and frame stride the ``checkpoints`` were fitted with."""
    return {"image_size": PREDICT_IMAGE_SIZE, "frame_stride": PREDICT_FRAME_STRIDE}

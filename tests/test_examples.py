"""Scripts of ``examples/`` that the demo does not run: the motion probe."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_probe():
    spec = importlib.util.spec_from_file_location("probe_motion", EXAMPLES / "probe_motion.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_box_crops_cut_every_frame_around_the_key_frame_box() -> None:
    probe = load_probe()
    clips = torch.randint(0, 256, (2, 3, 3, 64, 64), dtype=torch.uint8)
    targets = torch.tensor([[1, 5, 20.0, 24.0, 36.0, 32.0],   # centre (28, 28): crop rows and columns 12..43
                            [0, 2, 0.0, 0.0, 10.0, 10.0],     # not probed
                            [0, 7, 52.0, 50.0, 60.0, 58.0]])  # centre (56, 54): reaches past the frame

    crops, labels = probe.box_crops({"clips": clips, "targets": targets}, torch.tensor([7, 5]), crop=32)

    assert crops.shape == (2, 3, 3, 32, 32) and labels.tolist() == [1, 0]  # (N, 3, T, crop, crop), rows in order
    torch.testing.assert_close(crops[0], clips[1, :, :, 12:44, 12:44].float().div(255).transpose(0, 1))
    inside = clips[0, :, :, 38:, 40:].float().div(255).transpose(0, 1)  # rows 38..63, columns 40..63
    torch.testing.assert_close(crops[1, :, :, :26, :24], inside)
    # roi_align repeats the edge pixel one pixel past the frame, zeros beyond
    assert crops[1, :, :, 27:, :].abs().sum() == 0 and crops[1, :, :, :, 25:].abs().sum() == 0


def test_box_crops_jitter_shifts_each_crop_by_at_most_jitter_pixels() -> None:
    probe = load_probe()
    clips = torch.randint(0, 256, (1, 2, 3, 96, 96), dtype=torch.uint8)
    targets = torch.tensor([[0, 3, 40.0, 40.0, 56.0, 56.0]] * 8)  # centre (48, 48): crop 32..63 unshifted
    torch.manual_seed(0)

    crops, _ = probe.box_crops({"clips": clips, "targets": targets}, torch.tensor([3]), crop=32, jitter=4)

    frames = clips[0].float().div(255).transpose(0, 1)
    shifts = []
    for cut in crops:
        matches = [(dx, dy) for dx in range(-4, 5) for dy in range(-4, 5)
                   if torch.allclose(cut, frames[:, :, 32 + dy:64 + dy, 32 + dx:64 + dx])]
        assert len(matches) == 1  # the frame's pixels, shifted by at most 4 in x and y
        shifts += matches
    assert len(set(shifts)) > 1


def test_box_cells_give_the_whole_clip_and_the_cell_of_the_box_centre() -> None:
    probe = load_probe()
    clips = torch.randint(0, 256, (2, 4, 3, 64, 64), dtype=torch.uint8)
    targets = torch.tensor([[1, 5, 20.0, 40.0, 36.0, 48.0],   # centre (28, 44): column 0, row 1
                            [0, 2, 0.0, 0.0, 10.0, 10.0],     # not probed
                            [0, 7, 50.0, 0.0, 64.0, 64.0]])  # centre (57, 32): column 1, row 1

    (whole, cells), labels = probe.box_cells({"clips": clips, "targets": targets}, torch.tensor([7, 5]), stride=32)

    assert whole.shape == (2, 3, 4, 64, 64) and labels.tolist() == [1, 0]
    torch.testing.assert_close(whole[0], clips[1].float().div(255).transpose(0, 1))
    assert cells.tolist() == [[0, 1], [1, 1]]
    scores = probe.Probe("resnet18", 0.25, 2, "cell")((whole, cells))
    assert scores.shape == (2, 2)


def test_box_rois_give_the_batch_clips_and_the_probed_boxes() -> None:
    probe = load_probe()
    clips = torch.randint(0, 256, (2, 4, 3, 64, 64), dtype=torch.uint8)
    targets = torch.tensor([[1, 5, 20.0, 40.0, 36.0, 48.0],
                            [0, 2, 0.0, 0.0, 10.0, 10.0],    # not probed
                            [0, 7, 50.0, 0.0, 64.0, 64.0]])

    (whole, rois), labels = probe.box_rois({"clips": clips, "targets": targets}, torch.tensor([7, 5]))

    assert whole.shape == (2, 3, 4, 64, 64) and labels.tolist() == [1, 0]
    torch.testing.assert_close(rois, torch.tensor([[1, 20.0, 40.0, 36.0, 48.0], [0, 50.0, 0.0, 64.0, 64.0]]))
    (_, moved), _ = probe.box_rois({"clips": clips, "targets": targets}, torch.tensor([7, 5]), jitter=0.25)
    shift = (moved - rois)[:, 1:]
    torch.testing.assert_close(shift[:, :2], shift[:, 2:])  # shifted, not resized
    assert (shift[0, :2].abs() <= torch.tensor([4.0, 2.0])).all() and shift.abs().sum() > 0
    scores = probe.Probe("resnet18", 0.25, 2, "roi", roi_stride=16)((whole, rois))
    assert scores.shape == (2, 2)


@pytest.mark.parametrize("readout", ["crop", "cell", "roi"])
def test_probe_script_trains_and_reports_the_accuracy_of_every_class(synthetic_root: Path, readout: str) -> None:
    classes = ["Pick up from bin with tong or scooper", "Put tongs or scooper back in bin"]
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "probe_motion.py"), str(synthetic_root), "--classes", *classes,
         "--image-size", "64", "--crop", "32", "--readout", readout, "--steps", "2", "--eval-every", "2"],
        capture_output=True, text=True, timeout=600, check=False,
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stderr.strip().splitlines()[-1])
    assert report["step"] == 2 and set(report["val_accuracy"]) == set(classes)
    assert all(0.0 <= accuracy <= 1.0 for accuracy in report["val_accuracy"].values())


def load_demo():
    spec = importlib.util.spec_from_file_location("demo", EXAMPLES / "demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_demo_trains_predicts_scores_and_reports_on_a_tiny_budget(synthetic_root: Path, tmp_path: Path) -> None:
    """The whole demo path (three models, predictions through VideoPredictor, evaluation, annotated
    video and strip, report) on the tiny dataset with two batches an epoch: what ``make demo``
    runs, at a budget that only shows it runs."""
    demo = load_demo()
    profile = demo.Profile(object_scale=1.0, yolov3_epochs=1, recurrent_epochs=1, yowo_epochs=1, minutes_cap=2.0, train_batches=2)
    report = demo.run(synthetic_root, tmp_path / "demo", profile, "smoke")

    text = report.read_text(encoding="utf-8")
    for section in ("| YOLOv3 (", "| ConvLSTM-YOLO (", "| YOWO (", "### Table 1", "### Table 2", "### Table 3",
                    "study: YOWO with ResNet-50 | 0.611 | 0.913", "annotated_frames.png"):
        assert section in text
    assert (tmp_path / "demo" / "annotated.mp4").stat().st_size > 0 and (tmp_path / "demo" / "annotated_frames.png").is_file()
    for model in ("yolov3", "convlstm_yolo", "yowo"):
        assert (tmp_path / "demo" / "predict" / model / "report.md").is_file()

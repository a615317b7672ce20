"""The ``restaurant-action`` command line: data commands and LightningCLI training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from restaurant_action.cli import main


def test_synth_stats_and_anchors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "synth"
    assert main(["synth", str(root), "--videos", "2", "--frames", "120", "--size", "96x64", "--workers", "1"]) == 0
    assert "wrote 2 videos" in capsys.readouterr().out
    assert main(["stats", str(root), "--out", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    assert "labelled frames" in out and (tmp_path / "report" / "class_histogram.png").stat().st_size > 0
    assert (tmp_path / "report" / "annotated_frames.png").stat().st_size > 0
    assert main(["anchors", str(root), "-k", "3", "--image-size", "64"]) == 0
    assert "mean best IoU" in capsys.readouterr().out


def test_synth_with_chosen_balanced_actions_and_held_out_videos(tmp_path: Path) -> None:
    root = tmp_path / "chosen"
    actions = ["Operating POS", "Pick up from bin with tong or scooper", "Put tongs or scooper back in bin"]
    assert main(["synth", str(root), "--videos", "3", "--frames", "150", "--size", "96x64", "--workers", "1",
                 "--object-scale", "2", "--actions", *actions, "--balanced", "--val-videos", "1"]) == 0

    assert sorted((root / "classes.txt").read_text(encoding="utf-8").splitlines()) == sorted(actions)
    assert json.loads((root / "splits.json").read_text()) == {"train": ["cam0_000", "cam1_001"], "val": ["cam0_002"]}
    assert main(["synth", str(tmp_path / "bad"), "--videos", "1", "--frames", "30", "--actions", "Juggling"]) == 2


def test_errors_name_the_file_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", str(tmp_path / "missing")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
    assert main(["import", "cvat", str(tmp_path / "none.xml"), str(tmp_path / "out")]) == 2
    assert "error:" in capsys.readouterr().err


def test_fit_through_lightning_cli_links_the_dataset(synthetic_root: Path, tmp_path: Path) -> None:
    config = {
        "model": {"class_path": "restaurant_action.YOLOv3Module", "init_args": {"width": 0.125, "depth": 0.34}},
        "data": {"class_path": "restaurant_action.FrameDataModule",
                 "init_args": {"root": str(synthetic_root), "image_size": 64, "num_workers": 0, "batch_size": 4}},
        "trainer": {"fast_dev_run": 2, "accelerator": "cpu", "default_root_dir": str(tmp_path), "enable_progress_bar": False},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert main(["fit", "--config", str(path)]) == 0


@pytest.mark.parametrize("command", ["synth", "stats", "anchors", "import", "evaluate", "predict", "export"])
def test_every_subcommands_help_shows_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert f"example:\n  restaurant-action {command} " in capsys.readouterr().out


@pytest.mark.parametrize("command", ["fit", "validate", "test"])
def test_lightning_subcommands_help_shows_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert f"restaurant-action {command} --config" in capsys.readouterr().out


def test_predict_then_evaluate_then_export_and_predict_with_the_export(synthetic_root: Path, checkpoints: dict[str, Path],
                                                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = synthetic_root / "videos" / "cam1_001.mp4"
    assert main(["predict", str(video), "--ckpt", str(checkpoints["YOWOModule"]), "--out", str(tmp_path / "pred"),
                 "--every", "2"]) == 0
    out = capsys.readouterr().out
    assert "360 frames (180 predicted, 0 dropped)" in out and f"video:      {tmp_path / 'pred' / 'annotated.mp4'}" in out
    assert all((tmp_path / "pred" / name).is_file() for name in ("detections.json", "tubes.csv", "annotated.mp4"))
    assert main(["evaluate", str(tmp_path / "pred" / "detections.json"), str(synthetic_root), "--out", str(tmp_path / "eval")]) == 0
    assert (tmp_path / "eval" / "report.md").is_file()

    assert main(["export", str(checkpoints["ConvLSTMYOLOModule"]), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    assert f"wrote {tmp_path / 'm.onnx'}" in capsys.readouterr().out
    assert main(["predict", str(video), "--ckpt", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "onnx"), "--no-video"]) == 0
    assert "360 frames (360 predicted" in capsys.readouterr().out and not (tmp_path / "onnx" / "annotated.mp4").exists()


def test_predict_errors_name_what_is_wrong_and_exit_2(synthetic_root: Path, checkpoints: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = str(checkpoints["YOLOv3Module"])
    assert main(["predict", str(tmp_path / "none.mp4"), "--ckpt", ckpt, "--out", str(tmp_path / "a")]) == 2
    assert "none.mp4: video not found" in capsys.readouterr().err
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 64)
    assert main(["predict", str(tmp_path / "bad.mp4"), "--ckpt", ckpt, "--out", str(tmp_path / "b")]) == 2
    assert "bad.mp4" in capsys.readouterr().err
    assert main(["predict", str(synthetic_root / "videos" / "cam0_000.mp4"), "--ckpt", str(tmp_path / "no.ckpt"),
                 "--out", str(tmp_path / "c")]) == 2
    assert "no.ckpt: checkpoint not found" in capsys.readouterr().err
    assert main(["predict", "99", "--ckpt", ckpt, "--out", str(tmp_path / "d")]) == 2
    assert "cannot open camera 99" in capsys.readouterr().err

"""The evaluation report: predictions JSON + dataset folder -> report.md, metrics.json, figures."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from restaurant_action.report import (
    FramePredictions,
    ap_comparison_table,
    metrics_table,
    read_predictions,
    write_evaluation_report,
    write_predictions,
)

CLASSES = ["Squirt sauce", "Pick up a drink", "Put drink down"]
FRAMES = 24


def box(frame: int, x0: float) -> list[float]:
    return [x0 + frame, 10.0, x0 + 30.0 + frame, 50.0]


@pytest.fixture()
def dataset(tmp_path):
    """Two 24-frame 160x90 frame-folder videos; track 1 of class 0 in both, track 2 of class 1 in cam1."""
    root = tmp_path / "data"
    rows = ["video,frame,x1,y1,x2,y2,action,track"]
    for video in ("cam0", "cam1"):
        folder = root / "videos" / video
        folder.mkdir(parents=True)
        for frame in range(FRAMES):
            cv2.imwrite(str(folder / f"{frame:06d}.jpg"), np.full((90, 160, 3), 30 * frame % 255, np.uint8))
            if frame < 20:
                rows.append(f"{video},{frame},{','.join(f'{v:g}' for v in box(frame, 5.0))},{CLASSES[0]},1")
        if video == "cam1":
            rows += [f"cam1,{frame},{','.join(f'{v:g}' for v in box(frame, 90.0))},{CLASSES[1]},2" for frame in range(4, 16)]
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (root / "annotations.csv").write_text("\n".join(rows) + "\n")
    return root


def perfect_predictions(with_false_positive: bool) -> list[dict]:
    records = []
    for video in ("cam0", "cam1"):
        for frame in range(FRAMES):
            boxes, scores, labels = [], [], []
            if frame < 20:
                boxes.append(box(frame, 5.0)), scores.append(0.9), labels.append(CLASSES[0])
            if video == "cam1" and 4 <= frame < 16:
                boxes.append(box(frame, 90.0)), scores.append(0.8), labels.append(1)
            if with_false_positive and video == "cam0" and frame == 3:
                boxes.append([100.0, 50.0, 140.0, 88.0]), scores.append(0.95), labels.append(CLASSES[0])
            records.append({"video": video, "frame": frame, "boxes": boxes, "scores": scores, "labels": labels})
    return records


def test_report_of_perfect_predictions(dataset, tmp_path):
    predictions = tmp_path / "predictions.json"
    predictions.write_text(json.dumps(perfect_predictions(with_false_positive=False)))
    report = write_evaluation_report(predictions, dataset, tmp_path / "out")
    assert report == tmp_path / "out" / "report.md"
    text = report.read_text()
    for figure in ("ap_per_class", "pr_curves", "confusion", "class_histogram"):
        assert (tmp_path / "out" / "figures" / f"{figure}.png").stat().st_size > 1000
        assert f"figures/{figure}.png" in text
    assert "| frame mAP@0.5 (voc), all classes with ground truth | 1.000 |" in text
    assert "| video-mAP@0.5 | 1.000 |" in text
    assert "| YOWO classification accuracy | 1.000 |" in text
    assert "| 1 | Squirt sauce | 2 | 40 | 40 | 1.000 |" in text  # rank, clips, GT boxes, detections, AP
    numbers = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert numbers["frame"]["ap_per_class"] == [1.0, 1.0, None]
    assert numbers["class_ranking"] == [0, 1]


def test_report_counts_a_confident_false_positive(dataset, tmp_path):
    predictions = tmp_path / "predictions.json"
    predictions.write_text(json.dumps(perfect_predictions(with_false_positive=True)))
    write_evaluation_report(predictions, dataset, tmp_path / "out", class_ranking=[1, 0], top_k=(1,))
    numbers = json.loads((tmp_path / "out" / "metrics.json").read_text())
    # class 0: the false positive ranks first, then 40 hits: AP = 40/41 (all-point)
    assert numbers["frame"]["ap_per_class"][0] == pytest.approx(40 / 41)
    assert numbers["frame"]["map_top1"] == pytest.approx(1.0)  # the given ranking puts class 1 first
    assert numbers["frame"]["precision_per_class"][0] == pytest.approx(40 / 41)


def test_predictions_round_trip(tmp_path):
    records = [FramePredictions("cam0", 3, np.array([[1.0, 2.0, 3.0, 4.0]], np.float32), np.array([0.5], np.float32), np.array([2]))]
    path = write_predictions(tmp_path / "p.json", records, CLASSES)
    assert json.loads(path.read_text())[0]["labels"] == ["Put drink down"]
    (back,) = read_predictions(path, CLASSES)
    assert back.video == "cam0" and back.frame == 3 and back.labels.tolist() == [2]
    np.testing.assert_allclose(back.boxes, records[0].boxes)


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ({"video": "cam0"}, "expected a JSON list"),
        ([{"video": "cam0", "frame": 0, "boxes": []}], r"record 0: missing field\(s\) scores, labels"),
        ([{"video": "cam0", "frame": 0, "boxes": [[0, 0, 1, 1]], "scores": [0.5], "labels": ["Dance"]}], r"record 0, 'labels'\[0\]: unknown class 'Dance'"),
        ([{"video": "cam0", "frame": 0, "boxes": [[0, 0, 1, 1]], "scores": [0.5], "labels": [7]}], "neither a class name nor a class id"),
        ([{"video": "cam0", "frame": 0, "boxes": [[0, 0, 1, 1]], "scores": [], "labels": [0]}], "1 boxes, 0 scores and 1 labels"),
        ([{"video": "cam0", "frame": 0, "boxes": [[5, 0, 1, 1]], "scores": [0.5], "labels": [0]}], "not a finite xyxy box"),
        ([{"video": "cam0", "frame": -1, "boxes": [], "scores": [], "labels": []}], "non-negative integer"),
        ([{"video": "cam0", "frame": 1, "boxes": [], "scores": [], "labels": []}] * 2, "record 1: video 'cam0' frame 1 was already given in record 0"),
    ],
)
def test_bad_predictions_are_named(tmp_path, records, message):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(records))
    with pytest.raises(ValueError, match=message):
        read_predictions(path, CLASSES)


def test_unknown_video_or_frame_is_refused(dataset, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"video": "cam9", "frame": 0, "boxes": [], "scores": [], "labels": []}]))
    with pytest.raises(ValueError, match="video 'cam9' is not in dataset"):
        write_evaluation_report(path, dataset, tmp_path / "out")
    path.write_text(json.dumps([{"video": "cam0", "frame": 24, "boxes": [], "scores": [], "labels": []}]))
    with pytest.raises(ValueError, match=r"frame 24 is outside video 'cam0' \(24 frames\)"):
        write_evaluation_report(path, dataset, tmp_path / "out")


def test_ap_comparison_table_orders_marks_and_averages():
    table = ap_comparison_table(["a", "b", "c"], {"YOLOv3": [0.5, 0.2, float("nan")], "ConvLSTM-YOLO": [0.5, 0.6, 0.3]},
                                marked={"b"}, class_counts=[3, 9, 1], marked_label="motion-only pairs")
    lines = table.strip().splitlines()

    assert lines[0] == "| class | clips | YOLOv3 | ConvLSTM-YOLO | Δ (ConvLSTM-YOLO − YOLOv3) |"
    assert lines[2] == "| **★ b** | 9 | 0.200 | 0.600 | +0.400 |"  # most clips first
    assert lines[3] == "| a | 3 | 0.500 | 0.500 | +0.000 |"
    assert lines[4] == "| c | 1 | – | 0.300 | – |"
    assert lines[5] == "| **mean, ★ motion-only pairs** |  | **0.200** | **0.600** | **+0.400** |"
    assert lines[6] == "| **mean, other classes** |  | **0.500** | **0.400** | **-0.100** |"
    with pytest.raises(ValueError, match="2 AP values for 3 classes"):
        ap_comparison_table(["a", "b", "c"], {"x": [0.1, 0.2]})


def test_metrics_table_formats_numbers_text_and_missing_values():
    table = metrics_table({"ShuffleNetV2": {"mAP": 0.12345, "steps": "40", "recall": float("nan")},
                           "study": {"mAP": None}}, ["mAP", "recall", "steps"], row_label="backbone")
    assert table.splitlines() == [
        "| backbone | mAP | recall | steps |",
        "|---|---|---|---|",
        "| ShuffleNetV2 | 0.123 | – | 40 |",
        "| study | — | — | — |",
    ]

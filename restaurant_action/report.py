"""Evaluation report: a predictions JSON and a dataset in, a Markdown report with figures out.

Predictions file format (see ``docs/metrics.md``): a JSON list with one record per evaluated
frame::

    [{"video": "cam0", "frame": 12, "boxes": [[x1, y1, x2, y2], ...],
      "scores": [0.91, ...], "labels": ["Squirt sauce", ...]}, ...]

``boxes`` are absolute pixels xyxy in the video's native size; ``labels`` are class names
from ``classes.txt`` or integer class ids. Exactly the frames listed are evaluated (list a
frame with empty lists when nothing was detected); ground truth of other frames is not used.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

import numpy as np
import torch

from restaurant_action.data.annotations import ActionAnnotations
from restaurant_action.metrics import ClassificationAccuracy, FrameMAP, LocalizationRecall, VideoMAP
from restaurant_action.metrics.frame_map import threshold_key
from restaurant_action.plots import plot_ap_per_class, plot_class_histogram, plot_confusion_matrix, plot_pr_curves

logger = logging.getLogger(__name__)


@dataclass
class FramePredictions:
    """The detections of one frame.

    Attributes:
        video: the video's name.
        frame: 0-based frame index.
        boxes: ``(K, 4)`` float32 absolute xyxy pixels.
        scores: ``(K,)`` float32.
        labels: ``(K,)`` int64 class ids.
    """

    video: str
    frame: int
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


def read_predictions(path: str | Path, classes: Sequence[str]) -> list[FramePredictions]:
    """Read and check a predictions JSON file (format in the module doc).

    Args:
        path: the JSON file.
        classes: class names; position = class id.

    Raises:
        ValueError: naming the file, the record index and the field: not a list, a missing
            field, lengths that differ, a bad box or score, an unknown class, a repeated
            ``(video, frame)``.
    """
    path = Path(path)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read predictions JSON: {error}") from None
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of frame records, got {type(records).__name__}")
    class_ids = {name: i for i, name in enumerate(classes)}
    predictions: list[FramePredictions] = []
    seen: dict[tuple[str, int], int] = {}
    for index, record in enumerate(records):
        where = f"{path}, record {index}"
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected an object, got {type(record).__name__}")
        missing = [key for key in ("video", "frame", "boxes", "scores", "labels") if key not in record]
        if missing:
            raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
        video, frame = str(record["video"]), record["frame"]
        if not isinstance(frame, int) or isinstance(frame, bool) or frame < 0:
            raise ValueError(f"{where}: 'frame' must be a non-negative integer, got {frame!r}")
        if (video, frame) in seen:
            raise ValueError(f"{where}: video {video!r} frame {frame} was already given in record {seen[(video, frame)]}")
        seen[(video, frame)] = index
        try:
            boxes = np.asarray(record["boxes"], np.float32).reshape(-1, 4) if len(record["boxes"]) else np.zeros((0, 4), np.float32)
            scores = np.asarray(record["scores"], np.float32).reshape(-1)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}: 'boxes' must be [[x1, y1, x2, y2], ...] and 'scores' numbers: {error}") from None
        labels = np.array([_class_id(label, class_ids, len(classes), f"{where}, 'labels'[{k}]") for k, label in enumerate(record["labels"])], np.int64)
        if not len(boxes) == len(scores) == len(labels):
            raise ValueError(f"{where}: {len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels differ in number")
        bad = ~np.isfinite(boxes).all(1) | (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]) | ~np.isfinite(scores)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{where}: box {k} {boxes[k].tolist()} with score {scores[k]} is not a finite xyxy box (x2 >= x1, y2 >= y1) with a finite score")
        predictions.append(FramePredictions(video, frame, boxes, scores, labels))
    return predictions


def write_predictions(path: str | Path, predictions: Sequence[FramePredictions], classes: Sequence[str]) -> Path:
    """Write ``predictions`` in the JSON format ``read_predictions`` reads (labels as names)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [
        {
            "video": p.video,
            "frame": int(p.frame),
            "boxes": np.asarray(p.boxes, np.float64).reshape(-1, 4).round(2).tolist(),
            "scores": [round(float(s), 6) for s in p.scores],
            "labels": [classes[int(label)] for label in p.labels],
        }
        for p in predictions
    ]
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def write_evaluation_report(
    predictions_json: str | Path,
    dataset_root: str | Path,
    out_dir: str | Path,
    *,
    interpolation: str = "voc",
    iou_threshold: float = 0.5,
    score_threshold: float = 0.5,
    top_k: Sequence[int] = (5, 24),
    class_ranking: Sequence[int] | None = None,
    video_iou_thresholds: Sequence[float] = (0.1, 0.2, 0.5),
    title: str = "Evaluation report",
) -> Path:
    """Evaluate a predictions file against a dataset and write ``report.md`` with figures.

    Writes ``out_dir/report.md``, ``out_dir/metrics.json`` (every number of the report) and
    ``out_dir/figures/{ap_per_class,pr_curves,confusion,class_histogram}.png``.

    Args:
        predictions_json: predictions file (format in the module doc).
        dataset_root: dataset folder (``ActionAnnotations.load``).
        out_dir: output folder (created).
        interpolation: frame-AP protocol of the headline numbers, ``"voc"`` or ``"coco101"``
            (the other one is reported too).
        iou_threshold: frame IoU threshold.
        score_threshold: score threshold of the reported precision and recall.
        top_k: top-k class sets summarised.
        class_ranking: class ids most frequent first (e.g. by training clips, from the
            datamodule); ``None`` ranks by clips over the whole dataset.
        video_iou_thresholds: video-mAP ST-IoU thresholds.
        title: report heading.

    Returns:
        The path of ``report.md``.

    Raises:
        ValueError: a malformed predictions file, or a record naming a video that is not in
            the dataset or a frame outside the video.
        DatasetError: a malformed dataset.
    """
    out_dir = Path(out_dir)
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    annotations = ActionAnnotations.load(dataset_root)
    classes = annotations.classes
    num_classes = len(classes)
    predictions = read_predictions(predictions_json, classes)
    video_index = {name: i for i, name in enumerate(annotations.video_names)}
    for index, record in enumerate(predictions):
        if record.video not in video_index:
            raise ValueError(f"{predictions_json}, record {index}: video {record.video!r} is not in dataset {dataset_root}")
        length = annotations.videos[record.video].num_frames
        if record.frame >= length:
            raise ValueError(f"{predictions_json}, record {index}: frame {record.frame} is outside video {record.video!r} ({length} frames)")
    predictions.sort(key=lambda p: (video_index[p.video], p.frame))
    clip_counts = annotations.class_counts("clips")
    ranking = list(class_ranking) if class_ranking is not None else annotations.top_k_classes(num_classes)

    preds, targets = [], []
    for record in predictions:
        boxes, labels, tracks = annotations.targets(record.video, record.frame)
        preds.append({"boxes": torch.from_numpy(record.boxes), "scores": torch.from_numpy(record.scores), "labels": torch.from_numpy(record.labels)})
        targets.append({"boxes": torch.from_numpy(np.array(boxes)), "labels": torch.from_numpy(np.array(labels)), "tracks": torch.from_numpy(np.array(tracks))})
    other = "coco101" if interpolation == "voc" else "voc"
    frame_map, other_map = (
        FrameMAP(num_classes, iou_thresholds=iou_threshold, interpolation=protocol, score_threshold=score_threshold, class_ranking=ranking, top_k=top_k)
        for protocol in (interpolation, other)
    )
    localization, classification = LocalizationRecall(num_classes), ClassificationAccuracy(num_classes)
    video_map = VideoMAP(num_classes, iou_thresholds=video_iou_thresholds)
    for metric in (frame_map, other_map, localization, classification):
        metric.update(preds, targets)
    video_map.update(preds, targets, [video_index[p.video] for p in predictions], [p.frame for p in predictions])
    frame, frame_other, video = (_as_arrays(metric.compute()) for metric in (frame_map, other_map, video_map))
    localization_per_class = localization.per_class().numpy().reshape(-1)
    confusion = classification.confusion_matrix().numpy().reshape(num_classes, num_classes)
    curves = frame_map.precision_recall_curves()

    frequency = np.zeros(num_classes, np.int64)
    frequency[ranking] = np.arange(len(ranking), 0, -1)
    plot_ap_per_class(frame["ap_per_class"], figures / "ap_per_class.png", classes, frequency, top_k, title=f"Frame AP@{iou_threshold:g} ({interpolation}) per class")
    shown = [c for c in ranking if c in curves][: min(top_k, default=5)]
    plot_pr_curves(
        {classes[c]: (curves[c][1].numpy(), curves[c][0].numpy()) for c in shown},
        figures / "pr_curves.png",
        title=f"Precision-recall, top-{len(shown)} classes (IoU >= {iou_threshold:g})",
        average_precision={classes[c]: float(frame["ap_per_class"][c]) for c in shown},
    )
    plot_confusion_matrix(confusion, classes, figures / "confusion.png")
    plot_class_histogram(clip_counts, classes, figures / "class_histogram.png", title="Action clips per class", unit="clips", log_scale=True)

    summary = _summary_rows(frame, frame_other, interpolation, other, iou_threshold, score_threshold, top_k, localization.compute(), classification.compute(), video, video_iou_thresholds)
    rank_of = {c: r + 1 for r, c in enumerate(ranking)}
    num_dets = sum(len(p.labels) for p in predictions)
    lines = [
        f"# {title}",
        "",
        f"- predictions: `{predictions_json}` ({len(predictions)} frames, {num_dets} detections)",
        f"- dataset: `{dataset_root}` ({num_classes} classes, {len(annotations.video_names)} videos)",
        f"- frame AP: IoU >= {iou_threshold:g}, `{interpolation}` protocol; precision/recall at score >= {score_threshold:g};"
        f" top-k classes by {'the given ranking' if class_ranking is not None else 'clips in the whole dataset'}",
        "- definitions: docs/metrics.md",
        "",
        "## Summary",
        "",
        "| measure | value |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in summary],
        "",
        "## Per class",
        "",
        f"| rank | class | clips | GT boxes | detections | AP ({interpolation}) | P@{score_threshold:g} | R@{score_threshold:g} | best F1 (P / R at score) | loc. recall | video-AP@{video_iou_thresholds[-1]:g} |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    video_key = f"ap_per_class_{threshold_key(video_iou_thresholds[-1])}"
    for c in sorted(range(num_classes), key=lambda c: (rank_of.get(c, num_classes + 1), c)):
        best = "–" if math.isnan(frame["best_f1_per_class"][c]) else (
            f"{_fmt(frame['best_f1_per_class'][c])} ({_fmt(frame['best_f1_precision_per_class'][c])} / {_fmt(frame['best_f1_recall_per_class'][c])} at {_fmt(frame['best_f1_score_threshold_per_class'][c])})"
        )
        lines.append(
            f"| {rank_of.get(c, '–')} | {classes[c]} | {int(clip_counts[c])} | {int(frame['num_ground_truths_per_class'][c])} | {int(frame['num_detections_per_class'][c])}"
            f" | {_fmt(frame['ap_per_class'][c])} | {_fmt(frame['precision_per_class'][c])} | {_fmt(frame['recall_per_class'][c])} | {best}"
            f" | {_fmt(localization_per_class[c])} | {_fmt(video[video_key][c])} |"
        )
    lines += [
        "",
        "## Figures",
        "",
        "![AP per class](figures/ap_per_class.png)",
        "",
        "![Precision-recall curves](figures/pr_curves.png)",
        "",
        "![Confusion of localized boxes](figures/confusion.png)",
        "",
        "![Clips per class](figures/class_histogram.png)",
        "",
    ]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    numbers = {
        "frame": _jsonable(frame),
        f"frame_{other}": _jsonable(frame_other),
        "localization_recall": float(localization.compute()),
        "localization_recall_per_class": _jsonable(localization_per_class),
        "classification_accuracy": float(classification.compute()),
        "confusion_matrix": confusion.tolist(),
        "video": _jsonable(video),
        "classes": classes,
        "class_ranking": ranking,
    }
    (out_dir / "metrics.json").write_text(json.dumps(numbers, indent=1), encoding="utf-8")
    logger.info("wrote %s", report)
    return report


def ap_comparison_table(
    class_names: Sequence[str],
    ap_by_model: Mapping[str, Sequence[float] | np.ndarray],
    marked: Collection[str] = (),
    class_counts: Sequence[int] | None = None,
    marked_label: str = "marked",
) -> str:
    """Markdown table of per-class AP, one column per model, and the last model's gain over the first.

    Args:
        class_names: ``(C,)`` names in class-id order.
        ap_by_model: model name -> ``(C,)`` AP (NaN: no ground truth); the first model is the
            reference of the Δ column.
        marked: class names set in bold with a ★ (e.g. the motion-only pairs); they get their
            own mean row.
        class_counts: ``(C,)`` frequency (e.g. training clips) shown in a column and ordering
            the rows, most first.
        marked_label: what the ★ classes are, for the mean row.

    Returns:
        The table, with mean rows for the marked classes, the others and all classes.
    """
    names = list(class_names)
    columns = {model: np.asarray(ap, np.float64).reshape(-1) for model, ap in ap_by_model.items()}
    for model, ap in columns.items():
        if len(ap) != len(names):
            raise ValueError(f"{model}: {len(ap)} AP values for {len(names)} classes")
    models = list(columns)
    first, last = columns[models[0]], columns[models[-1]]
    order = list(range(len(names)))
    if class_counts is not None:
        order.sort(key=lambda c: (-int(class_counts[c]), c))
    header = ["class", *(["clips"] if class_counts is not None else []), *models, f"Δ ({models[-1]} − {models[0]})"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in order:
        label = f"**★ {names[c]}**" if names[c] in marked else names[c]
        count = [str(int(class_counts[c]))] if class_counts is not None else []
        lines.append("| " + " | ".join([label, *count, *(_fmt(columns[m][c]) for m in models), _signed(last[c] - first[c])]) + " |")
    is_marked = np.array([name in marked for name in names])
    for label, rows in ((f"mean, ★ {marked_label}", is_marked), ("mean, other classes", ~is_marked), ("mean, all classes", np.ones(len(names), bool))):
        if rows.any():
            means = {m: _nanmean(columns[m][rows]) for m in models}
            blank = [""] if class_counts is not None else []
            lines.append("| " + " | ".join([f"**{label}**", *blank, *(f"**{_fmt(means[m])}**" for m in models),
                                            f"**{_signed(means[models[-1]] - means[models[0]])}**"]) + " |")
    return "\n".join(lines) + "\n"


def metrics_table(
    rows: Mapping[str, Mapping[str, float | str | None]],
    columns: Sequence[str],
    row_label: str = "run",
    missing: str = "—",
) -> str:
    """Markdown table of a few measures per run, e.g. one row per backbone or setting.

    Args:
        rows: row name -> column name -> value; a float is written with 3 decimals (NaN as
            ``–``, no value measured), a string as it is; ``None`` or an absent column as
            ``missing``.
        columns: the measure columns, in order.
        row_label: header of the first column.
        missing: text of a value that is not known (e.g. a published number not found).

    Returns:
        The table, rows in the given order.

    Example::

        >>> print(metrics_table({"ours": {"mAP": 0.1234}, "study": {"mAP": None}}, ["mAP"]), end="")
        | run | mAP |
        |---|---|
        | ours | 0.123 |
        | study | — |
    """
    header = [row_label, *columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, values in rows.items():
        cells = []
        for column in columns:
            value = values.get(column)
            cells.append(missing if value is None else value if isinstance(value, str) else _fmt(value))
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines) + "\n"


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if len(finite) else math.nan


def _signed(value: float) -> str:
    return "–" if math.isnan(value) else f"{round(value, 3) + 0.0:+.3f}"  # + 0.0: no "-0.000"


def _summary_rows(
    frame: dict[str, np.ndarray],
    frame_other: dict[str, np.ndarray],
    interpolation: str,
    other: str,
    iou_threshold: float,
    score_threshold: float,
    top_k: Sequence[int],
    localization: torch.Tensor,
    classification: torch.Tensor,
    video: dict[str, np.ndarray],
    video_iou_thresholds: Sequence[float],
) -> list[tuple[str, str]]:
    rows = [(f"frame mAP@{iou_threshold:g} ({interpolation}), all classes with ground truth", _fmt(frame["map"]))]
    rows += [(f"frame mAP@{iou_threshold:g} ({interpolation}), top-{k}", _fmt(frame[f"map_top{k}"])) for k in top_k]
    rows.append((f"frame mAP@{iou_threshold:g} ({other})", _fmt(frame_other["map"])))
    rows.append((f"precision / recall at score >= {score_threshold:g}", f"{_fmt(frame['precision'])} / {_fmt(frame['recall'])}"))
    rows += [(f"precision / recall at score >= {score_threshold:g}, top-{k}", f"{_fmt(frame[f'precision_top{k}'])} / {_fmt(frame[f'recall_top{k}'])}") for k in top_k]
    rows.append(("best-F1 precision / recall (per class, mean)", f"{_fmt(frame['best_f1_precision'])} / {_fmt(frame['best_f1_recall'])}"))
    rows.append(("YOWO localization recall (IoU > 0.5, score > 0.005)", _fmt(localization)))
    rows.append(("YOWO classification accuracy", _fmt(classification)))
    rows += [(f"video-mAP@{t:g}", _fmt(video[f"map_{threshold_key(t)}"])) for t in video_iou_thresholds]
    return rows


def _as_arrays(result: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Metric results as numpy; per-class entries stay 1-D (torchmetrics squeezes one-element results)."""
    return {key: value.numpy().reshape(-1) if "per_class" in key else value.numpy() for key, value in result.items()}


def _class_id(label: Any, class_ids: dict[str, int], num_classes: int, where: str) -> int:
    if isinstance(label, str):
        if label not in class_ids:
            raise ValueError(f"{where}: unknown class {label!r} (not in classes.txt)")
        return class_ids[label]
    if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < num_classes:
        return label
    raise ValueError(f"{where}: {label!r} is neither a class name nor a class id in [0, {num_classes})")


def _fmt(value: Any) -> str:
    value = float(value)
    return "–" if math.isnan(value) else f"{value:.3f}"


def _jsonable(values: Any) -> Any:
    """NaN-free JSON values (NaN becomes null)."""
    if isinstance(values, dict):
        return {key: _jsonable(value) for key, value in values.items()}
    array = np.asarray(values, np.float64)
    if array.ndim == 0:
        return None if math.isnan(array) else float(array)
    return [None if math.isnan(v) else float(v) for v in array.tolist()]

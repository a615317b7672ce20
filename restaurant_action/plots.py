"""Figures for datasets and evaluations, written as PNG files (matplotlib, headless Agg backend).

* ``plot_class_histogram``: examples per class, sorted, for a long-tailed class list.
* ``plot_ap_per_class``: AP per class sorted by class frequency, top-5/top-24 marked.
* ``plot_ap_comparison``: AP per class of several models side by side, some classes marked.
* ``plot_pr_curves``: precision-recall curves of a few classes.
* ``plot_confusion_matrix``: predicted vs true action of localized boxes.
* ``draw_boxes`` / ``save_annotated_frames``: boxes and labels drawn on frames (OpenCV).
"""

from __future__ import annotations

import logging
import math
import zlib
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

logger = logging.getLogger(__name__)

TOP_K_MARKS = (5, 24)


def plot_class_histogram(
    counts: Sequence[int],
    class_names: Sequence[str],
    path: str | Path,
    title: str = "Examples per class",
    unit: str = "clips",
    log_scale: bool = False,
) -> Path:
    """Horizontal bars of ``counts`` per class, most frequent on top.

    Args:
        counts: ``(C,)`` examples of each class.
        class_names: ``(C,)`` names.
        path: PNG file to write (folders are created).
        title: figure title.
        unit: what was counted (axis label), e.g. ``"clips"``, ``"boxes"``, ``"frames"``.
        log_scale: logarithmic count axis (helps with a long tail).

    Returns:
        ``path``.
    """
    counts = np.asarray(counts, np.int64).reshape(-1)
    _check_names(len(counts), class_names)
    order = sorted(range(len(counts)), key=lambda c: (-counts[c], c))
    figure, axes = plt.subplots(figsize=(8, 1.2 + 0.28 * max(len(counts), 1)))
    positions = np.arange(len(order))
    bars = axes.barh(positions, counts[order], color="#4c72b0")
    axes.set_yticks(positions, [class_names[c] for c in order], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel(f"{unit} per class")
    if log_scale:
        axes.set_xscale("symlog", linthresh=1)
    axes.bar_label(bars, labels=[str(int(counts[c])) for c in order], fontsize=7, padding=2)
    axes.set_title(f"{title} (total {int(counts.sum())} {unit})")
    axes.margins(x=0.12)
    return _save(figure, path)


def plot_ap_per_class(
    ap: Mapping[str, float] | Sequence[float] | np.ndarray,
    path: str | Path,
    class_names: Sequence[str] | None = None,
    class_counts: Sequence[int] | None = None,
    top_k: Sequence[int] = TOP_K_MARKS,
    title: str = "Average precision per class",
) -> Path:
    """Bars of AP per class, most frequent class first, with the top-k boundaries marked.

    Args:
        ap: class name -> AP, or ``(C,)`` AP values in class-id order (then ``class_names``
            is required). NaN (no ground truth) is drawn as an empty, hatched slot.
        path: PNG file to write.
        class_names: names for sequence input.
        class_counts: ``(C,)`` frequency (e.g. training clips) that orders the bars, most
            first, ties by the given order; ``None`` keeps the given order.
        top_k: after the k-th bar a dashed line and ``top-k`` label are drawn, and each
            group's mean AP is given in the legend.
        title: figure title.

    Returns:
        ``path``.
    """
    if isinstance(ap, Mapping):
        names, values = list(ap), np.array([float(v) for v in ap.values()], np.float64)
    else:
        values = np.asarray(ap, np.float64).reshape(-1)
        if class_names is None:
            raise ValueError("class_names is required when ap is a sequence")
        names = list(class_names)
    _check_names(len(values), names)
    order = list(range(len(values)))
    if class_counts is not None:
        counts = np.asarray(class_counts, np.int64).reshape(-1)
        if len(counts) != len(values):
            raise ValueError(f"class_counts has {len(counts)} entries for {len(values)} classes")
        order.sort(key=lambda c: (-counts[c], c))
    shown = values[order]
    missing = np.isnan(shown)
    figure, axes = plt.subplots(figsize=(max(6.0, 0.32 * len(order) + 2), 4.8))
    positions = np.arange(len(order))
    colors = ["#4c72b0" if rank < min(top_k, default=0) else "#55a868" if rank < max(top_k, default=0) else "#8c8c8c" for rank in range(len(order))]
    axes.bar(positions[~missing], shown[~missing], color=[c for c, m in zip(colors, missing) if not m])
    axes.bar(positions[missing], np.ones(missing.sum()), color="none", edgecolor="#bbbbbb", hatch="//", label="no ground truth")
    # Classes with zero frequency (e.g. no training clip) are never part of a top-k set.
    ranked = np.asarray(class_counts, np.int64).reshape(-1)[order] > 0 if class_counts is not None else np.ones(len(order), bool)
    for k in sorted(set(int(k) for k in top_k)):
        if k < len(order):
            axes.axvline(k - 0.5, color="black", linestyle="--", linewidth=1)
            axes.text(k - 0.45, 1.02, f"top-{k}", fontsize=8, va="bottom")
        in_top = ranked[:k] & ~missing[:k]
        mean = float(np.mean(shown[:k][in_top])) if in_top.any() else math.nan
        axes.plot([], [], " ", label=f"mean AP top-{k}: {mean:.3f}")
    axes.set_xticks(positions, [names[c] for c in order], rotation=75, ha="right", fontsize=7)
    axes.set_ylim(0, 1.1)
    axes.set_ylabel("AP")
    axes.set_title(title + (" (by class frequency)" if class_counts is not None else ""))
    axes.legend(fontsize=8, loc="upper right")
    return _save(figure, path)


def plot_ap_comparison(
    ap_by_model: Mapping[str, Sequence[float] | np.ndarray],
    class_names: Sequence[str],
    path: str | Path,
    marked: Sequence[str] = (),
    title: str = "Average precision per class",
) -> Path:
    """Grouped bars of AP per class, one bar per model; ``marked`` classes get a ★ and a shaded slot.

    Args:
        ap_by_model: model name -> ``(C,)`` AP in class-id order (NaN: no ground truth, no bar).
        class_names: ``(C,)`` names.
        path: PNG file to write.
        marked: class names to mark (e.g. the motion-only pairs).
        title: figure title.

    Returns:
        ``path``.
    """
    columns = {model: np.asarray(ap, np.float64).reshape(-1) for model, ap in ap_by_model.items()}
    for model, ap in columns.items():
        _check_names(len(ap), list(class_names))
    positions = np.arange(len(class_names))
    width = 0.8 / max(1, len(columns))
    figure, axes = plt.subplots(figsize=(max(6.0, 0.6 * len(class_names) + 2), 4.8))
    for index, name in enumerate(class_names):
        if name in marked:
            axes.axvspan(index - 0.45, index + 0.45, color="#fde9c9", zorder=0)
    for k, (model, ap) in enumerate(columns.items()):
        shown = ~np.isnan(ap)
        axes.bar(positions[shown] - 0.4 + width * (k + 0.5), ap[shown], width, label=model, zorder=2)
    labels = [f"★ {name}" if name in marked else name for name in class_names]
    axes.set_xticks(positions, labels, rotation=75, ha="right", fontsize=7)
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("AP")
    axes.set_title(title)
    axes.legend(fontsize=8, loc="upper right")
    return _save(figure, path)


def plot_pr_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    title: str = "Precision-recall curves",
    average_precision: Mapping[str, float] | None = None,
) -> Path:
    """Precision-recall curves, one line per class.

    Args:
        curves: class name -> ``(recall (N,), precision (N,))`` after each ranked detection.
        path: PNG file to write.
        title: figure title.
        average_precision: class name -> AP, shown in the legend.

    Returns:
        ``path``.
    """
    figure, axes = plt.subplots(figsize=(6.5, 5))
    for name, (recall, precision) in curves.items():
        recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
        label = name if average_precision is None or name not in average_precision else f"{name} (AP {average_precision[name]:.3f})"
        axes.step(np.r_[0.0, recall], np.r_[precision[:1] if len(precision) else [1.0], precision], where="post", label=label)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.05)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if curves:
        axes.legend(fontsize=7, loc="lower left")
    return _save(figure, path)


def plot_confusion_matrix(
    matrix: np.ndarray | Sequence[Sequence[int]],
    class_names: Sequence[str],
    path: str | Path,
    normalize: bool = True,
    title: str = "Predicted vs true action of localized boxes",
) -> Path:
    """Confusion matrix image: rows the true class, columns the predicted class.

    Args:
        matrix: ``(C, C)`` counts.
        class_names: ``(C,)`` names.
        path: PNG file to write.
        normalize: show each row as fractions of its total (rows without boxes stay 0).
        title: figure title.

    Returns:
        ``path``.
    """
    matrix = np.asarray(matrix, np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be square (C, C), got shape {matrix.shape}")
    _check_names(len(matrix), class_names)
    shown = matrix / np.maximum(matrix.sum(1, keepdims=True), 1) if normalize else matrix
    size = max(5.0, 0.3 * len(matrix) + 2.5)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    image = axes.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ticks = np.arange(len(matrix))
    axes.set_xticks(ticks, class_names, rotation=75, ha="right", fontsize=7)
    axes.set_yticks(ticks, class_names, fontsize=7)
    axes.set_xlabel("predicted action (best-IoU detection)")
    axes.set_ylabel("true action")
    if len(matrix) <= 30:
        for row, col in zip(*np.nonzero(matrix)):
            value = f"{shown[row, col]:.2f}" if normalize else str(int(matrix[row, col]))
            axes.text(col, row, value, ha="center", va="center", fontsize=6, color="white" if shown[row, col] > 0.5 * shown.max() else "black")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of row" if normalize else "boxes")
    axes.set_title(title)
    return _save(figure, path)


def draw_boxes(
    frame: np.ndarray,
    boxes: np.ndarray,
    labels: Sequence[str],
    scores: Sequence[float] | None = None,
    color_keys: Sequence[str] | None = None,
) -> np.ndarray:
    """A copy of ``frame`` with ``boxes`` outlined and labelled (OpenCV).

    Args:
        frame: ``(H, W, 3)`` uint8 RGB.
        boxes: ``(K, 4)`` absolute xyxy pixels.
        labels: ``(K,)`` text per box (e.g. the class name); the colour follows the text.
        scores: ``(K,)`` optional, appended to the text as ``0.87``.
        color_keys: ``(K,)`` optional texts the colours follow instead of ``labels`` (e.g. the
            action of a label that also names a track).

    Returns:
        ``(H, W, 3)`` uint8 RGB, a new array.
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8 RGB, got shape {frame.shape} dtype {frame.dtype}")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(labels) != len(boxes) or (scores is not None and len(scores) != len(boxes)):
        raise ValueError(f"need one label (and score) per box: {len(boxes)} boxes, {len(labels)} labels, {None if scores is None else len(scores)} scores")
    canvas = np.ascontiguousarray(frame.copy())
    height, width = canvas.shape[:2]
    thickness = max(1, round(min(height, width) / 240))
    font_scale = max(0.35, min(height, width) / 900)
    keys = labels if color_keys is None else color_keys
    for index, (box, label) in enumerate(zip(boxes, labels)):
        color = _color(str(keys[index]))
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        text = str(label) if scores is None else f"{label} {float(scores[index]):.2f}"
        (text_width, text_height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        top = y1 - text_height - baseline - 2 if y1 - text_height - baseline - 2 >= 0 else y1
        left = max(0, min(x1, width - text_width - 2))  # keep the label inside the frame
        cv2.rectangle(canvas, (left, top), (left + text_width + 2, top + text_height + baseline + 2), color, -1)
        cv2.putText(canvas, text, (left + 1, top + text_height + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def save_annotated_frames(
    frames: Sequence[np.ndarray],
    boxes_per_frame: Sequence[np.ndarray],
    labels_per_frame: Sequence[Sequence[str]],
    path: str | Path,
    columns: int = 4,
    scores_per_frame: Sequence[Sequence[float] | None] | None = None,
    titles: Sequence[str] | None = None,
) -> Path:
    """A PNG grid of frames with their boxes drawn (``draw_boxes``).

    Args:
        frames: ``N`` frames, each ``(H, W, 3)`` uint8 RGB (sizes may differ).
        boxes_per_frame: ``N`` arrays ``(K_i, 4)`` absolute xyxy.
        labels_per_frame: ``N`` lists of ``K_i`` texts.
        path: PNG file to write.
        columns: frames per row.
        scores_per_frame: optional ``N`` lists of ``K_i`` scores.
        titles: optional ``N`` captions.

    Returns:
        ``path``.
    """
    if not frames:
        raise ValueError("no frames to save")
    if len(boxes_per_frame) != len(frames) or len(labels_per_frame) != len(frames):
        raise ValueError(f"need boxes and labels for each of the {len(frames)} frames, got {len(boxes_per_frame)} and {len(labels_per_frame)}")
    columns = max(1, min(columns, len(frames)))
    rows = math.ceil(len(frames) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.2 * rows), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= len(frames):
            continue
        scores = scores_per_frame[index] if scores_per_frame is not None else None
        axis.imshow(draw_boxes(frames[index], boxes_per_frame[index], labels_per_frame[index], scores))
        if titles is not None:
            axis.set_title(titles[index], fontsize=8)
    return _save(figure, path)


def _check_names(count: int, names: Sequence[str]) -> None:
    if len(names) != count:
        raise ValueError(f"need one class name per value: {count} values, {len(names)} names")


def _color(text: str) -> tuple[int, int, int]:
    """A stable, saturated RGB colour for a label."""
    hue = zlib.crc32(text.encode("utf-8")) % 180
    hsv = np.array([[[hue, 200, 220]]], np.uint8)
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def _save(figure: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    logger.debug("wrote %s", path)
    return path

"""Plots: every figure is a real PNG; drawn boxes land where the boxes are."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from restaurant_action import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000


def test_class_histogram_signature_and_output(tmp_path):
    parameters = list(inspect.signature(plots.plot_class_histogram).parameters)
    assert parameters[:5] == ["counts", "class_names", "path", "title", "unit"]
    assert inspect.signature(plots.plot_class_histogram).parameters["unit"].default == "clips"
    path = plots.plot_class_histogram([3, 120, 0, 9], ["a", "b", "c", "d"], tmp_path / "sub" / "hist.png", log_scale=True)
    assert path == tmp_path / "sub" / "hist.png" and is_png(path)
    with pytest.raises(ValueError, match="one class name per value"):
        plots.plot_class_histogram([1, 2], ["a"], tmp_path / "bad.png")


def test_ap_per_class_from_mapping_or_sequence(tmp_path):
    assert is_png(plots.plot_ap_per_class({"a": 0.5, "b": float("nan"), "c": 0.9}, tmp_path / "ap1.png", top_k=(1, 2)))
    values = np.linspace(0, 1, 30)
    values[7] = np.nan
    path = plots.plot_ap_per_class(values, tmp_path / "ap2.png", [f"class {i}" for i in range(30)], class_counts=np.arange(30)[::-1])
    assert is_png(path)
    with pytest.raises(ValueError, match="class_names is required"):
        plots.plot_ap_per_class([0.1, 0.2], tmp_path / "ap3.png")


def test_pr_curves_and_confusion(tmp_path):
    curves = {"a": (np.array([0.2, 0.4, 0.4]), np.array([1.0, 1.0, 0.66])), "b": (np.zeros(0), np.zeros(0))}
    assert is_png(plots.plot_pr_curves(curves, tmp_path / "pr.png", average_precision={"a": 0.4}))
    matrix = np.array([[5, 1, 0], [0, 0, 0], [2, 0, 7]])
    assert is_png(plots.plot_confusion_matrix(matrix, ["a", "b", "c"], tmp_path / "confusion.png"))
    with pytest.raises(ValueError, match="square"):
        plots.plot_confusion_matrix(np.zeros((2, 3)), ["a", "b"], tmp_path / "bad.png")


def test_draw_boxes_returns_an_annotated_copy():
    frame = np.zeros((120, 160, 3), np.uint8)
    drawn = plots.draw_boxes(frame, np.array([[20.0, 40.0, 100.0, 110.0]]), ["Squirt sauce"], [0.87])
    assert drawn.shape == frame.shape and drawn.dtype == np.uint8
    assert frame.sum() == 0  # the input is untouched
    assert drawn[75, 20].any() and drawn[110, 60].any()  # left and bottom edges
    assert not drawn[75, 60].any()  # inside stays empty
    assert not drawn[5, 150].any()
    with pytest.raises(ValueError, match="one label"):
        plots.draw_boxes(frame, np.zeros((2, 4)), ["a"])
    with pytest.raises(ValueError, match="uint8 RGB"):
        plots.draw_boxes(np.zeros((10, 10)), np.zeros((0, 4)), [])


def test_save_annotated_frames_grid(tmp_path):
    frames = [np.full((60, 80, 3), 40 * i, np.uint8) for i in range(5)]
    boxes = [np.array([[5.0, 5.0, 40.0, 50.0]]) for _ in frames]
    labels = [["Pick up a drink"] for _ in frames]
    path = plots.save_annotated_frames(frames, boxes, labels, tmp_path / "grid.png", columns=3, titles=[f"frame {i}" for i in range(5)])
    assert is_png(path)
    with pytest.raises(ValueError, match="need boxes and labels"):
        plots.save_annotated_frames(frames, boxes[:2], labels, tmp_path / "bad.png")


def test_top_k_means_skip_classes_without_frequency(tmp_path) -> None:
    """A class with zero frequency (no training clip) sorts last and never enters a top-k mean."""
    import matplotlib.pyplot as plt

    from restaurant_action.plots import plot_ap_per_class

    captured = {}
    original = plt.Axes.legend

    def keep_labels(self, *args, **kwargs):
        captured["labels"] = [h.get_label() for h in self.get_legend_handles_labels()[0]]
        return original(self, *args, **kwargs)

    plt.Axes.legend = keep_labels
    try:
        plot_ap_per_class([0.8, 0.4, 0.0], tmp_path / "ap.png", ["a", "b", "c"], [3, 2, 0], top_k=(2, 24))
    finally:
        plt.Axes.legend = original
    assert "mean AP top-2: 0.600" in captured["labels"]
    assert "mean AP top-24: 0.600" in captured["labels"]


def test_ap_comparison_plot(tmp_path):
    names = ["a", "b", "c"]
    path = plots.plot_ap_comparison({"x": [0.1, 0.5, np.nan], "y": [0.2, 0.4, 0.9]}, names, tmp_path / "cmp.png", marked=["b"])
    assert path.stat().st_size > 1000
    with pytest.raises(ValueError):
        plots.plot_ap_comparison({"x": [0.1, 0.5]}, names, tmp_path / "bad.png")

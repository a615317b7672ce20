"""Dataset statistics and the dataset report (class histogram, clips per class, annotated frames)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from restaurant_action.data.annotations import ActionAnnotations
from restaurant_action.data.video import open_video


@dataclass(frozen=True)
class DatasetStats:
    """Counts that describe a dataset.

    Attributes:
        num_videos: videos in the dataset.
        num_frames: frames over all videos.
        labelled_fraction: fraction of frames with at least one box.
        num_boxes: annotation rows.
        clips_per_class: ``(C,)`` action instances per class.
        frames_per_class: ``(C,)`` frames holding each class.
        median_box_area_fraction: median box area over frame area.
    """

    num_videos: int
    num_frames: int
    labelled_fraction: float
    num_boxes: int
    clips_per_class: np.ndarray
    frames_per_class: np.ndarray
    median_box_area_fraction: float

    @property
    def imbalance(self) -> float:
        """Clips of the most frequent class over clips of the rarest class that has any."""
        present = self.clips_per_class[self.clips_per_class > 0]
        return float(present.max() / present.min()) if present.size else float("nan")


def dataset_stats(annotations: ActionAnnotations) -> DatasetStats:
    """Compute ``DatasetStats`` of ``annotations``."""
    infos = annotations.videos
    areas = np.array([infos[n].width * infos[n].height for n in annotations.video_names], np.float64)
    box_area = (annotations.boxes[:, 2] - annotations.boxes[:, 0]) * (annotations.boxes[:, 3] - annotations.boxes[:, 1])
    return DatasetStats(
        num_videos=len(infos),
        num_frames=sum(info.num_frames for info in infos.values()),
        labelled_fraction=annotations.labelled_fraction(),
        num_boxes=len(annotations),
        clips_per_class=annotations.class_counts("clips"),
        frames_per_class=annotations.class_counts("frames"),
        median_box_area_fraction=float(np.median(box_area / areas[annotations.video_ids])) if len(annotations) else 0.0,
    )


def write_dataset_report(annotations: ActionAnnotations, out_dir: str | Path, num_example_frames: int = 8, seed: int = 0) -> Path:
    """Write ``dataset.md`` with the class table, ``class_histogram.png`` and ``annotated_frames.png``.

    Args:
        annotations: the dataset.
        out_dir: output folder (created).
        num_example_frames: labelled frames drawn with their boxes, spread over the classes.
        seed: which example frames.

    Returns:
        Path of ``dataset.md``.
    """
    from restaurant_action.plots import plot_class_histogram, save_annotated_frames

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = dataset_stats(annotations)
    plot_class_histogram(stats.clips_per_class, annotations.classes, out_dir / "class_histogram.png", unit="clips")
    frames, boxes, labels = _example_frames(annotations, num_example_frames, seed)
    save_annotated_frames(frames, boxes, labels, out_dir / "annotated_frames.png")
    order = np.argsort(-stats.clips_per_class, kind="stable")
    lines = [
        "# Dataset",
        "",
        f"- videos: {stats.num_videos}, frames: {stats.num_frames}, boxes: {stats.num_boxes}",
        f"- labelled frames: {stats.labelled_fraction:.1%} (the rest hold no action)",
        f"- class imbalance (most / fewest clips): {stats.imbalance:.1f}x",
        f"- median box area: {stats.median_box_area_fraction:.2%} of the frame",
        "",
        "![clips per class](class_histogram.png)",
        "",
        "| rank | action | clips | frames |",
        "|---:|---|---:|---:|",
    ]
    lines += [
        f"| {rank} | {annotations.classes[c]} | {stats.clips_per_class[c]} | {stats.frames_per_class[c]} |"
        for rank, c in enumerate(order, start=1)
    ]
    lines += ["", "![annotated frames](annotated_frames.png)", ""]
    path = out_dir / "dataset.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _example_frames(annotations: ActionAnnotations, count: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray], list[list[str]]]:
    """Labelled frames with their boxes and class names, one per class while classes last."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label in np.argsort(-annotations.class_counts("clips"), kind="stable"):
        rows = np.flatnonzero(annotations.labels == label)
        if rows.size and len(chosen) < count:
            chosen.append(int(rng.choice(rows)))
    frames, boxes, labels = [], [], []
    for row in chosen:
        video = annotations.video_names[annotations.video_ids[row]]
        frame = int(annotations.frames[row])
        frames.append(open_video(annotations.videos[video].path).frames([frame])[0])
        frame_boxes, frame_labels, _ = annotations.targets(video, frame)
        boxes.append(frame_boxes)
        labels.append([annotations.classes[c] for c in frame_labels])
    return frames, boxes, labels

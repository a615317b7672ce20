"""Validation and flattening of per-frame detection inputs, and DDP-safe list states.

Every metric takes ``preds`` and ``targets`` as lists with one dict per frame, like
torchmetrics' detection metrics. They are checked once here and flattened into columns (one
entry per box) plus ``counts (F,)``, the number of boxes of each frame: the frame index in
compressed form, which stays correct when ranks' states are concatenated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ContextManager, Mapping, Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

IGNORE_KEYS = ("iscrowd", "difficult")


@dataclass
class BoxColumns:
    """The boxes of a batch of frames, flattened.

    Attributes:
        boxes: ``(N, 4)`` float32, absolute xyxy.
        labels: ``(N,)`` int64 class ids.
        counts: ``(F,)`` int64, boxes per frame (frames in input order).
        scores: ``(N,)`` float32 (detections only).
        ignore: ``(N,)`` uint8, 1 for a crowd/difficult ground truth (targets only).
        tracks: ``(N,)`` int64 track ids (targets, when asked for).
    """

    boxes: Tensor
    labels: Tensor
    counts: Tensor
    scores: Tensor | None = None
    ignore: Tensor | None = None
    tracks: Tensor | None = None

    @property
    def frame_of_box(self) -> Tensor:
        """``(N,)`` int64: the 0-based position in the batch of each box's frame."""
        return torch.repeat_interleave(torch.arange(len(self.counts), device=self.counts.device), self.counts)


def check_batch(preds: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]]) -> None:
    """Raise ``ValueError`` unless ``preds`` and ``targets`` are lists of dicts of equal length."""
    for name, value in (("preds", preds), ("targets", targets)):
        if isinstance(value, Mapping) or not isinstance(value, Sequence):
            raise ValueError(f"{name} must be a list with one dict per frame, got {type(value).__name__}")
    if len(preds) != len(targets):
        raise ValueError(f"preds and targets must have one entry per frame: got {len(preds)} preds and {len(targets)} targets")


def flatten_detections(preds: Sequence[Mapping[str, Any]], num_classes: int) -> BoxColumns:
    """Check and flatten detections: each dict holds ``boxes (K, 4)``, ``scores (K,)``, ``labels (K,)``.

    Raises:
        ValueError: naming the frame index, the field and the box: a missing field, a wrong
            shape, a non-finite coordinate, ``x2 < x1`` or ``y2 < y1``, a NaN or infinite
            score, a label that is not an integer in ``[0, num_classes)``.
    """
    return _flatten("preds", preds, num_classes, with_scores=True)


def flatten_targets(targets: Sequence[Mapping[str, Any]], num_classes: int, with_tracks: bool = False) -> BoxColumns:
    """Check and flatten ground truth: ``boxes (M, 4)``, ``labels (M,)``, optional ``iscrowd``/``difficult (M,)``.

    Args:
        targets: one dict per frame.
        num_classes: labels must lie in ``[0, num_classes)``.
        with_tracks: require ``tracks (M,)`` integer track ids (video-mAP).

    Raises:
        ValueError: as ``flatten_detections``, naming the frame index and field.
    """
    return _flatten("targets", targets, num_classes, with_scores=False, with_tracks=with_tracks)


@torch.no_grad()
def _flatten(kind: str, items: Sequence[Mapping[str, Any]], num_classes: int, with_scores: bool, with_tracks: bool = False) -> BoxColumns:
    per_box = ["labels"] + (["scores"] if with_scores else []) + (["tracks"] if with_tracks else [])
    parts: dict[str, list[Tensor]] = {name: [] for name in ["boxes", *per_box]}
    flagged: list[tuple[int, Tensor]] = []
    counts: list[int] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValueError(f"{kind}[{index}] must be a dict, got {type(item).__name__}")
        boxes = _field(kind, index, item, "boxes")
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            if boxes.numel() != 0:
                raise ValueError(f"{kind}[{index}]['boxes'] must have shape (K, 4), got {tuple(boxes.shape)}")
            boxes = boxes.reshape(0, 4)
        count = boxes.shape[0]
        parts["boxes"].append(boxes)
        fields = [(name, _field(kind, index, item, name)) for name in per_box]
        if not with_scores:
            ignore_key = next((key for key in IGNORE_KEYS if key in item), None)
            if ignore_key is not None:
                fields.append((ignore_key, _field(kind, index, item, ignore_key)))
                flagged.append((index, fields[-1][1]))
        for name, value in fields:
            if value.ndim != 1 or value.shape[0] != count:
                if value.numel() != 0 or count != 0:
                    raise ValueError(f"{kind}[{index}]['{name}'] must have shape ({count},), one entry per box, got {tuple(value.shape)}")
                value = value.reshape(0)
            if name in parts:
                parts[name].append(value)
        counts.append(count)
    device = parts["boxes"][0].device if parts["boxes"] else torch.device("cpu")
    count_tensor = torch.tensor(counts, dtype=torch.int64, device=device)
    boxes = torch.cat(parts["boxes"]).to(torch.float32) if counts else torch.zeros(0, 4, device=device)
    columns = BoxColumns(boxes=boxes, labels=_integers(kind, "labels", parts["labels"], count_tensor), counts=count_tensor)
    if with_scores:
        columns.scores = torch.cat(parts["scores"]).to(torch.float32) if counts else torch.zeros(0, device=device)
    if with_tracks:
        columns.tracks = _integers(kind, "tracks", parts["tracks"], count_tensor)
    if not with_scores:
        columns.ignore = torch.zeros(len(boxes), dtype=torch.uint8, device=device)
        starts = (torch.cumsum(count_tensor, 0) - count_tensor).tolist() if flagged else []
        for index, flags in flagged:
            columns.ignore[starts[index] : starts[index] + counts[index]] = (flags.reshape(-1) != 0).to(torch.uint8)
    _check_values(kind, columns, num_classes)
    return columns


def _field(kind: str, index: int, item: Mapping[str, Any], name: str) -> Tensor:
    try:
        value = item[name]
    except KeyError:
        raise ValueError(f"{kind}[{index}] has no '{name}' field") from None
    if isinstance(value, Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{kind}[{index}]['{name}'] is not a tensor or array: {error}") from None


def _integers(kind: str, name: str, parts: list[Tensor], counts: Tensor) -> Tensor:
    """Concatenate integer ids; float values must be whole numbers, bool is refused."""
    if not parts:
        return torch.zeros(0, dtype=torch.int64, device=counts.device)
    value = torch.cat(parts)
    if value.dtype == torch.bool or value.is_complex():
        frame = next(i for i, part in enumerate(parts) if part.dtype == torch.bool or part.is_complex())
        raise ValueError(f"{kind}[{frame}]['{name}'] must hold integers, got dtype {parts[frame].dtype}")
    if value.is_floating_point():
        _fail(kind, name, counts, ~torch.isfinite(value) | (value != value.round()), lambda r: f"= {value[r].item()} is not an integer")
    return value.to(torch.int64)


def _fail(kind: str, field: str, counts: Tensor, mask: Tensor, describe) -> None:
    """Raise for the first box flagged in ``mask``, naming its frame, field and position."""
    if bool(mask.any()):
        row = int(mask.nonzero()[0])
        ends = torch.cumsum(counts, 0).cpu()
        frame = int(torch.searchsorted(ends, torch.tensor(row), right=True))
        start = int(ends[frame] - counts[frame])
        raise ValueError(f"{kind}[{frame}]['{field}'][{row - start}] {describe(row)}")


def _check_values(kind: str, columns: BoxColumns, num_classes: int) -> None:
    """Vectorised checks of all boxes at once; the first bad box is named by frame and position."""
    boxes, counts = columns.boxes, columns.counts
    _fail(kind, "boxes", counts, ~torch.isfinite(boxes).all(1), lambda r: f"= {boxes[r].tolist()} has a non-finite coordinate")
    _fail(kind, "boxes", counts, boxes[:, 2] < boxes[:, 0], lambda r: f"= {boxes[r].tolist()} has x2 < x1 (boxes are absolute xyxy)")
    _fail(kind, "boxes", counts, boxes[:, 3] < boxes[:, 1], lambda r: f"= {boxes[r].tolist()} has y2 < y1 (boxes are absolute xyxy)")
    if columns.scores is not None:
        scores = columns.scores
        _fail(kind, "scores", counts, ~torch.isfinite(scores), lambda r: f"= {scores[r].item()} is not a finite number")
    labels = columns.labels
    _fail(kind, "labels", counts, (labels < 0) | (labels >= num_classes), lambda r: f"= {labels[r].item()} is outside [0, {num_classes})")


class CatStateMetric(Metric):
    """A ``Metric`` whose list states are concatenated across ranks (``dist_reduce_fx="cat"``).

    torchmetrics replaces the empty list of a rank that saw no data by a 1-D float tensor,
    which cannot be concatenated with other ranks' ``(N, 4)`` boxes or int64 labels; this
    class substitutes an empty tensor of the state's own shape and dtype before syncing.
    """

    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._empty_states: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}

    def add_cat_state(self, name: str, tail_shape: tuple[int, ...], dtype: torch.dtype) -> None:
        """Register list state ``name`` holding tensors of shape ``(n, *tail_shape)`` and ``dtype``."""
        self.add_state(name, default=[], dist_reduce_fx="cat")
        self._empty_states[name] = (tail_shape, dtype)

    def column(self, name: str) -> Tensor:
        """State ``name`` concatenated into one tensor (before or after a sync), on the CPU."""
        value = getattr(self, name)
        if isinstance(value, Tensor):
            return value.cpu()
        if not value:
            tail, dtype = self._empty_states[name]
            return torch.zeros((0, *tail), dtype=dtype)
        return torch.cat([part.cpu() for part in value])

    def _sync_dist(self, dist_sync_fn: Any = None, process_group: Any = None) -> None:
        for name, (tail, dtype) in self._empty_states.items():
            if isinstance(getattr(self, name), list) and not getattr(self, name):
                setattr(self, name, [torch.zeros((0, *tail), dtype=dtype, device=self.device)])
        kwargs = {"dist_sync_fn": dist_sync_fn} if dist_sync_fn is not None else {}
        super()._sync_dist(process_group=process_group, **kwargs)


def synced(metric: Metric) -> ContextManager[None]:
    """Context in which ``metric``'s states hold all ranks' data, exactly as inside ``compute``."""
    return metric.sync_context(dist_sync_fn=metric.dist_sync_fn, should_sync=metric._to_sync, should_unsync=metric._should_unsync)

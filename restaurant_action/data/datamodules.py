"""LightningDataModules: frames for YOLOv3, clips for YOWO.

The dataset is loaded (and validated) on first use, so ``dm.num_classes`` and
``dm.anchors(9)`` work right after construction, before ``setup``.
"""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from restaurant_action.data.anchors import AnchorFit, kmeans_anchors
from restaurant_action.data.annotations import ActionAnnotations
from restaurant_action.data.clips import CLIP_PADDING, MAX_CLIP_FRAMES, MIN_CLIP_FRAMES, ActionClip, segment_clips, split_clips
from restaurant_action.data.datasets import ClipDataset, FrameDataset, FrameRef, collate_frames
from restaurant_action.data.sequences import SequenceDataLoader, SequenceDataset
from restaurant_action.data.splits import block_split, read_video_split
from restaurant_action.data.transforms import AugmentConfig, ClipTransform
from restaurant_action.data.video import resolve_backend
from restaurant_action.errors import DatasetError

logger = logging.getLogger(__name__)


def background_frames(annotations: ActionAnnotations, video: str, padding: int = CLIP_PADDING) -> np.ndarray:
    """Unlabelled frames of ``video`` known to be background.

    With ``annotated_ranges`` these are the unlabelled frames inside the annotated ranges;
    without, the unlabelled frames within ``padding`` frames of a labelled action.
    """
    info = annotations.videos[video]
    known = np.zeros(info.num_frames, bool)
    if annotations.annotated_ranges is not None:
        for start, end in annotations.annotated_ranges.get(video, []):
            known[start : end + 1] = True
    else:
        for inst in annotations.action_instances():
            if inst.video == video:
                known[max(0, inst.start - padding) : inst.end + padding + 1] = True
    known[annotations.labelled_frames(video)] = False
    return np.flatnonzero(known)


class VideoDataModule(pl.LightningDataModule):
    """Shared base: loading, the train/val split, anchors and class ranking.

    Args:
        root: dataset folder in the canonical layout.
        image_size: training size (square side in pixels; a multiple of 32 for YOLO models).
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        val_fraction: fraction of 120-frame blocks for validation (when no ``splits.json``).
        seed: seed of the split, the background draw and the sampler.
        augment: training augmentation; ``None`` turns it off.
        background_ratio: unlabelled background frames per labelled frame in each split.
        balanced_sampling: exponent ``p`` of class-balanced sampling (frame weight
            ``count(rarest class in frame) ** -p``); 0 samples uniformly.
        cache_dir: folder for the resized-frame cache (``None``: decode every epoch).
        decode_threads: decoder threads per video reader.
        video_backend: decoder of video files: ``"auto"`` (the fastest frame-exact one
            installed), ``"pyav"``, ``"decord"`` or ``"torchcodec"``; see ``open_video``.
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int = 320,
        batch_size: int = 16,
        num_workers: int = 2,
        val_fraction: float = 0.2,
        seed: int = 0,
        augment: AugmentConfig | None = AugmentConfig(),
        background_ratio: float = 0.25,
        balanced_sampling: float = 0.0,
        cache_dir: str | Path | None = None,
        decode_threads: int = 1,
        video_backend: str = "auto",
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.seed = seed
        self.augment = augment
        self.background_ratio = background_ratio
        self.balanced_sampling = balanced_sampling
        self.cache_dir = cache_dir
        self.decode_threads = decode_threads
        self.video_backend = resolve_backend(video_backend)
        self._anchor_fits: dict[int, AnchorFit] = {}
        self.datasets: dict[str, Dataset] = {}

    # ------------------------------------------------------------------ dataset-level facts
    @cached_property
    def annotations(self) -> ActionAnnotations:
        """The whole dataset, loaded and validated."""
        return ActionAnnotations.load(self.root)

    @property
    def num_classes(self) -> int:
        """Number of action classes."""
        return self.annotations.num_classes

    @property
    def classes(self) -> list[str]:
        """Class names, by class id."""
        return self.annotations.classes

    @cached_property
    def split(self) -> dict[str, dict[str, np.ndarray]]:
        """``{"train"|"val": {video: frame indices}}`` from ``splits.json`` or the 120-frame block split."""
        ann = self.annotations
        by_video = read_video_split(self.root / "splits.json", ann.video_names)
        if by_video is not None:
            return {
                part: {v: np.arange(ann.videos[v].num_frames) for v in by_video[part]} for part in ("train", "val")
            }
        lengths = {name: info.num_frames for name, info in ann.videos.items()}
        return block_split(lengths, self.val_fraction, seed=self.seed)

    def frames_of(self, part: str) -> list[FrameRef]:
        """Labelled frames of split ``part`` plus ``background_ratio`` background frames per labelled one."""
        rng = np.random.default_rng(self.seed + (part == "val"))
        refs: list[FrameRef] = []
        background: list[FrameRef] = []
        for video, allowed in self.split[part].items():
            labelled = np.intersect1d(self.annotations.labelled_frames(video), allowed)
            refs += [FrameRef(video, int(f)) for f in labelled]
            background += [FrameRef(video, int(f)) for f in np.intersect1d(background_frames(self.annotations, video), allowed)]
        count = min(len(background), int(round(self.background_ratio * len(refs))))
        refs += [background[i] for i in sorted(rng.choice(len(background), count, replace=False))] if count else []
        if not refs and (part == "train" or self.val_fraction > 0):
            raise DatasetError(self.root / "annotations.csv", f"the {part} split holds no labelled frames (an empty dataset)")
        return refs

    def training_boxes(self) -> np.ndarray:
        """Training boxes ``(N, 4)`` xyxy in pixels of the letterboxed ``image_size`` images."""
        ann = self.annotations
        mask = ann.rows_in(self.split["train"])
        sizes = np.array([[ann.videos[n].width, ann.videos[n].height] for n in ann.video_names], np.float64)
        scale = np.minimum(self.image_size / sizes[:, 0], self.image_size / sizes[:, 1])
        return (ann.boxes[mask] * scale[ann.video_ids[mask], None]).astype(np.float32)

    def anchor_fit(self, k: int) -> AnchorFit:
        """k-means (1 − IoU) fit of ``k`` anchors on the training boxes, with its quality."""
        if k not in self._anchor_fits:
            self._anchor_fits[k] = kmeans_anchors(self.training_boxes(), k, seed=self.seed)
            fit = self._anchor_fits[k]
            logger.info("%d anchors: mean best IoU %.3f, best-possible recall %.3f", k, fit.mean_iou, fit.best_possible_recall)
        return self._anchor_fits[k]

    def anchors(self, k: int) -> list[list[float]]:
        """``k`` anchors ``[[w, h], ...]`` in pixels at ``image_size``, ascending by area."""
        return np.round(self.anchor_fit(k).anchors.astype(np.float64), 2).tolist()

    def top_classes(self, k: int) -> list[int]:
        """The ``k`` classes with the most training clips (action instances), most first."""
        ann = self.annotations
        return ann.select_rows(ann.rows_in(self.split["train"])).top_k_classes(k)

    # ------------------------------------------------------------------ datasets and loaders
    def make_dataset(self, refs: list[FrameRef], train: bool) -> Dataset:
        """Build the dataset of one split (subclasses choose frames or clips)."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Build the train and val datasets (val doubles as test unless ``splits.json`` says otherwise)."""
        if "train" not in self.datasets:
            self.datasets["train"] = self.make_dataset(self.frames_of("train"), train=True)
            self.datasets["val"] = self.make_dataset(self.frames_of("val"), train=False)

    def _sampler(self, dataset: FrameDataset) -> WeightedRandomSampler | None:
        if self.balanced_sampling <= 0:
            return None
        counts = self.annotations.class_counts("frames").astype(np.float64)
        weights = np.empty(len(dataset.items))
        for i, ref in enumerate(dataset.items):
            labels = self.annotations.targets(ref.video, ref.frame)[1]
            weights[i] = counts[labels].min() ** -self.balanced_sampling if len(labels) else np.nan
        weights[np.isnan(weights)] = np.nanmedian(weights) if np.isfinite(weights).any() else 1.0
        generator = torch.Generator().manual_seed(self.seed)
        return WeightedRandomSampler(torch.as_tensor(weights), len(weights), replacement=True, generator=generator)

    def _loader(self, part: str, train: bool) -> DataLoader:
        self.setup()
        dataset = self.datasets[part]
        sampler = self._sampler(dataset) if train else None
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_frames,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def transform(self, train: bool) -> ClipTransform:
        """Letterbox to ``image_size``; with training augmentation when ``train``."""
        return ClipTransform(self.image_size, self.augment if train else None)

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed}


class FrameDataModule(VideoDataModule):
    """Single frames with boxes for frame-level detectors. See ``VideoDataModule`` for the arguments.

    Batches are dicts: ``images`` uint8 ``(B, 3, S, S)``, ``targets`` ``(M, 6)``
    ``[image_index, class, x1, y1, x2, y2]`` in pixels, ``videos``, ``frames``.
    """

    def make_dataset(self, refs: list[FrameRef], train: bool) -> FrameDataset:
        return FrameDataset(
            self.annotations, refs, self.image_size, self.transform(train), self.cache_dir, self.decode_threads,
            self.video_backend,
        )


class ClipDataModule(VideoDataModule):
    """Clips of ``clip_length`` frames ending at a labelled key frame (YOWO).

    Batches are dicts: ``clips`` uint8 ``(B, T, 3, S, S)`` (key frame last), ``targets``
    ``(M, 6)`` of the key frames, ``videos``, ``frames`` (key frames).

    Args:
        clip_length: frames per clip (16 in YOWO).
        frame_stride: step between clip frames.
        **kwargs: see ``VideoDataModule``; ``image_size`` defaults to 224 as in YOWO.
    """

    def __init__(self, root: str | Path, image_size: int = 224, clip_length: int = 16, frame_stride: int = 1, **kwargs: Any) -> None:
        super().__init__(root, image_size=image_size, **kwargs)
        self.clip_length = clip_length
        self.frame_stride = frame_stride

    def make_dataset(self, refs: list[FrameRef], train: bool) -> ClipDataset:
        return ClipDataset(
            self.annotations, refs, self.image_size, self.clip_length, self.frame_stride,
            self.transform(train), self.cache_dir, self.decode_threads, self.video_backend,
        )


class SequenceDataModule(VideoDataModule):
    """Ordered clip subsequences for recurrent models (ConvLSTM-YOLO), pinned to DDP ranks.

    Videos are cut into action clips (``segment_clips``), 20% of the clips go to validation
    (``split_clips``), and each rank plays its clips on ``lanes`` lanes, ``steps`` frames per
    batch; see ``restaurant_action.data.sequences`` for the schedule and its guarantees.
    Works with the plain ``Trainer(devices=N, strategy="ddp")``.

    Batches are dicts: ``frames`` uint8 ``(B, T, 3, S, S)``, ``targets`` ``(M, 7)``
    ``[lane, t, class, x1, y1, x2, y2]``, ``reset (B,)``, ``valid (B, T)``, ``clip_ids``,
    ``frame_indices``, ``videos``, ``step``.

    Args:
        root: dataset folder.
        image_size: square training size.
        lanes: ``B``, sequences per rank and batch.
        steps: ``T``, frames per step (the truncated-BPTT length).
        frame_step: take every ``frame_step``-th frame (sparse frames).
        max_gap, padding, min_clip_frames, max_clip_frames: clip segmentation.
        **kwargs: ``num_workers``, ``val_fraction`` (of clips), ``seed``, ``augment``,
            ``cache_dir``, ``decode_threads``, ``video_backend`` as for ``VideoDataModule``.
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int = 320,
        lanes: int = 4,
        steps: int = 8,
        frame_step: int = 1,
        max_gap: int = 15,
        padding: int = CLIP_PADDING,
        min_clip_frames: int = MIN_CLIP_FRAMES,
        max_clip_frames: int = MAX_CLIP_FRAMES,
        **kwargs: Any,
    ) -> None:
        super().__init__(root, image_size=image_size, batch_size=lanes, **kwargs)
        self.lanes, self.steps, self.frame_step = lanes, steps, frame_step
        self.clip_options = {"max_gap": max_gap, "padding": padding, "min_frames": min_clip_frames, "max_frames": max_clip_frames}
        # Lightning restores a stateful train loader itself only if the loader is created after
        # the checkpoint is read; a configure_optimizers that asks for estimated_stepping_batches
        # creates it before. The datamodule's own state, restored in every case, carries the
        # position too.
        self._resume_state: dict[str, int] | None = None
        self._train_loader: SequenceDataLoader | None = None

    @cached_property
    def clips(self) -> dict[str, list[ActionClip]]:
        """``{"train": clips, "val": clips}``: by the videos of ``splits.json`` where it exists
        (as the frame and clip datamodules split, so models of all three compare on the same
        frames), else ``val_fraction`` of the clips."""
        clips = segment_clips(self.annotations, **self.clip_options)
        if not clips:
            raise DatasetError(self.root / "annotations.csv", "no labelled action to cut into clips (an empty dataset)")
        by_video = read_video_split(self.root / "splits.json", self.annotations.video_names)
        if by_video is not None:
            videos = {part: set(names) for part, names in by_video.items()}
            return {part: [clip for clip in clips if clip.video in videos[part]] for part in ("train", "val")}
        train, val = split_clips(clips, self.val_fraction, self.seed)
        return {"train": train, "val": val}

    @cached_property
    def split(self) -> dict[str, dict[str, np.ndarray]]:
        """Frames covered by the clips of each part, per video."""
        out: dict[str, dict[str, np.ndarray]] = {}
        for part, clips in self.clips.items():
            frames: dict[str, list[np.ndarray]] = {}
            for clip in clips:
                frames.setdefault(clip.video, []).append(np.arange(clip.start, clip.end + 1))
            out[part] = {video: np.unique(np.concatenate(chunks)) for video, chunks in frames.items()}
        return out

    def make_dataset(self, clips: list[ActionClip], train: bool) -> SequenceDataset:  # type: ignore[override]
        return SequenceDataset(
            self.annotations, clips, self.lanes, self.steps, self.frame_step, self.image_size,
            self.transform(train), shuffle=train, seed=self.seed, cache_dir=self.cache_dir,
            decode_threads=self.decode_threads, video_backend=self.video_backend,
        )

    def setup(self, stage: str | None = None) -> None:
        if "train" not in self.datasets:
            self.datasets = {part: self.make_dataset(clips, part == "train") for part, clips in self.clips.items()}

    def _loader(self, part: str, train: bool) -> DataLoader:
        self.setup()
        loader = SequenceDataLoader(self.datasets[part], num_workers=self.num_workers)
        if train:
            if self._resume_state is not None:
                loader.load_state_dict(self._resume_state)
            self._train_loader = loader
        return loader

    def state_dict(self) -> dict[str, Any]:
        """The position of the training loader inside its epoch (see ``SequenceDataLoader``)."""
        state = super().state_dict()
        if self._train_loader is not None:
            state["train_loader"] = self._train_loader.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume the training loader where the checkpoint left it."""
        self._resume_state = state_dict.get("train_loader")
        if self._train_loader is not None and self._resume_state is not None:
            self._train_loader.load_state_dict(self._resume_state)

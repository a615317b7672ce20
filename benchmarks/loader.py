"""Frames per second delivered to the training loop, ours against a PIL-per-JPEG baseline.

Every path decodes, resizes to a 320×320 letterbox, applies the same training
augmentation and collates batches of 16, with 2 DataLoader workers, in shuffled order:

  (a) FrameDataModule, first epoch, empty frame cache (sequential window fills)
  (a0) FrameDataModule without any cache (pure random access into the mp4)
  (b) FrameDataModule, second epoch, cache warm
  (c) baseline: one JPEG per frame from an extracted frame folder, read with PIL
      (as YOWO's official loader does), then the same augmentation
  (d) ceiling: decord decoding the same frames sequentially at the same size, nothing else

Run: ``.venv/bin/python benchmarks/loader.py [--videos 4 --frames 300 --size 1280x720]``.
Prints fps and the ratios the goals are stated in: (b)/(c) ≥ 3 and (a)/(d) ≥ 0.5.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from restaurant_action.data.annotations import ActionAnnotations
from restaurant_action.data.datamodules import FrameDataModule
from restaurant_action.data.datasets import FrameRef, collate_frames
from restaurant_action.data.synthetic import make_synthetic_dataset
from restaurant_action.data.transforms import AugmentConfig, ClipTransform
from restaurant_action.data.video import open_video

IMAGE_SIZE = 320
BATCH = 16
WORKERS = 2


class PILFrameFolderDataset(Dataset):
    """Baseline: one JPEG per frame opened with PIL, resized, then the same augmentation."""

    def __init__(self, annotations: ActionAnnotations, items: list[FrameRef], frames_root: Path) -> None:
        self.annotations, self.items, self.frames_root = annotations, items, frames_root
        self.transform = ClipTransform(IMAGE_SIZE, AugmentConfig())

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        ref = self.items[index]
        image = Image.open(self.frames_root / ref.video / f"{ref.frame + 1:05d}.jpg").convert("RGB")
        scale = IMAGE_SIZE / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
        boxes, labels, tracks = self.annotations.targets(ref.video, ref.frame)
        out = self.transform(np.asarray(image)[None], boxes * scale, labels, np.zeros(len(labels)), tracks)
        return {"image": torch.from_numpy(out.frames[0]).permute(2, 0, 1), "boxes": torch.from_numpy(out.boxes),
                "labels": torch.from_numpy(out.labels), "tracks": torch.from_numpy(out.tracks), "video": ref.video,
                "frame": ref.frame}


def drain(loader: DataLoader) -> float:
    """Frames per second over one pass of ``loader``."""
    start, count = time.perf_counter(), 0
    for batch in loader:
        count += len(batch["images"])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", default="1280x720", help="video size WxH (the study's footage is 1280x720)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ra-loader-bench-"))
    root = workdir / "dataset"
    if not (root / "annotations.csv").exists():
        make_synthetic_dataset(root, args.videos, args.frames, (width, height), seed=0)

    def module(cache: Path | None) -> FrameDataModule:
        dm = FrameDataModule(root, image_size=IMAGE_SIZE, batch_size=BATCH, num_workers=WORKERS, cache_dir=cache,
                             val_fraction=0.0, background_ratio=0.0)
        dm.setup()
        return dm

    dm = module(None)
    items = dm.datasets["train"].items
    frames_root = workdir / "jpeg"
    if not frames_root.exists():
        for video, info in dm.annotations.videos.items():
            (frames_root / video).mkdir(parents=True)
            source = open_video(info.path)
            for f in range(info.num_frames):
                cv2.imwrite(str(frames_root / video / f"{f + 1:05d}.jpg"), cv2.cvtColor(source.frames([f])[0], cv2.COLOR_RGB2BGR))

    torch.manual_seed(0)
    results = {"a0": drain(dm.train_dataloader())}
    cache = workdir / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    cached = module(cache)
    loader = cached.train_dataloader()
    results["a"] = drain(loader)
    results["b"] = drain(loader)
    baseline = DataLoader(PILFrameFolderDataset(dm.annotations, items, frames_root), batch_size=BATCH, shuffle=True,
                          num_workers=WORKERS, collate_fn=collate_frames)
    results["c"] = drain(baseline)
    decoded = 0
    start = time.perf_counter()
    for video in dm.annotations.video_names:
        frames = sorted(r.frame for r in items if r.video == video)
        source = open_video(dm.annotations.videos[video].path, dm.datasets["train"].videos.source(video).size, num_threads=WORKERS)
        for chunk in range(0, len(frames), 64):
            decoded += len(source.frames(frames[chunk : chunk + 64]))
    results["d"] = decoded / (time.perf_counter() - start)

    labels = {"a": "(a) FrameDataModule, first epoch (cache filling)", "a0": "(a0) FrameDataModule, no cache",
              "b": "(b) FrameDataModule, cache warm", "c": "(c) baseline: PIL one JPEG per frame",
              "d": "(d) ceiling: decord sequential decode only"}
    print(f"{len(items)} training frames from {args.videos} videos at {width}x{height}, {IMAGE_SIZE}px, batch {BATCH}, {WORKERS} workers")
    for key in ("a", "a0", "b", "c", "d"):
        print(f"{labels[key]:<52} {results[key]:8.1f} frames/s")
    print(f"(b)/(c) = {results['b'] / results['c']:.2f}  (goal ≥ 3)")
    print(f"(a)/(d) = {results['a'] / results['d']:.2f}  (goal ≥ 0.5)")
    print(f"(a0)/(d) = {results['a0'] / results['d']:.2f}")


if __name__ == "__main__":
    main()

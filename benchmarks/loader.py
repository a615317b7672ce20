"""Frames per second delivered to the training loop, ours against a PIL-per-JPEG baseline.

Every path decodes, resizes to a 320×320 letterbox, applies the same training
augmentation and collates batches of 16, with 2 DataLoader workers, in shuffled order:

  (a) FrameDataModule, first epoch, empty frame cache (sequential window fills)
  (a0) FrameDataModule without any cache (pure random access into the mp4)
  (b) FrameDataModule, second epoch, cache warm
  (c) baseline: one JPEG per frame from an extracted frame folder, read with PIL
      (as YOWO's official loader does), then the same augmentation
  (d) ceiling: each installed backend decoding the same frames sequentially at the same size
      with 2 threads, nothing else; the fastest backend's is the ceiling

Every path runs in a fresh process (so no worker, open reader or decoded page of one path
helps or hinders another), ``--repeats`` times round-robin; medians are printed.

(a), (a0) and (b) decode with ``--backend`` (default: ``auto``, the library's default).

Run: ``make bench`` or ``.venv/bin/python benchmarks/loader.py [--videos 4 --frames 300 --size 1280x720
--repeats 3 --backend auto]`` (with ``LD_LIBRARY_PATH=.venv/ffmpeg`` for torchcodec).
Prints fps and the ratios the goals are stated in: (b)/(c) ≥ 3 and (a)/(fastest d) ≥ 0.8.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
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
from restaurant_action.data.video import available_backends, open_video, resolve_backend

IMAGE_SIZE = 320
PATHS = ("a0", "ab", "c", *(f"d:{name}" for name in available_backends()))
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


def measure(path: str, root: Path, workdir: Path, backend: str) -> dict[str, float]:
    """Frames per second of one path (``a0``, ``ab`` for (a) then (b) on the same loader, ``c`` or
    ``d:BACKEND``)."""
    def module(cache: Path | None) -> FrameDataModule:
        dm = FrameDataModule(root, image_size=IMAGE_SIZE, batch_size=BATCH, num_workers=WORKERS, cache_dir=cache,
                             val_fraction=0.0, background_ratio=0.0, video_backend=backend)
        dm.setup()
        return dm

    torch.manual_seed(0)
    if path == "a0":
        return {"a0": drain(module(None).train_dataloader())}
    if path == "ab":
        cache = workdir / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        loader = module(cache).train_dataloader()
        return {"a": drain(loader), "b": drain(loader)}
    dm = module(None)
    items = dm.datasets["train"].items
    if path == "c":
        baseline = DataLoader(PILFrameFolderDataset(dm.annotations, items, workdir / "jpeg"), batch_size=BATCH, shuffle=True,
                              num_workers=WORKERS, collate_fn=collate_frames)
        return {"c": drain(baseline)}
    decoded = 0
    start = time.perf_counter()
    for video in dm.annotations.video_names:
        frames = sorted(r.frame for r in items if r.video == video)
        source = open_video(dm.annotations.videos[video].path, dm.datasets["train"].videos.source(video).size,
                            num_threads=WORKERS, backend=path.split(":")[1])
        for chunk in range(0, len(frames), 64):
            decoded += len(source.frames(frames[chunk : chunk + 64]))
    return {path: decoded / (time.perf_counter() - start)}


def prepare(root: Path, workdir: Path, videos: int, frames: int, size: tuple[int, int]) -> int:
    """Write the dataset and the baseline's JPEG folders (once per workdir); return the training frame count."""
    if not (root / "annotations.csv").exists():
        make_synthetic_dataset(root, videos, frames, size, seed=0)
    dm = FrameDataModule(root, image_size=IMAGE_SIZE, val_fraction=0.0, background_ratio=0.0)
    dm.setup()
    frames_root = workdir / "jpeg"
    if not frames_root.exists():
        for video, info in dm.annotations.videos.items():
            (frames_root / video).mkdir(parents=True)
            source = open_video(info.path)
            for f in range(info.num_frames):
                cv2.imwrite(str(frames_root / video / f"{f + 1:05d}.jpg"), cv2.cvtColor(source.frames([f])[0], cv2.COLOR_RGB2BGR))
    return len(dm.datasets["train"].items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", default="1280x720", help="video size WxH (the study's footage is 1280x720)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=1, help="rounds of all paths; medians are printed")
    parser.add_argument("--backend", default="auto", help="decoder of paths (a), (a0), (b): auto, pyav, decord, torchcodec")
    parser.add_argument("--path", choices=PATHS, default=None, help=argparse.SUPPRESS)  # one path, in a child process
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ra-loader-bench-"))
    root = workdir / "dataset"
    if args.path is not None:
        print(json.dumps(measure(args.path, root, workdir, args.backend)))
        return
    count = prepare(root, workdir, args.videos, args.frames, (width, height))
    runs: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for path in PATHS:  # each path in a fresh process: no worker, reader or page of one path helps another
            child = subprocess.run([sys.executable, __file__, "--path", path, "--workdir", str(workdir), "--backend", args.backend],
                                   check=True, capture_output=True, text=True)
            for key, value in json.loads(child.stdout.strip().splitlines()[-1]).items():
                runs.setdefault(key, []).append(value)
    results = {key: float(np.median(values)) for key, values in runs.items()}

    backend = resolve_backend(args.backend)
    labels = {"a": f"(a) FrameDataModule, first epoch (cache filling), {backend}",
              "a0": f"(a0) FrameDataModule, no cache, {backend}", "b": f"(b) FrameDataModule, cache warm, {backend}",
              "c": "(c) baseline: PIL one JPEG per frame"}
    labels.update({key: f"(d) ceiling: {key[2:]} sequential decode only" for key in results if key.startswith("d:")})
    print(f"{count} training frames from {args.videos} videos at {width}x{height}, {IMAGE_SIZE}px, batch {BATCH}, "
          f"{WORKERS} workers; each path in its own process, median of {args.repeats}")
    for key, label in labels.items():
        print(f"{label:<56} {results[key]:8.1f} frames/s   (runs: {', '.join(f'{v:.1f}' for v in runs[key])})")
    fastest = max((key for key in results if key.startswith("d:")), key=results.get)
    print(f"(b)/(c) = {results['b'] / results['c']:.2f}  (goal ≥ 3)")
    print(f"(a)/(d, fastest: {fastest[2:]}) = {results['a'] / results[fastest]:.2f}  (goal ≥ 0.8)")
    print(f"(a0)/(d, fastest) = {results['a0'] / results[fastest]:.2f}")


if __name__ == "__main__":
    main()

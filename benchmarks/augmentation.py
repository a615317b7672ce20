"""CPU cost per frame of the training augmentation: ``ClipTransform`` against the albumentations pipeline it replaced.

Baseline ("albumentations"): ``LongestMaxSize(INTER_AREA)`` + ``PadIfNeeded(114)`` + ``Affine(scale,
translate_percent)`` + ``ColorJitter(p=0.8)`` in one ``A.Compose`` with ``pascal_voc`` boxes, called on
the whole ``(T, H, W, 3)`` clip (``images=``), as ``restaurant_action/data/transforms.py`` did before.
Ours: ``ClipTransform(320, AugmentConfig())``. Both get the same clips (3 boxes per frame) and run
interleaved in one process with one thread (``OMP_NUM_THREADS=1``, ``cv2.setNumThreads(1)``), so
the ratio holds on a busy machine even when the absolute times do not.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/augmentation.py [--rounds 30]``.
Prints the median ms per frame of each and the ratio, for 1280x720, 640x360 and 320x180 inputs
(the loader's decoders deliver frames already letterboxed to 320, so 320x180 is the training case)
and clips of T = 1 and T = 16.
"""

from __future__ import annotations

import argparse
import os
import time

import albumentations as A
import cv2
import numpy as np

from restaurant_action.data.transforms import PAD_VALUE, AugmentConfig, ClipTransform

IMAGE_SIZE = 320


def albumentations_baseline(config: AugmentConfig) -> A.Compose:
    """The pipeline ``ClipTransform`` ran before: letterbox, then Affine + ColorJitter, boxes following."""
    return A.Compose(
        [
            A.LongestMaxSize(max_size_hw=(IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA),
            A.PadIfNeeded(IMAGE_SIZE, IMAGE_SIZE, position="center", border_mode=cv2.BORDER_CONSTANT, fill=PAD_VALUE),
            A.Affine(
                scale=config.scale,
                translate_percent=(-config.translate, config.translate),
                border_mode=cv2.BORDER_CONSTANT,
                fill=PAD_VALUE,
                p=1.0,
            ),
            A.ColorJitter(config.brightness, config.contrast, config.saturation, config.hue, p=0.8),
        ],
        bbox_params=A.BboxParams(
            format="pascal_voc",
            label_fields=["labels", "box_frames", "tracks"],
            min_visibility=config.min_visibility,
            clip=True,
            filter_invalid_bboxes=True,
        ),
        seed=0,
    )


def make_clip(rng: np.random.Generator, length: int, width: int, height: int) -> tuple[np.ndarray, ...]:
    """A smooth random RGB clip of ``(T, H, W, 3)`` uint8 with 3 boxes per frame."""
    small = rng.integers(0, 256, (length, height // 16, width // 16, 3), dtype=np.uint8)
    frames = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_CUBIC) for f in small])
    corner = rng.uniform(0, 0.7, (length * 3, 2)) * [width, height]
    boxes = np.hstack([corner, corner + rng.uniform(0.1, 0.3, (length * 3, 2)) * [width, height]]).astype(np.float32)
    box_frames = np.repeat(np.arange(length), 3)
    return frames, boxes, np.ones(len(boxes), np.int64), box_frames, np.arange(len(boxes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30, help="timed calls of each pipeline per case (after one warm-up)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    config = AugmentConfig()
    baseline, ours = albumentations_baseline(config), ClipTransform(IMAGE_SIZE, config)
    ours.seed_draw(0)
    rng = np.random.default_rng(0)
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')} cv2 threads={cv2.getNumThreads()}  output {IMAGE_SIZE}x{IMAGE_SIZE}")
    print(f"{'input':>9} {'T':>3} {'albumentations ms/frame':>24} {'ClipTransform ms/frame':>23} {'faster by':>10}")
    for width, height in [(1280, 720), (640, 360), (320, 180)]:
        for length in (1, 16):
            frames, boxes, labels, box_frames, tracks = make_clip(rng, length, width, height)
            calls = {
                "baseline": lambda: baseline(images=frames, bboxes=boxes, labels=labels, box_frames=box_frames, tracks=tracks),
                "ours": lambda: ours(frames, boxes, labels, box_frames, tracks),
            }
            times: dict[str, list[float]] = {name: [] for name in calls}
            for call in calls.values():
                call()
            for _ in range(args.rounds):
                for name, call in calls.items():
                    start = time.perf_counter()
                    call()
                    times[name].append((time.perf_counter() - start) * 1e3 / length)
            old, new = np.median(times["baseline"]), np.median(times["ours"])
            print(f"{width}x{height:<4} {length:>3} {old:>24.3f} {new:>23.3f} {old / new:>9.1f}x")


if __name__ == "__main__":
    main()

"""Decoding speed of each installed video backend, side by side in one run.

On generated H.264 files (libx264, B-frames, the encoder's default 250-frame GOP) at
1280×720 and 320×180, each backend (``open_video(backend=...)``, one decoder thread) is timed on:

  sequential   every frame in order at the native size, in requests of 64 frames
  resize-320   the same, decoded and resized to 320 px wide (the training letterbox's content)
  windows      what the frame cache does in a first epoch: aligned 64-frame windows in shuffled
               order, half the frames of each wanted (the labelled ones), at 320 px
  random       single frames at random indices, one request each, at 320 px
  open         opening a file (the shared frame-count probe included) and decoding frame 0, in ms

Each measurement runs ``--repeats`` times round-robin over the backends; medians are printed,
with the ratio of each backend to the fastest. A frame-exactness check runs first: every
backend must return the frame asked for (the index is written into each picture).

Run: ``LD_LIBRARY_PATH=.venv/ffmpeg .venv/bin/python benchmarks/video.py [--frames 300 --repeats 3]``
(the library path lets torchcodec load PyAV's FFmpeg; without it torchcodec is left out).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np

from restaurant_action.data.video import available_backends, open_video
from restaurant_action.data.video.probe import _probe_cached

WINDOW = 64
NOISE = 24
SIZES = {"1280x720": (1280, 720), "320x180": (320, 180)}


def scene(count: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """RGB frames ``(N, H, W, 3)``: a textured counter, moving blocks and the frame index in
    binary along the bottom (16 blocks), with strong sensor-like noise, so that the bitrate is
    that of real camera footage (about 5 Mbit/s at 1280×720, x264 CRF 26)."""
    width, height = size
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.integers(60, 200, (height, width, 3), dtype=np.uint8), (0, 0), 3)
    frames = np.empty((count, height, width, 3), np.uint8)
    block, side = width // 16, max(8, width // 20)
    for i in range(count):
        image = texture.copy()
        for k in range(4):
            x = int((i * (3 + k) + k * width // 4) % (width - side))
            y = int(height // 5 + k * height // 6) % (height - side - block)
            cv2.rectangle(image, (x, y), (x + side, y + side), (40 * k + 60, 200 - 30 * k, 90), -1)
        image = np.clip(image.astype(np.int16) + rng.integers(-NOISE, NOISE + 1, image.shape), 0, 255).astype(np.uint8)
        for bit in range(16):
            image[height - block // 2 :, bit * block : (bit + 1) * block] = 235 if (i >> bit) & 1 else 20
        frames[i] = image
    return frames


def written_index(frames: np.ndarray) -> np.ndarray:
    """The indices ``scene`` wrote into frames ``(N, H, W, 3)`` (at any width)."""
    block = frames.shape[2] // 16
    rows = frames[:, -max(2, block // 4) :].astype(np.float32).mean(axis=(1, 3))
    bits = np.stack([rows[:, b * block + block // 4 : (b + 1) * block - block // 4].mean(1) > 128 for b in range(16)], 1)
    return (bits * (1 << np.arange(16))).sum(1)


def encode(path: Path, frames: np.ndarray, fps: int = 30) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "26"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def small_size(width: int, height: int) -> tuple[int, int]:
    return 320, round(height * 320 / width / 2) * 2


def timed(run: Callable[[], int]) -> float:
    start = time.perf_counter()
    count = run()
    return count / (time.perf_counter() - start)


def measurements(path: Path, backend: str, frames: int, seed: int) -> dict[str, float]:
    native = open_video(path, backend=backend)
    width, height = native.width, native.height
    rng = np.random.default_rng(seed)

    def sequential(size: tuple[int, int] | None) -> Callable[[], int]:
        def run() -> int:
            source = open_video(path, size, backend=backend)
            return sum(len(source.frames(np.arange(s, min(s + WINDOW, frames)))) for s in range(0, frames, WINDOW))
        return run

    def windows() -> int:
        source = open_video(path, small_size(width, height), backend=backend)
        starts = rng.permutation(np.arange(0, frames, WINDOW))
        count = 0
        for start in starts:
            window = np.arange(start, min(start + WINDOW, frames))
            count += len(source.frames(window[rng.random(len(window)) < 0.5]))
        return count

    def random_single() -> int:
        source = open_video(path, small_size(width, height), backend=backend)
        picks = rng.integers(0, frames, 30)
        for k in picks:
            source.frames([int(k)])
        return len(picks)

    def first_frame() -> int:
        _probe_cached.cache_clear()
        open_video(path, backend=backend).frames([0])
        return 1

    return {
        "sequential": timed(sequential(None)),
        "resize-320": timed(sequential(small_size(width, height))),
        "windows": timed(windows),
        "random": timed(random_single),
        "open": 1000.0 / timed(first_frame),
    }


def check_exact(path: Path, backend: str, frames: int) -> None:
    wanted = np.random.default_rng(1).permutation(frames)[:40]
    got = written_index(open_video(path, backend=backend).frames(wanted))
    if not np.array_equal(got, wanted):
        raise SystemExit(f"{backend} is not frame-exact on {path.name}: asked {wanted[:8]}, got {got[:8]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ra-video-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    backends = available_backends()
    print(f"backends: {', '.join(backends)}; {args.frames} frames per file, H.264 (x264 veryfast, B-frames), "
          f"1 decoder thread, median of {args.repeats}")
    for label, size in SIZES.items():
        path = workdir / f"scene-{label}.mp4"
        if not path.exists():
            encode(path, scene(args.frames, size))
        for backend in backends:
            check_exact(path, backend, args.frames)
        runs: dict[str, dict[str, list[float]]] = {b: {} for b in backends}
        for repeat in range(args.repeats):
            for backend in backends:
                for key, value in measurements(path, backend, args.frames, seed=repeat).items():
                    runs[backend].setdefault(key, []).append(value)
        medians = {b: {k: float(np.median(v)) for k, v in r.items()} for b, r in runs.items()}
        print(f"\n{label} ({path.stat().st_size / 1e6:.1f} MB); frame-exact on every backend")
        print(f"{'backend':<12}" + "".join(f"{k + (' fps' if k != 'open' else ' ms'):>17}" for k in medians[backends[0]]))
        for backend in backends:
            cells = []
            for key, value in medians[backend].items():
                best = (min if key == "open" else max)(m[key] for m in medians.values())
                ratio = best / value if key == "open" else value / best
                cells.append(f"{value:9.1f} ({ratio:4.2f})")
            print(f"{backend:<12}" + "".join(f"{c:>17}" for c in cells))


if __name__ == "__main__":
    main()

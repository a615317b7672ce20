"""End-to-end prediction speed and memory: ``VideoPredictor.predict`` on generated 320×180 H.264 video.

For each model kind (tiny widths, 128 px, CPU, one torch thread):

  (1) frames/s of ``predict`` (decode, letterbox, model, NMS, detections JSON, tubes CSV; no mp4),
      eager PyTorch against the same graph exported to ONNX and run by ONNX Runtime, side by side;
  (2) YOWO only: the predictor's sliding window (every frame decoded and preprocessed once) against
      the baseline that decodes and preprocesses the clip of every key frame afresh (what a
      per-key-frame dataset does), for the demo's clips (4 frames, every 4th) and YOWO's own
      (16 consecutive frames), at 320×180 and 1280×720: end to end, and the input side alone
      (decode, letterbox, clip gathering; no model);
  (3) peak RSS of a fresh process predicting 1 and 10 minutes of video with every output,
      annotated mp4 included (goal: within 10%).

Run: ``.venv/bin/python benchmarks/predict.py [--minutes 1 --long-minutes 10]``. Prints markdown
tables and the ratios: window reuse ≥ 5× the baseline, peak RSS 10 min / 1 min ≤ 1.10.
Sections: ``--sections speed,window,memory`` (all by default).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

import restaurant_action as ra
from restaurant_action.export import export_network, inference_network
from restaurant_action.inference.checkpoint import ModelSpec
from restaurant_action.inference.engines import ClipEngine
from restaurant_action.inference.runners import EagerRunner, OnnxRunner
from restaurant_action.inference.sources import iterate_frames
from restaurant_action.models.postprocess import select_detections
from restaurant_action.predict import VideoPredictor

SIZE = 128
CLASSES = tuple(f"action {i}" for i in range(8))
TINY_YOLO = {"width": 0.125, "depth": 0.34}
TINY_YOWO = {"backbone_3d": "resnet18", "width_2d": 0.25, "width_3d": 0.25, "cfam_channels": 64, "roi_stride": 8, "roi_refine": True}


def write_video(path: Path, seconds: float, size: tuple[int, int] = (320, 180), fps: int = 30) -> Path:
    """An H.264 video (GOP 250, B-frames) of a moving square over a gradient."""
    rng = np.random.default_rng(0)
    background = np.tile(np.linspace(40, 200, size[0], dtype=np.uint8)[None, :, None], (size[1], 1, 3))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"preset": "veryfast", "g": "250", "bf": "2"}
        for index in range(int(seconds * fps)):
            frame = background.copy()
            x, y = (index * 3) % (size[0] - 40), int(size[1] / 2 + 50 * np.sin(index / 20))
            frame[max(0, y - 20):y + 20, x:x + 40] = rng.integers(0, 255, 3)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def build(kind: str, clip_length: int = 4, frame_stride: int = 4) -> tuple[torch.nn.Module, ModelSpec]:
    """A randomly initialised tiny model's inference graph and spec (speed does not depend on training)."""
    torch.manual_seed(0)
    anchors9 = [[4 * (i + 1), 3 * (i + 1)] for i in range(9)]
    if kind == "YOLOv3Module":
        module, stride, clip = ra.YOLOv3Module(len(CLASSES), anchors9, **TINY_YOLO), 1, 1
    elif kind == "ConvLSTMYOLOModule":
        module, stride, clip = ra.ConvLSTMYOLOModule(len(CLASSES), anchors9, **TINY_YOLO), 8, 1
    else:
        module = ra.YOWOModule(len(CLASSES), [[8, 8], [16, 12], [24, 24], [40, 30], [60, 60]], clip_length=clip_length,
                               **TINY_YOWO)
        stride, clip = frame_stride, clip_length
    spec = ModelSpec(kind, CLASSES, SIZE, frame_stride=stride, clip_length=clip, score_threshold=0.005)
    return inference_network(module.eval(), spec), spec


def fps_of(predictor: VideoPredictor, video: Path, out: Path) -> float:
    start = time.perf_counter()
    result = predictor.predict(video, out, video=False, progress=False)
    return result.frames / (time.perf_counter() - start)


def rereading_fps(network: torch.nn.Module | None, spec: ModelSpec, video: Path, batch: int = 8) -> float:
    """Baseline: for every key frame, decode its clip (a sorted, batched read) and preprocess it
    afresh, then (``network`` given) run the model on batches of clips and NMS."""
    predictor = VideoPredictor(EagerRunner(network if network is not None else torch.nn.Identity()), spec)
    native = ra.open_video(video)
    source = ra.open_video(video, predictor.content_size((native.width, native.height)))
    clip_indices = ClipEngine(predictor.runner, spec).clip_indices
    start = time.perf_counter()
    clips = []
    for key in range(source.num_frames):
        frames = source.frames(clip_indices(key))
        clips.append(torch.stack([predictor.preprocess(frame) for frame in frames]))
        if network is not None and (len(clips) == batch or key == source.num_frames - 1):
            boxes, objectness, class_probs = predictor.runner(torch.stack(clips).float().div_(255.0))
            select_detections(boxes, objectness, class_probs, (SIZE, SIZE))
        if len(clips) == batch:
            clips = []
    return source.num_frames / (time.perf_counter() - start)


def window_input_fps(spec: ModelSpec, video: Path) -> float:
    """The predictor's input side alone: each frame decoded (in chunks) and preprocessed once, then
    every key frame's clip gathered from the window, as ``ClipEngine`` does."""
    predictor = VideoPredictor(EagerRunner(torch.nn.Identity()), spec)
    native = ra.open_video(video)
    source = ra.open_video(video, predictor.content_size((native.width, native.height)))
    window: dict[int, torch.Tensor] = {}
    engine = ClipEngine(predictor.runner, spec)
    start = time.perf_counter()
    for index, frame in iterate_frames(source, lambda index: True):
        window[index] = predictor.preprocess(frame)
        window.pop(index - engine.span - 1, None)
        torch.stack([window[i] for i in engine.clip_indices(index)])
    return source.num_frames / (time.perf_counter() - start)


def peak_rss(kind: str, video: Path, out: Path) -> dict[str, float]:
    """Peak RSS (MiB) and frames/s of a fresh process predicting ``video`` with every output."""
    code = (
        "import json, resource, sys, time, torch; torch.set_num_threads(1)\n"
        "sys.path.insert(0, 'benchmarks'); import predict as bench\n"
        "from restaurant_action.inference.runners import EagerRunner\n"
        "from restaurant_action.predict import VideoPredictor\n"
        f"network, spec = bench.build({kind!r})\n"
        "predictor = VideoPredictor(EagerRunner(network), spec)\n"
        f"start = time.perf_counter(); result = predictor.predict({str(video)!r}, {str(out)!r}, progress=False)\n"
        "print(json.dumps({'rss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "
        "'fps': result.frames / (time.perf_counter() - start), 'frames': result.frames}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="length of the speed video")
    parser.add_argument("--long-minutes", type=float, default=10.0, help="length of the long video for peak RSS")
    parser.add_argument("--sections", default="speed,window,memory", help="which tables to measure")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    video = write_video(folder / "minute.mp4", args.minutes * 60)
    print(f"torch {torch.__version__}, 1 thread; {args.minutes:g} min of 320×180 H.264 at 30 frames/s, models at {SIZE} px\n")

    if "speed" in sections:
        print("| model | eager frames/s | ONNX Runtime frames/s | ONNX / eager |")
        print("|---|---:|---:|---:|")
        for kind, label in (("YOLOv3Module", "YOLOv3"), ("ConvLSTMYOLOModule", "ConvLSTM-YOLO"), ("YOWOModule", "YOWO + RoI + refiner")):
            network, spec = build(kind)
            eager = fps_of(VideoPredictor(EagerRunner(network), spec), video, folder / "eager")
            onnx_path = export_network(network, spec, folder / f"{kind}.onnx")
            onnx = fps_of(VideoPredictor(OnnxRunner(onnx_path, threads=1), spec), video, folder / "onnx")
            print(f"| {label} | {eager:.0f} | {onnx:.0f} | {onnx / eager:.2f}× |")

    if "window" in sections:
        hd = write_video(folder / "hd.mp4", 20, size=(1280, 720))
        print("\n| video | YOWO clip | end to end: window frames/s | re-decoding frames/s | ratio "
              "| input side only: window frames/s | re-decoding frames/s | ratio |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for source, label in ((video, "320×180"), (hd, "1280×720, 20 s")):
            for clip_length, stride in ((4, 4), (16, 1)):
                network, spec = build("YOWOModule", clip_length, stride)
                window = fps_of(VideoPredictor(EagerRunner(network), spec), source, folder / "window")
                baseline = rereading_fps(network, spec, source)
                window_input, baseline_input = window_input_fps(spec, source), rereading_fps(None, spec, source)
                print(f"| {label} | {clip_length} frames, stride {stride} | {window:.0f} | {baseline:.0f} | {window / baseline:.1f}× "
                      f"| {window_input:.0f} | {baseline_input:.0f} | {window_input / baseline_input:.1f}× |")

    if "memory" in sections:
        long_video = write_video(folder / "long.mp4", args.long_minutes * 60)
        print(f"\n| model | peak RSS, {args.minutes:g} min (MiB) | peak RSS, {args.long_minutes:g} min (MiB) | ratio "
              "| frames/s (long) |")
        print("|---|---:|---:|---:|---:|")
        for kind, label in (("YOLOv3Module", "YOLOv3"), ("YOWOModule", "YOWO + RoI + refiner")):
            short = peak_rss(kind, video, folder / "rss_short")
            long = peak_rss(kind, long_video, folder / "rss_long")
            print(f"| {label} | {short['rss']:.0f} | {long['rss']:.0f} | {long['rss'] / short['rss']:.3f} | {long['fps']:.0f} |")


if __name__ == "__main__":
    main()

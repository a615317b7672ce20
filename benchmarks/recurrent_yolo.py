"""ConvLSTM-YOLO training speed: per frame against YOLOv3, and on 1 vs 2 CPU DDP processes.

Part 1 — cost of the recurrence. Tiny width and depth (0.125 / 0.34), ``--image-size`` px
(default 160), 24 classes, random weights and targets (three boxes per frame). One training
step is forward + ``yolov3_loss`` over all frames + backward + an SGD step:

  YOLOv3          a batch of B·T frames (default 32)
  ConvLSTM-YOLO   a ``(B, T) = (4, 8)`` sequence batch; the state is carried from step to step
                  (one lane reset per step, as a new clip would) and detached (truncated BPTT),
                  with the ConvLSTMs in the heads (the study's placement): the default (each
                  reads a 1×1 reduction of the head features to a quarter of their channels,
                  and its change), without the reduction (``input_ratio=None``), without it and
                  without the temporal difference; and in the neck

After one warm-up each, the models run round-robin ``--repeats`` times; the table gives the
medians of wall-clock and process CPU time per frame. The goal is ConvLSTM-YOLO (heads,
default) / YOLOv3 ≤ 1.3 per frame (the study measured 2×).

Part 2 — data parallelism on the CPU. The real pipeline: ``make_synthetic_dataset(size=(160,
90), object_scale=2.0)`` in a temporary folder, ``SequenceDataModule`` (4 lanes × 8 frames per
rank, default augmentation, one loader worker per process), ``ConvLSTMYOLOModule`` (tiny) and
``Trainer(devices=N, strategy="ddp", accelerator="cpu")``, each run launched as its own
subprocess (this script with ``--ddp-worker``): one process with ``--threads`` torch threads,
one process with ``--threads // 2`` and two processes with ``--threads // 2`` each (at least one
thread; a run already listed runs once). Every rank
times ``--ddp-steps`` optimizer steps after ``--ddp-warmup`` untimed ones; frames/s count every
frame of a step (padding included, it costs the same). Two processes can at best double the
total of one single-threaded process, and only where two cores are free for them.

On a machine shared with other jobs use one thread (the default): a multi-threaded op waits
for its slowest thread, and a thread that loses its core to another process stalls the others,
so two threads on two busy cores ran several times slower than one here (``--threads 2`` adds
that row to part 2).

Run: ``.venv/bin/python benchmarks/recurrent_yolo.py [--threads 1 --repeats 5 --ddp-steps 10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from restaurant_action.models.losses import yolov3_loss
from restaurant_action.models.recurrent_yolo import ConvLSTMYOLO, RecurrentState
from restaurant_action.models.yolov3 import COCO_ANCHORS, YOLOv3
from yolov3 import random_targets, training_step_fn  # benchmarks/yolov3.py: the same targets and training step

NUM_CLASSES = 24
WIDTH, DEPTH = 0.125, 0.34
RATIO_GOAL = 1.3
RECURRENT_VARIANTS: dict[str, dict[str, Any]] = {  # the first is the model the goal is about
    "head, default": {},
    "head, input_ratio=None": {"input_ratio": None},
    "head, input_ratio=None, temporal_difference=False": {"input_ratio": None, "temporal_difference": False},
    "neck": {"placement": "neck"},
}


def recurrent_step_fn(model: ConvLSTMYOLO, frames: Tensor, targets: Tensor) -> Callable[[], None]:
    """One truncated-BPTT step on ``frames (B, T, 3, S, S)``: reset one lane, run, step, detach the state."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.937, nesterov=True)
    lanes = frames.shape[0]
    carried: dict[str, Any] = {"state": None, "step": 0}

    def step() -> None:
        reset = torch.arange(lanes) == carried["step"] % lanes
        state: RecurrentState | None = model.reset_state(carried["state"], reset)
        optimizer.zero_grad(set_to_none=True)
        outputs, state = model(frames, state)
        loss, _ = yolov3_loss(outputs, targets, model.anchors, model.strides)
        loss.mean().backward()
        optimizer.step()
        carried["state"] = model.detach_state(state)
        carried["step"] += 1

    return step


def per_frame_comparison(image_size: int, lanes: int, steps: int, repeats: int) -> None:
    """Part 1: print the per-frame training cost of YOLOv3 and ConvLSTM-YOLO and their ratio."""
    frames_per_step = lanes * steps
    torch.manual_seed(0)
    frames = torch.rand(lanes, steps, 3, image_size, image_size)
    targets = random_targets(frames_per_step, image_size, min_size=8, max_size=64)
    variants = {f"YOLOv3, batch {frames_per_step}": training_step_fn(
        YOLOv3(NUM_CLASSES, COCO_ANCHORS, WIDTH, DEPTH).train(), frames.flatten(0, 1), targets)}
    for label, options in RECURRENT_VARIANTS.items():
        model = ConvLSTMYOLO(NUM_CLASSES, COCO_ANCHORS, WIDTH, DEPTH, **options).train()
        variants[f"ConvLSTM-YOLO ({label}), (B, T) = ({lanes}, {steps})"] = recurrent_step_fn(model, frames, targets)

    for run in variants.values():
        run()
    walls: dict[str, list[float]] = {name: [] for name in variants}
    cpus: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):  # round-robin, so that load from elsewhere hits every model alike
        for name, run in variants.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            walls[name].append(time.perf_counter() - wall)
            cpus[name].append(time.process_time() - cpu)

    print(f"\nPart 1: training step (fwd + loss + bwd + SGD), width {WIDTH}, depth {DEPTH}, {image_size} px, "
          f"{frames_per_step} frames per step, median of {repeats} interleaved runs")
    print("| model | wall s / step | wall ms / frame | CPU ms / frame | per frame vs YOLOv3 (wall) | (CPU) |")
    print("|---|---|---|---|---|---|")
    baseline = next(iter(variants))
    base_wall, base_cpu = statistics.median(walls[baseline]), statistics.median(cpus[baseline])
    ratios = {}
    for name in variants:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        ratios[name] = wall / base_wall
        print(f"| {name} | {wall:.3f} | {1e3 * wall / frames_per_step:.1f} | {1e3 * cpu / frames_per_step:.1f} | "
              f"{wall / base_wall:.2f}× | {cpu / base_cpu:.2f}× |", flush=True)
    head = ratios[f"ConvLSTM-YOLO ({next(iter(RECURRENT_VARIANTS))}), (B, T) = ({lanes}, {steps})"]
    print(f"ConvLSTM-YOLO (head) / YOLOv3 per frame: {head:.2f}× (goal ≤ {RATIO_GOAL}×: "
          f"{'met' if head <= RATIO_GOAL else 'NOT met'}; the study: 2×)", flush=True)


class StepTimer(pl.Callback):
    """Records when each training step ends and how many frames it held; rank ``r`` writes ``rank<r>.json``."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.ends: list[float] = []
        self.frames: list[int] = []
        self.valid_frames: list[int] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.ends.append(time.perf_counter())
        self.frames.append(int(batch["valid"].numel()))
        self.valid_frames.append(int(batch["valid"].sum()))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps({
            "world_size": trainer.world_size, "ends": self.ends,
            "frames": self.frames, "valid_frames": self.valid_frames,
        }))


def ddp_worker(args: argparse.Namespace) -> None:
    """Part 2, inside the subprocess: fit ``warmup + steps`` optimizer steps on ``args.devices`` processes."""
    from restaurant_action.data.datamodules import SequenceDataModule
    from restaurant_action.lightning.recurrent_yolo import ConvLSTMYOLOModule

    torch.set_num_threads(args.threads)
    pl.seed_everything(0, workers=True)
    dm = SequenceDataModule(args.root, image_size=args.image_size, lanes=args.lanes, steps=args.steps, num_workers=1)
    model = ConvLSTMYOLOModule(dm.num_classes, dm.anchors(9), width=WIDTH, depth=DEPTH, optimizer="adamw", lr=1e-3)
    trainer = pl.Trainer(
        devices=args.devices, strategy="ddp", accelerator="cpu", max_steps=args.ddp_warmup + args.ddp_steps,
        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[StepTimer(args.out)],
    )
    trainer.fit(model, dm)


def run_ddp(args: argparse.Namespace, root: Path, devices: int, threads: int, out_dir: Path) -> list[dict[str, Any]]:
    """Launch this script with ``--ddp-worker`` on ``devices`` processes of ``threads`` torch threads; the ranks' records."""
    out_dir.mkdir(parents=True)
    command = [
        sys.executable, os.path.abspath(__file__), "--ddp-worker", "--root", str(root), "--out", str(out_dir),
        "--devices", str(devices), "--threads", str(threads), "--image-size", str(args.image_size),
        "--lanes", str(args.lanes), "--steps", str(args.steps), "--ddp-steps", str(args.ddp_steps),
        "--ddp-warmup", str(args.ddp_warmup),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=args.ddp_timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{devices}-process run failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return [json.loads((out_dir / f"rank{rank}.json").read_text()) for rank in range(devices)]


def ddp_comparison(args: argparse.Namespace) -> None:
    """Part 2: print frames/s per process and in total for 1 and 2 DDP processes."""
    from restaurant_action.data.synthetic import make_synthetic_dataset

    with tempfile.TemporaryDirectory(prefix="recurrent_yolo_bench_") as tmp:
        root = Path(tmp) / "synth"
        start = time.perf_counter()
        make_synthetic_dataset(root, num_videos=args.videos, frames_per_video=args.frames_per_video, size=(160, 90),
                               seed=0, workers=2, object_scale=2.0)
        print(f"\nPart 2: synthetic dataset ({args.videos} videos × {args.frames_per_video} frames, 160×90) "
              f"generated in {time.perf_counter() - start:.0f} s", flush=True)
        half = max(1, args.threads // 2)
        runs = list(dict.fromkeys([(1, args.threads), (1, half), (2, half)]))
        results = {(devices, threads): run_ddp(args, root, devices, threads, Path(tmp) / f"ddp{devices}x{threads}")
                   for devices, threads in runs}

    print(f"SequenceDataModule + ConvLSTMYOLOModule (tiny, head) + Trainer(strategy='ddp', accelerator='cpu'), "
          f"{args.image_size} px, {args.lanes} lanes × {args.steps} frames per rank and step, "
          f"{args.ddp_steps} steps timed after {args.ddp_warmup}")
    print("| processes | torch threads / process | s / step | frames/s per process | frames/s total | total vs first row |")
    print("|---|---|---|---|---|---|")
    first_total = None
    for (devices, threads), ranks in results.items():
        per_process = []
        seconds_per_step = []
        for record in ranks:
            ends, frames = record["ends"], record["frames"]
            elapsed = ends[-1] - ends[args.ddp_warmup - 1]
            per_process.append(sum(frames[args.ddp_warmup:]) / elapsed)
            seconds_per_step.append(elapsed / (len(ends) - args.ddp_warmup))
        total = sum(per_process)
        first_total = first_total or total
        print(f"| {devices} | {threads} | {statistics.mean(seconds_per_step):.2f} | "
              f"{statistics.mean(per_process):.1f} | {total:.1f} | {total / first_total:.2f}× |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--lanes", type=int, default=4, help="B")
    parser.add_argument("--steps", type=int, default=8, help="T")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per model in part 1")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of part 1 and of the widest part-2 run")
    parser.add_argument("--videos", type=int, default=4, help="synthetic videos for part 2")
    parser.add_argument("--frames-per-video", type=int, default=600)
    parser.add_argument("--ddp-steps", type=int, default=10, help="timed optimizer steps per run in part 2")
    parser.add_argument("--ddp-warmup", type=int, default=3, help="untimed optimizer steps before those")
    parser.add_argument("--ddp-timeout", type=int, default=600, help="seconds allowed for each DDP run")
    parser.add_argument("--skip", choices=("per-frame", "ddp"), default=None, help="leave out one part")
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ddp_worker:
        ddp_worker(args)
        return

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} torch threads", flush=True)
    if args.skip != "per-frame":
        per_frame_comparison(args.image_size, args.lanes, args.steps, args.repeats)
    if args.skip != "ddp":
        ddp_comparison(args)


if __name__ == "__main__":
    main()

"""YOLOv3 on the CPU: training and inference images/s, and what fusing BatchNorm buys at inference.

Two sizes at ``--image-size`` (default 320 px), 24 classes, COCO anchors, random weights:

  tiny  width 0.125, depth 0.34 (the CPU test/demo model), batches of ``--tiny-batch`` images
  full  width 1.0, depth 1.0 (yolov3.cfg), batches of ``--full-batch`` images

Training is forward + ``yolov3_loss`` (three boxes per image) + backward + an SGD step. Inference
runs up to four ways on the same weights:

  (u) unfused: ``model.eval()``, NCHW, ``torch.inference_mode``
  (n) fused only: ``model.eval().fuse()`` (BatchNorm folded into the convs), NCHW,
      ``torch.inference_mode`` — what folding alone buys
  (f) fused: (n) in channels_last memory format (the model and the input)
  (c) compiled: ``torch.compile`` of (f) with inductor's ``freezing`` (weights become constants,
      so convolutions get prepacked oneDNN weights and fused activations); skipped with a
      message when it fails or compiling takes longer than ``--compile-budget`` seconds
      (``--no-compile`` skips it). Inductor caches what it compiled (under the system's
      temporary folder), so a second run compiles much faster than the first.

Before inference the BatchNorm layers get random affine parameters and running statistics of
real activations (one batch), so that folding them is not a no-op. Outputs of (n), (f) and (c)
must agree with (u) within 1e-4 (``torch.testing.assert_close`` with ``atol = rtol = 1e-4``).
After one warm-up each, the variants run round-robin (so that load from other processes hits
all of them alike); the table gives medians of the wall-clock and the process CPU time, and
the speed-ups over (u) in both. The goal is
(u)/(f) ≥ 1.15 in wall-clock time. On a machine shared with other jobs use one thread (the
default): a multi-threaded op waits for its slowest thread, and a thread that loses its core
to another process stalls the others, so two threads on two busy cores ran several times
slower than one here.

Run: ``.venv/bin/python benchmarks/yolov3.py [--threads 1 --repeats 7 --full-repeats 5]`` (minutes).
"""

from __future__ import annotations

import argparse
import copy
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch._inductor.config
from torch import Tensor, nn

from restaurant_action.models.losses import yolov3_loss
from restaurant_action.models.yolov3 import COCO_ANCHORS, YOLOv3

NUM_CLASSES = 24
TOLERANCE = 1e-4
FUSION_GOAL = 1.15


@dataclass(frozen=True)
class ModelSize:
    """One benchmarked model: its multipliers, batch size and number of timed runs."""

    name: str
    width: float
    depth: float
    batch: int
    repeats: int


@dataclass(frozen=True)
class Timing:
    """Median seconds per batch of one variant."""

    wall: float
    cpu: float


def random_targets(batch: int, image_size: int, boxes_per_image: int = 3, seed: int = 0,
                   min_size: float = 16, max_size: float = 128) -> Tensor:
    """``(batch·boxes_per_image, 6)`` rows ``[image_index, class, x1, y1, x2, y2]``, boxes of ``min_size``–``max_size`` px."""
    generator = torch.Generator().manual_seed(seed)
    count = batch * boxes_per_image
    size = torch.empty(count, 2).uniform_(min_size, max_size, generator=generator)
    corner = torch.rand(count, 2, generator=generator) * (image_size - size)
    image_index = torch.arange(batch).repeat_interleave(boxes_per_image).float()
    classes = torch.randint(0, NUM_CLASSES, (count,), generator=generator).float()
    return torch.cat([image_index[:, None], classes[:, None], corner, corner + size], dim=1)


def timed(run: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def round_robin(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, Timing]:
    """Median timings of each variant after one warm-up each, the variants interleaved."""
    for run in variants.values():
        run()
    walls: dict[str, list[float]] = {name: [] for name in variants}
    cpus: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            wall, cpu = timed(run)
            walls[name].append(wall)
            cpus[name].append(cpu)
    return {name: Timing(statistics.median(walls[name]), statistics.median(cpus[name])) for name in variants}


def training_step_fn(model: YOLOv3, images: Tensor, targets: Tensor) -> Callable[[], None]:
    """One forward + loss + backward + SGD step of ``model`` on a fixed batch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.937, nesterov=True)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss, _ = yolov3_loss(model(images), targets, model.anchors, model.strides)
        loss.mean().backward()
        optimizer.step()

    return step


def calibrate_batchnorm(model: nn.Module, images: Tensor, seed: int = 0) -> None:
    """Random BatchNorm affine parameters, then running statistics of ``images`` (one batch)."""
    generator = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.copy_(torch.empty_like(norm.weight).uniform_(0.5, 1.5, generator=generator))
            norm.bias.copy_(torch.randn(norm.bias.shape, generator=generator) * 0.1)
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average: after one batch, exactly its statistics
        model.train()
        model(images)
    for norm in norms:
        norm.momentum = 0.1
    model.eval()


def compare(outputs: list[Tensor], reference: list[Tensor]) -> str:
    """Check ``outputs`` against ``reference`` (three scales) within ``TOLERANCE``; describe the difference."""
    for output, expected in zip(outputs, reference):
        torch.testing.assert_close(output, expected, atol=TOLERANCE, rtol=TOLERANCE)
    difference = max(float((a - b).abs().max()) for a, b in zip(outputs, reference))
    largest = max(float(b.abs().max()) for b in reference)
    return f"max |difference| {difference:.1e} (largest |output| {largest:.1f}), within atol = rtol = {TOLERANCE}"


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise ``TimeoutError`` in the main thread after ``seconds`` (POSIX; no limit elsewhere)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def compile_model(model: nn.Module, images: Tensor, budget_s: int) -> tuple[nn.Module | None, str]:
    """``torch.compile(model)`` with inductor's freezing, and its first call; ``(None, why)`` when it
    fails or runs out of time."""
    start = time.perf_counter()
    try:
        with time_limit(budget_s), torch._inductor.config.patch(freezing=True), torch.inference_mode():
            compiled = torch.compile(model)
            compiled(images)
    except Exception as error:  # noqa: BLE001 - any compiler failure means "skip this row"
        torch._dynamo.reset()
        return None, f"torch.compile skipped: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return compiled, f"torch.compile: first call (compilation) took {time.perf_counter() - start:.0f} s"


def benchmark(size: ModelSize, image_size: int, try_compile: bool, compile_budget_s: int) -> list[str]:
    """Measure one model size; returns its table rows and prints notes (agreement, compile)."""
    torch.manual_seed(0)
    model = YOLOv3(NUM_CLASSES, COCO_ANCHORS, size.width, size.depth)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    images = torch.rand(size.batch, 3, image_size, image_size)
    targets = random_targets(size.batch, image_size)

    model.train()
    train = round_robin({"train": training_step_fn(model, images, targets)}, size.repeats)["train"]

    calibrate_batchnorm(model, images)
    fused_nchw = copy.deepcopy(model).fuse()
    fused = copy.deepcopy(fused_nchw).to(memory_format=torch.channels_last)
    images_last = images.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        reference = model(images)
        notes = [f"{size.name}: (n) vs (u) {compare(fused_nchw(images), reference)}",
                 f"{size.name}: (f) vs (u) {compare(fused(images_last), reference)}"]
    variants: dict[str, Callable[[], object]] = {"(u) eval, unfused": lambda: model(images),
                                                  "(n) eval, fused, NCHW": lambda: fused_nchw(images),
                                                  "(f) eval, fused, channels_last": lambda: fused(images_last)}
    if try_compile:
        compiled, message = compile_model(fused, images_last, compile_budget_s)
        notes.append(f"{size.name}: {message}")
        if compiled is not None:
            with torch.inference_mode():
                notes.append(f"{size.name}: (c) vs (u) {compare(compiled(images_last), reference)}")
            variants["(c) torch.compile of (f), freezing"] = lambda: compiled(images_last)
    with torch.inference_mode():
        inference = round_robin(variants, size.repeats)

    rows = [f"| {size.name} | {params:.2f} | train (fwd+loss+bwd+SGD) | {size.batch} | {train.wall:.3f} | "
            f"{size.batch / train.wall:.2f} | {train.cpu / size.batch:.3f} | | |"]
    baseline = inference["(u) eval, unfused"]
    for name, timing in inference.items():
        rows.append(f"| {size.name} | {params:.2f} | {name} | {size.batch} | {timing.wall:.3f} | "
                    f"{size.batch / timing.wall:.2f} | {timing.cpu / size.batch:.3f} | {baseline.wall / timing.wall:.2f}× "
                    f"| {baseline.cpu / timing.cpu:.2f}× |")
    for note in notes:
        print(note, flush=True)
    ratio = baseline.wall / inference["(f) eval, fused, channels_last"].wall
    print(f"{size.name}: fused inference speed-up {ratio:.2f}× (goal ≥ {FUSION_GOAL}×: "
          f"{'met' if ratio >= FUSION_GOAL else 'NOT met'})", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=320)
    parser.add_argument("--tiny-batch", type=int, default=16)
    parser.add_argument("--full-batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per variant, tiny model")
    parser.add_argument("--full-repeats", type=int, default=5, help="timed runs per variant, full model")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (one is the steadiest on a shared machine)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    parser.add_argument("--compile-budget", type=int, default=240, help="seconds allowed for compiling")
    parser.add_argument("--only", choices=("tiny", "full"), default=None, help="benchmark one size only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    sizes = [ModelSize("tiny", 0.125, 0.34, args.tiny_batch, args.repeats),
             ModelSize("full", 1.0, 1.0, args.full_batch, args.full_repeats)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.image_size} px, {NUM_CLASSES} classes, "
          f"median of interleaved runs after one warm-up", flush=True)
    rows: list[str] = []
    for size in sizes:
        if args.only in (None, size.name):
            rows += benchmark(size, args.image_size, not args.no_compile, args.compile_budget)
    print("| model | params (M) | run | batch | wall s / batch | images/s | CPU s / image | speed-up vs (u), wall "
          "| speed-up vs (u), CPU |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

"""YOWO speed per 3D backbone: training and inference clips/s, and the cost of each branch.

For every configuration (3D backbone, widths, this library's added heads) a ``YOWOModule``
with 24 classes and the UCF101-24 anchors runs on random 16-frame 224×224 clips, on the CPU:

  inference: ``YOWO.predict`` (forward and decoding) in eval mode under ``torch.inference_mode()``
  training: ``YOWOModule.loss`` in train mode (region loss and the added heads' losses, with
  random targets), backward, AdamW step
  2D branch: ``backbone_2d`` on the key frames only ``(B, 3, 224, 224)`` (inference)
  3D branch: ``backbone_3d`` on the clips ``(B, 3, 16, 224, 224)`` (inference)

Each timing is the median of ``--repeats`` runs after one warm-up, in wall-clock and in process
CPU seconds (steadier on a shared machine). The YOWO paper's widths (1.0; ResNeXt-101 and
ShuffleNetV2) are slow on a CPU, so they run with batch 1 and ``--full-repeats`` runs; the tiny
widths (0.25, CFAM 256) with ``--batch``. torchvision's 3D models have no width option and
are left out. The tiny ResNet-18-3D also runs with the RoI action head (``roi_stride=8``) and
with it and the box refiner (``roi_refine``), beside the plain one. Prints a Markdown table
(clips/s, CPU seconds per clip, and the branches in CPU ms per clip).

Run: ``.venv/bin/python benchmarks/yowo.py [--threads 1 --repeats 3 --full-repeats 1 --batch 4 --only-tiny]``
(about 5 minutes on one core).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import torch

from restaurant_action.lightning.yowo import YOWOModule
from restaurant_action.models.yowo import UCF24_ANCHORS

NUM_CLASSES = 24


class Config(NamedTuple):
    """One measured model: 3D backbone name, branch widths, CFAM width, whether it is one of
    the paper's full widths (run with batch 1 and ``--full-repeats``), and the added heads
    (``roi_stride``, ``roi_refine`` of ``YOWOModule``)."""

    backbone_3d: str
    width_3d: float
    width_2d: float
    cfam_channels: int
    full: bool
    roi_stride: int | None = None
    roi_refine: bool = False

    @property
    def label(self) -> str:
        """The backbone and its added heads."""
        heads = [*(("RoI head",) if self.roi_stride else ()), *(("box refiner",) if self.roi_refine else ())]
        return " + ".join([self.backbone_3d, *heads])


CONFIGS = (
    Config("resnext101", 1.0, 1.0, 1024, True),
    Config("shufflenetv2", 1.0, 1.0, 1024, True),
    Config("resnext101", 0.25, 0.25, 256, False),
    Config("resnet18", 0.25, 0.25, 256, False),
    Config("resnet18", 0.25, 0.25, 256, False, roi_stride=8),
    Config("resnet18", 0.25, 0.25, 256, False, roi_stride=8, roi_refine=True),
    Config("resnet50", 0.25, 0.25, 256, False),
    Config("mobilenetv2", 0.25, 0.25, 256, False),
    Config("shufflenetv2", 0.25, 0.25, 256, False),
)


def _median_seconds(run: Callable[[], None], repeats: int) -> tuple[float, float]:
    """Median wall-clock and process CPU seconds of ``run`` after one warm-up."""
    run()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def _random_targets(batch: int, size: int) -> torch.Tensor:
    """Two boxes per frame, ``(2B, 6)`` ``[image_index, class, x1, y1, x2, y2]`` pixels."""
    generator = torch.Generator().manual_seed(0)
    index = torch.arange(batch).repeat_interleave(2).float()
    corner = torch.rand(2 * batch, 2, generator=generator) * size * 0.6
    extent = torch.rand(2 * batch, 2, generator=generator) * size * 0.3 + 16
    labels = torch.randint(NUM_CLASSES, (2 * batch,), generator=generator).float()
    return torch.cat([index[:, None], labels[:, None], corner, (corner + extent).clamp(max=size)], dim=1)


def measure(config: Config, batch: int, frames: int, size: int, repeats: int) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds per clip of a training step, inference and each branch."""
    torch.manual_seed(0)
    module = YOWOModule(NUM_CLASSES, UCF24_ANCHORS, config.backbone_3d, config.width_2d, config.width_3d,
                        clip_length=frames, cfam_channels=config.cfam_channels, roi_stride=config.roi_stride,
                        roi_refine=config.roi_refine)
    model = module.network
    clips = torch.rand(batch, 3, frames, size, size)
    targets = _random_targets(batch, size)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss, _ = module.loss(clips.permute(0, 2, 1, 3, 4), targets)
        loss.mean().backward()
        optimizer.step()

    def inference(run: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def timed() -> None:
            with torch.inference_mode():
                run()
        return timed

    module.train()
    train = _median_seconds(train_step, repeats)
    module.eval()
    infer = _median_seconds(inference(lambda: model.predict(clips)), repeats)
    branch_2d = _median_seconds(inference(lambda: model.backbone_2d(clips[:, :, -1])), repeats)
    branch_3d = _median_seconds(inference(lambda: model.backbone_3d(clips)), repeats)
    return {name: (wall / batch, cpu / batch)
            for name, (wall, cpu) in {"train": train, "infer": infer, "2d": branch_2d, "3d": branch_3d}.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4, help="clips per batch of the tiny widths (full: 1)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the tiny widths")
    parser.add_argument("--full-repeats", type=int, default=1, help="timed runs of the full widths")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--only-tiny", action="store_true", help="skip the paper's (full) widths")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.frames}×{args.size}×{args.size} "
          f"clips, {NUM_CLASSES} classes, median of {args.repeats} (full widths: {args.full_repeats}) runs after a "
          "warm-up; CPU = process CPU time")
    print("| 3D backbone | width 3D / 2D, CFAM | batch | train clips/s | train CPU s/clip | inference clips/s "
          "| inference CPU s/clip | 2D key frame CPU ms/clip | 3D clip CPU ms/clip | 3D / 2D |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for config in CONFIGS:
        if config.full and args.only_tiny:
            continue
        batch, repeats = (1, args.full_repeats) if config.full else (args.batch, args.repeats)
        result = measure(config, batch, args.frames, args.size, repeats)
        (train_wall, train_cpu), (infer_wall, infer_cpu) = result["train"], result["infer"]
        cpu_2d, cpu_3d = result["2d"][1], result["3d"][1]
        print(f"| {config.label} | {config.width_3d:g} / {config.width_2d:g}, {config.cfam_channels} | {batch} "
              f"| {1 / train_wall:.2f} | {train_cpu:.2f} | {1 / infer_wall:.2f} | {infer_cpu:.2f} "
              f"| {1000 * cpu_2d:.0f} | {1000 * cpu_3d:.0f} | {cpu_3d / cpu_2d:.1f}× |", flush=True)


if __name__ == "__main__":
    main()

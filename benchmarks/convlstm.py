"""Forward + backward time of the fused ConvLSTM against the per-gate reference of equation 1.

At a YOLO-head-like size (default B=4, T=8, 128 → 128 channels, 3×3 kernels, 20×20 and 40×40
grids), with the same weights, on the CPU, three ways:

  (r) reference: ``_convlstm_reference.ReferenceConvLSTM``, one ``nn.Conv2d`` per term of
      equation 1 (11 per step), state starting as zeros
  (c) fused cell stepped frame by frame: ``ConvLSTMCell`` (one conv over ``cat(X, H)``, one
      i/f peephole conv, one o peephole conv per step)
  (f) fused ``ConvLSTM``: the X part of all T frames in one batched conv before the time loop,
      the loop one autograd node (two convs per step forward, two backward, each weight's
      gradient one conv over all steps)

Each run is the forward pass, a loss on every output and the backward pass to the input and the
weights. After one warm-up each, the variants run round-robin ``--repeats`` times (so that load
from other processes hits all of them alike); prints a Markdown table of the median wall-clock
and process CPU seconds and the speed-ups over the reference. On a shared machine the CPU time
of a one-thread run (``--threads 1``) is the steadiest measure of the work done. The goal is
(r)/(f) ≥ 2. The outputs of the three are checked to agree.

Beside the times, the work each variant does (one more pass each, not timed): its floating-point
operations (``torch.utils.flop_counter``, in GFLOP) and the rate it reached (GFLOP per CPU
second, against the machine's peak: where a variant runs its convolutions at the peak, no
reordering of the same arithmetic can make it faster), and the aten operators it ran that
compute (views excluded) with the convolutions among them: on a GPU each is at least one kernel
launch, which is what fusion saves there.

At the tiny ConvLSTM-YOLO's sizes (width 0.125 at 160 px: ``--channels 16 --hidden 8 --sizes 20``
for the stride-8 head, whose ConvLSTM reads 2 × 8 channels, the features reduced to a quarter
and their change; ``32 16 10`` and ``64 32 5`` for strides 16 and 32) the convolutions are
small and the per-call work the fusion removes weighs more.

Run: ``.venv/bin/python benchmarks/convlstm.py [--batch 4 --steps 8 --channels 128 --hidden 128 --sizes 20 40 --threads 2]``;
``--device cuda`` runs it on a GPU (there the wall columns count; CPU time is the host's).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from restaurant_action.models._convlstm_reference import ReferenceConvLSTM
from restaurant_action.models.convlstm import ConvLSTM


def _stepped_cell(lstm: ConvLSTM) -> Callable[[Tensor], Tensor]:
    """``x (B, T, C, H, W) -> (B, T, hidden, H, W)`` by calling the first layer's cell once per frame."""
    cell = lstm.cells[0]

    def run(x: Tensor) -> Tensor:
        state = None
        outputs = []
        for t in range(x.shape[1]):
            h, state = cell(x[:, t], state)
            outputs.append(h)
        return torch.stack(outputs, dim=1)

    return run


def _forward_backward(run: Callable[[Tensor], Tensor], x: Tensor) -> tuple[float, float, Tensor]:
    """Wall-clock and process CPU seconds of one forward + backward pass, and the output
    (on a GPU the clock stops when the device has finished)."""
    x.grad = None
    _synchronize(x.device)
    wall, cpu = time.perf_counter(), time.process_time()
    y = run(x)
    y.square().mean().backward()
    _synchronize(x.device)
    return time.perf_counter() - wall, time.process_time() - cpu, y.detach()


class _OpCounter(TorchDispatchMode):
    """Counts the aten operators that compute (views excluded): on a GPU each one is at least one
    kernel launch, and convolutions are counted apart."""

    def __init__(self) -> None:
        super().__init__()
        self.operators = 0
        self.convolutions = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 (dispatch protocol)
        if not func.is_view:
            self.operators += 1
            self.convolutions += "convolution" in func.name()
        return func(*args, **(kwargs or {}))


def _work(run: Callable[[Tensor], Tensor], x: Tensor) -> tuple[float, int, int]:
    """Floating-point operations (GFLOP, by ``torch.utils.flop_counter``), computing aten
    operators and convolutions of one forward + backward pass."""
    flops, operators = FlopCounterMode(display=False), _OpCounter()
    with flops:
        run(x).square().mean().backward()
    with operators:
        run(x).square().mean().backward()
    x.grad = None
    return flops.get_total_flops() / 1e9, operators.operators, operators.convolutions


def _synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing to wait for on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--channels", type=int, default=128, help="input channels")
    parser.add_argument("--hidden", type=int, default=None, help="hidden channels (default: --channels)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 40], help="grid sizes (square)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda (compare the wall columns there)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    hidden = args.hidden or args.channels
    device = torch.device(args.device)
    lstm = ConvLSTM(args.channels, hidden).to(device)
    reference = ReferenceConvLSTM.from_fused(lstm).to(device)
    variants = {
        "(r) per-gate reference": lambda x: reference(x)[0],
        "(c) fused cell, stepped": _stepped_cell(lstm),
        "(f) fused ConvLSTM": lambda x: lstm(x)[0],
    }
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, B={args.batch} T={args.steps} "
          f"C={args.channels}→{hidden} k=3, forward+backward, median of {args.repeats} interleaved runs")
    print("| grid | variant | wall s | CPU s | speed-up (wall) | speed-up (CPU) | GFLOP | GFLOP/s (CPU) "
          "| operators (convolutions) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        x = torch.randn(args.batch, args.steps, args.channels, size, size, device=device, requires_grad=True)
        outputs = {name: _forward_backward(run, x)[2] for name, run in variants.items()}
        work = {name: _work(run, x) for name, run in variants.items()}
        walls: dict[str, list[float]] = {name: [] for name in variants}
        cpus: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):  # round-robin, so that load from elsewhere hits every variant alike
            for name, run in variants.items():
                wall, cpu, _ = _forward_backward(run, x)
                walls[name].append(wall)
                cpus[name].append(cpu)
        wall_baseline, cpu_baseline = (statistics.median(times[next(iter(variants))]) for times in (walls, cpus))
        for name in variants:
            wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
            gflop, operators, convolutions = work[name]
            print(f"| {size}×{size} | {name} | {wall:.3f} | {cpu:.3f} | {wall_baseline / wall:.2f}× "
                  f"| {cpu_baseline / cpu:.2f}× | {gflop:.2f} | {gflop / cpu:.0f} | {operators} ({convolutions}) |",
                  flush=True)
        reference_output = next(iter(outputs.values()))
        for y in outputs.values():
            torch.testing.assert_close(y, reference_output, atol=1e-4, rtol=1e-4)


if __name__ == "__main__":
    main()

"""Benchmark: FrameMAP vs torchmetrics' MeanAveragePrecision, measured side by side in one run.

Workload: N frames, 24 classes, 1-5 ground truths (about 3) and 10-30 detections (about 20)
per frame; most detections are jittered copies of a ground truth with the right or a wrong
class. Every metric gets the same ``update`` calls (batches of 16 frames, as in a validation
loop) followed by one ``compute``; the time of both together is reported, and the per-class
APs are compared. Then FrameMAP alone runs on the same workload and on a larger one, each run in a
fresh process so its peak memory (the kernel's peak RSS, reset after the inputs are built) can be read.

    python benchmarks/metrics.py                       # 5,000 frames, then 50,000 (ours only)
    python benchmarks/metrics.py --frames 1000 --scale-frames 0
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings

import numpy as np
import torch

NUM_CLASSES = 24
BATCH = 16


def make_frames(num_frames: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """The benchmark workload (module doc)."""
    g = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for _ in range(num_frames):
        num_gts = int(torch.randint(1, 6, (1,), generator=g))
        num_dets = int(torch.randint(10, 31, (1,), generator=g))
        gt_boxes = torch.rand(num_gts, 4, generator=g) * 1000
        gt_boxes[:, 2:] = gt_boxes[:, :2] + 40 + torch.rand(num_gts, 2, generator=g) * 200
        gt_labels = torch.randint(0, NUM_CLASSES, (num_gts,), generator=g)
        source = torch.randint(0, num_gts, (num_dets,), generator=g)
        det_boxes = gt_boxes[source] + torch.randn(num_dets, 4, generator=g) * 20
        det_boxes[:, 2:] = torch.maximum(det_boxes[:, 2:], det_boxes[:, :2] + 2)
        det_labels = torch.where(torch.rand(num_dets, generator=g) < 0.5, gt_labels[source], torch.randint(0, NUM_CLASSES, (num_dets,), generator=g))
        preds.append({"boxes": det_boxes, "scores": torch.rand(num_dets, generator=g), "labels": det_labels})
        targets.append({"boxes": gt_boxes, "labels": gt_labels})
    return preds, targets


def run(metric, preds: list[dict], targets: list[dict]) -> tuple[float, dict]:
    """Seconds for all ``update`` calls plus ``compute``, and the result."""
    start = time.perf_counter()
    for index in range(0, len(preds), BATCH):
        metric.update(preds[index : index + BATCH], targets[index : index + BATCH])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = metric.compute()
    return time.perf_counter() - start, result


def per_class_ap(result: dict, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """``(C,)`` AP with NaN for classes without ground truth, from either library's result."""
    if "ap_per_class" in result:
        return result["ap_per_class"].numpy().astype(np.float64)
    values = np.full(num_classes, np.nan)
    for label, value in zip(np.atleast_1d(result["classes"].numpy()), np.atleast_1d(result["map_per_class"].numpy())):
        values[label] = value if value > -1 else np.nan
    return values


def ap_difference(first: np.ndarray, second: np.ndarray) -> float:
    """Largest absolute difference of two per-class AP vectors; inf when they disagree on which classes are NaN."""
    if not np.array_equal(np.isnan(first), np.isnan(second)):
        return float("inf")
    return float(np.nanmax(np.abs(first - second))) if (~np.isnan(first)).any() else 0.0


def compare(num_frames: int) -> list[dict]:
    """FrameMAP (both protocols) and torchmetrics (each installed backend) on one workload."""
    from torchmetrics.detection import MeanAveragePrecision

    from restaurant_action.metrics import FrameMAP

    preds, targets = make_frames(num_frames)
    warm_preds, warm_targets = make_frames(20, seed=1)
    candidates = [
        ("FrameMAP coco101", lambda: FrameMAP(NUM_CLASSES, interpolation="coco101")),
        ("FrameMAP voc", lambda: FrameMAP(NUM_CLASSES, interpolation="voc")),
        ("torchmetrics pycocotools", lambda: MeanAveragePrecision(iou_thresholds=[0.5], class_metrics=True)),
    ]
    try:
        import faster_coco_eval  # noqa: F401

        candidates.append(("torchmetrics faster_coco_eval", lambda: MeanAveragePrecision(iou_thresholds=[0.5], class_metrics=True, backend="faster_coco_eval")))
    except ImportError:
        print("faster_coco_eval is not installed: its backend is skipped")
    rows = []
    for name, build in candidates:
        run(build(), warm_preds, warm_targets)  # first-call costs (imports, vmap tracing) out of the timing
        seconds, result = run(build(), preds, targets)
        rows.append({"name": name, "seconds": seconds, "ap": per_class_ap(result), "map": float(result["map"])})
        print(f"  {name:32s} {seconds:8.3f} s   mAP {float(result['map']):.6f}", flush=True)
    return rows


def reset_peak_rss() -> None:
    """Restart the kernel's peak-RSS counter (VmHWM) at the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def status_bytes(field: str) -> int:
    """A memory field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in bytes."""
    with open("/proc/self/status") as handle:
        line = next(line for line in handle if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def scale_child(num_frames: int, interpolation: str) -> None:
    """In a fresh process: time FrameMAP on ``num_frames`` and report RSS before and its peak during update + compute (JSON on stdout)."""
    from restaurant_action.metrics import FrameMAP

    warm_preds, warm_targets = make_frames(20, seed=1)
    run(FrameMAP(NUM_CLASSES, interpolation=interpolation), warm_preds, warm_targets)
    preds, targets = make_frames(num_frames)
    reset_peak_rss()
    rss_before = status_bytes("VmRSS")
    metric = FrameMAP(NUM_CLASSES, interpolation=interpolation)
    seconds, result = run(metric, preds, targets)
    peak = status_bytes("VmHWM")
    state_bytes = sum(t.numel() * t.element_size() for name in metric._defaults for t in getattr(metric, name))
    detections = sum(len(p["scores"]) for p in preds)
    print(json.dumps({"seconds": seconds, "rss_before": rss_before, "peak_rss": peak, "state_bytes": state_bytes, "detections": detections, "map": float(result["map"])}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=5000, help="frames of the side-by-side comparison (0 skips it)")
    parser.add_argument("--scale-frames", type=int, default=50000, help="frames of the larger FrameMAP-only run (0 skips it)")
    parser.add_argument("--child", nargs=2, metavar=("FRAMES", "INTERPOLATION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        scale_child(int(args.child[0]), args.child[1])
        return
    torch.set_num_threads(2)
    print(f"machine: {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    if args.frames:
        print(f"\n{args.frames} frames, {NUM_CLASSES} classes, ~3 ground truths and ~20 detections per frame; update (batches of {BATCH}) + compute:")
        rows = compare(args.frames)
        ours, voc = rows[0], rows[1]
        print("\n| metric | seconds | FrameMAP coco101 faster by | FrameMAP voc faster by | max abs. diff. of per-class AP vs FrameMAP coco101 |")
        print("|---|---|---|---|---|")
        for row in rows:
            diff = "(other protocol)" if row is voc else f"{ap_difference(row['ap'], ours['ap']):.1e}"
            print(f"| {row['name']} | {row['seconds']:.3f} | {row['seconds'] / ours['seconds']:.1f}x | {row['seconds'] / voc['seconds']:.1f}x | {diff} |")
        for row in rows[2:]:
            verdict = "equal (<= 1e-6)" if ap_difference(row["ap"], ours["ap"]) <= 1e-6 else "DIFFERENT"
            print(f"{row['name']}: per-class AP {verdict}; FrameMAP coco101 is {row['seconds'] / ours['seconds']:.1f}x faster, FrameMAP voc {row['seconds'] / voc['seconds']:.1f}x faster")
    sizes = sorted({n for n in (args.frames, args.scale_frames) if n})
    if sizes:
        print(f"\nFrameMAP alone, {' and '.join(str(n) for n in sizes)} frames, a fresh process each (memory: RSS, peak during update + compute):")
        print("| protocol | frames | detections | seconds | RSS before update | peak RSS | peak - before | metric state |")
        print("|---|---|---|---|---|---|---|---|")
        for frames in sizes:
            for interpolation in ("coco101", "voc"):
                output = subprocess.run([sys.executable, __file__, "--child", str(frames), interpolation], check=True, capture_output=True, text=True).stdout
                stats = json.loads(output.strip().splitlines()[-1])
                mib = {key: stats[key] / 2**20 for key in ("rss_before", "peak_rss", "state_bytes")}
                print(
                    f"| {interpolation} | {frames} | {stats['detections']} | {stats['seconds']:.2f} | {mib['rss_before']:.0f} MiB | {mib['peak_rss']:.0f} MiB"
                    f" | {mib['peak_rss'] - mib['rss_before']:.0f} MiB | {mib['state_bytes']:.1f} MiB |"
                )

if __name__ == "__main__":
    main()

"""Can a 3D backbone tell apart actions that only motion separates? A probe, before training YOWO.

Trains a 3D backbone (from scratch) plus a linear layer to classify the named actions at their
boxes, in the clips ``ClipDataModule`` serves (the same frames, order and augmentation YOWO
trains on), and prints the validation accuracy per class every ``--eval-every`` steps. Three
readouts:

- ``crop``: the clip cropped to a square centred on the key frame's box, features averaged
  (what a box-aligned, ROI-style head sees);
- ``cell``: the whole clip, features read at the stride-32 cell holding the box's centre (what
  YOWO's region head sees);
- ``roi``: the whole clip, the backbone's stride-8 (``--roi-stride``) features pooled by a
  :class:`~restaurant_action.models.roi_head.RoIActionHead` over the box enlarged
  ``--context`` times (what ``YOWOModule(roi_stride=...)`` adds); ``--box-jitter`` shifts the
  boxes by up to that fraction of their size, in training and evaluation, as detected boxes are off.

On the synthetic data's motion-only pairs (the default classes), the accuracy says whether a
backbone learns the direction from that readout, in minutes instead of the hours a whole YOWO
needs (docs/training.md, "Where YOWO loses the direction").

    python examples/probe_motion.py DATASET --backbone resnet18 --width 0.25 --readout cell --steps 900
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

import restaurant_action as ra
from restaurant_action.data.synthetic import MOTION_ONLY_PAIRS
from restaurant_action.models.backbones3d import BACKBONE_3D_NAMES, build_backbone3d
from restaurant_action.models.roi_head import RoIActionHead, jitter_boxes

logger = logging.getLogger("probe_motion")
STRIDE = 32  # pixels per cell of the 3D backbones' output
READOUTS = ("crop", "cell", "roi")


def probed_targets(targets: Tensor, class_ids: Tensor) -> tuple[Tensor, Tensor]:
    """The rows ``(N, 6)`` of ``targets`` whose class is in ``class_ids``, and their labels ``(N,)``
    as indices into ``class_ids``.
    """
    targets = targets[torch.isin(targets[:, 1].long(), class_ids)]
    return targets, (targets[:, 1:2].long() == class_ids).float().argmax(dim=1)


def network_clips(clips: Tensor) -> Tensor:
    """uint8 clips ``(N, T, 3, S, S)`` as the 3D backbones take them: float ``[0, 1]``, ``(N, 3, T, S, S)``."""
    return clips.float().div(255).transpose(1, 2)


def box_crops(batch: Mapping[str, Any], class_ids: Tensor, crop: int, jitter: int = 0) -> tuple[Tensor, Tensor]:
    """Crops ``(N, 3, T, crop, crop)`` (``[0, 1]``; zeros from a pixel past the frame on) centred on every target
    box of ``class_ids`` (shifted by a random ``[-jitter, jitter]`` pixels in x and y), and their labels ``(N,)``
    as indices into ``class_ids``.
    """
    clips = batch["clips"]
    frames = clips.shape[1]
    targets, labels = probed_targets(batch["targets"], class_ids)
    centres = (targets[:, 2:4] + targets[:, 4:6]) / 2
    if jitter:
        centres = centres + torch.randint(-jitter, jitter + 1, centres.shape)
    square = torch.cat([centres - crop / 2, centres + crop / 2], dim=1)
    rois = torch.cat([(targets[:, :1].long() * frames + torch.arange(frames)).reshape(-1, 1).float(),
                      square.repeat_interleave(frames, dim=0)], dim=1)
    images = clips.flatten(0, 1).float() / 255
    cut = roi_align(images, rois, crop, aligned=True)  # (N·T, 3, crop, crop)
    return cut.view(len(targets), frames, 3, crop, crop).transpose(1, 2), labels


def box_cells(batch: Mapping[str, Any], class_ids: Tensor, stride: int) -> tuple[tuple[Tensor, Tensor], Tensor]:
    """For every target box of ``class_ids``: its whole clip ``(N, 3, T, S, S)`` (``[0, 1]``) and the
    ``(column, row)`` of the ``stride`` cell holding its centre ``(N, 2)``; and the labels ``(N,)``.
    """
    targets, labels = probed_targets(batch["targets"], class_ids)
    centres = (targets[:, 2:4] + targets[:, 4:6]) / 2
    clips = network_clips(batch["clips"][targets[:, 0].long()])
    cells = centres.div(stride).long().clamp(max=clips.shape[-1] // stride - 1)
    return (clips, cells), labels


def box_rois(batch: Mapping[str, Any], class_ids: Tensor, jitter: float = 0.0) -> tuple[tuple[Tensor, Tensor], Tensor]:
    """The batch's clips ``(B, 3, T, S, S)`` (``[0, 1]``) and the rois ``(N, 5)`` ``[clip, x1, y1, x2, y2]``
    of every target box of ``class_ids`` (shifted by up to ``jitter`` of its size); and the labels ``(N,)``.
    """
    targets, labels = probed_targets(batch["targets"], class_ids)
    boxes = jitter_boxes(targets[:, 2:6], jitter) if jitter else targets[:, 2:6]
    return (network_clips(batch["clips"]), torch.cat([targets[:, :1], boxes], dim=1)), labels


class Probe(nn.Module):
    """A 3D backbone and a linear layer over its features, averaged (``crop``), read at a cell
    (``cell``) or pooled over the box (``roi``, a :class:`RoIActionHead` at ``roi_stride``).
    """

    def __init__(self, backbone: str, width: float, num_classes: int, readout: str, roi_stride: int = 8,
                 context: float = 2.0) -> None:
        super().__init__()
        self.backbone = build_backbone3d(backbone, width)
        self.readout = readout
        if readout == "roi":
            self.head: nn.Module = RoIActionHead(self.backbone.stage_channels(roi_stride), num_classes, roi_stride,
                                                 context=context)
        else:
            self.head = nn.Linear(self.backbone.out_channels, num_classes)

    def forward(self, inputs: Tensor | tuple[Tensor, Tensor]) -> Tensor:
        """Class scores ``(N, classes)`` of crops ``(N, 3, T, h, w)``, of ``(clips, cells)`` (see
        :func:`box_cells`) or of ``(clips, rois)`` (see :func:`box_rois`).
        """
        if self.readout == "crop":
            return self.head(self.backbone(inputs).mean(dim=(2, 3)))
        clips, where = inputs
        if self.readout == "roi":
            _, stage = self.backbone.forward_with_stage(clips, self.head.stride)
            return self.head(stage, where)
        features = self.backbone(clips)  # (N, C, S/32, S/32)
        return self.head(features[torch.arange(len(features)), :, where[:, 1], where[:, 0]])


def probe_inputs(batch: Mapping[str, Any], class_ids: Tensor, args: argparse.Namespace) -> tuple[Any, Tensor]:
    """The inputs of ``Probe`` for ``args.readout`` and their labels."""
    if args.readout == "crop":
        return box_crops(batch, class_ids, args.crop, args.jitter)
    if args.readout == "roi":
        return box_rois(batch, class_ids, args.box_jitter)
    return box_cells(batch, class_ids, STRIDE)


@torch.no_grad()
def accuracy_per_class(probe: Probe, datamodule: ra.ClipDataModule, class_ids: Tensor, args: argparse.Namespace) -> list[float]:
    """Validation accuracy of every probed class."""
    probe.eval()
    correct, total = torch.zeros(len(class_ids)), torch.zeros(len(class_ids))
    for batch in datamodule.val_dataloader():
        inputs, labels = probe_inputs(batch, class_ids, args)
        if len(labels):
            hits = probe(inputs).argmax(dim=1) == labels
            total += torch.bincount(labels, minlength=len(class_ids))
            correct += torch.bincount(labels[hits], minlength=len(class_ids))
    probe.train()
    return (correct / total.clamp(min=1)).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path, help="dataset folder (with splits.json or val_fraction's split)")
    parser.add_argument("--classes", nargs="+", default=[name for pair in MOTION_ONLY_PAIRS[:2] for name in pair],
                        help="action names to tell apart (default: the synthetic data's first two motion-only pairs)")
    parser.add_argument("--backbone", default="resnet18", choices=BACKBONE_3D_NAMES)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--clip-length", type=int, default=4)
    parser.add_argument("--frame-stride", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--readout", default="crop", choices=READOUTS)
    parser.add_argument("--crop", type=int, default=64, help="crop side in pixels at --image-size (a multiple of 32)")
    parser.add_argument("--jitter", type=int, default=0,
                        help="crop readout: shift every crop's centre by up to this many pixels (16: anywhere in a 32-px cell)")
    parser.add_argument("--roi-stride", type=int, default=8, choices=(8, 16), help="roi readout: feature stride")
    parser.add_argument("--context", type=float, default=2.0, help="roi readout: box enlargement")
    parser.add_argument("--box-jitter", type=float, default=0.0,
                        help="roi readout: shift every box by up to this fraction of its size (training and evaluation)")
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--eval-every", type=int, default=150)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--cache-dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", type=Path, help="write the trained backbone's state dict here (YOWO's pretrained_3d loads it)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(args.seed)

    datamodule = ra.ClipDataModule(args.root, image_size=args.image_size, clip_length=args.clip_length,
                                   frame_stride=args.frame_stride, batch_size=16, cache_dir=args.cache_dir, seed=args.seed)
    datamodule.setup("fit")
    unknown = [name for name in args.classes if name not in datamodule.classes]
    if unknown:
        parser.error(f"classes not in {args.root}/classes.txt: {unknown}")
    class_ids = torch.tensor([datamodule.classes.index(name) for name in args.classes])
    probe = Probe(args.backbone, args.width, len(class_ids), args.readout, args.roi_stride, args.context)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=args.lr)
    step, losses, start = 0, [], time.perf_counter()
    while step < args.steps:
        for batch in datamodule.train_dataloader():
            inputs, labels = probe_inputs(batch, class_ids, args)
            if not len(labels):
                continue
            loss = F.cross_entropy(probe(inputs), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
            if step % args.eval_every == 0 or step == args.steps:
                accuracy = accuracy_per_class(probe, datamodule, class_ids, args)
                logger.info(json.dumps({"step": step, "train_loss": round(sum(losses) / len(losses), 3),
                                        "val_accuracy": dict(zip(args.classes, [round(a, 3) for a in accuracy])),
                                        "seconds": round(time.perf_counter() - start)}))
                losses = []
            if step >= args.steps:
                break
    if args.save:
        torch.save(probe.backbone.state_dict(), args.save)
        logger.info("wrote the %s backbone to %s", args.backbone, args.save)


if __name__ == "__main__":
    main()

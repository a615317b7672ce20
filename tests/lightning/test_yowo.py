"""YOWOModule: real Lightning runs of a tiny YOWO on the tiny synthetic dataset (64 px, 4-frame clips)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import pytorch_lightning as pl
import torch
from torch import Tensor
from torchvision.ops import box_iou

from restaurant_action.data.datamodules import ClipDataModule
from restaurant_action.lightning._detection import targets_per_image, video_id
from restaurant_action.lightning.yowo import YOWOModule
from restaurant_action.metrics import VideoMAP
from restaurant_action.models.backbones3d import build_backbone3d
from restaurant_action.models.darknet import Darknet19, save_darknet_weights
from restaurant_action.models.postprocess import decode_region

TINY = {"backbone_3d": "resnet18", "width_2d": 0.125, "width_3d": 0.125, "cfam_channels": 32, "clip_length": 4}
QUIET = {"accelerator": "cpu", "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
         "enable_model_summary": False, "num_sanity_val_steps": 0}


def _datamodule(root: Path, **kwargs: Any) -> ClipDataModule:
    options = {"image_size": 64, "clip_length": 4, "batch_size": 4, "num_workers": 0} | kwargs
    return ClipDataModule(root, **options)


def _module(dm: ClipDataModule, **kwargs: Any) -> YOWOModule:
    torch.manual_seed(0)
    options = TINY | {"lr": 1e-3, "class_names": dm.classes, "class_ranking": dm.top_classes(5)} | kwargs
    return YOWOModule(dm.num_classes, dm.anchors(5), **options)


def _snapshot(module: torch.nn.Module) -> dict[str, Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def _changed(before: dict[str, Tensor], module: torch.nn.Module) -> set[str]:
    return {name for name, tensor in module.state_dict().items()
            if name.endswith("weight") and not torch.equal(tensor, before[name])}


def test_fit_and_validate_log_the_metrics_and_backbones_get_the_scaled_lr(synthetic_root: Path, tmp_path: Path) -> None:
    dm = _datamodule(synthetic_root)
    model = _module(dm, backbone_lr_scale=0.1)
    model.network.set_passthrough_order("pytorch-yolo2")  # as after an official YOWO start
    trainer = pl.Trainer(max_steps=3, limit_val_batches=2, val_check_interval=3, **QUIET)
    trainer.fit(model, dm)
    logged = trainer.callback_metrics
    for key in ("train/loss", "train/box", "train/obj", "train/noobj", "train/cls", "val/map", "val/map_top5",
                "val/localization_recall", "val/classification_accuracy"):
        assert key in logged and torch.isfinite(logged[key]), key
    # video-mAP needs track ids in the batch (ClipDataModule's carry none yet)
    assert ("val/video_map" in logged) == ("tracks" in next(iter(dm.val_dataloader())))

    groups = {group["name"]: group for group in trainer.optimizers[0].param_groups}
    assert set(groups) == {f"{part}{suffix}" for part in ("backbone_2d", "backbone_3d", "head")
                           for suffix in ("", "/no_decay")}
    for name, group in groups.items():
        expected = 1e-3 * (1.0 if name.startswith("head") else 0.1)
        assert group["initial_lr"] == pytest.approx(expected)
        assert group["lr"] / groups["head"]["lr"] == pytest.approx(expected / 1e-3)
        assert group["weight_decay"] == (0.0 if name.endswith("no_decay") else model.hparams.weight_decay)
    optimized = [id(p) for group in groups.values() for p in group["params"]]
    assert sorted(optimized) == sorted(id(p) for p in model.parameters())

    results = trainer.validate(model, dm, verbose=False)[0]
    assert {"val/map", "val/localization_recall", "val/classification_accuracy"} <= set(results)

    path = tmp_path / "yowo.ckpt"
    trainer.save_checkpoint(path)
    restored = YOWOModule.load_from_checkpoint(path)
    assert restored.network.passthrough_order == "pytorch-yolo2"
    clips = next(iter(dm.val_dataloader()))["clips"]
    torch.testing.assert_close(restored.eval()(clips), model.eval()(clips))


def test_roi_head_trains_on_the_target_boxes_and_survives_a_checkpoint(synthetic_root: Path, tmp_path: Path) -> None:
    dm = _datamodule(synthetic_root)
    model = _module(dm, roi_stride=8, roi_class_scale=2.0).eval()  # eval: no jitter, fixed BatchNorm
    batch = next(iter(dm.train_dataloader()))
    targets = batch["targets"]
    per_frame, parts = model.loss(batch["clips"], targets)
    torch.testing.assert_close(per_frame, sum(parts.values()))
    with torch.no_grad():
        stage = model.network.forward_region(model.images_to_float(batch["clips"]).permute(0, 2, 1, 3, 4)).clip_stage
        logits = model.network.roi_head(stage, torch.cat([targets[:, :1], targets[:, 2:6]], dim=1))
    per_box = torch.nn.functional.cross_entropy(logits, targets[:, 1].long(), reduction="none")
    expected = torch.zeros(len(per_frame)).index_add_(0, targets[:, 0].long(), per_box)
    torch.testing.assert_close(parts["roi_cls"], 2.0 * expected)

    start = _snapshot(model.network.roi_head)
    model.train()
    trainer = pl.Trainer(max_steps=3, limit_val_batches=2, val_check_interval=3, **QUIET)
    trainer.fit(model, dm)
    assert _changed(start, model.network.roi_head) == {"classifier.weight"}
    for key in ("train/roi_cls", "val/map", "val/classification_accuracy"):
        assert torch.isfinite(trainer.callback_metrics[key]), key
    path = tmp_path / "yowo-roi.ckpt"
    trainer.save_checkpoint(path)
    restored = YOWOModule.load_from_checkpoint(path)
    clips = next(iter(dm.val_dataloader()))["clips"]
    torch.testing.assert_close(restored.eval()(clips), model.eval()(clips))


def test_box_refiner_trains_on_jittered_targets_and_overlapping_region_boxes(synthetic_root: Path,
                                                                           tmp_path: Path) -> None:
    dm = _datamodule(synthetic_root)
    model = _module(dm, roi_stride=8, roi_refine=True, roi_box_scale=0.5).eval()  # fixed BatchNorm
    batch = next(iter(dm.train_dataloader()))
    targets = batch["targets"]
    clips = model.images_to_float(batch["clips"]).permute(0, 2, 1, 3, 4)
    with torch.no_grad():
        region_pass = model.network.forward_region(clips)
    region_boxes = decode_region(region_pass.region, model.network.anchors, model.network.stride)[0]
    # one more target per frame near one of the untrained region head's boxes, so some overlap
    near = region_boxes[:, 7] + torch.tensor([2.0, -1.0, 3.0, 1.0])
    frames = torch.arange(len(near), dtype=targets.dtype)[:, None]
    targets = torch.cat([targets, torch.cat([frames, torch.zeros_like(frames), near], dim=1)])
    overlapping = sum(int((box_iou(region_boxes[frame], targets[targets[:, 0] == frame, 2:6]).amax(dim=1) >= 0.3).sum())
                      for frame in range(len(region_boxes)) if (targets[:, 0] == frame).any())
    rois, truth = model.train().refiner_samples(region_pass.region, targets)
    assert overlapping > 0 and len(rois) == overlapping + 4 * len(targets)
    copies = slice(overlapping, None)
    torch.testing.assert_close(truth[copies], targets[:, 2:6].repeat(4, 1))
    torch.testing.assert_close(rois[copies, 0], targets[:, 0].repeat(4))
    size = truth[copies, 2:] - truth[copies, :2]
    shift = (rois[copies, 1:3] + rois[copies, 3:5]) / 2 - (truth[copies, :2] + truth[copies, 2:]) / 2
    assert (shift.abs() <= 0.25 * size + 1e-4).all()
    ratio = (rois[copies, 3:5] - rois[copies, 1:3]) / size
    assert (ratio.log().abs() <= 0.3 + 1e-4).all()
    for roi, box in zip(rois[:overlapping], truth[:overlapping]):  # each region box with a target of its frame
        frame_targets = targets[targets[:, 0] == roi[0], 2:6]
        assert (frame_targets == box).all(dim=1).any()
        assert box_iou(roi[None, 1:], box[None]).item() >= 0.3

    model.eval()  # no jitter: the samples are the overlapping region boxes only
    with torch.no_grad():
        assert torch.equal(model.network.forward_region(clips).region, region_pass.region)
    per_frame, parts = model.loss(batch["clips"], targets)
    torch.testing.assert_close(per_frame, sum(parts.values()))
    rois, truth = model.refiner_samples(region_pass.region, targets)
    assert len(rois) == overlapping
    refiner = model.network.box_refiner
    with torch.no_grad():
        per_box = torch.nn.functional.smooth_l1_loss(refiner(model.network.refiner_features(region_pass), rois),
                                                     refiner.deltas_between(rois[:, 1:], truth), beta=1 / 9,
                                                     reduction="none").sum(dim=1)
    for frame in range(len(per_frame)):
        mine = per_box[rois[:, 0] == frame]
        expected = 0.5 * mine.mean() if len(mine) else torch.tensor(0.0)
        torch.testing.assert_close(parts["roi_box"][frame], expected)

    start = _snapshot(refiner)
    model.train()
    trainer = pl.Trainer(max_steps=3, limit_val_batches=2, val_check_interval=3, **QUIET)
    trainer.fit(model, dm)
    assert _changed(start, refiner) == {"regressor.0.weight", "regressor.2.weight"}
    for key in ("train/roi_box", "train/roi_cls", "val/map", "val/localization_recall"):
        assert torch.isfinite(trainer.callback_metrics[key]), key
    path = tmp_path / "yowo-refine.ckpt"
    trainer.save_checkpoint(path)
    restored = YOWOModule.load_from_checkpoint(path).eval()
    val_batch = next(iter(dm.val_dataloader()))
    model.eval()
    with torch.no_grad():
        detections = model.detect(val_batch)
        for ours, theirs in zip(restored.detect(val_batch), detections):
            for key in ("boxes", "scores", "labels"):
                torch.testing.assert_close(ours[key], theirs[key])
        boxes = model.network.predict(model.images_to_float(val_batch["clips"]).permute(0, 2, 1, 3, 4))[0]
    for image_boxes, found in zip(boxes, detections):  # detections sit at the refined boxes
        clipped = image_boxes.clamp(min=0, max=64)
        assert all((clipped - box).abs().amax(dim=1).min() < 1e-4 for box in found["boxes"])


def test_frozen_branch_is_fixed_until_unfreeze_epoch(synthetic_root: Path) -> None:
    dm = _datamodule(synthetic_root)
    model = _module(dm, freeze="3d", unfreeze_epoch=1)
    # Registered with DDP from the start (it wraps only parameters that require grad).
    assert model.network.frozen["backbone_3d"] and all(p.requires_grad for p in model.network.parameters())
    start = _snapshot(model.network.backbone_3d)
    start_2d = _snapshot(model.network.backbone_2d)

    class Record(pl.Callback):
        def __init__(self) -> None:
            self.branch_3d_training: dict[int, bool] = {}
            self.after_epoch_0: dict[str, Tensor] = {}

        def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, index: int) -> None:
            self.branch_3d_training[trainer.current_epoch] = module.network.backbone_3d.training

        def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            if trainer.current_epoch == 0:
                self.after_epoch_0 = _snapshot(module.network.backbone_3d)

    record = Record()
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=0, callbacks=[record], **QUIET)
    trainer.fit(model, dm)
    assert record.branch_3d_training == {0: False, 1: True}
    for name, tensor in record.after_epoch_0.items():  # weights and BatchNorm statistics
        assert torch.equal(tensor, start[name]), name
    assert _changed(start_2d, model.network.backbone_2d)
    assert _changed(start, model.network.backbone_3d)
    assert not any(model.network.frozen.values())


def test_permanently_frozen_branch_skips_gradients_but_stays_in_the_optimizer(synthetic_root: Path) -> None:
    dm = _datamodule(synthetic_root)
    model = _module(dm, freeze="2d", optimizer="sgd")
    start = _snapshot(model.network.backbone_2d)
    assert not any(p.requires_grad for p in model.network.backbone_2d.parameters())
    trainer = pl.Trainer(max_steps=2, limit_val_batches=0, **QUIET)
    trainer.fit(model, dm)
    for name, tensor in model.network.backbone_2d.state_dict().items():
        assert torch.equal(tensor, start[name]), name
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert {id(p) for p in model.network.backbone_2d.parameters()} <= optimized


def test_loss_decreases_on_one_batch(synthetic_root: Path) -> None:
    dm = _datamodule(synthetic_root, augment=None)
    model = _module(dm, lr=3e-3, warmup_fraction=0.0, final_lr_fraction=1.0)

    class Losses(pl.Callback):
        def __init__(self) -> None:
            self.values: list[float] = []

        def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
                               index: int) -> None:
            self.values.append(float(outputs["loss"]))

    losses = Losses()
    trainer = pl.Trainer(max_steps=20, overfit_batches=1, limit_val_batches=0, callbacks=[losses], **QUIET)
    trainer.fit(model, dm)
    first, last = sum(losses.values[:3]) / 3, sum(losses.values[-3:]) / 3
    assert len(losses.values) == 20 and last < 0.5 * first, losses.values


@pytest.mark.parametrize(("model_options", "data_options", "message"), [
    ({"num_classes_offset": 1}, {}, "num_classes=dm.num_classes"),
    ({}, {"clip_length": 8}, "clips of 4 frames but the datamodule makes clips of 8"),
])
def test_model_and_datamodule_must_agree(synthetic_root: Path, model_options: dict[str, int],
                                         data_options: dict[str, int], message: str) -> None:
    dm = _datamodule(synthetic_root, **data_options)
    num_classes = dm.num_classes + model_options.get("num_classes_offset", 0)
    model = YOWOModule(num_classes, dm.anchors(5), **TINY)
    with pytest.raises(ValueError, match=message):
        pl.Trainer(max_steps=1, **QUIET).fit(model, dm)


def test_bad_clips_and_options_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="s3d needs clips of at least 5 frames"):
        YOWOModule(3, **(TINY | {"backbone_3d": "s3d", "width_3d": 1.0}))
    with pytest.raises(ValueError, match="freeze must be one of"):
        YOWOModule(3, freeze="head", **TINY)
    with pytest.raises(ValueError, match="unfreeze_epoch"):
        YOWOModule(3, unfreeze_epoch=2, **TINY)
    with pytest.raises(ValueError, match=r"roi_stride must be None or one of \(8, 16\), got 32"):
        YOWOModule(3, roi_stride=32, **TINY)
    with pytest.raises(ValueError, match="roi_jitter, roi_class_scale and roi_box_scale must be >= 0"):
        YOWOModule(3, roi_stride=8, roi_jitter=-0.1, **TINY)
    with pytest.raises(ValueError, match="roi_jitter, roi_class_scale and roi_box_scale must be >= 0"):
        YOWOModule(3, roi_stride=8, roi_refine=True, roi_box_scale=-1.0, **TINY)
    with pytest.raises(ValueError, match="roi_refine .* needs roi_stride"):
        YOWOModule(3, roi_refine=True, **TINY)
    model = YOWOModule(3, **TINY)
    with pytest.raises(ValueError, match="built for clips of 4 frames, got 8"):
        model(torch.zeros(1, 8, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        model(torch.zeros(1, 3, 4, 64, 64, dtype=torch.uint8))
    assert model(torch.zeros(2, 4, 3, 64, 64, dtype=torch.uint8)).shape == (2, 5, 2, 2, 8)


def test_pretrained_files_load_and_mismatches_name_the_argument_and_layer(tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    wider = tmp_path / "resnet18-wider.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in build_backbone3d("resnet18", 0.25).state_dict().items()}},
               wider)
    with pytest.raises(ValueError, match=r"pretrained_3d=.*resnet18-wider\.pth.*conv1\.weight has shape"):
        YOWOModule(3, pretrained_3d=str(wider), **TINY)
    with pytest.raises(FileNotFoundError, match="pretrained_2d"):
        YOWOModule(3, pretrained_2d=str(tmp_path / "missing.weights"), **TINY)

    darknet = Darknet19(0.125, out_channels=425)  # a tiny yolo.cfg network, as yolo.weights holds
    save_darknet_weights(darknet, tmp_path / "yolo.weights")
    model = YOWOModule(3, pretrained_2d=str(tmp_path / "yolo.weights"), **(TINY | {"channels_2d": None}))
    theirs = darknet.state_dict()
    for name, tensor in model.network.backbone_2d.state_dict().items():
        torch.testing.assert_close(tensor, theirs[name])

    source = YOWOModule(5, **TINY)  # another class count: its prediction conv does not fit
    torch.save({"state_dict": source.state_dict()}, tmp_path / "yowo5.ckpt")
    with caplog.at_level(logging.WARNING):
        model = YOWOModule(3, pretrained_yowo=str(tmp_path / "yowo5.ckpt"), **TINY)
    assert "re-initialised" in caplog.text
    torch.testing.assert_close(model.network.backbone_3d.state_dict(), source.network.backbone_3d.state_dict())
    torch.testing.assert_close(model.network.cfam.state_dict(), source.network.cfam.state_dict())


class TrackedClipDataModule(ClipDataModule):
    """``ClipDataModule`` whose validation batches also carry ``tracks (M,)``, read from the annotations."""

    def val_dataloader(self) -> Any:
        loader, annotations = super().val_dataloader(), self.annotations

        class WithTracks:
            def __len__(self) -> int:
                return len(loader)

            def __iter__(self) -> Iterator[dict[str, Any]]:
                for batch in loader:
                    tracks = [torch.from_numpy(annotations.targets(video, int(frame))[2])
                              for video, frame in zip(batch["videos"], batch["frames"])]
                    tracks = torch.cat(tracks)
                    assert len(tracks) == len(batch["targets"])  # validation keeps every box, in order
                    yield dict(batch, tracks=tracks)

        return WithTracks()


def test_perfect_detections_score_one_and_tracks_turn_on_video_map(synthetic_root: Path) -> None:
    dm = TrackedClipDataModule(synthetic_root, image_size=64, clip_length=4, batch_size=8, num_workers=0)
    model = _module(dm)

    def ground_truth(batch: dict[str, Any]) -> list[dict[str, Tensor]]:
        targets = targets_per_image(batch["targets"], len(batch["frames"]))
        return [dict(t, scores=torch.ones(len(t["labels"]))) for t in targets]

    model.detect = ground_truth  # type: ignore[method-assign]
    results = pl.Trainer(**QUIET).validate(model, dm, verbose=False)[0]
    for key in ("val/map", "val/localization_recall", "val/classification_accuracy"):
        assert results[key] == pytest.approx(1.0), key

    # Video-mAP of the ground truth itself, from the annotations (original pixels: IoUs are the
    # same after letterboxing): below 1 only where linking splits a fast-moving track.
    annotations, expected = dm.annotations, VideoMAP(dm.num_classes)
    for ref in dm.datasets["val"].items:
        boxes, labels, tracks = (torch.from_numpy(a) for a in annotations.targets(ref.video, ref.frame))
        expected.update([{"boxes": boxes, "scores": torch.ones(len(labels)), "labels": labels}],
                        [{"boxes": boxes, "labels": labels, "tracks": tracks}], [video_id(ref.video)], [ref.frame])
    for key, value in expected.compute().items():
        if key.startswith("map"):
            assert results[f"val/video_{key}"] == pytest.approx(float(value), abs=1e-6), key
    assert results["val/video_map_10"] == pytest.approx(1.0)


def test_a_frame_repeated_by_ddp_padding_counts_once_in_every_measure(
    detector_wrong_on_repeat: Callable[[dict[str, Any]], list[dict[str, Tensor]]],
) -> None:
    model = YOWOModule(3, **TINY)
    rows = torch.tensor([[0, 1, 2, 2, 20, 20], [1, 2, 30, 30, 60, 60]], dtype=torch.float32)
    batch = {"targets": rows, "tracks": torch.tensor([0, 1]), "videos": ["a", "b"], "frames": torch.tensor([5, 9])}
    # DistributedSampler padding sends frame 5 of "a" again; its detections there are off
    repeat = {"targets": rows[:1], "tracks": torch.tensor([0]), "videos": ["a"], "frames": torch.tensor([5])}
    model.detect = detector_wrong_on_repeat  # type: ignore[method-assign]
    model._evaluate_step(batch, "val")
    model._evaluate_step(repeat, "val")
    assert model.val_map.compute()["map"].item() == pytest.approx(1.0)
    assert model.val_map.compute()["num_detections_per_class"].sum().item() == 2
    for name, metric in model.frame_measures["val"].items():
        assert metric.compute().item() == pytest.approx(1.0), name
    assert model.video_map["val"].compute()["map"].item() == pytest.approx(1.0)


@pytest.mark.parametrize(("backbone", "freeze", "anchors"), [
    ("shufflenetv2", "none", "kmeans"), ("mobilenetv2", "2d", "kmeans"), ("resnet18", "3d", "ucf24"), ("shufflenetv2", "both", "ucf24"),
])
def test_the_studys_table_2_and_3_settings_train_and_predict(synthetic_root: Path, tmp_path: Path, backbone: str, freeze: str,
                                                              anchors: str) -> None:
    """The smoke test of the study's Tables 2 and 3 settings (3D backbones; k-means or UCF101-24
    anchors; frozen branches): each trains, is saved and predicts through ``VideoPredictor``.
    Minutes of CPU cannot rank them, so the demo report does not show them."""
    import restaurant_action as ra
    from restaurant_action.models.yowo import UCF24_ANCHORS

    dm = _datamodule(synthetic_root, frame_stride=2)
    torch.manual_seed(0)
    model = YOWOModule(dm.num_classes, dm.anchors(5) if anchors == "kmeans" else [[w * 64 / 224, h * 64 / 224] for w, h in UCF24_ANCHORS],
                       **(TINY | {"backbone_3d": backbone, "width_3d": 0.25, "freeze": freeze, "class_names": dm.classes}))
    trainer = pl.Trainer(max_steps=2, limit_val_batches=0, **QUIET)
    trainer.fit(model, dm)
    trainer.save_checkpoint(tmp_path / "yowo.ckpt")
    predictor = ra.VideoPredictor.from_checkpoint(tmp_path / "yowo.ckpt", "cpu")
    results = list(predictor.stream(synthetic_root / "videos" / "cam0_000.mp4", every=60))
    assert predictor.spec.frame_stride == 2 and len(results) == 360 and results[-1].detections.predicted_at == 300

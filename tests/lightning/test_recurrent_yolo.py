"""ConvLSTM-YOLO network and module: porting, carried state, masking, mid-epoch resumption."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import pytest
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from restaurant_action.data.datamodules import SequenceDataModule
from restaurant_action.data.sequences import valid_frame_targets
from restaurant_action.lightning.recurrent_yolo import ConvLSTMYOLOModule
from restaurant_action.lightning.yolov3 import YOLOv3Module
from restaurant_action.models.recurrent_yolo import ConvLSTMYOLO
from restaurant_action.models.yolov3 import COCO_ANCHORS, YOLOv3

TINY = {"width": 0.125, "depth": 0.34}


@pytest.mark.parametrize("input_ratio", [None, 0.25])
@pytest.mark.parametrize("placement", ["head", "neck"])
def test_untrained_recurrent_model_reproduces_the_ported_yolov3(placement: str, input_ratio: float | None) -> None:
    torch.manual_seed(0)
    yolo = YOLOv3(4, COCO_ANCHORS, **TINY).eval()
    recurrent = ConvLSTMYOLO(4, COCO_ANCHORS, placement=placement, input_ratio=input_ratio, **TINY).eval()
    recurrent.load_yolov3(yolo.state_dict())
    frames = torch.rand(2, 3, 3, 64, 64)
    outputs, state = recurrent(frames)
    for ours, reference in zip(outputs, yolo(frames.flatten(0, 1))):
        torch.testing.assert_close(ours, reference)
    assert len(state) == 3


def test_lstm_state_changes_outputs_once_trained_and_reset_restores_a_fresh_lane() -> None:
    torch.manual_seed(0)
    model = ConvLSTMYOLO(4, COCO_ANCHORS, **TINY).eval()
    for module in model.recurrent:
        torch.nn.init.normal_(module.project.weight, std=0.5)
    first, second = torch.rand(2, 2, 3, 64, 64), torch.rand(2, 2, 3, 64, 64)
    _, state = model(first)
    carried, _ = model(second, state)
    fresh, _ = model(second)
    assert not torch.allclose(carried[0], fresh[0])
    reset = model.reset_state(state, torch.tensor([True, False]))
    mixed, _ = model(second, reset)
    lane0 = slice(0, 2)  # frames b·T + t of lane 0
    torch.testing.assert_close(mixed[0][lane0], fresh[0][lane0])
    torch.testing.assert_close(mixed[0][2:], carried[0][2:])


@pytest.mark.parametrize("input_ratio", [None, 0.25])
@pytest.mark.parametrize("temporal_difference", [True, False])
def test_carrying_the_state_over_two_halves_equals_one_pass(temporal_difference: bool, input_ratio: float | None) -> None:
    """The carried state holds everything the next subsequence needs, the previous frame's
    features for the temporal difference included."""
    torch.manual_seed(0)
    model = ConvLSTMYOLO(4, COCO_ANCHORS, temporal_difference=temporal_difference, input_ratio=input_ratio, **TINY).eval()
    for module in model.recurrent:
        torch.nn.init.normal_(module.project.weight, std=0.5)
    frames = torch.rand(2, 6, 3, 64, 64)
    whole, _ = model(frames)
    first, state = model(frames[:, :3])
    second, _ = model(frames[:, 3:], model.detach_state(state))
    for level, (out_whole, out_first, out_second) in enumerate(zip(whole, first, second)):
        halves = torch.cat([out_first.unflatten(0, (2, 3)), out_second.unflatten(0, (2, 3))], dim=1).flatten(0, 1)
        torch.testing.assert_close(halves, out_whole, msg=lambda m, k=level: f"scale {k}: {m}")


def test_input_reduction_feeds_the_lstm_the_reduced_features_and_their_change(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = ConvLSTMYOLO(4, COCO_ANCHORS, input_ratio=0.25, hidden_ratio=0.5, **TINY).eval()
    branch = model.recurrent[2]
    channels = model.yolo.heads[2].final.in_channels
    reduced = round(channels * 0.25)
    assert branch.reduce.in_channels == channels and branch.reduce.out_channels == reduced
    assert branch.lstm.input_channels == 2 * reduced and branch.lstm.hidden_channels == [round(channels * 0.5)]
    features, lstm_inputs = [], []
    model.yolo.heads[2].features.register_forward_hook(lambda module, args, output: features.append(output))
    lstm_forward = type(branch.lstm).forward
    monkeypatch.setattr(type(branch.lstm), "forward",
                        lambda self, x, state=None: lstm_inputs.append(x) or lstm_forward(self, x, state))
    frames = torch.rand(2, 3, 3, 64, 64)
    _, state = model(frames)
    expected = branch.reduce(features[0]).unflatten(0, (2, 3))  # the stride-32 head's 3×3 features, reduced
    change = expected - torch.cat([expected[:, :1], expected[:, :-1]], dim=1)  # zero on a clip's first frame
    torch.testing.assert_close(lstm_inputs[2], torch.cat([expected, change], dim=2))
    assert state[2].previous.shape == (2, reduced, 2, 2)
    torch.testing.assert_close(state[2].previous, expected[:, -1])


@pytest.mark.parametrize("ratio", [{"hidden_ratio": 0.0}, {"input_ratio": 1.5}, {"input_ratio": -0.25}])
def test_channel_ratios_out_of_range_are_refused(ratio: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(ratio))):
        ConvLSTMYOLO(4, COCO_ANCHORS, **ratio, **TINY)


def test_lstm_separates_classes_the_ported_final_conv_cannot() -> None:
    """The LSTM reaches the head's outputs through its own weights: two classes whose ported
    final-conv rows are identical (a YOLOv3 that cannot tell a motion-only pair apart) get equal
    logits at start and different ones once ``project`` has learnt something."""
    torch.manual_seed(0)
    # Train mode: BatchNorm by batch statistics keeps an untrained model's head features O(1).
    model = ConvLSTMYOLO(4, COCO_ANCHORS, **TINY).train()
    with torch.no_grad():
        for head in model.yolo.heads:
            weight = head.final.weight.view(head.num_anchors, 9, -1)
            bias = head.final.bias.view(head.num_anchors, 9)
            weight[:, 6] = weight[:, 5]
            bias[:, 6] = bias[:, 5]
    frames = torch.rand(2, 3, 3, 64, 64)
    start, _ = model(frames)
    assert all(torch.equal(out[..., 5], out[..., 6]) for out in start)
    for module in model.recurrent:
        torch.nn.init.normal_(module.project.weight, std=0.5)
    trained, _ = model(frames)
    assert all((out[..., 5] - out[..., 6]).abs().max() > 0.1 for out in trained)


def test_port_errors_name_the_tensor() -> None:
    recurrent = ConvLSTMYOLO(4, COCO_ANCHORS, **TINY)
    wider = YOLOv3(4, COCO_ANCHORS, width=0.25, depth=0.34)
    with pytest.raises(ValueError, match="has shape"):
        recurrent.load_yolov3(wider.state_dict())
    with pytest.raises(ValueError, match="placement"):
        ConvLSTMYOLO(4, COCO_ANCHORS, placement="tail", **TINY)


def test_sequence_targets_map_lane_and_step_to_frame_index() -> None:
    targets = torch.tensor([[1.0, 2.0, 3.0, 0.0, 0.0, 5.0, 5.0]])
    assert valid_frame_targets(targets, torch.ones(2, 4, dtype=torch.bool)).tolist() == [[6.0, 3.0, 0.0, 0.0, 5.0, 5.0]]


def test_padding_frames_add_no_loss_and_a_padding_step_still_backpropagates(synthetic_root: Path) -> None:
    dm = SequenceDataModule(synthetic_root, image_size=64, lanes=2, steps=4, num_workers=0, min_clip_frames=60, augment=None)
    dm.setup()
    model = ConvLSTMYOLOModule(dm.num_classes, dm.anchors(9), **TINY)
    batch = next(iter(dm.train_dataloader()))
    loss = model.training_step(batch, 0)
    padded = dict(batch, valid=torch.zeros_like(batch["valid"]), targets=batch["targets"][:0], reset=torch.ones(2, dtype=torch.bool))
    zero = model.training_step(padded, 1)
    assert loss > 0 and zero == 0
    zero.backward()
    assert all(p.grad is None or torch.all(p.grad == 0) for p in model.parameters())


def test_ported_checkpoint_and_frozen_epochs(synthetic_root: Path, tmp_path: Path) -> None:
    yolo_module = YOLOv3Module(5, COCO_ANCHORS, **TINY)
    path = tmp_path / "yolo.ckpt"
    torch.save({"state_dict": yolo_module.state_dict()}, path)
    module = ConvLSTMYOLOModule(5, COCO_ANCHORS, yolov3_checkpoint=str(path), freeze_ported_epochs=1, **TINY)
    for key, value in yolo_module.network.state_dict().items():
        torch.testing.assert_close(module.network.yolo.state_dict()[key], value)
    with_anchors = tmp_path / "anchored.ckpt"
    anchors = [[float(3 + i), float(4 + 2 * i)] for i in range(9)]
    torch.save({"state_dict": yolo_module.state_dict(), "hyper_parameters": {"anchors": anchors}}, with_anchors)
    ported = ConvLSTMYOLOModule(5, None, yolov3_checkpoint=str(with_anchors), **TINY)
    torch.testing.assert_close(ported.network.anchors, torch.tensor(anchors))
    with pytest.raises(ValueError, match="trained with anchors"):
        ConvLSTMYOLOModule(5, COCO_ANCHORS, yolov3_checkpoint=str(with_anchors), **TINY)
    with pytest.raises(ValueError, match="not a YOLOv3Module checkpoint"):
        torch.save({"state_dict": {"other.weight": torch.zeros(1)}}, tmp_path / "bad.ckpt")
        ConvLSTMYOLOModule(5, COCO_ANCHORS, yolov3_checkpoint=str(tmp_path / "bad.ckpt"), **TINY)


class StepRecorder(pl.Callback):
    def __init__(self) -> None:
        self.seen: list[tuple[int, int, tuple[int, ...]]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen.append((trainer.current_epoch, int(batch["step"]), tuple(batch["clip_ids"].tolist())))


def test_resuming_mid_epoch_continues_at_the_next_step_with_the_same_clips(synthetic_root: Path, tmp_path: Path) -> None:
    def run(ckpt_path: str | None, callbacks: list) -> StepRecorder:
        pl.seed_everything(0)
        dm = SequenceDataModule(synthetic_root, image_size=64, lanes=2, steps=8, num_workers=0, min_clip_frames=60)
        model = ConvLSTMYOLOModule(dm.num_classes, dm.anchors(9), **TINY)
        recorder = StepRecorder()
        trainer = pl.Trainer(
            max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
            limit_val_batches=0, callbacks=[recorder, *callbacks], default_root_dir=tmp_path,
        )
        trainer.fit(model, dm, ckpt_path=ckpt_path)
        return recorder

    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=5, save_top_k=-1)
    full = run(None, [checkpoints])
    resumed = run(str(tmp_path / "ckpt" / "epoch=0-step=5.ckpt"), [])
    assert full.seen[0][:2] == (0, 0)
    assert resumed.seen[0][:2] == (0, 5)
    assert resumed.seen == full.seen[5:]


def test_yolov3_trains_and_validates_on_the_sequence_stream_frame_by_frame(synthetic_root: Path) -> None:
    dm = SequenceDataModule(synthetic_root, image_size=64, lanes=2, steps=4, num_workers=0, min_clip_frames=60, augment=None)
    dm.setup()
    model = YOLOv3Module(dm.num_classes, dm.anchors(9), **TINY)
    batch = next(b for b in dm.train_dataloader() if b["valid"].all() and len(b["targets"]))
    frames = batch["frames"].flatten(0, 1)
    loss = model.training_step(batch, 0)
    per_frame, _ = model.loss(model(frames), valid_frame_targets(batch["targets"], batch["valid"]))
    detections = model.eval().detect(batch)

    torch.testing.assert_close(loss, per_frame.mean())
    assert len(detections) == len(frames)
    padding_only = dict(batch, valid=torch.zeros_like(batch["valid"]))
    model.validation_step(padding_only, 0)
    assert model.val_map.compute()["map"].isnan()  # nothing was added
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=3)
    metrics = trainer.validate(model, dm, verbose=False)[0]
    assert "val/map" in metrics


@pytest.mark.parametrize("freeze_batchnorm", [None, False])
def test_a_ported_model_keeps_its_batchnorm_statistics_unless_told_otherwise(
    synthetic_root: Path, tmp_path: Path, freeze_batchnorm: bool | None
) -> None:
    dm = SequenceDataModule(synthetic_root, image_size=64, lanes=2, steps=4, num_workers=0, min_clip_frames=60)
    path = tmp_path / "yolo.ckpt"
    torch.save({"state_dict": YOLOv3Module(dm.num_classes, COCO_ANCHORS, **TINY).state_dict()}, path)
    module = ConvLSTMYOLOModule(dm.num_classes, COCO_ANCHORS, yolov3_checkpoint=str(path), freeze_batchnorm=freeze_batchnorm,
                                lr=1e-2, **TINY)
    before = {k: v.clone() for k, v in module.network.yolo.state_dict().items() if "running_mean" in k}
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=1, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)

    trainer.fit(module, dm)

    after = module.network.yolo.state_dict()
    unchanged = all(torch.equal(after[k], v) for k, v in before.items())
    assert unchanged == (freeze_batchnorm is None)
    assert not torch.equal(module.network.recurrent[0].project.weight, torch.zeros_like(module.network.recurrent[0].project.weight))

"""VideoPredictor: the three model kinds on a video, exact against the modules' own evaluation path,
sparse inference, bounded memory, live sources with dropping, the three outputs and errors."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

import av
import numpy as np
import pytest
import torch

import restaurant_action as ra
from restaurant_action.data.datasets import ClipDataset, FrameDataset, FrameRef, letterbox_to_frame
from restaurant_action.data.video import open_video
from restaurant_action.inference.checkpoint import checkpoint_spec, load_module, read_checkpoint
from restaurant_action.report import read_predictions, write_evaluation_report

KINDS = ("YOLOv3Module", "YOWOModule", "ConvLSTMYOLOModule")
SIZE, STRIDE = 64, 2  # the image size and frame stride of the ``checkpoints`` fixture
VIDEO = "cam0_000"


def video_path(root: Path) -> Path:
    return root / "videos" / f"{VIDEO}.mp4"


def results(predictor: ra.VideoPredictor, source, **options) -> list[ra.predict.FrameResult]:
    return list(predictor.stream(source, **options))


def module_of(checkpoint: Path) -> ra.YOLOv3Module | ra.YOWOModule | ra.ConvLSTMYOLOModule:
    state = read_checkpoint(checkpoint)
    return load_module(state, checkpoint_spec(state, checkpoint), checkpoint)


def assert_same_detections(ours: ra.predict.Detections, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                           box_atol: float = 1e-3, score_atol: float = 1e-5) -> None:
    """The same detections up to float noise, in any order (near-tied scores may swap places).

    Float noise (another batch composition) may swap near-tied detections at the ``max_detections``
    cut: those within ``10 × score_atol`` of the lowest score kept are not compared.
    """
    assert abs(len(ours.scores) - len(scores)) <= 1 and len(scores) > 0
    cut = max(ours.scores.min(), scores.min()) + 10 * score_atol
    close = ((np.abs(ours.boxes[:, None] - boxes[None]) <= box_atol).all(-1)
             & (np.abs(ours.scores[:, None] - scores[None]) <= score_atol) & (ours.labels[:, None] == labels[None]))
    free = np.ones(len(scores), bool)
    for row in close[ours.scores > cut]:
        match = np.flatnonzero(row & free)
        assert len(match), "a detection has no counterpart"
        free[match[0]] = False


@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_records_what_prediction_needs(checkpoints: dict[str, Path], checkpoint_settings: dict[str, int],
                                                  kind: str) -> None:
    assert checkpoint_settings == {"image_size": SIZE, "frame_stride": STRIDE}
    state = read_checkpoint(checkpoints[kind])
    spec = checkpoint_spec(state, checkpoints[kind])
    assert spec.kind == kind and spec.image_size == SIZE
    assert spec.frame_stride == (1 if kind == "YOLOv3Module" else STRIDE)
    assert spec.clip_length == (4 if kind == "YOWOModule" else 1)
    assert len(spec.class_names) == spec.num_classes > 0


def test_yolov3_detections_equal_the_modules_on_the_datasets_frames(synthetic_root: Path, checkpoints: dict[str, Path]) -> None:
    predictor = ra.VideoPredictor.from_checkpoint(checkpoints["YOLOv3Module"], "cpu")
    ours = results(predictor, video_path(synthetic_root))
    module = module_of(checkpoints["YOLOv3Module"])
    annotations = ra.ActionAnnotations.load(synthetic_root)
    frames = [0, 1, 57, 200, 359]
    dataset = FrameDataset(annotations, [FrameRef(VIDEO, f) for f in frames], SIZE)
    images = torch.stack([dataset[i]["image"] for i in range(len(frames))])
    info = annotations.videos[VIDEO]
    with torch.no_grad():
        expected = module.detect({"images": images})
    assert [r.frame_index for r in ours] == list(range(360)) and not any(r.held for r in ours)
    assert sum(len(d["scores"]) for d in expected) > 0
    for frame, detections in zip(frames, expected):
        boxes = letterbox_to_frame(detections["boxes"].numpy(), (info.width, info.height), (SIZE,) * 2)
        assert_same_detections(ours[frame].detections, boxes, detections["scores"].numpy(), detections["labels"].numpy())


def test_yowo_clips_equal_the_clip_datasets_and_reuse_the_window(synthetic_root: Path, checkpoints: dict[str, Path]) -> None:
    predictor = ra.VideoPredictor.from_checkpoint(checkpoints["YOWOModule"], "cpu", batch_size=3)
    stream = predictor.stream(video_path(synthetic_root))
    ours = list(stream)
    module = module_of(checkpoints["YOWOModule"])
    annotations = ra.ActionAnnotations.load(synthetic_root)
    keys = [0, 3, 7, 150, 359]  # key frames 0 and 3 have clips clamped at frame 0
    dataset = ClipDataset(annotations, [FrameRef(VIDEO, f) for f in keys], SIZE, 4, STRIDE)
    clips = torch.stack([dataset[i]["clip"] for i in range(len(keys))])
    info = annotations.videos[VIDEO]
    with torch.no_grad():
        expected = module.detect({"clips": clips})
    assert sum(len(d["scores"]) for d in expected) > 0
    for key, detections in zip(keys, expected):
        boxes = letterbox_to_frame(detections["boxes"].numpy(), (info.width, info.height), (SIZE,) * 2)
        assert_same_detections(ours[key].detections, boxes, detections["scores"].numpy(), detections["labels"].numpy())
    # every frame decoded once: in flight at most one batch of key frames, the window at most one clip's span
    assert stream.most_frames_in_flight <= 3


def test_convlstm_lanes_carry_state_along_frames_the_training_stride_apart(synthetic_root: Path, checkpoints: dict[str, Path]) -> None:
    predictor = ra.VideoPredictor.from_checkpoint(checkpoints["ConvLSTMYOLOModule"], "cpu", batch_size=6)
    ours = results(predictor, video_path(synthetic_root))
    module = module_of(checkpoints["ConvLSTMYOLOModule"])
    annotations = ra.ActionAnnotations.load(synthetic_root)
    info = annotations.videos[VIDEO]
    lane = list(range(1, 40, STRIDE))  # lane 1 plays frames 1, 3, 5, … as one sequence
    dataset = FrameDataset(annotations, [FrameRef(VIDEO, f) for f in lane], SIZE)
    images = torch.stack([dataset[i]["image"] for i in range(len(lane))])
    with torch.no_grad():
        outputs, _ = module(images[None])
        expected = module.decode(outputs)
    for frame, detections in zip(lane, expected):
        assert len(detections["scores"]) == 100
        boxes = letterbox_to_frame(detections["boxes"].numpy(), (info.width, info.height), (SIZE,) * 2)
        assert_same_detections(ours[frame].detections, boxes, detections["scores"].numpy(), detections["labels"].numpy(),
                               box_atol=1e-2)
    # the state matters: the same frames played as one sequence at stride 1 give other scores
    with torch.no_grad():
        dense = module.decode(module(torch.stack([dataset[0]["image"]] * 5)[None])[0])
    assert not torch.allclose(dense[0]["scores"][:5], dense[-1]["scores"][:5])


@pytest.mark.parametrize("kind", KINDS)
def test_sparse_inference_predicts_every_nth_frame_and_holds_boxes(synthetic_root: Path, checkpoints: dict[str, Path], kind: str) -> None:
    predictor = ra.VideoPredictor.from_checkpoint(checkpoints[kind], "cpu")
    every = 2 if kind == "ConvLSTMYOLOModule" else 4  # one ConvLSTM lane: frames 0, 2, 4, … as at every=1's lane 0
    dense = results(predictor, video_path(synthetic_root))
    stream = predictor.stream(video_path(synthetic_root), every=every)
    sparse = list(stream)

    assert [r.frame_index for r in sparse] == list(range(360))
    assert stream.predicted == 360 // every and stream.frames == 360
    for result in sparse:
        shown_from = result.frame_index - result.frame_index % every
        assert result.detections.predicted_at == shown_from and result.held == (result.frame_index % every != 0)
        assert_same_detections(result.detections, dense[shown_from].detections.boxes, dense[shown_from].detections.scores,
                               dense[shown_from].detections.labels)


def test_every_must_fit_the_convlstm_stride(checkpoints: dict[str, Path], synthetic_root: Path) -> None:
    predictor = ra.VideoPredictor.from_checkpoint(checkpoints["ConvLSTMYOLOModule"], "cpu")
    with pytest.raises(ValueError, match="every=3 does not fit the ConvLSTM-YOLO's frame stride 2"):
        results(predictor, video_path(synthetic_root), every=3)


@pytest.mark.parametrize("kind", KINDS)
def test_predict_writes_json_tubes_and_a_browser_mp4(synthetic_root: Path, checkpoints: dict[str, Path], kind: str, tmp_path: Path) -> None:
    predictor = ra.VideoPredictor.from_checkpoint(checkpoints[kind], "cpu", display_threshold=0.0)
    result = predictor.predict(video_path(synthetic_root), tmp_path, every=2, progress=False)

    records = json.loads(result.detections_json.read_text(encoding="utf-8"))
    assert [r["frame"] for r in records] == list(range(360)) and {r["video"] for r in records} == {VIDEO}
    assert [bool(r.get("held")) for r in records] == [f % 2 == 1 for f in range(360)]
    source = open_video(video_path(synthetic_root))
    boxes = np.concatenate([np.asarray(r["boxes"]).reshape(-1, 4) for r in records])
    assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= source.width).all() and (boxes[:, [1, 3]] <= source.height).all()

    tubes = result.tubes_csv.read_text(encoding="utf-8").splitlines()
    assert tubes[0] == "track,action,start_frame,end_frame,mean_score,boxes" and len(tubes) == len(result.tubes) + 1 > 1
    first = tubes[1].split(",")
    assert first[0] == "0" and first[1] in predictor.spec.class_names and int(first[2]) <= int(first[3])

    with av.open(str(result.video)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.width, stream.height) == (source.width, source.height) and float(stream.average_rate) == source.fps
        assert sum(1 for _ in container.decode(video=0)) == 360
    annotated = open_video(result.video).frames([10])[0].astype(int)
    assert np.abs(annotated - source.frames([10])[0].astype(int)).max() > 100  # boxes were drawn


def test_predictions_json_round_trips_through_evaluate(synthetic_root: Path, checkpoints: dict[str, Path], tmp_path: Path) -> None:
    predictor = ra.VideoPredictor.from_checkpoint(checkpoints["YOLOv3Module"], "cpu")
    result = predictor.predict(video_path(synthetic_root), tmp_path / "pred", video=False, progress=False)
    classes = ra.ActionAnnotations.load(synthetic_root).classes
    records = read_predictions(result.detections_json, classes)
    streamed = results(predictor, video_path(synthetic_root))
    assert len(records) == len(streamed) == 360
    for record, frame in zip(records, streamed):
        assert record.frame == frame.frame_index
        assert_same_detections(frame.detections, record.boxes, record.scores, record.labels, box_atol=0.01)

    report = write_evaluation_report(result.detections_json, synthetic_root, tmp_path / "eval")
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report.is_file() and metrics["frame"]["map"] is not None and result.video is None


def frames_of(path: Path) -> np.ndarray:
    return open_video(path).frames(np.arange(60))


def test_live_iterator_drops_frames_when_the_model_is_slower(synthetic_root: Path, checkpoints: dict[str, Path]) -> None:
    frames = frames_of(video_path(synthetic_root))

    def camera() -> Iterator[np.ndarray]:
        for frame in frames:
            time.sleep(0.002)
            yield frame

    predictor = ra.VideoPredictor.from_checkpoint(checkpoints["YOLOv3Module"], "cpu")
    stream = predictor.stream(camera(), live=True)
    seen = []
    for result in stream:
        seen.append(result.frame_index)
        time.sleep(0.02)  # a consumer ten times slower than the source
    assert stream.dropped > 0 and stream.frames + stream.dropped == len(frames) == 60
    assert seen == sorted(set(seen)) and len(seen) == stream.frames == stream.predicted
    assert stream.most_frames_in_flight == 1


def test_iterator_not_live_reads_every_frame_and_predict_records_it(synthetic_root: Path, checkpoints: dict[str, Path], tmp_path: Path) -> None:
    frames = frames_of(video_path(synthetic_root))
    predictor = ra.VideoPredictor.from_checkpoint(checkpoints["YOWOModule"], "cpu", display_threshold=0.0)
    result = predictor.predict(iter(frames), tmp_path, live=False, fps=15, progress=False)
    assert (result.frames, result.predicted, result.dropped) == (60, 60, 0)
    records = json.loads(result.detections_json.read_text())
    assert {r["video"] for r in records} == {"stream"} and len(records) == 60
    with av.open(str(result.video)) as container:
        assert float(container.streams.video[0].average_rate) == 15
        assert sum(1 for _ in container.decode(video=0)) == 60
    assert not (tmp_path / ".recording.mp4").exists()


def test_long_video_keeps_frames_in_flight_bounded(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    path = tmp_path / "long.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for index in range(1500):
            image = np.full((64, 96, 3), index % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    predictor = ra.VideoPredictor.from_checkpoint(checkpoints["YOWOModule"], "cpu", batch_size=4)
    stream = predictor.stream(path)
    count = sum(1 for _ in stream)
    assert count == 1500 and stream.most_frames_in_flight <= 4


def test_bad_inputs_get_clear_errors(tmp_path: Path, checkpoints: dict[str, Path], synthetic_root: Path) -> None:
    predictor = ra.VideoPredictor.from_checkpoint(checkpoints["YOLOv3Module"], "cpu")
    with pytest.raises(ra.VideoDecodeError, match="missing.mp4: video not found"):
        results(predictor, tmp_path / "missing.mp4")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(ra.VideoDecodeError, match="corrupt.mp4"):
        results(predictor, corrupt)
    with pytest.raises(ValueError, match="frame 1 must be RGB uint8"):
        results(predictor, iter([np.zeros((64, 96, 3), np.uint8), np.zeros((64, 96), np.uint8)]), live=False)
    with pytest.raises(ValueError, match="a file or folder is read whole"):
        predictor.stream(video_path(synthetic_root), live=True)


def test_checkpoints_that_cannot_be_used_are_refused_clearly(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    state = torch.load(checkpoints["YOLOv3Module"], weights_only=True)
    older = dict(state)
    del older["restaurant_action"]
    torch.save(older, tmp_path / "older.ckpt")
    with pytest.raises(ra.CheckpointError, match="older.ckpt: the checkpoint does not say which model"):
        ra.VideoPredictor.from_checkpoint(tmp_path / "older.ckpt", "cpu")

    unknown = {**state, "restaurant_action": {**state["restaurant_action"], "kind": "FasterRCNN"}}
    torch.save(unknown, tmp_path / "unknown.ckpt")
    with pytest.raises(ra.CheckpointError, match="unknown model kind 'FasterRCNN'"):
        ra.VideoPredictor.from_checkpoint(tmp_path / "unknown.ckpt", "cpu")

    no_size = {**state, "restaurant_action": {"kind": "YOLOv3Module", "class_names": state["restaurant_action"]["class_names"]}}
    torch.save(no_size, tmp_path / "no_size.ckpt")
    with pytest.raises(ra.CheckpointError, match="does not record the image size"):
        ra.VideoPredictor.from_checkpoint(tmp_path / "no_size.ckpt", "cpu")
    assert ra.VideoPredictor.from_checkpoint(tmp_path / "no_size.ckpt", "cpu", image_size=64).spec.image_size == 64

    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(checkpoints["YOLOv3Module"].read_bytes()[:5000])
    with pytest.raises(ra.CheckpointError, match="truncated.ckpt: not a readable checkpoint"):
        ra.VideoPredictor.from_checkpoint(truncated, "cpu")


class _RunsCode:
    def __reduce__(self):  # unpickling this would create the file named in the test
        return (Path.touch, (Path(__file__).parent / "pwned",))


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _RunsCode()}, path)
    with pytest.raises(ra.CheckpointError, match="evil.ckpt: refused by a weights-only load"):
        ra.VideoPredictor.from_checkpoint(path, "cpu")
    assert not (Path(__file__).parent / "pwned").exists()

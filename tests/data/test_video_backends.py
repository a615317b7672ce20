"""The frame-exactness matrix: every installed backend on every matrix file, past-the-end reads
under a timeout, DataLoader workers under fork and spawn, and the datamodules, the frame cache
and the predictor run on every backend."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from restaurant_action.data.datamodules import (
    ClipDataModule,
    FrameDataModule,
    SequenceDataModule,
)
from restaurant_action.data.video import (
    BACKENDS,
    CachedVideo,
    available_backends,
    open_video,
    probe_stream,
    resolve_backend,
)
from restaurant_action.errors import VideoDecodeError
from tests.data.conftest import pattern_frames
from tests.data.video_matrix import (
    MATRIX_FRAMES,
    MATRIX_SIZE,
    MatrixFile,
    write_matrix,
    written_index,
)

BACKEND_NAMES = available_backends()
MATRIX_NAMES = (
    "h264-bframes-long-gop.mp4",
    "h264-vfr.mp4",
    "h264-vfr.mkv",
    "mpeg4.avi",
    "header-claims-double.avi",
    "frame-folder",
)
# Largest mean absolute difference (of 255) between two backends' frames at a requested size:
# the resize filters differ (decord: FFmpeg's inside the decoder; PyAV: area filter on the YUV
# planes; torchcodec: area filter on RGB). At the native size the pictures are bit-identical.
RESIZED_MEAN_TOLERANCE = 3.5


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> dict[str, MatrixFile]:
    return write_matrix(tmp_path_factory.mktemp("matrix"), pattern_frames(MATRIX_FRAMES, MATRIX_SIZE))


def _requests(count: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "sequential": np.arange(count),
        "random": rng.permutation(count)[:40],
        "repeated, unsorted": np.array([count - 1, 5, 5, 0, count - 1, 77, 3, 150, 149, 77]),
        "backwards": np.arange(count - 1, -1, -9),
    }


# ---------------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("name", MATRIX_NAMES)
@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_every_backend_returns_the_frame_asked_for(matrix, name, backend):
    file = matrix[name]
    source = open_video(file.path, backend=backend)

    assert source.num_frames == file.real_frames
    for kind, wanted in _requests(file.real_frames).items():
        frames = source.frames(wanted)
        assert frames.shape == (len(wanted), MATRIX_SIZE[1], MATRIX_SIZE[0], 3) and frames.dtype == np.uint8
        np.testing.assert_array_equal(written_index(frames), wanted, err_msg=f"{backend}, {name}, {kind}")
    for k in (0, 1, 74, 75, 151, file.real_frames - 1):  # single frames from a fresh reader: a seek each
        np.testing.assert_array_equal(written_index(open_video(file.path, backend=backend).frames([k])), [k])


@pytest.mark.parametrize("name", MATRIX_NAMES[:-1])
def test_backends_return_bit_identical_pictures_at_the_native_size(matrix, name):
    wanted = np.r_[0:12, 70:82, 148:160]
    reference = open_video(matrix[name].path, backend="pyav").frames(wanted)
    for backend in BACKEND_NAMES:
        np.testing.assert_array_equal(open_video(matrix[name].path, backend=backend).frames(wanted), reference, err_msg=backend)


@pytest.mark.parametrize("name", MATRIX_NAMES[:-1])
def test_backends_agree_at_a_requested_size_within_the_resize_difference(matrix, name):
    wanted = np.r_[0:160:7]
    reference = open_video(matrix[name].path, (64, 48), backend="pyav").frames(wanted).astype(np.int16)
    for backend in BACKEND_NAMES:
        frames = open_video(matrix[name].path, (64, 48), backend=backend).frames(wanted)
        assert frames.shape == reference.shape
        assert np.abs(frames - reference).mean() <= RESIZED_MEAN_TOLERANCE, backend
        np.testing.assert_array_equal(written_index(frames), wanted)


def test_the_frame_count_is_what_the_file_holds_not_what_its_header_claims(matrix):
    index = probe_stream(matrix["header-claims-double.avi"].path)
    assert index.header_frames == 2 * MATRIX_FRAMES
    assert index.num_frames == MATRIX_FRAMES
    vfr = probe_stream(matrix["h264-vfr.mkv"].path)
    assert vfr.header_frames == 0 and vfr.num_frames == MATRIX_FRAMES  # Matroska states none
    assert np.all(np.diff(vfr.pts) > 0) and vfr.keyframes[0] == 0


# ---------------------------------------------------------------------------------- past the end


def _damage_last_packets(path: Path, count: int) -> None:
    """Overwrite the payload of the last ``count`` video packets with zeros (intact container)."""
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(path.read_bytes())
    for position, size in packets[-count:]:
        data[position : position + size] = bytes(size)
    path.write_bytes(bytes(data))


def _read_in_child(path: str, backend: str, frames: list[int], out) -> None:
    try:
        open_video(path, backend=backend).frames(frames)
        out.put(("read", ""))
    except VideoDecodeError as error:
        out.put(("VideoDecodeError", f"{error.frame}|{error}"))
    except Exception as error:  # noqa: BLE001 (reported to the parent, which fails the test with it)
        out.put((type(error).__name__, str(error)))


def _read_with_a_deadline(path: Path, backend: str, frames: list[int], seconds: float = 60) -> tuple[str, str]:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    child = context.Process(target=_read_in_child, args=(str(path), backend, frames, out))
    child.start()
    child.join(seconds)
    if child.is_alive():
        child.kill()
        pytest.fail(f"{backend} hung reading frames {frames} of {path.name}")
    return out.get(timeout=5)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_reading_past_the_real_end_raises_in_bounded_time(matrix, tmp_path, backend):
    lying = matrix["header-claims-double.avi"].path
    kind, message = _read_with_a_deadline(lying, backend, [MATRIX_FRAMES + 10])  # inside the header's claim
    assert kind == "VideoDecodeError" and message.startswith(f"{MATRIX_FRAMES + 10}|") and str(lying) in message

    damaged = tmp_path / "damaged-tail.avi"
    shutil.copy(matrix["mpeg4.avi"].path, damaged)
    _damage_last_packets(damaged, 3)
    before = _read_with_a_deadline(damaged, backend, [MATRIX_FRAMES - 5])
    # decord's read-ahead thread can meet the damage two frames on and fail this good frame
    assert before == ("read", "") or (backend == "decord" and before[0] == "VideoDecodeError")
    kind, message = _read_with_a_deadline(damaged, backend, [MATRIX_FRAMES - 5, MATRIX_FRAMES - 2])
    assert kind == "VideoDecodeError" and str(damaged) in message
    # PyAV and torchcodec name the first damaged frame asked for; decord's read-ahead thread
    # meets the damage while it fetches an earlier frame of the request, and names that one.
    named = int(message.split("|")[0])
    assert named in ((MATRIX_FRAMES - 5, MATRIX_FRAMES - 2) if backend == "decord" else (MATRIX_FRAMES - 2,))


def test_pyav_confirms_the_count_when_the_stream_ends_early(matrix, tmp_path):
    damaged = tmp_path / "damaged-tail.avi"
    shutil.copy(matrix["mpeg4.avi"].path, damaged)
    _damage_last_packets(damaged, 3)
    source = open_video(damaged, backend="pyav")
    assert source.num_frames == MATRIX_FRAMES  # the container lists them all

    with pytest.raises(VideoDecodeError, match=f"frame {MATRIX_FRAMES - 1}: the video ends after {MATRIX_FRAMES - 3}"):
        source.frames([MATRIX_FRAMES - 1])

    assert source.num_frames == MATRIX_FRAMES - 3  # confirmed: later reads fail before decoding
    with pytest.raises(VideoDecodeError, match="outside the video"):
        source.frames([MATRIX_FRAMES - 2])
    np.testing.assert_array_equal(written_index(source.frames([MATRIX_FRAMES - 4])), [MATRIX_FRAMES - 4])


def test_a_file_cut_behind_its_header_decodes_up_to_the_cut(matrix, tmp_path):
    cut = tmp_path / "cut.mp4"
    data = matrix["h264-bframes-long-gop.mp4"].path.read_bytes()
    remuxed = tmp_path / "faststart.mp4"
    with av.open(str(matrix["h264-bframes-long-gop.mp4"].path)) as source, av.open(str(remuxed), "w", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(video=0):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    data = remuxed.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])

    index = probe_stream(cut)
    assert 0 < index.num_frames < MATRIX_FRAMES  # the cut-short last packet is not a frame
    if "decord" in BACKEND_NAMES:
        with pytest.raises(VideoDecodeError, match="cannot open the video") as refused:
            open_video(cut, backend="decord").frames([0])
        assert refused.value.path == str(cut)
    for backend in ("pyav", "torchcodec"):
        if backend not in BACKEND_NAMES:
            continue
        frames = open_video(cut, backend=backend).frames(np.arange(index.num_frames - 4))
        np.testing.assert_array_equal(written_index(frames), np.arange(index.num_frames - 4), err_msg=backend)


# ---------------------------------------------------------------------------------- processes


class _Frames(Dataset):
    def __init__(self, path: Path, backend: str) -> None:
        self.source = open_video(path, (64, 48), backend=backend)

    def __len__(self) -> int:
        return self.source.num_frames

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.source.frames([index])[0])


@pytest.mark.parametrize("start", ["fork", "spawn"])
@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_two_workers_read_the_same_frames_under_fork_and_spawn(matrix, backend, start):
    path = matrix["h264-bframes-long-gop.mp4"].path
    dataset = _Frames(path, backend)
    expected = dataset.source.frames(np.arange(MATRIX_FRAMES))  # the parent holds an open reader
    order = list(np.random.default_rng(0).permutation(MATRIX_FRAMES))
    loader = DataLoader(dataset, batch_size=16, num_workers=2, sampler=order, multiprocessing_context=start, timeout=30)

    frames = torch.cat(list(loader)).numpy()

    np.testing.assert_array_equal(frames, expected[order])


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_decoder_threads_are_configurable_and_change_nothing(matrix, backend):
    path = matrix["h264-vfr.mp4"].path
    one = open_video(path, (64, 48), num_threads=1, backend=backend)
    three = open_video(path, (64, 48), num_threads=3, backend=backend)
    wanted = np.r_[3:40, 120:160]
    assert three.num_threads == 3
    np.testing.assert_array_equal(three.frames(wanted), one.frames(wanted))


def test_backend_names_are_checked():
    assert resolve_backend("auto") == BACKEND_NAMES[0]
    with pytest.raises(ValueError, match="unknown video backend 'ffmpeg'"):
        open_video("x.mp4", backend="ffmpeg")
    assert set(BACKENDS) == {"pyav", "decord", "torchcodec"}


def test_auto_follows_the_environment_variable(monkeypatch):
    monkeypatch.setenv("RESTAURANT_ACTION_VIDEO_BACKEND", "decord")
    assert resolve_backend("auto") == "decord"
    monkeypatch.setenv("RESTAURANT_ACTION_VIDEO_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="nonsense"):
        resolve_backend()


# ---------------------------------------------------------------------------------- the library on every backend


def _first_batches(module_class, root: Path, backend: str, cache_dir: Path | None, **options) -> dict:
    datamodule = module_class(root, num_workers=0, augment=None, video_backend=backend, cache_dir=cache_dir, **options)
    datamodule.setup()
    return next(iter(datamodule.train_dataloader()))


@pytest.mark.parametrize(
    "module_class, options, key",
    [
        (FrameDataModule, {"image_size": 64, "batch_size": 6}, "images"),
        (ClipDataModule, {"image_size": 64, "batch_size": 2, "clip_length": 4, "frame_stride": 2}, "clips"),
        (SequenceDataModule, {"image_size": 64, "lanes": 2, "steps": 3}, "frames"),
    ],
    ids=["frame", "clip", "sequence"],
)
def test_every_datamodule_and_the_frame_cache_run_on_every_backend(synthetic_root, tmp_path, module_class, options, key):
    torch.manual_seed(0)
    reference = _first_batches(module_class, synthetic_root, "pyav", None, **options)
    for backend in BACKEND_NAMES:
        for cache in (None, tmp_path / f"cache-{backend}"):
            torch.manual_seed(0)
            batch = _first_batches(module_class, synthetic_root, backend, cache, **options)
            assert batch[key].shape == reference[key].shape
            np.testing.assert_array_equal(batch["targets"].numpy(), reference["targets"].numpy())
            difference = (batch[key].float() - reference[key].float()).abs().mean().item()
            assert difference <= RESIZED_MEAN_TOLERANCE, (backend, cache, difference)
        cached = [p.name for p in (tmp_path / f"cache-{backend}").iterdir()]
        assert cached and all(name.endswith((f"-{backend}.u8", f"-{backend}.filled")) for name in cached)


def test_a_cache_keeps_each_backends_frames_apart(matrix, tmp_path):
    path = matrix["h264-bframes-long-gop.mp4"].path
    sources = [open_video(path, (64, 48), cache_dir=tmp_path, backend=backend) for backend in BACKEND_NAMES]
    assert all(isinstance(source, CachedVideo) for source in sources)
    assert len({source._paths()[0] for source in sources}) == len(BACKEND_NAMES)
    for source in sources:
        np.testing.assert_array_equal(source.frames([9, 100]), open_video(path, (64, 48), backend=source.backend).frames([9, 100]))


def test_the_predictor_runs_on_every_backend(checkpoints, synthetic_root, tmp_path):
    from restaurant_action.predict import VideoPredictor

    video = min((synthetic_root / "videos").iterdir())
    best: dict[str, np.ndarray] = {}
    for backend in BACKEND_NAMES:
        predictor = VideoPredictor.from_checkpoint(checkpoints["YOLOv3Module"], "cpu", video_backend=backend)
        assert predictor.video_backend == backend
        result = predictor.predict(video, tmp_path / backend, video=False, progress=False)
        records = json.loads(result.detections_json.read_text(encoding="utf-8"))
        assert [r["frame"] for r in records] == list(range(open_video(video).num_frames))
        best[backend] = np.array([max(r["scores"], default=0.0) for r in records])
    for backend, scores in best.items():
        assert np.abs(scores - best["pyav"]).mean() < 0.05, backend

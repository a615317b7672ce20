"""Tests of restaurant_action/data/video: video files on every installed backend, frame folders,
the frame cache, errors, workers. Every test runs once per backend (``auto`` set to it)."""

from __future__ import annotations

import fcntl
import gc
import multiprocessing
import os
import pickle
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from restaurant_action.data.video import (
    BACKEND_VARIABLE,
    BACKENDS,
    CachedVideo,
    FrameFolder,
    VideoSource,
    available_backends,
    find_video,
    open_video,
)
from restaurant_action.errors import DatasetError, VideoDecodeError

NUM_FRAMES, WIDTH, HEIGHT = 150, 64, 48  # the ``pattern_video`` fixture


@pytest.fixture(autouse=True, params=available_backends())
def backend(request, monkeypatch) -> str:
    """The backend ``auto`` means in this test (and in the DataLoader workers it starts)."""
    monkeypatch.setenv(BACKEND_VARIABLE, request.param)
    return request.param


def _write_folder(folder: Path, frames_rgb: np.ndarray, suffix: str) -> Path:
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames_rgb):
        assert cv2.imwrite(str(folder / f"{i:06d}{suffix}"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(params=["mp4", "jpg", "png"])
def any_source(request, pattern_video, tmp_path):
    """``(path, max mean abs error vs the written frames)`` of the pattern as mp4, JPEG folder or PNG folder."""
    if request.param == "mp4":
        return pattern_video.path, 6.0
    folder = _write_folder(tmp_path / f"frames_{request.param}", pattern_video.frames[:40], f".{request.param}")
    return folder, (0.0 if request.param == "png" else 4.0)


def _written_index(frames: np.ndarray) -> np.ndarray:
    """The frame index that ``pattern_frames`` wrote in binary along the bottom 8 rows, read back."""
    strip = frames[:, -6:-2].mean(axis=(1, 3))  # (N, W), inside the blocks
    block = frames.shape[2] // 8
    bits = np.stack([strip[:, b * block + 2 : (b + 1) * block - 2].mean(1) > 128 for b in range(8)], 1)
    return (bits * (1 << np.arange(8))).sum(1)


def _mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# ---------------------------------------------------------------------------------- one interface


def test_every_source_has_the_same_interface(any_source, pattern_video, backend):
    path, tolerance = any_source
    source = open_video(path)
    expected_frames = NUM_FRAMES if path.is_file() else 40
    expected_class = BACKENDS[backend] if path.is_file() else FrameFolder

    assert isinstance(source, expected_class) and isinstance(source, VideoSource)
    assert source.num_frames == len(source) == expected_frames
    assert (source.width, source.height, source.size) == (WIDTH, HEIGHT, (WIDTH, HEIGHT))
    assert source.fps == pytest.approx(25.0 if path.is_file() else 30.0)

    frames = source.frames(np.arange(expected_frames))
    assert frames.dtype == np.uint8 and frames.shape == (expected_frames, HEIGHT, WIDTH, 3)
    assert _mean_abs(frames, pattern_video.frames[:expected_frames]) <= tolerance
    # RGB order: the square written as (230, 20, 20) RGB is red in channel 0
    square = frames[0, 6:10, 2:6].reshape(-1, 3).mean(0)
    assert square[0] > 180 and square[2] < 70


def test_frames_come_back_in_the_asked_order_with_repeats(any_source):
    path, _ = any_source
    source = open_video(path)
    every = source.frames(np.arange(source.num_frames))
    asked = [17, 3, 17, 0, source.num_frames - 1, 3]

    np.testing.assert_array_equal(open_video(path).frames(asked), every[asked])
    np.testing.assert_array_equal(source.frames(np.array(asked, np.int32)), every[asked])
    assert source.frames([]).shape == (0, HEIGHT, WIDTH, 3)


def test_decoding_at_a_target_size(any_source):
    path, _ = any_source
    native = open_video(path).frames([0, 5, 11])
    source = open_video(path, size=(32, 24))

    frames = source.frames([0, 5, 11])

    assert source.size == (32, 24) and (source.width, source.height) == (WIDTH, HEIGHT)
    assert frames.dtype == np.uint8 and frames.shape == (3, 24, 32, 3)
    for small, big in zip(frames, native):
        assert _mean_abs(small, cv2.resize(big, (32, 24), interpolation=cv2.INTER_AREA)) < 12


def test_folder_reports_the_frame_rate_it_is_given(tmp_path, pattern_video):
    folder = _write_folder(tmp_path / "f", pattern_video.frames[:3], ".png")
    assert open_video(folder, fps=12.5).fps == 12.5


@pytest.mark.parametrize("bad", [-1, NUM_FRAMES, NUM_FRAMES + 7])
def test_a_frame_out_of_range_names_the_file_and_the_frame(pattern_video, bad):
    source = open_video(pattern_video.path)
    with pytest.raises(DatasetError) as caught:
        source.frames([0, bad, 3])
    assert str(pattern_video.path) in str(caught.value)
    assert f"frame {bad}" in str(caught.value)


def test_a_folder_frame_out_of_range_names_the_folder(tmp_path, pattern_video):
    folder = _write_folder(tmp_path / "f", pattern_video.frames[:5], ".jpg")
    with pytest.raises(DatasetError) as caught:
        open_video(folder).frames([5])
    assert str(folder) in str(caught.value) and "frame 5" in str(caught.value)


# ---------------------------------------------------------------------------------- frame accuracy


def test_random_access_equals_a_sequential_pass(pattern_video):
    """Frame k decoded by seeking equals frame k of a sequential decode (decord's seeking path)."""
    import decord

    reader = decord.VideoReader(str(pattern_video.path), ctx=decord.cpu(0), num_threads=1)
    sequential = np.stack([reader.next().asnumpy() for _ in range(len(reader))])
    assert len(sequential) == NUM_FRAMES
    # the sequential pass is itself right: every frame shows the index written into it
    np.testing.assert_array_equal(_written_index(sequential), np.arange(NUM_FRAMES))

    source = open_video(pattern_video.path)
    rng = np.random.default_rng(7)
    for k in rng.choice(NUM_FRAMES, 16, replace=False).tolist() + [NUM_FRAMES - 1, 0, 13, 12]:
        frame = source.frames([k])
        np.testing.assert_array_equal(frame[0], sequential[k], err_msg=f"frame {k}")
        assert _written_index(frame).tolist() == [k]
    ks = rng.choice(NUM_FRAMES, 20).tolist()
    np.testing.assert_array_equal(open_video(pattern_video.path).frames(ks), sequential[ks])


# ---------------------------------------------------------------------------------- broken videos


def _faststart(data: bytes) -> bytes:
    """Move an mp4's ``moov`` box before ``mdat`` (shifting the chunk offsets), so that a cut file keeps its header."""

    def boxes(buffer, start, end):
        while start < end:
            size, kind = struct.unpack(">I4s", buffer[start : start + 8])
            yield kind, start, size
            start += size

    top = list(boxes(data, 0, len(data)))
    _, moov_at, moov_size = next(b for b in top if b[0] == b"moov")
    moov = bytearray(data[moov_at : moov_at + moov_size])

    def shift(start, end):
        for kind, at, size in boxes(moov, start, end):
            if kind in (b"trak", b"mdia", b"minf", b"stbl"):
                shift(at + 8, at + size)
            elif kind == b"stco":
                (count,) = struct.unpack(">I", moov[at + 12 : at + 16])
                for j in range(count):
                    o = at + 16 + 4 * j
                    moov[o : o + 4] = struct.pack(">I", struct.unpack(">I", moov[o : o + 4])[0] + moov_size)

    shift(8, len(moov))
    out = b""
    for kind, at, size in top:
        if kind == b"mdat":
            out += bytes(moov)
        if kind != b"moov":
            out += data[at : at + size]
    return out


def test_faststart_helper_keeps_the_video_decodable(pattern_video, tmp_path):
    moved = tmp_path / "faststart.mp4"
    moved.write_bytes(_faststart(pattern_video.path.read_bytes()))
    np.testing.assert_array_equal(open_video(moved).frames([0, 77]), open_video(pattern_video.path).frames([0, 77]))


@pytest.mark.parametrize("kind", ["empty", "garbage", "cut-in-half", "cut-keeping-header", "text"])
def test_a_broken_video_raises_a_video_decode_error_naming_the_file(pattern_video, tmp_path, kind):
    data = pattern_video.path.read_bytes()
    contents = {
        "empty": b"",
        "garbage": np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes(),
        "cut-in-half": data[: len(data) // 2],
        "cut-keeping-header": _faststart(data)[: len(data) * 6 // 10],
        "text": b"video,frame\n" * 100,
    }[kind]
    path = tmp_path / f"{kind}.mp4"
    path.write_bytes(contents)

    try:
        source = open_video(path)
        frames = source.frames(np.arange(source.num_frames))
    except VideoDecodeError as caught:
        assert str(path) in str(caught)
        assert caught.path == str(path)
        if caught.frame is not None:
            assert f"frame {caught.frame}" in str(caught)
        if kind == "empty":
            assert caught.frame == 0 and "empty" in str(caught)
    else:
        # A cut behind an intact header: the frames whose data is there are the video (the
        # count is of the packets that exist, not the header's claim), and they are right.
        assert kind == "cut-keeping-header", f"{kind} decoded"
        assert 0 < source.num_frames < NUM_FRAMES
        np.testing.assert_array_equal(_written_index(frames), np.arange(source.num_frames))


def test_a_missing_video_raises_a_video_decode_error_naming_it(tmp_path, backend):
    with pytest.raises(VideoDecodeError) as caught:
        open_video(tmp_path / "absent.mp4")
    assert str(tmp_path / "absent.mp4") in str(caught.value)
    source = BACKENDS[backend](tmp_path / "absent.mp4")
    with pytest.raises(VideoDecodeError, match="absent.mp4"):
        source.frames([0])


def test_a_video_deleted_after_probing_raises_a_video_decode_error(pattern_video, tmp_path):
    path = tmp_path / "v.mp4"
    path.write_bytes(pattern_video.path.read_bytes())
    source = open_video(path)
    assert source.num_frames == NUM_FRAMES
    path.unlink()
    with pytest.raises(VideoDecodeError, match="v.mp4"):
        source.frames([0])


def test_an_unreadable_folder_image_names_the_image_and_frame(tmp_path, pattern_video):
    folder = _write_folder(tmp_path / "f", pattern_video.frames[:4], ".jpg")
    (folder / "000002.jpg").write_bytes(b"not a jpeg")
    source = open_video(folder)
    np.testing.assert_array_equal(source.frames([3, 0]).shape, (2, HEIGHT, WIDTH, 3))
    with pytest.raises(VideoDecodeError) as caught:
        source.frames([1, 2])
    assert "000002.jpg" in str(caught.value) and caught.value.frame == 2


def test_an_empty_folder_raises_a_video_decode_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoDecodeError, match="empty"):
        open_video(tmp_path / "empty").num_frames


def test_find_video_prefers_a_folder_then_video_suffixes(tmp_path, pattern_video):
    (tmp_path / "clip").mkdir()
    (tmp_path / "movie.mkv").write_bytes(b"x")
    assert find_video(tmp_path, "clip") == tmp_path / "clip"
    assert find_video(tmp_path, "movie") == tmp_path / "movie.mkv"
    with pytest.raises(VideoDecodeError, match="'nothing' not found"):
        find_video(tmp_path, "nothing")


# ---------------------------------------------------------------------------------- processes


def test_a_used_source_pickles_and_reopens_its_reader(pattern_video):
    source = open_video(pattern_video.path, size=(32, 24))
    expected = source.frames([3, 60, 149])
    assert source.reader() is not None

    clone = pickle.loads(pickle.dumps(source))

    assert clone._reader is None
    assert clone.num_frames == NUM_FRAMES and clone.size == (32, 24)
    np.testing.assert_array_equal(clone.frames([3, 60, 149]), expected)


class _FramesOf(Dataset):
    """Frame ``i`` of a source, and the worker that decoded it."""

    def __init__(self, source: VideoSource) -> None:
        self.source = source

    def __len__(self) -> int:
        return self.source.num_frames

    def __getitem__(self, index: int):
        worker = torch.utils.data.get_worker_info()
        return torch.from_numpy(self.source.frames([index])[0]), worker.id if worker else -1, os.getpid()


def _read_with_workers(source: VideoSource, indices=None, timeout: float = 0):
    # Readers left in garbage cycles by earlier tests must die here, not in a forked worker.
    gc.collect()
    loader = DataLoader(_FramesOf(source), batch_size=8, num_workers=2, sampler=indices, timeout=timeout)
    frames, workers, pids = zip(*[(f, w, p) for f, w, p in loader])
    return torch.cat(frames).numpy(), set(torch.cat(workers).tolist()), set(torch.cat(pids).tolist())


def test_a_probed_source_reads_right_in_two_dataloader_workers(pattern_video):
    expected = open_video(pattern_video.path).frames(np.arange(NUM_FRAMES))
    source = open_video(pattern_video.path)
    assert source.num_frames == NUM_FRAMES  # probed in the parent, as ActionAnnotations.load does

    frames, workers, pids = _read_with_workers(source)

    assert workers == {0, 1} and os.getpid() not in pids
    np.testing.assert_array_equal(frames, expected)


def test_a_used_source_pickled_reads_right_in_two_dataloader_workers(pattern_video):
    source = open_video(pattern_video.path)
    expected = source.frames(np.arange(NUM_FRAMES))

    frames, workers, _ = _read_with_workers(pickle.loads(pickle.dumps(source)), indices=list(range(NUM_FRAMES))[::-1])

    assert workers == {0, 1}
    np.testing.assert_array_equal(frames, expected[::-1])


def test_a_source_read_in_the_parent_reads_right_in_two_forked_workers(pattern_video, monkeypatch):
    # the loader's shutdown waits this long for each worker before terminating it (a deadlocked one never exits)
    monkeypatch.setattr(torch.utils.data._utils, "MP_STATUS_CHECK_INTERVAL", 0.2)
    source = open_video(pattern_video.path)
    expected = source.frames(np.arange(NUM_FRAMES))  # the parent holds an open reader when the workers fork

    gc.collect()
    batches = iter(DataLoader(_FramesOf(source), batch_size=8, num_workers=2, timeout=5))  # a hang: RuntimeError
    try:
        frames = torch.cat([f for f, _, _ in batches]).numpy()
    finally:
        batches._shutdown_workers()
        source._reader = None  # close it in the parent, where that is safe

    np.testing.assert_array_equal(frames, expected)


# ---------------------------------------------------------------------------------- frame cache


def test_cache_is_filled_per_window_and_serves_later_reads(pattern_video, tmp_path, monkeypatch):
    video = tmp_path / "v.mp4"
    video.write_bytes(pattern_video.path.read_bytes())
    uncached = open_video(video, size=(32, 24)).frames(np.arange(NUM_FRAMES))
    cache_dir = tmp_path / "cache"
    source = open_video(video, size=(32, 24), cache_dir=cache_dir)
    assert isinstance(source, CachedVideo)
    window = source.fill_window
    assert 1 < window < NUM_FRAMES

    first = source.frames([5, 2])

    np.testing.assert_array_equal(first, uncached[[5, 2]])
    frames_file, filled_file = source._paths()
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted([frames_file.name, filled_file.name])
    assert frames_file.stat().st_size == NUM_FRAMES * 24 * 32 * 3
    filled = np.fromfile(filled_file, np.uint8)
    np.testing.assert_array_equal(np.flatnonzero(filled), np.arange(window))  # the whole aligned window
    cached = np.fromfile(frames_file, np.uint8).reshape(NUM_FRAMES, 24, 32, 3)
    np.testing.assert_array_equal(cached[:window], uncached[:window])

    # a second read inside the window never decodes
    def no_decode(indices):
        raise AssertionError(f"decoded {indices} again")

    monkeypatch.setattr(source.source, "_decode", no_decode)
    np.testing.assert_array_equal(source.frames([window - 1, 0, 7]), uncached[[window - 1, 0, 7]])

    # without the video (and without an open reader), filled frames still read; the others fail naming it
    monkeypatch.undo()
    clone = pickle.loads(pickle.dumps(source))
    video.rename(tmp_path / "moved.mp4")
    np.testing.assert_array_equal(clone.frames(np.arange(window)), uncached[:window])
    with pytest.raises(VideoDecodeError, match="v.mp4"):
        clone.frames([NUM_FRAMES - 1])


def test_a_new_cached_source_reuses_the_cache_on_disk(pattern_video, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    first = open_video(pattern_video.path, size=(32, 24), cache_dir=cache_dir)
    expected = first.frames(np.arange(NUM_FRAMES))

    second = open_video(pattern_video.path, size=(32, 24), cache_dir=cache_dir)
    monkeypatch.setattr(second.source, "_decode", lambda indices: pytest.fail("decoded despite a full cache"))

    np.testing.assert_array_equal(second.frames([149, 0, 77, 77]), expected[[149, 0, 77, 77]])
    # a different output size is a different cache
    third = open_video(pattern_video.path, size=(20, 15), cache_dir=cache_dir)
    assert third._paths()[0] != first._paths()[0]
    assert third.frames([0]).shape == (1, 15, 20, 3)


def test_a_rewritten_video_is_not_served_stale_cached_frames(tmp_path, frame_pattern, mp4_writer):
    video = tmp_path / "v.mp4"
    mp4_writer(video, frame_pattern(20))
    open_video(video, cache_dir=tmp_path / "cache").frames(np.arange(20))
    written = video.stat().st_mtime
    mp4_writer(video, 255 - frame_pattern(20))  # same path, length and size; other pixels
    os.utime(video, (written + 10, written + 10))  # rewritten later (file times can be coarser than this test)

    fresh = open_video(video).frames(np.arange(20))
    np.testing.assert_array_equal(open_video(video, cache_dir=tmp_path / "cache").frames(np.arange(20)), fresh)


def test_cache_of_a_frame_folder_matches_the_folder(tmp_path, pattern_video):
    folder = _write_folder(tmp_path / "f", pattern_video.frames[:20], ".png")
    source = open_video(folder, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(source.frames([19, 0, 19]), pattern_video.frames[[19, 0, 19]])
    assert np.fromfile(source._paths()[1], np.uint8).all()


def test_cached_source_pickles_and_fills_from_two_workers(pattern_video, tmp_path):
    uncached = open_video(pattern_video.path).frames(np.arange(NUM_FRAMES))
    source = open_video(pattern_video.path, cache_dir=tmp_path / "cache")
    source._open_cache()  # the parent holds the memmaps (not a reader) when the workers fork

    frames, workers, _ = _read_with_workers(source, indices=list(range(NUM_FRAMES))[::-1])

    assert workers == {0, 1}
    np.testing.assert_array_equal(frames, uncached[::-1])
    assert np.fromfile(source._paths()[1], np.uint8).all()
    cached = np.fromfile(source._paths()[0], np.uint8).reshape(uncached.shape)
    np.testing.assert_array_equal(cached, uncached)

    clone = pickle.loads(pickle.dumps(source))
    assert clone._frames is None and clone.source._reader is None
    np.testing.assert_array_equal(clone.frames([1, 100]), uncached[[1, 100]])


def test_a_cache_with_fill_frames_stores_only_those_and_the_asked(pattern_video, tmp_path):
    source = open_video(pattern_video.path, size=(32, 24), cache_dir=tmp_path / "cache", fill_frames=np.array([1, 3, 5]))
    uncached = open_video(pattern_video.path, size=(32, 24)).frames(np.arange(8))
    np.testing.assert_array_equal(source.frames([6]), uncached[[6]])
    filled = np.fromfile(source._paths()[1], np.uint8)
    assert np.flatnonzero(filled).tolist() == [1, 3, 5, 6]
    np.testing.assert_array_equal(source.frames([3, 0]), uncached[[3, 0]])


def _hold_window_lock(filled_path: str, start: int, length: int, held, release) -> None:
    """In another process: lock a window's byte range of the mask file until told to release."""
    with open(filled_path, "r+b") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX, length, start)
        held.set()
        release.wait(30)
        fcntl.lockf(handle, fcntl.LOCK_UN, length, start)


def test_a_window_another_process_fills_is_left_for_last(pattern_video, tmp_path, monkeypatch):
    source = open_video(pattern_video.path, size=(32, 24), cache_dir=tmp_path / "cache")
    uncached = open_video(pattern_video.path, size=(32, 24)).frames(np.arange(NUM_FRAMES))
    window = source.fill_window
    source._open_cache()
    context = multiprocessing.get_context("spawn")
    held, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_window_lock, args=(str(source._paths()[1]), 0, window, held, release))
    holder.start()
    assert held.wait(30)
    decoded: list[int] = []
    real_frames = source.source.frames

    def recording_frames(indices):
        decoded.append(int(indices[0]))
        if int(indices[0]) >= window:  # the free window is decoded while the other is still locked
            release.set()
        return real_frames(indices)

    monkeypatch.setattr(source.source, "frames", recording_frames)
    frames = source.frames([0, window])
    holder.join(30)

    assert decoded == [window, 0]
    np.testing.assert_array_equal(frames, uncached[[0, window]])

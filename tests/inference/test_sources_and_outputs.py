"""Live sources (the dropping reader, cameras that do not open) and the writers (JSON, tubes, mp4)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Iterator

import av
import numpy as np
import pytest

import restaurant_action as ra
from restaurant_action.inference.outputs import DetectionsJsonWriter, Mp4Writer, annotate_frame, write_tubes_csv
from restaurant_action.inference.sources import LatestFrameReader, is_live, open_capture
from restaurant_action.metrics.video_map import ActionTube
from restaurant_action.report import read_predictions


def slow_source(count: int, delay: float) -> Iterator[np.ndarray]:
    for index in range(count):
        time.sleep(delay)
        yield np.full((4, 4, 3), index % 256, np.uint8)


def test_reader_keeps_the_newest_frame_and_counts_the_dropped() -> None:
    reader = LatestFrameReader(slow_source(100, 0.001))
    seen = []
    for index, frame in reader:
        assert int(frame[0, 0, 0]) == index % 256
        seen.append(index)
        time.sleep(0.01)
    assert reader.dropped > 0 and len(seen) + reader.dropped == reader.read == 100
    assert seen == sorted(seen) and seen[-1] == 99  # the last frame is never dropped


def test_reader_drops_nothing_when_the_consumer_keeps_up() -> None:
    reader = LatestFrameReader(slow_source(30, 0.01))
    assert [index for index, _ in reader] == list(range(30)) and reader.dropped == 0


def test_reader_hands_the_sources_error_to_the_consumer() -> None:
    def failing() -> Iterator[np.ndarray]:
        yield np.zeros((4, 4, 3), np.uint8)
        raise OSError("camera unplugged")

    with pytest.raises(OSError, match="camera unplugged"):
        list(LatestFrameReader(failing()))


def test_reader_thread_stops_when_the_consumer_stops() -> None:
    reader = LatestFrameReader(slow_source(10_000, 0.001))
    for index, _ in reader:
        if index > 5:
            break
    time.sleep(0.05)
    assert not reader._thread.is_alive() and reader.read < 10_000
    assert threading.active_count() < 50


def test_sources_are_live_or_replayable() -> None:
    assert is_live(0) and is_live("rtsp://camera/stream") and is_live(iter([]))
    assert not is_live("shift.mp4") and not is_live(Path("frames"))


def test_a_url_that_does_not_open_is_a_clear_error() -> None:
    with pytest.raises(ra.VideoDecodeError, match="http://127.0.0.1:9/none.mp4: cannot open the stream"):
        open_capture("http://127.0.0.1:9/none.mp4")


def test_json_writer_streams_the_evaluate_format(tmp_path: Path) -> None:
    writer = DetectionsJsonWriter(tmp_path / "d.json", "cam0", ["cut", "pour"])
    writer.write(0, np.array([[1.0, 2.0, 30.0, 40.0]]), np.array([0.9]), np.array([1]))
    writer.write(1, np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), held=True)
    path = writer.close()
    records = json.loads(path.read_text())
    assert records[0] == {"video": "cam0", "frame": 0, "boxes": [[1.0, 2.0, 30.0, 40.0]], "scores": [0.9], "labels": ["pour"]}
    assert records[1]["held"] is True
    read = read_predictions(path, ["cut", "pour"])
    assert [r.frame for r in read] == [0, 1] and read[0].labels.tolist() == [1]


def test_tubes_csv_has_one_row_per_tube(tmp_path: Path) -> None:
    tube = ActionTube(1, [3, 4, 6], [[0, 0, 5, 5]] * 3, [0.5, 0.7, 0.9])
    rows = write_tubes_csv(tmp_path / "t.csv", [tube], ["cut", "pour"]).read_text().splitlines()
    assert rows == ["track,action,start_frame,end_frame,mean_score,boxes", "0,pour,3,6,0.7000,3"]


@pytest.mark.parametrize("size", [(64, 48), (65, 47)])
def test_mp4_writer_writes_h264_at_the_frames_size_and_rate(tmp_path: Path, size: tuple[int, int]) -> None:
    writer = Mp4Writer(tmp_path / "v.mp4", size, 29.97)
    rng = np.random.default_rng(0)
    for _ in range(12):
        writer.write(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    path = writer.close()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.width, stream.height) == (size[0] + size[0] % 2, size[1] + size[1] % 2)
        assert abs(float(stream.average_rate) - 29.97) < 1e-3 and sum(1 for _ in container.decode(video=0)) == 12
    with pytest.raises(ValueError, match="frame of 10x10, the video is"):
        Mp4Writer(tmp_path / "w.mp4", size, 30).write(np.zeros((10, 10, 3), np.uint8))


def test_annotated_boxes_take_their_actions_colour_whatever_the_track() -> None:
    frame = np.zeros((60, 120, 3), np.uint8)
    drawn = annotate_frame(frame, np.array([[5, 20, 40, 50], [60, 20, 100, 50]]), np.array([0.9, 0.8]),
                           np.array([1, 1]), np.array([0, 7]), ["cut", "pour"])
    assert (drawn[50, 20] == drawn[50, 80]).all() and drawn[50, 20].any()  # bottom edges, same colour

"""Property-based tests of the AVA importer: generated CSVs, each row valid or mutated one way,
checked against the generator's truth (1,000 cases, fixed seed).

The importer is strict: a CSV with a bad row raises ``DatasetError`` naming the CSV and a bad
row's line; a CSV without one imports exactly its rows (frames from timestamps, boxes scaled to
pixels, one track per person and action). Nothing else escapes.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from restaurant_action.data.importers import AVA_TRACK_STRIDE, import_ava
from restaurant_action.errors import DatasetError
from tests.data.conftest import VIDEO_LENGTHS, VIDEO_SIZE
from tests.data.fuzz_strategies import pixel_boxes

WIDTH, HEIGHT = VIDEO_SIZE
FPS = 25.0  # the video bank's rate
ACTION_IDS = (3, 11, 80)
MUTATIONS = (
    "missing field", "extra field", "timestamp not a number", "infinite timestamp", "box not normalised",
    "coordinate not a number", "action id not an integer", "action id out of range", "negative person id",
    "empty video id", "unknown video", "timestamp past the video's end", "box with no area", "repeated row",
)


@dataclass(frozen=True)
class Row:
    """One CSV line and, when valid, ``(video, frame, x1, y1, x2, y2, action_id, person_id)`` in pixels."""

    text: str
    truth: tuple | None


@st.composite
def valid_rows(draw: st.DrawFn, person: int) -> Row:
    video = draw(st.sampled_from(sorted(VIDEO_LENGTHS)))
    frame = draw(st.integers(0, VIDEO_LENGTHS[video] - 1))
    x1, y1, x2, y2 = draw(pixel_boxes(WIDTH, HEIGHT))
    action = draw(st.sampled_from(ACTION_IDS))
    text = f"{video},{frame / FPS!r},{x1 / WIDTH!r},{y1 / HEIGHT!r},{x2 / WIDTH!r},{y2 / HEIGHT!r},{action},{person}"
    return Row(text, (video, frame, float(x1), float(y1), float(x2), float(y2), action, person))


@st.composite
def mutated_rows(draw: st.DrawFn, person: int, earlier: list[Row]) -> Row:
    fields = draw(valid_rows(person)).text.split(",")
    mutation = draw(st.sampled_from(MUTATIONS))
    if mutation == "missing field":
        fields.pop(draw(st.integers(0, 7)))
    elif mutation == "extra field":
        fields.insert(draw(st.integers(0, 8)), draw(st.sampled_from(["", "1", "x"])))
    elif mutation == "timestamp not a number":
        fields[1] = draw(st.sampled_from(["", "noon", "1:30", "0x1"]))
    elif mutation == "infinite timestamp":
        fields[1] = draw(st.sampled_from(["inf", "nan", "1e999"]))
    elif mutation == "box not normalised":
        fields[draw(st.integers(2, 5))] = draw(st.sampled_from(["1.5", "-0.1", "64", "1e9"]))
    elif mutation == "coordinate not a number":
        fields[draw(st.integers(2, 5))] = draw(st.sampled_from(["", "left", "nan", "0..5"]))
    elif mutation == "action id not an integer":
        fields[6] = draw(st.sampled_from(["", "3.0", "three", "1e2"]))
    elif mutation == "action id out of range":
        fields[6] = str(draw(st.sampled_from([-1, AVA_TRACK_STRIDE, 10**9])))
    elif mutation == "negative person id":
        fields[7] = str(-draw(st.integers(1, 10**6)))
    elif mutation == "empty video id":
        fields[0] = ""
    elif mutation == "unknown video":
        fields[0] = draw(st.sampled_from(["c", "vidéo", "a b"]))
    elif mutation == "timestamp past the video's end":
        fields[1] = repr((VIDEO_LENGTHS[fields[0]] + draw(st.integers(0, 1000))) / FPS)
    elif mutation == "box with no area":
        fields[4] = fields[2]
    elif mutation == "repeated row":
        earlier_valid = [row for row in earlier if row.truth is not None]
        fields = (draw(st.sampled_from(earlier_valid)).text if earlier_valid else "a,-1,0,0,1,1,3,0").split(",")
    return Row(",".join(fields), None)


@st.composite
def ava_files(draw: st.DrawFn) -> list[Row]:
    rows: list[Row] = []
    for person in range(draw(st.integers(1, 8))):  # person ids unique per line: only a repeated row repeats one
        rows.append(draw(valid_rows(person)) if draw(st.booleans()) else draw(mutated_rows(person, rows)))
    return rows


@pytest.fixture(scope="module")
def ava_videos(tmp_path_factory: pytest.TempPathFactory, video_bank: dict[str, Path]) -> Path:
    folder = tmp_path_factory.mktemp("ava_videos")
    for name, path in video_bank.items():
        shutil.copy(path, folder / f"{name}.mp4")
    return folder


@settings(max_examples=1000, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=ava_files())
def test_a_generated_ava_csv_imports_exactly_or_names_a_bad_line(ava_videos: Path, tmp_path_factory, rows: list[Row]) -> None:
    work = tmp_path_factory.mktemp("ava_case")
    csv_path = work / "ava.csv"
    csv_path.write_text("".join(f"{row.text}\n" for row in rows), encoding="utf-8")
    bad_lines = {line for line, row in enumerate(rows, start=1) if row.truth is None}
    try:
        annotations = import_ava(csv_path, ava_videos, work / "out")
    except DatasetError as error:
        assert error.path == str(csv_path) and error.line in bad_lines, (str(error), bad_lines)
        assert f"line {error.line}" in str(error)
        return
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert not bad_lines, f"lines {sorted(bad_lines)} imported without an error"
    names = annotations.video_names
    found_ids = sorted({row.truth[6] for row in rows})
    got = sorted(
        (names[v], int(f), *np.round(box, 3).tolist(), found_ids[int(label)], int(track) // AVA_TRACK_STRIDE)
        for v, f, box, label, track in zip(annotations.video_ids, annotations.frames, annotations.boxes,
                                            annotations.labels, annotations.tracks)
    )
    assert got == sorted(row.truth for row in rows)
    assert annotations.classes == [f"action_{i}" for i in found_ids]

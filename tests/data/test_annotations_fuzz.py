"""Property-based tests of ``annotations.csv`` loading: generated files, each row valid or mutated
in one of the ways real files go wrong, checked against the generator's own truth.

Every case either loads exactly the valid rows (``strict=False``; ``strict=True`` when no row is
bad) or raises ``DatasetError`` naming the file and a bad row's line; nothing else escapes.
1,000 cases with a fixed seed in ``make test``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from restaurant_action.data.annotations import ActionAnnotations
from restaurant_action.errors import DatasetError
from tests.data.conftest import CLASSES, HEADER, VIDEO_LENGTHS, VIDEO_SIZE
from tests.data.fuzz_strategies import pixel_boxes

WIDTH, HEIGHT = VIDEO_SIZE
MUTATIONS = (
    "missing column",
    "extra column",
    "frame not an integer",
    "coordinate not a number",
    "NaN coordinate",
    "infinite coordinate",
    "negative frame",
    "frame past the video's end",
    "swapped corners",
    "huge coordinates",
    "box outside the frame",
    "unknown action",
    "unicode video name",
    "repeated header",
    "duplicated row",
    "empty video name",
)


@dataclass(frozen=True)
class Row:
    """One generated line: its text and, when valid, what loading must give."""

    text: str
    truth: tuple | None  # (video, frame, x1, y1, x2, y2, label, track) of a valid row


@st.composite
def valid_rows(draw: st.DrawFn, track: int) -> Row:
    video = draw(st.sampled_from(sorted(VIDEO_LENGTHS)))
    frame = draw(st.integers(0, VIDEO_LENGTHS[video] - 1))
    x1, y1, x2, y2 = draw(pixel_boxes(WIDTH, HEIGHT))
    label = draw(st.integers(0, len(CLASSES) - 1))
    text = f"{video},{frame},{x1},{y1},{x2},{y2},{CLASSES[label]},{track}"
    return Row(text, (video, frame, float(x1), float(y1), float(x2), float(y2), label, track))


@st.composite
def mutated_rows(draw: st.DrawFn, track: int, earlier: list[Row]) -> Row:
    base = draw(valid_rows(track))
    fields = base.text.split(",")
    mutation = draw(st.sampled_from(MUTATIONS))
    if mutation == "missing column":
        fields.pop(draw(st.integers(0, len(fields) - 1)))
    elif mutation == "extra column":
        fields.insert(draw(st.integers(0, len(fields))), draw(st.sampled_from(["", "7", "x"])))
    elif mutation == "frame not an integer":
        fields[1] = draw(st.sampled_from(["1.5", "ten", "", "0x10", "1e3"]))
    elif mutation == "coordinate not a number":
        fields[draw(st.integers(2, 5))] = draw(st.sampled_from(["", "abc", "1,5", "--3"])).replace(",", ";")
    elif mutation == "NaN coordinate":
        fields[draw(st.integers(2, 5))] = draw(st.sampled_from(["nan", "NaN", "-nan"]))
    elif mutation == "infinite coordinate":
        fields[draw(st.integers(2, 5))] = draw(st.sampled_from(["inf", "-inf", "1e999"]))
    elif mutation == "negative frame":
        fields[1] = str(-draw(st.integers(1, 10**6)))
    elif mutation == "frame past the video's end":
        fields[1] = str(VIDEO_LENGTHS[fields[0]] + draw(st.integers(0, 10**6)))
    elif mutation == "swapped corners":
        fields[2], fields[4] = fields[4], fields[2]
        if fields[2] == fields[4]:
            fields[3], fields[5] = fields[5], fields[3]
    elif mutation == "huge coordinates":
        fields[4] = draw(st.sampled_from(["1e30", "123456789", "4e9"]))
    elif mutation == "box outside the frame":
        shift = draw(st.integers(3, 500))
        fields[2], fields[4] = str(-shift - 10), str(-shift)
    elif mutation == "unknown action":
        fields[6] = draw(st.sampled_from(["slice", "CUT", "cut ", "ｃｕｔ", "🍣"])).strip() or "x"
        if fields[6] in CLASSES:
            fields[6] = "slice"
    elif mutation == "unicode video name":
        fields[0] = draw(st.sampled_from(["caméra", "видео", "寿司", "a\u200b"]))
    elif mutation == "repeated header":
        return Row(HEADER, None)
    elif mutation == "duplicated row":
        earlier_valid = [row for row in earlier if row.truth is not None]
        if earlier_valid:
            return Row(draw(st.sampled_from(earlier_valid)).text, None)
        fields[1] = "-1"
    elif mutation == "empty video name":
        fields[0] = " "
    return Row(",".join(fields), None)


@st.composite
def annotation_files(draw: st.DrawFn) -> tuple[list[Row], bool, bool, bool]:
    """``(rows, with a byte-order mark, with CRLF line ends, an empty file instead)``."""
    rows: list[Row] = []
    for index in range(draw(st.integers(0, 10))):
        track = 1000 + index  # tracks are unique per line: only the duplicated-row mutation repeats one
        if draw(st.booleans()):
            rows.append(draw(valid_rows(track)))
        else:
            rows.append(draw(mutated_rows(track, rows)))
    return rows, draw(st.booleans()), draw(st.booleans()), draw(st.integers(0, 49)) == 0


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory: pytest.TempPathFactory, video_bank: dict[str, Path]) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "videos").mkdir()
    for name, path in video_bank.items():
        shutil.copy(path, root / "videos" / f"{name}.mp4")
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in CLASSES), encoding="utf-8")
    return root


def _write(root: Path, rows: list[Row], bom: bool, crlf: bool, empty: bool) -> Path:
    end = "\r\n" if crlf else "\n"
    text = "" if empty else ("\ufeff" if bom else "") + end.join([HEADER, *(row.text for row in rows)]) + end
    path = root / "annotations.csv"
    path.write_bytes(text.encode("utf-8"))
    return path


def _loaded(annotations: ActionAnnotations) -> set[tuple]:
    names = annotations.video_names
    return {
        (names[v], int(f), *map(float, box), int(label), int(track))
        for v, f, box, label, track in zip(annotations.video_ids, annotations.frames, annotations.boxes, annotations.labels, annotations.tracks)
    }


@settings(max_examples=1000, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=annotation_files())
def test_a_generated_annotation_file_loads_its_valid_rows_or_names_a_bad_line(dataset_root: Path, case) -> None:
    rows, bom, crlf, empty = case
    path = _write(dataset_root, rows, bom, crlf, empty)
    if empty:
        with pytest.raises(DatasetError, match="header must be") as caught:
            ActionAnnotations.load(dataset_root, strict=False)
        assert caught.value.path == str(path) and caught.value.line == 1
        return
    valid = {row.truth for row in rows if row.truth is not None}
    bad_lines = {line for line, row in enumerate(rows, start=2) if row.truth is None}

    try:
        lenient = ActionAnnotations.load(dataset_root, strict=False)
    except DatasetError as error:
        assert error.path == str(path)
        assert not valid, f"{len(valid)} valid rows, yet: {error}"  # only a file without valid rows fails leniently
        return
    assert _loaded(lenient) == valid
    problem_lines = {problem.line for problem in lenient.report.problems}
    assert problem_lines <= bad_lines and bool(problem_lines) == bool(bad_lines)

    if bad_lines:
        with pytest.raises(DatasetError) as caught:
            ActionAnnotations.load(dataset_root)
        assert caught.value.path == str(path) and caught.value.line in bad_lines
        assert f"line {caught.value.line}" in str(caught.value)
    else:
        assert _loaded(ActionAnnotations.load(dataset_root)) == valid

"""Property-based tests of the YOWO-layout importer's label files: generated lines, each valid or
mutated one way, checked against the generator's truth (1,000 cases, fixed seed).

The importer is strict: a label file with a bad line raises ``DatasetError`` naming that file
and a bad line; one without imports exactly its boxes and classes. Nothing else escapes.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from restaurant_action.data.importers import import_yowo
from restaurant_action.errors import DatasetError
from tests.data.fuzz_strategies import pixel_boxes

WIDTH, HEIGHT, FRAMES = 64, 48, 3
CLASSES = ("Cut", "Wipe", "Pour")
MUTATIONS = (
    "missing field", "extra field", "class id not a number", "class id 0", "class id past the list",
    "fractional class id", "coordinate not a number", "NaN coordinate", "infinite coordinate",
    "swapped corners", "box outside the frame", "huge coordinate", "comma separated",
)
# The importer's policy for boxes that cross the frame (UCF101-24's often do): clipped to the
# frame and counted in the log when some of the box lies inside, an error when none does.


@dataclass(frozen=True)
class Line:
    """One label line and, when valid, ``(class index, x1, y1, x2, y2)``."""

    text: str
    truth: tuple | None


@st.composite
def valid_lines(draw: st.DrawFn) -> Line:
    x1, y1, x2, y2 = draw(pixel_boxes(WIDTH, HEIGHT))
    label = draw(st.integers(0, len(CLASSES) - 1))
    separator = draw(st.sampled_from([" ", "  ", "\t"]))
    return Line(separator.join(map(str, (label + 1, x1, y1, x2, y2))), (label, float(x1), float(y1), float(x2), float(y2)))


@st.composite
def mutated_lines(draw: st.DrawFn) -> Line:
    base = draw(valid_lines())
    fields = base.text.split()
    mutation = draw(st.sampled_from(MUTATIONS))
    if mutation == "missing field":
        fields.pop(draw(st.integers(0, 4)))
    elif mutation == "extra field":
        fields.insert(draw(st.integers(0, 5)), draw(st.sampled_from(["1", "x", "0.5"])))
    elif mutation == "class id not a number":
        fields[0] = draw(st.sampled_from(["cut", "one", "#1"]))
    elif mutation == "class id 0":
        fields[0] = "0"
    elif mutation == "class id past the list":
        fields[0] = str(len(CLASSES) + draw(st.integers(1, 10**6)))
    elif mutation == "fractional class id":
        fields[0] = "1.5"
    elif mutation == "coordinate not a number":
        fields[draw(st.integers(1, 4))] = draw(st.sampled_from(["left", "1,5", "--2"]))
    elif mutation == "NaN coordinate":
        fields[draw(st.integers(1, 4))] = "nan"
    elif mutation == "infinite coordinate":
        fields[draw(st.integers(1, 4))] = draw(st.sampled_from(["inf", "-inf", "1e999"]))
    elif mutation == "swapped corners":
        fields[1], fields[3] = fields[3], fields[1]
    elif mutation == "box outside the frame":
        fields[1], fields[3] = str(WIDTH + 10), str(WIDTH + 20)
    elif mutation == "huge coordinate":  # clipped, not refused: the box becomes valid
        fields[4] = "1e12"
        return Line(" ".join(fields), (*base.truth[:4], float(HEIGHT)))
    elif mutation == "comma separated":
        return Line(",".join(fields), None)
    return Line(" ".join(fields), None)


@st.composite
def label_files(draw: st.DrawFn) -> list[Line]:
    return [draw(valid_lines()) if draw(st.booleans()) else draw(mutated_lines()) for _ in range(draw(st.integers(1, 6)))]


@pytest.fixture(scope="module")
def yowo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("yowo_fuzz")
    frames = src / "rgb-images" / "Cut" / "v1"
    frames.mkdir(parents=True)
    for number in range(1, FRAMES + 1):
        assert cv2.imwrite(str(frames / f"{number:05d}.jpg"), np.full((HEIGHT, WIDTH, 3), 40 * number, np.uint8))
    (src / "labels" / "Cut" / "v1").mkdir(parents=True)
    (src / "classes.txt").write_text("".join(f"{name}\n" for name in CLASSES), encoding="utf-8")
    return src


@settings(max_examples=1000, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(lines=label_files())
def test_a_generated_label_file_imports_exactly_or_names_a_bad_line(yowo_root: Path, tmp_path_factory, lines: list[Line]) -> None:
    label_file = yowo_root / "labels" / "Cut" / "v1" / "00002.txt"
    label_file.write_text("".join(f"{line.text}\n" for line in lines), encoding="utf-8")
    bad_lines = {number for number, line in enumerate(lines, start=1) if line.truth is None}
    out = tmp_path_factory.mktemp("yowo_case") / "out"
    try:
        annotations = import_yowo(yowo_root, out)
    except DatasetError as error:
        assert error.path == str(label_file) and error.line in bad_lines, (str(error), bad_lines)
        return
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    assert not bad_lines, f"lines {sorted(bad_lines)} imported without an error"
    assert annotations.classes == list(CLASSES)
    assert annotations.frames.tolist() == [1] * len(lines)
    got = sorted((int(label), *map(float, box)) for label, box in zip(annotations.labels, annotations.boxes))
    assert got == sorted(line.truth for line in lines)

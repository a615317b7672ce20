"""Tests of restaurant_action/data/importers.py: YOWO, AVA and CVAT imports on tiny fixtures."""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from restaurant_action.data.annotations import ActionAnnotations
from restaurant_action.data.importers import (
    IMPORTERS,
    import_ava,
    import_cvat_video,
    import_yowo,
    run_import,
)
from restaurant_action.errors import DatasetError

WIDTH, HEIGHT = 64, 48


def _write_image(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((HEIGHT, WIDTH, 3), value, np.uint8))


def _write_video(path: Path, num_frames: int = 30, fps: float = 10.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (WIDTH, HEIGHT))
    for index in range(num_frames):
        writer.write(np.full((HEIGHT, WIDTH, 3), index * 8, np.uint8))
    writer.release()
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def _rows(annotations: ActionAnnotations) -> list[tuple]:
    """(video, frame, box rounded to 0.01, class name, track) for every row, sorted."""
    return sorted(
        (
            annotations.video_names[v],
            int(f),
            tuple(round(float(x), 2) for x in box),
            annotations.classes[label],
            int(t),
        )
        for v, f, box, label, t in zip(
            annotations.video_ids, annotations.frames, annotations.boxes, annotations.labels, annotations.tracks
        )
    )


def _line_of(text: str, snippet: str) -> int:
    """1-based line of the first line of ``text`` containing ``snippet``."""
    return next(i for i, line in enumerate(text.splitlines(), start=1) if snippet in line)


# ---------------------------------------------------------------------------------- YOWO
@pytest.fixture
def yowo_src(tmp_path: Path) -> Path:
    """Two classes; Fencing has two persons whose label lines swap order on frame 3."""
    src = tmp_path / "ucf"
    for folder, frames in (("Basketball/v_b1", 4), ("Fencing/v_f1", 5)):
        for number in range(1, frames + 1):
            _write_image(src / "rgb-images" / folder / f"{number:05d}.jpg", 20 * number)
    _write(src / "labels/Basketball/v_b1/00002.txt", "1 10 5 30 40\n")
    _write(src / "labels/Basketball/v_b1/00003.txt", "1 11 5 31 40\n")
    _write(src / "labels/Fencing/v_f1/00001.txt", "2 0 0 20 40\n2 40 0 60 40\n")
    _write(src / "labels/Fencing/v_f1/00002.txt", "2 2 0 22 40\n2 41 0 61 40\n")
    _write(src / "labels/Fencing/v_f1/00003.txt", "2 42 0 62 40\n2 3 0 23 40\n")
    _write(src / "labels/Fencing/v_f1/00004.txt", "2 43 0 63 40\n")
    _write(src / "trainlist.txt", "labels/Basketball/v_b1/00002.txt\nlabels/Basketball/v_b1/00003.txt\n")
    _write(src / "testlist.txt", "labels/Fencing/v_f1/00001.txt\n")
    return src


def test_yowo_import_gives_expected_rows_tracks_and_splits(yowo_src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out"
    annotations = import_yowo(yowo_src, dst)
    assert annotations.classes == ["Basketball", "Fencing"]
    assert sorted(annotations.video_names) == ["Basketball__v_b1", "Fencing__v_f1"]
    assert _rows(annotations) == [
        ("Basketball__v_b1", 1, (10.0, 5.0, 30.0, 40.0), "Basketball", 0),
        ("Basketball__v_b1", 2, (11.0, 5.0, 31.0, 40.0), "Basketball", 0),
        ("Fencing__v_f1", 0, (0.0, 0.0, 20.0, 40.0), "Fencing", 0),
        ("Fencing__v_f1", 0, (40.0, 0.0, 60.0, 40.0), "Fencing", 1),
        ("Fencing__v_f1", 1, (2.0, 0.0, 22.0, 40.0), "Fencing", 0),
        ("Fencing__v_f1", 1, (41.0, 0.0, 61.0, 40.0), "Fencing", 1),
        # line order swaps on frame 3 (index 2) and the left person leaves on frame 4:
        # IoU linking keeps each person on its own track.
        ("Fencing__v_f1", 2, (3.0, 0.0, 23.0, 40.0), "Fencing", 0),
        ("Fencing__v_f1", 2, (42.0, 0.0, 62.0, 40.0), "Fencing", 1),
        ("Fencing__v_f1", 3, (43.0, 0.0, 63.0, 40.0), "Fencing", 1),
    ]
    assert json.loads((dst / "splits.json").read_text()) == {"train": ["Basketball__v_b1"], "val": ["Fencing__v_f1"]}
    assert (dst / "classes.txt").read_text() == "Basketball\nFencing\n"
    first = dst / "videos/Fencing__v_f1/000000.jpg"
    assert first.is_symlink() and first.resolve() == (yowo_src / "rgb-images/Fencing/v_f1/00001.jpg").resolve()
    assert sorted(p.name for p in (dst / "videos/Fencing__v_f1").iterdir()) == [f"{i:06d}.jpg" for i in range(5)]
    reloaded = ActionAnnotations.load(dst)
    assert _rows(reloaded) == _rows(annotations)
    assert reloaded.videos["Fencing__v_f1"].num_frames == 5
    assert (reloaded.videos["Basketball__v_b1"].width, reloaded.videos["Basketball__v_b1"].height) == (WIDTH, HEIGHT)


def test_yowo_copies_frames_when_not_linking(yowo_src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out"
    import_yowo(yowo_src, dst, link=False)
    copy = dst / "videos/Basketball__v_b1/000003.jpg"
    assert not copy.is_symlink()
    assert copy.read_bytes() == (yowo_src / "rgb-images/Basketball/v_b1/00004.jpg").read_bytes()


def test_yowo_class_names_from_class_index(yowo_src: Path, tmp_path: Path) -> None:
    _write(yowo_src / "classInd.txt", "1 Fencing\n2 Basketball\n")
    swapped = {"1": "2", "2": "1"}
    for path in (yowo_src / "labels").rglob("*.txt"):
        lines = [line.split(maxsplit=1) for line in path.read_text().splitlines()]
        path.write_text("".join(f"{swapped[cls]} {rest}\n" for cls, rest in lines))
    annotations = import_yowo(yowo_src, tmp_path / "out")
    assert annotations.classes == ["Fencing", "Basketball"]
    assert {(name.split("__")[0], cls) for name, _, _, cls, _ in _rows(annotations)} == {
        ("Basketball", "Basketball"),
        ("Fencing", "Fencing"),
    }


def test_yowo_classes_txt_wins_and_a_class_folder_mismatch_is_logged(
    yowo_src: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(yowo_src / "classes.txt", "Fencing\nBasketball\n")
    with caplog.at_level(logging.WARNING, logger="restaurant_action.data.importers"):
        annotations = import_yowo(yowo_src, tmp_path / "out")
    assert annotations.classes == ["Fencing", "Basketball"]
    assert "9 box(es) have a class other than their folder's" in caplog.text
    assert "00002.txt, line 1" in caplog.text


def test_yowo_box_crossing_the_border_is_clipped_and_logged(
    yowo_src: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(yowo_src / "labels/Basketball/v_b1/00004.txt", "1 50 -10 80 40\n")
    with caplog.at_level(logging.WARNING, logger="restaurant_action.data.importers"):
        annotations = import_yowo(yowo_src, tmp_path / "out")
    boxes, _, _ = annotations.targets("Basketball__v_b1", 3)
    np.testing.assert_allclose(boxes, [[50, 0, WIDTH, 40]])
    assert "1 box(es) crossing the frame border" in caplog.text


@pytest.mark.parametrize(
    ("relative", "content", "line", "message"),
    [
        ("labels/Fencing/v_f1/00002.txt", "2 2 0 22 40\n2 41 0 61\n", 2, "expected 5 fields"),
        ("labels/Fencing/v_f1/00002.txt", "3 2 0 22 40\n", 1, "class id 3 is not an integer in 1..2"),
        ("labels/Fencing/v_f1/00002.txt", "0 2 0 22 40\n", 1, "class id 0"),
        ("labels/Fencing/v_f1/00002.txt", "2 2 0 22 40\n\n2 41 zero 61 40\n", 3, "y1 'zero' is not a number"),
        ("labels/Fencing/v_f1/00002.txt", "2 22 0 2 40\n", 1, "has no area"),
        ("labels/Fencing/v_f1/00002.txt", "2 70 0 90 40\n", 1, "lies outside the 64x48 frame"),
        ("labels/Fencing/v_f1/00009.txt", "2 2 0 22 40\n", None, "00009.jpg not found"),
        ("labels/Fencing/v_other/00001.txt", "2 2 0 22 40\n", None, "no frame folder rgb-images/Fencing/v_other/"),
        ("testlist.txt", "labels/Fencing/v_f1/00001.txt\nlabels/Fencing/v_gone/00001.txt\n", 2, "unknown video Fencing/v_gone"),
        ("testlist.txt", "labels/Basketball/v_b1/00001.txt\n", 1, "also listed in"),
        ("classInd.txt", "1 Basketball\n1 Fencing\n", 2, "class id 1 repeats"),
        ("classInd.txt", "1 Basketball\nFencing\n", 2, "expected '<id> <name>'"),
    ],
)
def test_yowo_bad_input_names_file_and_line(
    yowo_src: Path, tmp_path: Path, relative: str, content: str, line: int | None, message: str
) -> None:
    bad = _write(yowo_src / relative, content)
    with pytest.raises(DatasetError, match=message) as error:
        import_yowo(yowo_src, tmp_path / "out")
    assert Path(error.value.path) == bad
    assert error.value.line == line


def test_yowo_frame_gap_is_an_error(yowo_src: Path, tmp_path: Path) -> None:
    (yowo_src / "rgb-images/Fencing/v_f1/00003.jpg").unlink()
    with pytest.raises(DatasetError, match="frame number 3 is missing") as error:
        import_yowo(yowo_src, tmp_path / "out")
    assert Path(error.value.path) == yowo_src / "rgb-images/Fencing/v_f1"


def test_import_refuses_a_non_empty_destination(yowo_src: Path, tmp_path: Path) -> None:
    _write(tmp_path / "out/keep.txt", "mine\n")
    with pytest.raises(DatasetError, match="not an empty folder"):
        import_yowo(yowo_src, tmp_path / "out")
    assert (tmp_path / "out/keep.txt").read_text() == "mine\n"


# ---------------------------------------------------------------------------------- AVA
LABEL_MAP = """
label {
  name: "bend/bow (at the waist)"
  label_id: 1
  label_type: PERSON_MOVEMENT
}
label { name: "carry/hold (an object)" label_id: 17 label_type: OBJECT_MANIPULATION }
label {
  name: "talk to (e.g., self, a person, a group)"
  label_id: 79
  label_type: PERSON_INTERACTION
}
"""

# 30 frames at 10 fps cut at AVA's 15:00 start: timestamps 900..902 s are frames 0, 10, 20.
AVA_CSV = """
clip_a,0900,0.125,0.25,0.5,0.75,1,0
clip_a,0901,0.125,0.25,0.5,0.75,17,0
clip_a,0901,0.125,0.25,0.5,0.75,79,0
clip_a,0902,0.5,0,1,1,79,2
clip_b,0902,0,0,0.25,0.5,17,1
"""


@pytest.fixture
def ava_src(tmp_path: Path) -> Path:
    src = tmp_path / "ava"
    _write_video(src / "videos/clip_a.mp4")
    _write_video(src / "videos/clip_b.mkv")
    _write(src / "ava_train_v2.2.csv", AVA_CSV)
    _write(src / "ava_action_list_v2.2.pbtxt", LABEL_MAP)
    return src


def test_ava_import_maps_timestamps_boxes_classes_and_tracks(ava_src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out"
    annotations = import_ava(
        ava_src / "ava_train_v2.2.csv",
        ava_src / "videos",
        dst,
        classes=ava_src / "ava_action_list_v2.2.pbtxt",
        time_offset=900,
    )
    bend, carry, talk = "bend/bow (at the waist)", "carry/hold (an object)", "talk to (e.g., self, a person, a group)"
    assert annotations.classes == [bend, carry, talk]
    assert _rows(annotations) == [
        ("clip_a", 0, (8.0, 12.0, 32.0, 36.0), bend, 1),
        ("clip_a", 10, (8.0, 12.0, 32.0, 36.0), carry, 17),
        ("clip_a", 10, (8.0, 12.0, 32.0, 36.0), talk, 79),
        ("clip_a", 20, (32.0, 0.0, 64.0, 48.0), talk, 2079),
        ("clip_b", 20, (0.0, 0.0, 16.0, 24.0), carry, 1017),
    ]
    assert annotations.annotated_ranges == {"clip_a": [(0, 0), (10, 10), (20, 20)], "clip_b": [(20, 20)]}
    assert (dst / "videos/clip_a.mp4").is_symlink() and (dst / "videos/clip_b.mkv").is_symlink()
    assert _rows(ActionAnnotations.load(dst)) == _rows(annotations)


def test_ava_without_label_map_and_with_fps_override(ava_src: Path, tmp_path: Path) -> None:
    _write(ava_src / "short.csv", "clip_a,0,0.125,0.25,0.5,0.75,79,3\nclip_a,2,0.125,0.25,0.5,0.75,17,3\n")
    annotations = import_ava(ava_src / "short.csv", ava_src / "videos", tmp_path / "out", fps=5.0, link=False)
    assert annotations.classes == ["action_17", "action_79"]
    assert [(f, c, t) for _, f, _, c, t in _rows(annotations)] == [(0, "action_79", 3079), (10, "action_17", 3017)]
    assert not (tmp_path / "out/videos/clip_a.mp4").is_symlink()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("clip_a,0901,0.1,0.2,0.5,0.7,1", "expected 8 fields"),
        ("clip_a,0901,0.1,0.2,half,0.7,1,0", "x2 'half' is not a number"),
        ("clip_a,0901,0.1,0.2,1.5,0.7,1,0", "not normalised"),
        ("clip_a,0901,0.5,0.2,0.1,0.7,1,0", "has no area"),
        ("clip_a,0901,0.1,0.2,0.5,0.7,one,0", "action_id 'one' is not an integer"),
        ("clip_a,0901,0.1,0.2,0.5,0.7,2,0", "action_id 2 is not in the label map"),
        ("clip_a,0903,0.1,0.2,0.5,0.7,1,0", "timestamp 903 s is frame 30, outside video 'clip_a'"),
        ("clip_zz,0901,0.1,0.2,0.5,0.7,1,0", "video 'clip_zz' not found"),
        ("clip_a,0900,0.2,0.2,0.5,0.7,1,0", "person 0 with action 1 repeats line 1"),
    ],
)
def test_ava_bad_row_names_file_and_line(ava_src: Path, tmp_path: Path, row: str, message: str) -> None:
    csv_path = _write(ava_src / "bad.csv", AVA_CSV + row + "\n")
    with pytest.raises(DatasetError, match=message) as error:
        label_map = ava_src / "ava_action_list_v2.2.pbtxt"
        import_ava(csv_path, ava_src / "videos", tmp_path / "out", classes=label_map, time_offset=900)
    assert Path(error.value.path) == csv_path
    assert error.value.line == 6


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('label {\n  name: "a"\n  label_id: 1\n}\nlabel {\n  name: "b"\n}\n', 5, "without label_id"),
        ('label { name: "a" label_id: 1 }\nlabel { name: "a" label_id: 2 }\n', 2, "repeats line 1"),
        ('label { name: "a" label_id: 1 }\nlabel { name: "b"\n', 2, "unexpected text"),
    ],
)
def test_ava_bad_label_map_names_file_and_line(ava_src: Path, tmp_path: Path, text: str, line: int, message: str) -> None:
    label_map = _write(ava_src / "bad.pbtxt", text)
    with pytest.raises(DatasetError, match=message) as error:
        import_ava(ava_src / "ava_train_v2.2.csv", ava_src / "videos", tmp_path / "out", classes=label_map, time_offset=900)
    assert Path(error.value.path) == label_map
    assert error.value.line == line


# ---------------------------------------------------------------------------------- CVAT
CVAT_XML = """
<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>7</id>
      <labels>
        <label>
          <name>Pick up sauce</name>
          <attributes>
            <attribute><name>hand</name></attribute>
          </attributes>
        </label>
        <label>
          <name>Pick up from bin with tong/scooper</name>
        </label>
        <label>
          <name>Put lid on bowl</name>
        </label>
      </labels>
    </task>
  </meta>
  <track id="0" label="Pick up sauce" source="manual">
    <box frame="2" xtl="4.00" ytl="5.00" xbr="20.00" ybr="30.00" outside="0" occluded="0" keyframe="1"/>
    <box frame="3" xtl="5.00" ytl="5.00" xbr="21.00" ybr="30.00" outside="0" occluded="1" keyframe="0"/>
    <box frame="4" xtl="6.00" ytl="5.00" xbr="22.00" ybr="30.00" outside="1" occluded="0" keyframe="1"/>
  </track>
  <track id="5" label="Pick up from bin with tong/scooper" source="manual">
    <box frame="10" xtl="30.50" ytl="10.00" xbr="60.00" ybr="47.00" outside="0" occluded="0" keyframe="1">
      <attribute name="hand">left</attribute>
    </box>
    <box frame="11" xtl="31.00" ytl="10.00" xbr="60.00" ybr="47.00" outside="1" occluded="0" keyframe="1"/>
  </track>
</annotations>
"""


@pytest.fixture
def cvat_src(tmp_path: Path) -> tuple[Path, Path]:
    return _write(tmp_path / "cvat/annotations.xml", CVAT_XML), _write_video(tmp_path / "cvat/camera1.mp4")


def test_cvat_import_skips_outside_boxes_and_renames_slashes(
    cvat_src: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    xml_path, video = cvat_src
    dst = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="restaurant_action.data.importers"):
        annotations = import_cvat_video(xml_path, video, dst)
    assert annotations.classes == ["Pick up sauce", "Pick up from bin with tong or scooper", "Put lid on bowl"]
    assert _rows(annotations) == [
        ("camera1", 2, (4.0, 5.0, 20.0, 30.0), "Pick up sauce", 0),
        ("camera1", 3, (5.0, 5.0, 21.0, 30.0), "Pick up sauce", 0),
        ("camera1", 10, (30.5, 10.0, 60.0, 47.0), "Pick up from bin with tong or scooper", 5),
    ]
    first_outside = _line_of(xml_path.read_text(), 'frame="4"')
    assert '2 CVAT box(es) marked outside="1"' in caplog.text
    assert f"{xml_path}, line {first_outside}" in caplog.text
    assert (dst / "videos/camera1.mp4").is_symlink()
    assert _rows(ActionAnnotations.load(dst)) == _rows(annotations)


@pytest.mark.parametrize(
    ("old", "new", "marker", "message"),
    [
        ('label="Pick up sauce"', 'label="Squirt sauce"', 'track id="0"', "label 'Squirt sauce', which is not in <meta><labels>"),
        ('frame="3" xtl="5.00"', 'frame="3" xtl="five"', 'frame="3"', "xtl 'five' is not a number"),
        ('frame="10"', 'frame="30"', 'frame="30"', r"frame 30 is outside .*camera1.mp4 \(30 frames\)"),
        ('frame="3" xtl="5.00"', 'xtl="5.00"', 'occluded="1"', "no 'frame' attribute"),
        ('frame="3"', 'frame="2"', 'occluded="1"', "second box on frame 2"),
        ('<box frame="3" xtl="5.00" ytl="5.00"', '<box frame="3" xtl="5.00" ytl="50.00"', 'occluded="1"', "has no area"),
        ('track id="5"', 'track id="0"', 'label="Pick up from bin', "track id 0 repeats line"),
        ('<version>1.1</version>', '<version>1.1</verison>', "<version>", "malformed XML"),
        ('<track id="5"', '<image id="5"', '<image id="5"', "CVAT for images"),
        ("Put lid on bowl</name>", "Pick up from bin with tong or scooper</name>", "tong or scooper</name>", "becomes"),
    ],
)
def test_cvat_bad_input_names_file_and_line(
    cvat_src: tuple[Path, Path], tmp_path: Path, old: str, new: str, marker: str, message: str
) -> None:
    xml_path, video = cvat_src
    assert old in CVAT_XML
    text = CVAT_XML.replace(old, new, 1)
    if "<image" in new:
        text = text.replace("</track>\n</annotations>", "</image>\n</annotations>")
    _write(xml_path, text)
    with pytest.raises(DatasetError, match=message) as error:
        import_cvat_video(xml_path, video, tmp_path / "out")
    assert Path(error.value.path) == xml_path
    assert error.value.line == _line_of(xml_path.read_text(), marker)


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE annotations [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
"""


@pytest.mark.parametrize("declaration", ["entities", "external"])
def test_cvat_xml_declaring_entities_is_refused_before_anything_expands(
    cvat_src: tuple[Path, Path], tmp_path: Path, declaration: str
) -> None:
    xml_path, video = cvat_src
    header = BILLION_LAUGHS if declaration == "entities" else (
        '<?xml version="1.0"?>\n<!DOCTYPE annotations [\n  <!ENTITY secret SYSTEM "file:///etc/passwd">\n]>\n'
    )
    body = CVAT_XML.split("?>", 1)[1].replace("<version>1.1</version>", "<version>&lol9;&secret;</version>")
    _write(xml_path, header + body)
    with pytest.raises(DatasetError, match="declares entities or external references, which are refused") as error:
        import_cvat_video(xml_path, video, tmp_path / "out")
    assert Path(error.value.path) == xml_path and error.value.line == 3


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.5, 0.9, 0.99])
def test_a_truncated_cvat_xml_names_the_file_and_line(cvat_src: tuple[Path, Path], tmp_path: Path, fraction: float) -> None:
    xml_path, video = cvat_src
    _write(xml_path, CVAT_XML[: int(len(CVAT_XML) * fraction)])
    with pytest.raises(DatasetError, match="malformed XML") as error:
        import_cvat_video(xml_path, video, tmp_path / "out")
    assert Path(error.value.path) == xml_path and error.value.line >= 1


def test_cvat_shapes_other_than_boxes_are_skipped_and_logged(
    cvat_src: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    xml_path, video = cvat_src
    polygon = '  <track id="9" label="Put lid on bowl">\n    <polygon frame="1" points="1,1;9,1;9,9" outside="0"/>\n  </track>\n'
    text = _write(xml_path, CVAT_XML.replace("</annotations>", polygon + "</annotations>")).read_text()
    with caplog.at_level(logging.WARNING, logger="restaurant_action.data.importers"):
        annotations = import_cvat_video(xml_path, video, tmp_path / "out")
    assert len(annotations) == 3
    assert "1 CVAT element(s) other than <track><box>" in caplog.text
    assert f"line {_line_of(text, '<polygon')}" in caplog.text


# ---------------------------------------------------------------------------------- dispatch
def test_run_import_dispatches_by_format_name(cvat_src: tuple[Path, Path], tmp_path: Path) -> None:
    xml_path, video = cvat_src
    assert set(IMPORTERS) == {"yowo", "ava", "cvat"}
    annotations = run_import("cvat", xml_path, tmp_path / "out", video_path=video, link=False)
    assert len(annotations) == 3 and not (tmp_path / "out/videos/camera1.mp4").is_symlink()


@pytest.mark.parametrize(
    ("format", "options", "message"),
    [
        ("kinetics", {}, "unknown import format 'kinetics'; known formats: ava, cvat, yowo"),
        ("ava", {}, "format 'ava' needs option\\(s\\): videos_dir"),
        ("cvat", {"video_path": "x.mp4", "fps": 5}, "format 'cvat' has no option fps; its options: video_path, link"),
    ],
)
def test_run_import_rejects_unknown_formats_and_options(tmp_path: Path, format: str, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_import(format, tmp_path / "src", tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()

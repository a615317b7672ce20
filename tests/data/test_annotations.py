"""Tests of restaurant_action/data/annotations.py: loading, validation, indexing, counting, saving."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from restaurant_action.data.annotations import ActionAnnotations, ActionInstance, VideoInfo, read_classes
from restaurant_action.errors import DatasetError

WIDTH, HEIGHT = 64, 48  # the videos of ``make_dataset``: a (30 frames) and b (20 frames)

GOOD_ROWS = [
    "a,0,10.123,10,20,20.456,cut,1",  # line 2
    "a,1,11,10,21,20,cut,1",  # line 3
    "a,1,30,5,40,25,wipe,2",  # line 4
    "a,5,12,10,22,20,cut,1",  # line 5
    "b,3,0,0,64,48,pour,7",  # line 6
]


def _rows(annotations: ActionAnnotations) -> list[tuple]:
    """Every row as (video, frame, box, class name, track), in the annotations' order."""
    return [
        (annotations.video_names[v], int(f), tuple(np.round(b.astype(np.float64), 2).tolist()), annotations.classes[c], int(t))
        for v, f, b, c, t in zip(annotations.video_ids, annotations.frames, annotations.boxes, annotations.labels, annotations.tracks)
    ]


def _in_memory(rows: list[tuple[str, int, int, int]], classes=("c0", "c1", "c2", "c3", "c4"), lengths=None) -> ActionAnnotations:
    """Annotations built without files from rows (video, frame, class id, track); every box is (1, 1, 5, 5)."""
    lengths = lengths or {"a": 100, "b": 100}
    videos = {name: VideoInfo(name, Path(f"{name}.mp4"), n, 25.0, WIDTH, HEIGHT) for name, n in lengths.items()}
    names = list(videos)
    return ActionAnnotations(
        classes,
        videos,
        [names.index(r[0]) for r in rows],
        [r[1] for r in rows],
        [(1, 1, 5, 5)] * len(rows),
        [r[2] for r in rows],
        [r[3] for r in rows],
    )


def _assert_error(error: DatasetError, file_name: str, line: int | None, *fragments: str) -> None:
    """The error names the file, the line and the problem."""
    message = str(error)
    assert Path(error.path).name == file_name, message
    assert file_name in message
    assert error.line == line, message
    if line is not None:
        assert f"line {line}" in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


# ---------------------------------------------------------------------------------- loading, saving


def test_load_reads_every_row_and_the_videos(make_dataset):
    annotations = ActionAnnotations.load(make_dataset(GOOD_ROWS))

    assert annotations.classes == ["cut", "wipe", "pour"]
    assert annotations.num_classes == 3
    assert len(annotations) == 5
    assert annotations.report.ok and annotations.report.rows_read == 5 and annotations.report.rows_kept == 5
    info = annotations.videos["a"]
    assert (info.num_frames, info.width, info.height, info.fps) == (30, WIDTH, HEIGHT, 25.0)
    assert annotations.videos["b"].num_frames == 20
    assert sorted(_rows(annotations)) == sorted(
        [
            ("a", 0, (10.12, 10.0, 20.0, 20.46), "cut", 1),
            ("a", 1, (11.0, 10.0, 21.0, 20.0), "cut", 1),
            ("a", 1, (30.0, 5.0, 40.0, 25.0), "wipe", 2),
            ("a", 5, (12.0, 10.0, 22.0, 20.0), "cut", 1),
            ("b", 3, (0.0, 0.0, 64.0, 48.0), "pour", 7),
        ]
    )


def test_save_then_load_round_trips(make_dataset, tmp_path):
    ranges = ["a,0,29", "b,0,9", "b,15,19"]
    original = ActionAnnotations.load(make_dataset(GOOD_ROWS, ranges=ranges))
    copy = tmp_path / "copy"
    original.save(copy)
    shutil.copytree(original.root / "videos", copy / "videos")

    loaded = ActionAnnotations.load(copy)

    assert loaded.classes == original.classes
    assert loaded.video_names == original.video_names
    assert loaded.annotated_ranges == original.annotated_ranges == {"a": [(0, 29)], "b": [(0, 9), (15, 19)]}
    np.testing.assert_array_equal(loaded.video_ids, original.video_ids)
    np.testing.assert_array_equal(loaded.frames, original.frames)
    np.testing.assert_array_equal(loaded.labels, original.labels)
    np.testing.assert_array_equal(loaded.tracks, original.tracks)
    np.testing.assert_allclose(loaded.boxes, original.boxes, atol=0.01)
    assert loaded.boxes[0, 0] == pytest.approx(10.123, abs=0.01)


def test_a_class_name_with_a_comma_round_trips(make_dataset, tmp_path):
    root = make_dataset(['a,0,1,1,5,5,"pick, place",1', "a,1,1,1,5,5,wipe,2"], classes=("pick, place", "wipe"))
    original = ActionAnnotations.load(root)
    original.save(tmp_path / "copy")
    shutil.copytree(root / "videos", tmp_path / "copy" / "videos")

    loaded = ActionAnnotations.load(tmp_path / "copy")

    assert loaded.classes == ["pick, place", "wipe"]
    assert _rows(loaded) == _rows(original) and _rows(loaded)[0][3] == "pick, place"


def test_windows_line_endings_load(make_dataset):
    root = make_dataset(GOOD_ROWS)
    for name in ("classes.txt", "annotations.csv"):
        path = root / name
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    annotations = ActionAnnotations.load(root)
    assert annotations.classes == ["cut", "wipe", "pour"] and len(annotations) == 5


@pytest.mark.parametrize("classes_text", ["\ufeffcut\nwipe\npour\n", "cut \nwipe\npour\n", "cut\r\n wipe\npour\t\n"])
def test_class_names_load_despite_a_byte_order_mark_or_stray_spaces(make_dataset, classes_text):
    root = make_dataset(GOOD_ROWS)
    (root / "classes.txt").write_text(classes_text, encoding="utf-8")
    assert ActionAnnotations.load(root).classes == ["cut", "wipe", "pour"]


def test_read_classes_keeps_line_order_and_ignores_trailing_blank_lines(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("zeta\nalpha\nmid dle\n\n\n", encoding="utf-8")
    assert read_classes(path) == ["zeta", "alpha", "mid dle"]


# ---------------------------------------------------------------------------------- access


def test_targets_index_by_video_and_frame(make_dataset):
    annotations = ActionAnnotations.load(make_dataset(GOOD_ROWS))

    boxes, labels, tracks = annotations.targets("a", 1)
    assert boxes.dtype == np.float32 and boxes.shape == (2, 4)
    assert labels.tolist() == [0, 1] and tracks.tolist() == [1, 2]
    np.testing.assert_allclose(boxes, [[11, 10, 21, 20], [30, 5, 40, 25]])

    boxes, labels, tracks = annotations.targets("b", 3)
    np.testing.assert_allclose(boxes, [[0, 0, 64, 48]])
    assert labels.tolist() == [2] and tracks.tolist() == [7]

    for video, frame in (("a", 2), ("a", 29), ("b", 0)):
        boxes, labels, tracks = annotations.targets(video, frame)
        assert boxes.shape == (0, 4) and labels.shape == (0,) and tracks.shape == (0,)


def test_labelled_frames_are_sorted_and_unique(make_dataset):
    annotations = ActionAnnotations.load(make_dataset(list(reversed(GOOD_ROWS))))
    assert annotations.labelled_frames("a").tolist() == [0, 1, 5]
    assert annotations.labelled_frames("b").tolist() == [3]


@pytest.mark.parametrize(("max_gap", "expected"), [(15, [(0, 24)]), (14, [(0, 4), (20, 24)])])
def test_action_instances_bridge_gaps_of_at_most_max_gap_frames(max_gap, expected):
    # frames 0-4 and 20-24: a gap of exactly 15 unlabelled frames (5..19)
    annotations = _in_memory([("a", f, 0, 1) for f in [*range(5), *range(20, 25)]])
    found = [(i.start, i.end) for i in annotations.action_instances(max_gap=max_gap)]
    assert found == expected


def test_action_instances_split_per_video_track_and_action():
    rows = (
        [("a", f, 0, 1) for f in range(10, 21)]
        + [("a", f, 0, 1) for f in range(30, 41)]  # gap of 9: bridged
        + [("a", f, 1, 2) for f in range(10, 15)]  # another track over the same frames
        + [("a", f, 2, 2) for f in range(15, 18)]  # track 2 changes action: a new instance
        + [("b", f, 0, 1) for f in range(0, 3)]  # same track id in another video
    )
    annotations = _in_memory(rows)

    instances = sorted(annotations.action_instances(), key=lambda i: (i.video, i.track, i.start))

    assert instances == [
        ActionInstance("a", 1, 0, 10, 40),
        ActionInstance("a", 2, 1, 10, 14),
        ActionInstance("a", 2, 2, 15, 17),
        ActionInstance("b", 1, 0, 0, 2),
    ]
    assert instances[0].num_frames == 31
    assert len(annotations.action_instances(max_gap=5)) == 5


def _counting_dataset() -> ActionAnnotations:
    """Class 0: 15 boxes, 13 frames, 3 tracks, 4 clips; class 1: 2/2/1/1; class 2: 2/2/1/1."""
    rows = (
        [("a", f, 0, 1) for f in [*range(5), *range(25, 30)]]  # track 1: two clips (gap 20)
        + [("a", 2, 1, 2), ("a", 3, 1, 2), ("a", 4, 2, 2), ("a", 5, 2, 2)]  # track 2: wipe then pour
        + [("a", 2, 0, 4), ("a", 3, 0, 4)]  # track 4: cut on frames that track 1 already covers
        + [("b", f, 0, 3) for f in range(3)]
    )
    return _in_memory(rows, classes=("cut", "wipe", "pour"), lengths={"a": 30, "b": 20})


@pytest.mark.parametrize(
    ("unit", "expected"), [("boxes", [15, 2, 2]), ("frames", [13, 2, 2]), ("tracks", [3, 1, 1]), ("clips", [4, 1, 1])]
)
def test_class_counts_per_unit(unit, expected):
    counts = _counting_dataset().class_counts(unit)
    assert counts.dtype == np.int64
    assert counts.tolist() == expected


def test_class_counts_rejects_an_unknown_unit():
    with pytest.raises(ValueError, match="unit"):
        _counting_dataset().class_counts("videos")


def test_top_k_classes_orders_by_clips_breaks_ties_by_id_and_skips_empty_classes():
    clips = {0: 2, 1: 3, 2: 2, 3: 0, 4: 3}
    rows = [("a", 30 * k, c, 100 * c + k) for c, n in clips.items() for k in range(n)]
    annotations = _in_memory(rows)
    assert annotations.class_counts("clips").tolist() == [2, 3, 2, 0, 3]

    assert annotations.top_k_classes(2) == [1, 4]
    assert annotations.top_k_classes(3) == [1, 4, 0]
    assert annotations.top_k_classes(5) == [1, 4, 0, 2]
    assert annotations.top_k_classes(50) == [1, 4, 0, 2]


def test_labelled_fraction_counts_frames_of_every_video(make_dataset):
    # labelled frames: a 0, 1, 5 and b 3 out of 30 + 20 frames
    assert ActionAnnotations.load(make_dataset(GOOD_ROWS)).labelled_fraction() == pytest.approx(4 / 50)
    # video b has no rows but is in videos/: its frames count as unlabelled
    assert ActionAnnotations.load(make_dataset(GOOD_ROWS[:4])).labelled_fraction() == pytest.approx(3 / 50)
    assert ActionAnnotations.load(make_dataset(GOOD_ROWS[:4], videos=("a",))).labelled_fraction() == pytest.approx(3 / 30)


def test_an_unreferenced_video_in_the_folder_is_part_of_the_dataset(make_dataset):
    annotations = ActionAnnotations.load(make_dataset(GOOD_ROWS[:4]))
    assert set(annotations.video_names) == {"a", "b"}
    assert annotations.labelled_frames("b").size == 0


def test_subset_keeps_only_the_named_videos(make_dataset):
    annotations = ActionAnnotations.load(make_dataset(GOOD_ROWS, ranges=["a,0,29", "b,0,19"]))

    only_b = annotations.subset(["b"])

    assert only_b.video_names == ["b"] and list(only_b.videos) == ["b"]
    assert len(only_b) == 1 and only_b.video_ids.tolist() == [0]
    assert only_b.classes == annotations.classes
    assert only_b.annotated_ranges == {"b": [(0, 19)]}
    boxes, labels, tracks = only_b.targets("b", 3)
    np.testing.assert_allclose(boxes, [[0, 0, 64, 48]])
    assert labels.tolist() == [2] and tracks.tolist() == [7]

    only_a = annotations.subset(["a", "not-a-video"])
    assert only_a.video_names == ["a"] and len(only_a) == 4
    assert only_a.labelled_frames("a").tolist() == [0, 1, 5]
    assert sorted(_rows(only_a)) == sorted(r for r in _rows(annotations) if r[0] == "a")


def test_validate_in_memory_names_the_problem():
    annotations = _in_memory([("a", 0, 7, 1)])
    with pytest.raises(DatasetError, match="class id 7 is not in classes.txt"):
        annotations.validate()
    report = _in_memory([("a", 0, 7, 1), ("a", 200, 0, 2), ("a", 1, 0, 3)]).validate(strict=False)
    assert len(report.problems) == 2 and report.rows_kept == 1


# ---------------------------------------------------------------------------------- bad input

BAD_ROWS = [
    pytest.param(["a,1,10,10,20,20,cut"], 3, ("expected 8 fields", "found 7"), id="too-few-fields"),
    pytest.param(["a,1,10,10,20,20,cut,1,9"], 3, ("expected 8 fields", "found 9"), id="too-many-fields"),
    pytest.param(["a,1,ten,10,20,20,cut,1"], 3, ("x1", "'ten'", "not a number"), id="non-numeric-x1"),
    pytest.param(["a,1,10,10,20,2O,cut,1"], 3, ("y2", "not a number"), id="non-numeric-y2"),
    pytest.param(["a,1,10,nan,20,20,cut,1"], 3, ("y1", "finite"), id="nan-coordinate"),
    pytest.param(["a,one,10,10,20,20,cut,1"], 3, ("frame", "not an integer"), id="non-integer-frame"),
    pytest.param(["a,1,10,10,20,20,cut,x"], 3, ("track", "not an integer"), id="non-integer-track"),
    pytest.param(["a,-1,10,10,20,20,cut,1"], 3, ("frame -1", "negative"), id="negative-frame"),
    pytest.param(["a,1,10,10,20,20,dance,1"], 3, ("unknown action 'dance'",), id="unknown-action"),
    pytest.param(["a,1,10,10,66.5,20,cut,1"], 3, ("outside", "64x48", "2 px"), id="box-right-of-frame"),
    pytest.param(["a,1,-3,10,20,20,cut,1"], 3, ("outside", "64x48"), id="box-left-of-frame"),
    pytest.param(["a,1,10,10,20,50.1,cut,1"], 3, ("outside",), id="box-below-frame"),
    pytest.param(["a,1,20,10,20,20,cut,1"], 3, ("no area", "x2 > x1"), id="zero-width"),
    pytest.param(["a,1,30,10,20,20,cut,1"], 3, ("no area",), id="negative-width"),
    pytest.param(["a,1,10,20,20,10,cut,1"], 3, ("no area",), id="negative-height"),
    pytest.param(["a,30,10,10,20,20,cut,1"], 3, ("frame 30", "outside video 'a'", "30 frames"), id="frame-past-end"),
    pytest.param(["b,20,10,10,20,20,cut,1"], 3, ("frame 20", "outside video 'b'", "20 frames"), id="frame-past-end-b"),
    pytest.param(["zz,1,10,10,20,20,cut,1"], 3, ("video 'zz'", "not found"), id="missing-video"),
    pytest.param(["a,1,10,10,20,20,cut,1", "a,0,12,10,22,20,cut,1"], 4, ("duplicate box", "frame 0", "track 1"), id="duplicate"),
    pytest.param(["", "a,1,ten,10,20,20,cut,1"], 4, ("not a number",), id="blank-line-counts"),
    pytest.param(
        ["a,2,10,10,20,20,cut,1", "a,3,10,10,20,20,cut,1", "a,1,11,10,20,20,cut,5", "a,1,10,10,99,20,cut,6"],
        6,
        ("outside",),
        id="late-line",
    ),
]


@pytest.mark.parametrize(("bad_rows", "line", "fragments"), BAD_ROWS)
def test_a_bad_row_names_annotations_csv_its_line_and_the_problem(make_dataset, bad_rows, line, fragments):
    root = make_dataset(["a,0,10,10,20,20,cut,1", *bad_rows])  # the good row is line 2

    with pytest.raises(DatasetError) as caught:
        ActionAnnotations.load(root)

    _assert_error(caught.value, "annotations.csv", line, *fragments)


def test_a_missing_video_is_a_video_error_on_its_first_line(make_dataset):
    with pytest.raises(DatasetError) as caught:
        ActionAnnotations.load(make_dataset(["a,0,10,10,20,20,cut,1", "zz,1,10,10,20,20,cut,1", "zz,2,10,10,20,20,cut,1"]))
    _assert_error(caught.value, "annotations.csv", 3, "zz")


@pytest.mark.parametrize(("x1", "y1", "x2", "y2"), [(-2, -1.5, 66, 50), (-0.5, 0, 64.5, 49), (-2, -2, 66, 50)])
def test_a_box_crossing_the_border_by_at_most_2_px_is_clipped(make_dataset, x1, y1, x2, y2):
    annotations = ActionAnnotations.load(make_dataset([f"a,0,{x1},{y1},{x2},{y2},cut,1"]))
    assert annotations.report.ok
    np.testing.assert_allclose(annotations.boxes, [[max(x1, 0), max(y1, 0), min(x2, WIDTH), min(y2, HEIGHT)]])


def test_strict_error_counts_the_other_problems(make_dataset):
    root = make_dataset(["a,0,10,10,20,20,cut,1", "a,1,ten,10,20,20,cut,1", "a,2,10,10,20,20,dance,1", "a,99,10,10,20,20,cut,1"])
    with pytest.raises(DatasetError) as caught:
        ActionAnnotations.load(root)
    _assert_error(caught.value, "annotations.csv", 3, "not a number", "2 more problem")


def test_non_strict_load_reports_every_problem_and_keeps_the_good_rows(make_dataset):
    rows = [
        "a,0,10,10,20,20,cut,1",  # 2 good
        "a,1,10,10,20,20,cut",  # 3 field count
        "a,2,10,10,20,20,wipe,2",  # 4 good
        "zz,0,10,10,20,20,cut,1",  # 5 missing video
        "a,3,10,10,90,20,cut,1",  # 6 outside
        "a,2,11,11,21,21,cut,2",  # 7 duplicate of line 4
        "b,25,10,10,20,20,pour,3",  # 8 frame past the end
        "b,4,-1,0,30,49,pour,3",  # 9 good (clipped)
        "a,4,10,10,20,20,boil,1",  # 10 unknown action
    ]
    annotations = ActionAnnotations.load(make_dataset(rows), strict=False)

    report = annotations.report
    assert not report.ok
    assert len(report.problems) == 6
    assert sorted(p.line for p in report.problems) == [3, 5, 6, 7, 8, 10]
    assert all(Path(p.path).name == "annotations.csv" for p in report.problems)
    assert report.rows_read == 9 and report.rows_kept == 3
    assert "6 problem(s); 3 of 9 rows kept" in report.summary()
    assert sorted(_rows(annotations)) == [
        ("a", 0, (10.0, 10.0, 20.0, 20.0), "cut", 1),
        ("a", 2, (10.0, 10.0, 20.0, 20.0), "wipe", 2),
        ("b", 4, (0.0, 0.0, 30.0, 48.0), "pour", 3),
    ]
    assert annotations.targets("a", 3)[0].shape == (0, 4)


def test_non_strict_load_with_no_good_row_is_an_empty_dataset(make_dataset):
    with pytest.raises(DatasetError, match="no valid annotation rows"):
        ActionAnnotations.load(make_dataset(["a,1,ten,10,20,20,cut,1"]), strict=False)


def test_a_bad_header_is_an_error_on_line_1(make_dataset):
    with pytest.raises(DatasetError) as caught:
        ActionAnnotations.load(make_dataset(GOOD_ROWS, header="video,frame,x1,y1,x2,y2,label,track"))
    _assert_error(caught.value, "annotations.csv", 1, "header", "video,frame,x1,y1,x2,y2,action,track")


def test_a_header_only_file_is_an_empty_dataset(make_dataset):
    with pytest.raises(DatasetError) as caught:
        ActionAnnotations.load(make_dataset(["", "  "]))
    _assert_error(caught.value, "annotations.csv", None, "empty dataset")


def test_a_zero_byte_annotations_file_is_an_error(make_dataset):
    root = make_dataset([], header=None)
    (root / "annotations.csv").write_bytes(b"")
    with pytest.raises(DatasetError) as caught:
        ActionAnnotations.load(root)
    assert Path(caught.value.path).name == "annotations.csv"
    assert caught.value.line == 1


def test_a_missing_annotations_file_is_an_error(make_dataset):
    root = make_dataset(GOOD_ROWS)
    (root / "annotations.csv").unlink()
    with pytest.raises(DatasetError) as caught:
        ActionAnnotations.load(root)
    _assert_error(caught.value, "annotations.csv", None, "not found")


def test_a_missing_dataset_folder_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        ActionAnnotations.load(tmp_path / "nowhere")


def test_a_missing_class_list_is_an_error(make_dataset):
    with pytest.raises(DatasetError) as caught:
        ActionAnnotations.load(make_dataset(GOOD_ROWS, classes=None))
    _assert_error(caught.value, "classes.txt", None, "not found")


@pytest.mark.parametrize(
    ("classes", "line", "fragments"),
    [
        (("cut", "wipe", "cut"), 3, ("'cut'", "repeats line 1")),
        (("cut", "wipe", "pour", "wipe"), 4, ("'wipe'", "repeats line 2")),
        (("cut", "", "pour"), 2, ("blank",)),
    ],
)
def test_a_bad_class_list_names_classes_txt_and_the_line(make_dataset, classes, line, fragments):
    with pytest.raises(DatasetError) as caught:
        ActionAnnotations.load(make_dataset(GOOD_ROWS, classes=classes))
    _assert_error(caught.value, "classes.txt", line, *fragments)


def test_an_empty_class_list_is_an_error(make_dataset):
    with pytest.raises(DatasetError) as caught:
        ActionAnnotations.load(make_dataset(GOOD_ROWS, classes=()))
    _assert_error(caught.value, "classes.txt", None, "empty")


# ---------------------------------------------------------------------------------- annotated_ranges.csv


def test_annotated_ranges_are_read_per_video(make_dataset):
    annotations = ActionAnnotations.load(make_dataset(GOOD_ROWS, ranges=["a,0,9", "b,0,19", "", "a,20,29"]))
    assert annotations.annotated_ranges == {"a": [(0, 9), (20, 29)], "b": [(0, 19)]}


def test_without_annotated_ranges_the_attribute_is_none(make_dataset):
    assert ActionAnnotations.load(make_dataset(GOOD_ROWS)).annotated_ranges is None


def test_annotated_ranges_may_cover_a_video_without_rows(make_dataset):
    annotations = ActionAnnotations.load(make_dataset(GOOD_ROWS[:4], ranges=["a,0,29", "b,0,19"]))
    assert annotations.annotated_ranges == {"a": [(0, 29)], "b": [(0, 19)]}


@pytest.mark.parametrize(
    ("header", "ranges", "line", "fragments"),
    [
        ("video,first,last", ["a,0,29"], 1, ("header",)),
        ("video,start,end", ["a,0,29", "b,0"], 3, ("expected 3 fields",)),
        ("video,start,end", ["a,zero,29"], 2, ("integers",)),
        ("video,start,end", ["a,0,29", "b,0,19", "zz,0,5"], 4, ("unknown video 'zz'",)),
        ("video,start,end", ["a,0,30"], 2, ("0-30", "30 frames")),
        ("video,start,end", ["a,10,5"], 2, ("10-5",)),
        ("video,start,end", ["a,-1,5"], 2, ("-1-5",)),
    ],
)
def test_bad_annotated_ranges_name_the_file_and_line(make_dataset, header, ranges, line, fragments):
    root = make_dataset(GOOD_ROWS)
    (root / "annotated_ranges.csv").write_text(header + "\n" + "".join(f"{r}\n" for r in ranges), encoding="utf-8")
    with pytest.raises(DatasetError) as caught:
        ActionAnnotations.load(root)
    _assert_error(caught.value, "annotated_ranges.csv", line, *fragments)

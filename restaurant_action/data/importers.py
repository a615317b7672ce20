"""Importers: convert public action-localization datasets into the canonical layout.

Each importer reads a source dataset, checks every line of it, then writes ``classes.txt``,
``annotations.csv`` and ``videos/`` (plus ``splits.json`` or ``annotated_ranges.csv`` where
the source has them) into an empty destination folder and returns the dataset loaded back
with ``ActionAnnotations.load``. A malformed source line raises ``DatasetError`` naming the
file and line; whatever is skipped or changed (CVAT boxes marked outside, boxes clipped to
the frame) is counted and logged. The mapping rules are in ``docs/importers.md``.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, NamedTuple
from xml.etree.ElementTree import ParseError

import cv2
import numpy as np
import torch
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser
from torchvision.ops import box_iou

from restaurant_action.data.annotations import (
    BORDER_TOLERANCE_PX,
    DEFAULT_MAX_GAP,
    ActionAnnotations,
    VideoInfo,
    read_classes,
)
from restaurant_action.data.video import IMAGE_SUFFIXES, VideoSource, find_video, open_video
from restaurant_action.errors import DatasetError, VideoDecodeError

logger = logging.getLogger(__name__)

TRACK_IOU = 0.3
AVA_TRACK_STRIDE = 1000
YOWO_NAME_SEPARATOR = "__"
CVAT_SLASH_REPLACEMENT = " or "

Box = tuple[float, float, float, float]
_CLIPPED = f"box(es) crossing the frame border by more than {BORDER_TOLERANCE_PX:g} px were clipped to it"


@dataclass(frozen=True)
class _Row:
    """One imported box, with the source file and line it came from."""

    video: str
    frame: int
    box: Box
    label: int
    track: int
    path: Path
    line: int | None


class _Tally:
    """Counts source items skipped or changed during an import; logs the count and the first place."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.count = 0
        self.first: str | None = None

    def add(self, path: Path, line: int | None = None) -> None:
        self.count += 1
        if self.first is None:
            self.first = f"{path}, line {line}" if line is not None else str(path)

    def log(self) -> None:
        if self.count:
            logger.warning("%d %s (first at %s)", self.count, self.what, self.first)


# ---------------------------------------------------------------------------------- YOWO
@dataclass(frozen=True)
class _FrameFolderSource:
    """A YOWO video: its canonical name, class folder and 1-based frame images in order."""

    name: str
    class_folder: str
    frames: list[Path]
    width: int
    height: int


def import_yowo(src: str | Path, dst: str | Path, link: bool = True, track_iou: float = TRACK_IOU) -> ActionAnnotations:
    """Import a YOWO-layout dataset (UCF101-24, J-HMDB-21, or the study's own cut clips).

    Reads ``src/rgb-images/<class>/<video>/00001.jpg`` (1-based frame images, ``.jpg`` or
    ``.png``), ``src/labels/<class>/<video>/00001.txt`` (one ``class x1 y1 x2 y2`` line per
    box: 1-based class id, absolute pixels) and, if present, ``src/trainlist.txt`` /
    ``src/testlist.txt`` (which become the ``train`` / ``val`` lists of ``splits.json``).

    Class names come from ``src/classes.txt`` (line i is class id i), else ``src/classInd.txt``
    (``<id> <name>`` lines), else the sorted folder names under ``rgb-images``. Video
    ``<class>/<video>`` becomes ``<class>__<video>``; its image ``0000k`` becomes frame ``k-1``
    of the frame folder ``dst/videos/<class>__<video>/``. Boxes are linked into tracks by
    greedy IoU matching with the previous boxes of the same class (see ``_link_tracks``).

    Args:
        src: the YOWO dataset folder.
        dst: an empty or missing destination folder.
        link: symlink the frame images (absolute paths) instead of copying them.
        track_iou: least IoU, in ``(0, 1]``, for a box to continue a track.

    Returns:
        The imported dataset, loaded back from ``dst``.

    Raises:
        DatasetError: a malformed label line, class id out of range, label file without its
            frame image, unknown video in a split list, or a non-empty ``dst``.
    """
    if not 0.0 < track_iou <= 1.0:
        raise ValueError(f"track_iou must be in (0, 1], not {track_iou}")
    src = Path(src)
    dst = _prepare_destination(dst)
    sources = _yowo_videos(src / "rgb-images")
    classes = _yowo_classes(src, sorted({s.class_folder for s in sources.values()}))
    clipped = _Tally(_CLIPPED)
    mismatched = _Tally("box(es) have a class other than their folder's (check the class list order)")
    rows = _yowo_rows(src / "labels", sources, classes, clipped, mismatched)
    splits = _yowo_splits(src, sources)
    videos: dict[str, VideoInfo] = {}
    for name, source in sources.items():
        folder = dst / "videos" / name
        folder.mkdir(parents=True)
        for index, image in enumerate(source.frames):
            _place(image, folder / f"{index:06d}{image.suffix}", link)
        videos[name] = VideoInfo(name, folder, len(source.frames), 30.0, source.width, source.height)
    rows = _link_tracks(rows, track_iou, DEFAULT_MAX_GAP)
    for tally in (clipped, mismatched):
        tally.log()
    return _write_dataset(dst, classes, videos, rows, src / "labels", splits=splits)


def _yowo_videos(rgb_dir: Path) -> dict[str, _FrameFolderSource]:
    """Every ``rgb-images/<class>/<video>/`` folder, keyed by canonical name, frames checked 1..N."""
    if not rgb_dir.is_dir():
        raise DatasetError(rgb_dir, "frame folder not found (a YOWO dataset holds rgb-images/<class>/<video>/00001.jpg)")
    sources: dict[str, _FrameFolderSource] = {}
    for class_dir in sorted(p for p in rgb_dir.iterdir() if p.is_dir()):
        for video_dir in sorted(p for p in class_dir.iterdir() if p.is_dir()):
            frames = _numbered_frames(video_dir)
            image = cv2.imread(str(frames[0]), cv2.IMREAD_COLOR)
            if image is None:
                raise VideoDecodeError(frames[0], "cannot read the image", frame=0)
            name = f"{class_dir.name}{YOWO_NAME_SEPARATOR}{video_dir.name}"
            sources[name] = _FrameFolderSource(name, class_dir.name, frames, image.shape[1], image.shape[0])
    if not sources:
        raise DatasetError(rgb_dir, "no video folders found (expected rgb-images/<class>/<video>/)")
    return sources


def _numbered_frames(video_dir: Path) -> list[Path]:
    """The images of a YOWO frame folder in frame order; names must be the numbers 1..N."""
    numbered: dict[int, Path] = {}
    for image in video_dir.iterdir():
        if image.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if not image.stem.isdigit():
            raise DatasetError(image, "frame image names must be 1-based frame numbers such as 00001.jpg")
        numbered[int(image.stem)] = image
    if not numbered:
        raise DatasetError(video_dir, "the frame folder holds no .jpg/.png images")
    missing = sorted(set(range(1, len(numbered) + 1)) - set(numbered))
    if missing:
        raise DatasetError(video_dir, f"frame images must be numbered 1..N without gaps; frame number {missing[0]} is missing")
    return [numbered[number] for number in range(1, len(numbered) + 1)]


def _yowo_classes(src: Path, folder_names: list[str]) -> list[str]:
    """Class names by 0-based id: ``classes.txt``, else ``classInd.txt``, else sorted folder names."""
    if (src / "classes.txt").is_file():
        return [name.strip() for name in read_classes(src / "classes.txt")]
    path = src / "classInd.txt"
    if not path.is_file():
        return folder_names
    names: dict[int, str] = {}
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        fields = text.split(maxsplit=1)
        if len(fields) != 2 or not fields[0].isdigit():
            raise DatasetError(path, f"expected '<id> <name>', found {text.strip()!r}", line=number)
        class_id, name = int(fields[0]), fields[1].strip()
        if class_id in names:
            raise DatasetError(path, f"class id {class_id} repeats", line=number)
        names[class_id] = name
    missing = sorted(set(range(1, len(names) + 1)) - set(names))
    if not names or missing:
        raise DatasetError(path, f"class ids must run 1..N without gaps; id {missing[0] if missing else 1} is missing")
    return [names[class_id] for class_id in range(1, len(names) + 1)]


def _yowo_rows(
    labels_dir: Path,
    sources: dict[str, _FrameFolderSource],
    classes: list[str],
    clipped: _Tally,
    mismatched: _Tally,
) -> list[_Row]:
    """Parse every ``labels/<class>/<video>/0000k.txt`` (track ids still unset, -1)."""
    if not labels_dir.is_dir():
        raise DatasetError(labels_dir, "label folder not found (a YOWO dataset holds labels/<class>/<video>/00001.txt)")
    rows: list[_Row] = []
    for path in sorted(labels_dir.glob("*/*/*.txt")):
        video_dir = path.parent
        name = f"{video_dir.parent.name}{YOWO_NAME_SEPARATOR}{video_dir.name}"
        if name not in sources:
            raise DatasetError(path, f"no frame folder rgb-images/{video_dir.parent.name}/{video_dir.name}/ for this label file")
        source = sources[name]
        if not path.stem.isdigit():
            raise DatasetError(path, "label file names must be 1-based frame numbers such as 00001.txt")
        frame = int(path.stem) - 1
        if not 0 <= frame < len(source.frames):
            image = f"rgb-images/{source.class_folder}/{video_dir.name}/{path.stem}{source.frames[0].suffix}"
            raise DatasetError(path, f"frame image {image} not found (the folder holds frames 1..{len(source.frames)})")
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not text.strip():
                continue
            label, box = _parse_yowo_line(text, len(classes), path, number)
            box = _fit_box(box, source.width, source.height, path, number, clipped)
            if classes[label] != source.class_folder:
                mismatched.add(path, number)
            rows.append(_Row(name, frame, box, label, -1, path, number))
    if not rows:
        raise DatasetError(labels_dir, "no boxes found in labels/<class>/<video>/*.txt")
    return rows


def _parse_yowo_line(text: str, num_classes: int, path: Path, line: int) -> tuple[int, Box]:
    """``class x1 y1 x2 y2`` with a 1-based class id -> (0-based class id, box)."""
    fields = text.split()
    if len(fields) != 5:
        raise DatasetError(path, f"expected 5 fields 'class x1 y1 x2 y2', found {len(fields)}", line=line)
    class_number = _number(fields[0], "class id", path, line)
    if not class_number.is_integer() or not 1 <= class_number <= num_classes:
        raise DatasetError(path, f"class id {fields[0]} is not an integer in 1..{num_classes} (ids are 1-based)", line=line)
    x1, y1, x2, y2 = (_number(value, name, path, line) for value, name in zip(fields[1:], ("x1", "y1", "x2", "y2")))
    return int(class_number) - 1, (x1, y1, x2, y2)


def _yowo_splits(src: Path, sources: dict[str, _FrameFolderSource]) -> dict[str, list[str]] | None:
    """``trainlist.txt`` / ``testlist.txt`` -> ``{"train": [...], "val": [...]}`` by video."""
    lists = {split: src / filename for split, filename in (("train", "trainlist.txt"), ("val", "testlist.txt"))}
    if not any(path.is_file() for path in lists.values()):
        return None
    splits: dict[str, list[str]] = {}
    seen: dict[str, tuple[Path, int]] = {}
    for split, path in lists.items():
        names: dict[str, None] = {}
        for line, name in _read_yowo_list(path, sources) if path.is_file() else []:
            if name in seen and seen[name][0] != path:
                raise DatasetError(path, f"video {name!r} is also listed in {seen[name][0]}, line {seen[name][1]}", line=line)
            seen.setdefault(name, (path, line))
            names[name] = None
        splits[split] = list(names)
    unlisted = len(sources) - len(seen)
    if unlisted:
        logger.warning("%d video(s) are in neither trainlist.txt nor testlist.txt and belong to no split", unlisted)
    return splits


def _read_yowo_list(path: Path, sources: dict[str, _FrameFolderSource]) -> list[tuple[int, str]]:
    """``(line, canonical video name)`` for each line such as ``labels/<class>/<video>/00009.txt``."""
    entries: list[tuple[int, str]] = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        parts = PurePosixPath(text.strip().replace("\\", "/")).parts
        anchors = [i for i, part in enumerate(parts) if part in ("labels", "rgb-images")]
        parts = parts[anchors[-1] + 1 :] if anchors else parts
        if len(parts) < 2:
            expected = "expected a path like labels/<class>/<video>/00001.txt"
            raise DatasetError(path, f"{expected}, found {text.strip()!r}", line=number)
        name = f"{parts[0]}{YOWO_NAME_SEPARATOR}{parts[1]}"
        if name not in sources:
            raise DatasetError(path, f"unknown video {parts[0]}/{parts[1]} (no rgb-images/{parts[0]}/{parts[1]}/)", line=number)
        entries.append((number, name))
    return entries


def _link_tracks(rows: list[_Row], iou_threshold: float, max_gap: int) -> list[_Row]:
    """Give each box a track id by greedy IoU matching, video by video, frame by frame.

    A box continues an open track of its video: one whose last box has the same class and lies
    at most ``max_gap + 1`` frames earlier. Pairs are taken in descending IoU (ties: label
    line order, then track age) while IoU ≥ ``iou_threshold``; each track takes at most one box
    per frame. A box left over starts a new track. Track ids run 0, 1, … per video in order of
    first appearance.

    Example: boxes A (frame 0), B (frame 1, IoU(A, B) = 0.8) and C (frame 1, IoU(A, C) = 0.4)
    give A→0, B→0 (best match), C→1 (A's track is taken).
    """
    ordered = sorted(rows, key=lambda r: (r.video, r.frame, str(r.path), r.line or 0))
    linked: list[_Row] = []
    start = 0
    while start < len(ordered):
        end = start
        while end < len(ordered) and ordered[end].video == ordered[start].video:
            end += 1
        linked += _link_video(ordered[start:end], iou_threshold, max_gap)
        start = end
    return linked


def _link_video(rows: list[_Row], iou_threshold: float, max_gap: int) -> list[_Row]:
    """``_link_tracks`` for the rows of one video, sorted by frame."""
    boxes = torch.tensor([r.box for r in rows], dtype=torch.float64)
    tracks = [-1] * len(rows)
    last_row: list[int] = []
    start = 0
    while start < len(rows):
        end = start
        while end < len(rows) and rows[end].frame == rows[start].frame:
            end += 1
        frame = rows[start].frame
        current = list(range(start, end))
        open_tracks = [t for t, r in enumerate(last_row) if frame - rows[r].frame <= max_gap + 1]
        if open_tracks:
            previous = [last_row[t] for t in open_tracks]
            iou = box_iou(boxes[current], boxes[previous]).numpy()
            same_class = np.array([[rows[i].label == rows[j].label for j in previous] for i in current])
            iou[~same_class] = 0.0
            taken: set[int] = set()
            for flat in np.argsort(-iou, axis=None, kind="stable"):
                i, j = divmod(int(flat), len(open_tracks))
                if iou[i, j] < iou_threshold:
                    break
                if tracks[current[i]] < 0 and j not in taken:
                    tracks[current[i]] = open_tracks[j]
                    taken.add(j)
        for row in current:
            if tracks[row] < 0:
                tracks[row] = len(last_row)
                last_row.append(row)
            else:
                last_row[tracks[row]] = row
        start = end
    return [_Row(r.video, r.frame, r.box, r.label, track, r.path, r.line) for r, track in zip(rows, tracks)]


# ---------------------------------------------------------------------------------- AVA
class _AvaRecord(NamedTuple):
    """One AVA CSV row: its line, video id, timestamp (s), normalised xyxy box, action and person ids."""

    line: int
    video: str
    timestamp: float
    box: Box
    action_id: int
    person_id: int


@dataclass(frozen=True)
class _AvaLabel:
    """One label-map entry: AVA id, name and the line of its block."""

    label_id: int
    name: str
    line: int


_PBTXT_COMMENT = re.compile(r"(?m)^[ \t]*#.*$")
_PBTXT_BLOCK = re.compile(r"(\w+)\s*\{([^{}]*)\}")
_PBTXT_NAME = re.compile(r'\bname\s*:\s*"((?:[^"\\]|\\.)*)"')
_PBTXT_ID = re.compile(r"\b(?:label_id|id)\s*:\s*(-?\d+)\b")


def import_ava(
    csv_path: str | Path,
    videos_dir: str | Path,
    dst: str | Path,
    classes: str | Path | None = None,
    fps: float | None = None,
    time_offset: float = 0.0,
    link: bool = True,
) -> ActionAnnotations:
    """Import an AVA v2.x annotation CSV and its videos.

    CSV rows: ``video_id, timestamp, x1, y1, x2, y2, action_id, person_id`` with the
    timestamp in seconds (keyframes at 1 fps) and the box normalised to ``[0, 1]``. A row
    becomes frame ``round((timestamp - time_offset) * fps)`` of ``videos_dir/<video_id>.<ext>``
    with the box scaled to pixels. AVA timestamps count from the start of the full movie (the
    annotated part runs 902–1798 s): keep ``time_offset=0`` for full movies, use 900 for clips
    cut at 15:00 (as SlowFast's preparation does).

    A person can do several actions at one keyframe, so one track is one (person, action)
    pair: ``track = person_id * 1000 + action_id`` (AVA's id, not the class index).
    ``annotated_ranges.csv`` lists each labelled keyframe as a one-frame range, so that the
    unlabelled frames between keyframes count as not annotated rather than as background.

    Args:
        csv_path: the AVA CSV (no header).
        videos_dir: folder of the videos (a file with a video suffix or a frame folder each).
        dst: an empty or missing destination folder.
        classes: the label map (``ava_action_list_v2.2.pbtxt``); its entries in ascending id
            order become the classes. ``None``: the action ids found, ascending, named
            ``action_<id>``.
        fps: frame rate to convert timestamps with; ``None`` reads each video's own.
        time_offset: seconds subtracted from every timestamp.
        link: symlink the videos (absolute paths) instead of copying them.

    Returns:
        The imported dataset, loaded back from ``dst``.

    Raises:
        DatasetError: a malformed row, unknown action id, video not found, a timestamp
            outside its video, a repeated (video, timestamp, person, action), a malformed
            label map or a non-empty ``dst``.
    """
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive, not {fps}")
    csv_path, videos_dir = Path(csv_path), Path(videos_dir)
    dst = _prepare_destination(dst)
    label_map = _read_ava_label_map(Path(classes)) if classes is not None else None
    records = _read_ava_csv(csv_path)
    ids = sorted(label_map) if label_map is not None else sorted({record.action_id for record in records})
    class_names = [label_map[i].name for i in ids] if label_map is not None else [f"action_{i}" for i in ids]
    videos = _ava_videos(csv_path, videos_dir, records)
    rows = _ava_rows(csv_path, records, videos, {label_id: i for i, label_id in enumerate(ids)}, fps, time_offset)
    placed: dict[str, VideoInfo] = {}
    for name, info in videos.items():
        target = dst / "videos" / (info.path.name if info.path.is_dir() else f"{name}{info.path.suffix}")
        target.parent.mkdir(parents=True, exist_ok=True)
        _place(info.path, target, link)
        placed[name] = VideoInfo(name, target, info.num_frames, info.fps, info.width, info.height)
    ranges: dict[str, list[tuple[int, int]]] = {}
    for video, frame in sorted({(row.video, row.frame) for row in rows}):
        ranges.setdefault(video, []).append((frame, frame))
    return _write_dataset(dst, class_names, placed, rows, csv_path, ranges=ranges)


def _read_ava_csv(path: Path) -> list[_AvaRecord]:
    """Parse the AVA CSV, each field checked."""
    if not path.is_file():
        raise DatasetError(path, "AVA annotation CSV not found")
    records = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        fields = [f.strip() for f in text.split(",")]
        if len(fields) != 8:
            raise DatasetError(
                path, f"expected 8 fields (video_id,timestamp,x1,y1,x2,y2,action_id,person_id), found {len(fields)}", line=number
            )
        if not fields[0]:
            raise DatasetError(path, "empty video_id", line=number)
        timestamp = _number(fields[1], "timestamp", path, number)
        x1, y1, x2, y2 = (_number(value, name, path, number) for value, name in zip(fields[2:6], ("x1", "y1", "x2", "y2")))
        if not all(0.0 <= value <= 1.0 for value in (x1, y1, x2, y2)):
            raise DatasetError(path, f"box ({', '.join(fields[2:6])}) is not normalised to [0, 1]", line=number)
        action_id = _integer(fields[6], "action_id", path, number)
        if not 0 <= action_id < AVA_TRACK_STRIDE:
            raise DatasetError(path, f"action_id {action_id} is not in 0..{AVA_TRACK_STRIDE - 1}", line=number)
        person_id = _integer(fields[7], "person_id", path, number)
        if person_id < 0:
            raise DatasetError(path, f"person_id {person_id} is negative", line=number)
        records.append(_AvaRecord(number, fields[0], timestamp, (x1, y1, x2, y2), action_id, person_id))
    if not records:
        raise DatasetError(path, "the AVA CSV holds no rows")
    return records


def _ava_videos(csv_path: Path, videos_dir: Path, records: list[_AvaRecord]) -> dict[str, VideoInfo]:
    """Find and probe each video named in the CSV; a missing one is an error on its first row."""
    videos: dict[str, VideoInfo] = {}
    for record in records:
        if record.video in videos:
            continue
        try:
            path = find_video(videos_dir, record.video)
        except VideoDecodeError:
            where = f"{videos_dir} (as <video_id>.mp4/.mkv/… or a frame folder)"
            raise DatasetError(csv_path, f"video {record.video!r} not found in {where}", line=record.line) from None
        source = open_video(path)
        videos[record.video] = VideoInfo(record.video, path, source.num_frames, source.fps, source.width, source.height)
    return videos


def _ava_rows(
    path: Path,
    records: list[_AvaRecord],
    videos: dict[str, VideoInfo],
    class_index: dict[int, int],
    fps: float | None,
    time_offset: float,
) -> list[_Row]:
    """Keyframe timestamps to frames, normalised boxes to pixels, (person, action) pairs to tracks."""
    rows: list[_Row] = []
    seen: dict[tuple[str, int, int], int] = {}
    clipped = _Tally(_CLIPPED)
    for record in records:
        info, line = videos[record.video], record.line
        if record.action_id not in class_index:
            raise DatasetError(path, f"action_id {record.action_id} is not in the label map", line=line)
        frame = math.floor((record.timestamp - time_offset) * (fps or info.fps) + 0.5)
        if not 0 <= frame < info.num_frames:
            raise DatasetError(
                path,
                f"timestamp {record.timestamp:g} s is frame {frame}, outside video {record.video!r} ({info.num_frames} frames); "
                "check time_offset (900 for videos cut at AVA's 15:00 start) and fps",
                line=line,
            )
        track = record.person_id * AVA_TRACK_STRIDE + record.action_id
        if (record.video, frame, track) in seen:
            first = seen[record.video, frame, track]
            raise DatasetError(path, f"person {record.person_id} with action {record.action_id} repeats line {first}", line=line)
        seen[record.video, frame, track] = line
        x1, y1, x2, y2 = record.box
        pixels = (x1 * info.width, y1 * info.height, x2 * info.width, y2 * info.height)
        box = _fit_box(pixels, info.width, info.height, path, line, clipped)
        rows.append(_Row(record.video, frame, box, class_index[record.action_id], track, path, line))
    clipped.log()
    return rows


def _read_ava_label_map(path: Path) -> dict[int, _AvaLabel]:
    """Parse an AVA label map: ``label { name: "..." label_id: N ... }`` (or ``item { name id }``) blocks."""
    if not path.is_file():
        raise DatasetError(path, "label map not found")
    text = _PBTXT_COMMENT.sub(lambda m: " " * len(m.group()), path.read_text(encoding="utf-8"))

    def line_of(position: int) -> int:
        return text.count("\n", 0, position) + 1

    labels: dict[int, _AvaLabel] = {}
    names: dict[str, int] = {}
    end = 0
    for block in [*_PBTXT_BLOCK.finditer(text), None]:
        stray = re.search(r"\S", text[end : block.start() if block else len(text)])
        if stray:
            raise DatasetError(path, "unexpected text outside a 'label { ... }' block", line=line_of(end + stray.start()))
        if block is None:
            break
        end = block.end()
        line = line_of(block.start())
        if block.group(1) not in ("label", "item"):
            raise DatasetError(path, f"unexpected block {block.group(1)!r} (expected 'label' or 'item')", line=line)
        name, label_id = _PBTXT_NAME.search(block.group(2)), _PBTXT_ID.search(block.group(2))
        if name is None or label_id is None:
            raise DatasetError(path, f"label block without {'name' if name is None else 'label_id'}", line=line)
        entry = _AvaLabel(int(label_id.group(1)), name.group(1).strip(), line)
        if not entry.name:
            raise DatasetError(path, "blank label name", line=line)
        if entry.label_id in labels:
            raise DatasetError(path, f"label_id {entry.label_id} repeats line {labels[entry.label_id].line}", line=line)
        if entry.name in names:
            raise DatasetError(path, f"label name {entry.name!r} repeats line {names[entry.name]}", line=line)
        labels[entry.label_id] = entry
        names[entry.name] = line
    if not labels:
        raise DatasetError(path, "the label map holds no label blocks")
    return labels


# ---------------------------------------------------------------------------------- CVAT
@dataclass
class _CvatTrack:
    """A ``<track>`` element: its attributes, line and ``<box>`` children (attributes, line)."""

    attributes: dict[str, str]
    line: int
    boxes: list[tuple[dict[str, str], int]] = field(default_factory=list)


@dataclass
class _CvatDocument:
    """What the importer reads from a CVAT for video XML file."""

    labels: list[tuple[str, int]] = field(default_factory=list)
    tracks: list[_CvatTrack] = field(default_factory=list)


def import_cvat_video(xml_path: str | Path, video_path: str | Path, dst: str | Path, link: bool = True) -> ActionAnnotations:
    """Import a CVAT "for video 1.1" XML export of one video.

    Each ``<track>`` is one action clip: its ``id`` becomes the track id and its ``label`` the
    action. Every ``<box>`` of a track (CVAT writes one per frame, interpolated between key
    frames) becomes a row, at ``frame`` (CVAT exports absolute frame numbers of the video)
    in pixels ``xtl ytl xbr ybr``. A box with ``outside="1"`` marks that the action has
    ended: it is not an annotation, and is skipped and counted. The classes are the labels
    of ``<meta>`` in their order, with every "/" replaced by " or " (as the study did, so that
    names are safe as folder names: "tong/scooper" becomes "tong or scooper").

    Args:
        xml_path: the CVAT XML file.
        video_path: the annotated video (file or frame folder); its stem names the video.
        dst: an empty or missing destination folder.
        link: symlink the video (absolute path) instead of copying it.

    Returns:
        The imported dataset, loaded back from ``dst``.

    Raises:
        DatasetError: malformed XML, a track with an unknown label, a box with a missing or
            non-numeric attribute, a frame outside the video, or a non-empty ``dst``.
    """
    xml_path, video_path = Path(xml_path), Path(video_path)
    dst = _prepare_destination(dst)
    document = _parse_cvat_xml(xml_path)
    classes, class_index = _cvat_classes(xml_path, document.labels)
    source = open_video(video_path)
    name = video_path.name if video_path.is_dir() else video_path.stem
    rows = _cvat_rows(xml_path, document.tracks, class_index, name, source)
    target = dst / "videos" / (name if video_path.is_dir() else f"{name}{video_path.suffix}")
    target.parent.mkdir(parents=True)
    _place(video_path, target, link)
    videos = {name: VideoInfo(name, target, source.num_frames, source.fps, source.width, source.height)}
    return _write_dataset(dst, classes, videos, rows, xml_path)


def _cvat_rows(path: Path, tracks: list[_CvatTrack], class_index: dict[str, int], video: str, source: VideoSource) -> list[_Row]:
    """One row per box of every track, boxes marked outside skipped and counted."""
    outside = _Tally('CVAT box(es) marked outside="1" (the action had ended) were skipped')
    clipped = _Tally(_CLIPPED)
    rows: list[_Row] = []
    track_lines: dict[int, int] = {}
    for track in tracks:
        track_id = _integer(_attribute(track.attributes, "id", path, track.line), "track id", path, track.line)
        if track_id in track_lines:
            raise DatasetError(path, f"track id {track_id} repeats line {track_lines[track_id]}", line=track.line)
        track_lines[track_id] = track.line
        label = _attribute(track.attributes, "label", path, track.line)
        if label not in class_index:
            raise DatasetError(path, f"track {track_id} has label {label!r}, which is not in <meta><labels>", line=track.line)
        frame_lines: dict[int, int] = {}
        for attributes, line in track.boxes:
            if _attribute(attributes, "outside", path, line, "0") == "1":
                outside.add(path, line)
                continue
            frame = _integer(_attribute(attributes, "frame", path, line), "frame", path, line)
            if not 0 <= frame < source.num_frames:
                raise DatasetError(path, f"frame {frame} is outside {source.path} ({source.num_frames} frames)", line=line)
            if frame in frame_lines:
                first = frame_lines[frame]
                raise DatasetError(path, f"track {track_id} has a second box on frame {frame} (first on line {first})", line=line)
            frame_lines[frame] = line
            x1, y1, x2, y2 = (_number(_attribute(attributes, k, path, line), k, path, line) for k in ("xtl", "ytl", "xbr", "ybr"))
            box = _fit_box((x1, y1, x2, y2), source.width, source.height, path, line, clipped)
            rows.append(_Row(video, frame, box, class_index[label], track_id, path, line))
    for tally in (outside, clipped):
        tally.log()
    return rows


def _cvat_classes(path: Path, labels: list[tuple[str, int]]) -> tuple[list[str], dict[str, int]]:
    """Class names ("/" -> " or ") and a map from the original label name to class id."""
    if not labels:
        raise DatasetError(path, "no <labels><label><name> found in <meta> (export the task as 'CVAT for video 1.1')")
    classes: list[str] = []
    class_index: dict[str, int] = {}
    renamed_lines: dict[str, int] = {}
    for original, line in labels:
        if not original:
            raise DatasetError(path, "blank label name", line=line)
        if original in class_index:  # a project export lists its labels in <project> and again per <task>
            continue
        renamed = original.replace("/", CVAT_SLASH_REPLACEMENT)
        if renamed in renamed_lines:
            first = renamed_lines[renamed]
            raise DatasetError(path, f"label {original!r} becomes {renamed!r}, the name of the label on line {first}", line=line)
        renamed_lines[renamed] = line
        class_index[original] = len(classes)
        classes.append(renamed)
    return classes, class_index


def _parse_cvat_xml(path: Path) -> _CvatDocument:
    """Read labels, tracks and boxes with their line numbers.

    defusedxml's hardened parser reads the file: entity declarations and external references
    are refused (an entity that expands without bound, the "billion laughs", never expands).
    """
    if not path.is_file():
        raise DatasetError(path, "CVAT XML file not found")
    document = _CvatDocument()
    stack: list[str] = []
    name_text: list[str] | None = None
    skipped = _Tally("CVAT element(s) other than <track><box> (tags, polygons, points, …) were skipped")

    def start(tag: str, attributes: dict[str, str]) -> None:
        nonlocal name_text
        line = reader.parser.CurrentLineNumber
        parent = stack[-1] if stack else None
        if parent is None and tag != "annotations":
            raise DatasetError(path, f"the root element is <{tag}>, not <annotations> (not a CVAT XML export)", line=line)
        if parent == "annotations" and tag == "image":
            raise DatasetError(path, "this is a 'CVAT for images' export; export the task as 'CVAT for video 1.1'", line=line)
        if parent == "annotations" and tag == "track":
            document.tracks.append(_CvatTrack(attributes, line))
        elif parent == "track" and tag == "box":
            document.tracks[-1].boxes.append((attributes, line))
        elif parent == "track" or (parent == "annotations" and tag not in ("version", "meta")):
            skipped.add(path, line)
        elif tag == "name" and stack[-2:] == ["labels", "label"]:
            name_text = []
            document.labels.append(("", line))
        stack.append(tag)

    def end(tag: str) -> None:
        nonlocal name_text
        stack.pop()
        if tag == "name" and name_text is not None:
            document.labels[-1] = ("".join(name_text).strip(), document.labels[-1][1])
            name_text = None

    def text(data: str) -> None:
        if name_text is not None:
            name_text.append(data)

    reader = DefusedXMLParser(target=_XmlEvents(start, end, text))
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 16):
                reader.feed(chunk)
        reader.close()
    except ParseError as error:
        problem = str(error).split(":")[0]
        raise DatasetError(path, f"malformed XML ({problem})", line=error.position[0]) from None
    except DefusedXmlException as error:
        raise DatasetError(
            path, f"the XML declares entities or external references, which are refused ({type(error).__name__})",
            line=reader.parser.CurrentLineNumber,
        ) from None
    skipped.log()
    return document


class _XmlEvents:
    """An ElementTree parser target that forwards start tags, end tags and text to callbacks."""

    def __init__(self, start: Callable[[str, dict[str, str]], None], end: Callable[[str], None], data: Callable[[str], None]) -> None:
        self.start, self.end, self.data = start, end, data

    def close(self) -> None:
        """Nothing to build: the callbacks hold the document."""


def _attribute(attributes: dict[str, str], key: str, path: Path, line: int, default: str | None = None) -> str:
    """An XML attribute, or an error naming the element's line if it is missing."""
    value = attributes.get(key, default)
    if value is None:
        raise DatasetError(path, f"the element has no {key!r} attribute", line=line)
    return value.strip()


# ---------------------------------------------------------------------------------- shared
def _number(text: str, what: str, path: Path, line: int) -> float:
    """A finite float, or an error naming the file and line."""
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(path, f"{what} {text!r} is not a number", line=line) from None
    if not math.isfinite(value):
        raise DatasetError(path, f"{what} {text!r} is not a finite number", line=line)
    return value


def _integer(text: str, what: str, path: Path, line: int) -> int:
    """An integer, or an error naming the file and line."""
    try:
        return int(text)
    except ValueError:
        raise DatasetError(path, f"{what} {text!r} is not an integer", line=line) from None


def _fit_box(box: Box, width: int, height: int, path: Path, line: int | None, clipped: _Tally) -> Box:
    """Clip an absolute xyxy box to the frame; count it in ``clipped`` if it crossed by more than 2 px.

    Raises:
        DatasetError: the box has no area, or none inside the frame.
    """
    x1, y1, x2, y2 = box
    if not (x2 > x1 and y2 > y1):
        raise DatasetError(path, f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) has no area (needs x2 > x1 and y2 > y1)", line=line)
    fitted = (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))
    if not (fitted[2] > fitted[0] and fitted[3] > fitted[1]):
        raise DatasetError(path, f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies outside the {width}x{height} frame", line=line)
    if max(-x1, -y1, x2 - width, y2 - height) > BORDER_TOLERANCE_PX:
        clipped.add(path, line)
    return fitted


def _prepare_destination(dst: str | Path) -> Path:
    """Create ``dst``; refuse a non-empty one so that an import never mixes with older files."""
    dst = Path(dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise DatasetError(dst, "the destination exists and is not an empty folder; import into a new folder")
    dst.mkdir(parents=True, exist_ok=True)
    return dst


def _place(source: Path, target: Path, link: bool) -> None:
    """Symlink (absolute) or copy a file or folder to ``target``."""
    if link:
        target.symlink_to(source.resolve(), target_is_directory=source.is_dir())
    elif source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)


def _write_dataset(
    dst: Path,
    classes: list[str],
    videos: dict[str, VideoInfo],
    rows: list[_Row],
    source: Path,
    splits: dict[str, list[str]] | None = None,
    ranges: dict[str, list[tuple[int, int]]] | None = None,
) -> ActionAnnotations:
    """Save the canonical files into ``dst`` (videos already placed) and load them back to validate."""
    if not rows:
        raise DatasetError(source, "no boxes to import")
    video_index = {name: i for i, name in enumerate(videos)}
    ActionAnnotations(
        classes,
        videos,
        np.array([video_index[r.video] for r in rows], np.int64),
        np.array([r.frame for r in rows], np.int64),
        np.array([r.box for r in rows], np.float32),
        np.array([r.label for r in rows], np.int64),
        np.array([r.track for r in rows], np.int64),
        annotated_ranges=ranges,
    ).save(dst)
    if splits is not None:
        (dst / "splits.json").write_text(json.dumps(splits, indent=1) + "\n", encoding="utf-8")
    annotations = ActionAnnotations.load(dst)
    logger.info("imported %s: %d boxes, %d classes, %d videos into %s", source, len(annotations), len(classes), len(videos), dst)
    return annotations


IMPORTERS: dict[str, Callable[..., ActionAnnotations]] = {
    "yowo": import_yowo,
    "ava": import_ava,
    "cvat": import_cvat_video,
}


def run_import(format: str, src: str | Path, dst: str | Path, **options) -> ActionAnnotations:
    """Run the importer named ``format`` (a key of ``IMPORTERS``) on ``src`` into ``dst``.

    ``options`` are the importer's other arguments, e.g. ``videos_dir=`` for ``"ava"`` and
    ``video_path=`` for ``"cvat"``.

    Raises:
        ValueError: unknown format, unknown option, or a required option missing.
    """
    if format not in IMPORTERS:
        raise ValueError(f"unknown import format {format!r}; known formats: {', '.join(sorted(IMPORTERS))}")
    importer = IMPORTERS[format]
    parameters = list(inspect.signature(importer).parameters.values())[1:]
    accepted = [p.name for p in parameters if p.name != "dst"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"format {format!r} has no option {', '.join(unknown)}; its options: {', '.join(accepted)}")
    missing = [p.name for p in parameters if p.name != "dst" and p.default is inspect.Parameter.empty and p.name not in options]
    if missing:
        raise ValueError(f"format {format!r} needs option(s): {', '.join(missing)}")
    return importer(src, dst=dst, **options)

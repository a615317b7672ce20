"""The canonical dataset format: ``classes.txt``, ``annotations.csv``, ``videos/``.

See ``docs/data.md``. Rows are held as parallel numpy columns (one entry per box), indexed by
video and frame; every problem found while loading names the file, the line and what is wrong.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from restaurant_action.data.video import find_video, open_video
from restaurant_action.errors import DatasetError

logger = logging.getLogger(__name__)

ANNOTATION_HEADER = ("video", "frame", "x1", "y1", "x2", "y2", "action", "track")
RANGES_HEADER = ("video", "start", "end")
BORDER_TOLERANCE_PX = 2.0
DEFAULT_MAX_GAP = 15


@dataclass(frozen=True)
class VideoInfo:
    """Where a video lives and its size.

    Attributes:
        name: the video's name in ``annotations.csv``.
        path: the video file or frame folder.
        num_frames: number of frames.
        fps: frames per second.
        width: frame width in pixels.
        height: frame height in pixels.
    """

    name: str
    path: Path
    num_frames: int
    fps: float
    width: int
    height: int


@dataclass(frozen=True)
class ActionInstance:
    """One continuous action of one track: frames ``start..end`` inclusive, same action.

    Attributes:
        video: the video's name.
        track: the track id.
        action: the class id.
        start: first frame (0-based).
        end: last frame (inclusive).
    """

    video: str
    track: int
    action: int
    start: int
    end: int

    @property
    def num_frames(self) -> int:
        """Length in frames, gaps included."""
        return self.end - self.start + 1


@dataclass
class ValidationReport:
    """Problems found in a dataset, each a ``DatasetError`` naming file, line and problem.

    Attributes:
        problems: every problem found.
        rows_read: annotation rows read.
        rows_kept: rows kept (``rows_read`` less the rows with a problem).
    """

    problems: list[DatasetError] = field(default_factory=list)
    rows_read: int = 0
    rows_kept: int = 0

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def summary(self, limit: int = 20) -> str:
        """Human-readable list of the first ``limit`` problems."""
        lines = [f"{len(self.problems)} problem(s); {self.rows_kept} of {self.rows_read} rows kept"]
        lines += [f"  {problem}" for problem in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more")
        return "\n".join(lines)


def read_classes(path: str | Path) -> list[str]:
    """Read ``classes.txt``: one class name per line, line i (0-based) is class id i.

    Raises:
        DatasetError: missing file, empty file, blank or duplicate names.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "class list not found")
    # utf-8-sig drops a byte-order mark; names are stripped like the fields of annotations.csv.
    names = [name.strip() for name in path.read_text(encoding="utf-8-sig").splitlines()]
    while names and not names[-1].strip():
        names.pop()
    if not names:
        raise DatasetError(path, "the class list is empty")
    seen: dict[str, int] = {}
    for number, name in enumerate(names, start=1):
        if not name.strip():
            raise DatasetError(path, "blank class name", line=number)
        if name in seen:
            raise DatasetError(path, f"class {name!r} repeats line {seen[name]}", line=number)
        seen[name] = number
    return names


class ActionAnnotations:
    """Validated box annotations of a dataset, indexed by video and frame.

    Each column holds one entry per box: ``video_ids (N,)`` index into ``video_names``,
    ``frames (N,)`` 0-based, ``boxes (N, 4)`` absolute pixels xyxy, ``labels (N,)`` class ids,
    ``tracks (N,)`` track ids.

    Args:
        classes: class names; the position is the class id.
        videos: video name -> ``VideoInfo`` for every video of the dataset.
        video_ids, frames, boxes, labels, tracks: the columns.
        annotated_ranges: optional video -> list of inclusive ``(start, end)`` frame ranges
            that were annotated (unlabelled frames inside are background).
        root: the dataset folder it was loaded from, if any.
        lines: ``(N,)`` line of each row in ``annotations.csv``, for error messages.
    """

    def __init__(
        self,
        classes: Sequence[str],
        videos: dict[str, VideoInfo],
        video_ids: np.ndarray,
        frames: np.ndarray,
        boxes: np.ndarray,
        labels: np.ndarray,
        tracks: np.ndarray,
        annotated_ranges: dict[str, list[tuple[int, int]]] | None = None,
        root: str | Path | None = None,
        lines: np.ndarray | None = None,
    ) -> None:
        self.classes = list(classes)
        self.videos = dict(videos)
        self.video_names = list(self.videos)
        self.video_ids = np.asarray(video_ids, np.int64)
        self.frames = np.asarray(frames, np.int64)
        self.boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        self.labels = np.asarray(labels, np.int64)
        self.tracks = np.asarray(tracks, np.int64)
        self.annotated_ranges = annotated_ranges
        self.root = Path(root) if root is not None else None
        self.report = ValidationReport(rows_read=len(self.frames), rows_kept=len(self.frames))
        order = np.lexsort((self.tracks, self.frames, self.video_ids))
        self.video_ids, self.frames, self.boxes, self.labels, self.tracks = (
            column[order] for column in (self.video_ids, self.frames, self.boxes, self.labels, self.tracks)
        )
        self._lines = np.asarray(lines, np.int64)[order] if lines is not None else None
        self._index: dict[tuple[int, int], tuple[int, int]] | None = None

    # ------------------------------------------------------------------ loading / saving
    @classmethod
    def load(cls, root: str | Path, strict: bool = True) -> "ActionAnnotations":
        """Load and validate a dataset folder (``classes.txt``, ``annotations.csv``, ``videos/``).

        Args:
            root: the dataset folder.
            strict: raise on the first problem (the message counts the others); otherwise
                drop the rows with problems, log how many, and keep the report in ``.report``.

        Raises:
            DatasetError: a missing or malformed file, row or video (``VideoDecodeError``).
        """
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(root, "dataset folder not found")
        classes = read_classes(root / "classes.txt")
        rows, problems, rows_read = _read_annotation_rows(root / "annotations.csv", classes)
        videos, video_problems = _probe_videos(root, rows)
        problems += video_problems
        rows = [row for row in rows if row.video in videos]
        for name, info in _probe_unreferenced_videos(root, videos).items():
            videos[name] = info
        ranges = _read_ranges(root / "annotated_ranges.csv", videos) if (root / "annotated_ranges.csv").exists() else None
        names = list(videos)
        video_index = {name: i for i, name in enumerate(names)}
        annotations = cls(
            classes,
            videos,
            np.array([video_index[r.video] for r in rows], np.int64),
            np.array([r.frame for r in rows], np.int64),
            np.array([r.box for r in rows], np.float32).reshape(-1, 4),
            np.array([r.label for r in rows], np.int64),
            np.array([r.track for r in rows], np.int64),
            annotated_ranges=ranges,
            root=root,
            lines=np.array([r.line for r in rows], np.int64),
        )
        report = annotations.validate(strict=False, clip_border=True)
        report.problems = problems + report.problems
        report.rows_read = rows_read
        report.rows_kept = len(annotations)
        if report.problems and strict:
            first = report.problems[0]
            more = len(report.problems) - 1
            suffix = f" (and {more} more problem(s); load with strict=False for a full report)" if more else ""
            raise DatasetError(first.path, first.problem + suffix, line=first.line)
        if report.problems:
            logger.warning("%s: dropped %d annotation row(s) with problems:\n%s", root, rows_read - report.rows_kept, report.summary())
        if len(annotations) == 0:
            raise DatasetError(root / "annotations.csv", "the dataset holds no valid annotation rows")
        annotations.report = report
        return annotations

    def save(self, root: str | Path) -> None:
        """Write ``classes.txt``, ``annotations.csv`` and (if set) ``annotated_ranges.csv`` to ``root``.

        Videos are not copied; they are expected in ``root/videos``.
        """
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        (root / "classes.txt").write_text("".join(f"{name}\n" for name in self.classes), encoding="utf-8")
        with open(root / "annotations.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(ANNOTATION_HEADER)
            for vid, frame, box, label, track in zip(self.video_ids, self.frames, self.boxes, self.labels, self.tracks):
                writer.writerow(
                    [self.video_names[vid], int(frame), *(f"{float(v):.2f}" for v in box), self.classes[label], int(track)]
                )
        if self.annotated_ranges is not None:
            with open(root / "annotated_ranges.csv", "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(RANGES_HEADER)
                for name, spans in self.annotated_ranges.items():
                    writer.writerows([name, start, end] for start, end in spans)

    # ------------------------------------------------------------------ validation
    def validate(self, strict: bool = True, clip_border: bool = False) -> ValidationReport:
        """Check every box against its video and the class list; drop nothing unless asked.

        Checks: known video, frame inside the video, class id in range, ``x2 > x1`` and
        ``y2 > y1``, box inside the frame (crossing by at most 2 px is clipped when
        ``clip_border``), and no duplicate ``(video, frame, track)``.

        Args:
            strict: raise the first problem instead of returning the report.
            clip_border: clip boxes that cross the border by at most 2 px, and drop the rows
                with problems (used by ``load``).

        Returns:
            The report; with ``strict=False`` it lists every problem.
        """
        path = (self.root / "annotations.csv") if self.root else Path("<in-memory annotations>")
        lines = self._lines
        bad = np.zeros(len(self), bool)
        problems: list[tuple[int, str]] = []

        def flag(mask: np.ndarray, describe) -> None:
            for row in np.flatnonzero(mask & ~bad):
                problems.append((int(row), describe(int(row))))
            bad[mask] = True

        flag((self.labels < 0) | (self.labels >= len(self.classes)), lambda r: f"class id {self.labels[r]} is not in classes.txt")
        x1, y1, x2, y2 = self.boxes.T
        flag(~np.isfinite(self.boxes).all(1), lambda r: "box coordinate is not a finite number")
        flag((x2 <= x1) | (y2 <= y1), lambda r: f"box {self._box_text(r)} has no area (needs x2 > x1 and y2 > y1)")
        widths = np.array([self.videos[n].width for n in self.video_names], np.float32)[self.video_ids] if len(self) else np.zeros(0)
        heights = np.array([self.videos[n].height for n in self.video_names], np.float32)[self.video_ids] if len(self) else np.zeros(0)
        lengths = np.array([self.videos[n].num_frames for n in self.video_names], np.int64)[self.video_ids] if len(self) else np.zeros(0, np.int64)
        flag((self.frames < 0) | (self.frames >= lengths), lambda r: f"frame {self.frames[r]} is outside video {self.video_names[self.video_ids[r]]!r} ({lengths[r]} frames)")
        tol = BORDER_TOLERANCE_PX
        outside = (x1 < -tol) | (y1 < -tol) | (x2 > widths + tol) | (y2 > heights + tol)
        flag(outside, lambda r: f"box {self._box_text(r)} lies outside the {int(widths[r])}x{int(heights[r])} frame by more than {tol:g} px")
        if len(self):
            key = np.stack([self.video_ids, self.frames, self.tracks], 1)
            _, first, counts = np.unique(key, axis=0, return_index=True, return_counts=True)
            duplicate = np.ones(len(self), bool)
            duplicate[first] = False
            flag(duplicate, lambda r: f"duplicate box for video {self.video_names[self.video_ids[r]]!r}, frame {self.frames[r]}, track {self.tracks[r]}")
        problems.sort()
        report = ValidationReport(
            [DatasetError(path, text, line=int(lines[row]) if lines is not None else None) for row, text in problems],
            rows_read=len(self),
            rows_kept=int((~bad).sum()),
        )
        if strict and problems:
            raise report.problems[0]
        if clip_border:
            self.boxes[:, [0, 2]] = np.clip(self.boxes[:, [0, 2]], 0, widths[:, None])
            self.boxes[:, [1, 3]] = np.clip(self.boxes[:, [1, 3]], 0, heights[:, None])
            self._keep(~bad)
        return report

    def _box_text(self, row: int) -> str:
        return "(" + ", ".join(f"{v:g}" for v in self.boxes[row].tolist()) + ")"

    def _keep(self, mask: np.ndarray) -> None:
        self.video_ids, self.frames, self.boxes, self.labels, self.tracks = (
            c[mask] for c in (self.video_ids, self.frames, self.boxes, self.labels, self.tracks)
        )
        if self._lines is not None:
            self._lines = self._lines[mask]
        self._index = None

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.frames)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def _frame_index(self) -> dict[tuple[int, int], tuple[int, int]]:
        if self._index is None:
            key = self.video_ids * (1 << 32) + self.frames
            starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, np.int64)
            ends = np.r_[starts[1:], len(key)]
            self._index = {
                (int(self.video_ids[s]), int(self.frames[s])): (int(s), int(e)) for s, e in zip(starts, ends)
            }
        return self._index

    def targets(self, video: str, frame: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes of one frame.

        Returns:
            ``boxes (K, 4)`` float32 absolute xyxy, ``labels (K,)`` int64, ``tracks (K,)`` int64;
            ``K = 0`` for an unlabelled frame.
        """
        span = self._frame_index().get((self.video_names.index(video), int(frame)))
        start, end = span if span else (0, 0)
        return self.boxes[start:end], self.labels[start:end], self.tracks[start:end]

    def labelled_frames(self, video: str) -> np.ndarray:
        """Sorted 0-based indices of the frames of ``video`` with at least one box."""
        vid = self.video_names.index(video)
        return np.unique(self.frames[self.video_ids == vid])

    def action_instances(self, max_gap: int = DEFAULT_MAX_GAP) -> list[ActionInstance]:
        """Continuous actions: runs of one track with one action, gaps of ≤ ``max_gap`` frames bridged.

        Example: track 3 labelled "cut" on frames 10–20 and 30–40 gives one instance 10–40 with
        ``max_gap=15`` (gap of 9 unlabelled frames) and two with ``max_gap=5``.
        """
        if not len(self):
            return []
        order = np.lexsort((self.frames, self.tracks, self.video_ids))
        vid, trk, frm, lab = self.video_ids[order], self.tracks[order], self.frames[order], self.labels[order]
        new = np.r_[True, (vid[1:] != vid[:-1]) | (trk[1:] != trk[:-1]) | (lab[1:] != lab[:-1]) | (frm[1:] - frm[:-1] > max_gap + 1)]
        starts = np.flatnonzero(new)
        ends = np.r_[starts[1:], len(order)] - 1
        return [
            ActionInstance(self.video_names[vid[s]], int(trk[s]), int(lab[s]), int(frm[s]), int(frm[e]))
            for s, e in zip(starts, ends)
        ]

    def class_counts(self, unit: str = "frames") -> np.ndarray:
        """Examples per class, ``(C,)`` int64.

        Args:
            unit: ``"boxes"`` (rows), ``"frames"`` (frames holding the class), ``"tracks"``
                (distinct (video, track) pairs) or ``"clips"`` (action instances).
        """
        if unit == "boxes":
            labels = self.labels
        elif unit == "frames":
            labels = np.unique(np.stack([self.video_ids, self.frames, self.labels], 1), axis=0)[:, 2] if len(self) else self.labels
        elif unit == "tracks":
            labels = np.unique(np.stack([self.video_ids, self.tracks, self.labels], 1), axis=0)[:, 2] if len(self) else self.labels
        elif unit == "clips":
            labels = np.array([inst.action for inst in self.action_instances()], np.int64)
        else:
            raise ValueError(f"unit must be 'boxes', 'frames', 'tracks' or 'clips', not {unit!r}")
        return np.bincount(labels, minlength=self.num_classes).astype(np.int64)

    def top_k_classes(self, k: int) -> list[int]:
        """Class ids of the ``k`` classes with the most clips (action instances), most first.

        Ties are broken by the lower class id; classes without clips are never included.
        """
        counts = self.class_counts("clips")
        order = sorted(range(self.num_classes), key=lambda c: (-counts[c], c))
        return [c for c in order[:k] if counts[c] > 0]

    def labelled_fraction(self) -> float:
        """Fraction of all frames of all videos that hold at least one box."""
        total = sum(info.num_frames for info in self.videos.values())
        labelled = len(self._frame_index())
        return labelled / total if total else 0.0

    def select_rows(self, mask: np.ndarray) -> "ActionAnnotations":
        """A copy holding only the rows where ``mask (N,)`` is true (all videos kept)."""
        return ActionAnnotations(
            self.classes, self.videos, self.video_ids[mask], self.frames[mask], self.boxes[mask], self.labels[mask],
            self.tracks[mask], annotated_ranges=self.annotated_ranges, root=self.root,
            lines=self._lines[mask] if self._lines is not None else None,
        )

    def rows_in(self, frames_by_video: dict[str, np.ndarray]) -> np.ndarray:
        """``(N,)`` mask of the rows whose frame is listed for its video in ``frames_by_video``."""
        mask = np.zeros(len(self), bool)
        for video, frames in frames_by_video.items():
            if video in self.videos:
                rows = self.video_ids == self.video_names.index(video)
                mask[rows] = np.isin(self.frames[rows], frames)
        return mask

    def subset(self, videos: Iterable[str]) -> "ActionAnnotations":
        """The annotations of the named videos only."""
        keep_names = [n for n in self.video_names if n in set(videos)]
        remap = np.full(len(self.video_names), -1, np.int64)
        remap[[self.video_names.index(n) for n in keep_names]] = np.arange(len(keep_names))
        mask = remap[self.video_ids] >= 0 if len(self) else np.zeros(0, bool)
        ranges = {n: self.annotated_ranges[n] for n in keep_names if n in self.annotated_ranges} if self.annotated_ranges else None
        return ActionAnnotations(
            self.classes,
            {n: self.videos[n] for n in keep_names},
            remap[self.video_ids[mask]],
            self.frames[mask],
            self.boxes[mask],
            self.labels[mask],
            self.tracks[mask],
            annotated_ranges=ranges,
            root=self.root,
        )


@dataclass(frozen=True)
class _Row:
    line: int
    video: str
    frame: int
    box: tuple[float, float, float, float]
    label: int
    track: int


def _read_annotation_rows(path: Path, classes: list[str]) -> tuple[list[_Row], list[DatasetError], int]:
    """Parse ``annotations.csv`` into rows, collecting one problem per malformed row."""
    if not path.is_file():
        raise DatasetError(path, "annotation file not found")
    class_ids = {name: i for i, name in enumerate(classes)}
    rows: list[_Row] = []
    problems: list[DatasetError] = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != ANNOTATION_HEADER:
            raise DatasetError(path, f"header must be {','.join(ANNOTATION_HEADER)}, found {','.join(header or [])!r}", line=1)
        count = 0
        for fields in reader:
            line = reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            count += 1
            try:
                rows.append(_parse_row(fields, line, class_ids))
            except ValueError as error:
                problems.append(DatasetError(path, str(error), line=line))
    if count == 0:
        raise DatasetError(path, "the annotation file holds no rows (an empty dataset)")
    return rows, problems, count


def _parse_row(fields: list[str], line: int, class_ids: dict[str, int]) -> _Row:
    if len(fields) != len(ANNOTATION_HEADER):
        raise ValueError(f"expected {len(ANNOTATION_HEADER)} fields ({','.join(ANNOTATION_HEADER)}), found {len(fields)}")
    video, frame, x1, y1, x2, y2, action, track = (f.strip() for f in fields)
    if not video:
        raise ValueError("empty video name")
    values = {}
    for name, text, kind in (("frame", frame, int), ("x1", x1, float), ("y1", y1, float), ("x2", x2, float), ("y2", y2, float), ("track", track, int)):
        try:
            values[name] = kind(text)
        except ValueError:
            raise ValueError(f"{name} {text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if kind is float and not np.isfinite(values[name]):
            raise ValueError(f"{name} {text!r} is not a finite number")
    if values["frame"] < 0:
        raise ValueError(f"frame {values['frame']} is negative (frames are 0-based)")
    if action not in class_ids:
        raise ValueError(f"unknown action {action!r} (not in classes.txt)")
    box = (values["x1"], values["y1"], values["x2"], values["y2"])
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"box ({x1}, {y1}, {x2}, {y2}) has no area (needs x2 > x1 and y2 > y1)")
    return _Row(line, video, values["frame"], box, class_ids[action], values["track"])


def _probe_videos(root: Path, rows: list[_Row]) -> tuple[dict[str, VideoInfo], list[DatasetError]]:
    """Find and open every referenced video; a missing or unreadable one is a problem on its first line."""
    videos: dict[str, VideoInfo] = {}
    problems: list[DatasetError] = []
    first_line: dict[str, int] = {}
    for row in rows:
        first_line.setdefault(row.video, row.line)
    for name, line in first_line.items():
        try:
            videos[name] = probe_video(root / "videos", name)
        except DatasetError as error:
            problems.append(DatasetError(root / "annotations.csv", f"video {name!r}: {error}", line=line))
    return videos, problems


def _probe_unreferenced_videos(root: Path, known: dict[str, VideoInfo]) -> dict[str, VideoInfo]:
    """Videos in ``videos/`` without annotation rows (entirely unlabelled) are part of the dataset too."""
    found: dict[str, VideoInfo] = {}
    videos_dir = root / "videos"
    if not videos_dir.is_dir():
        return found
    for path in sorted(videos_dir.iterdir()):
        name = path.name if path.is_dir() else path.stem
        if name not in known and (path.is_dir() or path.suffix.lower() in (".mp4", ".avi", ".mkv", ".mov", ".webm")):
            found[name] = probe_video(videos_dir, name)
    return found


def probe_video(videos_dir: str | Path, name: str) -> VideoInfo:
    """Locate video ``name`` in ``videos_dir`` and read its length, rate and size."""
    path = find_video(videos_dir, name)
    source = open_video(path)
    return VideoInfo(name, path, source.num_frames, source.fps, source.width, source.height)


def _read_ranges(path: Path, videos: dict[str, VideoInfo]) -> dict[str, list[tuple[int, int]]]:
    """Parse ``annotated_ranges.csv`` (video,start,end; inclusive 0-based frames)."""
    ranges: dict[str, list[tuple[int, int]]] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != RANGES_HEADER:
            raise DatasetError(path, f"header must be {','.join(RANGES_HEADER)}", line=1)
        for fields in reader:
            if not fields:
                continue
            if len(fields) != 3:
                raise DatasetError(path, f"expected 3 fields (video,start,end), found {len(fields)}", line=reader.line_num)
            name = fields[0].strip()
            try:
                start, end = int(fields[1]), int(fields[2])
            except ValueError:
                raise DatasetError(path, "start and end must be integers", line=reader.line_num) from None
            if name not in videos:
                raise DatasetError(path, f"unknown video {name!r}", line=reader.line_num)
            if not 0 <= start <= end < videos[name].num_frames:
                raise DatasetError(path, f"range {start}-{end} is not inside the video's {videos[name].num_frames} frames", line=reader.line_num)
            ranges.setdefault(name, []).append((start, end))
    return ranges

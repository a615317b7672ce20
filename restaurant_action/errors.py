"""The library's exceptions: every message names the file, the line or frame, and the problem."""

from __future__ import annotations

from pathlib import Path


class DatasetError(ValueError):
    """A dataset file is missing, malformed or inconsistent.

    Args:
        path: the file at fault.
        problem: what is wrong and, where it helps, what to do.
        line: 1-based line number in ``path`` (header is line 1), if the problem is on one line.
    """

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class VideoDecodeError(DatasetError):
    """A video is missing, empty, corrupt or truncated.

    Args:
        path: the video file or frame folder.
        problem: what failed.
        frame: the first 0-based frame index that failed to decode, if known.
    """

    def __init__(self, path: str | Path, problem: str, frame: int | None = None) -> None:
        self.frame = frame
        where = f"frame {frame}: " if frame is not None else ""
        super().__init__(path, f"{where}{problem}")

"""Make PyAV's bundled FFmpeg shared libraries loadable by torchcodec.

torchcodec loads FFmpeg (4 to 9) from the system's libraries (``libavutil.so.60`` …). PyAV's
wheel carries FFmpeg 8 under hashed names (``av.libs/libavutil-5809ad29.so.60…``). This links
every library of ``av.libs`` into one folder, plus the plain names FFmpeg's libraries have, so
that a process started with that folder on ``LD_LIBRARY_PATH`` gives torchcodec PyAV's FFmpeg.
One copy of FFmpeg serves both: the dynamic linker matches the linked files' own (hashed)
names when PyAV asks for them.

Run: ``python tools/link_pyav_ffmpeg.py .venv/ffmpeg`` (``make`` does).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import av

PLAIN_NAME = re.compile(r"^(lib(?:av\w+|sw\w+|postproc))-[0-9a-f]{8}(\.so\.\d+)")


def link(folder: Path) -> list[Path]:
    """Link PyAV's libraries into ``folder`` (replacing older links); return the links."""
    libraries = Path(av.__file__).resolve().parent.parent / "av.libs"
    if not libraries.is_dir():
        raise SystemExit(f"{libraries}: PyAV's bundled libraries not found (a PyAV wheel built without them?)")
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for library in sorted(libraries.iterdir()):
        names = [library.name]
        plain = PLAIN_NAME.match(library.name)
        if plain:
            names.append(plain.group(1) + plain.group(2))
        for name in names:
            target = folder / name
            target.unlink(missing_ok=True)
            target.symlink_to(library)
            made.append(target)
    return made


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".venv/ffmpeg")
    print(f"{len(link(out))} links to PyAV's FFmpeg in {out}")

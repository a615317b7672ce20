"""Frame access to videos through one interface, whatever decodes them.

``open_video(path, backend="auto"|"pyav"|"decord"|"torchcodec")`` returns a ``VideoSource``:
``num_frames`` (frames that decode, not a header's claim), ``fps``, ``width``/``height``,
``size`` and ``frames(indices) -> uint8 (N, H, W, 3)`` RGB, the same pictures for the same
indices on every backend. Frame folders are read with OpenCV; ``cache_dir`` keeps resized
frames in an on-disk memmap.
"""

from restaurant_action.data.video.base import FileVideo, VideoSource
from restaurant_action.data.video.cache import CachedVideo
from restaurant_action.data.video.decord_backend import DecordVideo
from restaurant_action.data.video.folder import IMAGE_SUFFIXES, FrameFolder
from restaurant_action.data.video.open import (
    AUTO_ORDER,
    BACKEND_VARIABLE,
    BACKENDS,
    VIDEO_SUFFIXES,
    available_backends,
    find_video,
    open_video,
    resolve_backend,
)
from restaurant_action.data.video.probe import StreamIndex, probe_stream
from restaurant_action.data.video.pyav_backend import PyAVVideo
from restaurant_action.data.video.torchcodec_backend import TorchcodecVideo

__all__ = [
    "AUTO_ORDER",
    "BACKENDS",
    "BACKEND_VARIABLE",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "CachedVideo",
    "DecordVideo",
    "FileVideo",
    "FrameFolder",
    "PyAVVideo",
    "StreamIndex",
    "TorchcodecVideo",
    "VideoSource",
    "available_backends",
    "find_video",
    "open_video",
    "probe_stream",
    "resolve_backend",
]

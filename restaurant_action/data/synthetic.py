"""Synthetic restaurant video: two camera views, workers with articulated arms, long-tailed actions.

The generator mirrors the difficulties of the study's data (arXiv 2008.11149): small boxes
around hands and tools, a long-tailed class distribution, about half of the frames without an
action, 1–2 px label jitter, sensor noise and slow lighting change, and action pairs that only
motion tells apart (the same hand, tool and path travelled in opposite directions, so a single
frame cannot separate them). Output is the canonical dataset layout with real mp4 files.
"""

from __future__ import annotations

import json
import logging
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from restaurant_action.data.annotations import ActionAnnotations

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActionSpec:
    """How one synthetic action looks and moves.

    Attributes:
        name: the study's action name ("/" written as " or ", as the study's preprocessing did).
        weight: relative frequency (the long tail).
        start: station where the hand starts (see ``SceneLayout.station``).
        end: station where the hand ends.
        held: what the hand holds: "tong", "tong_item", "phone", "cup", "cash", "cloth",
            "bottle", "lid" or "" (bare hand).
        wiggle: amplitude (fraction of height) of a periodic hand motion on top of the path.
    """

    name: str
    weight: float
    start: str
    end: str
    held: str
    wiggle: float = 0.0


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("Pick up from bin with tong or scooper", 10.0, "bin", "above_bin", "tong"),
    ActionSpec("Put tongs or scooper back in bin", 8.0, "above_bin", "bin", "tong"),
    ActionSpec("Put item into meal using tongs", 9.0, "above_bin", "tray", "tong_item"),
    ActionSpec("Put food back into bin with tongs or scooper", 6.0, "tray", "above_bin", "tong_item"),
    ActionSpec("Operating POS", 5.0, "pos", "pos", "", wiggle=0.02),
    ActionSpec("Operating sushi roll cutter", 4.0, "cutter_top", "cutter_bottom", ""),
    ActionSpec("Pick up a drink", 4.0, "drink", "mouth", "cup"),
    ActionSpec("Put drink down", 3.0, "mouth", "drink", "cup"),
    ActionSpec("Using a cell phone", 3.0, "ear", "ear", "phone", wiggle=0.01),
    ActionSpec("Squirt sauce", 2.0, "above_tray", "above_tray", "bottle", wiggle=0.015),
    ActionSpec("Clean counter", 2.0, "counter_left", "counter_right", "cloth", wiggle=0.03),
    ActionSpec("Handing cash", 1.0, "pocket", "customer", "cash"),
    ActionSpec("Put lid on bowl", 0.6, "side", "tray", "lid"),
)

MOTION_ONLY_PAIRS: tuple[tuple[str, str], ...] = (
    ("Pick up from bin with tong or scooper", "Put tongs or scooper back in bin"),
    ("Put item into meal using tongs", "Put food back into bin with tongs or scooper"),
    ("Pick up a drink", "Put drink down"),
)
"""Pairs with identical appearance per frame: the same hand, tool and path, opposite direction."""

APPEARANCE_ACTIONS: tuple[str, ...] = (
    "Operating POS",
    "Operating sushi roll cutter",
    "Using a cell phone",
    "Squirt sauce",
    "Clean counter",
    "Handing cash",
    "Put lid on bowl",
)
"""Actions whose tool or place tells them apart in a single frame."""


@dataclass(frozen=True)
class SceneLayout:
    """Static layout of one camera view, in fractions of the frame (x of width, y of height).

    Attributes:
        mirror: view 1 is laid out mirrored left-right.
        wall, counter, skin, shirt: BGR colours.
        counter_top: y where the counter begins.
        bins: x centres of the three ingredient bins.
        tray_x, pos_x, cutter_x, drink_x: x centres of the meal tray, POS, roll cutter, drink spot.
    """

    mirror: bool
    wall: tuple[int, int, int]
    counter: tuple[int, int, int]
    counter_top: float
    bins: tuple[float, float, float]
    tray_x: float
    pos_x: float
    cutter_x: float
    drink_x: float


VIEWS = (
    SceneLayout(False, (190, 205, 220), (90, 120, 150), 0.62, (0.12, 0.21, 0.30), 0.47, 0.86, 0.69, 0.38),
    SceneLayout(True, (170, 160, 140), (120, 110, 100), 0.58, (0.12, 0.21, 0.30), 0.50, 0.84, 0.66, 0.40),
)
BIN_FOODS = ((60, 180, 240), (80, 200, 80), (70, 70, 200))
SHIRTS = ((40, 40, 40), (200, 90, 40), (60, 120, 60), (30, 30, 160))
SKIN = (150, 180, 220)


def _x(layout: SceneLayout, x: float) -> float:
    return 1.0 - x if layout.mirror else x


class _Scene:
    """Pixel geometry of one view at one frame size; draws the static background."""

    def __init__(self, layout: SceneLayout, width: int, height: int, rng: np.random.Generator, object_scale: float = 1.0) -> None:
        self.layout, self.width, self.height = layout, width, height
        self.unit = height / 180.0 * object_scale
        self.background = self._draw_background(rng)

    def px(self, x: float, y: float) -> tuple[float, float]:
        return _x(self.layout, x) * self.width, y * self.height

    def station(self, name: str, worker_x: float, bin_index: int) -> tuple[float, float]:
        """Hand position (pixels) of a named station for a worker standing at ``worker_x``."""
        lay, top = self.layout, self.layout.counter_top
        bin_x = lay.bins[bin_index]
        points = {
            "bin": (bin_x, top + 0.08),
            "above_bin": (bin_x + 0.02, top - 0.14),
            "tray": (lay.tray_x, top + 0.10),
            "above_tray": (lay.tray_x, top - 0.04),
            "pos": (lay.pos_x - 0.02, top - 0.06),
            "cutter_top": (lay.cutter_x, top - 0.16),
            "cutter_bottom": (lay.cutter_x, top - 0.04),
            "drink": (lay.drink_x, top + 0.02),
            "mouth": (None, 0.20),
            "ear": (None, 0.12),
            "pocket": (None, 0.52),
            "customer": (lay.tray_x + 0.08, 0.95),
            "counter_left": (lay.tray_x - 0.10, top + 0.18),
            "counter_right": (lay.tray_x + 0.02, top + 0.18),
            "side": (lay.tray_x + 0.10, top + 0.08),
        }
        x, y = points[name]
        if x is None:
            return worker_x * self.width + 0.05 * self.width * (1 if name != "ear" else 0.6), y * self.height
        return self.px(x, y)

    def _draw_background(self, rng: np.random.Generator) -> np.ndarray:
        lay, w, h, u = self.layout, self.width, self.height, self.unit
        image = np.empty((h, w, 3), np.uint8)
        image[:] = lay.wall
        for row in range(0, int(lay.counter_top * h), max(4, int(14 * u))):
            cv2.line(image, (0, row), (w, row), tuple(int(c * 0.93) for c in lay.wall), 1)
        cv2.rectangle(image, (0, int(lay.counter_top * h)), (w, h), lay.counter, -1)
        cv2.line(image, (0, int(lay.counter_top * h)), (w, int(lay.counter_top * h)), (50, 60, 70), max(1, int(2 * u)))
        top = lay.counter_top
        for bin_x, food in zip(lay.bins, BIN_FOODS):
            x1, y1 = self.px(bin_x - 0.04, top + 0.03)
            x2, y2 = self.px(bin_x + 0.04, top + 0.16)
            x1, x2 = sorted((x1, x2))
            cv2.rectangle(image, (int(x1), int(y1)), (int(x2), int(y2)), (180, 180, 185), -1)
            cv2.rectangle(image, (int(x1) + 2, int(y1) + 2), (int(x2) - 2, int(y1 + 6 * u)), food, -1)
        x1, y1 = self.px(lay.tray_x - 0.07, top + 0.06)
        x2, y2 = self.px(lay.tray_x + 0.07, top + 0.17)
        x1, x2 = sorted((x1, x2))
        cv2.rectangle(image, (int(x1), int(y1)), (int(x2), int(y2)), (40, 40, 40), -1)
        cv2.ellipse(image, (int((x1 + x2) / 2), int((y1 + y2) / 2)), (int(12 * u), int(5 * u)), 0, 0, 360, (230, 230, 230), -1)
        px, py = self.px(lay.pos_x, top - 0.18)
        cv2.rectangle(image, (int(px - 12 * u), int(py)), (int(px + 12 * u), int(py + 24 * u)), (30, 30, 30), -1)
        cv2.rectangle(image, (int(px - 10 * u), int(py + 2 * u)), (int(px + 10 * u), int(py + 14 * u)), (200, 160, 60), -1)
        cx, cy = self.px(lay.cutter_x, top - 0.22)
        cv2.rectangle(image, (int(cx - 14 * u), int(cy)), (int(cx + 14 * u), int(cy + 40 * u)), (160, 160, 170), -1)
        cv2.rectangle(image, (int(cx - 10 * u), int(cy + 28 * u)), (int(cx + 10 * u), int(cy + 34 * u)), (60, 60, 60), -1)
        dx, dy = self.px(lay.drink_x, top + 0.01)
        cv2.circle(image, (int(dx), int(dy)), int(5 * u), (120, 120, 120), 1)
        noise = rng.normal(0, 3, image.shape)
        return np.clip(image + noise, 0, 255).astype(np.uint8)


@dataclass
class _Instance:
    spec_index: int
    start: int
    end: int
    worker: int
    bin_index: int
    track: int


@dataclass
class _Worker:
    shirt: tuple[int, int, int]
    home_x: float
    x_track: np.ndarray


def _plan_timelines(rng: np.random.Generator, num_frames: int) -> list[list[tuple[int, int]]]:
    """Action spells ``(start, length)`` per worker: idle spells of 30–80 frames between actions of 24–48."""
    num_workers = 2 if rng.random() < 0.6 else 1
    timelines = []
    for _ in range(num_workers):
        spells, frame = [], int(rng.integers(0, 40))
        while True:
            start, length = frame + int(rng.integers(30, 80)), int(rng.integers(24, 48))
            if start + length >= num_frames:
                break
            spells.append((start, length))
            frame = start + length
        timelines.append(spells)
    return timelines


def _place_workers(
    rng: np.random.Generator, scene: _Scene, num_frames: int, timelines: list[list[tuple[int, int]]], classes: list[list[int]], track_base: int
) -> tuple[list[_Worker], list[_Instance]]:
    """Give every spell its class, bin and track id; workers walk to the station between actions."""
    workers: list[_Worker] = []
    instances: list[_Instance] = []
    for w, (spells, spell_classes) in enumerate(zip(timelines, classes)):
        home = 0.3 + 0.4 * w / max(1, len(timelines) - 1) if len(timelines) > 1 else 0.5
        x_track = np.full(num_frames, home, np.float32)
        frame, position = 0, home
        for (start, length), spec_index in zip(spells, spell_classes):
            bin_index = int(rng.integers(0, 3))
            target = _worker_x_for(ACTIONS[spec_index], scene, bin_index, home)
            x_track[frame:start] = np.linspace(position, target, start - frame)
            x_track[start : start + length] = target
            position, frame = target, start + length
            instances.append(_Instance(spec_index, start, start + length - 1, w, bin_index, track_base + len(instances)))
        x_track[frame:] = np.linspace(position, home, num_frames - frame)
        workers.append(_Worker(SHIRTS[int(rng.integers(0, len(SHIRTS)))], home, x_track))
    return workers, instances


def _worker_x_for(spec: ActionSpec, scene: _Scene, bin_index: int, home: float) -> float:
    """Where a worker stands to do ``spec``: beside the station of the path's start and end."""
    xs = [scene.station(s, home, bin_index)[0] / scene.width for s in (spec.start, spec.end) if s not in ("mouth", "ear", "pocket")]
    return float(np.clip(np.mean(xs) - 0.05, 0.08, 0.92)) if xs else home


def _arm(shoulder: tuple[float, float], hand: tuple[float, float], length: float, outward: float) -> tuple[int, int]:
    """Elbow of a two-segment arm of equal segments ``length``, bent to the side ``outward`` (±1)."""
    sx, sy = shoulder
    hx, hy = hand
    dx, dy = hx - sx, hy - sy
    dist = max(math.hypot(dx, dy), 1e-6)
    half = min(dist / 2, length)
    bend = math.sqrt(max(length**2 - half**2, 0.0))
    mx, my = sx + dx / 2, sy + dy / 2
    return int(mx - dy / dist * bend * outward), int(my + dx / dist * bend * outward)


def _draw_held(image: np.ndarray, held: str, hand: tuple[float, float], u: float, phase: float, food: tuple[int, int, int]) -> list[tuple[float, float, float, float]]:
    """Draw what the hand holds; return the pixel boxes it covers."""
    hx, hy = hand
    boxes = []
    if held in ("tong", "tong_item"):
        tip = (hx + 3 * u, hy + 14 * u)
        cv2.line(image, (int(hx), int(hy)), (int(tip[0] - 2 * u), int(tip[1])), (200, 200, 210), max(1, int(u)))
        cv2.line(image, (int(hx + 2 * u), int(hy)), (int(tip[0] + 2 * u), int(tip[1])), (200, 200, 210), max(1, int(u)))
        boxes.append((hx - 1 * u, hy, tip[0] + 3 * u, tip[1] + 1 * u))
        if held == "tong_item":
            cv2.circle(image, (int(tip[0]), int(tip[1] + 2 * u)), int(3 * u), food, -1)
            boxes.append((tip[0] - 3 * u, tip[1] - u, tip[0] + 3 * u, tip[1] + 5 * u))
    elif held == "phone":
        cv2.rectangle(image, (int(hx - 3 * u), int(hy - 7 * u)), (int(hx + 3 * u), int(hy + 5 * u)), (20, 20, 20), -1)
        boxes.append((hx - 3 * u, hy - 7 * u, hx + 3 * u, hy + 5 * u))
    elif held == "cup":
        cv2.rectangle(image, (int(hx - 4 * u), int(hy - 10 * u)), (int(hx + 4 * u), int(hy + 2 * u)), (40, 40, 200), -1)
        boxes.append((hx - 4 * u, hy - 10 * u, hx + 4 * u, hy + 2 * u))
    elif held == "cash":
        cv2.rectangle(image, (int(hx - 6 * u), int(hy - 3 * u)), (int(hx + 6 * u), int(hy + 3 * u)), (80, 170, 80), -1)
        boxes.append((hx - 6 * u, hy - 3 * u, hx + 6 * u, hy + 3 * u))
    elif held == "cloth":
        cv2.ellipse(image, (int(hx), int(hy + 2 * u)), (int(8 * u), int(4 * u)), 0, 0, 360, (230, 200, 150), -1)
        boxes.append((hx - 8 * u, hy - 2 * u, hx + 8 * u, hy + 6 * u))
    elif held == "bottle":
        angle = 0.6 + 0.3 * math.sin(phase)
        bx, by = hx + 10 * u * math.sin(angle), hy + 10 * u * math.cos(angle)
        cv2.line(image, (int(hx), int(hy)), (int(bx), int(by)), (0, 200, 230), max(2, int(4 * u)))
        cv2.circle(image, (int(bx + 2 * u), int(by + 4 * u)), max(1, int(u)), (20, 20, 200), -1)
        boxes.append((min(hx, bx) - 2 * u, min(hy, by) - 2 * u, max(hx, bx) + 4 * u, max(hy, by) + 6 * u))
    elif held == "lid":
        cv2.ellipse(image, (int(hx), int(hy + 3 * u)), (int(7 * u), int(3 * u)), 0, 0, 360, (245, 245, 245), -1)
        boxes.append((hx - 7 * u, hy, hx + 7 * u, hy + 6 * u))
    return boxes


def _render_video(task: tuple) -> list[tuple]:
    """Render one video to ``path``; return its annotation rows (frame, x1, y1, x2, y2, class, track)."""
    path, view_index, num_frames, size, fps, seed, timelines, classes, track_base, object_scale = task
    rng = np.random.default_rng(seed)
    width, height = size
    scene = _Scene(VIEWS[view_index], width, height, rng, object_scale)
    u = scene.unit
    workers, instances = _place_workers(rng, scene, num_frames, timelines, classes, track_base)
    acting: dict[tuple[int, int], _Instance] = {}
    for inst in instances:
        for f in range(inst.start, inst.end + 1):
            acting[(inst.worker, f)] = inst
    noise = [rng.normal(0, 4, (height, width, 3)).astype(np.int16) for _ in range(8)]
    light_phase, light_period = rng.uniform(0, 2 * math.pi), rng.uniform(200, 600)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write mp4 (no mp4v encoder)")
    rows: list[tuple] = []
    arm_length = 0.24 * height
    try:
        for f in range(num_frames):
            image = scene.background.copy()
            for w, worker in enumerate(workers):
                inst = acting.get((w, f))
                box = _draw_worker(image, scene, worker, w, f, inst, arm_length, u)
                if inst is not None and box is not None:
                    jitter = rng.normal(0, 1.0, 4).clip(-2, 2)
                    x1, y1, x2, y2 = (np.array(box) + jitter).tolist()
                    x1, y1 = max(0.0, x1), max(0.0, y1)
                    x2, y2 = min(float(width), x2), min(float(height), y2)
                    if x2 - x1 >= 2 and y2 - y1 >= 2:
                        rows.append((f, x1, y1, x2, y2, inst.spec_index, inst.track))
            gain = 1.0 + 0.08 * math.sin(2 * math.pi * f / light_period + light_phase)
            frame = np.clip(image.astype(np.int16) * gain + noise[f % len(noise)], 0, 255).astype(np.uint8)
            writer.write(frame)
    finally:
        writer.release()
    return rows


def _draw_worker(image: np.ndarray, scene: _Scene, worker: _Worker, w: int, f: int, inst: _Instance | None, arm_length: float, u: float) -> tuple | None:
    """Draw one worker at frame ``f``; return the action box (hand + held object) if acting."""
    height, width = image.shape[:2]
    cx = float(worker.x_track[f]) * width
    head_y, shoulder_y, hip_y = 0.14 * height, 0.28 * height, scene.layout.counter_top * height
    torso_half = 11 * u
    cv2.rectangle(image, (int(cx - torso_half), int(shoulder_y - 3 * u)), (int(cx + torso_half), int(hip_y)), worker.shirt, -1)
    cv2.circle(image, (int(cx), int(head_y)), int(9 * u), SKIN, -1)
    cv2.circle(image, (int(cx), int(head_y - 5 * u)), int(8 * u), (30, 30, 40), -1)
    sway = math.sin(f / 9.0 + w) * 3 * u
    hands = {"left": (cx - 14 * u, hip_y - 8 * u + sway), "right": (cx + 14 * u, hip_y - 8 * u - sway)}
    held, phase, food, acting_side = "", 0.0, BIN_FOODS[0], None
    if inst is not None:
        spec = ACTIONS[inst.spec_index]
        t = (f - inst.start) / max(1, inst.end - inst.start)
        t = 0.5 - 0.5 * math.cos(math.pi * t)
        a = scene.station(spec.start, worker.x_track[f], inst.bin_index)
        b = scene.station(spec.end, worker.x_track[f], inst.bin_index)
        phase = (f - inst.start) * 0.8
        hx = a[0] + (b[0] - a[0]) * t + spec.wiggle * height * math.cos(phase)
        hy = a[1] + (b[1] - a[1]) * t + spec.wiggle * height * math.sin(phase)
        acting_side = "right" if hx >= cx else "left"
        hands[acting_side] = (hx, hy)
        held, food = spec.held, BIN_FOODS[inst.bin_index]
    boxes: list[tuple[float, float, float, float]] = []
    for side, hand in hands.items():
        outward = 1.0 if side == "right" else -1.0
        shoulder = (cx + outward * torso_half, shoulder_y)
        elbow = _arm(shoulder, hand, arm_length, -outward)
        cv2.line(image, (int(shoulder[0]), int(shoulder[1])), elbow, worker.shirt, max(2, int(5 * u)))
        cv2.line(image, elbow, (int(hand[0]), int(hand[1])), SKIN, max(2, int(4 * u)))
        cv2.circle(image, (int(hand[0]), int(hand[1])), int(3.5 * u), SKIN, -1)
        if side == acting_side:
            boxes.append((hand[0] - 4 * u, hand[1] - 4 * u, hand[0] + 4 * u, hand[1] + 4 * u))
            boxes += _draw_held(image, held, hand, u, phase, food)
    if not boxes:
        return None
    array = np.array(boxes)
    pad = 1.5 * u
    return (array[:, 0].min() - pad, array[:, 1].min() - pad, array[:, 2].max() + pad, array[:, 3].max() + pad)


def _class_slots(rng: np.random.Generator, num_slots: int, spec_indices: list[int], long_tail: bool) -> list[int]:
    """Action (index into ``ACTIONS``) of every slot: counts proportional to the weights, each at least once, shuffled.

    Counts are set over the whole dataset, so the long tail holds exactly: with 140 slots the
    most frequent class (weight 10) gets 25 clips and the rarest (weight 0.6) gets 1. Without
    the long tail every action gets the same weight.
    """
    weights = np.array([ACTIONS[i].weight if long_tail else 1.0 for i in spec_indices])
    counts = np.maximum(1, np.floor(weights / weights.sum() * num_slots)).astype(int)
    remainder = num_slots - counts.sum()
    order = np.argsort(-weights)
    counts[order[: max(0, remainder)]] += 1
    slots = np.repeat(np.array(spec_indices), counts)
    rng.shuffle(slots)
    return slots.tolist()


def _spec_indices(actions: Sequence[str] | None) -> list[int]:
    """Indices into ``ACTIONS`` of the named actions (all of them for ``None``), in ``ACTIONS`` order."""
    if actions is None:
        return list(range(len(ACTIONS)))
    names = [spec.name for spec in ACTIONS]
    unknown = sorted(set(actions) - set(names))
    if unknown:
        raise ValueError(f"unknown synthetic actions {unknown}; the generator draws {names}")
    if not actions:
        raise ValueError("actions is empty: name at least one synthetic action")
    return [i for i, name in enumerate(names) if name in set(actions)]


def make_synthetic_dataset(
    root: str | Path,
    num_videos: int = 8,
    frames_per_video: int = 900,
    size: tuple[int, int] = (320, 180),
    fps: int = 30,
    seed: int = 0,
    workers: int = 2,
    object_scale: float = 1.0,
    actions: Sequence[str] | None = None,
    long_tail: bool = True,
    val_videos: int = 0,
) -> ActionAnnotations:
    """Generate the synthetic restaurant dataset in the canonical layout.

    Videos alternate between the two camera views. Every frame is annotated
    (``annotated_ranges.csv`` covers whole videos), so an unlabelled frame is background.

    Args:
        root: output folder (``classes.txt``, ``annotations.csv``, ``annotated_ranges.csv``,
            ``videos/cam<view>_<index>.mp4``).
        num_videos: number of videos.
        frames_per_video: frames per video.
        size: frame ``(width, height)`` in pixels.
        fps: frame rate written to the files.
        seed: the same seed gives the same dataset.
        workers: processes rendering videos in parallel.
        object_scale: size of workers, hands and tools relative to the default (1.0: a hand
            with its tool spans about 12×20 px of a 320×180 frame); larger values suit
            training at low resolution on a CPU.
        actions: draw only these actions (names from ``ACTIONS``; ``classes.txt`` lists only
            them, in ``ACTIONS`` order); all 13 by default.
        long_tail: counts follow the actions' long-tailed weights (default); ``False`` draws
            every action equally often, for experiments that need each class well represented.
        val_videos: when positive, also write ``splits.json`` holding out the last
            ``val_videos`` videos (the views alternate, so 2 hold out one video of each view):
            every datamodule then validates on the same unseen videos.

    Returns:
        The loaded, validated annotations.
    """
    root = Path(root)
    if not 0 <= val_videos < num_videos:
        raise ValueError(f"val_videos must be in [0, num_videos={num_videos}), got {val_videos}")
    (root / "videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f"cam{index % len(VIEWS)}_{index:03d}" for index in range(num_videos)]
    video_seeds = [int(s) for s in rng.integers(0, 2**31, num_videos)]
    timelines = [_plan_timelines(np.random.default_rng(s), frames_per_video) for s in video_seeds]
    spec_indices = _spec_indices(actions)
    slots = iter(_class_slots(rng, sum(len(spells) for video in timelines for spells in video), spec_indices, long_tail))
    classes = [[[next(slots) for _ in spells] for spells in video] for video in timelines]
    tasks = [
        (root / "videos" / f"{name}.mp4", index % len(VIEWS), frames_per_video, tuple(size), fps, video_seeds[index] + 1,
         timelines[index], classes[index], 1000 * index, object_scale)
        for index, name in enumerate(names)
    ]
    render: Callable = _render_video
    if workers > 1 and num_videos > 1:
        with ProcessPoolExecutor(max_workers=min(workers, num_videos)) as pool:
            results = list(pool.map(render, tasks))
    else:
        results = [render(task) for task in tasks]
    (root / "classes.txt").write_text("".join(f"{ACTIONS[i].name}\n" for i in spec_indices), encoding="utf-8")
    lines = ["video,frame,x1,y1,x2,y2,action,track"]
    for name, rows in zip(names, results):
        lines += [f"{name},{f},{x1:.2f},{y1:.2f},{x2:.2f},{y2:.2f},{ACTIONS[c].name},{t}" for f, x1, y1, x2, y2, c, t in rows]
    (root / "annotations.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "annotated_ranges.csv").write_text(
        "video,start,end\n" + "".join(f"{name},0,{frames_per_video - 1}\n" for name in names), encoding="utf-8"
    )
    if val_videos:
        split = {"train": names[: num_videos - val_videos], "val": names[num_videos - val_videos :]}
        (root / "splits.json").write_text(json.dumps(split, indent=1) + "\n", encoding="utf-8")
    logger.info("wrote %d synthetic videos to %s", num_videos, root)
    return ActionAnnotations.load(root)

"""Tests of restaurant_action/data/splits.py: 120-frame block split, item split, splits.json."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from restaurant_action.data.splits import BLOCK_FRAMES, block_split, item_split, read_video_split
from restaurant_action.errors import DatasetError

lengths_strategy = st.dictionaries(st.sampled_from(["v0", "v1", "v2", "v3", "v4"]), st.integers(1, 1000), min_size=1)


def _blocks(lengths: dict[str, int], block_frames: int = BLOCK_FRAMES) -> int:
    return sum(-(-n // block_frames) for n in lengths.values())


@settings(max_examples=60, deadline=None)
@given(
    lengths=lengths_strategy,
    val_fraction=st.floats(0, 0.95),
    seed=st.integers(0, 2**16),
    block_frames=st.sampled_from([120, 50, 7]),
)
def test_block_split_keeps_blocks_whole_and_covers_every_frame_once(lengths, val_fraction, seed, block_frames):
    split = block_split(lengths, val_fraction, block_frames=block_frames, seed=seed)

    assert set(split["train"]) == set(split["val"]) == set(lengths)
    val_blocks = 0
    for video, n in lengths.items():
        train, val = split["train"][video], split["val"][video]
        assert train.dtype == np.int64 and val.dtype == np.int64
        assert (np.diff(train) > 0).all() and (np.diff(val) > 0).all()
        np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(n))
        for part in (train, val):  # a block is wholly in train or wholly in val
            for block in np.unique(part // block_frames):
                whole = np.arange(block * block_frames, min(n, (block + 1) * block_frames))
                np.testing.assert_array_equal(part[part // block_frames == block], whole)
        val_blocks += len(np.unique(val // block_frames))
    assert val_blocks == round(val_fraction * _blocks(lengths, block_frames))


def test_block_split_fraction_of_frames_is_the_fraction_asked():
    lengths = {"a": 1200, "b": 2400, "c": 1200}  # 40 whole blocks
    for fraction in (0.1, 0.2, 0.5):
        split = block_split(lengths, fraction, seed=3)
        val_frames = sum(len(v) for v in split["val"].values())
        assert val_frames == round(fraction * 40) * 120
    split = block_split({"a": 10_000, "b": 7_777}, 0.2, seed=0)
    assert sum(len(v) for v in split["val"].values()) / 17_777 == pytest.approx(0.2, abs=0.01)


def test_block_split_draws_blocks_from_every_video_together():
    split = block_split({f"v{i}": 240 for i in range(10)}, 0.2, seed=0)
    assert sum(len(v) > 0 for v in split["val"].values()) >= 2  # 4 val blocks are not all one video's


def test_block_split_docstring_example():
    split = block_split({"v": 300}, 0.34, seed=0)
    val = split["val"]["v"]
    assert val.tolist() in (list(range(0, 120)), list(range(120, 240)), list(range(240, 300)))


def test_block_split_is_seeded():
    lengths = {"a": 3000, "b": 2000}
    first, again, other = block_split(lengths, 0.2, seed=1), block_split(lengths, 0.2, seed=1), block_split(lengths, 0.2, seed=2)
    for video in lengths:
        np.testing.assert_array_equal(first["val"][video], again["val"][video])
    assert any(not np.array_equal(first["val"][v], other["val"][v]) for v in lengths)


def test_block_split_without_val_puts_everything_in_train():
    split = block_split({"a": 500}, 0.0)
    np.testing.assert_array_equal(split["train"]["a"], np.arange(500))
    assert split["val"]["a"].size == 0


@pytest.mark.parametrize("fraction", [1.0, -0.1, 1.5])
def test_split_fractions_outside_0_1_are_rejected(fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        block_split({"a": 500}, fraction)
    with pytest.raises(ValueError, match="val_fraction"):
        item_split(["x", "y"], fraction)


# ---------------------------------------------------------------------------------- item split


@settings(max_examples=60, deadline=None)
@given(count=st.integers(0, 200), val_fraction=st.floats(0, 0.95), seed=st.integers(0, 2**16))
def test_item_split_partitions_in_input_order(count, val_fraction, seed):
    items = [("clip", i) for i in range(count)]

    train, val = item_split(items, val_fraction, seed=seed)

    assert len(val) == round(val_fraction * count)
    assert sorted(train + val) == items
    assert not set(train) & set(val)
    assert train == sorted(train) and val == sorted(val)


def test_item_split_is_seeded():
    items = [f"clip{i}" for i in range(50)]
    assert item_split(items, 0.2, seed=4) == item_split(items, 0.2, seed=4)
    assert item_split(items, 0.2, seed=4)[1] != item_split(items, 0.2, seed=5)[1]


# ---------------------------------------------------------------------------------- splits.json


def test_read_video_split_reads_the_lists(tmp_path):
    path = tmp_path / "splits.json"
    path.write_text('{"train": ["a", "c"], "val": ["b"]}', encoding="utf-8")
    assert read_video_split(path, ["a", "b", "c"]) == {"train": ["a", "c"], "val": ["b"]}


def test_read_video_split_without_a_file_is_none(tmp_path):
    assert read_video_split(tmp_path / "splits.json", ["a"]) is None


def test_read_video_split_bad_json_names_the_file_and_line(tmp_path):
    path = tmp_path / "splits.json"
    path.write_text('{\n  "train": ["a"],\n  "val": ["b",]\n}\n', encoding="utf-8")
    with pytest.raises(DatasetError) as caught:
        read_video_split(path, ["a", "b"])
    assert caught.value.line == 3
    assert "splits.json, line 3" in str(caught.value) and "JSON" in str(caught.value)


@pytest.mark.parametrize("text", ['["a", "b"]', '{"train": ["a"]}', '{"val": ["a"]}'])
def test_read_video_split_needs_train_and_val(tmp_path, text):
    path = tmp_path / "splits.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError, match='"train" and "val"') as caught:
        read_video_split(path, ["a", "b"])
    assert "splits.json" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"train": ["a"], "val": ["zz"]}', "\"val\" names video 'zz'"),
        ('{"train": ["a", "q"], "val": []}', "\"train\" names video 'q'"),
    ],
)
def test_read_video_split_rejects_an_unknown_video(tmp_path, text, fragment):
    path = tmp_path / "splits.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError) as caught:
        read_video_split(path, ["a", "b"])
    assert fragment in str(caught.value) and "splits.json" in str(caught.value)

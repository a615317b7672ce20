"""Hypothesis strategies shared by the parsers' property-based tests."""

from __future__ import annotations

from hypothesis import strategies as st


@st.composite
def pixel_boxes(draw: st.DrawFn, width: int, height: int) -> tuple[int, int, int, int]:
    """An integer ``(x1, y1, x2, y2)`` box with area, inside a ``width`` × ``height`` frame."""
    x1, y1 = draw(st.integers(0, width - 2)), draw(st.integers(0, height - 2))
    return x1, y1, draw(st.integers(x1 + 1, width)), draw(st.integers(y1 + 1, height))

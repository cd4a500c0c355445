"""Sizes as people write them on flags and read them on the page, the CLI and the demo."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snapsync.errors import InputError
from snapsync.units import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "size"), [("1GiB", 2**30), ("500 MB", 500 * 10**6), ("250k", 250_000), ("0", 0)]
)
def test_sizes_as_people_write_them(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MB", "5 parsecs", "1.2.3MB"])
def test_a_size_that_is_not_one_names_what_was_wrong(text: str) -> None:
    with pytest.raises(InputError, match="size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (999, "999 B"), (3_420, "3.42 kB"), (180_000, "180.0 kB"), (2 * 10**6, "2.00 MB")],
)
def test_sizes_as_people_read_them(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.integers(min_value=0, max_value=10**13))
def test_what_is_shown_reads_back_within_its_rounding(size: int) -> None:
    shown = format_size(size)
    assert abs(parse_size(shown) - size) <= max(1, size // 200)

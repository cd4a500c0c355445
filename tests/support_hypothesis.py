"""Hypothesis settings derived from the active profile (tests/conftest.py: dev, ci, long).

A test whose every example is expensive runs a share of the profile's examples instead of a
fixed number, so `long` still lengthens it and `ci` still shortens it.
"""

from __future__ import annotations

from hypothesis import settings


def expensive(share: float) -> settings:
    """`share` of the active profile's max_examples (at least 1), the rest of it unchanged.

    Read when the test module is imported, after conftest and `--hypothesis-profile` loaded it.
    """
    return settings(max_examples=max(1, round(settings.default.max_examples * share)))

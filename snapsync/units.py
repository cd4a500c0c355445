"""Byte counts as people write and read them, one way everywhere (flags, the page, the CLI).

Decimal units (kB, MB, GB) are what data plans bill; binary suffixes (KiB, MiB, GiB) are accepted
on input because people copy them from `free` and Kubernetes limits.
"""

from __future__ import annotations

from snapsync.errors import InputError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}


def parse_size(text: str) -> int:
    """`500MB`, `1GiB`, `250k`, `0` -> bytes."""
    cleaned = text.strip().lower().replace(" ", "")
    number = cleaned.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = cleaned[len(number) :]
    if unit not in _UNITS or not number:
        raise InputError(f"size {text!r}: expected a number with an optional unit (MB, GiB, ...)")
    try:
        return int(float(number) * _UNITS[unit])
    except ValueError:
        raise InputError(f"size {text!r} is not a number") from None


def format_size(n: float) -> str:
    """512 B, 3.42 kB, 12.1 MB: three significant figures or so, decimal units."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            value = n / scale
            return f"{value:.2f} {unit}" if value < 10 else f"{value:.1f} {unit}"
    return f"{n:.0f} B"

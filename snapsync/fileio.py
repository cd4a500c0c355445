"""Files written so that a crash leaves either the old content or the new, never half of either."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from snapsync.errors import InputError


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write, fsync, rename over the target, fsync the directory."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise InputError(f"{target}: cannot write: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def display_name(path: str) -> str:
    return "<stdin>" if path == "-" else path


def read_unnamed(path: str) -> bytes:
    """A file's bytes, or standard input's for `-`.

    The InputError says what failed, not which file: for readers whose caller names the file
    along with what else went wrong in it.
    """
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError("no such file") from None
    except IsADirectoryError:
        raise InputError("is a directory") from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}") from None


def read_input(path: str) -> bytes:
    """A file's bytes, or standard input's for `-`, with a one-line error naming the file."""
    try:
        return read_unnamed(path)
    except InputError as exc:
        raise InputError(f"{display_name(path)}: {exc}") from None

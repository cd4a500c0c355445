"""Files as people hand them to us: written atomically, read from a path or stdin, as text.

A crash while writing leaves either the old content or the new, never half of either. Text input
(kubectl dumps) may come gzip- or zstd-compressed, recognised by magic bytes, never by the file
name; what is not text is described by what it looks like, so a wrong file is a one-line fix.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Protocol

import zstandard

from snapsync.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MAX_TEXT_INPUT = 2**30  # bytes a compressed dump may inflate to (a 50k-object dump is ~300 MB)

# What binary input looks like, by its first bytes: for the hint when it is not text.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"SSYN", "a snapsync frame (a .snap file: `snapsync inspect` reads those)"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (unzip it first)"),
    (b"BZh", "bzip2-compressed data (decompress it first; gzip and zstd are read as they are)"),
    (
        b"\xfd7zXZ\x00",
        "xz-compressed data (decompress it first; gzip and zstd are read as they are)",
    ),
    (b"\x7fELF", "an executable program (ELF)"),
    (b"SQLite format 3\x00", "an SQLite database"),
)


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


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def read_text(path: str, limit: int = MAX_TEXT_INPUT) -> str:
    """A text file (or stdin), gzip- or zstd-compressed or not, UTF-8 or UTF-16 with a BOM.

    The InputError says what failed, not which file (as `read_unnamed`).
    """
    data = decompressed(read_unnamed(path), limit)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # PowerShell's `>` writes UTF-16
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise InputError(
                "not valid UTF-16 text, although it starts with a UTF-16 mark"
            ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text: it looks like {describe_binary(data, exc)}") from None


def decompressed(data: bytes, limit: int = MAX_TEXT_INPUT) -> bytes:
    """`data` inflated when it is a gzip or zstd stream, else as it is; at most `limit` bytes."""
    if data.startswith(GZIP_MAGIC):
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
                return _capped(stream, limit, "gzip")
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"not valid gzip data: {exc}") from None
    if data.startswith(ZSTD_MAGIC):
        reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
        try:
            with reader:
                return _capped(reader, limit, "zstd")
        except zstandard.ZstdError as exc:
            raise InputError(f"not valid zstd data: {exc}") from None
    return data


def _capped(stream: _Readable, limit: int, codec: str) -> bytes:
    """Everything `stream` yields, refusing more than `limit` bytes before holding them."""
    chunks: list[bytes] = []
    size = 0
    while chunk := stream.read(min(1 << 20, limit + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise InputError(f"{codec} data inflates to more than {limit:,} bytes")
    return b"".join(chunks)


def describe_binary(data: bytes, error: UnicodeDecodeError | None = None) -> str:
    """What bytes that are not UTF-8 text look like: a known format, text in another
    encoding, or binary data."""
    for signature, what in _SIGNATURES:
        if data.startswith(signature):
            return what
    if len(data) > 262 and data[257:262] == b"ustar":
        return "a tar archive (extract it first)"
    head = data[:4096]
    printable = sum(32 <= b < 127 or b in b"\t\r\n" for b in head)
    if error is not None and printable >= 0.9 * len(head):
        byte = data[error.start]
        return (
            f"text in another encoding (byte 0x{byte:02x} at offset {error.start}, perhaps "
            "Latin-1): save it as UTF-8"
        )
    return f"binary data ({len(data):,} bytes starting {data[:8].hex(' ')})"

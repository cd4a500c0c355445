"""collect.jsontext.loads is json.loads, faster: the same value (types, key order, signed zeros,
NaN) or the same error, on generated documents, number and string edge cases, and texts mutated
byte by byte."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snapsync.collect import jsontext

NUMBERS = st.one_of(
    st.integers(),
    st.integers(-(2**64), 2**64),
    st.floats(),  # NaN and infinities included: json writes NaN, Infinity
    st.floats(width=32),
)
VALUES = st.recursive(
    st.none() | st.booleans() | NUMBERS | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=30,
)
NUMBER_TEXT = st.from_regex(
    r"-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,40})?([eE][-+]?[0-9]{1,4})?", fullmatch=True
)


def outcome(text: bytes, decode: Any) -> tuple[str, str]:
    """What decoding gives, in a form where equal means the very same value or error type."""
    try:
        return ("value", strict_repr(decode(text)))
    except ValueError as exc:
        return ("error", type(exc).__name__)
    except RecursionError:
        return ("error", "RecursionError")


def strict_repr(value: Any) -> str:
    """repr with every type and float bit pattern spelt out (1 == 1.0 == True in Python)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{k!r}:{strict_repr(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(map(strict_repr, value)) + "]"
    if isinstance(value, float):
        return f"float:{value.hex() if math.isfinite(value) else repr(value)}"
    return f"{type(value).__name__}:{value!r}"


def same_as_json(text: bytes) -> None:
    assert outcome(text, jsontext.loads) == outcome(text, json.loads)


@given(VALUES, st.booleans(), st.booleans())
def test_documents_decode_as_json_decodes_them(value: Any, ascii: bool, spaced: bool) -> None:
    separators = (", ", ": ") if spaced else (",", ":")
    same_as_json(json.dumps(value, ensure_ascii=ascii, separators=separators).encode())


@given(NUMBER_TEXT)
def test_numbers_decode_to_the_same_value(text: str) -> None:
    same_as_json(text.encode())
    same_as_json(f'{{"n":[{text}]}}'.encode())


@given(VALUES, st.data())
def test_mutated_texts_are_accepted_or_refused_as_json_does(
    value: Any, data: st.DataObject
) -> None:
    text = bytearray(json.dumps(value).encode())
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text)))
        action = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = data.draw(
            st.sampled_from(b'{}[],:"\\ \t\n\x00\x7f\xc3\xa9\xed\xa0\x80eE.+-0123456789NaIfinty')
        )
        if action == "insert":
            text[at:at] = bytes([byte])
        elif at < len(text):
            text[at : at + 1] = b"" if action == "delete" else bytes([byte])
    same_as_json(bytes(text))


@pytest.mark.parametrize(
    "text",
    [
        b"NaN",
        b"-Infinity",
        b"[Infinity]",
        b"1e400",
        b"-1e400",
        b"1e-400",
        b"1.7976931348623159e308",
        b"18446744073709551615",
        b"18446744073709551616",
        b"-9223372036854775809",
        b"1" * 400,
        b"123456789012345678",
        b"1234567890123456789",
        b"0.1234567890123456789",
        b'"\\ud800"',
        b'"\xed\xa0\x80"',
        b'"\\ud83d\\ude00"',
        b'"a\tb"',
        b'"\\u0000"',
        b"\xef\xbb\xbf{}",
        '{"a": "é"}'.encode("utf-16"),
        '{"a": 1}'.encode("utf-32-le"),
        b'{"a":1,"b":2,"a":3}',
        b"-0",
        b"-0.0",
        b"01",
        b"[1,]",
        b"{} x",
        b"",
        b" ",
        b"[" * 2000 + b"]" * 2000,
        b"\xff",
    ],
)
def test_edge_cases_decode_as_json_decodes_them(text: bytes) -> None:
    same_as_json(text)


def test_a_text_beyond_the_fast_limit_decodes_as_json_decodes_it() -> None:
    big = json.dumps({"items": [{"n": i, "s": "x" * 50} for i in range(2000)]}).encode()
    assert len(big) > jsontext.FAST_LIMIT
    same_as_json(big)
    same_as_json(big[:-1])

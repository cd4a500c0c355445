"""JSON text from the API server, decoded exactly as the json module decodes it, ~4x faster.

Watch events are decoded in the agent's watch threads, ~140 us per event of a typical object
with the json module: a fifth of a steady cycle's CPU. orjson parses strict RFC 8259 JSON in C,
but the json module accepts more (NaN and Infinity, numbers beyond a float's range as infinity,
lone surrogates, UTF-16 and UTF-32, a UTF-8 byte order mark) and keeps integers of any size,
which orjson turns into floats when they do not fit in 64 bits. So:

- orjson decodes only a text without a run of 19 or more digits: every integer in it then has
  at most 18 digits, which 64 bits hold exactly;
- and only a text of at most 64 KiB (a watch event): parsing LIST pages with orjson left the
  agent ~10 MB more resident at 10,000 objects (measured on the real agent), for a saving made
  once per list, not per cycle;
- any other text, and every text orjson refuses, goes to the json module, which accepts or
  refuses it as it always did.

The values and errors are therefore json's; only the time is orjson's (tests/test_jsontext.py
compares the two on generated documents, edge cases and mutated texts).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19  # 10**18 - 1 < 2**63 - 1: an 18-digit integer fits in 64 bits
FAST_LIMIT = 2**16  # bytes: watch events, not LIST pages


def loads(text: bytes) -> Any:
    """`json.loads(text)`: the same value, or the same error."""
    if len(text) <= FAST_LIMIT and _LONG_RUN not in text.translate(_DIGITS):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)

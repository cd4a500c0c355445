"""RFC 3339 times as leaves carry them: seconds and fraction digits, parsed only when they format
back to exactly the same text (so a TIME leaf always decodes to the string it came from)."""

from __future__ import annotations

import calendar
import re
import time

_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
_UNPARSED = (0, "")  # a parse_time result no text has (no fraction is empty): not looked up yet


def parse_time(text: str) -> tuple[int, str | None] | None:
    """(epoch seconds, fraction digits or None) when `text` formats back to exactly itself."""
    if len(text) < 20 or len(text) > 30 or not text[0].isdigit():
        return None
    match = _TIME.fullmatch(text)
    if match is None:
        return None
    parts = [int(p) for p in match.groups()[:6]]
    try:
        seconds = calendar.timegm((*parts, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    if format_time(seconds) != text[:19]:
        return None
    return seconds, match.group(7)


def format_time(seconds: int) -> str:
    """`seconds` as RFC 3339 without zone or fraction, "" if out of range."""
    try:
        return time.strftime(_TIME_FORMAT, time.gmtime(seconds))
    except (ValueError, OverflowError, OSError):
        return ""


class TimeParses:
    """`parse_time`, remembered for one payload: a cycle writes the same few instants (and
    names) into many objects, and parsing one costs a regex, a timegm and a strftime. Holds one
    entry per distinct string asked about."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, str | None] | None] = {}

    def __call__(self, text: str) -> tuple[int, str | None] | None:
        parsed = self.seen.get(text, _UNPARSED)
        if parsed is _UNPARSED:
            parsed = self.seen[text] = parse_time(text)
        return parsed

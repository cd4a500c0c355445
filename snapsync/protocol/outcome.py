"""How an exchange ended, in the protocol's own words.

The protocol never sees an HTTP status: the agent's transport (snapsync.agent.transport) turns the
status it received into an `Outcome`, and the server's web layer (snapsync.server.app) turns the
outcome the server protocol chose into a status. Whatever else the web layer refuses on its own
(bad sizes, busy, a slow body) arrives at the agent as one of these words too.
"""

from __future__ import annotations

import enum


class Outcome(enum.Enum):
    OK = "ok"  # the answer body is the message asked for
    AUTH = "auth"  # our credentials were refused: a person must fix them
    BUSY = "busy"  # the server (or its storage) cannot serve now: later
    UNAVAILABLE = "unavailable"  # the server or a gateway failed, or timed out: later
    TOO_LARGE = "too-large"  # the request is larger than the server accepts
    MALFORMED = "malformed"  # the server could not read the request
    NOT_FOUND = "not-found"  # the server does not know the request's kind
    REFUSED = "refused"  # any other refusal: not later, no

    @property
    def retryable(self) -> bool:
        """A refusal that says "later", not "no"."""
        return self in (Outcome.BUSY, Outcome.UNAVAILABLE)

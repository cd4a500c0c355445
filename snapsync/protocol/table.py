"""The agent's phases and the transitions between them, as data (the h11/_state.py habit).

Theory of operation. The agent is always in one `Phase`. Each input the embedding code feeds it
(`Input`: a due time, a snapshot collected, a collection that failed, an answer with an outcome,
a transport failure) is looked up in `TRANSITIONS` under the current phase: a pair that is not
there is a misuse of the API (an answer when nothing is in flight) and raises
LocalProtocolError before anything changes. Otherwise the agent handles the input, and the phase
it then finds itself in must be one the table lists for that pair; anything else is our bug, and
raises too. So this table is the whole law of the agent's behaviour at phase level; what it
keeps besides the phase (the upload session, the reconciliation, the bases, the budget, due
times) is the detail inside a phase.

Print it with `python -m snapsync.protocol`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from snapsync.errors import LocalProtocolError


class Phase(enum.Enum):
    GREETING = "greeting"  # no pong since the start: only pings go out
    IDLE = "idle"  # nothing to upload, or not yet prepared: pings when due
    RECONCILING_KINDS = "reconciling kinds"  # a summary is due, unanswered
    RECONCILING_BUCKETS = "reconciling buckets"  # the buckets that differ are due
    UPLOADING = "uploading"  # an upload session with chunks to send
    WAITING_FOR_BUDGET = "waiting for budget"  # the pace or the period holds the work due back
    BACKING_OFF = "backing off"  # after a failure or a refusal: quiet until a time
    AWAITING_ANSWER = "awaiting answer"  # one request is in flight


class Input(enum.Enum):
    DUE = "due"  # next_request(now): whatever is due now may go out
    SNAPSHOT = "snapshot"  # snapshot_collected(snapshot, now)
    COLLECTION_FAILED = "collection failed"  # collection_failed(now)
    ANSWER = "answer"  # receive(request, outcome, body, now)
    TRANSPORT_FAILED = "transport failed"  # fail(request, now, reason)


_P = Phase
_AFTER_GREETING = frozenset(
    {
        _P.IDLE,
        _P.RECONCILING_KINDS,
        _P.RECONCILING_BUCKETS,
        _P.UPLOADING,
        _P.WAITING_FOR_BUDGET,
        _P.BACKING_OFF,
    }
)
# What a due time can lead to when the agent is free to act: a request in flight, or work held
# back by the budget, or (nothing due) the phase the agent is in.
_ACT = frozenset({_P.AWAITING_ANSWER, _P.WAITING_FOR_BUDGET})

TRANSITIONS: Mapping[Phase, Mapping[Input, frozenset[Phase]]] = {
    _P.GREETING: {
        Input.DUE: frozenset({_P.GREETING, _P.AWAITING_ANSWER}),
        Input.SNAPSHOT: frozenset({_P.GREETING}),
        Input.COLLECTION_FAILED: frozenset({_P.GREETING}),
    },
    _P.IDLE: {
        Input.DUE: _ACT | {_P.IDLE},
        Input.SNAPSHOT: frozenset({_P.IDLE}),
        Input.COLLECTION_FAILED: frozenset({_P.IDLE}),
    },
    _P.RECONCILING_KINDS: {
        Input.DUE: _ACT | {_P.RECONCILING_KINDS},
        Input.SNAPSHOT: frozenset({_P.RECONCILING_KINDS}),
        Input.COLLECTION_FAILED: frozenset({_P.RECONCILING_KINDS}),
    },
    _P.RECONCILING_BUCKETS: {
        Input.DUE: _ACT | {_P.RECONCILING_BUCKETS},
        Input.SNAPSHOT: frozenset({_P.RECONCILING_BUCKETS}),
        Input.COLLECTION_FAILED: frozenset({_P.RECONCILING_BUCKETS}),
    },
    _P.UPLOADING: {
        Input.DUE: _ACT | {_P.UPLOADING},
        # a newer snapshot replaces an upload the server confirmed nothing of
        Input.SNAPSHOT: frozenset({_P.UPLOADING, _P.IDLE}),
        Input.COLLECTION_FAILED: frozenset({_P.UPLOADING}),
    },
    # Held back by the pace or the period (snapsync.protocol.deferral). The agent is woken
    # when the budget says the work may go; a newer snapshot replaces the held-back upload
    # but leaves it waiting: only a due time asks the budget again, about the newest change.
    _P.WAITING_FOR_BUDGET: {
        Input.DUE: _ACT | _AFTER_GREETING,
        Input.SNAPSHOT: frozenset({_P.WAITING_FOR_BUDGET}),
        Input.COLLECTION_FAILED: frozenset({_P.WAITING_FOR_BUDGET}),
    },
    _P.BACKING_OFF: {
        Input.DUE: _ACT | _AFTER_GREETING,
        Input.SNAPSHOT: _AFTER_GREETING,
        Input.COLLECTION_FAILED: _AFTER_GREETING,
    },
    _P.AWAITING_ANSWER: {
        Input.DUE: frozenset({_P.AWAITING_ANSWER}),
        Input.SNAPSHOT: frozenset({_P.AWAITING_ANSWER}),
        Input.COLLECTION_FAILED: frozenset({_P.AWAITING_ANSWER}),
        Input.ANSWER: _AFTER_GREETING | {_P.GREETING},
        Input.TRANSPORT_FAILED: frozenset({_P.GREETING, _P.BACKING_OFF}),
    },
}


def allowed(phase: Phase, event: Input) -> frozenset[Phase]:
    """The phases `event` may lead to from `phase`; LocalProtocolError if it cannot happen."""
    after = TRANSITIONS[phase].get(event)
    if after is None:
        raise LocalProtocolError(f"the agent cannot take {event.value!r} when {phase.value!r}")
    return after


def render() -> str:
    """The table as text: one line per (phase, input), with the phases it may lead to."""
    width = max(len(p.value) for p in Phase)
    event_width = max(len(i.value) for i in Input)
    lines = []
    for phase, row in TRANSITIONS.items():
        for event, after in row.items():
            targets = ", ".join(p.value for p in Phase if p in after)
            lines.append(f"{phase.value:<{width}}  {event.value:<{event_width}}  -> {targets}")
    return "\n".join(lines)

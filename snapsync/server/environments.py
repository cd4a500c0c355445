"""Environments: registration (name, group, tags, edge id, agent secret) and secret lookup.

A registered environment has its own agent secret, generated here and shown once (the join
token an agent is pre-staged with: `--agent-secret`, or SNAPSYNC_AGENT_SECRET). The shared
AGENT_SECRET mode still works beside it: an edge id that is not registered authenticates with
the shared secret, when the server has one. A registered edge id never accepts the shared
secret, so one leaked site secret cannot speak for another site.

The secret is stored as is: HMAC verification needs it, and the database is the server's own.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from snapsync.errors import InputError
from snapsync.server.storage import Registration
from snapsync.server.store.registry import Registry

EDGE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
TAG = re.compile(r"[A-Za-z0-9._:/=-]{1,64}")


class AgentSecrets(Mapping[str, bytes]):
    """edge id -> agent secret, read from the registry on each request (several servers may
    share it, and an environment registered a second ago must work)."""

    def __init__(self, registry: Registry | None, shared: bytes | None) -> None:
        self.registry = registry
        self.shared = shared or None

    def __getitem__(self, edge_id: str) -> bytes:
        own = self.registry.agent_secret(edge_id) if self.registry is not None else None
        secret = own if own is not None else self.shared
        if secret is None:
            raise KeyError(edge_id)
        return secret

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


@dataclass(frozen=True)
class Enrollment:
    """What `snapsync env add` prints once: the agent needs both values."""

    registration: Registration
    token: str  # the environment's agent secret


def edge_id_for(name: str) -> str:
    """A readable edge id from a name: `Shop 17 (Berlin)` -> `shop-17-berlin`."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.")[:100]
    return slug or "env"


def enroll(
    registry: Registry,
    name: str,
    now: float,
    group: str = "",
    tags: tuple[str, ...] = (),
    edge_id: str | None = None,
) -> Enrollment:
    """Register an environment and generate its agent secret; InputError when taken or bad."""
    name, group = name.strip(), group.strip()
    if not name or len(name) > 200 or len(group) > 200:
        raise InputError("an environment needs a name of 1 to 200 characters (a group: 0 to 200)")
    if not (name + group).isprintable():
        raise InputError(
            "an environment's name and group are printable text (no control character)"
        )
    edge = edge_id or edge_id_for(name)
    if EDGE_ID.fullmatch(edge) is None:
        raise InputError(f"bad edge id {edge!r}: 1-128 of A-Z a-z 0-9 . _ -")
    bad = [t for t in tags if TAG.fullmatch(t) is None]
    if bad:
        raise InputError(f"bad tag {bad[0]!r}: 1-64 of A-Z a-z 0-9 . _ : / = -")
    token = secrets.token_urlsafe(32)
    registration = Registration(edge, name, group, tuple(dict.fromkeys(tags)), now)
    registry.register(registration, token.encode())
    return Enrollment(registration, token)

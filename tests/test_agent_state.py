"""The agent's persisted state: a typed, versioned document.

A state directory written before the format existed still loads (a fixture made by that code);
a state of an unknown format or shape is refused with one line naming the file and what is wrong,
and the file is left as it was. The in-memory store resumes an Agent as a directory does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import msgpack
import pytest

from snapsync.agent import Agent
from snapsync.agent.state import STATE_FILE, MemoryStateStore, StateDir
from snapsync.agent.transport import Answer
from snapsync.collect import FileCollector
from snapsync.errors import InputError, TransportError
from snapsync.protocol import AgentConfig, AgentProtocol, CommandResult
from snapsync.protocol.agent_state import FORMAT, AgentState
from snapsync.sim.sample_cluster import SampleCluster

PRE17 = Path(__file__).parent / "fixtures" / "agent_state_pre17"


@pytest.fixture
def pre17(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    shutil.copytree(PRE17, state, ignore=shutil.ignore_patterns("*.md"))
    return state


def test_a_state_directory_from_before_the_format_loads_and_resumes(pre17: Path) -> None:
    loaded = StateDir(pre17).load()
    assert loaded is not None
    state, snapshots = loaded
    assert state.format == FORMAT and len(snapshots) == 2
    assert state.upload is not None and (state.upload.kind, state.upload.confirmed) == (
        "delta",
        256,
    )
    agent = AgentProtocol(AgentConfig())
    agent.restore_state(state, snapshots)
    assert agent.acked is not None and agent.acked.seq == 1
    assert agent.latest is not None and agent.upload is not None
    assert agent.upload.confirmed == 256 and agent.upload.target is agent.latest
    assert agent.commands.cursor == 9
    assert agent.commands.results == [
        CommandResult(7, True, "done"),
        CommandResult(9, False, "interrupted: the agent restarted while running it"),
    ]
    assert agent.budget.used == state.budget_used > 0


def test_what_is_saved_loads_as_the_same_state(pre17: Path) -> None:
    loaded = StateDir(pre17).load()
    assert loaded is not None
    agent = AgentProtocol(AgentConfig())
    agent.restore_state(*loaded)
    saved = agent.export_state()
    StateDir(pre17).save(saved, agent.snapshots_to_keep())
    document = msgpack.unpackb((pre17 / STATE_FILE).read_bytes())
    assert document["format"] == FORMAT
    again = StateDir(pre17).load()
    assert again is not None and again[0] == saved
    assert AgentState.from_document(saved.document()) == saved


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"format": 2}, "agent state of format 2; this agent reads 1"),
        ({"format": 1, "surprise": True}, "unknown field(s) surprise"),
        ({"cursor": -1}, "field 'cursor' is not a non-negative integer"),
        ({"bases": "none"}, "field 'bases' is not a list"),
        ({"bases": [[1, b"short"]]}, "malformed version"),
        ({"upload": {"id": b"x"}}, "field 'upload' is not a map of"),
        ({"budget": [0.0]}, "field 'budget' is not [period start, bytes used]"),
        ({"latest": "abc"}, "field 'latest' is not a digest"),
    ],
)
def test_a_state_of_unknown_format_or_shape_is_refused_and_left_alone(
    pre17: Path, change: dict[str, object], problem: str
) -> None:
    state_file = pre17 / STATE_FILE
    document = msgpack.unpackb(state_file.read_bytes(), strict_map_key=False)
    state_file.write_bytes(msgpack.packb({**document, **change}, use_bin_type=True))
    before = state_file.read_bytes()
    with pytest.raises(InputError) as refused:
        StateDir(pre17).load()
    message = str(refused.value)
    assert message.startswith(f"{state_file}: ") and problem in message
    assert "\n" not in message
    assert state_file.read_bytes() == before


def test_a_state_that_is_not_a_map_is_refused(tmp_path: Path) -> None:
    StateDir(tmp_path)
    (tmp_path / STATE_FILE).write_bytes(msgpack.packb([1, 2, 3]))
    with pytest.raises(InputError, match="agent state is not a map"):
        StateDir(tmp_path).load()


class Unreachable:
    """A transport whose every request fails, as with no server at all."""

    def post(self, kind: str, body: bytes, limit: int) -> Answer:
        raise TransportError("connection refused", wire_bytes=0)

    def close(self) -> None:
        pass


def test_an_agent_over_a_memory_store_resumes_and_stamps_snapshots_with_its_clock(
    tmp_path: Path,
) -> None:
    dump = tmp_path / "dump.json"
    dump.write_text(json.dumps(SampleCluster(objects=20, seed=2).list_document()))
    store, now = MemoryStateStore(), 1_767_225_600.0

    def agent() -> Agent:
        return Agent(FileCollector([dump]), Unreachable(), store, clock=lambda: now, seed=1)

    first = agent()
    report = first.step()
    assert report.collected and report.exchanges == 1
    latest = first.protocol.latest
    assert latest is not None and latest.header.collected_at == "2026-01-01T00:00:00Z"
    again = agent()
    assert again.protocol.latest is not None
    assert again.protocol.latest.digest == latest.digest
    assert again.protocol.export_state() == first.protocol.export_state()

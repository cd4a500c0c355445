"""Secret values never leave the cluster unless the user opts in: checked on every output form."""

from __future__ import annotations

import base64
import contextlib
import json
import string
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from snapsync.agent import Agent, HttpTransport
from snapsync.canonical.canonicalize import canonicalize
from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import Snapshot, build_snapshot
from snapsync.cli import cli
from snapsync.codec.decode import decode_snapshot, snapshot_document
from snapsync.codec.encode import encode_snapshot
from snapsync.codec.payload import snapshot_payload
from snapsync.collect import FileCollector
from snapsync.collect.files import iter_objects
from snapsync.errors import CanonicalError
from snapsync.server import ServerSettings
from snapsync.server.environments import AgentSecrets, enroll
from snapsync.server.store import open_store
from tests.support_objects import NAME, secrets
from tests.support_server import live_server


def leaks(blob: bytes, values: list[bytes]) -> list[bytes]:
    forms = []
    for value in values:
        forms += [value, base64.b64encode(value)]
        with contextlib.suppress(UnicodeDecodeError):
            forms.append(json.dumps(value.decode())[1:-1].encode())
    return [form for form in forms if form in blob]


def distinctive(values: list[bytes]) -> bool:
    """Values too regular to tell apart from frame bytes (runs of zeros) prove nothing."""
    return all(len(set(v)) >= 5 for v in values)


def assert_no_leak(snapshot: Snapshot, values: list[bytes]) -> bytes:
    """No value in the snapshot's frame, payload or JSON document; returns the frame."""
    frame = encode_snapshot(snapshot)
    for blob in (frame, snapshot_payload(snapshot), json.dumps(snapshot_document(snapshot))):
        assert leaks(blob if isinstance(blob, bytes) else blob.encode(), values) == []
    return frame


@given(secrets())
def test_no_secret_value_in_snapshot_frame_payload_or_json(
    case: tuple[dict[str, Any], list[bytes]],
) -> None:
    secret, values = case
    assume(distinctive(values))
    for profile in ("default", "minimal"):
        snapshot = build_snapshot([secret], load_profile(profile))
        frame = assert_no_leak(snapshot, values)
        assert decode_snapshot(frame).digest == snapshot.digest


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secrets())
def test_no_secret_value_in_cli_output(
    tmp_path: Path, case: tuple[dict[str, Any], list[bytes]]
) -> None:
    secret, values = case
    assume(distinctive(values))
    source = tmp_path / "secret.json"
    source.write_text(json.dumps(secret))
    runner = CliRunner()
    for args in (["--format", "json"], ["-o", str(tmp_path / "s.snap")]):
        result = runner.invoke(cli, ["dump", "--from-file", str(source), *args])
        assert result.exit_code == 0, result.output
        assert leaks(result.stdout_bytes, values) == []
    snap = (tmp_path / "s.snap").read_bytes()
    assert leaks(snap, values) == []
    inspected = runner.invoke(cli, ["inspect", "--json", str(tmp_path / "s.snap")])
    assert inspected.exit_code == 0
    assert leaks(inspected.stdout_bytes, values) == []


def test_secret_values_are_digests_of_their_bytes() -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "prod"},
        "data": {"password": base64.b64encode(b"hunter2").decode()},
        "stringData": {"same": "hunter2"},
    }
    obj = next(iter(build_snapshot([secret], load_profile()).objects.values())).data
    expected = "sha256:f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7"
    assert obj["data"]["password"] == expected
    assert obj["stringData"]["same"] == expected


def test_reveal_secrets_is_an_explicit_opt_in() -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "prod"},
        "data": {"password": "aHVudGVyMg=="},
    }
    snapshot = build_snapshot([secret], load_profile(), reveal_secrets=True)
    assert next(iter(snapshot.objects.values())).data["data"]["password"] == "aHVudGVyMg=="


# ----- whatever shape the input has (issue 16, item 12) ------------------------------------------

SECRET_TEXT = st.text(alphabet=string.ascii_uppercase + string.digits, min_size=10, max_size=30)
FIELD = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=6)


@st.composite
def any_shaped_secrets(draw: st.DrawFn) -> tuple[Any, list[bytes]]:
    """A Secret whose data/stringData have any JSON shape (a map, a string, a list, nested),
    inside Lists nested 0-3 deep (kubectl's List with a name, or a raw SecretList without
    kinds), perhaps in a JSON array; and the plaintext values it carries."""
    values = draw(st.lists(SECRET_TEXT, min_size=1, max_size=4, unique=True))
    assume(distinctive([v.encode() for v in values]))
    carried = st.sampled_from(values).flatmap(
        lambda v: st.sampled_from([v, base64.b64encode(v.encode()).decode(), f"x{v}y"])
    )
    tree = st.recursive(
        carried | st.integers(-(2**53), 2**53) | st.booleans() | st.none(),
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(FIELD, children, max_size=3)
        ),
        max_leaves=8,
    )
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": draw(NAME), "namespace": draw(NAME)},
        "data": draw(st.dictionaries(FIELD, tree, max_size=3) | tree),
    }
    if draw(st.booleans()):
        secret["stringData"] = draw(st.dictionaries(FIELD, tree, max_size=3) | tree)
    doc: Any = secret
    for level in range(draw(st.integers(0, 3))):
        if doc is secret and draw(st.booleans()):
            items = [{k: v for k, v in secret.items() if k != "kind"}]
            doc = {"apiVersion": "v1", "kind": "SecretList", "items": items}
        else:  # named, as the reported bypass: a List kept whole was a valid object
            named = {"name": f"l{level}"}
            doc = {"apiVersion": "v1", "kind": "List", "metadata": named, "items": [doc]}
    if draw(st.booleans()):
        doc = [doc]
    return doc, [v.encode() for v in values]


@given(any_shaped_secrets())
def test_no_secret_value_leaves_whatever_shape_the_secret_has(
    case: tuple[Any, list[bytes]],
) -> None:
    """The rule: no Secret value ever leaves, whatever shape the input has. The dump is read as
    `snapsync dump --from-file` and an agent's file collector read it."""
    doc, values = case
    snapshot = build_snapshot(iter_objects([doc]), load_profile())
    assert [key.kind for key in snapshot.objects] == ["Secret"]
    assert_no_leak(snapshot, values)
    for field in ("data", "stringData"):  # digested: whole, or value by value
        value = next(iter(snapshot.objects.values())).data.get(field)
        digests = value.values() if isinstance(value, dict) else [value]
        assert all(d is None or str(d).startswith("sha256:") for d in digests), value


def test_a_list_reaching_canonicalize_is_refused_not_kept_whole() -> None:
    """The last line, for collectors other than the file one (a hostile API's page item)."""
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "data": {"a": "b"}}
    nested = {"apiVersion": "v1", "kind": "List", "metadata": {"name": "x"}, "items": [secret]}
    with pytest.raises(CanonicalError, match="a List is not an object"):
        canonicalize(nested, load_profile())


def test_the_reported_shapes_reach_the_servers_api_digested(tmp_path: Path) -> None:
    """The two reported bypasses, end to end: a Secret in a List nested in a List, and Secrets
    whose data is a string or a list, shipped by a real agent to a real server over HTTP."""
    values = [b"NESTEDLISTPASSWORD1", b"STRINGDATAPASSWORD2", b"LISTDATAPASSWORD3"]
    nested, as_string, as_list = (base64.b64encode(v).decode() for v in values)

    def secret(name: str, data: Any) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": data}

    inner = {"apiVersion": "v1", "kind": "List", "metadata": {"name": "inner"}}
    inner["items"] = [secret("nested", {"password": nested})]
    dump = tmp_path / "dump.json"
    outer = [inner, secret("string", as_string), secret("list", [as_list, values[2].decode()])]
    dump.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": outer}))
    store = open_store(str(tmp_path / "server.db"))
    made = enroll(store.registry, "Shop", time.time(), edge_id="shop")
    settings = ServerSettings(
        secrets=AgentSecrets(store.registry, None), stores=store, api_token="t" * 24
    )
    with live_server(settings) as url:
        agent = Agent(
            FileCollector([dump]),
            HttpTransport(url, "shop", made.token.encode(), timeout=20),
            tmp_path / "state",
            environment_id="shop",
        )
        assert agent.step().in_sync
        agent.close()
        answer = httpx.get(
            url + "/api/v1/environments/shop/objects",
            params={"objects": "1"},
            headers={"Authorization": "Bearer " + "t" * 24},
            timeout=20,
        )
    store.close()
    assert answer.status_code == 200
    assert sorted(o["name"] for o in answer.json()["objects"]) == ["list", "nested", "string"]
    assert leaks(answer.content, values) == []

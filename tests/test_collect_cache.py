"""The watch cache's canonical results, without HTTP: a cached replay must equal a fresh build.

A state machine stores, replaces (relists) and drops objects, and replays them into sinks of
several canonical forms. Every replay must give the very bytes and digest `build_snapshot` gives
for the same objects, and canonicalize no more objects than were stored or dropped since the
last replay of the same form (all of them after a form change, which lists the kind again as
the watch collector does: the cache holds no raw object once canonicalized).
"""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule
from support_kube import CountingBuilder

from snapsync.canonical.profile import Profile, load_profile
from snapsync.canonical.snapshot import CanonicalForm, Snapshot, SnapshotBuilder, build_snapshot
from snapsync.collect.cache import (
    Fed,
    FormChanged,
    ObjectCache,
    ObjKey,
    object_version,
    replay,
    replay_kind,
)

DEFAULT, MINIMAL = load_profile("default"), load_profile("minimal")
FORMS: dict[str, tuple[Profile, bool]] = {
    "default": (DEFAULT, False),
    "reveal": (DEFAULT, True),  # Secret values kept: another canonical form of Secrets
    "minimal": (MINIMAL, False),  # Events excluded
}
# (apiVersion, kind): Secrets depend on the secret setting, Events on the profile, and the
# default profile excludes Leases (a cached result of None)
KINDS = [
    ("v1", "Secret"),
    ("v1", "ConfigMap"),
    ("v1", "Event"),
    ("coordination.k8s.io/v1", "Lease"),
]
NAMESPACE = "ns"

kinds = st.sampled_from(KINDS)
names = st.sampled_from(["a", "b", "c"])
uids = st.sampled_from([None, "u1", "u2"])
rvs = st.sampled_from([None, "1", "2", "3"])
values = st.integers(0, 2)
forms = st.sampled_from(sorted(FORMS))
ModelKey = tuple[tuple[str, str], str]  # (kind, name)


def relisted(
    cache: ObjectCache, kind: tuple[str, str], model: dict[ModelKey, dict[str, Any]], form: Any
) -> None:
    """A new LIST of the kind's current objects (fresh dicts), canonicalized by `form` as the
    watch collector does (None: held raw until the next replay)."""
    fresh = {}
    for (k, name), raw in model.items():
        if k == kind:
            key = (NAMESPACE, name)
            fresh[key] = cache.entry(key, copy.deepcopy(raw), form)
    cache.replace(fresh, form)


def replay_into(
    caches: dict[tuple[str, str], ObjectCache],
    builder: SnapshotBuilder,
    model: dict[ModelKey, dict[str, Any]],
) -> Snapshot:
    """Replay every kind; a kind whose results are of another form is listed again first."""
    for kind, cache in caches.items():
        try:
            entries = cache.checkout(builder)
        except FormChanged:
            relisted(cache, kind, model, builder)
            entries = cache.checkout(builder)
        cache.settle(replay(entries, builder, builder, []))
    return builder.build(collected_at="")


def assert_no_raw(caches: dict[tuple[str, str], ObjectCache]) -> None:
    """After a replay into a canonical sink, the cache holds results only."""
    assert all(entry.raw is None for cache in caches.values() for entry in cache.entries())


def assert_same(snapshot: Snapshot, objects: list[dict[str, Any]], form: str) -> None:
    profile, reveal = FORMS[form]
    fresh = build_snapshot(objects, profile, reveal_secrets=reveal, collected_at="")
    assert [(k, o.encoded) for k, o in snapshot] == [(k, o.encoded) for k, o in fresh]
    assert snapshot.digest == fresh.digest


class WatchCacheMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.caches = {kind: ObjectCache() for kind in KINDS}
        self.model: dict[ModelKey, dict[str, Any]] = {}
        self.versions: dict[tuple[ModelKey, str, str], int] = {}
        self.touched: set[ModelKey] = set()  # stored or dropped since the last replay
        self.form: str | None = None
        # the last resumable replay: its form, builder, stamp and what each kind fed it
        self.chain: tuple[str, CountingBuilder, object, dict[tuple[str, str], Fed | None]] | None
        self.chain = None

    def _raw(
        self, kind: tuple[str, str], name: str, uid: str | None, rv: str | None, value: int
    ) -> dict[str, Any]:
        """An object version; one uid and resourceVersion always name one content (the API's
        promise the cache relies on), objects without either may change under the same ones."""
        if uid and rv:
            value = self.versions.setdefault(((kind, name), uid, rv), value)
        meta: dict[str, Any] = {"name": name, "namespace": NAMESPACE}
        if uid:
            meta["uid"] = uid
        if rv:
            meta["resourceVersion"] = rv
        data = base64.b64encode(b"v%d" % value).decode()
        return {"apiVersion": kind[0], "kind": kind[1], "metadata": meta, "data": {"k": data}}

    def _new_builder(self, form: str) -> CountingBuilder:
        profile, reveal = FORMS[form]
        return CountingBuilder(profile, reveal_secrets=reveal)

    def _check_count(self, builder: CountingBuilder, form: str) -> None:
        if form == self.form:
            assert builder.canonicalized <= len(self.touched)
        else:
            assert builder.canonicalized == len(self.model)

    @rule(kind=kinds, name=names, uid=uids, rv=rvs, value=values)
    def put(self, kind: tuple[str, str], name: str, uid: str | None, rv: str | None, value: int):
        raw = self._raw(kind, name, uid, rv, value)
        self.caches[kind].put((NAMESPACE, name), raw)
        self.model[(kind, name)] = raw
        self.touched.add((kind, name))

    @rule(kind=kinds, name=names)
    def delete(self, kind: tuple[str, str], name: str) -> None:
        self.caches[kind].pop((NAMESPACE, name))
        self.model.pop((kind, name), None)
        self.touched.add((kind, name))

    @rule(
        kind=kinds,
        changes=st.lists(st.tuples(names, uids, rvs, values), max_size=3),
        dropped=st.sets(names),
    )
    def relist(
        self,
        kind: tuple[str, str],
        changes: list[tuple[str, str | None, str | None, int]],
        dropped: set[str],
    ) -> None:
        """A relist (after 410 Gone): new dicts throughout, some objects changed or gone."""
        fresh: dict[ObjKey, dict[str, Any]] = {
            (NAMESPACE, name): copy.deepcopy(raw)
            for (k, name), raw in self.model.items()
            if k == kind and name not in dropped
        }
        for name, uid, rv, value in changes:
            fresh[(NAMESPACE, name)] = self._raw(kind, name, uid, rv, value)
            self.touched.add((kind, name))
        cache = self.caches[kind]
        form = CanonicalForm(*FORMS[self.form]) if self.form else None
        cache.replace({key: cache.entry(key, raw, form) for key, raw in fresh.items()}, form)
        if form is not None:  # a LIST's objects are canonicalized as they come, never held
            assert all(entry.raw is None for entry in cache.entries())
        for name in dropped:
            self.touched.add((kind, name))
        for (_, name), raw in fresh.items():
            if object_version(raw) is None:  # nothing tells it is unchanged: canonicalized again
                self.touched.add((kind, name))
        self.model = {key: raw for key, raw in self.model.items() if key[0] != kind}
        self.model.update({(kind, name): raw for (_, name), raw in fresh.items()})

    @rule(form=forms)
    def resumed_replay(self, form: str) -> None:
        """The agent's next builder resumes from the last one of the line (as the watch
        collector drives it): only what changed since is given, taken back or canonicalized,
        and the snapshot is a fresh build's, digest included."""
        chain = self.chain if self.chain is not None and self.chain[0] == form else None
        if chain is not None:
            builder = chain[1].successor()
            assert builder.resume(chain[2])
        else:
            builder = self._new_builder(form)
            assert not builder.resume(object())
        feds = chain[3] if chain is not None else {}
        for kind, cache in self.caches.items():
            fed = feds.get(kind)
            changes = cache.changes(builder, fed.refused) if fed is not None else None

            def checkout(cache: ObjectCache = cache, kind: tuple[str, str] = kind) -> Any:
                try:
                    return cache.checkout(builder)
                except FormChanged:
                    relisted(cache, kind, self.model, builder)
                    return cache.checkout(builder)

            fresh, feds[kind] = replay_kind(builder, builder, builder, fed, changes, checkout, [])
            cache.settle(fresh)
        token = object()
        builder.stamp(token)
        self.chain = (form, builder, token, feds)
        assert_same(builder.build(collected_at=""), list(self.model.values()), form)
        assert_no_raw(self.caches)
        self._check_count(builder, form)
        self.form, self.touched = form, set()

    @rule(form=forms)
    def replay(self, form: str) -> None:
        self.chain = None  # a replay of every object: the changes since the last are gone
        builder = self._new_builder(form)
        assert_same(replay_into(self.caches, builder, self.model), list(self.model.values()), form)
        assert_no_raw(self.caches)
        self._check_count(builder, form)
        self.form, self.touched = form, set()

    @rule(form=forms, kind=kinds, name=names, uid=uids, rv=rvs, value=values)
    def put_during_replay(
        self,
        form: str,
        kind: tuple[str, str],
        name: str,
        uid: str | None,
        rv: str | None,
        value: int,
    ) -> None:
        """A watch event lands between checkout and settle: the replay is of the objects before
        it, and the new object must not inherit a result computed for the old one."""
        self.chain = None
        builder = self._new_builder(form)
        before = list(self.model.values())
        fresh = {}
        for k, cache in self.caches.items():
            try:
                entries = cache.checkout(builder)
            except FormChanged:
                relisted(cache, k, self.model, builder)
                entries = cache.checkout(builder)
            fresh[k] = replay(entries, builder, builder, [])
        self._check_count(builder, form)
        self.touched = set()
        self.put(kind, name, uid, rv, value)
        for k, cache in self.caches.items():
            cache.settle(fresh[k])
        assert_same(builder.build(collected_at=""), before, form)
        self.form = form


TestWatchCache = WatchCacheMachine.TestCase


def test_a_result_of_another_kind_of_sink_is_refused() -> None:
    builder = SnapshotBuilder(DEFAULT)
    raw = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}
    assert builder.add_canonical(builder.canonical(raw)) is not None
    with pytest.raises(TypeError):
        builder.add_canonical(("a", "tuple"))


@pytest.mark.parametrize(
    ("meta", "version"),
    [
        ({"uid": "u", "resourceVersion": "7"}, ("u", "7")),
        ({"uid": "u"}, None),
        ({"resourceVersion": "7"}, None),
        ({"uid": "", "resourceVersion": "7"}, None),
        ({"uid": "u", "resourceVersion": 7}, None),
    ],
)
def test_object_version_needs_uid_and_resource_version(
    meta: dict[str, Any], version: tuple[str, str] | None
) -> None:
    assert object_version({"metadata": meta}) == version
    assert object_version({}) is None

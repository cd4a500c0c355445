"""Watch mode: one LIST per kind, then WATCH keeps a local cache current between snapshot cycles.

    watcher = KubeWatchCollector(KubeOptions(...))
    watcher.collect(builder)   # first call: discovery, LIST every kind, start one watch per kind
    watcher.collect(builder)   # later calls: replay the cache, no LIST
    watcher.close()

Invariants:
- Each kind's cache is (objects by namespace/name, the resourceVersion they are current at).
  Events are applied in stream order; a WATCH resumes from the last resourceVersion seen (from an
  event or a bookmark), so a reconnect neither loses nor repeats changes.
- A 410 Gone (an ERROR event or an HTTP 410: the resourceVersion was compacted away) relists the
  kind and swaps the new contents in at once; the cache never mixes two lists.
- While a kind's watch is failing, `collect` still replays its last contents and records a
  `stale` KindFailure, so a snapshot never passes stale data off as current.
- A replay canonicalizes only objects that changed since the last one: each cached object keeps
  the sink's canonical result (cache.py), so an unchanged cluster costs no canonicalization and
  the snapshot is byte-identical to one from a fresh LIST. The cache holds no raw object once
  canonicalized: LIST pages are canonicalized as they arrive (with the canonicalizer of the
  last sink's form), watch events' objects at the next replay. A sink of another canonical
  form lists every kind again.
- LIST pages hold at most WATCH_PAGE_SIZE objects (less with a smaller `page_size`).
- Discovery is repeated every `discovery_ttl` seconds at most, so new kinds (CRDs) get watched
  and removed ones dropped. The kind and namespace scope (options plus the sink's profile) is
  fixed by the first `collect`.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from snapsync.canonical.snapshot import KindFailure
from snapsync.collect.backoff import Backoff
from snapsync.collect.base import Canonicalizer, CanonicalSink, ResumableSink, Sink, invalid_objects
from snapsync.collect.cache import (
    Entry,
    Fed,
    FormChanged,
    ObjectCache,
    ObjKey,
    object_key,
    replay_kind,
)
from snapsync.collect.discovery import ApiKind
from snapsync.collect.kube import (
    Aborted,
    Clock,
    KindFailed,
    KubeOptions,
    Lister,
    Scope,
    client_settings,
    missing_kinds,
    run_discovery,
)
from snapsync.collect.kubeapi import (
    ApiConnectionLost,
    ApiStatusError,
    ApiTimeout,
    ApiUnreachable,
    KubeApi,
    WatchStream,
    build_client,
)
from snapsync.errors import CollectionError

# client-go's reflector counts a watch that ended within a second with no event as failed
# ("very short watch"): it backs off before the next one.
SHORT_WATCH = 1.0
SHORT_WATCHES_STALE = 3  # such watches in a row mark the kind stale: changes may be missed
# The watch collector lists only at start and after 410 Gone, so smaller pages cost a few more
# requests once; they bound what a LIST holds raw at a time (`concurrency` pages), and so the
# agent's peak and, through fragmentation, its steady memory (10k objects: +39 MB, not +76 MB).
WATCH_PAGE_SIZE = 100


@dataclass
class KindCache:
    """One kind's objects and the resourceVersion they are current at."""

    kind: ApiKind
    objects: ObjectCache = field(default_factory=ObjectCache)
    resource_version: str = ""
    error: KindFailure | None = None
    relists: int = 0
    stream: WatchStream | None = None
    thread: threading.Thread | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    fed: Fed | None = None  # what the last replay gave a ResumableSink (collect's thread only)


class KubeWatchCollector:
    """A Collector that lists once and then watches; see the module docstring."""

    def __init__(
        self,
        options: KubeOptions | None = None,
        *,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.options = options or KubeOptions()
        self.clock = clock
        self.rng = rng or random.Random()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._api: KubeApi | None = None
        self._caches: dict[str, KindCache] = {}
        self._errors: tuple[KindFailure, ...] = ()
        self._scope: Scope | None = None
        self._discovered_at: float | None = None
        self._form: Canonicalizer | None = None  # of the last sink: relists canonicalize with it
        self._token: object = None  # stamped on the last ResumableSink filled, if it completed
        self._fed: list[KindCache] = []  # the caches it was filled from
        self.lists = 0  # LIST operations (initial lists and relists), each possibly many pages
        self.watches = 0  # WATCH requests opened
        self.canonicalized = 0  # objects lists and replays canonicalized (others reused results)

    # ----- public ----------------------------------------------------------------------------

    def collect(self, sink: Sink) -> None:
        """Replay the cache into `sink` (listing and starting watches on the first call).

        A sink that resumes from the one this collector filled last (ResumableSink: the agent's
        next SnapshotBuilder) is given only what changed since; any other sink, everything.
        """
        if self._stop.is_set():
            raise CollectionError("the watch collector has been closed")
        canonical_sink = sink if isinstance(sink, CanonicalSink) else None
        resumable = sink if isinstance(sink, ResumableSink) else None
        token, self._token = self._token, None  # a collection that fails is not resumed from
        form = canonical_sink.canonicalizer if canonical_sink is not None else None
        if self._scope is not None and _form_of(form) != _form_of(self._form):
            self._forget()
        self._form = form
        self._refresh(sink)
        with self._lock:
            caches = list(self._caches.values())
            errors = self._errors
        same = len(caches) == len(self._fed) and all(map(operator.is_, caches, self._fed))
        resumed = resumable is not None and resumable.resume(token if same else None)
        for error in errors:
            sink.record_error(error)
        for cache in caches:
            self._replay(cache, sink, canonical_sink, resumable, resumed)
        if resumable is not None:
            self._token, self._fed = object(), caches
            resumable.stamp(self._token)

    def _replay(
        self,
        cache: KindCache,
        sink: Sink,
        canonical_sink: CanonicalSink | None,
        resumable: ResumableSink | None,
        resumed: bool,
    ) -> None:
        """One kind into `sink`: its changes when `sink` resumed from one that holds the rest
        (`cache.fed`), else every object (cache.replay_kind)."""
        invalid: list[str] = []
        fed = cache.fed if resumed else None
        with cache.lock:
            changes = cache.objects.changes(resumable, fed.refused) if resumable and fed else None
        checkout = functools.partial(self._checkout, cache, canonical_sink)
        fresh, cache.fed = replay_kind(
            sink, canonical_sink, resumable, fed, changes, checkout, invalid
        )
        with cache.lock:
            kind_error = cache.error
            if fresh:
                cache.objects.settle(fresh)
        self.canonicalized += len(fresh)
        if kind_error is not None:
            sink.record_error(kind_error)
        if invalid:
            sink.record_error(invalid_objects(cache.kind.ref, invalid))

    def _checkout(self, cache: KindCache, sink: CanonicalSink | None) -> list[tuple[ObjKey, Entry]]:
        try:
            with cache.lock:
                return cache.objects.checkout(sink)
        except FormChanged:  # a relist of the last form raced a change of form
            self._relist(cache)
            with cache.lock:
                return cache.objects.checkout(sink)

    def synced(self, resource_version: int, timeout: float) -> bool:
        """Wait until every watched kind is current at `resource_version` or later.

        Resource versions are opaque to clients in general; this is for tests and emulators,
        whose versions are increasing integers.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                caches = list(self._caches.values())
            watched = [c for c in caches if c.thread is not None]
            if all(
                c.error is None and _rv(c.resource_version) >= resource_version for c in watched
            ):
                return True
            self._stop.wait(0.01)
        return False

    @property
    def requests(self) -> int:
        return self._api.requests if self._api is not None else 0

    def watched_kinds(self) -> list[str]:
        """Kind refs whose cache is being kept current."""
        with self._lock:
            return sorted(ref for ref, c in self._caches.items() if c.thread is not None)

    def raw_objects(self) -> int:
        """Raw objects the caches hold: watch events' objects not yet replayed (and malformed
        ones); everything else is held canonical only."""
        with self._lock:
            caches = list(self._caches.values())
        held = 0
        for cache in caches:
            with cache.lock:
                held += sum(entry.raw is not None for entry in cache.objects.entries())
        return held

    def relists(self) -> int:
        """Relists after the first LIST of each kind (410s, recoveries)."""
        with self._lock:
            return sum(max(0, c.relists - 1) for c in self._caches.values())

    def close(self) -> None:
        """Stop every watch and release the client."""
        self._stop.set()
        with self._lock:
            caches = list(self._caches.values())
        for cache in caches:
            self._stop_watch(cache)
        if self._api is not None:
            self._api.close()

    def __enter__(self) -> KubeWatchCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- discovery and initial lists -------------------------------------------------------

    def _forget(self) -> None:
        """Drop every kind's cache and watch (their results are for another canonical form, and
        the raw objects gone): the next `_refresh` discovers and lists them all again, in the
        scope the first `collect` fixed."""
        with self._lock:
            caches = list(self._caches.values())
            self._caches.clear()
        for cache in caches:
            self._stop_watch(cache)
        self._discovered_at = None

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            # discovery and the first lists; `_refresh` grows it to one per watched kind
            settings = client_settings(self.options, self.options.concurrency + 1)
            self._api = KubeApi(build_client(settings), self.options.request_timeout)
        return self._api

    def _lister(self) -> Lister:
        options = self.options
        if options.page_size > WATCH_PAGE_SIZE:
            options = dataclasses.replace(options, page_size=WATCH_PAGE_SIZE)
        return Lister(self.api, options, self._stop.wait, self.clock, self.rng, self._stop)

    def _refresh(self, sink: Sink) -> None:
        """Discover (when due), list kinds not yet cached or failed, and start their watches."""
        now = self.clock()
        if self._scope is None:
            self._scope = Scope.of(self.options, sink)
        due = self._discovered_at is None or now - self._discovered_at > self.options.discovery_ttl
        with self._lock:
            retry = [c for c in self._caches.values() if c.thread is None]
        if not due and not retry:
            return
        kinds = [c.kind for c in retry]
        if due:
            discovery = run_discovery(self.api, self.options)
            self._discovered_at = now
            wanted = {k.ref: k for k in discovery.kinds if self._scope.wants(k)}
            # one open WATCH per kind holds one connection; lists run beside them
            self.api.reserve_connections(len(wanted) + self.options.concurrency + 1)
            with self._lock:
                gone = [c for ref, c in self._caches.items() if ref not in wanted]
                for cache in gone:
                    del self._caches[cache.kind.ref]
                known = set(self._caches)
                self._errors = (*discovery.errors, *missing_kinds(self._scope, discovery.kinds))
            for cache in gone:
                self._stop_watch(cache)
            kinds = [k for ref, k in wanted.items() if ref not in known or k in kinds]
        with ThreadPoolExecutor(self.options.concurrency, thread_name_prefix="list") as pool:
            results = list(pool.map(self._initial, kinds))
        caches: list[KindCache] = []
        for result in results:
            if isinstance(result, CollectionError):
                raise result
            caches.append(result)
        with self._lock:
            for cache in caches:
                self._caches[cache.kind.ref] = cache
        for cache in caches:
            if cache.error is None:
                self._start_watch(cache)

    def _initial(self, kind: ApiKind) -> KindCache | CollectionError:
        cache = KindCache(kind)
        try:
            self._relist(cache)
        except CollectionError as exc:
            return exc
        return cache

    def _relist(self, cache: KindCache) -> bool:
        """Replace the cache's contents with a fresh LIST; False (the error in `cache.error`,
        or the collector stopping) when it could not."""
        assert self._scope is not None
        scope, form, objects = self._scope, self._form, cache.objects
        fresh: dict[ObjKey, Entry] = {}
        counted = objects.canonicalized

        def emit(raw: dict[str, Any]) -> None:  # a page's objects: canonicalized, not kept
            if scope.keeps(cache.kind, raw):  # the namespace allow-list the LIST could not apply
                key = object_key(raw)
                fresh[key] = objects.entry(key, raw, form)

        try:
            rv = self._lister().list(cache.kind, _list_scope(scope), emit, fresh.clear)
        except KindFailed as exc:
            with cache.lock:
                cache.error = exc.error
            return False
        except Aborted:
            return False
        with self._lock:
            self.lists += 1
            self.canonicalized += objects.canonicalized - counted
        with cache.lock:
            cache.objects.replace(fresh, form)
            cache.resource_version = rv
            cache.error = None
            cache.relists += 1
        return True

    # ----- watching --------------------------------------------------------------------------

    def _start_watch(self, cache: KindCache) -> None:
        thread = threading.Thread(
            target=self._watch_loop, args=(cache,), name=f"watch-{cache.kind.ref}", daemon=True
        )
        cache.thread = thread
        thread.start()

    def _stop_watch(self, cache: KindCache) -> None:
        with cache.lock:
            stream = cache.stream
        if stream is not None:
            stream.close()

    def _watch_loop(self, cache: KindCache) -> None:
        """Watch one kind until stopped; relist when the server says the version expired.

        Every reopen that follows a failure, an expiry or a watch the server ended at once
        waits for the kind's backoff (backoff.py), so a server or proxy that breaks watches
        costs a few requests a minute, not hundreds a second. A watch that ran its course
        (`timeoutSeconds`, or any events received) is reopened at once, as client-go does.
        """
        assert self._scope is not None
        scope = self._scope
        options = self.options
        backoff = Backoff(
            options.watch_backoff_initial,
            options.watch_backoff_max,
            options.watch_backoff_reset,
            self.rng,
        )
        relist = False
        short = 0  # watches in a row the server ended at once without a single event
        while not self._stop.is_set() and self._caches.get(cache.kind.ref) is cache:
            if relist:
                relist = not self._relist(cache)
                if relist:
                    self._stop.wait(backoff.delay(self.clock()))
                    continue
            query = [
                ("watch", "1"),
                ("resourceVersion", cache.resource_version),
                ("allowWatchBookmarks", "true"),
                ("timeoutSeconds", str(max(1, int(options.watch_timeout)))),
            ]
            query.extend(_list_scope(scope).requests(cache.kind)[0][1])
            opened = self.clock()
            wait = 0.0
            try:
                read_timeout = options.watch_timeout + options.request_timeout
                stream = self.api.watch(cache.kind.path(), query, read_timeout)
                self.watches += 1
                with cache.lock:
                    cache.stream = stream
                events, relist = self._follow(cache, stream, scope)
                if relist:
                    short = 0
                    wait = backoff.delay(self.clock())
                elif events == 0 and self.clock() - opened < SHORT_WATCH:
                    short += 1
                    wait = backoff.delay(self.clock())
                    if short >= SHORT_WATCHES_STALE:
                        self._mark_stale(
                            cache,
                            f"the API server ended {short} watches in a row at once "
                            "(--collect list suits servers that break watches)",
                        )
                else:
                    short = 0
            except ApiStatusError as exc:
                relist = _expired(exc.status, exc.reason)
                if not relist:
                    self._mark_stale(cache, f"watch refused: {exc}")
                wait = max(backoff.delay(self.clock()), exc.retry_after or 0.0)
            except (ApiTimeout, ApiConnectionLost, ApiUnreachable, CollectionError) as exc:
                self._mark_stale(cache, f"watch interrupted: {exc}")
                wait = backoff.delay(self.clock())
            finally:
                with cache.lock:
                    cache.stream = None
            if wait:
                self._stop.wait(wait)

    def _follow(self, cache: KindCache, stream: WatchStream, scope: Scope) -> tuple[int, bool]:
        """Apply a stream's events to the cache: (events received, the server said relist)."""
        kind = cache.kind
        received = 0
        for event in stream:
            if self._stop.is_set():
                break
            event_type = event.get("type")
            obj = event.get("object")
            if not isinstance(obj, dict):
                continue
            if event_type == "ERROR":
                code = int(obj.get("code") or 500)
                if _expired(code, str(obj.get("reason") or "")):
                    return received, True
                raise ApiStatusError(code, str(obj.get("reason")), str(obj.get("message")))
            received += 1
            rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
            with cache.lock:
                if event_type in ("ADDED", "MODIFIED", "DELETED"):
                    obj.setdefault("apiVersion", kind.api_version)
                    obj.setdefault("kind", kind.kind)
                    key = object_key(obj)
                    if event_type == "DELETED" or not scope.keeps(kind, obj):
                        cache.objects.pop(key)
                    else:
                        cache.objects.put(key, obj)
                if rv:
                    cache.resource_version = rv
                cache.error = None
        return received, False

    def _mark_stale(self, cache: KindCache, message: str) -> None:
        with cache.lock:
            if cache.error is None or cache.error.reason == "stale":
                cache.error = KindFailure(cache.kind.ref, "stale", message)


def _form_of(form: Canonicalizer | None) -> object:
    return None if form is None else form.canonical_form


def _expired(code: int, reason: str) -> bool:
    """The server wants a relist: the resourceVersion was compacted away (410 Gone/Expired)."""
    return code == 410 or reason in ("Expired", "Gone")


def _rv(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return -1


def _list_scope(scope: Scope) -> Scope:
    """One cluster-wide LIST and WATCH per kind: a namespace allow-list is applied locally."""
    return dataclasses.replace(scope, include_namespaces=frozenset())

"""Live collection from a Kubernetes API server with the official `kubernetes` client.

    collector = KubeCollector(KubeOptions(kubeconfig=None, context=None))
    collector.collect(builder)      # a SnapshotBuilder, or any Sink

Invariants:
- Every served, listable kind is listed once (see discovery.py), page by page (`limit` and
  `continue`); each page goes to the sink as it arrives, so at most `concurrency` pages of raw
  objects are held at once.
- A kind is either complete in the sink or recorded as a KindFailure: when its list fails part
  way, the objects it already delivered are discarded again (sinks that offer `discard`, as
  SnapshotBuilder does). An expired continue token (410) restarts the kind from its first page
  after discarding what the first attempt delivered: no duplicates, no gaps.
- 429 and 5xx answers and read timeouts are retried with exponential backoff and jitter,
  honouring Retry-After, while the kind is within `kind_budget` seconds; 403/404 are recorded
  at once. Nothing that concerns one kind is fatal.
- The whole collection fails (CollectionError, one line) only when nothing can be trusted: no
  usable kubeconfig, the API unreachable, credentials rejected (401), or the connection lost
  beyond `retries` attempts. Then no snapshot must be built from the sink.
- Kinds and namespaces excluded by the options, or by the sink's profile when it has one, are
  never requested.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snapsync.canonical.keys import split_kind_ref
from snapsync.canonical.snapshot import KindFailure
from snapsync.collect.base import Sink, invalid_objects
from snapsync.collect.discovery import ApiKind, Discovery, DiscoveryCache, discover
from snapsync.collect.kubeapi import (
    ApiConnectionLost,
    ApiStatusError,
    ApiTimeout,
    ApiUnreachable,
    ClientSettings,
    KubeApi,
    build_client,
)
from snapsync.errors import CollectionError, InputError, SnapsyncError

Sleep = Callable[[float], object]
Clock = Callable[[], float]


@dataclass(frozen=True)
class KubeOptions:
    """Everything live collection can be told; the defaults suit a small edge API server.

    Kind filters are kind refs (`Pod`, `Deployment.apps`). `include_kinds` and
    `include_namespaces`, when given, are allow-lists; the exclusions apply on top. Namespace
    filters apply to namespaced objects and to the Namespace objects themselves.
    """

    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False
    page_size: int = 500
    include_kinds: tuple[str, ...] = ()
    exclude_kinds: tuple[str, ...] = ()
    include_namespaces: tuple[str, ...] = ()
    exclude_namespaces: tuple[str, ...] = ()
    request_timeout: float = 10.0
    kind_budget: float = 60.0
    concurrency: int = 4
    discovery_cache_dir: Path | None = None
    discovery_ttl: float = 600.0  # seconds a cached resource list is trusted
    retries: int = 2  # reconnects after a lost connection before the collection fails
    backoff_base: float = 0.5  # first retry delay; doubles per attempt, with jitter
    backoff_max: float = 10.0
    max_restarts: int = 3  # restarts of one kind's list after expired continue tokens
    watch_timeout: float = 300.0  # seconds one WATCH request may stay open (watch mode)
    # Before a watch is opened again after a failure, an expired resourceVersion (relist) or a
    # watch the server ended at once: client-go's reflector figures (see backoff.py).
    watch_backoff_initial: float = 0.8
    watch_backoff_max: float = 30.0
    watch_backoff_reset: float = 120.0  # seconds without a backoff that start it over

    def __post_init__(self) -> None:
        for name in ("include_kinds", "exclude_kinds", "include_namespaces", "exclude_namespaces"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for ref in (*self.include_kinds, *self.exclude_kinds):
            split_kind_ref(ref)  # InputError for a malformed ref
        if self.discovery_cache_dir is not None:
            object.__setattr__(self, "discovery_cache_dir", Path(self.discovery_cache_dir))
        if self.page_size < 1:
            raise InputError(f"page size must be at least 1, not {self.page_size}")
        if self.concurrency < 1:
            raise InputError(f"concurrency must be at least 1, not {self.concurrency}")
        if self.request_timeout <= 0 or self.kind_budget <= 0:
            raise InputError("request timeout and kind budget must be positive")
        if not 0 < self.watch_backoff_initial <= self.watch_backoff_max:
            raise InputError("the watch backoff must start above 0 and at most at its maximum")
        if self.in_cluster and (self.kubeconfig or self.context):
            raise InputError("--in-cluster cannot be combined with --kubeconfig or --context")


@dataclass(frozen=True)
class Scope:
    """Which kinds and namespaces are collected: options merged with the sink's profile."""

    include_kinds: frozenset[str] = frozenset()
    exclude_kinds: frozenset[str] = frozenset()
    include_namespaces: frozenset[str] = frozenset()
    exclude_namespaces: frozenset[str] = frozenset()

    @classmethod
    def of(cls, options: KubeOptions, sink: object) -> Scope:
        profile = getattr(sink, "profile", None)
        return cls(
            include_kinds=frozenset(options.include_kinds),
            exclude_kinds=frozenset(options.exclude_kinds)
            | frozenset(getattr(profile, "excluded_kinds", ())),
            include_namespaces=frozenset(options.include_namespaces),
            exclude_namespaces=frozenset(options.exclude_namespaces)
            | frozenset(getattr(profile, "excluded_namespaces", ())),
        )

    def wants(self, kind: ApiKind) -> bool:
        if self.include_kinds and kind.ref not in self.include_kinds:
            return False
        return kind.ref not in self.exclude_kinds

    def keeps(self, kind: ApiKind, raw: dict[str, Any]) -> bool:
        """Whether an object passes the namespace filters (the server may not apply them)."""
        meta = raw.get("metadata") or {}
        if kind.namespaced:
            namespace = str(meta.get("namespace") or "")
        elif kind.group == "" and kind.kind == "Namespace":
            namespace = str(meta.get("name") or "")
        else:
            return True
        if self.include_namespaces and namespace not in self.include_namespaces:
            return False
        return namespace not in self.exclude_namespaces

    def requests(self, kind: ApiKind) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
        """(path, extra query) per LIST needed: one per included namespace, else one in all."""
        if kind.namespaced and self.include_namespaces:
            wanted = sorted(self.include_namespaces - self.exclude_namespaces)
            return [(kind.path(ns), ()) for ns in wanted]
        if kind.namespaced and self.exclude_namespaces:
            selector = ",".join(
                f"metadata.namespace!={ns}" for ns in sorted(self.exclude_namespaces)
            )
            return [(kind.path(), (("fieldSelector", selector),))]
        return [(kind.path(), ())]


class KindFailed(Exception):
    """One kind could not be collected; carries the error the sink records."""

    def __init__(self, error: KindFailure) -> None:
        super().__init__(error.message)
        self.error = error


class Aborted(Exception):
    """Another kind failed the whole collection; stop quietly."""


@dataclass
class Lister:
    """Paginated LIST of one kind with retries, backoff and restarts; shared by both collectors."""

    api: KubeApi
    options: KubeOptions
    sleep: Sleep
    clock: Clock
    rng: random.Random
    abort: threading.Event = field(default_factory=threading.Event)
    restarts: int = 0  # expired-token restarts, all kinds (for tests and benchmarks)

    def list(
        self,
        kind: ApiKind,
        scope: Scope,
        emit: Callable[[dict[str, Any]], None],
        reset: Callable[[], None],
    ) -> str:
        """Send every object of `kind` to `emit`; returns the resourceVersion of the list.

        `reset` is called before a restart: whatever `emit` received so far must be forgotten.
        Raises KindFailed, CollectionError or Aborted.
        """
        started = self.clock()
        attempt = 0
        reconnects = 0
        restarts = 0
        list_rv = ""
        segments = scope.requests(kind)
        index, token = 0, ""
        while index < len(segments):
            if self.abort.is_set():
                raise Aborted
            path, extra = segments[index]
            query = [("limit", str(self.options.page_size)), *extra]
            if token:
                query.append(("continue", token))
            try:
                page = self.api.get(path, query)
            except ApiStatusError as exc:
                if exc.status == 401:
                    raise _credentials_error(self.api, exc) from None
                if exc.status == 410 and token:
                    restarts += 1
                    self.restarts += 1
                    if restarts > self.options.max_restarts:
                        raise KindFailed(_kind_error(kind, "expired", exc, restarts)) from None
                    reset()
                    index, token, attempt = 0, "", 0
                    continue
                if exc.status in (403, 404, 405):
                    reason = {403: "forbidden", 404: "not-found", 405: "not-listable"}[exc.status]
                    raise KindFailed(_kind_error(kind, reason, exc)) from None
                if exc.status == 429 or exc.status >= 500 or exc.status == 410:
                    reason = "throttled" if exc.status == 429 else "unavailable"
                    self._backoff(kind, started, attempt, exc.retry_after, reason, exc)
                    attempt += 1
                    continue
                raise KindFailed(_kind_error(kind, "error", exc)) from None
            except ApiTimeout as exc:
                self._backoff(kind, started, attempt, None, "timeout", exc)
                attempt += 1
                continue
            except (ApiUnreachable, ApiConnectionLost) as exc:
                reconnects += 1
                if reconnects > self.options.retries:
                    raise CollectionError(
                        f"lost the connection to the API server while listing {kind.ref}: {exc}"
                    ) from None
                self.sleep(self._delay(reconnects - 1, None))
                continue
            attempt = 0
            meta = page.get("metadata") or {}
            if not token:
                list_rv = str(meta.get("resourceVersion") or list_rv)
            for item in page.get("items") or ():
                if isinstance(item, dict):
                    item.setdefault("apiVersion", kind.api_version)
                    item.setdefault("kind", kind.kind)
                    if scope.keeps(kind, item):
                        emit(item)
            token = str(meta.get("continue") or "")
            if not token:
                index += 1
        return list_rv

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = min(self.options.backoff_max, self.options.backoff_base * 2**attempt)
        delay: float = backoff * (0.5 + self.rng.random() / 2)
        return max(delay, retry_after) if retry_after is not None else delay

    def _backoff(
        self,
        kind: ApiKind,
        started: float,
        attempt: int,
        retry_after: float | None,
        reason: str,
        exc: Exception,
    ) -> None:
        delay = self._delay(attempt, retry_after)
        if self.clock() + delay - started > self.options.kind_budget:
            budget = f"{self.options.kind_budget:g} s budget spent after {attempt + 1} attempts"
            raise KindFailed(KindFailure(kind.ref, reason, f"{budget}: {exc}"))
        if self.abort.is_set():
            raise Aborted
        self.sleep(delay)


def _kind_error(kind: ApiKind, reason: str, exc: ApiStatusError, restarts: int = 0) -> KindFailure:
    message = exc.message or f"{exc.status} {exc.reason}"
    if restarts:
        message = f"continue token expired {restarts} times: {message}"
    return KindFailure(kind.ref, reason, message)


def _credentials_error(api: KubeApi, exc: ApiStatusError) -> CollectionError:
    return CollectionError(
        f"the API server at {api.server} rejected the credentials ({exc.status} {exc.reason}); "
        "renew the token or log in again"
    )


class LockedSink:
    """Serialises a sink for the worker threads and remembers each kind's keys for discarding."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.lock = threading.Lock()
        self._discard = getattr(sink, "discard", None)

    def add(self, raw: dict[str, Any]) -> object:
        with self.lock:
            return self.sink.add(raw)

    def record_error(self, error: KindFailure) -> None:
        with self.lock:
            self.sink.record_error(error)

    def discard(self, keys: Iterable[object]) -> bool:
        """Forget delivered objects; False when the sink cannot (its objects then stay)."""
        if self._discard is None:
            return False
        with self.lock:
            for key in keys:
                self._discard(key)
        return True


def client_settings(options: KubeOptions, pool_size: int) -> ClientSettings:
    return ClientSettings(
        kubeconfig=options.kubeconfig,
        context=options.context,
        in_cluster=options.in_cluster,
        request_timeout=options.request_timeout,
        pool_size=pool_size,
    )


def run_discovery(api: KubeApi, options: KubeOptions) -> Discovery:
    """Discovery with the options' cache; whole-collection failures become CollectionError."""
    cache = None
    if options.discovery_cache_dir is not None:
        cache = DiscoveryCache(options.discovery_cache_dir, api.server, options.discovery_ttl)
    try:
        return discover(api, cache)
    except ApiUnreachable as exc:
        raise CollectionError(f"cannot reach the Kubernetes API: {exc}") from None
    except ApiStatusError as exc:
        if exc.status == 401:
            raise _credentials_error(api, exc) from None
        raise CollectionError(f"API discovery at {api.server} failed: {exc}") from None
    except (ApiTimeout, ApiConnectionLost) as exc:
        raise CollectionError(f"API discovery at {api.server} failed: {exc}") from None


def invalidate_discovery(api: KubeApi, options: KubeOptions) -> None:
    if options.discovery_cache_dir is not None:
        DiscoveryCache(options.discovery_cache_dir, api.server, options.discovery_ttl).invalidate()


def missing_kinds(scope: Scope, kinds: Iterable[ApiKind]) -> list[KindFailure]:
    """Errors for kinds the user asked for by name that the cluster does not serve."""
    served = {k.ref for k in kinds}
    return [
        KindFailure(ref, "not-found", "not served by this API server (or not listable)")
        for ref in sorted(scope.include_kinds - served)
    ]


class KubeCollector:
    """Lists a live cluster into a sink; call `collect` once per snapshot cycle.

    The client is built on first use and kept (its connections are reused across cycles);
    `close()` releases it. `sleep`, `clock` and `rng` are parameters so tests can make backoff
    instant and observable.
    """

    def __init__(
        self,
        options: KubeOptions | None = None,
        *,
        sleep: Sleep = time.sleep,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.options = options or KubeOptions()
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()
        self._api: KubeApi | None = None
        self.restarts = 0

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            settings = client_settings(self.options, self.options.concurrency * 2)
            self._api = KubeApi(build_client(settings), self.options.request_timeout)
        return self._api

    @property
    def requests(self) -> int:
        """HTTP requests made so far (discovery and pages)."""
        return self._api.requests if self._api is not None else 0

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None

    def __enter__(self) -> KubeCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def collect(self, sink: Sink) -> None:
        try:
            self._collect(sink)
        except CollectionError:
            # rebuild the client next cycle: a renewed kubeconfig or token is then picked up
            self.close()
            raise

    def _collect(self, sink: Sink) -> None:
        api = self.api
        scope = Scope.of(self.options, sink)
        discovery = run_discovery(api, self.options)
        for error in (*discovery.errors, *missing_kinds(scope, discovery.kinds)):
            sink.record_error(error)
        kinds = [k for k in discovery.kinds if scope.wants(k)]
        locked = LockedSink(sink)
        lister = Lister(api, self.options, self.sleep, self.clock, self.rng)
        failure: CollectionError | None = None
        with ThreadPoolExecutor(self.options.concurrency, thread_name_prefix="list") as pool:
            futures = [pool.submit(self._collect_kind, lister, k, scope, locked) for k in kinds]
            for future in as_completed(futures):
                try:
                    future.result()
                except CollectionError as exc:
                    lister.abort.set()
                    failure = failure or exc
        self.restarts += lister.restarts
        if failure is not None:
            raise failure

    def _collect_kind(self, lister: Lister, kind: ApiKind, scope: Scope, sink: LockedSink) -> None:
        keys: list[object] = []
        invalid: list[str] = []

        def emit(raw: dict[str, Any]) -> None:
            try:
                key = sink.add(raw)
            except SnapsyncError as exc:
                invalid.append(str(exc))
                return
            if key is not None:
                keys.append(key)

        def reset() -> None:
            sink.discard(keys)
            keys.clear()
            invalid.clear()

        try:
            lister.list(kind, scope, emit, reset)
        except KindFailed as exc:
            if exc.error.reason == "not-found":
                invalidate_discovery(lister.api, self.options)
            kept = not sink.discard(keys) and keys
            error = exc.error
            if kept:
                message = f"{error.message} (incomplete: {len(keys)} objects kept)"
                error = KindFailure(error.kind, error.reason, message)
            sink.record_error(error)
            return
        except Aborted:
            return
        if invalid:
            sink.record_error(invalid_objects(kind.ref, invalid))

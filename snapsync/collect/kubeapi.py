"""The HTTP layer of live collection: one `ApiClient` per environment, one GET at a time.

Invariants:
- A client is built from its own `Configuration` (kubeconfig via `new_client_from_config`, or the
  in-cluster service account), never from the client library's process-wide default, so two
  environments (or two tests) in one process never share credentials or a server address.
- urllib3 never retries on its own (`retries=False`): the collector decides what to retry, how
  often and for how long, so a refused connection fails in milliseconds, not after urllib3's
  silent backoff.
- Every request carries `_request_timeout`; every failure leaves this module as one of the
  exceptions below (KubeApiError, in snapsync's error tree), never as a urllib3 or
  client-library exception.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import urllib3
import yaml
from kubernetes.client import ApiClient, Configuration
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.incluster_config import (
    SERVICE_CERT_FILENAME,
    SERVICE_TOKEN_FILENAME,
    InClusterConfigLoader,
)
from kubernetes.config.kube_config import new_client_from_config

from snapsync.collect import jsontext
from snapsync.errors import CollectionError, KubeApiError

USER_AGENT = "snapsync/0.1 (live collection)"


class ApiStatusError(KubeApiError):
    """The API server answered with an error status (its Status message, reason, Retry-After)."""

    def __init__(
        self, status: int, reason: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status} {reason}: {message}" if message else f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


class ApiUnreachable(KubeApiError):
    """No connection could be made (refused, unknown host, TLS handshake, connect timeout)."""


class ApiConnectionLost(KubeApiError):
    """A connection broke mid-request or mid-response (the server died or reset it)."""


class ApiTimeout(KubeApiError):
    """The server accepted the request but did not answer within the read timeout."""


@dataclass(frozen=True)
class ClientSettings:
    """How to reach one cluster: the subset of collector options the HTTP layer needs."""

    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False
    request_timeout: float = 10.0
    pool_size: int = 8


def build_client(settings: ClientSettings) -> ApiClient:
    """An ApiClient for one environment; CollectionError (one line) when it cannot be configured."""
    if settings.kubeconfig and not os.path.isfile(os.path.expanduser(settings.kubeconfig)):
        raise CollectionError(f"kubeconfig {settings.kubeconfig}: no such file")
    config = type.__call__(Configuration)  # a fresh one: never Configuration's shared default
    config.retries = False
    config.connection_pool_maxsize = max(4, settings.pool_size)
    try:
        if settings.in_cluster:
            loader = InClusterConfigLoader(  # type: ignore[no-untyped-call]
                token_filename=SERVICE_TOKEN_FILENAME, cert_filename=SERVICE_CERT_FILENAME
            )
            loader.load_and_set(config)  # type: ignore[no-untyped-call]
            client = ApiClient(configuration=config)
        else:
            client = new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=settings.kubeconfig,
                context=settings.context,
                persist_config=False,  # never rewrite the user's kubeconfig
                client_configuration=config,
            )
    except ConfigException as exc:
        if settings.in_cluster:
            raise CollectionError(
                f"cannot use the in-cluster configuration (not running in a pod?): {_one_line(exc)}"
            ) from None
        raise CollectionError(
            f"cannot use {_kubeconfig_name(settings)}: {_one_line(exc)}"
        ) from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "syntax error"
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise CollectionError(
            f"cannot load {_kubeconfig_name(settings)}: not valid YAML: {problem}{where}"
        ) from None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        what = type(exc).__name__
        raise CollectionError(
            f"cannot load {_kubeconfig_name(settings)}: {what}: {_one_line(exc)}"
        ) from None
    client.user_agent = USER_AGENT
    return client


def _kubeconfig_name(settings: ClientSettings) -> str:
    name = f"kubeconfig {settings.kubeconfig}" if settings.kubeconfig else "kubeconfig"
    return f"{name} (context {settings.context})" if settings.context else name


class KubeApi:
    """GETs and WATCH streams against one API server, with our own exceptions."""

    def __init__(self, client: ApiClient, request_timeout: float) -> None:
        self.client = client
        self.request_timeout = request_timeout
        self.requests = 0

    @property
    def server(self) -> str:
        return str(self.client.configuration.host)

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]

    def reserve_connections(self, count: int) -> None:
        """Let the pool keep at least `count` connections to the server (it only grows).

        A connection returned to a full pool is closed, and urllib3 logs a warning for each:
        a watch collector holds one connection per watched kind, ~150 on a real cluster. A pool
        is sized when it is created, so growing it closes the idle pooled connections once; the
        ones in use are closed quietly when released (the next request opens a new one).
        """
        manager = self.client.rest_client.pool_manager
        if int(manager.connection_pool_kw.get("maxsize", 1)) >= count:
            return
        manager.connection_pool_kw["maxsize"] = count + count // 4  # room for new CRDs
        manager.clear()

    def get(
        self, path: str, query: Sequence[tuple[str, str]] = (), accept: str = "application/json"
    ) -> dict[str, Any]:
        """The JSON document at `path`; raises ApiStatusError/ApiUnreachable/ApiTimeout/..."""
        timeout = (self.request_timeout, self.request_timeout)
        response = self._open(path, query, timeout, accept)
        try:
            data = response.read()
        except Exception as exc:
            raise transport_error(exc, self.server) from exc
        if not 200 <= response.status <= 299:
            raise status_error(response.status, response.reason, data, response.headers)
        try:
            doc = jsontext.loads(data)
        except ValueError:
            raise ApiConnectionLost(
                f"{path}: the server sent a response that is not JSON"
            ) from None
        if not isinstance(doc, dict):
            raise ApiConnectionLost(f"{path}: the server sent JSON that is not an object")
        return doc

    def watch(
        self, path: str, query: Sequence[tuple[str, str]], read_timeout: float
    ) -> WatchStream:
        """An open WATCH stream; iterate it for events, `close()` it from any thread."""
        response = self._open(path, query, (self.request_timeout, read_timeout), "application/json")
        if not 200 <= response.status <= 299:
            try:
                data = response.read()
            except Exception as exc:
                raise transport_error(exc, self.server) from exc
            raise status_error(response.status, response.reason, data, response.headers)
        return WatchStream(response.response, self.server)

    def _open(
        self,
        path: str,
        query: Sequence[tuple[str, str]],
        timeout: tuple[float, float],
        accept: str,
    ) -> Any:
        self.requests += 1
        try:
            method, url, headers, body, post = self.client.param_serialize(
                "GET",
                path,
                query_params=list(query),
                header_params={"Accept": accept},
                auth_settings=["BearerToken"],
            )
            return self.client.call_api(method, url, headers, body, post, _request_timeout=timeout)
        except Exception as exc:
            raise transport_error(exc, self.server) from exc


class WatchStream:
    """Decoded WATCH events from one open response."""

    def __init__(self, response: Any, server: str) -> None:
        self._response = response
        self._server = server

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            for line in stream_lines(self._response):
                if line:
                    event = jsontext.loads(line)
                    if isinstance(event, dict):
                        yield event
        except ValueError as exc:
            raise ApiConnectionLost(f"a watch event is not JSON: {exc}") from None
        except Exception as exc:
            raise transport_error(exc, self._server) from exc
        finally:
            self._response.release_conn()

    def close(self) -> None:
        """Interrupt a blocked read (from another thread) and drop the connection."""
        # already closed or never connected: nothing to interrupt
        with contextlib.suppress(Exception):
            self._response.shutdown()


def stream_lines(response: Any) -> Iterator[bytes]:
    """The newline-separated lines of a streamed response body, as they complete.

    kubernetes.watch.iter_resp_lines copies the rest of its buffer after every line; splitting
    each chunk once costs a watch thread a fraction of that per event.
    """
    pending: list[bytes] = []  # the pieces of a line not complete yet
    for chunk in response.stream(amt=None, decode_content=False):
        first, *lines = chunk.split(b"\n")
        pending.append(first)
        if lines:
            yield b"".join(pending)
            *complete, rest = lines
            yield from complete
            pending = [rest]
    last = b"".join(pending)
    if last:
        yield last


def status_error(status: int, reason: str | None, data: bytes, headers: Any) -> ApiStatusError:
    message = ""
    api_reason = reason or ""
    try:
        doc = json.loads(data)
        if isinstance(doc, dict):
            message = str(doc.get("message") or "")
            api_reason = str(doc.get("reason") or api_reason)
    except ValueError:
        message = data[:200].decode("utf-8", "replace").strip()
    return ApiStatusError(status, api_reason, _one_line(message), _retry_after(headers))


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def transport_error(exc: BaseException, server: str) -> KubeApiError:
    """Our exception for a urllib3/client failure talking to `server`."""
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return ApiTimeout(f"{server} did not answer in time")
    if isinstance(
        exc, urllib3.exceptions.NewConnectionError | urllib3.exceptions.NameResolutionError
    ):
        return ApiUnreachable(f"cannot connect to {server}: {_cause(exc)}")
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return ApiUnreachable(f"cannot connect to {server}: connection timed out")
    if isinstance(exc, urllib3.exceptions.SSLError):
        return ApiUnreachable(f"TLS with {server} failed: {_cause(exc)}")
    if isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | OSError):
        return ApiConnectionLost(f"connection to {server} broke: {_cause(exc)}")
    status = getattr(exc, "status", None)
    if status == 0:  # the client wraps TLS failures as ApiException(status=0)
        return ApiUnreachable(f"TLS with {server} failed: {_one_line(getattr(exc, 'reason', exc))}")
    return ApiConnectionLost(f"request to {server} failed: {type(exc).__name__}: {_one_line(exc)}")


def _cause(exc: BaseException) -> str:
    """The innermost useful words of a urllib3 error ("Connection refused", not the repr chain)."""
    text = str(exc)
    for marker in ("Errno", "Connection refused", "Name or service not known"):
        at = text.find(marker)
        if at >= 0:
            return _one_line(text[at:].split("]", 1)[-1].strip(" )'\"")) or _one_line(text)
    return _one_line(text.split(": ", 1)[-1])


def _one_line(value: object) -> str:
    return " ".join(str(value).split())

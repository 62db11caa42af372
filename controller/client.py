"""What the controller asks of a host's inference server, behind one small protocol.

:class:`HostClient` is the part of a V2 server client the controller uses: the repository index, unload, and
a full warm run (load, warm-up, validation). :func:`connect` is the one place that builds one for a host, so
the controller can move to :class:`warmers.targets.V2Target` once that grows the same methods; until then
:class:`HttpHostClient` implements them over the Open Inference Protocol's REST routes with ``httpx``, sending
``Authorization: Bearer <PREWARM_HOST__TOKEN>`` when the setting is set.
"""

from __future__ import annotations

import functools
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from controller.inventory import HostView
from prewarm.fleet import ModelSpec
from warmers.errors import TargetError
from warmers.report import Baseline, WarmReport
from warmers.targets import V2Target

# Answers of POST /v2/repository/index from a server that has no index (KServe): ask the ready routes instead.
_NO_INDEX = (404, 405, 501)
_NOT_READY = (400, 404, 503)


@dataclass(frozen=True, kw_only=True)
class RepositoryModel:
    """One entry of a server's repository index; ``version`` is None where the server has no versions."""

    name: str
    version: str | None
    state: str
    reason: str = ""

    @property
    def ready(self) -> bool:
        """Whether the server reports the model ready to serve."""
        return self.state == "READY"


class HostClient(Protocol):
    """The calls the controller makes to one host."""

    url: str

    def index(self, *, names: Iterable[str] = (), ready_only: bool = False) -> list[RepositoryModel]:
        """The models the server holds and their state; ``names`` are asked one by one where it has no index."""
        ...

    def unload(self, name: str, version: str | None = None) -> bool:
        """Unload ``name``; False when the server did not hold it."""
        ...

    def warm(self, spec: ModelSpec, *, baseline: Baseline | None = None) -> WarmReport:
        """Load, warm up and validate ``spec`` on the server; never raises for a model that fails to get ready."""
        ...

    def close(self) -> None:
        """Release the connections."""
        ...


@functools.lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    """One TLS context for every client of this process: building one per client costs tens of milliseconds."""
    return httpx.create_ssl_context()


def _token() -> str | None:
    from prewarm.settings import get_settings

    token = get_settings().host.token
    return token.get_secret_value() if token is not None else None


class _AuthorizedV2Target(V2Target):
    """``V2Target`` sending the bearer token on every call (its own token support is on its way)."""

    def __init__(self, url: str, *, timeout_s: float, token: str | None) -> None:
        super().__init__(url, timeout_s=timeout_s)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def _client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=self._timeout, transport=self._transport, headers=self._headers,
            verify=tls_context(),
        )


class HttpHostClient:
    """A :class:`HostClient` over HTTP: keep-alive connections, the bearer token, an index fallback."""

    def __init__(
        self, url: str, *, timeout_s: float = 5.0, warm_timeout_s: float = 600.0, token: str | None = None,
        versioned_routes: bool | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token if token is not None else _token()
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s, headers=headers, verify=tls_context())
        self._warm_timeout_s = warm_timeout_s
        self._versioned = versioned_routes
        self._lock = threading.Lock()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise TargetError(f"{self.url}: {method} {path}: {type(exc).__name__}: {exc or 'no answer'}") from exc

    def index(self, *, names: Iterable[str] = (), ready_only: bool = False) -> list[RepositoryModel]:
        """``POST /v2/repository/index``; where there is none, each of ``names``'s ready route."""
        response = self._call("POST", "/v2/repository/index", json={"ready": True} if ready_only else {})
        if response.status_code in _NO_INDEX:
            return [m for m in (self._ready_entry(n) for n in names) if m.ready or not ready_only]
        if response.status_code != 200:
            raise TargetError(f"{self.url}: repository index answered {response.status_code}: {response.text[:300]}")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, list):
            raise TargetError(f"{self.url}: repository index is not a JSON list: {response.text[:300]}")
        return [
            RepositoryModel(
                name=str(e["name"]), version=None if e.get("version") in (None, "") else str(e["version"]),
                state=str(e.get("state") or "UNKNOWN"), reason=str(e.get("reason") or ""),
            )
            for e in body
            if isinstance(e, dict) and e.get("name") and (not ready_only or e.get("state") == "READY")
        ]

    def _ready_entry(self, name: str) -> RepositoryModel:
        response = self._call("GET", f"/v2/models/{name}/ready")
        if response.status_code == 200:
            return RepositoryModel(name=name, version=None, state="READY")
        if response.status_code in _NOT_READY:
            return RepositoryModel(name=name, version=None, state="UNAVAILABLE", reason=f"ready answered {response.status_code}")
        raise TargetError(f"{self.url}: ready check of {name!r} answered {response.status_code}: {response.text[:300]}")

    def unload(self, name: str, version: str | None = None) -> bool:
        """``POST /v2/repository/models/{name}/unload`` (every version: the extension unloads by name)."""
        if version is not None and self._versioned is not False:
            ready = self._call("GET", f"/v2/models/{name}/versions/{version}/ready")
            if ready.status_code == 404:
                return False
        response = self._call("POST", f"/v2/repository/models/{name}/unload", json={})
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise TargetError(f"{self.url}: unload of {name!r} answered {response.status_code}: {response.text[:300]}")
        return True

    def warm(self, spec: ModelSpec, *, baseline: Baseline | None = None) -> WarmReport:
        """The full warm pipeline through ``V2Target``: load, warm-up requests, validation probes."""
        target = _AuthorizedV2Target(self.url, timeout_s=self._warm_timeout_s, token=self._token)
        return target.warm(spec, baseline=baseline)

    def close(self) -> None:
        """Close the kept-alive connections."""
        self._http.close()


def connect(host: HostView, *, timeout_s: float, warm_timeout_s: float) -> HostClient:
    """The client the controller uses for ``host``."""
    return HttpHostClient(
        host.url, timeout_s=timeout_s, warm_timeout_s=warm_timeout_s, versioned_routes=host.versioned_routes
    )

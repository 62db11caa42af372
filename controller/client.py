"""What the controller asks of a host's inference server, behind one small protocol.

:class:`HostClient` is the part of a V2 server client the controller uses: the repository index, unload, and
a full warm run (load, warm-up, validation). :func:`connect` builds one for a host of the inventory from
:class:`warmers.targets.V2Client` and :class:`~warmers.targets.V2Target` (which adapt to the server: versioned
routes or not, an index or ready routes, the bearer token from ``PREWARM_HOST__TOKEN``): observation calls get
the short ``PREWARM_CONTROLLER__OBSERVE_TIMEOUT_S``, a warm-up's calls the long ``WARM_TIMEOUT_S``. Every
client of the process shares one TLS context: building one per client costs tens of milliseconds, which a tick
over hundreds of hosts would pay each time.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Iterable
from typing import Protocol

import httpx

from controller.inventory import HostView
from prewarm.fleet import ModelSpec
from warmers.report import Baseline, WarmReport
from warmers.targets import RepositoryModel, V2Client, V2Target

__all__ = ["FleetClient", "HostClient", "RepositoryModel", "connect", "tls_context"]


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
    """The process's one TLS context for host clients."""
    return httpx.create_ssl_context()


def _transport() -> httpx.HTTPTransport:
    return httpx.HTTPTransport(verify=tls_context())


class FleetClient:
    """One host as the controller uses it: index and unload with a short timeout, warm-ups with a long one."""

    def __init__(
        self, url: str, *, versioned_routes: bool | None, timeout_s: float, warm_timeout_s: float, token: str | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self._observe = V2Client(
            url, token=token, versioned_routes=versioned_routes, timeout_s=timeout_s, transport=_transport()
        )
        self._target = V2Target(
            url, token=token, versioned_routes=versioned_routes, timeout_s=warm_timeout_s, transport=_transport()
        )

    def index(self, *, names: Iterable[str] = (), ready_only: bool = False) -> list[RepositoryModel]:
        """The server's repository index (each of ``names``'s ready route where it has none)."""
        return self._observe.index(names=names, ready_only=ready_only)

    def unload(self, name: str, version: str | None = None) -> bool:
        """Unload ``name`` (``version``: only if the server serves that version)."""
        return self._observe.unload(name, version)

    def warm(self, spec: ModelSpec, *, baseline: Baseline | None = None) -> WarmReport:
        """The full warm pipeline through ``V2Target``: load, input check, warm-up requests, validation probes."""
        return self._target.warm(spec, baseline=baseline)

    def close(self) -> None:
        """Close both clients' connections."""
        self._observe.close()
        self._target.close()


def connect(host: HostView, *, timeout_s: float, warm_timeout_s: float) -> HostClient:
    """The client the controller uses for ``host``."""
    return FleetClient(
        host.url, versioned_routes=host.versioned_routes, timeout_s=timeout_s, warm_timeout_s=warm_timeout_s
    )

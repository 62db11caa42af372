"""The host inventory at its edge: validated host entries, and hosts as the planner and the controller see them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from controller.errors import InventoryError
from db.models import Host, HostKind, HostState

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")


def check_name(name: str, what: str = "host name") -> str:
    """``name`` if it is a valid host or pool name; :class:`InventoryError` naming it otherwise."""
    if not NAME_RE.match(name):
        raise InventoryError(
            f"{what} {name!r}: use letters, digits, '.', '_' and '-' (starting with a letter or digit, at most 200)"
        )
    return name


def check_url(url: str) -> str:
    """``url`` without a trailing slash if it is an http(s) base URL; :class:`InventoryError` otherwise."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.query or parsed.fragment:
        raise InventoryError(
            f"host URL {url!r}: expected the server's base URL, http(s)://HOST:PORT or http(s)://HOST:PORT/PREFIX"
        )
    try:
        parsed.port  # noqa: B018  (raises for a port out of range)
    except ValueError as exc:
        raise InventoryError(f"host URL {url!r}: {exc}") from None
    return url.rstrip("/")


def parse_labels(items: list[str]) -> dict[str, str]:
    """``key=value`` strings as a dict; :class:`InventoryError` naming the first malformed one."""
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not LABEL_RE.match(key) or len(value) > 200:
            raise InventoryError(f"label {item!r}: expected KEY=VALUE (key of letters, digits, '._/-')")
        labels[key] = value
    return labels


@dataclass(frozen=True, kw_only=True)
class HostView:
    """A host as the controller and the planner use it, detached from the database session."""

    name: str
    url: str
    pool: str
    kind: HostKind
    state: HostState
    device_class: str = "any"
    memory_mb: float | None = None
    max_concurrent_warmups: int = 1
    versioned_routes: bool | None = None
    heartbeat_s: float | None = None
    last_seen_at: datetime | None = None
    created_at: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, row: Host) -> HostView:
        """The view of a ``hosts`` row."""
        return cls(
            name=row.name, url=row.url, pool=row.pool, kind=row.kind, state=row.state, device_class=row.device_class,
            memory_mb=row.memory_mb, max_concurrent_warmups=row.max_concurrent_warmups,
            versioned_routes=row.versioned_routes, heartbeat_s=row.heartbeat_s, last_seen_at=row.last_seen_at,
            created_at=row.created_at, labels=dict(row.labels or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``prewarm hosts list --json``)."""
        return {
            "name": self.name, "url": self.url, "pool": self.pool, "kind": self.kind.value, "state": self.state.value,
            "device_class": self.device_class, "memory_mb": self.memory_mb,
            "max_concurrent_warmups": self.max_concurrent_warmups, "versioned_routes": self.versioned_routes,
            "heartbeat_s": self.heartbeat_s,
            "last_seen_at": self.last_seen_at.isoformat() if self.last_seen_at else None, "labels": self.labels,
        }

"""The pool's lock: a lease in the history database, renewed in the background while its holder works.

Ticks take it without waiting (a busy pool means another tick is on it: skip). A manual warm run or a roll-out
waits for it (:func:`hold_pool`), so nothing they load races a tick's load of the same model.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from controller.errors import PoolBusyError
from db.base import utcnow
from db.controller import acquire_lease, release_lease, renew_lease
from db.session import session_scope

log = logging.getLogger(__name__)


def pool_lease(pool: str) -> str:
    """The lease name of ``pool``."""
    return f"pool:{pool}"


def default_holder() -> str:
    """A name for this process as a lease holder: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseKeeper:
    """Renews a held lease in the background; :attr:`lost` is set when it could not."""

    def __init__(self, engine: Engine, name: str, *, holder: str, ttl_s: float) -> None:
        self.engine, self.name, self.holder, self.ttl_s = engine, name, holder, ttl_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{name}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                with session_scope(self.engine) as session:
                    if not renew_lease(session, self.name, holder=self.holder, now=utcnow(), ttl_s=self.ttl_s):
                        self.lost.set()
                        return
            except (OperationalError, InterfaceError):
                log.warning("could not renew the lease %s; retrying", self.name)



@contextmanager
def hold_pool(engine: Engine, pool: str, *, ttl_s: float, wait_s: float, holder: str | None = None) -> Iterator[LeaseKeeper]:
    """Hold ``pool``'s lease for the ``with`` block, waiting up to ``wait_s`` for a running tick to let it go.

    Raises :class:`PoolBusyError` naming the holder when it does not come free in time.
    """
    holder = holder or default_holder()
    name = pool_lease(pool)
    deadline = time.monotonic() + wait_s
    while True:
        with session_scope(engine) as session:
            lease = acquire_lease(session, name, holder=holder, now=utcnow(), ttl_s=ttl_s)
        if lease.acquired:
            break
        if time.monotonic() >= deadline:
            raise PoolBusyError(
                f"pool {pool!r} stayed locked by {lease.holder} for {wait_s:.0f} s (a tick or a roll-out is running); "
                "try again later"
            )
        time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
    try:
        with LeaseKeeper(engine, name, holder=holder, ttl_s=ttl_s) as keeper:
            yield keeper
    finally:
        try:
            with session_scope(engine) as session:
                release_lease(session, name, holder=holder, now=utcnow())
        except (OperationalError, InterfaceError):
            log.warning("could not release the lease of pool %s; it runs out in %.0f s", pool, ttl_s)

"""Errors of the fleet controller, the host inventory and version roll-outs.

    PrewarmError (prewarm.errors)
    ├── InputError
    │   └── InventoryError          a host entry that cannot be stored as given (name, URL, label, unknown host)
    └── ControllerError             a tick or a roll-out that could not run
        ├── HistoryUnavailableError the history database could not be reached during a tick (also a
        │                           SourceError: the command line exits 2, as for every unreachable database)
        └── PoolBusyError           another controller or roll-out holds the pool's lease for too long
"""

from __future__ import annotations

from prewarm.errors import InputError, PrewarmError, SourceError


class InventoryError(InputError):
    """A host entry is malformed or names a host the inventory does not have; the message says which."""


class ControllerError(PrewarmError):
    """Base class of the errors a controller tick or a roll-out raises on purpose."""


class HistoryUnavailableError(ControllerError, SourceError):
    """The history database could not be reached during a tick; the next tick starts over from the database."""


class PoolBusyError(ControllerError):
    """The pool's lease stayed with another holder for longer than the caller was willing to wait."""

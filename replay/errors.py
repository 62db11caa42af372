"""Errors of the replay.

    PrewarmError
    ├── InputError
    │   ├── UnregisteredModelsError   the trace names models the registry does not hold
    │   ├── SpeedupTooHighError       the load generator cannot keep up with the compressed trace
    │   └── TooManyRequestsError      the replayed intervals hold more requests than one replay sends
    └── ReplayError                   the replay could not run
        └── HostStartError            an inference host did not start (every started process is stopped)
"""

from __future__ import annotations

from prewarm.errors import InputError, PrewarmError


class ReplayError(PrewarmError):
    """The replay could not run to its end."""


class HostStartError(ReplayError):
    """An inference host exited or did not answer while starting."""


class UnregisteredModelsError(InputError):
    """The trace has models that are not registered."""


class SpeedupTooHighError(InputError):
    """The trace compressed by ``--speedup`` asks for more requests per second than the generator sustains."""


class TooManyRequestsError(InputError):
    """The replayed intervals, times ``--scale``, hold more requests than one replay can hold in memory and send."""

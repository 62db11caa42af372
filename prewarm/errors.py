"""Errors shared by the command line and the packages.

    PrewarmError
    ├── InputError          bad user input: a file, a field, a value (exit code 2)
    │   ├── TelemetryError  a telemetry source that cannot be ingested
    │   │   └── PrometheusQueryError  a Prometheus source whose query, series or range cannot be used
    │   └── FleetError      a fleet file that cannot be imported
    ├── SourceError         a source that cannot be reached: missing bucket, denied access (exit code 2)
    │   └── PrometheusUnavailable     a Prometheus server that cannot be reached or fails to answer
    └── NotReadyError       a model the demo planned ended its run not ready (exit code 1)
"""

from __future__ import annotations


class PrewarmError(Exception):
    """Base class of every error prewarm raises on purpose."""


class InputError(PrewarmError):
    """The user's input is wrong; the message says where and what to change."""


class TelemetryError(InputError):
    """A telemetry source is malformed: the message names file, line and column."""


class FleetError(InputError):
    """A fleet file is malformed: the message names file and field."""


class SourceError(PrewarmError):
    """A data source cannot be reached or read (missing bucket, denied access, empty prefix)."""


class PrometheusQueryError(TelemetryError):
    """Prometheus answered, but not with usable counts: bad query, no series, a gauge, denied, too long a range."""


class PrometheusUnavailable(SourceError):
    """The Prometheus server cannot be reached, or answered with a server error; retrying may help."""


class NotReadyError(PrewarmError):
    """Models that were planned and warmed did not end ready; the message names each one and why."""

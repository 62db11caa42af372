"""Errors shared by the command line and the packages.

    PrewarmError
    ├── InputError          bad user input: a file, a field, a value (exit code 2)
    │   ├── TelemetryError  a telemetry source that cannot be ingested
    │   └── FleetError      a fleet file that cannot be imported
    └── SourceError         a source that cannot be reached: missing bucket, denied access (exit code 2)
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

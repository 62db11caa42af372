"""Errors of the history database.

    PrewarmError
    └── DatabaseError            anything the history database refuses
        └── DatabaseUnavailable  the database cannot be reached, or the connection was lost (also a SourceError:
                                 the command line exits 2 with one line naming PREWARM_DATABASE_URL)
"""

from __future__ import annotations

from prewarm.errors import PrewarmError, SourceError


class DatabaseError(PrewarmError):
    """The history database refused an operation."""


class DatabaseUnavailable(DatabaseError, SourceError):
    """The history database cannot be reached: the message names the setting and the host, never the password."""

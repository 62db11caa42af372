"""Tables for an 80-column terminal: the same frame everywhere, so that every table people read fits."""

from __future__ import annotations

from rich import box
from rich.table import Column, Table


def narrow_table(*columns: Column | str, title: str | None = None, caption: str | None = None) -> Table:
    """A table with a rule under its header, no outer frame and two spaces between columns.

    Rich's default box spends three characters between columns and four on the edges; this fits a seven-column
    table of six-figure numbers into 80 columns.

    Name-like columns should say ``no_wrap=True`` (a model name is never cut); only free-text columns wrap.
    """
    return Table(
        *columns, title=title, caption=caption, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
        collapse_padding=True,
    )

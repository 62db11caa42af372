"""Reading telemetry sources: CSV or Parquet files, folders of them, and ``s3://bucket/prefix``.

Files and S3 objects are read in chunks of :data:`CHUNK_ROWS` rows (:func:`iter_frames`): CSV in chunks of rows,
Parquet batch by batch; an S3 object is first copied in parts to a temporary file. Memory does not grow with
the input.

The long format has one row per model and bucket: ``timestamp,model,requests`` are required,
``p50_ms,p99_ms`` optional. Timestamps are ISO-8601; a timestamp without an offset, or with a `` UTC``
suffix, is UTC. Every problem raises :class:`~prewarm.errors.TelemetryError` naming the file, the line (CSV) or row
(Parquet) and the column, before anything is written anywhere.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pandas as pd

from prewarm import columns as C
from prewarm.errors import SourceError, TelemetryError
from prewarm.text import show

log = logging.getLogger(__name__)

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
PARQUET_MAGIC = b"PAR1"
CHUNK_ROWS = 250_000
# The texts pandas reads as missing by default, applied to every column but the model's: a model may be called
# "NA", "None" or "null" (the default would turn its name into "empty model name").
NA_TEXTS = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA",
    "NULL", "NaN", "None", "n/a", "nan", "null",
)
# Telemetry of a real service lies in this range; a row outside it (year 1 or 2999, a typo) would stretch every
# model's grid over centuries, and time arithmetic near 2262 overflows.
EARLIEST = pd.Timestamp("1970-01-01", tz="UTC")
LATEST = pd.Timestamp("2200-01-01", tz="UTC")
_UTC_SUFFIX = r"(?i)(?:\s*(?:UTC|GMT)|(?<=\d)z)$"
_NA_VALUES = {column: list(NA_TEXTS) for column in (C.TIMESTAMP, C.REQUESTS, *C.TELEMETRY_OPTIONAL)}


@dataclass(frozen=True, slots=True)
class _Blob:
    """One telemetry file: a path, bytes, or an S3 object (bucket, key); ``name`` is used in error messages."""

    name: str
    path: Path | None = None
    data: bytes | None = None
    s3: tuple[str, str] | None = None


def _kind(blob: _Blob) -> str:
    lower = blob.name.lower()
    if lower.endswith(CSV_SUFFIXES):
        return "csv"
    if lower.endswith(PARQUET_SUFFIXES) or _head(blob).startswith(PARQUET_MAGIC):
        return "parquet"
    raise TelemetryError(
        f"{blob.name}: is neither CSV (.csv, .csv.gz) nor Parquet (.parquet); "
        "telemetry must be long format with columns timestamp,model,requests"
    )


def _head(blob: _Blob) -> bytes:
    if blob.data is not None:
        return blob.data[:4]
    if blob.s3 is not None:
        from prewarm.s3 import open_object

        return bytes(open_object(*blob.s3, first_bytes=4).read(4))
    assert blob.path is not None
    with blob.path.open("rb") as handle:
        return handle.read(4)


def _where(kind: str, index: int) -> str:
    # CSV: the header is line 1, so data row i (0-based) is line i + 2. Parquet has rows, not lines.
    return f"line {index + 2}" if kind == "csv" else f"row {index + 1}"


@contextlib.contextmanager
def _opened(blob: _Blob) -> Iterator[IO[bytes] | Path]:
    """A path or binary file of the blob; an S3 object is first copied, in parts, to a temporary file.

    The copy keeps memory bounded like a stream would, and it is faster: boto3 fetches the parts in parallel,
    and the parser reads a local file instead of pulling the HTTP response through Python a buffer at a time
    (Parquet needs a seekable file anyway).
    """
    if blob.data is not None:
        yield io.BytesIO(blob.data)
        return
    if blob.s3 is None:
        assert blob.path is not None
        yield blob.path
        return
    from prewarm.s3 import download_object

    with tempfile.TemporaryFile(prefix="prewarm-ingest-") as spool:
        download_object(*blob.s3, spool)
        spool.seek(0)
        yield spool


def _raw_chunks(blob: _Blob, kind: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The file's rows in chunks, each indexed by its row number in the whole file."""
    import pyarrow.parquet as pq

    with _opened(blob) as source:
        if kind == "csv":
            compression = "gzip" if blob.name.lower().endswith(".gz") else None
            with pd.read_csv(
                source, dtype={C.MODEL: "string"}, keep_default_na=False, na_values=_NA_VALUES, compression=compression,
                chunksize=chunk_rows,
            ) as reader:
                yield from reader
            return
        offset = 0
        for batch in pq.ParquetFile(source).iter_batches(batch_size=chunk_rows):
            frame = batch.to_pandas()
            frame.index = pd.RangeIndex(offset, offset + len(frame))
            offset += len(frame)
            yield frame
        if offset == 0:  # no rows: still check the columns
            yield pq.ParquetFile(source).schema_arrow.empty_table().to_pandas()


def _chunks(blob: _Blob, kind: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """:func:`_raw_chunks`, with parse failures turned into :class:`TelemetryError`s naming the file."""
    from botocore.exceptions import BotoCoreError, ClientError

    from prewarm.s3 import explain

    what = "CSV" if kind == "csv" else "Parquet"
    try:
        yield from _raw_chunks(blob, kind, chunk_rows)
    except pd.errors.EmptyDataError as exc:
        raise TelemetryError(f"{blob.name}: line 1: the file is empty; expected a header row") from exc
    except (ClientError, BotoCoreError) as exc:
        raise explain(exc, blob.name) from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError, EOFError) as exc:
        raise TelemetryError(f"{blob.name}: cannot be parsed as {what}: {exc}") from exc
    except Exception as exc:  # pyarrow raises its own types for corrupt files
        if type(exc).__module__.startswith("pyarrow"):
            raise TelemetryError(f"{blob.name}: cannot be parsed as Parquet: {exc}") from exc
        raise


def _column_number(frame: pd.DataFrame, name: str) -> int:
    return list(frame.columns).index(name) + 1


def _fail_at(blob: _Blob, kind: str, frame: pd.DataFrame, bad: pd.Series, column: str, what: str) -> None:
    position = int(bad.to_numpy().nonzero()[0][0])
    index = int(frame.index[position])  # the row's number in the whole file, also in a later chunk
    value = frame[column].iloc[position]
    count = int(bad.sum())
    more = f" ({count - 1} more rows like it)" if count > 1 else ""
    raise TelemetryError(
        f"{blob.name}: {_where(kind, index)}, column {_column_number(frame, column)} ({column}): "
        f"{what}, got {show(value)}{more}"
    )


def _column_name(raw: object) -> str:
    """A header cell as the canonical column it names: ``Timestamp`` or `` REQUESTS `` are ours too."""
    name = str(raw).strip()
    return name.lower() if name.lower() in (*C.TELEMETRY_REQUIRED, *C.TELEMETRY_OPTIONAL) else name


def _validate(blob: _Blob, kind: str, frame: pd.DataFrame) -> pd.DataFrame:
    frame.columns = [_column_name(c) for c in frame.columns]
    missing = [c for c in C.TELEMETRY_REQUIRED if c not in frame.columns]
    if missing:
        raise TelemetryError(
            f"{blob.name}: {'line 1' if kind == 'csv' else 'schema'}: missing column(s) {', '.join(missing)}; "
            f"found {', '.join(frame.columns) or 'none'}; required: {','.join(C.TELEMETRY_REQUIRED)}"
        )

    model = frame[C.MODEL].astype("string").str.strip()
    _check(blob, kind, frame, model.isna() | (model == ""), C.MODEL, "empty model name")

    raw_ts = frame[C.TIMESTAMP]
    if pd.api.types.is_datetime64_any_dtype(raw_ts):
        ts = raw_ts.dt.tz_localize("UTC") if raw_ts.dt.tz is None else raw_ts.dt.tz_convert("UTC")
    else:
        ts = _parse_timestamps(raw_ts.astype("string"))
    _check(blob, kind, frame, ts.isna(), C.TIMESTAMP, "unparsable timestamp (expected ISO-8601)")
    outside = (ts < EARLIEST) | (ts >= LATEST)
    _check(blob, kind, frame, outside, C.TIMESTAMP, f"timestamp outside {EARLIEST.year} to {LATEST.year - 1}")

    requests = pd.to_numeric(frame[C.REQUESTS], errors="coerce")
    _check(blob, kind, frame, requests.isna(), C.REQUESTS, "requests must be a number (not empty or NaN)")
    _check(blob, kind, frame, requests.isin([float("inf"), float("-inf")]), C.REQUESTS, "requests must be finite")
    _check(blob, kind, frame, requests < 0, C.REQUESTS, "requests must not be negative")

    out = pd.DataFrame({C.TIMESTAMP: ts, C.MODEL: model.astype(str), C.REQUESTS: requests.astype(float)})
    for column in C.TELEMETRY_OPTIONAL:
        if column not in frame.columns:
            out[column] = float("nan")
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        given = frame[column].notna() & ~frame[column].astype("string").str.strip().isin(NA_TEXTS)
        _check(blob, kind, frame, given & values.isna(), column, f"{column} must be a number or empty")
        _check(blob, kind, frame, values.isin([float("inf"), float("-inf")]), column, f"{column} must be finite")
        _check(blob, kind, frame, values < 0, column, f"{column} must not be negative")
        out[column] = values.astype(float)
    return out


def _parse_timestamps(text: pd.Series) -> pd.Series:
    """ISO-8601 texts as UTC times (NaT where unparsable); a " UTC" or " GMT" suffix or a lower-case "z" means UTC.

    Many exports write ``2026-01-05 00:00:00 UTC``. The suffixes are rewritten only for the texts the strict parse
    refused, so clean files pay nothing.
    """
    ts = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    failed = ts.isna() & text.notna()
    if not failed.any():
        return ts
    fixed = text[failed].str.strip().str.replace(_UTC_SUFFIX, "+00:00", regex=True)
    ts[failed] = pd.to_datetime(fixed, utc=True, format="ISO8601", errors="coerce")
    return ts


def _check(blob: _Blob, kind: str, frame: pd.DataFrame, bad: pd.Series, column: str, what: str) -> None:
    bad = bad.fillna(False).astype(bool)
    if bad.any():
        _fail_at(blob, kind, frame, bad, column, what)


def iter_blob(blob: _Blob, *, chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """Parse and validate one file, chunk by chunk, into canonical telemetry frames."""
    kind = _kind(blob)
    for chunk in _chunks(blob, kind, chunk_rows):
        yield _validate(blob, kind, chunk)


def read_blob(blob: _Blob) -> pd.DataFrame:
    """Parse and validate one whole file into the canonical telemetry frame."""
    frames = list(iter_blob(blob))
    return frames[0] if len(frames) == 1 else pd.concat(frames)


def read_telemetry_file(path: str | Path) -> pd.DataFrame:
    """Read one CSV or Parquet telemetry file into the canonical frame.

    Columns: timestamp (UTC, tz-aware), model (str), requests (float), p50_ms, p99_ms (float, NaN when absent).
    """
    path = Path(path)
    if path.is_dir():
        raise TelemetryError(f"{path}: is a folder; pass a CSV or Parquet file")
    if not path.is_file():
        raise TelemetryError(f"{path}: no such file")
    return read_blob(_Blob(name=str(path), path=path))


def read_telemetry_input(path: str | Path, *, option: str = "--input") -> pd.DataFrame:
    """The telemetry a command's ``--input`` names: a file or a folder of them, with at least one row.

    A header-only file or an empty folder is a :class:`TelemetryError` that says what to pass instead.
    """
    path = Path(path)
    if not path.exists():
        raise TelemetryError(f"{option} {path}: no such file or folder; pass a CSV or Parquet telemetry file")
    empty: list[str] = []
    frame = read_sources([str(path)], on_empty=empty.append)
    if frame.empty:
        what = "its files hold" if path.is_dir() else "it holds"
        raise TelemetryError(
            f"{option} {path}: {what} no telemetry rows, only a header; "
            "pass a file with at least one row of timestamp,model,requests"
        )
    for name in empty:  # a header-only file beside others with rows is worth a word, not an error
        _warn_empty(name)
    return frame


def _local_blobs(source: str) -> Iterator[_Blob]:
    path = Path(source.removeprefix("file://"))
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(CSV_SUFFIXES + PARQUET_SUFFIXES)
        )
        if not files:
            raise TelemetryError(
                f"{path}: the folder holds no .csv or .parquet files; pass a telemetry file or a folder of them"
            )
        for file in files:
            yield _Blob(name=str(file), path=file)
        return
    if not path.exists():
        raise TelemetryError(f"{path}: no such file or folder")
    yield _Blob(name=str(path), path=path)


def _s3_blobs(source: str) -> Iterator[_Blob]:
    from prewarm.s3 import list_objects, split_s3_uri

    bucket, prefix = split_s3_uri(source)
    keys = list_objects(bucket, prefix)
    if not keys:
        raise SourceError(f"{source}: no objects under this prefix; check the bucket and prefix")
    for key in keys:
        yield _Blob(name=f"s3://{bucket}/{key}", s3=(bucket, key))


def iter_source(source: str) -> Iterator[_Blob]:
    """The files a SOURCE names: a file, a folder (recursively, sorted) or every object under an S3 prefix."""
    if source.startswith("s3://"):
        yield from _s3_blobs(source)
    else:
        yield from _local_blobs(source)


def iter_frames(
    sources: list[str], *, chunk_rows: int = CHUNK_ROWS, on_empty: Callable[[str], None] | None = None
) -> Iterator[pd.DataFrame]:
    """Validated telemetry frames of every file of every source, in source order, a chunk at a time.

    A file with a header and no rows is passed by name to ``on_empty`` (default: a logged warning).
    """
    if not sources:
        raise TelemetryError("no telemetry sources given")
    for source in sources:
        for blob in iter_source(source):
            rows = 0
            for frame in iter_blob(blob, chunk_rows=chunk_rows):
                rows += len(frame)
                yield frame
            if rows == 0:
                (on_empty or _warn_empty)(blob.name)
            else:
                log.info("read %s rows from %s", rows, blob.name)


def _warn_empty(name: str) -> None:
    log.warning("%s: no telemetry rows, only a header; nothing read from it", name)


def read_sources(sources: list[str], *, on_empty: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Read and validate every file of every source; one concatenated frame, in source order."""
    return pd.concat(list(iter_frames(sources, on_empty=on_empty)), ignore_index=True)

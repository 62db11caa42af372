"""The artifact store: ``file://`` and ``s3://`` artifacts, fetched into a local cache keyed by sha256.

Artifacts are data from outside: a URI is fetched only when it lies under a prefix of
``PREWARM_ARTIFACT_SOURCES`` (:func:`check_source`, also used by the webhook before it registers anything).
An artifact enters the cache only after its bytes hash to the registered sha256 (written to a temporary
file, verified, then renamed). A cache entry is hashed again before it is used: once per process for as
long as its identity (path, size, mtime, inode and ctime) stays the same, and again whenever any of these
changes. ``ctime`` matters: it moves on every write, and unlike the mtime it cannot be set back with
``os.utime``, so bytes flipped in place are caught even when size and mtime are restored. An entry that no
longer hashes to its name is discarded and fetched again from its source.
S3 objects larger than one part are downloaded with concurrent ranged GETs into a preallocated file.
The cache keeps its total size under a limit by evicting the least recently used entries.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlparse

from warmers.errors import ArtifactError, ArtifactNotFoundError, ArtifactSourceError, ChecksumMismatchError
from warmers.logcontext import model_logger

logger = model_logger(__name__)

PART_BYTES = 8 * 1024 * 1024
HASH_CHUNK = 4 * 1024 * 1024

Verify = Literal["changed", "always"]
Identity = tuple[int, int, int, int]

# Cache entries this process has hashed, by path, with the identity they had then (size, mtime, inode, ctime).
_verified: dict[str, Identity] = {}
_verified_lock = threading.Lock()


@dataclass(frozen=True)
class Fetched:
    """A verified local copy of an artifact."""

    path: Path
    sha256: str
    size_bytes: int
    cache_hit: bool
    seconds: float


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_source(uri: str, sources: Sequence[str]) -> None:
    """Raise :class:`ArtifactSourceError` unless ``uri`` lies under one of the prefixes ``sources``.

    Local paths and ``file://`` URIs are compared after ``resolve()`` (``..`` and symlinks followed), so a
    link inside an allowed folder that points outside it is refused. ``s3://`` URIs are compared by bucket
    and then by whole key segments: ``s3://bucket`` allows ``s3://bucket/x`` but not ``s3://bucket-evil/x``.
    Any other scheme is refused.
    """
    target = _source_parts(uri)
    if target is not None:
        for source in sources:
            prefix = _source_parts(source)
            if prefix is not None and prefix[0] == target[0] and target[1][: len(prefix[1])] == prefix[1]:
                return
    allowed = ", ".join(sources) if sources else "none"
    raise ArtifactSourceError(
        f"{uri!r} is not under an allowed artifact source ({allowed}); add its prefix to "
        f"PREWARM_ARTIFACT_SOURCES to allow it"
    )


def _source_parts(uri: str) -> tuple[str, tuple[str, ...]] | None:
    """``("s3", (bucket, *key segments))`` or ``("file", resolved path parts)``; None for what is never allowed."""
    if "\x00" in uri:
        return None
    if uri[:5].lower() == "s3://":
        bucket, _, key = uri[5:].partition("/")
        if not bucket:
            return None
        segments = [part for part in posixpath.normpath("/" + key).split("/") if part]
        return "s3", (bucket, *segments)
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            return None
        path = Path(unquote(parsed.path))
    elif parsed.scheme == "":
        path = Path(uri)
    else:
        return None
    try:
        return "file", Path(os.path.abspath(path)).resolve().parts
    except (OSError, RuntimeError, ValueError):  # a symlink loop or an unusable path is never a source
        return None


def _identity(entry: Path) -> Identity:
    stat = entry.stat()
    return stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns


def forget_verified() -> None:
    """Forget which cache entries this process has verified, as a fresh process would (benchmarks, tests)."""
    with _verified_lock:
        _verified.clear()


def _local_path(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return Path(uri)


class ArtifactStore:
    """Fetches artifacts by URI and sha256 into a size-limited local cache; reads and writes small blobs."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        max_bytes: int,
        parallelism: int = 8,
        sources: Sequence[str] | None = None,
        verify: Verify = "changed",
    ) -> None:
        """``sources``: allowed URI prefixes (None: ``PREWARM_ARTIFACT_SOURCES`` at each fetch).

        ``verify="changed"`` hashes a cache entry once per process and again when its identity changes;
        ``"always"`` hashes it on every hit.
        """
        self.cache_dir = Path(cache_dir)
        self.max_bytes = max_bytes
        self.parallelism = parallelism
        self.sources = list(sources) if sources is not None else None
        self.verify = verify

    def allowed_sources(self) -> list[str]:
        """The URI prefixes this store fetches from."""
        if self.sources is not None:
            return self.sources
        from prewarm.settings import get_settings

        return get_settings().resolved_artifact_sources

    @classmethod
    def from_settings(cls) -> ArtifactStore:
        """The store configured by ``PREWARM_HOME`` (cache under ``<home>/cache``) and ``PREWARM_HOST__CACHE_MAX_GB``."""
        from prewarm.settings import get_settings

        settings = get_settings()
        return cls(settings.cache_dir, max_bytes=int(settings.host.cache_max_gb * 1024**3))

    # -- artifacts ------------------------------------------------------------------------------------
    def _entry(self, sha256: str) -> Path:
        return self.cache_dir / "artifacts" / sha256[:2] / sha256

    def fetch(self, uri: str, sha256: str) -> Fetched:
        """A verified local copy of ``uri``; raises :class:`ChecksumMismatchError` if the bytes are not ``sha256``.

        Raises :class:`ArtifactSourceError` before anything is read (the cache included) when ``uri`` is not
        under an allowed source. Nothing is cached (or loaded) when the checksum does not match.
        """
        start = time.perf_counter()
        check_source(uri, self.allowed_sources())
        entry = self._entry(sha256)
        if entry.exists() and self._entry_valid(entry, sha256):
            os.utime(entry)  # LRU order follows the last use
            _remember(entry)
            return Fetched(entry, sha256, entry.stat().st_size, True, time.perf_counter() - start)
        entry.parent.mkdir(parents=True, exist_ok=True)
        partial = entry.with_name(f"{sha256}.{os.getpid()}.{time.monotonic_ns()}.part")
        try:
            self._download(uri, partial)
            actual = sha256_file(partial)
            if actual != sha256:
                raise ChecksumMismatchError(
                    f"{uri}: sha256 is {actual}, the registry says {sha256}; the artifact was changed or the "
                    f"registry entry is stale. Nothing was loaded: re-register the model with the right sha256"
                )
            os.replace(partial, entry)
            _remember(entry)
        finally:
            partial.unlink(missing_ok=True)
        self._evict(keep=entry)
        size = entry.stat().st_size
        logger.info("fetched %s (%d bytes) into the cache", uri, size)
        return Fetched(entry, sha256, size, False, time.perf_counter() - start)

    def _entry_valid(self, entry: Path, sha256: str) -> bool:
        """Whether the entry still hashes to its name: hashed unless this process verified this very file."""
        identity = _identity(entry)
        if self.verify == "changed":
            with _verified_lock:
                if _verified.get(str(entry)) == identity:
                    return True
        if sha256_file(entry) == sha256:
            with _verified_lock:
                _verified[str(entry)] = identity
            return True
        logger.warning("cache entry %s does not hash to its name (changed on disk); discarding it, fetching again", entry)
        with _verified_lock:
            _verified.pop(str(entry), None)
        entry.unlink(missing_ok=True)
        return False

    def _download(self, uri: str, dest: Path) -> None:
        if urlparse(uri).scheme == "s3":
            self._download_s3(uri, dest)
            return
        source = _local_path(uri)
        try:
            with source.open("rb") as src, dest.open("wb") as out:
                while chunk := src.read(HASH_CHUNK):
                    out.write(chunk)
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"{uri}: no such file; check the model's artifact_uri") from None
        except OSError as exc:
            raise ArtifactError(f"{uri}: cannot read the artifact ({exc.strerror})") from exc

    def _download_s3(self, uri: str, dest: Path) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        from prewarm import s3

        bucket, key = s3.split_s3_uri(uri)
        client = s3.client()
        try:
            size = int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound"):
                raise ArtifactNotFoundError(f"{uri}: no such object; check the model's artifact_uri") from exc
            raise ArtifactError(str(s3.explain(exc, uri))) from exc
        except BotoCoreError as exc:
            raise ArtifactError(str(s3.explain(exc, uri))) from exc
        ranges = [(offset, min(offset + PART_BYTES, size) - 1) for offset in range(0, size, PART_BYTES)]
        with dest.open("wb") as out:
            out.truncate(size)
        fd = os.open(dest, os.O_WRONLY)
        try:

            def get_range(bounds: tuple[int, int]) -> None:
                first, last = bounds
                body = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}")["Body"].read()
                if len(body) != last - first + 1:
                    raise ArtifactError(f"{uri}: range {first}-{last} returned {len(body)} bytes")
                os.pwrite(fd, body, first)

            with ThreadPoolExecutor(max_workers=min(self.parallelism, max(1, len(ranges)))) as pool:
                list(pool.map(get_range, ranges))
        except (ClientError, BotoCoreError) as exc:
            raise ArtifactError(str(s3.explain(exc, uri))) from exc
        finally:
            os.close(fd)

    def _evict(self, *, keep: Path) -> None:
        root = self.cache_dir / "artifacts"
        entries = [p for p in root.glob("*/*") if p.suffix not in (".ok", ".part") and p.is_file()]
        total = sum(p.stat().st_size for p in entries)
        for path in sorted(entries, key=lambda p: p.stat().st_mtime):
            if total <= self.max_bytes:
                return
            if path == keep:
                continue
            total -= path.stat().st_size
            path.unlink(missing_ok=True)
            logger.info("evicted %s from the artifact cache (limit %d bytes)", path.name, self.max_bytes)
        if total > self.max_bytes:
            logger.warning("artifact %s alone exceeds the cache limit of %d bytes", keep.name, self.max_bytes)

    # -- small blobs (compile caches) -----------------------------------------------------------------
    def read_blob(self, uri: str) -> bytes | None:
        """The bytes at ``uri``, or None when nothing is stored there."""
        if urlparse(uri).scheme == "s3":
            from botocore.exceptions import BotoCoreError, ClientError

            from prewarm import s3

            bucket, key = s3.split_s3_uri(uri)
            try:
                return s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code", "") in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise ArtifactError(str(s3.explain(exc, uri))) from exc
            except BotoCoreError as exc:
                raise ArtifactError(str(s3.explain(exc, uri))) from exc
        path = _local_path(uri)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ArtifactError(f"{uri}: cannot read ({exc.strerror})") from exc

    def write_blob(self, uri: str, data: bytes) -> None:
        """Store ``data`` at ``uri`` (atomically for local paths)."""
        if urlparse(uri).scheme == "s3":
            from botocore.exceptions import BotoCoreError, ClientError

            from prewarm import s3

            bucket, key = s3.split_s3_uri(uri)
            try:
                s3.client().put_object(Bucket=bucket, Key=key, Body=data)
            except (ClientError, BotoCoreError) as exc:
                raise ArtifactError(str(s3.explain(exc, uri))) from exc
            return
        path = _local_path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.part")
        partial.write_bytes(data)
        os.replace(partial, path)


def _remember(entry: Path) -> None:
    """Record that ``entry``, as it is now on disk, was verified by this process."""
    with _verified_lock:
        _verified[str(entry)] = _identity(entry)


def join_uri(root: str, *parts: str) -> str:
    """``root`` (a folder, ``file://`` or ``s3://`` URI) joined with ``parts`` by ``/``."""
    return "/".join([root.rstrip("/"), *parts])

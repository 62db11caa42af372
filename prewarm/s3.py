"""S3 access with errors that say what to check. Endpoint and region come from the settings."""

from __future__ import annotations

import functools
from urllib.parse import urlparse

from prewarm.errors import SourceError


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> ``(bucket, prefix)``."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise SourceError(f"{uri}: not an S3 URI; expected s3://bucket/prefix")
    return parsed.netloc, parsed.path.lstrip("/")


@functools.lru_cache(maxsize=4)
def _client(endpoint_url: str | None, region: str):  # type: ignore[no-untyped-def]
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=32),
    )


def client():  # type: ignore[no-untyped-def]
    """A boto3 S3 client for the configured endpoint (cached per endpoint and region)."""
    from prewarm.settings import get_settings

    settings = get_settings()
    return _client(settings.s3.endpoint_url, settings.s3.region)


def explain(exc: Exception, where: str) -> SourceError:
    """Turn a botocore error into a :class:`SourceError` that names the bucket and the likely cause."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket",):
            return SourceError(f"{where}: the bucket does not exist")
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"):
            return SourceError(f"{where}: access denied ({code}); check the credentials and the bucket policy")
        if code in ("NoSuchKey", "404"):
            return SourceError(f"{where}: no such object")
        return SourceError(f"{where}: S3 error {code}: {exc}")
    if isinstance(exc, BotoCoreError):
        return SourceError(f"{where}: cannot reach S3 ({exc}); check PREWARM_S3__ENDPOINT_URL and credentials")
    return SourceError(f"{where}: {exc}")


def list_objects(bucket: str, prefix: str) -> list[str]:
    """Every object key under ``prefix``, sorted; directory markers are skipped."""
    from botocore.exceptions import BotoCoreError, ClientError

    keys: list[str] = []
    try:
        paginator = client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []) if not obj["Key"].endswith("/"))
    except (ClientError, BotoCoreError) as exc:
        raise explain(exc, f"s3://{bucket}/{prefix}") from exc
    return sorted(keys)


def open_object(bucket: str, key: str, *, first_bytes: int | None = None):  # type: ignore[no-untyped-def]
    """A stream of the object's bytes (read it in pieces), or only its first ``first_bytes`` bytes."""
    from botocore.exceptions import BotoCoreError, ClientError

    extra = {"Range": f"bytes=0-{first_bytes - 1}"} if first_bytes else {}
    try:
        return client().get_object(Bucket=bucket, Key=key, **extra)["Body"]
    except (ClientError, BotoCoreError) as exc:
        raise explain(exc, f"s3://{bucket}/{key}") from exc


def download_object(bucket: str, key: str, fileobj) -> None:  # type: ignore[no-untyped-def]
    """Copy the object into ``fileobj`` in parts (for formats that need to seek, such as Parquet)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client().download_fileobj(bucket, key, fileobj)
    except (ClientError, BotoCoreError) as exc:
        raise explain(exc, f"s3://{bucket}/{key}") from exc

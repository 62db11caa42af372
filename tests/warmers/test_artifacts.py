"""The artifact store: verified fetches from file:// and s3:// (moto server), the sha256 cache and its size limit."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from warmers import artifacts
from warmers.artifacts import ArtifactStore
from warmers.errors import ArtifactNotFoundError, ChecksumMismatchError


def blob(size: int, seed: int) -> tuple[bytes, str]:
    data = (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]
    return data, hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "cache", max_bytes=10_000)


def test_file_fetch_verifies_then_hits_the_cache(tmp_path: Path, store: ArtifactStore) -> None:
    data, sha = blob(3000, 1)
    source = tmp_path / "model.bin"
    source.write_bytes(data)
    first = store.fetch(source.as_uri(), sha)
    assert not first.cache_hit and first.path.read_bytes() == data and first.size_bytes == 3000
    source.unlink()  # a hit does not need the source any more
    second = store.fetch(source.as_uri(), sha)
    assert second.cache_hit and second.path == first.path


def test_checksum_mismatch_caches_nothing(tmp_path: Path, store: ArtifactStore) -> None:
    data, _ = blob(100, 2)
    _, other_sha = blob(100, 3)
    source = tmp_path / "model.bin"
    source.write_bytes(data)
    with pytest.raises(ChecksumMismatchError, match=r"model.bin: sha256 is [0-9a-f]{64}, the registry says " + other_sha):
        store.fetch(str(source), other_sha)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_missing_file_is_not_found(tmp_path: Path, store: ArtifactStore) -> None:
    _, sha = blob(10, 4)
    with pytest.raises(ArtifactNotFoundError, match=r"nowhere.bin: no such file; check the model's artifact_uri"):
        store.fetch(str(tmp_path / "nowhere.bin"), sha)


def test_a_changed_cache_entry_is_fetched_again(tmp_path: Path, store: ArtifactStore) -> None:
    data, sha = blob(500, 5)
    source = tmp_path / "model.bin"
    source.write_bytes(data)
    entry = store.fetch(str(source), sha).path
    entry.write_bytes(b"corrupted")
    again = store.fetch(str(source), sha)
    assert not again.cache_hit and again.path.read_bytes() == data


def test_the_cache_evicts_least_recently_used_entries(tmp_path: Path, store: ArtifactStore) -> None:
    paths = []
    for seed in range(3):
        data, sha = blob(4000, 10 + seed)
        source = tmp_path / f"m{seed}.bin"
        source.write_bytes(data)
        paths.append((source, sha))
    first = store.fetch(str(paths[0][0]), paths[0][1]).path
    second = store.fetch(str(paths[1][0]), paths[1][1]).path
    os.utime(first, (1, 1))
    os.utime(second, (2, 2))
    store.fetch(str(paths[0][0]), paths[0][1])  # a hit makes the first entry the most recent
    store.fetch(str(paths[2][0]), paths[2][1])  # 12000 bytes > 10000: the least recent (second) goes
    assert first.exists() and not second.exists()


def test_s3_fetch_uses_concurrent_ranged_gets(
    s3, bucket: str, tmp_path: Path, store: ArtifactStore, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setattr(artifacts, "PART_BYTES", 1000)
    data, sha = blob(7500, 20)
    s3.put_object(Bucket=bucket, Key="models/m.bin", Body=data)
    ranges: list[str] = []
    from prewarm import s3 as s3_module

    client = s3_module.client()
    original = client.get_object

    def spy(**kwargs):  # type: ignore[no-untyped-def]
        ranges.append(kwargs.get("Range", ""))
        return original(**kwargs)

    monkeypatch.setattr(client, "get_object", spy)
    fetched = store.fetch(f"s3://{bucket}/models/m.bin", sha)
    assert fetched.path.read_bytes() == data and not fetched.cache_hit
    assert sorted(ranges) == sorted(f"bytes={o}-{min(o + 1000, 7500) - 1}" for o in range(0, 7500, 1000))


def test_s3_missing_key_and_mismatch(s3, bucket: str, store: ArtifactStore) -> None:  # type: ignore[no-untyped-def]
    data, sha = blob(50, 21)
    with pytest.raises(ArtifactNotFoundError, match=rf"s3://{bucket}/absent.bin: no such object"):
        store.fetch(f"s3://{bucket}/absent.bin", sha)
    s3.put_object(Bucket=bucket, Key="m.bin", Body=data + b"x")
    with pytest.raises(ChecksumMismatchError, match=r"the registry says"):
        store.fetch(f"s3://{bucket}/m.bin", sha)


def test_blobs_round_trip_on_disk_and_s3(s3, bucket: str, tmp_path: Path, store: ArtifactStore) -> None:  # type: ignore[no-untyped-def]
    for uri in (str(tmp_path / "store" / "compile-cache" / "k.bin"), f"s3://{bucket}/compile-cache/k.bin"):
        assert store.read_blob(uri) is None
        store.write_blob(uri, b"kernels")
        assert store.read_blob(uri) == b"kernels"

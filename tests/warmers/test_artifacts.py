"""The artifact store: allowed sources, verified fetches from file:// and s3:// (moto server), the sha256 cache,
its re-verification on every load and its size limit."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from warmers import artifacts
from warmers.artifacts import ArtifactStore
from warmers.artifacts import check_source
from warmers.errors import ArtifactNotFoundError, ArtifactSourceError, ChecksumMismatchError


def blob(size: int, seed: int) -> tuple[bytes, str]:
    data = (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]
    return data, hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "cache", max_bytes=10_000, sources=[str(tmp_path)])


@pytest.fixture
def s3_store(tmp_path: Path, bucket: str) -> ArtifactStore:
    return ArtifactStore(tmp_path / "cache", max_bytes=10_000, sources=[f"s3://{bucket}"])


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
    s3, bucket: str, tmp_path: Path, s3_store: ArtifactStore, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    store = s3_store
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


def test_s3_missing_key_and_mismatch(s3, bucket: str, s3_store: ArtifactStore) -> None:  # type: ignore[no-untyped-def]
    store = s3_store
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


@pytest.mark.parametrize(("uri", "allowed"), [
    ("s3://models/x.pt2", True),
    ("s3://models/team/a/x.pt2", True),
    ("S3://models/x.pt2", True),
    ("s3://models-evil/x.pt2", False),
    ("s3://other/x.pt2", False),
    ("s3://models/../other/x.pt2", True),  # S3 keys are literal, but the key is still under the bucket
    ("s3://models", True),
    ("s3:///x.pt2", False),
    ("http://models/x.pt2", False),
    ("/etc/shadow", False),
    ("file:///etc/shadow", False),
    ("file://evil-host/srv/models/x.pt2", False),
    ("/srv/models/../../etc/hostname", False),
    ("/srv/models/x\x00.pt2", False),
])
def test_check_source_compares_on_boundaries(uri: str, allowed: bool) -> None:
    sources = ["s3://models", "/srv/models"]
    if allowed:
        check_source(uri, sources)
        return
    with pytest.raises(ArtifactSourceError, match=r"is not under an allowed artifact source \(s3://models, /srv/models\); "
                       r"add its prefix to PREWARM_ARTIFACT_SOURCES to allow it"):
        check_source(uri, sources)


def test_check_source_scopes_s3_keys_and_local_paths(tmp_path: Path) -> None:
    check_source("s3://models/prod/x.pt2", ["s3://models/prod/"])
    for refused in ("s3://models/production/x.pt2", "s3://models/prod/../dev/x.pt2", "s3://models/x.pt2"):
        with pytest.raises(ArtifactSourceError):
            check_source(refused, ["s3://models/prod"])
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "m.bin").write_bytes(b"m")
    for spelling in (str(allowed / "m.bin"), (allowed / "m.bin").as_uri(), f"{allowed}/sub/../m.bin"):
        check_source(spelling, [allowed.as_uri()])
        check_source(spelling, [str(allowed) + "/"])
    with pytest.raises(ArtifactSourceError):
        check_source(str(tmp_path / "allowed-not" / "m.bin"), [str(allowed)])
    with pytest.raises(ArtifactSourceError, match="none"):
        check_source(str(allowed / "m.bin"), [])


def test_a_symlink_out_of_an_allowed_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"secret")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "link.bin").symlink_to(outside)
    with pytest.raises(ArtifactSourceError, match="link.bin"):
        check_source(str(allowed / "link.bin"), [str(allowed)])


def test_the_store_fetches_nothing_from_outside_its_sources(tmp_path: Path) -> None:
    data, sha = blob(300, 30)
    source = tmp_path / "elsewhere" / "model.bin"
    source.parent.mkdir()
    source.write_bytes(data)
    trusting = ArtifactStore(tmp_path / "cache", max_bytes=10_000, sources=[str(source.parent)])
    trusting.fetch(str(source), sha)  # now cached under its sha256
    store = ArtifactStore(tmp_path / "cache", max_bytes=10_000, sources=[str(tmp_path / "models")])
    with pytest.raises(ArtifactSourceError, match=r"model.bin' is not under an allowed artifact source"):
        store.fetch(str(source), sha)  # refused even though the bytes are in the cache


def test_the_store_reads_its_sources_from_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prewarm.settings import reset_settings

    data, sha = blob(300, 31)
    source = tmp_path / "model.bin"
    source.write_bytes(data)
    store = ArtifactStore(tmp_path / "cache", max_bytes=10_000)
    monkeypatch.delenv("PREWARM_ARTIFACT_SOURCES")
    monkeypatch.setenv("PREWARM_ARTIFACT_ROOT", str(tmp_path / "root"))
    reset_settings()
    with pytest.raises(ArtifactSourceError, match=r"root, .*examples/artifacts\); add its prefix"):
        store.fetch(str(source), sha)
    monkeypatch.setenv("PREWARM_ARTIFACT_SOURCES", f"{tmp_path / 'root'},{tmp_path}")
    reset_settings()
    assert store.fetch(str(source), sha).path.read_bytes() == data


def tamper(entry: Path) -> None:
    """Flip bytes in place and put size and modification time back, as a careful attacker would."""
    stat = entry.stat()
    with entry.open("r+b") as handle:
        handle.seek(10)
        byte = handle.read(1)
        handle.seek(10)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(entry, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert entry.stat().st_size == stat.st_size and entry.stat().st_mtime_ns == stat.st_mtime_ns


def test_a_tampered_entry_is_discarded_and_fetched_again_in_the_same_process(tmp_path: Path, store: ArtifactStore) -> None:
    data, sha = blob(2000, 32)
    source = tmp_path / "model.bin"
    source.write_bytes(data)
    entry = store.fetch(str(source), sha).path
    assert store.fetch(str(source), sha).cache_hit
    tamper(entry)
    again = store.fetch(str(source), sha)
    assert not again.cache_hit and again.path.read_bytes() == data


def test_a_tampered_entry_is_never_loaded_by_a_new_process(tmp_path: Path, store: ArtifactStore) -> None:
    data, sha = blob(2000, 33)
    source = tmp_path / "model.bin"
    source.write_bytes(data)
    entry = store.fetch(str(source), sha).path
    tamper(entry)
    artifacts.forget_verified()  # what a restarted host knows
    source.write_bytes(data[:-1] + b"?")  # the source went bad too: nothing good is left to load
    with pytest.raises(ChecksumMismatchError, match="the registry says"):
        store.fetch(str(source), sha)
    assert not entry.exists()


def test_the_fast_path_hashes_an_unchanged_entry_once_per_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, sha = blob(2000, 34)
    source = tmp_path / "model.bin"
    source.write_bytes(data)
    hashed: list[Path] = []
    original = artifacts.sha256_file

    def counting(path: Path) -> str:
        hashed.append(path)
        return original(path)

    monkeypatch.setattr(artifacts, "sha256_file", counting)
    fast = ArtifactStore(tmp_path / "cache", max_bytes=10_000, sources=[str(tmp_path)])
    entry = fast.fetch(str(source), sha).path  # the download is hashed
    for _ in range(3):
        assert fast.fetch(str(source), sha).cache_hit
    assert hashed.count(entry) == 0 and len(hashed) == 1
    artifacts.forget_verified()
    fast.fetch(str(source), sha)
    fast.fetch(str(source), sha)
    assert hashed.count(entry) == 1  # a new process hashes it once
    always = ArtifactStore(tmp_path / "cache", max_bytes=10_000, sources=[str(tmp_path)], verify="always")
    always.fetch(str(source), sha)
    always.fetch(str(source), sha)
    assert hashed.count(entry) == 3

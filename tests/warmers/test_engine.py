"""The in-process engine: staged warm runs, reports, failures that leave others serving, memory accounting."""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath

import pytest
import torch
from sqlalchemy import inspect as sa_inspect

from db.models import WarmRun
from prewarm.fleet import ModelSpec
from tests.warmers.conftest import make_engine
from warmers import Baseline, Engine, ModelState, WarmReport, warm
from warmers.errors import ModelNotFoundError, ModelNotReadyError

STAGES = ["fetch", "load", "cold_first_request", "warmup", "validate"]


def variant(spec: ModelSpec, **changes: object) -> ModelSpec:
    return ModelSpec.model_validate({**spec.model_dump(), **changes})


def probe(spec: ModelSpec, batch: int = 1) -> dict[str, torch.Tensor]:
    from warmers.tensors import example_inputs

    dims = {name: (batch if name == "batch" else values[0]) for name, values in spec.warmup.buckets.items()}
    return example_inputs(spec.warmup, dims, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", ["chat-small", "embedder", "reranker", "ocr-longtail"])
def test_every_example_model_warms_and_answers(cpu_engine: Engine, example_specs: dict[str, ModelSpec], name: str) -> None:
    engine = cpu_engine
    spec = example_specs[name]
    report = warm(spec, target=engine)
    assert report.ready, report.reason
    assert list(report.stage_seconds) == STAGES and all(s >= 0 for s in report.stage_seconds.values())
    assert report.cold_first_request_ms and report.warm_first_request_ms and report.steady_p50_ms
    assert report.steady_p99_ms >= report.steady_p50_ms
    assert report.time_to_ready_s >= sum(report.stage_seconds.values()) * 0.99
    assert report.memory_mb >= spec.device_memory_mb
    assert report.cache_hits == {"artifact": False, "compile": None}
    assert report.device_class.startswith("cpu:")
    entry, outputs = engine.infer(name, None, probe(spec))
    assert entry.state is ModelState.READY and outputs[0].isfinite().all()
    assert [o.name for o in entry.loaded.outputs] == ([t.name for t in spec.warmup.outputs] or ["output0"])


def test_report_fields_map_onto_warm_run_columns(cpu_engine: Engine, example_specs: dict[str, ModelSpec]) -> None:
    engine = cpu_engine
    report = engine.warm(example_specs["reranker"])
    data = json.loads(json.dumps(report.to_dict()))
    columns = {c.key for c in sa_inspect(WarmRun).columns}
    shared = {"stage_seconds", "cold_first_request_ms", "warm_first_request_ms", "steady_p50_ms", "steady_p99_ms",
              "baseline_p50_ms", "latency_delta_ms", "time_to_ready_s", "device_class", "ready", "error"}
    assert shared <= columns and shared <= set(data)
    assert WarmReport.from_dict(data) == report


def test_baseline_and_sla_decide_readiness(cpu_engine: Engine, example_specs: dict[str, ModelSpec]) -> None:
    engine = cpu_engine
    spec = example_specs["reranker"]
    before = engine.memory_used_mb
    report = engine.warm(spec, baseline=Baseline(p50_ms=1e-6, tolerance=1.0, slack_ms=0.0))
    assert not report.ready and report.error is None
    assert report.reason and report.reason.startswith("steady p50")
    assert report.baseline_p50_ms == 1e-6 and report.latency_delta_ms == pytest.approx(report.steady_p50_ms - 1e-6)
    assert engine.get("reranker").state is ModelState.UNAVAILABLE and engine.memory_used_mb == before
    with pytest.raises(ModelNotReadyError, match=r"model 'reranker' version '1' is not ready: steady p50"):
        engine.infer("reranker", None, probe(spec))
    strict_sla = variant(spec, sla_p99_ms=1e-6)
    assert "exceeds the SLA" in (engine.warm(strict_sla).reason or "")
    assert engine.warm(spec, baseline=Baseline(p50_ms=10_000.0, first_request_ms=10_000.0)).ready


def test_broken_models_fail_with_their_error_while_others_serve(
    cpu_engine: Engine, example_specs: dict[str, ModelSpec], tmp_path: Path
) -> None:
    engine = cpu_engine
    good = example_specs["reranker"]
    assert engine.warm(good).ready
    other = "0" * 64
    cases = {
        "tampered": (variant(good, name="tampered", sha256=other), "ChecksumMismatchError", r"the registry says 0{64}"),
        # the cache is content-addressed: a missing file whose sha256 is cached would still load
        "missing": (variant(good, name="missing", artifact_uri=str(tmp_path / "gone.st"), sha256="1" * 64),
                    "ArtifactNotFoundError", "gone.st: no such file"),
        "badimport": (variant(good, name="badimport", factory="warmers.zoo.no_such_module:build"), "ModelLoadError",
                      r"factory 'warmers.zoo.no_such_module:build': cannot import module 'warmers.zoo.no_such_module'"),
        "badattr": (variant(good, name="badattr", factory="warmers.zoo:no_such_function"), "ModelLoadError",
                    r"module 'warmers.zoo' has no callable 'no_such_function'"),
        "exploding": (variant(good, name="exploding", factory="tests.warmers.fault_zoo:exploding_factory"), "ModelLoadError",
                      r"factory 'tests.warmers.fault_zoo:exploding_factory' failed: layer sizes do not add up"),
        "mismatch": (variant(good, name="mismatch", factory="warmers.zoo:embedder"), "ModelLoadError",
                     r"do not fit the module built by 'warmers.zoo:embedder'"),
        "oom": (variant(good, name="oom", factory="tests.warmers.fault_zoo:oom_reranker"), "DeviceOutOfMemoryError",
                r"model oom:1: out of device memory while warming"),
    }
    for name, (spec, error_type, message) in cases.items():
        used = engine.memory_used_mb
        report = engine.warm(spec)
        assert not report.ready and report.error_type == error_type, (name, report.error)
        assert report.error and pytest.approx(engine.memory_used_mb) == used
        import re

        assert re.search(message, report.error), (name, report.error)
        assert engine.get(name).state is ModelState.UNAVAILABLE and engine.get(name).report == report
    assert engine.infer("reranker", None, probe(good))[1][0].shape == (1,)
    assert "tampered" not in {p.name for p in (engine.store.cache_dir / "artifacts").rglob("*")}


def test_unload_returns_accounted_memory(cpu_engine: Engine, example_specs: dict[str, ModelSpec]) -> None:
    engine = cpu_engine
    before = engine.memory_used_mb
    report = engine.warm(example_specs["embedder"])
    assert engine.memory_used_mb == pytest.approx(before + report.memory_mb)
    assert engine.unload("embedder") == pytest.approx(report.memory_mb)
    assert engine.memory_used_mb == before
    assert engine.get("embedder").state is ModelState.UNAVAILABLE
    with pytest.raises(ModelNotFoundError, match=r"model 'nope' is not known"):
        engine.unload("nope")


def test_lru_eviction_spares_pinned_and_recently_used_models(tmp_path: Path, example_specs: dict[str, ModelSpec]) -> None:
    engine = make_engine(tmp_path, capacity_mb=32.0)
    chat, embedder, reranker, ocr = (example_specs[n] for n in ("chat-small", "embedder", "reranker", "ocr-longtail"))
    assert chat.pinned and not embedder.pinned
    for spec in (chat, embedder, reranker):  # 16 + 8 + 4 = 28 of 32
        assert engine.warm(spec).ready
    engine.infer("embedder", None, probe(embedder))  # the reranker is now the least recently used
    assert engine.warm(ocr).ready  # needs 8 with 4 free: evicting the least recently used reranker (4) is enough
    states = {e.spec.name: e.state for e in engine.entries()}
    assert states["chat-small"] is ModelState.READY and states["ocr-longtail"] is ModelState.READY
    assert states["embedder"] is ModelState.READY
    assert states["reranker"] is ModelState.UNAVAILABLE and "evicted to make room for ocr-longtail" in (engine.get("reranker").reason or "")
    assert engine.memory_used_mb <= engine.capacity_mb
    huge = variant(reranker, name="huge", device_memory_mb=100.0)
    report = engine.warm(huge)
    assert report.error_type == "CapacityError"
    assert "needs 100.0 MiB but only" in (report.error or "") and "raise PREWARM_HOST__DEVICE_MEMORY_MB" in (report.error or "")
    assert engine.get("chat-small").state is ModelState.READY


def test_a_new_version_replaces_the_old_after_it_is_ready(cpu_engine: Engine, example_specs: dict[str, ModelSpec]) -> None:
    engine = cpu_engine
    v1 = example_specs["reranker"]
    v2 = variant(v1, version="2")
    engine.warm(v1)
    assert engine.warm(v2).ready
    assert engine.get("reranker").spec.version == "2"
    assert engine.get("reranker", "1").state is ModelState.UNAVAILABLE
    assert engine.get("reranker", "1").reason == "replaced by version 2"
    with pytest.raises(ModelNotFoundError, match=r"model 'reranker' has no version '3'"):
        engine.get("reranker", "3")


def test_warming_a_resident_model_revalidates_it(cpu_engine: Engine, example_specs: dict[str, ModelSpec]) -> None:
    engine = cpu_engine
    spec = example_specs["reranker"]
    engine.warm(spec)
    again = engine.warm(spec)
    assert again.ready and again.cache_hits == {"artifact": True, "resident": True}
    assert "load" not in again.stage_seconds and again.cold_first_request_ms is None


def test_second_fetch_is_a_cache_hit(tmp_path: Path, example_specs: dict[str, ModelSpec]) -> None:
    make_engine(tmp_path).warm(example_specs["embedder"])
    assert make_engine(tmp_path).warm(example_specs["embedder"]).cache_hits["artifact"] is True


@pytest.mark.slow
def test_compile_artifacts_are_saved_then_restored(
    tmp_path: Path, example_specs: dict[str, ModelSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = example_specs["reranker"]
    spec = variant(base, compile="default", warmup={**base.warmup.model_dump(), "buckets": {"batch": [1]}})
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor-first-host"))
    cold = make_engine(tmp_path).warm(spec)
    assert cold.ready and cold.cache_hits["compile"] is False and "compile" in cold.stage_seconds
    [entry] = list((tmp_path / "store" / "compile-cache").glob("*.bin"))
    import zipfile

    names = zipfile.ZipFile(entry).namelist()
    assert "mega.bin" in names and any(n.startswith("kernels/") and n.endswith(".so") for n in names)
    torch._dynamo.reset()
    fresh = tmp_path / "inductor-second-host"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(fresh))
    hit = make_engine(tmp_path).warm(spec)
    assert hit.ready and hit.cache_hits["compile"] is True
    restored = {p.name for p in fresh.rglob("*.so")}
    assert restored and restored == {PurePosixPath(n).name for n in names if n.endswith(".so")}


@pytest.mark.slow
def test_a_tampered_compile_cache_entry_compiles_cold_and_is_replaced(
    tmp_path: Path, example_specs: dict[str, ModelSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import zipfile

    from warmers import compile_cache

    base = example_specs["reranker"]
    spec = variant(base, compile="default", warmup={**base.warmup.model_dump(), "buckets": {"batch": [1]}})
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor-first-host"))
    assert make_engine(tmp_path).warm(spec).ready
    [entry] = list((tmp_path / "store" / "compile-cache").glob("*.bin"))
    with zipfile.ZipFile(entry) as src:
        members = {name: src.read(name) for name in src.namelist()}
    # A compiled kernel when this process built one; the mega-cache when an earlier test left its kernels loaded.
    kernel = next((name for name in members if name.endswith(".so")), "mega.bin")
    members[kernel] = members[kernel][:-1] + bytes([members[kernel][-1] ^ 0xFF])  # the manifest stays as it was
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dest:
        for name, data in members.items():
            dest.writestr(name, data)
    entry.write_bytes(out.getvalue())
    torch._dynamo.reset()
    fresh = tmp_path / "inductor-second-host"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(fresh))
    again = make_engine(tmp_path).warm(spec)
    assert again.ready and again.cache_hits["compile"] is False
    if kernel != "mega.bin":
        installed = fresh / PurePosixPath(kernel.removeprefix("kernels/"))
        assert not installed.exists() or installed.read_bytes() != members[kernel]
    assert compile_cache.verified_members(entry.read_bytes())  # the cold compile saved a good entry over it


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_cuda_load_uses_pinned_copies_and_unload_frees_device_memory(tmp_path: Path, example_specs: dict[str, ModelSpec]) -> None:
    engine = make_engine(tmp_path, device="cuda")
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    report = engine.warm(example_specs["embedder"])
    assert report.ready and report.device_class.startswith("cuda:")
    engine.unload("embedder")
    assert torch.cuda.memory_allocated() == before


@cuda
def test_cuda_out_of_memory_leaves_the_model_not_ready(tmp_path: Path, example_specs: dict[str, ModelSpec]) -> None:
    engine = make_engine(tmp_path, device="cuda")
    base = example_specs["embedder"]
    huge = variant(base, name="huge-batch", warmup={**base.warmup.model_dump(), "buckets": {"batch": [2_000_000], "seq": [64]}})
    assert engine.warm(base).ready
    report = engine.warm(huge)
    assert not report.ready and report.error_type == "DeviceOutOfMemoryError"
    assert engine.get("embedder").state is ModelState.READY


def test_a_changed_spec_loads_beside_the_serving_copy(
    cpu_engine: Engine, example_specs: dict[str, ModelSpec], tmp_path: Path
) -> None:
    engine = cpu_engine
    spec = example_specs["reranker"]
    engine.warm(spec)
    broken = variant(spec, sha256="2" * 64, artifact_uri=str(tmp_path / "nonexistent" / "reranker.safetensors"))
    report = engine.warm(broken)
    assert not report.ready and report.error_type == "ArtifactNotFoundError"
    entry = engine.get("reranker")
    assert entry.state is ModelState.READY and entry.spec == spec and entry.report == report
    assert engine.infer("reranker", None, probe(spec))[1][0].shape == (1,)
    changed = variant(spec, device_memory_mb=5.0)
    assert engine.warm(changed).ready and engine.get("reranker").spec == changed
    assert engine.memory_used_mb == pytest.approx(5.0)


def test_a_model_failing_on_a_request_raises_inference_error(cpu_engine: Engine, example_specs: dict[str, ModelSpec]) -> None:
    from warmers.errors import InferenceError

    spec = variant(example_specs["reranker"], name="fragile", factory="tests.warmers.fault_zoo:fragile_reranker")
    assert cpu_engine.warm(spec).ready
    zeros = {"query": torch.zeros(1, 64), "document": torch.ones(1, 64)}
    with pytest.raises(InferenceError, match=r"model 'fragile': inference failed: RuntimeError: index 7 is out of bounds"):
        cpu_engine.infer("fragile", None, zeros)


def test_a_spec_for_another_device_is_refused(cpu_engine: Engine, example_specs: dict[str, ModelSpec]) -> None:
    spec = example_specs["reranker"]
    assert cpu_engine.warm(variant(spec, device="cpu")).ready
    other = variant(spec, name="on-gpu", device="cuda:0")
    report = cpu_engine.warm(other)
    assert not report.ready and report.error_type == "ModelLoadError"
    expected = "this engine serves cpu" if torch.cuda.is_available() else "this machine has no CUDA device"
    assert expected in (report.error or "")


def test_log_lines_carry_the_model(cpu_engine: Engine, example_specs: dict[str, ModelSpec], caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with caplog.at_level(logging.INFO, logger="warmers"):
        cpu_engine.warm(example_specs["reranker"])
    assert any(r.getMessage().startswith("[reranker:1] ready in") for r in caplog.records)
    assert any(r.getMessage().startswith("[reranker:1] fetched ") and r.name == "warmers.artifacts" for r in caplog.records)


def test_a_factory_outside_the_allowed_modules_is_never_imported(
    cpu_engine: Engine, example_specs: dict[str, ModelSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from prewarm.settings import reset_settings

    monkeypatch.setenv("PREWARM_FACTORY_MODULES", "warmers.zoo")
    reset_settings()
    sys.modules.pop("tests.warmers.import_probe", None)
    for name, factory in (("probe", "tests.warmers.import_probe:build"), ("system", "os:system")):
        spec = variant(example_specs["reranker"], name=name, factory=factory)
        report = cpu_engine.warm(spec)
        assert not report.ready
        assert report.error_type == "FactoryNotAllowedError"
        assert re.search(rf"factory '{re.escape(factory)}' is not under PREWARM_FACTORY_MODULES \(warmers.zoo\)",
                         report.reason or "")
    assert "tests.warmers.import_probe" not in sys.modules


def test_a_tampered_cache_entry_is_never_served(tmp_path: Path, example_specs: dict[str, ModelSpec]) -> None:
    import os

    spec = example_specs["embedder"]
    first = make_engine(tmp_path)
    assert first.warm(spec).ready
    expected = first.infer("embedder", None, probe(spec))[1][0]
    [entry] = [p for p in (tmp_path / "cache").rglob(spec.sha256)]
    stat = entry.stat()
    with entry.open("r+b") as handle:  # flip bytes in the middle of the weights, then restore size and mtime
        handle.seek(stat.st_size // 2)
        chunk = handle.read(64)
        handle.seek(stat.st_size // 2)
        handle.write(bytes(b ^ 0xFF for b in chunk))
    os.utime(entry, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = make_engine(tmp_path)
    report = second.warm(spec)
    assert report.ready and report.cache_hits["artifact"] is False  # discarded and fetched again from the source
    assert torch.equal(second.infer("embedder", None, probe(spec))[1][0], expected)


def test_an_artifact_outside_the_allowed_sources_is_not_loaded(
    cpu_engine: Engine, example_specs: dict[str, ModelSpec], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from prewarm.settings import reset_settings

    monkeypatch.setenv("PREWARM_ARTIFACT_SOURCES", f"{tmp_path / 'models'},s3://models")
    reset_settings()
    report = cpu_engine.warm(example_specs["reranker"])
    assert not report.ready and report.error_type == "ArtifactSourceError"
    assert re.search(r"reranker.safetensors' is not under an allowed artifact source \(.*/models, s3://models\); "
                     r"add its prefix to PREWARM_ARTIFACT_SOURCES", report.reason or "")

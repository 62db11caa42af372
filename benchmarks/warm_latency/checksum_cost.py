"""What checksum verification on cache hits costs time-to-ready: every load, the fast path, and none.

    .venv/bin/python benchmarks/warm_latency/checksum_cost.py [--reps 3] [--big-mb 700] [--out FILE.json]

Models: the example fleet (CPU) and one large safetensors file (``warmers.zoo:reranker`` with a hidden width
chosen so the weights come to ``--big-mb``, seeded). Every artifact is fetched into a fresh cache once;
then each mode warms each model on a cache hit in a fresh engine, ``--reps`` times, modes interleaved:

- ``always``: the entry is hashed on every load (``ArtifactStore(verify="always")``);
- ``fast-first``: the fast path in a process that has not verified the entry yet (what a restarted host
  pays once): the verified-entries memory is cleared before each rep;
- ``fast-repeat``: the fast path once this process has verified the entry (a ``stat`` per load);
- ``none``: no verification at all (a store that trusts any entry named by the sha256; not offered by prewarm,
  measured as the floor).

The file is in the page cache for every mode (it was just written and read), so hashing is CPU-bound here;
from a cold disk the first load reads the file anyway and the hash overlaps nothing. Reports the median
time-to-ready and fetch stage per model and mode, and the machine's load average; writes JSON with --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

MODES = ("always", "fast-first", "fast-repeat", "none")


def log(message: str) -> None:
    """Progress on stderr."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def big_model(folder: Path, megabytes: int) -> dict[str, Any]:
    """A reranker whose fp32 weights come to about ``megabytes`` MB, saved as safetensors; its raw fleet entry."""
    import hashlib

    import torch
    from safetensors.torch import save_file

    from warmers.zoo import reranker

    d_in = 64
    hidden = int(((3 * d_in) ** 2 / 4 + megabytes * 1e6 / 4) ** 0.5 - 3 * d_in / 2)  # hidden^2 + 3*d_in*hidden
    torch.manual_seed(0)
    module = reranker(d_in=d_in, hidden=hidden)
    path = folder / "big-reranker.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {
        "name": "big-reranker", "artifact_uri": str(path), "sha256": digest, "loader": "safetensors",
        "factory": "warmers.zoo:reranker", "factory_kwargs": {"d_in": d_in, "hidden": hidden},
        "warmup": {
            "inputs": [{"name": "query", "shape": ["batch", d_in]}, {"name": "document", "shape": ["batch", d_in]}],
            "buckets": {"batch": [1]}, "iterations": 1, "probes": 3,
        },
    }


def specs(folder: Path, megabytes: int) -> list[Any]:
    """The example fleet (no SLAs) and the large model."""
    from prewarm.fleet import ModelSpec, load_fleet
    from warmers.sources import EXAMPLE_FLEET

    fleet = [spec.model_copy(update={"sla_p99_ms": None}) for spec in load_fleet(EXAMPLE_FLEET).models if not spec.foreign]
    return [*fleet, ModelSpec.model_validate(big_model(folder, megabytes))]


def store_for(mode: str, cache: Path, sources: list[str]) -> Any:
    from warmers import artifacts
    from warmers.artifacts import ArtifactStore

    class TrustingStore(ArtifactStore):
        """The floor: an entry named by the sha256 is used without hashing."""

        def _entry_valid(self, entry: Path, sha256: str) -> bool:
            return True

    if mode == "none":
        return TrustingStore(cache, max_bytes=2**40, sources=sources)
    if mode == "fast-first":
        artifacts.forget_verified()
    return ArtifactStore(cache, max_bytes=2**40, sources=sources, verify="always" if mode == "always" else "changed")


def warm_once(spec: Any, store: Any, root: Path) -> tuple[float, float]:
    """Time-to-ready and the fetch stage of one warm in a fresh engine, in seconds."""
    from warmers.engine import Engine

    engine = Engine(device="cpu", capacity_mb=64_000, store=store, compile_root=str(root / "compile"))
    report = engine.warm(spec)
    if not report.ready or not report.cache_hits.get("artifact"):
        raise SystemExit(f"{spec.name}: not a ready cache hit ({report.reason})")
    engine.unload(spec.name, spec.version)  # frees the large model before the next warm
    assert report.time_to_ready_s is not None
    return report.time_to_ready_s, report.stage_seconds["fetch"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--big-mb", type=int, default=700)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from prewarm.settings import EXAMPLE_ARTIFACTS
    from warmers.artifacts import ArtifactStore

    with tempfile.TemporaryDirectory(prefix="checksum-cost-") as tmp:
        root = Path(tmp)
        models = specs(root, args.big_mb)
        sources = [str(EXAMPLE_ARTIFACTS), str(root)]
        cache = root / "cache"
        for spec in models:  # fill the cache once
            ArtifactStore(cache, max_bytes=2**40, sources=sources).fetch(spec.artifact_uri, spec.sha256)
        sizes = {spec.name: (cache / "artifacts" / spec.sha256[:2] / spec.sha256).stat().st_size for spec in models}
        log(f"cache filled: {', '.join(f'{n} {s / 1e6:.1f} MB' for n, s in sizes.items())}")
        results: dict[str, dict[str, dict[str, list[float]]]] = {
            spec.name: {mode: {"ttr": [], "fetch": []} for mode in MODES} for spec in models
        }
        load_before = os.getloadavg()
        for rep in range(args.reps):
            for spec in models:
                for mode in MODES:
                    if mode == "fast-repeat":  # make sure this process has verified the entry as it is now
                        warm_once(spec, store_for("fast-first", cache, sources), root)
                    ttr, fetch = warm_once(spec, store_for(mode, cache, sources), root)
                    results[spec.name][mode]["ttr"].append(ttr)
                    results[spec.name][mode]["fetch"].append(fetch)
            log(f"rep {rep + 1}/{args.reps} done")
        load_after = os.getloadavg()
    summary = {
        name: {
            mode: {"ttr_s": statistics.median(v["ttr"]), "fetch_s": statistics.median(v["fetch"])}
            for mode, v in by_mode.items()
        }
        for name, by_mode in results.items()
    }
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min); median of {args.reps} reps")
    print("| model | size | " + " | ".join(f"{m}: ready (fetch)" for m in MODES) + " |")
    print("| --- | --- |" + " --- |" * len(MODES))
    for name, by_mode in summary.items():
        cells = " | ".join(f"{by_mode[m]['ttr_s']:.3f} s ({by_mode[m]['fetch_s'] * 1000:.1f} ms)" for m in MODES)
        print(f"| {name} | {sizes[name] / 1e6:.1f} MB | {cells} |")
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "raw": results, "sizes": sizes,
                                        "loadavg": [load_before, load_after], "reps": args.reps}, indent=2))


if __name__ == "__main__":
    main()

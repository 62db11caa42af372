"""Tables and a plot from the warm-latency benchmark's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

GOAL_WARM_RATIO = {"cpu": 1.3, "gpu": 1.1}
GOAL_COMPILE_HIT = 0.25
STAGES = ["fetch", "load", "cold_first_request", "compile", "warmup", "validate"]


def _ok(value: float, limit: float) -> str:
    return "met" if value <= limit else "**not met**"


def _latency_table(part: dict[str, Any], kind: str) -> list[str]:
    goal = GOAL_WARM_RATIO[kind]
    lines = [
        "| model | first answer, cold process (s) | cold model in running host, first request (ms) | "
        f"warmed first request (ms) | steady p50 (ms) | steady p99 (ms) | warmed first / p50 (goal <= {goal}) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, host in part["host"].items():
        cold = part["cold_process"].get(name)
        cold_cell = f"{cold['spawn_to_answer_s']:.2f}" if cold else "-"
        lines.append(
            f"| {name} | {cold_cell} | {host['cold_first_request_ms']:.2f} | {host['warm_first_request_ms']:.3f} | "
            f"{host['steady_p50_ms']:.3f} | {host['steady_p99_ms']:.3f} | {host['warm_ratio']:.2f} "
            f"({_ok(host['warm_ratio'], goal)}) |"
        )
    return lines


def _cold_process_table(part: dict[str, Any]) -> list[str]:
    lines = [
        "| model | spawn to answer (s) | import torch (s) | fetch (s) | device context (s) | build + weights (s) | first request (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in part["cold_process"].items():
        lines.append(
            f"| {name} | {r['spawn_to_answer_s']:.2f} | {r['import_torch_s']:.2f} | {r['fetch_s']:.3f} | "
            f"{r['device_context_s']:.3f} | {r['build_and_weights_s']:.3f} | {r['first_request_s']:.3f} |"
        )
    return lines


def _stage_table(part: dict[str, Any]) -> list[str]:
    lines = ["| model | " + " | ".join(STAGES) + " | time to ready (s) |", "| --- |" + " ---: |" * (len(STAGES) + 1)]
    for name, host in part["host"].items():
        cells = [f"{host['stage_seconds'][s]:.3f}" if s in host["stage_seconds"] else "-" for s in STAGES]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {host['time_to_ready_s']:.3f} |")
    return lines


def _http_table(part: dict[str, Any], kind: str) -> list[str]:
    goal = GOAL_WARM_RATIO[kind]
    lines = [
        f"| model | warmed first request (ms) | steady p50 (ms) | steady p99 (ms) | warmed first / p50 (goal <= {goal}) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in part["http"].items():
        lines.append(
            f"| {name} | {r['warm_first_request_ms']:.2f} | {r['steady_p50_ms']:.2f} | {r['steady_p99_ms']:.2f} | "
            f"{r['warm_ratio']:.2f} ({_ok(r['warm_ratio'], goal)}) |"
        )
    return lines


def _compile_table(c: dict[str, Any]) -> list[str]:
    return [
        f"| model | shapes | cold compile (s) | compile with cache hit (s) | hit / cold (goal <= {GOAL_COMPILE_HIT}) | "
        "time to ready cold (s) | time to ready, hit (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {c['model']} ({c['mode']}) | {c['shapes']} | {c['cold_compile_s']:.1f} | {c['hit_compile_s']:.1f} | "
        f"{c['hit_fraction']:.2f} ({_ok(c['hit_fraction'], GOAL_COMPILE_HIT)}) | {c['cold_time_to_ready_s']:.1f} | "
        f"{c['hit_time_to_ready_s']:.1f} |",
    ]


def render_markdown(results: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    lines = [f"Machine: {results['machine']}; date {results['date']}; load average at start "
             f"{results['load_average_at_start']:.1f}; command `{results['command']}`.", ""]
    for kind in ("cpu", "gpu"):
        part = results.get(kind)
        if not part:
            note = "Not measured: no CUDA device was available." if kind == "gpu" else "Not run."
            lines += [f"### {kind.upper()}", "", note, ""]
            continue
        title = "CPU (example fleet)" if kind == "cpu" else f"GPU part: {part['device']}, {part['model']}"
        lines += [f"### {title}", "", *_latency_table(part, kind), "", "First request in a cold process, by step:", "",
                  *_cold_process_table(part), "", "Time to ready in a running host, by stage (s, median):", "",
                  *_stage_table(part), ""]
        if part.get("http"):
            lines += ["Client side, over HTTP (V2Target against a host on loopback):", "", *_http_table(part, kind), ""]
        if part.get("compile"):
            lines += ["torch.compile, cold vs restored compile artifacts (fresh process and inductor cache each):", "",
                      *_compile_table(part["compile"]), ""]
        if kind == "gpu":
            host = next(iter(part["host"].values()))
            stages = host["stage_seconds"]
            lines += [f"Time to ready in a running host from the local cache, no compile: {host['time_to_ready_s']:.2f} s "
                      f"({_ok(host['time_to_ready_s'], 1.0)}; goal <= 1.0 s), of which fetch {stages['fetch']:.3f} s "
                      f"and load {stages['load']:.3f} s.", ""]
        if part.get("h2d"):
            h = part["h2d"]
            lines += [f"Host-to-device copies: pinned {h['pinned_gb_s']:.1f} GB/s, pageable {h['pageable_gb_s']:.1f} GB/s.", ""]
    return "\n".join(lines)


def plot_stages(results: dict[str, Any], path: Path) -> None:
    """A stacked bar per model: time to ready split by stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [(k, results[k]) for k in ("cpu", "gpu") if results.get(k)]
    fig, axes = plt.subplots(1, len(parts), figsize=(7 * len(parts), 4), squeeze=False)
    for ax, (kind, part) in zip(axes[0], parts, strict=True):
        names = list(part["host"])
        bottom = [0.0] * len(names)
        for stage in STAGES:
            values = [part["host"][n]["stage_seconds"].get(stage, 0.0) for n in names]
            ax.bar(names, values, bottom=bottom, label=stage)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.set_ylabel("seconds")
        ax.set_title(f"time to ready by stage ({kind})")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

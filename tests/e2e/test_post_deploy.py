"""End to end: a real Prefect server and process workers on loopback, ``prefect deploy --all`` from prefect.yaml,
a signed webhook from "CI/CD" and the post-deploy flow run that warms and validates the new version, and two
registered ``prewarm serve`` hosts kept warm by the forecast-and-plan and reconcile-fleet deployments.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from db.migrate import upgrade
from db.models import WarmRun, WarmTrigger
from db.registry import upsert_models
from db.session import make_engine, session_scope
from prewarm.fleet import load_fleet
from prewarm.webhook import PATH, signed_headers
from tests.conftest import free_port
from tests.e2e.processes import BIN, REPO, Background, http_ok, run_cli, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SECRET = "e2e-webhook-secret"
FLEET = REPO / "examples" / "fleet.yaml"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """Prefect server, deployments, process workers on both pools and the webhook, all on loopback."""
    tmp_path = tmp_path_factory.mktemp("e2e")
    api_port, hook_port = free_port(), free_port()
    api_url = f"http://127.0.0.1:{api_port}/api"
    history_url = f"sqlite:///{tmp_path / 'history.db'}"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PREWARM_"))}
    env = {
        **base,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        # No scheduled ingest or forecast runs in the middle of the test: only the triggered one.
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "5",
        "PREWARM_HOME": str(tmp_path / "home"),
        "PREWARM_DATABASE_URL": history_url,
        "PREWARM_WEBHOOK_SECRET": SECRET,
    }
    started: list[Background] = []
    try:
        server = Background(
            "server",
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(api_port)],
            env=env,
            log_dir=tmp_path,
        )
        started.append(server)
        wait_until(
            http_ok(f"{api_url}/health"), timeout=90, what="the Prefect server", on_timeout=server.log_tail
        )
        pools = [
            Background(
                f"pool-{pool}",
                [str(BIN / "prefect"), "work-pool", "create", pool, "--type", "process"],
                env=env,
                log_dir=tmp_path,
            )
            for pool in ("prewarm-cpu", "prewarm-gpu")
        ]
        started.extend(pools)
        for pool in pools:
            assert pool.process.wait(timeout=120) == 0, pool.log_tail()
        # The worker and the webhook start while `prefect deploy` runs: they only need the server and the pools.
        worker = Background(
            "worker",
            [str(BIN / "prefect"), "worker", "start", "--pool", "prewarm-gpu", "--type", "process"],
            env=env,
            log_dir=tmp_path,
        )
        started.append(worker)
        cpu_worker = Background(
            "worker-cpu",
            [str(BIN / "prefect"), "worker", "start", "--pool", "prewarm-cpu", "--type", "process"],
            env=env,
            log_dir=tmp_path,
        )
        started.append(cpu_worker)
        hook = Background(
            "webhook", [str(BIN / "prewarm"), "webhook", "--port", str(hook_port)], env=env, log_dir=tmp_path
        )
        started.append(hook)
        deployed = run_cli([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], env=env)
        wait_until(
            http_ok(f"http://127.0.0.1:{hook_port}/healthz"),
            timeout=60,
            what="the webhook",
            on_timeout=hook.log_tail,
        )
        yield {
            "env": env,
            "api_url": api_url,
            "hook_url": f"http://127.0.0.1:{hook_port}{PATH}",
            "history_url": history_url,
            "worker": worker,
            "cpu_worker": cpu_worker,
            "server": server,
            "tmp_path": tmp_path,
            "deploy_output": deployed.stdout,
        }
    finally:
        for process in reversed(started):
            process.stop()
        assert not any(p.alive() for p in started)


def _flow_runs(api_url: str, deployment: str) -> list[dict[str, object]]:
    with httpx.Client(base_url=api_url, timeout=10) as client:
        found = client.get(f"/deployments/name/{deployment}")
        found.raise_for_status()
        runs = client.post("/flow_runs/filter", json={"deployments": {"id": {"any_": [found.json()["id"]]}}})
        runs.raise_for_status()
        return list(runs.json())


def test_signed_webhook_triggers_post_deploy_warm_that_records_a_warm_run(stack: dict[str, object]) -> None:
    env = stack["env"]
    assert isinstance(env, dict)
    output = str(stack["deploy_output"])
    for name in ("ingest-telemetry", "forecast-and-plan", "reconcile-fleet", "warm-model", "post-deploy-warm"):
        assert f"'{name}/{name}' successfully created" in " ".join(output.split()), output[-2000:]

    # The first version is imported from the example fleet; CI/CD then announces version 2. No SLA, so the
    # verdict does not depend on how busy this machine is (the latency rules have their own tests).
    fleet = load_fleet(FLEET)
    spec = next(m for m in fleet.models if m.name == "reranker").model_copy(update={"sla_p99_ms": None})
    engine = make_engine(str(stack["history_url"]))
    upgrade(engine)
    with session_scope(engine) as session:
        upsert_models(session, [spec])

    body = json.dumps({"model": spec.name, "version": "e2e-2", "sha256": spec.sha256}).encode()
    unsigned = httpx.post(str(stack["hook_url"]), content=body, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    response = httpx.post(
        str(stack["hook_url"]), content=body, headers=signed_headers(SECRET, body), timeout=30
    )
    assert response.status_code == 202, response.text
    assert response.json()["event_id"]

    api_url = str(stack["api_url"])
    worker = stack["worker"]
    assert isinstance(worker, Background)
    final: dict[str, object] = {}

    def finished() -> bool:
        runs = _flow_runs(api_url, "post-deploy-warm/post-deploy-warm")
        if runs and runs[0]["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            final.update(runs[0])
            return True
        return False

    wait_until(
        finished, timeout=180, interval=1.0, what="the post-deploy-warm flow run", on_timeout=worker.log_tail
    )
    assert final["state_type"] == "COMPLETED", worker.log_tail(80)
    parameters = final["parameters"]
    assert isinstance(parameters, dict)
    assert (parameters["model"], parameters["version"]) == (spec.name, "e2e-2")  # filled from the event

    with session_scope(engine) as session:
        runs = session.scalars(select(WarmRun).where(WarmRun.model == spec.name)).all()
        assert len(runs) == 1
        run = runs[0]
        assert run.version == "e2e-2" and run.trigger is WarmTrigger.POST_DEPLOY
        assert run.ready and run.warm_first_request_ms is not None
        assert run.orchestrator_run_id == final["id"]
        assert run.report is not None and run.report["validation"]["passed"] is True
    engine.dispose()


def _ready(url: str) -> set[str]:
    body = httpx.post(f"{url}/v2/repository/index", json={}, timeout=10).json()
    return {e["name"] for e in body if e["state"] == "READY"}


def test_two_registered_hosts_are_warm_ahead_of_their_windows_and_unloaded_after(stack: dict[str, object]) -> None:
    from datetime import timedelta

    from db.models import PlanStatus, WarmPlan
    from prewarm.ingest import ingest_sources

    env = stack["env"]
    tmp_path = stack["tmp_path"]
    assert isinstance(env, dict) and isinstance(tmp_path, Path)
    engine = make_engine(str(stack["history_url"]))
    upgrade(engine)
    models = ["reranker", "ocr-longtail"]
    specs = [m.model_copy(update={"sla_p99_ms": None}) for m in load_fleet(FLEET).models if m.name in models]
    with session_scope(engine) as session:
        upsert_models(session, specs)
    ingest_sources([str(REPO / "examples" / "telemetry.csv")], engine=engine)
    hosts: list[Background] = []
    urls: dict[str, str] = {}
    try:
        for name in ("e2e-1", "e2e-2"):
            port = free_port()
            urls[name] = f"http://127.0.0.1:{port}"
            host_env = {**env, "PREWARM_HOME": str(tmp_path / name), "PREWARM_HOST__HEARTBEAT_S": "2"}
            hosts.append(Background(
                name, [str(BIN / "prewarm"), "serve", "--port", str(port), "--no-preload", "--register", "--name", name,
                       "--pool", "default", "--cpu-threads", "1"], env=host_env, log_dir=tmp_path,
            ))
        for host, url in zip(hosts, urls.values(), strict=True):
            wait_until(http_ok(f"{url}/v2/health/ready"), timeout=120, what=f"host {host.name}", on_timeout=host.log_tail)
        wait_until(lambda: "e2e-2" in run_cli([str(BIN / "prewarm"), "hosts", "list", "--json"], env=env).stdout,
                   timeout=60, what="the hosts to register")
        as_of = "2026-11-22T23:50:00+00:00"  # in the sample telemetry's last hour: the plans start at midnight
        run_cli([str(BIN / "prefect"), "deployment", "run", "forecast-and-plan/forecast-and-plan", "--watch",
                 "--params", json.dumps({"as_of": as_of, "models": models})], env=env, timeout=300)
        with session_scope(engine) as session:
            plans = session.scalars(select(WarmPlan).where(WarmPlan.pool == "default")).all()
            windows = [(p.model, p.host, p.window_start - timedelta(seconds=p.lead_seconds), p.window_start,
                        p.window_end) for p in plans]
        assert windows and {h for _, h, *_ in windows} <= set(urls)
        first = min(w[2] for w in windows)
        due = [w for w in windows if w[2] <= first]

        def tick(at: object) -> None:
            run_cli([str(BIN / "prefect"), "deployment", "run", "reconcile-fleet/reconcile-fleet", "--watch",
                     "--params", json.dumps({"as_of": str(at)})], env=env, timeout=300)

        tick((first - timedelta(minutes=1)).isoformat())
        assert all(not _ready(url) for url in urls.values())  # nothing before its warm-up begins
        tick(first.isoformat())
        for model, host, warm_from, window_start, _ in due:
            assert model in _ready(urls[host]) and warm_from < window_start  # ready ahead of the window
        tick((max(w[4] for w in windows) + timedelta(minutes=11)).isoformat())
        assert all(not _ready(url) for url in urls.values())  # unloaded after the windows and keep-alive
        with session_scope(engine) as session:
            done = {p.model: p.status for p in session.scalars(select(WarmPlan)) if p.id in {q.id for q in plans}}
        assert {m for m, *_ in due} <= {m for m, status in done.items() if status is PlanStatus.DONE}
    finally:
        for host in hosts:
            host.stop()
        engine.dispose()

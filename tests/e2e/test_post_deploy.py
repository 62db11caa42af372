"""End to end: a real Prefect server and process worker on loopback, ``prefect deploy --all`` from prefect.yaml,
a signed webhook from "CI/CD", and the post-deploy flow run that warms and validates the new version.
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


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, object]]:
    """Prefect server, deployments, a process worker on prewarm-gpu and the webhook, all on loopback."""
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
            "server": server,
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
    for name in ("ingest-telemetry", "forecast-and-plan", "warm-model", "cool-down", "post-deploy-warm"):
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

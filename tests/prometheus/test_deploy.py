"""deploy/: the recording rules pass ``promtool test rules``, and the dashboard reads only what they record."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tests.prometheus.servers import binary, run

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "prewarm.rules.yml"


def recorded() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"]}


def test_rules_are_valid_and_their_unit_tests_pass() -> None:
    promtool = binary("promtool")
    checked = run([promtool, "check", "rules", str(RULES)])
    assert checked.returncode == 0 and f"SUCCESS: {len(recorded())} rules found" in checked.stdout, (
        checked.stdout + checked.stderr
    )
    tested = run([promtool, "test", "rules", str(RULES.with_name("prewarm.rules.test.yml"))])
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_every_recorded_rule_has_a_unit_test() -> None:
    tests = yaml.safe_load(RULES.with_name("prewarm.rules.test.yml").read_text())["tests"]
    tested = {
        re.match(r"[\w:]+", case["expr"]).group(0) for test in tests for case in test["promql_expr_test"]
    }  # type: ignore[union-attr]
    assert recorded() - tested <= {
        "model:prewarm_planned_replicas:sum",  # checked through the shortfall, which is built on it
        "model:prewarm_inference_requests:increase1h",  # checked through the cold-start ratio
        "model_kind:prewarm_cold_starts:rate5m",
        "stage:prewarm_warm_stage_duration_seconds:p95_1h",  # the same expression as p50 with another quantile
    }


def test_dashboard_panels_read_recorded_series() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "prewarm-dashboard.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(dashboard["panels"]) == 6 and {p["gridPos"]["w"] for p in dashboard["panels"]} == {12}
    names = {name for expr in expressions for name in re.findall(r"\b[a-z_]+:[a-z0-9_:]+", expr)}
    assert names and names <= recorded(), names - recorded()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["model"]["definition"].startswith("label_values(model:prewarm_inference_requests:rate5m")
    assert all('model=~"$model"' in expr for expr in expressions if "stage:" not in expr)

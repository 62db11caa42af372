"""Roll-out decisions against stand-in host clients (the real host's roll-out is in tests/flows/test_fleet_flows.py)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine, select

from controller.client import RepositoryModel
from controller.reconcile import ControllerConfig
from controller.rollout import roll_out
from db.hosts import upsert_host
from db.models import ActionKind, ActionOutcome, ControllerAction, Model
from db.registry import upsert_models
from db.session import session_scope
from prewarm.fleet import ModelSpec, load_fleet
from warmers.report import Baseline, WarmReport
from warmers.sources import EXAMPLE_FLEET

CONFIG = ControllerConfig(lease_s=5)


class SwappingHost:
    """A host that serves one version per model and swaps to a new one as soon as its own load passes.

    The client-side validation of version ``bad`` fails (slower than the old version), as on a host whose own
    check is only the SLA.
    """

    def __init__(self, name: str, serving: dict[str, str], *, bad: str | None = None) -> None:
        self.url = f"http://{name}"
        self.serving = dict(serving)
        self.bad = bad
        self.warmed: list[str] = []

    def index(self, *, names: Iterable[str] = (), ready_only: bool = False) -> list[RepositoryModel]:
        return [RepositoryModel(name=m, version=v, state="READY") for m, v in self.serving.items()]

    def unload(self, name: str, version: str | None = None) -> bool:
        return self.serving.pop(name, None) is not None

    def warm(self, spec: ModelSpec, *, baseline: Baseline | None = None) -> WarmReport:
        self.warmed.append(spec.version)
        self.serving[spec.name] = spec.version
        ok = spec.version != self.bad
        return WarmReport(
            model=spec.name, version=spec.version, target=self.url, device_class="cpu", ready=ok,
            reason=None if ok else "steady p50 9.00 ms exceeds 3.50 ms (baseline p50 1.00 ms x 1.5 + 2.0 ms)",
            stage_seconds={"load": 0.1},
        )

    def close(self) -> None:
        pass


def _setup(engine: Engine, hosts: dict[str, SwappingHost]) -> ModelSpec:
    v1 = next(m for m in load_fleet(EXAMPLE_FLEET).models if m.name == "reranker")
    v2 = v1.model_copy(update={"version": "2"})
    with session_scope(engine) as session:
        upsert_models(session, [v1, v2])
        for name, host in hosts.items():
            upsert_host(session, name=name, url=host.url, pool="p")
    return v2


def _kinds(engine: Engine) -> list[tuple[str, ActionKind, ActionOutcome]]:
    with session_scope(engine) as session:
        rows = session.scalars(select(ControllerAction).order_by(ControllerAction.id)).all()
        return [(a.host, a.kind, a.outcome) for a in rows]


def test_a_passing_version_replaces_the_old_one_on_every_host_serving_it(engine: Engine) -> None:
    hosts = {"a": SwappingHost("a", {"reranker": "1"}), "b": SwappingHost("b", {"reranker": "1"}), "c": SwappingHost("c", {})}
    v2 = _setup(engine, hosts)
    result = roll_out(engine, v2, previous="1", pool="p", config=CONFIG, connect_host=lambda h: hosts[h.name])
    assert result is not None and result.passed and not result.rolled_back
    assert [h.host for h in result.hosts] == ["a", "b"]  # c never served it
    assert {n: h.serving for n, h in hosts.items()} == {"a": {"reranker": "2"}, "b": {"reranker": "2"}, "c": {}}
    assert _kinds(engine) == [("a", ActionKind.ROLLOUT, ActionOutcome.OK), ("b", ActionKind.ROLLOUT, ActionOutcome.OK)]


def test_a_failing_version_is_rolled_back_and_the_old_one_serves_again(engine: Engine) -> None:
    hosts = {"a": SwappingHost("a", {"reranker": "1"}, bad="2"), "b": SwappingHost("b", {"reranker": "1"}, bad="2")}
    v2 = _setup(engine, hosts)
    result = roll_out(engine, v2, previous="1", pool="p", config=CONFIG, connect_host=lambda h: hosts[h.name])
    assert result is not None and not result.passed and result.rolled_back
    assert result.reason is not None and result.reason.startswith("on a: steady p50 9.00 ms exceeds")
    (outcome,) = result.hosts  # the roll-out stopped at the first host
    assert outcome.restored_old and outcome.old_serving
    assert hosts["a"].warmed == ["2", "1"] and hosts["b"].warmed == []
    assert {n: h.serving for n, h in hosts.items()} == {"a": {"reranker": "1"}, "b": {"reranker": "1"}}
    assert _kinds(engine) == [("a", ActionKind.ROLLOUT, ActionOutcome.FAILED), ("a", ActionKind.ROLLBACK, ActionOutcome.OK)]
    with session_scope(engine) as session:
        row = session.scalars(select(Model).where(Model.name == "reranker", Model.version == "2")).one()
        assert row.rolled_back_at is not None and row.rolled_back_reason.startswith("failed validation on a:")


def test_no_host_serving_the_model_means_no_roll_out(engine: Engine) -> None:
    hosts = {"a": SwappingHost("a", {})}
    v2 = _setup(engine, hosts)
    assert roll_out(engine, v2, previous="1", pool="p", config=CONFIG, connect_host=lambda h: hosts[h.name]) is None

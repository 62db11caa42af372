"""The expected-cost arithmetic against hand computations, and the prices' defaults."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from prewarm import columns as C
from scheduling.cost import Prices, cold_weight_for_sla, cost_of, default_cold_price, model_prices
from scheduling.errors import SchedulingError
from scheduling.experiment import SimulationOptions, run_simulation
from scheduling.metrics import summary
from scheduling.planner import PlanModel
from scheduling.trace import Trace, trace_from_telemetry


def tiny_trace(rows: list[list[float]], eval_intervals: int) -> Trace:
    """Hourly rows of demand, one model each (m0, m1, ...)."""
    demand = np.asarray(rows, dtype=float)
    stamps = pd.date_range("2026-01-05", periods=demand.shape[1], freq="h", tz="UTC")
    frame = pd.DataFrame(
        {
            C.TIMESTAMP: np.tile(stamps, len(rows)),
            C.MODEL: np.repeat([f"m{i}" for i in range(len(rows))], demand.shape[1]),
            C.REQUESTS: demand.reshape(-1),
        }
    )
    return trace_from_telemetry(frame, eval_intervals=eval_intervals)


def test_reactive_cost_by_hand_at_the_derived_prices() -> None:
    # capacity 2 (p95 of the history 4 over 2 replicas at peak); reactive provisions 2, 0, 3, 3 and serves
    # 0, 5, 5, 0 cold (test_simulator.test_cold_requests_by_hand): 10 cold requests and 8 replica-hours.
    trace = tiny_trace([[4, 4, 4, 4, 0, 5, 5, 1]], eval_intervals=4)
    options = SimulationOptions(eval_intervals=4, replicas_at_peak=2, policies=("reactive",))
    result = run_simulation(trace, options)
    reactive = summary(result)["policies"]["reactive"]
    # derived cold price: weight 4 x 1 per replica-hour x 1 hour / capacity 2 = 2 per cold request
    assert reactive["cost"] == pytest.approx(10 * 2.0 + 8 * 1.0)
    assert reactive["cold_cost"] == pytest.approx(20.0)
    assert reactive["replica_hour_cost"] == pytest.approx(8.0)
    assert reactive["per_model"][0]["cold_price"] == pytest.approx(2.0)


def test_cost_with_explicit_prices_by_hand() -> None:
    trace = tiny_trace([[4, 4, 4, 4, 0, 5, 5, 1], [1, 0, 0, 1, 0, 0, 1, 0]], eval_intervals=4)
    options = SimulationOptions(
        eval_intervals=4, replicas_at_peak=2, policies=("reactive",), cold_price=0.5, replica_hour_price=3.0
    )
    document = summary(run_simulation(trace, options))
    # m1 (capacity 1): reactive provisions 1 at t=4 (after the 1 at t=3), 0, 0, 1; its one request at t=6 is cold
    m0, m1 = document["policies"]["reactive"]["per_model"]
    assert (m0["cold_requests"], m0["replica_hours"]) == (10.0, 8.0)
    assert (m1["cold_requests"], m1["replica_hours"]) == (1.0, 2.0)
    assert m0["cost"] == pytest.approx(10 * 0.5 + 8 * 3.0)
    assert m1["cost"] == pytest.approx(1 * 0.5 + 2 * 3.0)
    assert document["policies"]["reactive"]["cost"] == pytest.approx(29.0 + 6.5)
    oracle = document["policies"]["oracle"]
    assert oracle["cost"] == pytest.approx(oracle["replica_hours"] * 3.0)


def test_cost_of_sums_per_model() -> None:
    prices = Prices(cold=np.array([2.0, 0.1]), replica_hour=np.array([1.0, 4.0]))
    cold = np.array([[1.0, 0.0, 3.0], [0.0, 10.0, 0.0]])
    provisioned = np.array([[1, 1, 0], [2, 0, 0]])
    assert cost_of(cold, provisioned, prices, interval_hours=0.5).tolist() == pytest.approx([4 * 2.0 + 1.0, 1.0 + 4.0])


def test_tight_sla_means_an_expensive_cold_start() -> None:
    assert cold_weight_for_sla(None) == 4.0
    assert cold_weight_for_sla(1000.0) == pytest.approx(4.0)
    assert cold_weight_for_sla(100.0) == pytest.approx(4.0 * math.sqrt(10))
    assert cold_weight_for_sla(1.0) == 16.0  # clipped at four times the base
    assert cold_weight_for_sla(1e6) == 1.0  # and at a quarter of it
    assert default_cold_price(50.0, interval_hours=1.0, sla_p99_ms=100.0) > default_cold_price(50.0, interval_hours=1.0)
    with pytest.raises(SchedulingError, match="sla_p99_ms must be a positive number"):
        cold_weight_for_sla(0.0)


def test_fleet_prices_override_the_derived_ones() -> None:
    models = [
        PlanModel(name="a", replica_capacity=10.0, cold_price=7.0, replica_hour_price=2.0),
        PlanModel(name="b", replica_capacity=10.0, sla_p99_ms=100.0),
        PlanModel(name="c", replica_capacity=10.0, replica_hour_price=3.0),
    ]
    prices = model_prices(models, interval_hours=1.0)
    assert prices.cold.tolist() == pytest.approx([7.0, 4.0 * math.sqrt(10) / 10.0, 4.0 * 3.0 / 10.0])
    assert prices.replica_hour.tolist() == [2.0, 1.0, 3.0]


def test_bad_prices_are_refused() -> None:
    with pytest.raises(SchedulingError, match="--cold-price must be >= 0"):
        Prices.derived(np.ones(2), interval_hours=1.0, cold_price=-1.0)
    with pytest.raises(SchedulingError, match="--cold-weight must be > 0"):
        Prices.derived(np.ones(2), interval_hours=1.0, cold_weight=0.0)


def test_fleet_file_prices_reach_the_plan_models() -> None:
    from prewarm.fleet import Fleet
    from scheduling.planner import plan_models_from_fleet

    warmup = {"inputs": [{"name": "x", "shape": [1]}]}
    fleet = Fleet.model_validate(
        {
            "models": [
                {"name": "a", "server": "foreign", "warmup": warmup, "cold_price": 3.5, "replica_hour_price": 0.5},
                {"name": "b", "server": "foreign", "warmup": warmup, "sla_p99_ms": 250, "replica_capacity": 20},
            ]
        }
    )
    models = plan_models_from_fleet(fleet.models)
    prices = model_prices(list(models.values()), interval_hours=1.0)
    assert prices.cold.tolist() == pytest.approx([3.5, 8.0 / 20.0])
    assert prices.replica_hour.tolist() == [0.5, 1.0]

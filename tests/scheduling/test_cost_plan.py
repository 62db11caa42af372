"""``prewarm plan --policy cost`` and the simulator's ``cost`` policy take the same decisions from the same history."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scheduling.cadence import default_replan
from scheduling.cost import Prices
from scheduling.cost_plan import plan_with_costs
from scheduling.cost_policy import CostPolicy
from scheduling.leads import LeadTimes
from scheduling.planner import PlanModel, provisioned_matrix
from scheduling.simulator import context_for
from scheduling.trace import Trace, replica_capacity
from tests.scheduling.conftest import seasonal_naive_forecast


def test_plan_and_simulator_choose_the_same_levels_and_windows(trace: Trace) -> None:
    capacity = replica_capacity(trace, replicas_at_peak=4)
    t0 = trace.eval_start - 1
    policy = CostPolicy(context_for(trace, capacity, lead=1), seasonal_naive_forecast,
                        Prices.derived(capacity, interval_hours=1.0), replan=default_replan(trace.interval))
    observed = trace.demand[:, :t0]
    decided = policy.decide(t0, observed)
    fleet = {m: PlanModel(name=m, replica_capacity=float(c)) for m, c in zip(trace.models, capacity, strict=True)}
    plan = plan_with_costs(
        trace.history_frame(t0), fleet, forecast_fn=seasonal_naive_forecast, horizon=24, interval=trace.interval,
        now=trace.timestamps[t0], lead_times=LeadTimes(default_s=3600.0, margin_s=0.0),
    )
    assert policy.choice is not None
    assert plan.choice.level_of() == policy.choice.level_of()
    planned = provisioned_matrix(plan.result, trace.models, pd.DatetimeIndex(trace.timestamps[t0 : t0 + 1]))
    # the first interval: the plan provisions what the policy provisions (forecast windows and sparse replicas)
    assert planned[:, 0].tolist() == np.asarray(decided).tolist()

"""The Triton, vLLM, MLServer and KServe presets on recorded answers of a real Prometheus (data/*.json).

The recordings were made by record_presets.py: exporters with each server's counter names, labels and types,
scraped every second by Prometheus 2.42, with known requests per model in three 10 s buckets. Replaying them
over HTTP checks what prewarm asks for and what it makes of the answers, without a live server.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from prewarm import columns as C
from prewarm.errors import PrometheusQueryError
from prewarm.prometheus import PrometheusOptions, read_prometheus
from prewarm.settings import PrometheusSettings
from tests.prometheus.replay import replay

DATA = Path(__file__).parent / "data"


def load(preset: str) -> dict:  # type: ignore[type-arg]
    return json.loads((DATA / f"{preset}.json").read_text())


def read(url: str, record: dict, settings: PrometheusSettings | None = None):  # type: ignore[no-untyped-def,type-arg]
    return read_prometheus(
        url,
        options=PrometheusOptions(preset=record["preset"], start=record["start"], end=record["end"]),
        interval=timedelta(seconds=record["interval_s"]),
        settings=settings or PrometheusSettings(),
        last_stored={},
    )


@pytest.mark.parametrize("preset", ["triton", "vllm", "mlserver", "kserve"])
def test_preset_counts_what_was_sent(preset: str) -> None:
    record = load(preset)
    with replay(record["calls"]) as url:
        frame = read(url, record)
    got = {
        f"{t:%Y-%m-%dT%H:%M:%SZ} {m}": r
        for t, m, r in zip(frame[C.TIMESTAMP], frame[C.MODEL], frame[C.REQUESTS])
    }
    sent = record["sent"]
    assert {k: v for k, v in got.items() if v} == sent
    assert all(v == 0 for k, v in got.items() if k not in sent)
    assert frame[C.COLD_STARTS].isna().all(), "only prewarm's host counts cold starts"


def test_bearer_token_is_sent_and_a_refusal_is_one_clear_error() -> None:
    record = load("vllm")
    with replay(record["calls"], token="s3cret") as url:
        frame = read(url, record, PrometheusSettings(token=SecretStr("s3cret")))
        assert frame[C.REQUESTS].sum() == sum(record["sent"].values())
        with pytest.raises(
            PrometheusQueryError, match=r"answered 403 Forbidden; set PREWARM_PROMETHEUS__TOKEN"
        ):
            read(url, record, PrometheusSettings(token=SecretStr("wrong")))


def test_an_unrecorded_call_fails_loudly() -> None:
    record = load("triton")
    record["start"] = "2020-01-01T00:00:00Z"
    with (
        replay(load("triton")["calls"]) as url,
        pytest.raises(PrometheusQueryError, match="no recorded answer"),
    ):
        read(url, record)

"""Prefect flows: thin adapters that wire the domain packages into scheduled, triggered and manual runs.

``ingest_telemetry``, ``forecast_and_plan``, ``reconcile_fleet``, ``warm_model`` and ``post_deploy_warm``; their
deployments are in ``prefect.yaml``. The logic lives in ``forecasting``, ``scheduling``, ``controller``,
``warmers`` and ``db``.
"""

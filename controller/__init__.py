"""The fleet controller: keeps a pool of serving hosts warm the way a Kubernetes controller keeps its objects.

Each tick reads the desired state (the plans in force, manual and post-deploy holds) and the observed state
(each host's repository index) afresh, computes the difference, acts on it idempotently (warm, repair,
unload, re-place), and records every action in the history database. No Prefect here: the ``reconcile-fleet``
flow and ``prewarm reconcile`` call :func:`reconcile`.
"""

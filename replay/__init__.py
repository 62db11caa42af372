"""Replay real traffic through real inference hosts and measure the cold starts clients see, per warm-up policy.

The trace's last intervals are replayed in compressed time by an open-loop load generator
(:mod:`replay.loadgen`) through a small router (:mod:`replay.router`) onto ``prewarm serve`` hosts
(:mod:`replay.hosts`), once per policy (:mod:`replay.policies`), each from the same empty state with the same
arrivals (:mod:`replay.arrivals`). :mod:`replay.measures` turns the request records into the figures and
:mod:`replay.output` writes them. :func:`replay.run.run_replay` puts it together.
"""

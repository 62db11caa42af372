"""The last warm-up pass of a load: a few real requests through the host's own HTTP listener.

Warm-up and validation run the serving path on the model's inference thread, but not the part of it in
front: the socket, uvicorn's HTTP parsing, the middleware, routing and the route itself, run on the event
loop thread, which sat idle while the load ran (about a second of other work on the same cores). Measured
from a real client, the first request after a load paid about 1 ms more than the next ones there, and in
the client itself. After a load through the repository API turns a model ready, the host therefore sends
``requests`` requests of the model's primary bucket to its own listener, from a worker thread as a client
would, alternating binary and JSON tensors, before it answers the load.

These requests carry a random per-process mark in :data:`WARMUP_HEADER`; the route leaves them out of the
statistics and the request metrics (they are the host's, not a client's). A failure of the pass is logged
and leaves the model ready: it has passed validation already.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Mapping, Sequence

import httpx
import orjson
import torch

from prewarm.fleet import ModelSpec
from warmers.codec import Encoded, encode_request
from warmers.tensors import bucket_combinations, example_inputs

logger = logging.getLogger(__name__)

WARMUP_HEADER = "X-Prewarm-Warmup"
SEED = 20240613
TIMEOUT_S = 30.0


def loopback_requests(spec: ModelSpec, count: int, outputs: Sequence[str] = ()) -> list[Encoded]:
    """``count`` requests of the primary bucket (seeded), binary first and then alternating with JSON.

    The primary bucket is the shape the validation probes and most clients use; both tensor forms run, so
    both the binary and the JSON route through the HTTP layer are warm. With ``outputs`` the requests name
    each output with its own ``binary_data`` parameter, as ``tritonclient`` and most V2 clients do, rather
    than the request-wide ``binary_data_output`` of the engine's warm-up requests.
    """
    inputs = example_inputs(spec.warmup, bucket_combinations(spec.warmup)[0], generator=torch.Generator().manual_seed(SEED))
    requests = []
    for index in range(count):
        binary = index % 2 == 0
        encoded = encode_request(spec, inputs, binary=binary)
        requests.append(_naming_outputs(encoded, outputs, binary=binary) if outputs else encoded)
    return requests


def _naming_outputs(encoded: Encoded, outputs: Sequence[str], *, binary: bool) -> Encoded:
    """``encoded`` with an explicit ``outputs`` list instead of the request-wide ``binary_data_output``."""
    split = encoded.header_length if encoded.header_length is not None else len(encoded.body)
    header = orjson.loads(encoded.body[:split])
    header.pop("parameters", None)
    header["outputs"] = [{"name": name, "parameters": {"binary_data": binary}} for name in outputs]
    text = orjson.dumps(header)
    return Encoded(text + encoded.body[split:], len(text) if encoded.header_length is not None else None)


def base_url(server: tuple[str, int] | None, scheme: str) -> str | None:
    """The URL a request reached this host at (``scope["server"]``), None for a Unix socket."""
    if server is None or server[1] is None:
        return None
    host = server[0]
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{server[1]}"


class LoopbackWarmer:
    """Sends a load's last warm-up requests through the host's listener and recognises them when they arrive."""

    def __init__(self, *, requests: int, token: str | None = None) -> None:
        self.requests = requests
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self._mark = secrets.token_hex(16)

    def is_warmup(self, headers: Mapping[str, str]) -> bool:
        """Whether a request is one of this host's own loopback requests (compared in constant time)."""
        given = headers.get(WARMUP_HEADER)
        return given is not None and hmac.compare_digest(given.encode(), self._mark.encode())

    def run(self, url: str | None, spec: ModelSpec, outputs: Sequence[str] = ()) -> int:
        """Send the loopback requests of ``spec`` to the host at ``url``; returns how many it answered with 200.

        ``outputs``: the model's output names, asked for by name (see :func:`loopback_requests`).

        Blocking: call it from a worker thread, never from the event loop that has to answer it.
        """
        if self.requests <= 0 or url is None:
            return 0
        path = f"{url}/v2/models/{spec.name}/versions/{spec.version}/infer"
        answered = 0
        try:
            # trust_env=False: never through a proxy from the environment (the requests carry the host's token)
            with httpx.Client(timeout=TIMEOUT_S, trust_env=False) as client:
                for encoded in loopback_requests(spec, self.requests, outputs):
                    headers = {**encoded.headers(), **self._auth, WARMUP_HEADER: self._mark,
                               "Content-Type": encoded.media_type}
                    response = client.post(path, content=encoded.body, headers=headers)
                    if response.status_code != 200:
                        logger.warning("loopback warm-up of %s:%s: HTTP %d: %s", spec.name, spec.version,
                                       response.status_code, response.text[:200])
                        return answered
                    answered += 1
        except httpx.HTTPError as exc:
            logger.warning("loopback warm-up of %s:%s failed: %s: %s", spec.name, spec.version, type(exc).__name__, exc)
        return answered

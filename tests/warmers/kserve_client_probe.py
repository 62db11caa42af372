"""Run inside the interop venv: KServe's REST client (v2 protocol) calls a host; prints one JSON line.

    python kserve_client_probe.py BASE_URL MODEL [TOKEN]
"""

from __future__ import annotations

import asyncio
import json
import sys

import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig


async def main(base_url: str, model: str, token: str | None) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=60))
    try:
        rng = np.random.default_rng(1)
        results: dict[str, object] = {
            "server_ready": await client.is_server_ready(base_url, headers=headers),
            "model_ready": await client.is_model_ready(base_url, model, headers=headers),
        }
        for binary in (False, True):
            inputs = []
            for name in ("query", "document"):
                item = InferInput(name, [3, 64], "FP32")
                item.set_data_from_numpy(rng.uniform(-1, 1, (3, 64)).astype(np.float32), binary_data=binary)
                inputs.append(item)
            response = await client.infer(base_url, InferRequest(model, inputs, request_id="k1"), model_name=model,
                                          headers=headers)
            output = response.outputs[0]
            results["binary" if binary else "json"] = {
                "model": response.model_name, "id": response.id, "name": output.name, "shape": list(output.shape),
                "datatype": output.datatype, "finite": bool(np.isfinite(output.as_numpy()).all()),
            }
        try:
            await client.infer(base_url, InferRequest("nope", inputs), model_name="nope", headers=headers)
        except Exception as exc:  # noqa: BLE001 - the message is what the test checks
            results["unknown_model_error"] = f"{type(exc).__name__}: {exc}"
        return results
    finally:
        await client.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))))

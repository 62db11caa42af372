"""A tiny KServe model server for the interop tests; runs with the interop venv's python (ensure_interop.sh).

    python kserve_scaler.py --port PORT [--repository custom|default]

Serves ``doubler`` (registered at start) and, through the repository extension, ``tripler`` and ``halver``:
each multiplies its FP32 input ``x`` of shape [-1, 4] by a factor. ``halver`` declares no inputs or outputs
in its metadata (KServe's default ``get_input_types``). ``--repository custom`` (the default) uses a
``ModelRepository`` whose ``load()`` builds the model, so models can be loaded, unloaded and loaded again;
``--repository default`` keeps KServe's own, whose ``load()`` does nothing: a model unloaded through the API
cannot come back. The server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import sys
import uuid

import numpy as np
import uvicorn
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.model_repository import ModelRepository
from kserve.protocol.rest import server as rest_server

FACTORS = {"doubler": 2.0, "tripler": 3.0, "halver": 0.5}
UNDECLARED = {"halver"}
TENSOR = {"datatype": "FP32", "shape": [-1, 4]}


class Scaler(Model):
    """Multiplies ``x`` by a factor; declares its inputs and outputs (unless ``declared`` is False)."""

    def __init__(self, name: str, factor: float, *, declared: bool = True) -> None:
        super().__init__(name)
        self.factor = factor
        self.declared = declared

    def load(self) -> bool:
        self.ready = True
        return self.ready

    def get_input_types(self) -> list[dict]:
        return [{"name": "x", **TENSOR}] if self.declared else []

    def get_output_types(self) -> list[dict]:
        return [{"name": "y", **TENSOR}] if self.declared else []

    async def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        x = payload.inputs[0].as_numpy()
        if x.ndim != 2 or x.shape[1] != 4:
            raise ValueError(f"x must have shape [-1, 4], got {list(x.shape)}")
        output = InferOutput(name="y", shape=list(x.shape), datatype="FP32")
        output.set_data_from_numpy((x * self.factor).astype(np.float32), binary_data=False)
        response_id = payload.id or str(uuid.uuid4())
        return InferResponse(model_name=self.name, infer_outputs=[output], response_id=response_id)


class BuildingRepository(ModelRepository):
    """A repository whose ``load(name)`` builds the model: what the repository extension's load needs."""

    def load(self, name: str) -> bool:
        if name not in FACTORS:
            raise KeyError(f"no model {name!r} in this repository")
        model = Scaler(name, FACTORS[name], declared=name not in UNDECLARED)
        model.load()
        self.update(model)
        return model.ready


def _loopback_config(app, **kwargs):  # type: ignore[no-untyped-def]
    # KServe 0.16 binds its REST server to 0.0.0.0 with no option to change it; tests stay on loopback.
    return uvicorn.Config(app, **{**kwargs, "host": "127.0.0.1"})


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--repository", choices=("custom", "default"), default="custom")
    args, _ = parser.parse_known_args(argv)
    loopback = {"Config": staticmethod(_loopback_config), "Server": uvicorn.Server}
    rest_server.uvicorn = type("LoopbackUvicorn", (), loopback)
    repository = BuildingRepository() if args.repository == "custom" else ModelRepository()
    doubler = Scaler("doubler", FACTORS["doubler"])
    doubler.load()
    server = ModelServer(http_port=args.port, grpc_port=args.port, enable_grpc=False, registered_models=repository)
    server.start([doubler])


if __name__ == "__main__":
    main(sys.argv[1:])

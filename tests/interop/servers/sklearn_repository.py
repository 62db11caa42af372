"""Write an MLServer model repository for the interop tests; run with the interop venv's python.

    python sklearn_repository.py FOLDER HTTP_PORT GRPC_PORT

Two copies of one small scikit-learn classifier (seeded data, 4 FP32 features): ``classifier`` without a
version and ``classifier-v`` with version ``2``, each a folder with ``model-settings.json`` and
``model.joblib``, plus the server's ``settings.json`` (loopback only, no metrics server, models loaded through
the repository API rather than at start).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression

INPUTS = [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
MODELS = {"classifier": None, "classifier-v": "2"}


def main(folder: Path, http_port: int, grpc_port: int) -> None:
    rng = np.random.default_rng(7)
    features = rng.normal(size=(200, 4)).astype(np.float32)
    labels = (features[:, 0] + 0.5 * features[:, 1] > 0).astype(np.int64)
    classifier = LogisticRegression().fit(features, labels)
    for name, version in MODELS.items():
        model_dir = folder / name
        model_dir.mkdir(parents=True, exist_ok=True)
        joblib.dump(classifier, model_dir / "model.joblib")
        parameters = {"uri": "./model.joblib", **({"version": version} if version else {})}
        settings = {"name": name, "implementation": "mlserver_sklearn.SKLearnModel", "inputs": INPUTS,
                    "parameters": parameters}
        (model_dir / "model-settings.json").write_text(json.dumps(settings, indent=2))
    server = {"host": "127.0.0.1", "http_port": http_port, "grpc_port": grpc_port, "metrics_endpoint": None,
              "load_models_at_startup": False}
    (folder / "settings.json").write_text(json.dumps(server, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))

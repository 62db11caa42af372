"""Rebuild the example fleet's artifacts from code with seeded weights, and print their sha256.

    python examples/build_artifacts.py                 # write examples/artifacts/*, print name, size, sha256
    python examples/build_artifacts.py --update-fleet  # also write the new sha256 values into examples/fleet.yaml

safetensors files are byte-for-byte reproducible; ``.pt2`` archives (torch.export) may differ between
torch versions, so after a rebuild run with ``--update-fleet`` and commit both.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.export import Dim

from warmers import zoo

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"
SEED = 1234


def _seeded(factory, **kwargs):  # type: ignore[no-untyped-def]
    torch.manual_seed(SEED)
    return factory(**kwargs).eval()


def build_chat_small(path: Path) -> None:
    """``chat-small``: torch.export program with dynamic batch (1..32) and sequence (1..128)."""
    model = _seeded(zoo.chat_small)
    batch, seq = Dim("batch", min=1, max=32), Dim("seq", min=1, max=128)
    example = (torch.randint(0, 512, (2, 16)),)
    program = torch.export.export(model, example, dynamic_shapes={"tokens": {0: batch, 1: seq}})
    torch.export.save(program, str(path))


def build_ocr_longtail(path: Path) -> None:
    """``ocr-longtail``: torch.export program, dynamic batch (1..16) and width (multiples of 4 up to 512)."""
    model = _seeded(zoo.ocr_longtail)
    batch, quarter = Dim("batch", min=1, max=16), Dim("quarter_width", min=2, max=128)
    example = (torch.rand(2, 3, 32, 128),)
    program = torch.export.export(model, example, dynamic_shapes={"image": {0: batch, 3: 4 * quarter}})
    torch.export.save(program, str(path))


def build_safetensors(factory, path: Path) -> None:  # type: ignore[no-untyped-def]
    """A factory model's seeded weights as safetensors."""
    state = {k: v.contiguous() for k, v in _seeded(factory).state_dict().items()}
    save_file(state, str(path))


BUILDERS = {
    "chat-small": ("chat-small.pt2", build_chat_small),
    "embedder": ("embedder.safetensors", lambda p: build_safetensors(zoo.embedder, p)),
    "reranker": ("reranker.safetensors", lambda p: build_safetensors(zoo.reranker, p)),
    "ocr-longtail": ("ocr-longtail.pt2", build_ocr_longtail),
}


def update_fleet(fleet: Path, digests: dict[str, str]) -> None:
    """Replace each model's ``sha256:`` line in the fleet file, keeping everything else as written."""
    text = fleet.read_text()
    for name, digest in digests.items():
        pattern = re.compile(rf"(- name: {re.escape(name)}\n(?:(?!  - name:).*\n)*?\s+sha256: )[0-9a-f]{{64}}")
        text, count = pattern.subn(rf"\g<1>{digest}", text)
        if count != 1:
            raise SystemExit(f"{fleet}: found {count} sha256 lines for model {name!r}, expected 1")
    fleet.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update-fleet", action="store_true", help="write the sha256 values into fleet.yaml")
    args = parser.parse_args()
    ARTIFACTS.mkdir(exist_ok=True)
    digests: dict[str, str] = {}
    for name, (filename, build) in BUILDERS.items():
        path = ARTIFACTS / filename
        build(path)
        digests[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        print(f"{name:14} {path.relative_to(HERE.parent)!s:40} {path.stat().st_size:>9} {digests[name]}")
    if args.update_fleet:
        update_fleet(HERE / "fleet.yaml", digests)
        print(f"updated {HERE / 'fleet.yaml'}")


if __name__ == "__main__":
    main()

"""The layout's rules: domain packages never import Prefect."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOMAIN_PACKAGES = ("db", "forecasting", "scheduling", "warmers", "controller", "replay")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", DOMAIN_PACKAGES)
def test_domain_package_does_not_import_prefect(package: str) -> None:
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / package).rglob("*.py") if "prefect" in _imports(p)]
    assert offenders == []


def _unpickling_calls(path: Path) -> list[str]:
    """Calls that unpickle: ``pickle.load(s)``, and ``torch.load`` without ``weights_only=True``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
        name = f"{owner}.{node.func.attr}"
        safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                   for k in node.keywords)
        if name in ("pickle.load", "pickle.loads", "torch.load") and not (name == "torch.load" and safe):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    return found


def test_no_code_outside_tests_unpickles() -> None:
    """Artifacts and cache contents are data: only torch's restricted ``weights_only`` unpickler may read them."""
    sources = [p for package in (*DOMAIN_PACKAGES, "prewarm", "flows") for p in (ROOT / package).rglob("*.py")]
    assert [call for path in sources for call in _unpickling_calls(path)] == []

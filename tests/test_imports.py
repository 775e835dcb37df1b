"""The package's layers: inference, faces and evaluation never reach the training stack, and
the models never reach the layers above them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "agegender"


def _module_file(name: str) -> Path | None:
    folder = PACKAGE.joinpath(*name.split(".")[1:])
    for candidate in (folder.with_name(folder.name + ".py"), folder / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(name: str, path: Path) -> set[str]:
    """Every `agegender` module `path` imports, at any depth of its code (lazy imports too),
    with the packages above each one (importing `a.b.c` runs `a/__init__` and `a/b/__init__`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            found |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)
                      if parts[0] == "agegender" and _module_file(".".join(parts[:i]))}
    return found


def reachable(start: str) -> dict[str, str]:
    """Every agegender module `start` imports directly or through others: module → importer."""
    seen = {start: ""}
    todo = [start]
    while todo:
        name = todo.pop()
        for imported in _imports(name, _module_file(name)):
            if imported not in seen:
                seen[imported] = name
                todo.append(imported)
    return seen


def _chain(seen: dict[str, str], module: str) -> str:
    chain = [module]
    while seen[chain[-1]]:
        chain.append(seen[chain[-1]])
    return " ← ".join(chain)


def _modules(package: str) -> list[str]:
    folder = PACKAGE / package
    return [f"agegender.{package}." + path.stem if path.stem != "__init__"
            else f"agegender.{package}" for path in sorted(folder.glob("*.py"))]


@pytest.mark.parametrize("module", ["agegender"] + [
    module for package in ("inference", "faces", "evaluation", "serving")
    for module in _modules(package)])
def test_never_imports_training(module):
    seen = reachable(module)
    training = [name for name in seen if name.split(".")[:2] == ["agegender", "training"]]
    assert not training, _chain(seen, training[0])


ABOVE_MODELS = ("inference", "evaluation", "serving", "training", "cli")


@pytest.mark.parametrize("module", _modules("models"))
def test_models_never_import_the_layers_above_them(module):
    """The networks sit below inference: Grad-CAM once reached up into `inference.backends`."""
    seen = reachable(module)
    above = [name for name in seen if name.split(".")[1:2] and name.split(".")[1] in ABOVE_MODELS]
    assert not above, _chain(seen, above[0])


def test_the_walk_finds_lazy_imports_so_it_can_fail():
    assert "agegender.training.run" in reachable("agegender.cli.main")
    assert "agegender.models.checkpoint" in reachable("agegender.inference.backends")


def test_only_the_converter_unpickles_code():
    offenders = [str(path.relative_to(ROOT)) for folder in ("src", "tools")
                 for path in (ROOT / folder).rglob("*.py")
                 if "weights_only=False" in path.read_text()]
    assert offenders == ["src/agegender/models/legacy_checkpoint.py"]

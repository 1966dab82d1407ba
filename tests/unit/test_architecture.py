"""The layers hold: import-linter's contracts (pyproject.toml) pass on the tree and fail on a wrong-way import, and
no project module sits in an import cycle. `make test` runs `lint-imports` itself; these tests prove the check bites."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pages", "services", "models")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def import_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Every group of modules that import each other, directly or through others (Tarjan's strongly connected
    components of more than one module, or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(start: str) -> None:
        # Iterative, so a deep import chain cannot hit the recursion limit.
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph.get(target, ())))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1 or node in graph.get(node, ()):
                        cycles.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return cycles


def project_graph(root: Path) -> dict[str, set[str]]:
    """Each project module → the project modules it imports, read from the source under `root` (in a fresh
    interpreter: this one has already imported the real tree's packages)."""
    script = (
        "import grimp, json, sys; sys.path.insert(0, '.'); "
        f"g = grimp.build_graph(*{PACKAGES!r}, cache_dir=None); "
        "print(json.dumps({m: sorted(g.find_modules_directly_imported_by(m)) for m in g.modules}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    return {module: set(targets) for module, targets in json.loads(out).items()}


def copy_project(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "migrations"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120, check=False
    )


def test_no_project_module_is_in_an_import_cycle() -> None:
    assert import_cycles(project_graph(ROOT)) == []


def test_the_cycle_check_finds_a_planted_cycle(tmp_path: Path) -> None:
    copy = copy_project(tmp_path)
    settings = copy / "services" / "core" / "settings.py"
    settings.write_text(settings.read_text() + "\nfrom services import authz  # noqa: E402,F401\n")
    cycles = import_cycles(project_graph(copy))
    assert any("services.core.settings" in group and "services.authz" in group for group in cycles), cycles


def test_the_contracts_hold_on_the_tree(tmp_path: Path) -> None:
    result = lint_imports(copy_project(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "wrong_import", "contract"),
    [
        ("services/rules/pricing.py", "import sqlmodel", "Business rules import nothing of ours"),
        ("services/rules/pricing.py", "from services.core import settings", "Business rules import nothing of ours"),
        ("services/booking/saga.py", "import streamlit", "Nothing under services imports authz"),
        ("services/booking/saga.py", "from services.reconciliation import reconcile", "pages → authz → entry points"),
        ("services/finance/reports.py", "from services import authz", "Nothing under services imports authz"),
    ],
)
def test_a_wrong_way_import_breaks_a_contract(tmp_path: Path, module: str, wrong_import: str, contract: str) -> None:
    copy = copy_project(tmp_path)
    target = copy / module
    target.write_text(target.read_text() + f"\n{wrong_import}  # noqa: E402,F401\n")
    result = lint_imports(copy)
    assert result.returncode == 1, result.stdout
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout

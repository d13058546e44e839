"""Every stage of dvc.yaml lists as dependencies the project modules its script imports, so that a
change to any of them re-runs the stage (found statically: no stage is run, nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _module_file(name: str) -> Path | None:
    path = REPO / Path(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _imported(tree: ast.Module, *, lazy: bool) -> set[str]:
    """Names of the ``ultradet`` modules a file imports at module level, and with ``lazy`` also
    inside functions."""
    names = set()
    for node in ast.walk(tree) if lazy else tree.body:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}  # `from ultradet import data`
    return {n for n in names if n.split(".")[0] == "ultradet" and _module_file(n) is not None}


def project_files(script: Path) -> set[Path]:
    """The project's files a script needs: its ``ultradet`` imports (lazy ones included), their
    packages' ``__init__.py`` and, transitively, what those import at module level (a library
    function's lazy import, e.g. torch-only device resolution, runs only when it is called)."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        file = todo.pop()
        for name in _imported(ast.parse(file.read_text()), lazy=file == script):
            parts = name.split(".")
            for k in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
                file = _module_file(".".join(parts[:k]))
                if file is not None and file not in seen:
                    seen.add(file)
                    todo.append(file)
    return seen


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_depends_on_every_module_it_imports(stage):
    deps = [REPO / d for d in STAGES[stage]["deps"] if "${" not in d]
    script = REPO / STAGES[stage]["cmd"].split()[1]
    assert script in deps
    needed = project_files(script) - {REPO / "ultradet" / "__init__.py"}  # the version string only
    missing = sorted(str(f.relative_to(REPO)) for f in needed if not any(f == d or d in f.parents for d in deps))
    assert not missing, f"dvc.yaml stage {stage} does not list {missing}"


def test_evaluate_declares_fp_causes_and_depends_on_the_mimic_sidecar():
    """The evaluate stage writes fp_causes.csv (a declared output, so the report's ``results``
    dependency sees it change) and reads the mimic sidecar, which lies inside its ``${data.out}``
    dependency: a new sidecar re-runs it. (Imports the two file names, not any stage.)"""
    from ultradet.evaluation.fp_causes import CSV_NAME
    from ultradet.mimic_sidecar import sidecar_path

    evaluate = STAGES["evaluate"]
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in evaluate["outs"]]
    assert f"results/${{item.model}}/fold${{item.fold}}/{CSV_NAME}" in outs
    sidecar = sidecar_path("${data.out}", "trainval")
    assert any(Path(d) in sidecar.parents for d in evaluate["deps"])
    assert "results" in STAGES["report"]["deps"]

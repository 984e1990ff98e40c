"""The floors of the house, read from the source: who may import whom.

- the core (``artwalk/``) imports no stage and not the top floor, not even inside a function;
- a stage (``diffusion_models``, ``frame_interpolation``, ``super_resolution``,
  ``generate_videos``) imports the core and never another stage;
- only the top floor (``pipeline``) imports stages;
- no import cycle among the project's modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

CORE = "artwalk"
STAGES = ("diffusion_models", "frame_interpolation", "super_resolution", "generate_videos")
TOP = ("pipeline", "studio")
PACKAGES = (CORE, *STAGES, *TOP)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found = {"generate_videos": REPO / "generate_videos.py"}
    for package in (CORE, *STAGES[:3], *TOP):
        for path in (REPO / package).rglob("*.py"):
            found[module_name(path)] = path
    return found


def imports_of(path: Path, name: str) -> set[str]:
    """Every module ``path`` imports, at any depth of the file (functions included)."""
    tree = ast.parse(path.read_text("utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def top(name: str) -> str:
    return name.split(".")[0]


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: {m for m in imports_of(path, name) if m in modules and m != name}
            for name, path in modules.items()}


def test_the_core_imports_no_stage_and_no_top_floor():
    bad = {name: sorted(m for m in deps if top(m) in (*STAGES, *TOP))
           for name, deps in graph().items() if top(name) == CORE}
    assert {k: v for k, v in bad.items() if v} == {}


def test_a_stage_never_imports_another_stage_or_the_top_floor():
    bad = {name: sorted(m for m in deps if top(m) != top(name) and top(m) != CORE)
           for name, deps in graph().items() if top(name) in STAGES}
    assert {k: v for k, v in bad.items() if v} == {}


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(g[node]):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep):] + [dep] if dep in path else [node, dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for name in sorted(g):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_scan_sees_imports_inside_functions(tmp_path):
    """The scan itself: a function-level import (what driver.py did) is found."""
    path = tmp_path / "mod.py"
    path.write_text("def f():\n    from super_resolution.engines import ENGINES\n    import generate_videos\n")
    found = imports_of(path, "artwalk.mod")
    assert {"super_resolution.engines", "generate_videos"} <= found

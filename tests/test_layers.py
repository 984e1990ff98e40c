"""The floors of the house, read from the source: who may import, load or start whom.

- the core (``artwalk/``) imports no stage and not the top floor, not even inside a function,
  nor by a module name written in a string (``importlib.import_module("generate_videos")``,
  ``__import__``, an engine registry's ``"package.module:Class"``);
- a stage (``diffusion_models``, ``frame_interpolation``, ``super_resolution``,
  ``generate_videos``) imports the core and never another stage or the top floor;
- neither the core nor a stage starts a stage's or the top floor's process
  (``[sys.executable, "-m", "frame_interpolation", ...]``, a path to ``generate_videos.py``):
  composing stages is the top floor's. The one way up is a hand-over: a stage's CLI may
  replace its own process (``os.exec*``) with the top floor's command, and does nothing after;
- only the top floor (``pipeline``, ``studio``) imports stages;
- no import cycle among the project's modules, nor among its packages (``pipeline`` importing
  ``studio`` while ``studio`` imports ``pipeline``).

Each check is a function of a source tree, run here on the repository and, in the tests at the
end, on tiny trees with a planted violation, to show that it catches one.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO

CORE = "artwalk"
STAGES = ("diffusion_models", "frame_interpolation", "super_resolution", "generate_videos")
TOP = ("pipeline", "studio")
PACKAGES = (CORE, *STAGES, *TOP)
SCRIPTS = {"generate_videos"}  # stages that are one file at the root, not a package

# Calls that load a module by the name in their first argument.
LOADERS = {"import_module", "__import__", "run_module", "resolve_name"}
# Calls that start a process: as a child (the caller goes on) or in the caller's place (exec).
CHILD = {"run", "call", "check_call", "check_output", "Popen", "system", "popen", "getoutput", "getstatusoutput",
         "create_subprocess_exec", "create_subprocess_shell", "posix_spawn", "posix_spawnp", "spawnl", "spawnle",
         "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "startfile"}
EXEC = {"execl", "execle", "execlp", "execlpe", "execv", "execve", "execvp", "execvpe"}
PROCESS_MODULES = {"subprocess", "os", "asyncio"}
TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")  # "package.module:Class", a registry's lazy target


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules(root: Path = REPO) -> dict[str, Path]:
    found = {name: root / f"{name}.py" for name in SCRIPTS if (root / f"{name}.py").is_file()}
    for package in PACKAGES:
        if package not in SCRIPTS and (root / package).is_dir():
            for path in (root / package).rglob("*.py"):
                found[module_name(path, root)] = path
    return found


def top(name: str) -> str:
    return name.split(".")[0]


def _called(node: ast.Call) -> tuple[str, str]:
    """(the module or object a call is made on, the function's name): ``subprocess.run`` ->
    ("subprocess", "run"); a bare ``run`` -> ("", "run")."""
    func = node.func
    if isinstance(func, ast.Attribute):
        owner = func.value
        while isinstance(owner, ast.Attribute):
            owner = owner.value
        return (owner.id if isinstance(owner, ast.Name) else ""), func.attr
    return "", func.id if isinstance(func, ast.Name) else ""


def _strings(node: ast.AST) -> list[str]:
    """Every string written inside ``node`` (f-strings' literal parts included)."""
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def imports_of(path: Path, name: str, loads: bool = True) -> set[str]:
    """Every module ``path`` imports, at any depth of the file (functions included), and with
    ``loads`` every module it loads by a name written in a string: the first argument of
    ``import_module``, ``__import__``, ``runpy.run_module`` or ``pkgutil.resolve_name``, and a whole
    string of the form ``package.module:Class`` (what the engine registries import when an engine
    is made)."""
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
        elif not loads:
            continue
        elif isinstance(node, ast.Call) and _called(node)[1] in LOADERS and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                out.add(first.value.partition(":")[0])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and TARGET.match(node.value):
            out.add(node.value.partition(":")[0])
    return out


def graph(root: Path = REPO) -> dict[str, set[str]]:
    """Module -> the project's modules it imports or loads by name."""
    modules = project_modules(root)
    return {name: {m for m in imports_of(path, name) if m in modules and m != name}
            for name, path in modules.items()}


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    """:func:`graph` less what a module loads by name inside its own package: a registry's lazy
    ``"package.module:Class"`` targets, whose modules import the registry (an engine's base class)
    when it makes them, and never at import time."""
    modules = project_modules(root)
    return {name: {m for m in imports_of(path, name) if m in modules and m != name} -
            {m for m in imports_of(path, name) - imports_of(path, name, loads=False) if top(m) == top(name)}
            for name, path in modules.items()}


def import_violations(root: Path = REPO) -> dict[str, list[str]]:
    """{module: what it must not import}: the core importing a stage or the top floor, a stage
    importing another stage or the top floor."""
    bad = {}
    for name, deps in graph(root).items():
        if top(name) == CORE:
            found = sorted(m for m in deps if top(m) in (*STAGES, *TOP))
        elif top(name) in STAGES:
            found = sorted(m for m in deps if top(m) not in (top(name), CORE))
        else:
            continue
        if found:
            bad[name] = found
    return bad


@dataclass(frozen=True)
class Start:
    """A call that starts a process, in a module: where, how, and the project's packages it names."""

    line: int
    exec: bool  # in the caller's place (os.exec*), not as a child
    names: frozenset[str]


def _named(strings: list[str]) -> set[str]:
    """The project's stage and top-floor packages that command-line words name: a module for
    ``-m`` (``"frame_interpolation"``, ``"-m super_resolution"``), a script or package path
    (``".../generate_videos.py"``, ``"frame_interpolation/__main__.py"``)."""
    named = set()
    for text in strings:
        for package in (*STAGES, *TOP):
            word = re.escape(package)
            if re.fullmatch(rf"{word}(\.\w+)*", text) or re.search(rf"(^|\s)-m\s*{word}\b", text) \
                    or re.search(rf"(^|[/\\\s]){word}(\.py\b|[/\\])", text):
                named.add(package)
    return named


def process_starts(path: Path) -> list[Start]:
    """The calls in ``path`` that start a process, each with the packages it names: in its own
    arguments, and when those take words from a variable (a command put together elsewhere, as
    ``_stage(["super_resolution", ...])`` feeding ``subprocess.run(cmd)``), anywhere in the file
    as a whole string."""
    tree = ast.parse(path.read_text("utf-8"))
    process_names = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                     and node.module in PROCESS_MODULES for alias in node.names}
    in_file = _named([s for s in _strings(tree) if re.fullmatch(r"[\w.]+", s)])
    starts = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        owner, func = _called(node)
        if not ((owner in PROCESS_MODULES or (not owner and func in process_names)) and func in CHILD | EXEC):
            continue
        names = _named(_strings(node))
        if any(isinstance(n, (ast.Name, ast.Starred)) for arg in node.args for n in ast.walk(arg)):
            names |= in_file  # words from elsewhere in the file: what the file names may be among them
        starts.append(Start(node.lineno, func in EXEC, frozenset(names)))
    return starts


def start_violations(root: Path = REPO) -> dict[str, list[str]]:
    """{module: "line N: starts X"}: the core or a stage starting a stage's or the top floor's
    process; a stage's exec of the top floor (a hand-over, nothing runs after it) is the exception."""
    bad: dict[str, list[str]] = {}
    for name, path in project_modules(root).items():
        if top(name) not in (CORE, *STAGES):
            continue
        for start in process_starts(path):
            names = set(start.names) - {top(name)}
            if start.exec and top(name) in STAGES:
                names -= set(TOP)
            if names:
                bad.setdefault(name, []).append(f"line {start.line}: starts {', '.join(sorted(names))}")
    return bad


def module_cycles(root: Path = REPO) -> list[list[str]]:
    g = import_graph(root)
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
    return cycles


def package_graph(root: Path = REPO) -> dict[str, set[str]]:
    """Package -> the other packages its modules import (at any depth, strings included)."""
    out: dict[str, set[str]] = {}
    for name, deps in graph(root).items():
        out.setdefault(top(name), set()).update(top(m) for m in deps if top(m) != top(name))
    return out


def package_cycles(root: Path = REPO) -> list[set[str]]:
    """Groups of packages that import one another, around (strongly connected, more than one)."""
    g = package_graph(root)
    reach = {p: set() for p in g}
    for p in g:
        todo = list(g[p])
        while todo:
            q = todo.pop()
            if q in g and q not in reach[p]:
                reach[p].add(q)
                todo.extend(g[q])
    groups = []
    for p in sorted(g):
        group = {p} | {q for q in reach[p] if p in reach[q]}
        if len(group) > 1 and group not in groups:
            groups.append(group)
    return groups


# --------------------------------------------------------------------------- the repository


def test_the_core_imports_no_stage_and_no_top_floor():
    assert {k: v for k, v in import_violations().items() if top(k) == CORE} == {}


def test_a_stage_never_imports_another_stage_or_the_top_floor():
    assert {k: v for k, v in import_violations().items() if top(k) in STAGES} == {}


def test_neither_the_core_nor_a_stage_starts_a_stage_s_process():
    assert start_violations() == {}


def test_no_import_cycles():
    assert module_cycles() == []


def test_no_package_import_cycles():
    """Not even pipeline and studio: the studio builds on the walk's package, and ``artwalk
    studio`` hands over to ``python -m studio`` instead of importing it."""
    assert package_cycles() == []


# --------------------------------------------------------------------------- the checks catch what they are for


def tree(root: Path, files: dict[str, str]) -> Path:
    """A tiny project: every package and stage present and clean, plus ``files`` (path -> source)."""
    for package in PACKAGES:
        if package in SCRIPTS:
            (root / f"{package}.py").write_text("import artwalk\n")
        else:
            (root / package).mkdir(parents=True, exist_ok=True)
            (root / package / "__init__.py").write_text("" if package == CORE else "import artwalk\n")
    for rel, source in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(source)
    return root


def test_a_clean_tree_has_no_violation(tmp_path):
    root = tree(tmp_path, {"pipeline/cli.py": "import generate_videos\nimport super_resolution\n",
                           "studio/app.py": "import pipeline\nimport generate_videos\n",
                           "frame_interpolation/engines.py": 'TARGET = "frame_interpolation.flow:FlowEngine"\n',
                           "frame_interpolation/flow.py": "class FlowEngine: ...\n",
                           "artwalk/engines.py": "import importlib\ndef make(name):\n    return "
                                                 "importlib.import_module(name)\n",
                           "artwalk/messages.py": 'HINT = "run `python -m frame_interpolation OUT` first"\n',
                           "super_resolution/gpu.py": 'import subprocess\nNEXT = "generate_videos"\n'
                                                      'subprocess.run(["nvidia-smi", "-L"], check=False)\n'})
    assert (import_violations(root), start_violations(root), module_cycles(root), package_cycles(root)) == \
        ({}, {}, [], [])


def test_the_scan_sees_imports_inside_functions(tmp_path):
    """A function-level import (what driver.py did) is found."""
    path = tmp_path / "mod.py"
    path.write_text("def f():\n    from super_resolution.engines import ENGINES\n    import generate_videos\n")
    found = imports_of(path, "artwalk.mod")
    assert {"super_resolution.engines", "generate_videos"} <= found


@pytest.mark.parametrize("where, source, loaded", [
    ("artwalk/late.py", 'import importlib\nstage = importlib.import_module("generate_videos")\n', "generate_videos"),
    ("artwalk/late.py", 'def f():\n    return __import__("frame_interpolation.film")\n', "frame_interpolation.film"),
    ("artwalk/late.py", 'import runpy\nrunpy.run_module("super_resolution")\n', "super_resolution"),
    ("frame_interpolation/late.py", 'from importlib import import_module\nimport_module("super_resolution")\n',
     "super_resolution"),
    ("generate_videos.py", 'import pkgutil\npkgutil.resolve_name("pipeline.walk:run")\n', "pipeline.walk"),
    ("super_resolution/engines.py", 'SPECS = [("flow", "frame_interpolation.flow:FlowEngine")]\n',
     "frame_interpolation.flow"),
])
def test_a_module_loaded_by_a_name_in_a_string_is_caught(tmp_path, where, source, loaded):
    root = tree(tmp_path, {where: source, "frame_interpolation/film.py": "", "frame_interpolation/flow.py": "",
                           "pipeline/walk.py": ""})
    name = module_name(root / where, root)
    assert loaded in imports_of(root / where, name)
    assert import_violations(root) == {name: [loaded]}


@pytest.mark.parametrize("where, source, started", [
    ("generate_videos.py", 'import subprocess, sys\nsubprocess.run([sys.executable, "-m", "frame_interpolation", '
     '"OUT", "--keep-settings"])\n', "frame_interpolation"),
    ("super_resolution/__main__.py", 'import subprocess, sys\nfrom pathlib import Path\nROOT = Path(".")\n'
     'subprocess.check_call([sys.executable, str(ROOT / "generate_videos.py"), "OUT"])\n', "generate_videos"),
    ("generate_videos.py", 'import os, subprocess, sys\ndef _stage(args):\n    cmd = [sys.executable, "-m", *args]\n'
     '    return subprocess.run(cmd, env=dict(os.environ)).returncode\n'
     'def retime(out):\n    _stage(["super_resolution", out, "--keep-settings"])\n', "super_resolution"),
    ("artwalk/driver.py", 'import os\nos.system("python -m diffusion_models in out")\n', "diffusion_models"),
    ("artwalk/driver.py", 'from subprocess import Popen\nPopen(["python", "-m", "pipeline", "run", "in", "out"])\n',
     "pipeline"),
    ("diffusion_models/__main__.py", 'import subprocess, sys\nsubprocess.run([sys.executable, "-m", "pipeline", '
     '"retime", "OUT"])\n', "pipeline"),  # a child of the top floor: the stage would go on after it
    ("frame_interpolation/__main__.py", 'import os, sys\nos.execv(sys.executable, [sys.executable, "-m", '
     '"super_resolution", "OUT"])\n', "super_resolution"),  # exec of another stage: no hand-over
])
def test_a_process_started_from_a_stage_or_the_core_is_caught(tmp_path, where, source, started):
    root = tree(tmp_path, {where: source})
    name = module_name(root / where, root)
    violations = start_violations(root)
    assert list(violations) == [name] and len(violations[name]) == 1 and violations[name][0].endswith(started)


def test_a_stage_may_hand_its_command_over_to_the_top_floor(tmp_path):
    """``generate_videos.py``'s hand-over: its process becomes ``python -m pipeline retime ...``."""
    source = ('import os, sys\nHAND_OVER = ("pipeline", "retime")\n'
              'def hand_over(argv):\n    os.execv(sys.executable, [sys.executable, "-m", *HAND_OVER, *argv])\n')
    root = tree(tmp_path, {"generate_videos.py": source})
    assert [s.exec and s.names == {"pipeline"} for s in process_starts(root / "generate_videos.py")] == [True]
    assert start_violations(root) == {}
    root = tree(tmp_path / "core", {"artwalk/late.py": source})  # the core has no command to hand over
    assert start_violations(root) == {"artwalk.late": ["line 4: starts pipeline"]}


@pytest.mark.parametrize("files, cycle", [
    ({"pipeline/cli.py": "from studio import cli\n", "studio/walks.py": "from pipeline import walk\n",
      "pipeline/walk.py": "", "studio/cli.py": ""}, {"pipeline", "studio"}),
    ({"pipeline/cli.py": "def f():\n    import studio.cli\n", "studio/cli.py": "import artwalk\n",
      "studio/jobs.py": 'import importlib\nimportlib.import_module("pipeline.walk")\n', "pipeline/walk.py": ""},
     {"pipeline", "studio"}),
    ({"artwalk/a.py": "import generate_videos\n", "generate_videos.py": "import pipeline\n",
      "pipeline/cli.py": "import artwalk.a\n"}, {"artwalk", "generate_videos", "pipeline"}),
])
def test_a_package_level_cycle_is_caught(tmp_path, files, cycle):
    root = tree(tmp_path, files)
    assert package_cycles(root) == [cycle]
    assert module_cycles(root) == []  # no module imports itself around: only the package-level check sees these

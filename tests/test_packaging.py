"""One source of truth for the dependencies: pyproject.toml's metadata and requirements/ agree.

pip reads requirements/*.txt (following `-r`); a package build reads pyproject.toml, whose
dependencies and extras setuptools fills from the same files (`[tool.setuptools.dynamic]`).
These tests read the metadata the way a build does (setuptools' own reader, which expands
`file:` entries) and check it against requirements/ as pip reads it, so a package added, or
a pin changed, in one place only fails here.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "requirements"

# What each extra stands for, in requirements/ files (pip's reading, `-r` followed). The
# package's own dependencies are base.txt, which every other file adds to.
BASE = ("base.txt",)
EXTRAS = {
    "neural": ("keyframes.txt", "motion.txt", "upscale.txt"),
    "studio": ("studio.txt",),
    "audio": ("audio.txt",),
    "cluster": ("cluster.txt",),
    "tracking": ("tracking.txt",),
    "dev": ("dev.txt",),
}


def pip_lines(path: Path, seen: tuple[Path, ...] = ()) -> list[str]:
    """The requirement lines pip installs for `pip install -r path`: its own and its `-r`s'."""
    assert path not in seen, f"-r loop: {' -> '.join(p.name for p in (*seen, path))}"
    assert path.is_file(), f"{seen[-1].name if seen else 'the test'} names {path}, which does not exist"
    lines = []
    for raw in path.read_text().splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()  # pip's comments: '#' at the start or after space
        if not line:
            continue
        option = re.fullmatch(r"(?:-r|--requirement)\s*=?\s*(\S+)", line)
        if option:
            lines += pip_lines((path.parent / option.group(1)).resolve(), (*seen, path))
        else:
            assert not line.startswith("-"), f"{path.name}: option {line!r}: only -r is expected here"
            lines.append(line)
    return lines


def requirements(lines) -> dict[str, Requirement]:
    """Requirement lines by normalised name; one name spelled two ways fails."""
    found: dict[str, Requirement] = {}
    for line in lines:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if name in found and str(found[name]) != str(req):
            pytest.fail(f"{req.name} is required as both {found[name]} and {req}: one pin, one place")
        found[name] = req
    return found


def as_set(lines) -> set[str]:
    return {str(req) for req in requirements(lines).values()}


@pytest.fixture(scope="module")
def metadata() -> dict:
    """pyproject.toml's [project] table as a build sees it, dynamic `file:` entries expanded."""
    from setuptools.config.pyprojecttoml import read_configuration

    project = read_configuration(REPO / "pyproject.toml", expand=True)["project"]
    # setuptools hands the expanded extras back under its own attribute's spelling
    extras = project.get("optional-dependencies", project.get("optional_dependencies"))
    assert extras is not None, f"no extras in {sorted(project)}"
    return {"dependencies": project["dependencies"], "extras": extras}


def test_files_that_pyproject_reads_hold_only_requirements():
    # setuptools' `file:` takes every non-comment line as a requirement: a `-r` or a comment
    # after a requirement would break every build, so such lines live only in files pip alone reads.
    import tomllib

    dynamic = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["dynamic"]
    named = set(dynamic["dependencies"]["file"])
    for entry in dynamic["optional-dependencies"].values():
        named.update(entry["file"])
    assert named, "pyproject.toml reads no requirements files"
    for name in sorted(named):
        for number, line in enumerate((REPO / name).read_text().splitlines(), 1):
            line = line.strip()
            if line and not line.startswith("#"):
                assert "#" not in line and not line.startswith("-"), (
                    f"{name}:{number}: {line!r}: pyproject.toml reads this file, so one "
                    f"requirement a line, no options, comments on lines of their own")
                Requirement(line)


def test_dependencies_are_base_txt(metadata):
    assert as_set(metadata["dependencies"]) == as_set(
        line for name in BASE for line in pip_lines(REQUIREMENTS / name))


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_each_extra_is_its_requirements_files(metadata, extra):
    base = as_set(line for name in BASE for line in pip_lines(REQUIREMENTS / name))
    pip_reads = as_set(line for name in EXTRAS[extra] for line in pip_lines(REQUIREMENTS / name))
    package_says = as_set(metadata["extras"].get(extra, []))
    # base.txt comes with the package itself: an extra need not repeat it (nor may it differ)
    assert package_says - base == pip_reads - base, (
        f"artwalk[{extra}] and requirements/{', '.join(EXTRAS[extra])} disagree: "
        f"only in pyproject: {sorted(package_says - pip_reads - base)}, "
        f"only in requirements/: {sorted(pip_reads - package_says - base)}")


def test_the_extras_are_those_named_here(metadata):
    assert sorted(metadata["extras"]) == sorted(EXTRAS), (
        "an extra was added or removed in pyproject.toml: name its files in EXTRAS here")


def test_every_requirements_file_belongs_to_an_extra():
    reached = set()

    def walk(path: Path):
        reached.add(path.name)
        for raw in path.read_text().splitlines():
            option = re.fullmatch(r"\s*(?:-r|--requirement)\s*=?\s*(\S+)\s*(?:#.*)?", raw)
            if option:
                walk((path.parent / option.group(1)).resolve())

    for name in (*BASE, *(n for names in EXTRAS.values() for n in names)):
        walk(REQUIREMENTS / name)
    orphans = sorted(p.name for p in REQUIREMENTS.glob("*.txt") if p.name not in reached)
    assert not orphans, (
        f"{', '.join(orphans)} in requirements/ belong to no extra: add them to one in pyproject.toml and here")


def test_every_pin_is_the_same_everywhere_and_torch_is_exact():
    # A package that several files name (torch, safetensors) must be pinned alike in each,
    # and torch exactly: a range pulls the newest CUDA build onto a CPU-only machine.
    every_line = [line for path in sorted(REQUIREMENTS.glob("*.txt")) for line in pip_lines(path)]
    pins = requirements(every_line)
    assert str(pins["torch"].specifier).startswith("=="), f"torch must be pinned exactly, not {pins['torch']}"
    assert "torchvision" not in pins, "torchvision breaks transformers' imports on the CPU torch"


def test_every_package_of_the_checkout_is_installed():
    """pyproject names its packages one by one: a new subpackage left out of that list works from
    the checkout and is missing from every installed wheel (studio.routers once was)."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]["packages"])
    tops = {name.split(".")[0] for name in listed}
    found = {".".join(p.parent.relative_to(REPO).parts) for top in tops for p in (REPO / top).rglob("__init__.py")}
    assert listed == found

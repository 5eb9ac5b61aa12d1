"""The locked environment: requirements/lock.txt pins every dependency the project declares, at
versions its ranges admit, names no torch or CUDA package, is what every set-up installs from,
and is what this environment holds."""

from __future__ import annotations

import re
import subprocess
from importlib import metadata
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"


def _lock() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = [*project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        specs += extra
    return [Requirement(spec) for spec in specs]


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    pins = _lock()
    for req in _declared():
        name = canonicalize_name(req.name)
        assert name in pins, f"{name} is declared in pyproject.toml but not locked: make lock"
        assert req.specifier.contains(pins[name]), f"lock has {name} {pins[name]}, wants {req}"


def test_the_lock_names_no_torch_and_no_cuda_package() -> None:
    """Torch comes from TORCH_SPEC (a CPU build here, the user's CUDA build on a GPU machine);
    a pinned torch, triton or CUDA runtime in the constraints would fight that choice."""
    cuda = [n for n in _lock() if n in {"torch", "triton"} or re.match(r"nvidia-(?!ml-py)", n)]
    assert cuda == []


def test_every_install_in_the_makefile_is_constrained_by_the_lock() -> None:
    dry = subprocess.run(
        ["make", "-n", "-B", "install-dev", "VENV=/nonexistent-venv"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installs = [
        line for line in dry.splitlines() if " pip install" in line and "--upgrade pip" not in line
    ]
    assert len(installs) == 3  # torch, the harness with its backends, the dev extras
    assert all("--constraint requirements/lock.txt" in line for line in installs), installs


def test_this_environment_holds_the_locked_versions() -> None:
    """What `make install` produced: every locked package that is installed has its locked
    version (a stale .venv is rebuilt when the lock changes: the Makefile's stamp depends on
    the lock)."""
    wrong = {}
    for name, version in _lock().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # an extra this environment was not set up with
        if installed != version:
            wrong[name] = (installed, version)
    assert wrong == {}

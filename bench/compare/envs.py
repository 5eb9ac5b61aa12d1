"""Isolated environments that differ from the current one only in the packages asked for.

A version matrix must not reinstall torch (gigabytes, and a CUDA build a registry may not even
have) for every diffusers release. So each environment is an empty venv whose site-packages
holds a `.pth` file that appends the *current* environment's site-packages (processed with
`site.addsitedir`, so the editable install of `bench` is importable too); the requested
releases are installed into the venv itself with `--no-deps`, and shadow the current ones
because the venv's own site-packages comes first on `sys.path`. A requirement of a requested
package that the layered environment does not satisfy is then installed the same way, a few
rounds at most; torch is never installed unless it was asked for.

Environments are cached under `<bench cache>/envs/<hash>` (BENCH_CACHE_DIR, else
~/.cache/bench-harness) and reused while the pins and the base environment are the same.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.errors import UserInputError
from bench.models.synthetic import cache_root
from bench.results import write_json_atomic

MARKER = "bench-env.json"
LAYER_PTH = "_bench_layer.pth"
MAX_DEPENDENCY_ROUNDS = 3
# Never pulled in as a dependency: a registry's torch would replace the pinned local build.
NEVER_IMPLICIT = frozenset({"torch", "triton"})


class EnvironmentBuildError(UserInputError):
    """An environment could not be built (install failed, a requirement cannot be met)."""


@dataclass(frozen=True)
class LayeredEnv:
    """A built environment: its interpreter, the pins it was built for, and what it reports."""

    path: Path
    pins: dict[str, str]
    packages: dict[str, str | None]
    extra_installed: list[str]

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def label(self) -> str:
        return pins_label(self.pins)


def pins_label(pins: Mapping[str, str]) -> str:
    """`diffusers-0.41.0_transformers-5.24.0`: usable as a folder name, readable in a table."""
    return "_".join(f"{name}-{version}" for name, version in sorted(pins.items()))


def base_site_packages() -> list[str]:
    """The current interpreter's site-packages (purelib and platlib, once each)."""
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def env_key(pins: Mapping[str, str]) -> str:
    """Same pins over the same base environment and Python = the same environment."""
    payload = json.dumps(
        {
            "pins": dict(sorted(pins.items())),
            "base": base_site_packages(),
            "python": sys.version,
            "layout": 1,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def envs_root() -> Path:
    return cache_root() / "envs"


def find_uv() -> str | None:
    """uv from the `uv` package, next to this interpreter, or on PATH."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        pass
    sibling = Path(sys.executable).parent / "uv"
    if sibling.is_file():
        return str(sibling)
    return shutil.which("uv")


def _run(command: Sequence[str], what: str) -> str:
    result = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise EnvironmentBuildError(f"{what} failed (exit {result.returncode}): {' | '.join(tail)}")
    return result.stdout


def _create_venv(path: Path, uv: str | None) -> Path:
    if uv:
        _run([uv, "venv", "--quiet", "--python", sys.executable, str(path)], f"uv venv {path}")
    else:
        _run([sys.executable, "-m", "venv", "--without-pip", str(path)], f"python -m venv {path}")
    python = path / "bin" / "python"
    site = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        "reading the new environment's site-packages",
    ).strip()
    lines = [f"import site; site.addsitedir({p!r})" for p in base_site_packages()]
    (Path(site) / LAYER_PTH).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return python


def _install(python: Path, requirements: Sequence[str], uv: str | None) -> None:
    """`--no-deps` always: dependencies are resolved by `_check` against the layered view."""
    if uv:
        command = [uv, "pip", "install", "--quiet", "--python", str(python), "--no-deps"]
    else:
        # pip is importable through the layer; it installs into the running interpreter's venv.
        command = [str(python), "-m", "pip", "install", "--quiet", "--no-deps"]
    _run([*command, *requirements], f"installing {' '.join(requirements)}")


# Runs inside the new environment, so markers and versions are evaluated as that env sees them.
# "own": requirements of the packages installed in the environment itself (installable);
# "harness": requirements of bench and its direct dependencies as layered (a shadowed package
# can break one of them, e.g. an older diffusers pulling huggingface-hub below what the
# current transformers needs: that is a conflict to report, not something to install).
_UNMET_SCRIPT = textwrap.dedent(
    """
    import json, re, sysconfig
    from importlib import metadata
    from packaging.requirements import Requirement

    def unmet(dist):
        out = []
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            try:
                version = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                version = None
            if version is None or not req.specifier.contains(version, prereleases=True):
                out.append([dist.metadata["Name"], str(req), version])
        return out

    own = sysconfig.get_paths()["purelib"]
    result = {"own": [u for d in metadata.distributions(path=[own]) for u in unmet(d)]}
    harness, seen = [], set()
    names = ["bench"] + [
        re.split(r"[ ;<>=!~\\[(]", r, maxsplit=1)[0]
        for r in metadata.requires("bench") or []
        if "extra ==" not in r
    ]
    for name in names:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if dist.metadata["Name"] not in seen:
            seen.add(dist.metadata["Name"])
            harness += unmet(dist)
    result["harness"] = harness
    print(json.dumps(result))
    """
)

_VERSIONS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from importlib import metadata
    import bench  # the harness must be importable in the environment
    out = {}
    for name in sys.argv[1:]:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    print(json.dumps(out))
    """
)


Unmet = tuple[str, str, "str | None"]


def _check(python: Path | str) -> dict[str, list[Unmet]]:
    """Unmet requirements as `python` sees them: "own" (installable) and "harness" (conflicts)."""
    out = _run([str(python), "-c", _UNMET_SCRIPT], "checking requirements")
    return {key: [tuple(row) for row in rows] for key, rows in json.loads(out).items()}


def _versions(python: Path, names: Sequence[str]) -> dict[str, str | None]:
    out = _run([str(python), "-c", _VERSIONS_SCRIPT, *names], "reading versions")
    return json.loads(out)


def strip_local(version: str | None) -> str | None:
    return version.split("+", 1)[0] if version else version


def ensure_env(pins: Mapping[str, str], root: Path | None = None) -> LayeredEnv:
    """Build (or reuse) the environment for `pins` ({package: version}) and verify it.

    Verified: every pinned package reports its pinned version, torch is still the base
    environment's build unless pinned, and `import bench` works. Raises EnvironmentBuildError
    (a UserInputError: one line, exit 2) otherwise.
    """
    pins = {name.lower(): version for name, version in pins.items()}
    path = (root or envs_root()) / env_key(pins)
    marker = path / MARKER
    if marker.is_file():
        info = json.loads(marker.read_text(encoding="utf-8"))
        return LayeredEnv(path, pins, info["packages"], info["extra_installed"])
    if path.exists():
        shutil.rmtree(path)  # an interrupted build: start again
    path.parent.mkdir(parents=True, exist_ok=True)
    uv = find_uv()
    python = _create_venv(path, uv)
    _install(python, [f"{n}=={v}" for n, v in sorted(pins.items())], uv)
    extra: list[str] = []
    for round_ in range(MAX_DEPENDENCY_ROUNDS + 1):
        checked = _check(python)
        unmet = checked["own"]
        if not unmet:
            break
        if round_ == MAX_DEPENDENCY_ROUNDS:
            raise EnvironmentBuildError(
                "requirements still unmet after "
                f"{MAX_DEPENDENCY_ROUNDS} rounds: "
                + "; ".join(f"{owner} needs {spec} (has {have})" for owner, spec, have in unmet)
            )
        blocked = [u for u in unmet if _name(u[1]) in NEVER_IMPLICIT and _name(u[1]) not in pins]
        if blocked:
            owner, spec, have = blocked[0]
            raise EnvironmentBuildError(
                f"{owner} requires {spec} but this environment has {_name(spec)} {have}; "
                f"pin it explicitly (e.g. --torch) to install another build"
            )
        requirements = sorted({_plain(u[1]) for u in unmet})
        _install(python, requirements, uv)
        extra += requirements
    # Harness requirements broken by the layering; those already broken in the base environment
    # are not this environment's doing and are left out.
    before = set(_check(sys.executable)["harness"])
    conflicts = [u for u in checked["harness"] if u not in before]
    if conflicts:
        raise EnvironmentBuildError(
            "the pinned versions break the harness's own dependencies: "
            + "; ".join(f"{owner} needs {spec} (has {have})" for owner, spec, have in conflicts)
            + ": pin those packages too"
        )
    names = sorted({*pins, "torch", "diffusers", "transformers"})
    packages = _versions(python, names)
    for name, version in pins.items():
        if strip_local(packages.get(name)) != strip_local(version):
            raise EnvironmentBuildError(
                f"{path}: {name} reports {packages.get(name)}, expected {version}"
            )
    if "torch" not in pins:
        from importlib import metadata

        base_torch = metadata.version("torch")
        if packages.get("torch") != base_torch:
            raise EnvironmentBuildError(
                f"{path}: torch is {packages.get('torch')}, expected the base build {base_torch}"
            )
    write_json_atomic(marker, {"pins": pins, "packages": packages, "extra_installed": extra})
    return LayeredEnv(path, pins, packages, extra)


def _name(spec: str) -> str:
    from packaging.requirements import Requirement

    return Requirement(spec).name.lower().replace("_", "-")


def _plain(spec: str) -> str:
    """The requirement without its marker (already evaluated true in the environment)."""
    from packaging.requirements import Requirement

    req = Requirement(spec)
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{req.name}{extras}{req.specifier}"

"""Isolated environments that differ from the current one only where a version set needs it.

A version matrix must not reinstall torch (gigabytes, and a CUDA build a registry may not even
have) for every diffusers release. So each environment is an empty venv whose site-packages
holds a `.pth` file that appends the *current* environment's site-packages (processed with
`site.addsitedir`, so the editable install of `bench` is importable too); packages installed
into the venv itself shadow the current ones because its own site-packages comes first.

What goes into the venv is decided by a resolver, not guessed: uv resolves the named versions
together with the harness's own requirements, preferring the current environment's versions
wherever they fit (the current versions are uv's preferences), with torch and triton excluded
unless named. Every package the resolution moves is installed with `--no-deps` (diffusers
0.41.0 needs huggingface-hub below 2, so hub moves, and so does transformers, whose current
release needs hub 2). When no resolution exists, uv's explanation is the error.

Environments are cached under `<bench cache>/envs/<hash>` (BENCH_CACHE_DIR, else
~/.cache/bench-harness) and reused while the pins and the base environment are the same. A
build happens in a sibling folder that is renamed into place only once verified, so a failed or
interrupted build never leaves anything that could be reused.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from bench.environment import installed_distributions
from bench.errors import UserInputError
from bench.models.synthetic import cache_root
from bench.results import write_json_atomic

MARKER = "bench-env.json"
LAYER_PTH = "_bench_layer.pth"
# Never resolved unless named: a registry's torch would replace the pinned local build.
NEVER_IMPLICIT = frozenset({"torch", "triton"})


class EnvironmentBuildError(UserInputError):
    """An environment could not be built (no resolution, an install failed, a check failed)."""


@dataclass(frozen=True)
class LayeredEnv:
    """A built environment: its interpreter, the pins it was built for, what the resolution
    moved away from the base environment ({name: (base version, new version)}), and the
    versions it reports."""

    path: Path
    pins: dict[str, str]
    resolved: dict[str, tuple[str | None, str]]
    packages: dict[str, str | None]

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def label(self) -> str:
        return pins_label(self.pins)


def pins_label(pins: Mapping[str, str]) -> str:
    """`diffusers-0.41.0_transformers-5.24.0`: usable as a folder name, readable in a table."""
    return "_".join(f"{name}-{version}" for name, version in sorted(pins.items()))


def check_version(option: str, version: str) -> str:
    """An exact release (`0.41.0`), checked before anything is built: a range or a word such as
    `latest` would make the environment's label lie about what it holds."""
    try:
        Version(version)
    except InvalidVersion:
        raise UserInputError(
            f"{option}: {version!r} is not a release version (expected an exact version such as "
            "0.42.1, no ranges or names)"
        ) from None
    return version


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
            "layout": 2,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def envs_root() -> Path:
    return cache_root() / "envs"


def find_uv() -> str:
    """uv from the `uv` package (a dependency of the harness), next to this interpreter, or on
    PATH."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        pass
    sibling = Path(sys.executable).parent / "uv"
    if sibling.is_file():
        return str(sibling)
    found = shutil.which("uv")
    if found is None:
        raise EnvironmentBuildError(
            "bench matrix needs uv, which is not installed (pip install uv)"
        )
    return found


def _run(command: Sequence[str], what: str) -> str:
    result = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise EnvironmentBuildError(
            f"{what} failed (exit {result.returncode}): {_one_line(result)}"
        )
    return result.stdout


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    """uv's message (its tree of reasons, box-drawing and hints) as one sentence."""
    lines = (result.stderr or result.stdout).strip().splitlines()
    words = [re.sub(r"^[\s×╰─▶│├└:-]+", "", line).strip() for line in lines]
    words = [w.removeprefix("error: ").removeprefix("cause: ") for w in words]
    noise = ("hint:", "help:", "No solution found when resolving")
    words = [w for w in words if w and not w.startswith(noise)]
    return " ".join(words[-8:])


def _create_venv(path: Path, uv: str) -> Path:
    _run([uv, "venv", "--quiet", "--python", sys.executable, str(path)], f"uv venv {path}")
    python = path / "bin" / "python"
    site = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        "reading the new environment's site-packages",
    ).strip()
    lines = [f"import site; site.addsitedir({p!r})" for p in base_site_packages()]
    (Path(site) / LAYER_PTH).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return python


def harness_requirements(installed: Mapping[str, str]) -> list[str]:
    """bench's own requirements, its extras' included where their package is installed (so a
    resolution keeps bitsandbytes, Ray or pytest working if the base has them), markers dropped
    (they were written for the harness's extras, which this interpreter has)."""
    out = []
    for spec in metadata.requires("bench") or []:
        req = Requirement(spec)
        is_extra = req.marker is not None and "extra" in str(req.marker)
        if is_extra and canonicalize_name(req.name) not in installed:
            continue
        if req.marker is not None and not is_extra and not req.marker.evaluate():
            continue
        out.append(_plain(spec))
    return out


def resolve(pins: Mapping[str, str], uv: str) -> dict[str, tuple[str | None, str]]:
    """The packages a version set moves: {name: (base version or None, resolved version)}.

    uv resolves the pins with the harness's requirements; the base versions are written as the
    previous resolution (uv's preferences), so a package moves only when it has to. Torch and
    triton are left out of the resolution unless pinned: the base build stays.
    """
    base = installed_distributions()
    excluded = sorted(NEVER_IMPLICIT - set(pins))
    with tempfile.TemporaryDirectory(prefix="bench-resolve-") as tmp:
        folder = Path(tmp)
        wanted = [f"{name}=={version}" for name, version in sorted(pins.items())]
        (folder / "in.txt").write_text("\n".join([*wanted, *harness_requirements(base)]) + "\n")
        (folder / "exclude.txt").write_text("\n".join(excluded) + "\n")
        preferred = [
            f"{name}=={version}"
            for name, version in sorted(base.items())
            if name not in NEVER_IMPLICIT and name != "bench" and "+" not in version
        ]
        (folder / "out.txt").write_text("\n".join(preferred) + "\n")
        command = [
            uv, "pip", "compile", str(folder / "in.txt"), "--output-file", str(folder / "out.txt"),
            "--python", sys.executable, "--excludes", str(folder / "exclude.txt"),
            "--no-header", "--no-annotate", "--quiet",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise EnvironmentBuildError(
                f"no environment satisfies {pins_label(pins)} with the harness's requirements: "
                + _one_line(result)
            )
        resolved = _read_pins((folder / "out.txt").read_text(encoding="utf-8"))
    return {
        name: (base.get(name), version)
        for name, version in sorted(resolved.items())
        if strip_local(base.get(name)) != strip_local(version)
    }


def _read_pins(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[canonicalize_name(name.split("[", 1)[0])] = version.split(";", 1)[0].strip()
    return out


def _install(python: Path, requirements: Sequence[str], uv: str) -> None:
    """`--no-deps`: the resolution already decided every version."""
    command = [uv, "pip", "install", "--quiet", "--python", str(python), "--no-deps"]
    _run([*command, *requirements], f"installing {' '.join(requirements)}")


# Runs inside the new environment, so markers and versions are evaluated as that env sees them.
# "own": requirements of the packages installed in the environment itself;
# "harness": requirements of bench and its direct dependencies as layered.
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
    """Unmet requirements as `python` sees them: "own" and "harness"."""
    out = _run([str(python), "-c", _UNMET_SCRIPT], "checking requirements")
    return {key: [tuple(row) for row in rows] for key, rows in json.loads(out).items()}


def _versions(python: Path, names: Sequence[str]) -> dict[str, str | None]:
    out = _run([str(python), "-c", _VERSIONS_SCRIPT, *names], "reading versions")
    return json.loads(out)


def strip_local(version: str | None) -> str | None:
    return version.split("+", 1)[0] if version else version


def ensure_env(pins: Mapping[str, str], root: Path | None = None) -> LayeredEnv:
    """Build (or reuse) the environment for `pins` ({package: version}) and verify it.

    Verified: nothing the environment installed or layered has an unmet requirement beyond
    what the base environment already lacked, every pinned package reports its pinned version,
    torch is still the base environment's build unless pinned, and `import bench` works. Raises
    EnvironmentBuildError (a UserInputError: one line, exit 2) otherwise.
    """
    pins = {canonicalize_name(name): version for name, version in pins.items()}
    path = (root or envs_root()) / env_key(pins)
    marker = path / MARKER
    if marker.is_file():
        info = json.loads(marker.read_text(encoding="utf-8"))
        resolved = {name: (old, new) for name, (old, new) in info["resolved"].items()}
        return LayeredEnv(path, pins, resolved, info["packages"])
    if path.exists():
        shutil.rmtree(path)  # written by an older layout, or by hand: never reused
    uv = find_uv()
    resolved = resolve(pins, uv)
    building = path.with_name(f"{path.name}.building")
    shutil.rmtree(building, ignore_errors=True)
    building.parent.mkdir(parents=True, exist_ok=True)
    try:
        packages = _build(building, pins, resolved, uv)
        write_json_atomic(
            building / MARKER, {"pins": pins, "resolved": resolved, "packages": packages}
        )
        building.rename(path)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return LayeredEnv(path, pins, resolved, packages)


def _build(
    path: Path, pins: Mapping[str, str], resolved: Mapping[str, tuple[str | None, str]], uv: str
) -> dict[str, str | None]:
    """Create the venv at `path`, install what the resolution moved, verify; its versions."""
    python = _create_venv(path, uv)
    if resolved:
        _install(python, [f"{name}=={new}" for name, (_, new) in sorted(resolved.items())], uv)
    checked = _check(python)
    before = _check(sys.executable)  # what the base already lacks is not this build's doing
    known = set(before["own"] + before["harness"])
    unmet = [u for u in checked["own"] + checked["harness"] if u not in known]
    if unmet:
        raise EnvironmentBuildError(
            f"{pins_label(pins)}: the resolved environment still has unmet requirements: "
            + "; ".join(f"{owner} needs {spec} (has {have})" for owner, spec, have in unmet)
        )
    packages = _versions(python, sorted({*pins, "torch", "diffusers", "transformers"}))
    for name, version in pins.items():
        if strip_local(packages.get(name)) != strip_local(version):
            raise EnvironmentBuildError(f"{name} reports {packages.get(name)}, expected {version}")
    if "torch" not in pins and packages.get("torch") != metadata.version("torch"):
        raise EnvironmentBuildError(
            f"torch is {packages.get('torch')}, expected the base build {metadata.version('torch')}"
        )
    return packages


def _plain(spec: str) -> str:
    """The requirement without its marker."""
    req = Requirement(spec)
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{req.name}{extras}{req.specifier}"

"""Check that the carried wheels and the GPU image's packages satisfy each other and the project.

The GPU machine (docs/gpu-check.md) has no registry: what bench needs beyond its image travels
as wheels in .whl/ and is installed with `--no-deps`, so nothing there would notice a missing
or too old requirement until an import fails on the GPU. This reads every wheel's METADATA and
the project's own dependencies (pyproject.toml) and resolves each requirement, under Python
3.12 on Linux x86_64 markers, against the carried wheels first and then the image's package
list (as the GPU machine's provider published it on 2026-11-17; versions where a pip list there gave
them). Exit status 1 when a requirement is met by neither, or a package is carried twice.

    python benchmarks/gpu_check_wheels.py .whl
    python benchmarks/gpu_check_wheels.py --slim-bitsandbytes 130,132 .whl

The project's requirements are its dependencies and its `backends` extra (what `make install`
installs: torchao, bitsandbytes, optimum-quanto), so the GPU run imports what users' runs do.
`--slim-bitsandbytes` first rewrites the carried bitsandbytes wheel with only its CPU library
and the CUDA builds named (bitsandbytes loads `libbitsandbytes_cuda<torch's CUDA>.so`): the whole
wheel, 43 MB of builds for CUDA 11.8 to 13.2 and ROCm, would not fit in a device call.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ImportError:  # Python 3.10: pip's vendored copy of the same parser
    from pip._vendor import tomli as tomllib  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
MARKERS = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "extra": "",
}
# The image's python3 packages, and the versions a session's `pip list` showed there.
IMAGE_VERSIONS = {
    "accelerate": "1.15.0",
    "huggingface-hub": "1.33.0",
    "numpy": "2.5.2",
    "safetensors": "0.8.0",
    "sentencepiece": "0.2.2",
    "tokenizers": "0.23.2",
    "torch": "2.11.0",
    "torchmetrics": "1.9.0",
    "torchvision": "0.26.0",
    "transformers": "5.17.0",
    "triton": "3.6.0",
}
_IMAGE_PACKAGE_LIST = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops
equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch
grpcio h11 h5py hf-xet httpcore httpx humanize huggingface-hub hypothesis idna imageio iniconfig
interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13
nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir
onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout
pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch
torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton
typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray
xxhash yarl zipp
"""
IMAGE_PACKAGES = frozenset(_IMAGE_PACKAGE_LIST.split())
# Project dependencies the GPU check never imports (`bench matrix` builds environments with uv).
NOT_NEEDED_THERE = {"uv": "only `bench matrix` uses it"}


def read_wheel(path: Path) -> tuple[str, Version, list[Requirement]]:
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(name).decode())
    requirements = [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]
    return canonicalize_name(metadata["Name"]), Version(metadata["Version"]), requirements


def project_requirements() -> list[Requirement]:
    """The dependencies and the `backends` extra: what the default install has."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {}).get("backends", [])
    return [Requirement(r) for r in [*project["dependencies"], *extras]]


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def slim_wheel(path: Path, drop: re.Pattern[str]) -> list[str]:
    """Rewrite the wheel at `path` without the members whose name `drop` matches, its RECORD
    rewritten to match (pip checks each installed file against it); returns what was dropped."""
    with zipfile.ZipFile(path) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    dropped = [info.filename for info, _ in members if drop.search(info.filename)]
    kept = [(info, data) for info, data in members if not drop.search(info.filename)]
    record = next(info.filename for info, _ in kept if info.filename.endswith(".dist-info/RECORD"))
    lines = [
        f"{info.filename},{_record_hash(data)},{len(data)}"
        for info, data in kept
        if info.filename != record
    ]
    staging = path.with_suffix(".slim")
    with zipfile.ZipFile(staging, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in kept:
            if info.filename == record:
                data = ("\n".join([*lines, f"{record},,"]) + "\n").encode()
            archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    staging.replace(path)
    return dropped


def slim_bitsandbytes(folder: Path, cuda_versions: list[str]) -> None:
    """Keep bitsandbytes' CPU library and its builds for `cuda_versions` ("130" ...) only."""
    keep = "|".join(["cpu", *(f"cuda{re.escape(v)}" for v in cuda_versions)])
    drop = re.compile(rf"/libbitsandbytes_(?!(?:{keep})\.so$)[^/]+\.so$")
    for path in sorted(folder.glob("bitsandbytes-*.whl")):
        before = path.stat().st_size
        dropped = slim_wheel(path, drop)
        print(
            f"slimmed {path.name}: {before / 2**20:.1f} -> {path.stat().st_size / 2**20:.1f} MiB "
            f"({len(dropped)} native libraries left out; kept cpu, cuda {', '.join(cuda_versions)})"
        )


def resolve(requirement: Requirement, carried: dict[str, Version]) -> tuple[bool, str]:
    """(satisfied, where from) for one requirement."""
    name = canonicalize_name(requirement.name)
    if name in NOT_NEEDED_THERE:
        return True, f"not needed ({NOT_NEEDED_THERE[name]})"
    if name in carried:
        version = carried[name]
        return requirement.specifier.contains(version, prereleases=True), f"carried {version}"
    if name in {canonicalize_name(p) for p in IMAGE_PACKAGES}:
        known = IMAGE_VERSIONS.get(name)
        if known is None:
            return True, "on the image (version not listed)"
        ok = requirement.specifier.contains(Version(known), prereleases=True)
        return ok, f"on the image, {known}"
    return False, "neither carried nor on the image"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheels", type=Path, help="folder of .whl files (.whl)")
    parser.add_argument(
        "--slim-bitsandbytes",
        metavar="CUDA_VERSIONS",
        help="keep only these CUDA builds of bitsandbytes, e.g. 130,132 (and its CPU library)",
    )
    args = parser.parse_args()
    if args.slim_bitsandbytes:
        slim_bitsandbytes(args.wheels, args.slim_bitsandbytes.split(","))

    wheels = sorted(args.wheels.glob("*.whl"))
    if not wheels:
        print(f"error: no wheels in {args.wheels}", file=sys.stderr)
        sys.exit(2)
    carried: dict[str, Version] = {}
    needs: list[tuple[str, Requirement]] = []
    problems: list[str] = []
    for path in wheels:
        name, version, requirements = read_wheel(path)
        if name in carried:
            problems.append(f"{name} carried twice ({carried[name]} and {version})")
        carried[name] = version
        needs += [(f"{name} {version}", r) for r in requirements]
    needs += [("bench (pyproject.toml)", r) for r in project_requirements()]

    for who, requirement in needs:
        if requirement.marker is not None and not requirement.marker.evaluate(MARKERS):
            continue  # an extra, or another Python/platform
        ok, where = resolve(requirement, carried)
        print(f"{'ok ' if ok else 'BAD'} {who:<28} {requirement!s:<36} {where}")
        if not ok:
            problems.append(f"{who} needs {requirement}: {where}")
    total = sum(p.stat().st_size for p in wheels)
    print(f"{len(wheels)} wheels, {total / 2**20:.1f} MiB in {args.wheels}")
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

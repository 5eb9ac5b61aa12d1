#!/usr/bin/env bash
# Wheels for the GPU machine's bare python3 (docs/gpu-check.md). Its image has torch,
# transformers, accelerate and most of what bench imports, but no diffusers, gguf or pydantic,
# none of the backends the default install adds (torchao, bitsandbytes, optimum-quanto), and no
# registry: run this where pip reaches the registry, and carry the folder (`.whl`) to the GPU,
# where benchmarks/gpu_check.sh installs it with --target, so the GPU run imports what a user's
# run imports. The pip flags are the device README's for Python 3.12 on manylinux x86_64;
# --no-deps, so every missing requirement is named here, and benchmarks/gpu_check_wheels.py then
# checks that each requirement of each wheel and of the project (dependencies and `backends`) is
# carried or on the image. bitsandbytes is carried with its CPU library and its builds for the
# image's CUDA only (GPU_WHEELS_BNB_CUDA, default 130,132: the image's torch is cu130): whole, it
# would not fit in a device call. The project itself travels as the checkout (it is put on
# PYTHONPATH there, not installed).
#
#   benchmarks/gpu_wheels.sh            # into .whl/ (git ignores it)
#
# GPU_WHEELS_DIR overrides the folder; GPU_WHEELS_PYTHON the interpreter whose pip downloads.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=${GPU_WHEELS_DIR:-$REPO/.whl}
PY=${GPU_WHEELS_PYTHON:-$REPO/.venv/bin/python}
[[ -x $PY ]] || PY=python3
# The versions this project is tested with (the .venv's), and what they need that the image
# lacks: pydantic's core, annotated-types, typing-inspection and a typing-extensions new enough
# for them (the image's version is not known); importlib-metadata (diffusers) and lazy-importer.
WHEELS=(
    diffusers==0.42.1
    gguf==0.19.0
    pydantic==2.14.4
    pydantic-core==2.50.5
    annotated-types==0.8.0
    typing-inspection==0.4.5
    typing-extensions==4.16.0
    importlib-metadata==10.2.0
    lazy-importer==0.1.0
    # `.[backends]`, at the lock's versions
    torchao==0.18.0
    bitsandbytes==0.50.2
    optimum-quanto==0.2.7
)

mkdir -p "$DEST"
rm -f "$DEST"/*.whl # one version of each: two would stop the whole install there
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DEST" "${WHEELS[@]}"
"$PY" "$REPO/benchmarks/gpu_check_wheels.py" --slim-bitsandbytes "${GPU_WHEELS_BNB_CUDA:-130,132}" \
    "$DEST"

# What a device call sends: tracked and untracked-not-ignored files, plus the carried wheels.
cd "$REPO"
TREE=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s -- 2>/dev/null |
    awk '{ s += $1 } END { print s + 0 }')
WHL=$(stat -c %s -- "$DEST"/*.whl | awk '{ s += $1 } END { print s + 0 }')
awk -v t="$TREE" -v w="$WHL" 'BEGIN {
    printf "working tree %.1f MiB + wheels %.1f MiB = %.1f MiB of the 64 MiB a device call may send\n",
        t / 2^20, w / 2^20, (t + w) / 2^20
    exit (t + w > 48 * 2^20) ? 1 : 0
}' || { echo "error: over 48 MiB: leave less in the working tree before a device call" >&2; exit 1; }

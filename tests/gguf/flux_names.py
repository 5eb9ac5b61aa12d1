"""The converter's plan bound to FLUX's tensor names, for the tests that exercise it on FLUX
checkpoints (the family the community GGUF layout was first written for): the engine takes a
family's names as an argument and has no default family."""

from __future__ import annotations

from functools import partial

from bench.families.flux_gguf import FLUX_TENSOR_NAMES
from bench.gguf import plan

build_plan = partial(plan.build_plan, names=FLUX_TENSOR_NAMES)
choose_tensor_type = partial(plan.choose_tensor_type, names=FLUX_TENSOR_NAMES)

"""The GGUF CUDA kernels (`DIFFUSERS_GGUF_CUDA_KERNELS=true`, with the `kernels` package):
diffusers' GGUF linear layers call the `Isotr0py/ggml` kernels instead of dequantizing in
PyTorch.

diffusers reads the variable once, when `diffusers.quantizers.gguf.utils` is imported, which a
cell's process inherits from the warm server: so the entry does in the cell what that import
does with the variable set (fetch the kernel with `kernels.get_kernel`, under diffusers' own
trust rule, `DIFFUSERS_TRUST_REMOTE_KERNELS=true`), and only the cells that name it use the
kernels. It needs a GGUF variant and a CUDA device of compute capability 7 or more: any other
cell is recorded as failed before it loads.
"""

from __future__ import annotations

from typing import Any, Literal

from bench.speedups.base import ApplyContext, Probe, Speedup, SpeedupConfig

NEEDS_CUDA = (
    "gguf_kernels needs a CUDA device: diffusers uses the GGUF CUDA kernels only when "
    "torch.cuda.is_available() and the compute capability is 7 or more"
)
NEEDS_GGUF = "gguf_kernels applies to GGUF variants only (kind: gguf)"
KERNEL = "Isotr0py/ggml"  # the kernel diffusers.quantizers.gguf.utils loads


class GgufKernelsSpeedupConfig(SpeedupConfig):
    kind: Literal["gguf_kernels"]


class GgufKernelsSpeedup(Speedup):
    kind = "gguf_kernels"
    config_model = GgufKernelsSpeedupConfig
    description = "the GGUF CUDA kernels (DIFFUSERS_GGUF_CUDA_KERNELS)"

    def label(self, spec: Any) -> str:
        return "gguf_kernels"

    def incompatibility(self, spec: Any, variant_kind: str, device_type: str) -> str | None:
        if variant_kind != "gguf":
            return NEEDS_GGUF
        if device_type != "cuda":
            return NEEDS_CUDA
        return None

    def apply(self, pipe: Any, spec: Any, context: ApplyContext) -> Probe:
        import torch  # deferred: loads torch
        from diffusers.quantizers.gguf import utils  # deferred: loads diffusers
        from diffusers.utils.constants import DIFFUSERS_TRUST_REMOTE_KERNELS  # deferred: diffusers

        if torch.cuda.get_device_capability()[0] < 7:
            raise RuntimeError(NEEDS_CUDA)
        if utils.ops is None:
            if not DIFFUSERS_TRUST_REMOTE_KERNELS:
                raise ValueError(
                    f"`{KERNEL}` is not published by a trusted kernel publisher on the Hub: set "
                    "DIFFUSERS_TRUST_REMOTE_KERNELS=true to allow it (diffusers' rule)"
                )
            from kernels import get_kernel  # deferred: loads torch

            utils.ops = get_kernel(KERNEL, trust_remote_code=True)
        return lambda: {}

"""The noise floor: how far full precision moves from itself under a harmless numeric change.

A quantized variant's fidelity only means something next to this row: if full precision with
a different attention kernel already scores PSNR 40 dB against itself, a Q8_0 at 39 dB is at
the floor. The runner generates the second full-precision image set (a variant named
`<full>__noise` or with `noise_floor: true`, generated inside `harmless_change`); `bench score`
then scores it against full precision as the noise-floor row. `noise_floor_scores` is the same
computation for two image sets in hand.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image

from bench.metrics import METRICS
from bench.metrics.base import MetricInputError, PairedMetric
from bench.metrics.images import load_image, pil_to_tensor
from bench.metrics.stats import mean_interval, per_prompt_means

HarmlessChange = Literal["sdpa-math", "no-tf32", "no-reduced-precision"]
NOISE_SUFFIX = "__noise"

ImageLike = Path | str | Image.Image | torch.Tensor


def is_noise_floor(cell: dict[str, Any]) -> bool:
    """Whether a manifest cell is a noise-floor repeat of full precision."""
    spec = cell.get("variant_spec") or {}
    return str(cell.get("variant", "")).endswith(NOISE_SUFFIX) or bool(spec.get("noise_floor"))


@contextlib.contextmanager
def harmless_change(kind: HarmlessChange = "sdpa-math") -> Iterator[None]:
    """Generate inside this to get a numerically different but equivalent full-precision run.

    `sdpa-math`: scaled-dot-product attention through the plain math kernel instead of the
    default (flash / memory-efficient / cuDNN) kernels. `no-tf32`: TF32 off for CUDA matmuls
    and cuDNN convolutions; it bears on float32 only (bf16 and fp16 never use TF32) and torch
    already leaves matmul TF32 off. `no-reduced-precision`: that, and cuBLAS's reduced-precision
    reductions off for bf16 and fp16 matmuls (on by default), so it bears on every dtype.
    Whether a change alters anything for a given device and dtype is `altered_settings`: where
    nothing is altered the floor is exact by construction, and the worker records so.
    """
    if kind == "sdpa-math":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel(SDPBackend.MATH):
            yield
        return
    if kind not in ("no-tf32", "no-reduced-precision"):
        raise ValueError(f"unknown harmless change {kind!r}")
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    old = (matmul.allow_tf32, cudnn.allow_tf32)
    old_reduced = (
        matmul.allow_bf16_reduced_precision_reduction,
        matmul.allow_fp16_reduced_precision_reduction,
    )
    matmul.allow_tf32 = cudnn.allow_tf32 = False
    if kind == "no-reduced-precision":
        matmul.allow_bf16_reduced_precision_reduction = False
        matmul.allow_fp16_reduced_precision_reduction = False
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = old
        matmul.allow_bf16_reduced_precision_reduction = old_reduced[0]
        matmul.allow_fp16_reduced_precision_reduction = old_reduced[1]


def altered_settings(kind: HarmlessChange, device_type: str, dtype: str) -> list[str]:
    """The settings `harmless_change(kind)` turns off, as they stand now, that bear on a
    pipeline computing in `dtype` ("bfloat16", ...) on `device_type` ("cuda", "cpu").

    Empty: the change cannot alter a single operation of that pipeline, and the noise floor
    is an exact copy of full precision (PSNR +inf) by construction, not by measurement.
    """
    if kind == "sdpa-math":
        from torch.backends import cuda

        others = (cuda.flash_sdp_enabled(), cuda.mem_efficient_sdp_enabled())
        if device_type == "cuda":
            others += (cuda.cudnn_sdp_enabled(),)
        return ["scaled_dot_product_attention: math kernel only"] if any(others) else []
    if kind not in ("no-tf32", "no-reduced-precision"):
        raise ValueError(f"unknown harmless change {kind!r}")
    if device_type != "cuda":  # these are cuBLAS's and cuDNN's settings
        return []
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    # TF32 bears on float32 operations: every one of a float32 pipeline, and the Linear layers
    # a 16-bit pipeline keeps in float32 (transformers keeps T5's `wo` so), none of them a
    # convolution.
    candidates = {"torch.backends.cuda.matmul.allow_tf32": matmul.allow_tf32}
    if dtype == "float32":
        candidates["torch.backends.cudnn.allow_tf32"] = cudnn.allow_tf32
    elif kind == "no-reduced-precision" and dtype == "bfloat16":
        name = "torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction"
        candidates[name] = matmul.allow_bf16_reduced_precision_reduction
    elif kind == "no-reduced-precision" and dtype == "float16":
        name = "torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction"
        candidates[name] = matmul.allow_fp16_reduced_precision_reduction
    return [f"{name}: True -> False" for name, on in candidates.items() if on]


def floor_record(kind: HarmlessChange, device_type: str, dtype: str) -> dict[str, Any]:
    """What a noise-floor cell records about its change: which settings it altered, and, where
    none, that its images are full precision's exactly (so a PSNR of +inf is expected)."""
    altered = altered_settings(kind, device_type, dtype)
    out: dict[str, Any] = {"change": kind, "altered": altered, "exact": not altered}
    if not altered:
        out["note"] = (
            f"{kind!r} alters nothing a {dtype} pipeline on {device_type} computes with: "
            "the floor is exact by construction"
        )
    return out


def _tensor(image: ImageLike) -> torch.Tensor | None:
    if isinstance(image, torch.Tensor):
        return image if image.ndim == 4 else image.unsqueeze(0)
    if isinstance(image, Image.Image):
        return pil_to_tensor(image)
    return load_image(Path(image)).tensor


def noise_floor_scores(
    ref_images: Sequence[ImageLike],
    alt_images: Sequence[ImageLike],
    prompt_ids: Sequence[str] | None = None,
    metrics: Sequence[str] = ("psnr", "ssim", "ms_ssim"),
) -> dict[str, dict[str, Any]]:
    """Paired fidelity of `alt_images` against `ref_images` (same order), summarised per metric.

    Returns `{metric: {mean, ci_low, ci_high, n, method, status, note, n_identical, values}}`;
    `values` keeps every per-image value (None for PSNR of identical images).
    """
    if len(ref_images) != len(alt_images):
        raise ValueError(f"{len(ref_images)} reference images but {len(alt_images)} others")
    ids = list(prompt_ids) if prompt_ids is not None else [str(i) for i in range(len(ref_images))]
    pairs = [(_tensor(r), _tensor(a)) for r, a in zip(ref_images, alt_images, strict=True)]
    result: dict[str, dict[str, Any]] = {}
    for metric in metrics:
        paired = METRICS.get(metric)
        if not isinstance(paired, PairedMetric):
            raise MetricInputError(f"{metric!r}: not a paired metric (the noise floor is paired)")
        function = paired.load()
        values: list[float | None] = []
        finite: list[tuple[str, float]] = []
        identical = 0
        notes: set[str] = set()
        for prompt_id, (ref, alt) in zip(ids, pairs, strict=True):
            if ref is None or alt is None:
                values.append(None)
                notes.add("unreadable image")
                continue
            score = function(alt, ref)
            values.append(score.value)
            identical += score.identical
            if score.value is not None:
                finite.append((prompt_id, score.value))
            elif score.status != "ok" and score.note:
                notes.add(score.note)
        summary = mean_interval(per_prompt_means(finite)).as_dict()
        if identical and metric == "psnr":
            notes.add(f"{identical} identical image(s): PSNR +inf, left out of the mean")
            if not finite:
                summary["status"] = "identical"
        if notes:
            summary["note"] = "; ".join(sorted(n for n in [summary["note"], *notes] if n))
        result[metric] = {**summary, "n_identical": identical, "values": values}
    return result

"""The blog's claims, each checked against this run's data.

Every claim gets what the run measured and a verdict, or "not measured" with the reason (no GPU,
the cells it needs failed, energy unsupported). The criteria used for a verdict are stated in its
text: a reader should be able to disagree with the threshold, never with the numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.offload import NO_ACCELERATOR
from bench.reporting.data import (
    RunData,
    energy_reason,
    offload_order,
    quant_of,
    reference_variant,
    speedup_of,
)
from bench.reporting.fmt import gib, missing, num
from bench.reporting.tables import NVML_GROSS, NVML_NET, memory_columns, peak_bytes

SUPPORTED = "supported"
CONTRADICTED = "not supported"
MIXED = "mixed"
NOT_MEASURED = "not measured"
# Yardstick for "quality kept": INT8 W8A8 FLUX.1-dev against BF16 in the SVDQuant paper.
PSNR_YARDSTICK_DB = 27.0


@dataclass(frozen=True)
class Claim:
    key: str
    claim: str
    measured: str
    verdict: str


def _row(run: RunData, variant: str | None, offload: str) -> pd.Series | None:
    """The summary row of (variant, offload) at the run's first resolution, without a
    speed-up (the blog's claims are about the variants as they are)."""
    if variant is None:
        return None
    frame = run.summary
    first_res = frame["resolution"].iloc[0] if len(frame) else None
    plain = frame["cell_id"].map(lambda cell_id: speedup_of(run.cells[cell_id]) is None)
    hit = frame[
        (frame["variant"] == variant)
        & (frame["offload"] == offload)
        & (frame["resolution"] == first_res)
        & plain
    ]
    return None if hit.empty else hit.iloc[0]


def _ok(row: pd.Series | None) -> bool:
    return row is not None and row["status"] in ("ok", "partial") and row["n"] > 0


def _why_not(row: pd.Series | None, name: str) -> str:
    """Why a needed cell has no figures, in words."""
    if row is None:
        return f"{name} is not in this run's config"
    if row["status"] == "missing":
        return f"{name} did not run"
    if _ok(row):
        return ""
    has_type = not missing(row["error_type"])
    error = f"{row['error_type']}: {row['error_message']}" if has_type else row["status"]
    return f"{name} {row['status']} ({_short(error)})"


def _short(text: Any, limit: int = 140) -> str:
    text = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _variant_with_quant(run: RunData, quant: str) -> str | None:
    for cell in run.manifest["cells"]:
        if quant_of(cell) == quant:
            return str(cell["variant"])
    return None


def _quantized_variants(run: RunData) -> list[str]:
    return list(dict.fromkeys(c["variant"] for c in run.manifest["cells"] if quant_of(c)))


def claim_vram(run: RunData) -> Claim:
    claim = "Quantized (Q8_0) transformer about halves VRAM (24 → 12 GB)"
    full = reference_variant(run)
    quants = _quantized_variants(run)
    device_cols = [c for c in memory_columns(run) if c[0] != "host_rss_peak_bytes"]
    if not run.on_gpu or not device_cols:
        host = ""
        q8 = _variant_with_quant(run, "Q8_0") or (quants[0] if quants else None)
        a, b = _row(run, q8, "none"), _row(run, full, "none")
        if _ok(a) and _ok(b):
            qa, qb = peak_bytes(a, "host_rss_peak_bytes"), peak_bytes(b, "host_rss_peak_bytes")
            if qa and qb:
                host = (
                    f" For information only, host RSS peak without offload: {q8} "
                    f"{gib(qa)} GiB vs {full} {gib(qb)} GiB (×{num(qa / qb, 2)}); "
                    "host memory of a CPU run is not VRAM."
                )
        return Claim(
            "vram",
            claim,
            f"No GPU in this run (cells ran on {', '.join(run.devices) or 'no device'}): "
            f"no device memory counter.{host}",
            NOT_MEASURED,
        )
    counter, header = device_cols[0]
    label = header.replace(" (GiB)", "")
    parts, ratios, gaps = [], [], []
    for offload in offload_order(run):
        ref = _row(run, full, offload)
        for variant in quants:
            row = _row(run, variant, offload)
            if row is None:
                continue
            if not _ok(row):
                gaps.append(_why_not(row, f"{variant}/{offload}"))
                continue
            if not _ok(ref):
                parts.append(
                    f"{variant}/{offload} {gib(peak_bytes(row, counter))} GiB, "
                    f"full precision has no figure ({_why_not(ref, f'{full}/{offload}')})"
                )
                continue
            a, b = peak_bytes(row, counter), peak_bytes(ref, counter)
            if a is None or b is None:
                continue
            ratios.append((variant, a / b))
            gross = ""
            if counter == NVML_NET:  # the whole device's figures beside, labelled
                ga, gb = peak_bytes(row, NVML_GROSS), peak_bytes(ref, NVML_GROSS)
                gross = f"; gross {gib(ga)} vs {gib(gb)} GiB"
            parts.append(
                f"{variant}/{offload}: {gib(a)} GiB vs full {gib(b)} GiB (×{num(a / b, 2)}{gross})"
            )
    if not ratios:
        return Claim(
            "vram",
            claim,
            "No pair of ok cells (quantized and full precision, same offload) to compare. "
            + "; ".join(parts + gaps),
            NOT_MEASURED,
        )
    q8 = _variant_with_quant(run, "Q8_0")
    q8_ratios = [r for v, r in ratios if v == q8] or [r for _, r in ratios]
    best = min(q8_ratios)
    verdict = SUPPORTED if best <= 0.6 else MIXED if best <= 0.75 else CONTRADICTED
    return Claim(
        "vram",
        claim,
        f"{label} peak: " + "; ".join(parts) + ". Criterion: Q8_0 at most 0.6× full precision "
        "(0.6–0.75: mixed).",
        verdict,
    )


def claim_quality(run: RunData) -> Claim:
    claim = "Quality is kept (Q8_0 'excellent', like full precision)"
    synthetic = (
        " Random weights (synthetic model): this measures quantization error only, not image "
        "quality."
        if run.synthetic
        else ""
    )
    if run.scores is None:
        return Claim("quality", claim, f"{run.scores_note}.", NOT_MEASURED)
    scores = run.quality
    q8 = _variant_with_quant(run, "Q8_0") or next(iter(_quantized_variants(run)), None)
    if q8 is None:
        return Claim("quality", claim, "no quantized variant in this run", NOT_MEASURED)
    found = []
    for _, row in run.summary.iterrows():
        if row["variant"] != q8:
            continue
        psnr = scores.get((row["cell_id"], "psnr"))
        ssim = scores.get((row["cell_id"], "ssim"))
        if psnr is None:
            continue
        found.append((row, psnr, ssim))
    usable = [
        f
        for f in found
        if f[1].get("status") in ("ok", "identical", "constant") or not missing(f[1].get("mean"))
    ]
    if not usable:
        why = "; ".join(
            f"{r['offload']}: {p.get('status')} {p.get('note') or ''}".strip() for r, p, _ in found
        )
        return Claim("quality", claim, f"no PSNR for {q8} ({why or 'no scores'}).", NOT_MEASURED)
    row, psnr, ssim = usable[0]
    if psnr.get("status") == "identical":
        text = f"{q8}/{row['offload']}: images identical to full precision (PSNR ∞)."
        verdict = SUPPORTED
    else:
        low = psnr.get("ci_low")
        bound = float(low) if not missing(low) else float(psnr["mean"])
        spread = (
            f"no interval, so the mean stands for the lower bound (n={psnr.get('n')} prompts)"
            if missing(low)
            else f"[{num(low)}, {num(psnr.get('ci_high'))}] "
            f"(95%, {str(psnr.get('method')).split(' ')[0]}, n={psnr.get('n')} prompts)"
        )
        text = f"{q8}/{row['offload']}: PSNR {num(psnr['mean'])} dB {spread}"
        if ssim and not missing(ssim.get("mean")):
            text += f", SSIM {num(ssim['mean'], 4)}"
            if not missing(ssim.get("ci_low")):
                text += f" [{num(ssim['ci_low'], 4)}, {num(ssim.get('ci_high'), 4)}]"
        text += (
            f". Criterion: the lower 95% bound at least {PSNR_YARDSTICK_DB} dB, INT8 W8A8's "
            "PSNR against BF16 in the SVDQuant paper (*published*)."
        )
        verdict = SUPPORTED if bound >= PSNR_YARDSTICK_DB else CONTRADICTED
    floor = _noise_floor_text(run, scores)
    return Claim("quality", claim, text + floor + synthetic, verdict)


def _noise_floor_text(run: RunData, scores: dict[tuple[str, str], dict[str, Any]]) -> str:
    for cell in run.manifest["cells"]:
        row = scores.get((cell["cell_id"], "psnr"))
        if row is not None and row.get("role") == "noise_floor":
            if row.get("status") == "identical":
                return (
                    " Noise floor: identical to full precision "
                    "(the harmless numeric change altered nothing)."
                )
            return f" Noise floor ({cell['variant']}): PSNR {num(row.get('mean'))} dB."
    return ""


def claim_load(run: RunData) -> Claim:
    claim = "Quantized files load faster"
    full = reference_variant(run)
    parts, faster, slower, gaps = [], 0, 0, []
    for offload in offload_order(run):
        ref = _row(run, full, offload)
        for variant in _quantized_variants(run):
            row = _row(run, variant, offload)
            if row is None:
                continue
            if missing(row["load_s"]) or ref is None or missing(ref["load_s"]):
                gaps.append(f"{variant}/{offload}")
                continue
            a, b = float(row["load_s"]), float(ref["load_s"])
            faster += a < b
            slower += a >= b
            parts.append(f"{variant}/{offload} {num(a)} s vs full {num(b)} s")
    if not parts:
        return Claim(
            "load",
            claim,
            "no pair of cells with load times (quantized and full precision, same offload).",
            NOT_MEASURED,
        )
    verdict = SUPPORTED if not slower else CONTRADICTED if not faster else MIXED
    text = "; ".join(parts) + "."
    if gaps:
        text += f" {len(gaps)} quantized cell(s) have no load time to compare (see the table)."
    if run.synthetic:
        text += " Tiny random-weight files: load time is mostly fixed overhead here."
    return Claim("load", claim, text, verdict)


def claim_power(run: RunData) -> Claim:
    claim = "Lower power draw with the quantized model"
    full = reference_variant(run)
    measured = run.summary["median_energy_j"].notna().any()
    if not measured:
        return Claim("power", claim, energy_reason(run) + ".", NOT_MEASURED)
    parts, lower, higher = [], 0, 0
    for offload in offload_order(run):
        ref = _row(run, full, offload)
        for variant in _quantized_variants(run):
            row = _row(run, variant, offload)
            if row is None or ref is None:
                continue
            if missing(row["median_energy_j"]) or missing(ref["median_energy_j"]):
                continue
            pa = float(row["median_energy_j"]) / float(row["median_s"])
            pb = float(ref["median_energy_j"]) / float(ref["median_s"])
            lower += pa < pb
            higher += pa >= pb
            parts.append(
                f"{variant}/{offload}: {num(pa)} W, {num(row['median_energy_j'])} J/image vs "
                f"full {num(pb)} W, {num(ref['median_energy_j'])} J/image"
            )
    if not parts:
        return Claim(
            "power", claim, "energy measured, but no pair of cells to compare.", NOT_MEASURED
        )
    verdict = SUPPORTED if not higher else CONTRADICTED if not lower else MIXED
    return Claim(
        "power",
        claim,
        "Mean power = median energy per image / median time per image. " + "; ".join(parts) + ".",
        verdict,
    )


def claim_sequential(run: RunData) -> Claim:
    claim = "enable_sequential_cpu_offload() fails with GGUF (KeyError: None)"
    version = ((run.manifest.get("environment") or {}).get("packages") or {}).get("diffusers")
    found = [(v, _row(run, v, "sequential")) for v in _quantized_variants(run)]
    rows = [(v, r) for v, r in found if r is not None]
    if not rows:
        return Claim(
            "sequential",
            claim,
            "the run has no GGUF cell with sequential offload.",
            NOT_MEASURED,
        )
    untested = [v for v, r in rows if r["status"] == "missing"]
    rows = [(v, r) for v, r in rows if r["status"] != "missing"]
    if not rows:
        return Claim(
            "sequential",
            claim,
            f"the GGUF cells with sequential offload ({', '.join(untested)}) did not run"
            + (" (the run is unfinished)." if not run.finished else "."),
            NOT_MEASURED,
        )
    full = _row(run, reference_variant(run), "sequential")
    key_errors = [v for v, r in rows if r["error_type"] == "KeyError"]
    ran = [v for v, r in rows if _ok(r)]
    other = [(v, r) for v, r in rows if not _ok(r) and r["error_type"] != "KeyError"]
    if key_errors and not ran and not other:
        first = next(r for v, r in rows if v == key_errors[0])
        return Claim(
            "sequential",
            claim,
            f"{', '.join(key_errors)} with sequential offload failed with KeyError "
            f"({_short(first['error_message'])}), diffusers {version}.",
            SUPPORTED,
        )
    if ran and not key_errors and not other:
        return Claim(
            "sequential",
            claim,
            f"{', '.join(ran)} ran with sequential offload (diffusers {version}).",
            CONTRADICTED,
        )
    if other and not key_errors and not ran:
        types = {str(r["error_type"]) for _, r in other}
        if full is not None and not _ok(full) and full["error_type"] in types:
            return Claim(
                "sequential",
                claim,
                "Could not be tested: sequential offload failed for full precision too "
                f"({full['error_type']}: {_short(full['error_message'])}), so the GGUF failures "
                f"({', '.join(sorted(types))}) say nothing about GGUF.",
                NOT_MEASURED,
            )
        no_accelerator = [r for _, r in other if NO_ACCELERATOR in str(r["error_message"])]
        if len(no_accelerator) == len(other):
            first = no_accelerator[0]
            return Claim(
                "sequential",
                claim,
                "Could not be tested: no accelerator here, sequential offload itself cannot run "
                f"({first['error_type']}: {_short(first['error_message'])}).",
                NOT_MEASURED,
            )
    parts = [
        f"{v}: {r['status']}" + (f" ({r['error_type']})" if not missing(r["error_type"]) else "")
        for v, r in rows
    ]
    return Claim(
        "sequential",
        claim,
        f"GGUF with sequential offload, diffusers {version}: " + "; ".join(parts) + ".",
        MIXED,
    )


def claim_speed(run: RunData) -> Claim:
    claim = "Q8_0 (model offload) is more than 3× faster than full precision (sequential offload)"
    q8 = _variant_with_quant(run, "Q8_0")
    a = _row(run, q8, "model")
    b = _row(run, reference_variant(run), "sequential")
    gaps = [g for g in (_why_not(a, "Q8_0/model"), _why_not(b, "full/sequential")) if g]
    if gaps or a is None or b is None:
        return Claim("speed", claim, "; ".join(gaps) + ".", NOT_MEASURED)
    speedup = float(b["median_s"]) / float(a["median_s"])
    text = (
        f"Q8_0/model {num(a['median_s'])} s/image (n={a['n']}) vs full/sequential "
        f"{num(b['median_s'])} s/image (n={b['n']}): ×{num(speedup, 2)}."
    )
    verdict = SUPPORTED if speedup > 3 else CONTRADICTED
    if not math.isfinite(speedup):
        verdict = NOT_MEASURED
    return Claim("speed", claim, text, verdict)


def check_claims(run: RunData) -> list[Claim]:
    """Every claim of the blog, in the order the blog makes them."""
    return [
        claim_vram(run),
        claim_quality(run),
        claim_load(run),
        claim_power(run),
        claim_sequential(run),
        claim_speed(run),
    ]

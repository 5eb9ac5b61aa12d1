"""Byte-for-byte conformance of our quantizers with ggml's C reference (through ggml-python).

Each case prints how many blocks matched; any mismatch fails with the count. Dequantized error
is compared too (identical bytes must give identical error; the error must also be plausible).
"""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T

from bench.gguf.quants import dequantize, quantize

TYPES = ["Q8_0", "Q6_K", "Q5_K", "Q4_K"]
# Upper bounds on RMSE relative to the data's RMS for Gaussian data (loose; catches garbage).
REL_RMSE_MAX = {"Q8_0": 0.01, "Q6_K": 0.03, "Q5_K": 0.06, "Q4_K": 0.12}


def _gaussian(rng: np.random.Generator) -> np.ndarray:
    return (rng.standard_normal((12, 3072)) * 0.02).astype(np.float32)


def _heavy_tailed(rng: np.random.Generator) -> np.ndarray:
    x = (rng.standard_t(2, (12, 3072)) * 0.02).astype(np.float32)
    x.reshape(-1)[::997] *= 40  # isolated outliers, like large activations' weights
    return x


def _zeros_and_tiny(rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal((8, 3072)).astype(np.float32)
    x[:, :256] = 0  # whole all-zero superblocks
    x[1, 256:288] = 0  # one all-zero Q8_0 block / Q4_K sub-block
    x[2, 512:768] = 1e-30  # constant tiny block
    x[3, 768:1024] *= 1e-20  # tiny, subnormal fp16 scales
    x[4, 1024:1280] = np.abs(x[4, 1024:1280])  # all positive: min clamps to 0
    x[5, 1280:1536] = -np.abs(x[5, 1280:1536])  # all negative
    x[6, 1536:1792] = np.round(x[6, 1536:1792] * 4) / 4  # many ties and equal values
    x[7, 1792:1824] = 3.0  # constant block
    x[7, 2048:2064] = [1, -1] * 8  # +max and -max in one Q6_K sub-block
    return x


def _mixed_large(rng: np.random.Generator) -> np.ndarray:
    """Many rows (several quantizer chunks) of assorted distributions and per-row scales."""
    rows = []
    for i in range(96):
        kind = i % 6
        if kind == 0:
            r = rng.standard_normal(3072)
        elif kind == 1:
            r = rng.uniform(-1, 1, 3072)
        elif kind == 2:
            r = rng.laplace(size=3072)
        elif kind == 3:
            r = np.where(rng.random(3072) < 0.9, 0.0, rng.standard_normal(3072))  # sparse
        elif kind == 4:
            r = rng.standard_normal(3072) + np.sign(rng.standard_normal(3072)) * 2  # bimodal
        else:
            r = rng.standard_normal(3072) + 5  # offset: positive blocks
        rows.append(r * 10.0 ** rng.uniform(-4, 1))
    return np.stack(rows).astype(np.float32)


CASES = {
    "gaussian": _gaussian,
    "heavy_tailed": _heavy_tailed,
    "zeros_tiny": _zeros_and_tiny,
    "mixed_large": _mixed_large,
}


def _block_mismatches(a: np.ndarray, b: np.ndarray, qtype: str) -> tuple[int, int]:
    size = GGML_QUANT_SIZES[T[qtype]][1]
    bad = (a.reshape(-1, size) != b.reshape(-1, size)).any(axis=1)
    return int(bad.sum()), int(bad.size)


@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_bytes_match_ggml(ggml_quantize, qtype: str, case: str) -> None:
    x = CASES[case](np.random.default_rng(sum(map(ord, case))))
    ours = quantize(x, qtype)
    ref = ggml_quantize(x, qtype, None)
    bad, total = _block_mismatches(ours, ref, qtype)
    print(f"{case} {qtype}: {total - bad}/{total} blocks identical")
    assert bad == 0, f"{bad}/{total} {qtype} blocks differ from ggml"


@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("cols", [3072, 12288, 15360])
def test_flux_shaped_rows_match_ggml(ggml_quantize, qtype: str, cols: int) -> None:
    rng = np.random.default_rng(cols)
    x = (rng.standard_normal((3, cols)) * 0.03).astype(np.float32)
    x[1] *= np.linspace(0.1, 3, cols, dtype=np.float32)  # varying scale along the row
    ours = quantize(x, qtype)
    ref = ggml_quantize(x, qtype, None)
    bad, total = _block_mismatches(ours, ref, qtype)
    print(f"flux {cols} cols {qtype}: {total - bad}/{total} blocks identical")
    assert bad == 0


@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("weights", ["ones", "random"])
@pytest.mark.parametrize("case", ["heavy_tailed", "zeros_tiny", "mixed_large"])
def test_imatrix_path_matches_ggml(ggml_quantize, qtype: str, weights: str, case: str) -> None:
    rng = np.random.default_rng(7)
    x = CASES[case](rng)
    if weights == "ones":  # what stable-diffusion.cpp passes when it has no imatrix
        imatrix = np.ones(x.shape[1], dtype=np.float32)
    else:
        imatrix = (rng.random(x.shape[1]) ** 2 * 5).astype(np.float32)
        imatrix[:40] = 0  # zero importance columns exist in real imatrix files
    ours = quantize(x, qtype, imatrix=imatrix)
    ref = ggml_quantize(x, qtype, imatrix)
    bad, total = _block_mismatches(ours, ref, qtype)
    print(f"imatrix {weights} {case} {qtype}: {total - bad}/{total} blocks identical")
    assert bad == 0


def test_imatrix_changes_k_quant_bytes_but_not_q8_0() -> None:
    x = _gaussian(np.random.default_rng(3))
    ones = np.ones(x.shape[1], dtype=np.float32)
    assert np.array_equal(quantize(x, "Q8_0", imatrix=ones), quantize(x, "Q8_0"))
    assert not np.array_equal(quantize(x, "Q4_K", imatrix=ones), quantize(x, "Q4_K"))


@pytest.mark.parametrize("qtype", TYPES)
def test_dequantized_error_equals_ggml(ggml_quantize, qtype: str) -> None:
    x = _heavy_tailed(np.random.default_rng(11))
    ours = dequantize(quantize(x, qtype), qtype, x.shape[1])
    ref = dequantize(ggml_quantize(x, qtype, None), qtype, x.shape[1])
    err_ours = float(np.sqrt(np.mean((ours - x) ** 2)))
    err_ref = float(np.sqrt(np.mean((ref - x) ** 2)))
    print(f"{qtype}: RMSE ours {err_ours:.6e} ggml {err_ref:.6e}")
    assert err_ours == err_ref


@pytest.mark.parametrize("qtype", TYPES)
def test_error_is_plausible_for_gaussian(qtype: str) -> None:
    x = _gaussian(np.random.default_rng(5))
    y = dequantize(quantize(x, qtype), qtype, x.shape[1])
    rel = float(np.sqrt(np.mean((y - x) ** 2)) / np.sqrt(np.mean(x**2)))
    assert 0 < rel < REL_RMSE_MAX[qtype]

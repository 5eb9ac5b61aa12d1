"""Unit behaviour of the quantizer entry points (no ggml needed)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.gguf import quants
from bench.gguf._fit import seqsum
from bench.gguf._fp import roundf
from bench.gguf.quants import dequantize, quantize, row_bytes


def test_seqsum_is_left_to_right_float32() -> None:
    rng = np.random.default_rng(0)
    for cols in (1, 2, 5, 300):
        a = (rng.standard_normal((32, cols)) * 10.0 ** rng.uniform(-6, 6, (32, 1))).astype(
            np.float32
        )
        expect = a[0].copy()
        for i in range(1, 32):
            expect = (expect + a[i]).astype(np.float32)
        assert np.array_equal(seqsum(a), expect)


def test_roundf_rounds_half_away_from_zero() -> None:
    v = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999997, -0.49999997, 126.5, 3.2], np.float32)
    assert roundf(v).tolist() == [1, 2, 3, -1, -3, 0, 0, 127, 3]


@pytest.mark.parametrize(
    ("qtype", "cols", "nbytes"),
    [
        ("Q8_0", 64, 68),
        ("Q6_K", 512, 420),
        ("Q5_K", 256, 176),
        ("Q4_K", 3072, 1728),
        ("F16", 10, 20),
        ("BF16", 10, 20),
        ("F32", 3, 12),
    ],
)
def test_row_bytes(qtype: str, cols: int, nbytes: int) -> None:
    assert row_bytes(qtype, cols) == nbytes
    x = np.random.default_rng(1).standard_normal((2, cols)).astype(np.float32)
    assert quantize(x, qtype).shape == (2, nbytes)


def test_k_types_reject_partial_blocks() -> None:
    with pytest.raises(ValueError, match="multiple of 256"):
        quantize(np.zeros((2, 320), np.float32), "Q4_K")


def test_quantize_rejects_wrong_rank_and_imatrix_length() -> None:
    with pytest.raises(ValueError, match="2-D"):
        quantize(np.zeros(256, np.float32), "Q4_K")
    with pytest.raises(ValueError, match="one per column"):
        quantize(np.zeros((1, 256), np.float32), "Q4_K", imatrix=np.ones(10, np.float32))


@pytest.mark.parametrize("qtype", ["F32", "F16", "BF16"])
def test_float_types_round_trip(qtype: str) -> None:
    x = np.random.default_rng(2).standard_normal((3, 8)).astype(np.float32)
    y = dequantize(quantize(x, qtype), qtype, 8)
    tol = {"F32": 0, "F16": 1e-3, "BF16": 1e-2}[qtype]
    np.testing.assert_allclose(y, x, rtol=tol, atol=tol)


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_K", "Q6_K"])
def test_chunking_and_threads_do_not_change_bytes(
    qtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = np.random.default_rng(3).standard_normal((37, 512)).astype(np.float32)
    whole = quantize(x, qtype)
    monkeypatch.setattr(quants, "CHUNK_WEIGHTS", 512 * 5)  # 8 chunks, the last one short
    assert np.array_equal(quantize(x, qtype), whole)
    assert np.array_equal(quantize(x, qtype, threads=3), whole)
    per_row = np.concatenate([quantize(x[i : i + 1], qtype) for i in range(37)])
    assert np.array_equal(per_row, whole)


def test_all_zero_tensor_gives_zero_blocks_and_zero_output() -> None:
    x = np.zeros((2, 256), np.float32)
    for qtype in ("Q8_0", "Q6_K", "Q5_K", "Q4_K"):
        q = quantize(x, qtype)
        assert not dequantize(q, qtype, 256).any()
    assert not quantize(x, "Q6_K").any()  # ggml memsets zero Q6_K blocks

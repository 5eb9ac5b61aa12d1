"""Shared fixtures: the ggml conformance oracle and a tiny random FLUX transformer on disk."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

TINY_FLUX = dict(
    patch_size=1,
    in_channels=16,
    num_layers=1,
    num_single_layers=1,
    attention_head_dim=64,
    num_attention_heads=4,
    joint_attention_dim=64,
    pooled_projection_dim=32,
    guidance_embeds=True,
    axes_dims_rope=(16, 24, 24),
)

Oracle = Callable[[np.ndarray, str, "np.ndarray | None"], np.ndarray]


@pytest.fixture(scope="session")
def ggml_quantize() -> Oracle:
    """ggml's own ``ggml_quantize_chunk`` (via ggml-python), single-threaded; bytes (rows, row)."""
    ggml = pytest.importorskip("ggml")

    def run(x: np.ndarray, qtype: str, imatrix: np.ndarray | None = None) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        rows, cols = x.shape
        tid = getattr(ggml, f"GGML_TYPE_{qtype}")
        row = ggml.ggml_row_size(tid, cols)
        out = np.zeros(rows * row, dtype=np.uint8)
        im = None if imatrix is None else np.ascontiguousarray(imatrix, dtype=np.float32)
        fptr = ctypes.POINTER(ctypes.c_float)
        written = ggml.ggml_quantize_chunk(
            tid,
            x.ctypes.data_as(fptr),
            out.ctypes.data_as(ctypes.c_void_p),
            0,
            rows,
            cols,
            None if im is None else im.ctypes.data_as(fptr),
        )
        assert written == rows * row
        return out.reshape(rows, row)

    return run


@pytest.fixture(scope="session")
def tiny_flux_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pipeline-shaped folder with only ``transformer/`` (width 256, one block of each kind)."""
    from diffusers import FluxTransformer2DModel

    root = tmp_path_factory.mktemp("tiny-flux")
    torch.manual_seed(0)
    model = FluxTransformer2DModel(**TINY_FLUX)
    model.save_pretrained(root / "transformer")
    return root


@pytest.fixture()
def flux_inputs() -> dict[str, torch.Tensor]:
    """Deterministic forward inputs for the tiny FLUX transformer."""
    g = torch.Generator().manual_seed(1)
    return dict(
        hidden_states=torch.randn(1, 64, 16, generator=g),
        encoder_hidden_states=torch.randn(1, 8, 64, generator=g),
        pooled_projections=torch.randn(1, 32, generator=g),
        timestep=torch.tensor([0.5]),
        img_ids=torch.zeros(64, 3),
        txt_ids=torch.zeros(8, 3),
        guidance=torch.tensor([3.5]),
    )

"""Tensors of more than ggml's four dimensions (Wan's Conv3d patch embedding).

ggml's quantizers and its C loader stop at 4 dimensions, the GGUF format does not: a tensor
info records any number. ComfyUI-GGUF's Wan files carry the 5-D patch embedding as an F32
tensor with all five dimensions (tools/fix_5d_tensors.py appends it after quantization), which
gguf's reader and diffusers' loader read back as it was. The converter does the same whatever
the family and file type.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from safetensors.torch import save_file

from bench.families.gguf import quantize_checkpoint
from bench.gguf.header import read_header
from bench.gguf.qtypes import file_quant_type
from tests.gguf.flux_names import choose_tensor_type

CONV3D = "transformer_blocks.0.patch.weight"  # inside a block: only the dimension rule keeps it
LINEAR = "transformer_blocks.0.attn.to_q.weight"


@pytest.mark.parametrize("quant", ["F16", "BF16", "Q8_0", "Q4_K"])
@pytest.mark.parametrize("source", ["F32", "BF16"])
def test_more_than_four_dimensions_are_f32_for_every_file_type(quant: str, source: str) -> None:
    ft = file_quant_type(quant)
    assert choose_tensor_type(CONV3D, (256, 16, 1, 2, 2), source, ft) == T.F32
    assert choose_tensor_type(CONV3D, (256, 16, 2, 2), source, ft) != T.F32  # 4-D: as before


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_K"])
def test_a_5d_tensor_is_written_with_all_its_dimensions(tmp_path: Path, quant: str) -> None:
    gen = torch.Generator().manual_seed(0)
    conv = torch.randn(256, 16, 1, 2, 2, generator=gen)
    save_file(
        {CONV3D: conv, LINEAR: torch.randn(256, 256, generator=gen)}, tmp_path / "m.safetensors"
    )
    out = tmp_path / f"m-{quant}.gguf"
    summary = quantize_checkpoint(
        tmp_path / "m.safetensors", out, quant, key_names="diffusers", jobs=1
    )
    assert summary.tensor_counts == {"F32": 1, quant: 1}

    ours = {t.name: t for t in read_header(out).tensors}[CONV3D]
    assert ours.ggml_type == "F32" and ours.shape == (2, 2, 1, 16, 256)  # GGUF order
    tensor = {t.name: t for t in GGUFReader(out).tensors}[CONV3D]
    assert tuple(int(d) for d in tensor.shape) == (2, 2, 1, 16, 256)
    np.testing.assert_array_equal(np.asarray(tensor.data), conv.numpy())  # exact, in torch order

"""Names, ggml ids and file-type codes of the output types we can produce.

One table so that the converter, the CLI and other parts of the harness agree on what a type
name like ``Q4_K_M`` means: which ggml tensor type the bulk of the weights gets, which type the
fused attention ``qkv`` weights get (the ``_M`` mixes raise them one level, as ComfyUI-GGUF's
patched llama-quantize does for FLUX), and which ``general.file_type`` code the file carries.
"""

from __future__ import annotations

from dataclasses import dataclass

from gguf import GGMLQuantizationType as T


@dataclass(frozen=True)
class FileQuantType:
    """A user-facing quantization choice for a whole checkpoint."""

    name: str
    base: T  # type of ordinary quantizable weights
    qkv: T  # type of fused attention qkv weights (differs only for the _M mixes)
    file_type: int  # value of general.file_type (llama_ftype)


_FILE_TYPES: dict[str, FileQuantType] = {
    f.name: f
    for f in (
        FileQuantType("F16", T.F16, T.F16, 1),
        FileQuantType("BF16", T.BF16, T.BF16, 32),
        FileQuantType("Q8_0", T.Q8_0, T.Q8_0, 7),
        FileQuantType("Q6_K", T.Q6_K, T.Q6_K, 18),
        # Pure Q5_K / Q4_K equal the _S mixes for FLUX (no FLUX tensor matches the _S rules),
        # so they carry the _S file-type codes, like llama-quantize output would.
        FileQuantType("Q5_K", T.Q5_K, T.Q5_K, 16),
        FileQuantType("Q4_K", T.Q4_K, T.Q4_K, 14),
        FileQuantType("Q5_K_S", T.Q5_K, T.Q5_K, 16),
        FileQuantType("Q5_K_M", T.Q5_K, T.Q6_K, 17),
        FileQuantType("Q4_K_S", T.Q4_K, T.Q4_K, 14),
        FileQuantType("Q4_K_M", T.Q4_K, T.Q5_K, 15),
    )
}


def supported_quant_types() -> list[str]:
    """Names accepted by ``quantize_checkpoint`` and ``bench quantize --type``."""
    return list(_FILE_TYPES)


def file_quant_type(name: str) -> FileQuantType:
    """Look a type name up (case-insensitive); raise ``ValueError`` naming the valid choices."""
    key = name.strip().upper()
    try:
        return _FILE_TYPES[key]
    except KeyError:
        valid = ", ".join(_FILE_TYPES)
        raise ValueError(f"unknown quantization type {name!r}; expected one of: {valid}") from None


def tensor_type(name: T | str) -> T:
    """ggml tensor type from its name (``"Q4_K"`` -> ``GGMLQuantizationType.Q4_K``) or value."""
    if not isinstance(name, str):
        return T(name)
    try:
        return T[name.strip().upper()]
    except KeyError:
        raise ValueError(f"unknown ggml tensor type {name!r}") from None

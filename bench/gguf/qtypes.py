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


def bulk_type_of(declared: str) -> str:
    """The ggml type most weights of a file of type `declared` have: the converter's base type
    for the names it makes, else the name without its mix suffix (``Q3_K_S`` -> ``Q3_K``; the
    _S/_M mixes raise some tensors a level, never most of them)."""
    try:
        return file_quant_type(declared).base.name
    except ValueError:
        return declared.strip().upper().removesuffix("_S").removesuffix("_M")


#: ggml types that are plain floats: where a tensor cannot take a block type (a width that is
#: not a multiple of the block, SD3.5 Large's 2432 under the K-quants) a file keeps it in one.
FLOAT_TYPES = ("F32", "F16", "BF16")


def bulk_type(weights_per_type: dict[str, int]) -> str | None:
    """The ggml type a file's weights are stored as: the block type holding the most weights
    (tensors a block type cannot take stay float: 77% of SD3.5 Large's under the K-quants);
    in a file with no block type, the float type holding the most weights, F32 aside (norms
    and biases stay F32 in every community file). None when all are F32."""
    blocks = {t: n for t, n in weights_per_type.items() if t not in FLOAT_TYPES}
    held = blocks or {t: n for t, n in weights_per_type.items() if t != "F32"}
    return max(held, key=lambda t: held[t]) if held else None


def declared_type_mismatch(declared: str, weights_per_type: dict[str, int]) -> str | None:
    """Why a file whose tensors hold these weights per ggml type is not a `declared` file, or
    None when it is. A variant that says Q4_K over a Q8_0 file would otherwise be measured,
    tabled and scored as Q4_K."""
    expected = bulk_type_of(declared)
    found = bulk_type(weights_per_type)
    if found == expected:
        return None
    total = sum(weights_per_type.values()) or 1
    shares = ", ".join(
        f"{t} {n / total:.0%}" for t, n in sorted(weights_per_type.items(), key=lambda i: -i[1])
    )
    if found is None:
        held = "only F32 weights"
    elif found in FLOAT_TYPES and expected not in FLOAT_TYPES:
        held = f"no block-quantized weights ({found} for the most)"
    else:
        held = f"{found} weights"
    return (
        f"the file holds {held} (weights per type: {shares}), not the declared quant {declared}"
        + (f" ({expected} weights)" if expected != declared else "")
    )

"""Load a variant the way users do, then apply an offload mode.

Each backend (bench/backends/) says how its variant is loaded, through diffusers' own API;
this module holds what they share (dtypes, devices, the pipeline's classes, `from_pretrained`).
The offload modes are bench.offload's; a variant is loaded by its backend
(bench.backends.load_pipeline). Nothing here works
around a library failure: an exception is the measurement (the runner records it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda:0")
    return device


def model_index(base: str, revision: str | None) -> dict[str, Any]:
    local = Path(base)
    if local.is_dir():
        return json.loads((local / "model_index.json").read_text())
    from diffusers import DiffusionPipeline

    return dict(DiffusionPipeline.load_config(base, revision=revision))


def transformer_class(base: str, revision: str | None = None) -> type:
    """The transformer class the base pipeline names in its model_index.json."""
    import diffusers

    library, class_name = model_index(base, revision)["transformer"]
    if library != "diffusers":
        raise ValueError(f"{base}: transformer comes from {library!r}, expected diffusers")
    return getattr(diffusers, class_name)


def import_pipeline_classes(base: str, revision: str | None = None) -> None:
    """Import every class the pipeline names, so load time measures loading, not imports."""
    import importlib

    import diffusers

    for entry in model_index(base, revision).values():
        if isinstance(entry, list) and len(entry) == 2 and entry[0]:
            library, class_name = entry
            module = diffusers if library == "diffusers" else importlib.import_module(library)
            getattr(module, class_name, None)


def pipeline_class(base: str, revision: str | None = None) -> type:
    """The pipeline class the base names in its model_index.json (``_class_name``)."""
    import diffusers

    name = model_index(base, revision).get("_class_name")
    cls = getattr(diffusers, str(name), None)
    if not isinstance(cls, type):
        raise ValueError(f"{base}: model_index.json names pipeline {name!r}, not a diffusers one")
    return cls


def from_pretrained(base: str, dtype: str, revision: str | None = None, **kwargs: Any) -> Any:
    """`<Pipeline>.from_pretrained` as every backend calls it, progress bars off.

    Called on the class the folder names, not on DiffusionPipeline: diffusers 0.42 reads a
    pipeline's optional components (`_optional_components`) from the class it is called on,
    so `DiffusionPipeline.from_pretrained(wan, transformer=quantized)` takes the passed
    transformer for a config value and loads the folder's full-precision one instead
    (WanPipeline's transformer is optional, for Wan 2.2's second expert).
    """
    if revision:
        kwargs["revision"] = revision
    cls = pipeline_class(base, revision)
    pipe = cls.from_pretrained(base, torch_dtype=torch_dtype(dtype), **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def component_weights(pipe: Any) -> dict[str, dict[str, int]]:
    """Parameters and bytes per model component as loaded (GGUF tensors count packed bytes,
    tensor subclasses the bytes of their inner tensors, bitsandbytes weights their
    quantization state too)."""
    out: dict[str, dict[str, int]] = {}
    for name, component in pipe.components.items():
        if not isinstance(component, torch.nn.Module):
            continue
        params = 0
        nbytes = 0
        for tensor in list(component.parameters()) + list(component.buffers()):
            nbytes += storage_bytes(tensor)
            nbytes += _bitsandbytes_state_bytes(tensor)
            shape = getattr(tensor, "quant_shape", None)
            bnb_state = getattr(tensor, "quant_state", None)  # bitsandbytes Params4bit
            shape = bnb_state.shape if bnb_state is not None else shape
            params += int(torch.Size(shape).numel()) if shape is not None else tensor.numel()
        out[name] = {"parameters": params, "bytes": nbytes}
    return out


def storage_bytes(tensor: torch.Tensor) -> int:
    """Bytes a tensor really holds. A wrapper tensor subclass (torchao's `Int8Tensor`, quanto's
    `WeightQBytesTensor`) reports its logical dtype's element size; what it stores is the inner
    tensors it flattens to (`__tensor_flatten__`), counted recursively."""
    from torch.utils._python_dispatch import is_traceable_wrapper_subclass

    if is_traceable_wrapper_subclass(tensor):
        names, _ = tensor.__tensor_flatten__()  # type: ignore[attr-defined]
        return sum(storage_bytes(getattr(tensor, n)) for n in names)
    return tensor.numel() * tensor.element_size()


def _bitsandbytes_state_bytes(tensor: Any) -> int:
    """Bytes bitsandbytes keeps beside a quantized weight, outside parameters and buffers: a
    4-bit weight's `quant_state` (absmax, code table, offset, nested state) and an int8
    weight's row scales (`SCB`; its `CB` is the weight's own data)."""
    parts: list[Any] = []
    state = getattr(tensor, "quant_state", None)
    if state is not None:
        parts += [state.absmax, state.code, state.offset]
        nested = getattr(state, "state2", None)
        if nested is not None:
            parts += [nested.absmax, nested.code]
    parts.append(getattr(tensor, "SCB", None))
    unique = {id(t): t for t in parts if isinstance(t, torch.Tensor)}
    return sum(t.numel() * t.element_size() for t in unique.values())

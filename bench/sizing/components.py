"""What each pipeline component weighs on the device, computed from configs, never from weights.

Models are built on the meta device (`accelerate.init_empty_weights`) from their config files
(a diffusers folder's model_index.json + component config.json) or from a model family's
built-in architecture (`bench.families.flux.FLUX_DEV`), so FLUX.1-dev's 17 billion weights are
sized on any laptop in seconds. Bytes are counted the way
`bench.models.loading.component_weights` counts what was really loaded (parameters and buffers,
tied tensors once), with the dtype each tensor would get:
the pipeline dtype for floating tensors, float32 where transformers keeps modules in float32
(`_keep_in_fp32_modules` for float16), and for a GGUF transformer the packed size of every
quantized tensor, while F32/F16 tensors from the file are cast to the compute dtype by diffusers'
loader (`load_model_dict_into_meta`), exactly as `from_single_file` does.

What is the model family's is an argument: its name and denoiser (which component a layout
replaces, which formulas size each phase), its GGUF tensor names (the community recipe's types).
A family named by its registry name, or found from a pipeline's or denoiser's class, is looked
up by bench/families/sizing.py, which calls these.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T

from bench.errors import ArgumentError, UserInputError
from bench.gguf.errors import GGUFFileError
from bench.gguf.inspect import summarize_gguf
from bench.gguf.names import TensorNames
from bench.gguf.plan import choose_tensor_type
from bench.gguf.qtypes import FileQuantType, file_quant_type, supported_quant_types

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
#: ggml types diffusers' GGUF loader turns into plain torch tensors (then cast to compute dtype).
TORCH_NATIVE_GGUF_TYPES = ("F32", "F16")
#: Bytes per weight that diffusers' dequantize functions hold at once while unpacking one
#: tensor (quantizers/gguf/utils.py): Q8_0 multiplies a float16 scale by an int8 view (2 B);
#: K-quants shift and mask uint8 nibbles and then compute `d * q - m` in float16 (about 5 B);
#: BF16 widens to int32 and shifts (8 B). The cast to the compute dtype adds its own bytes.
DEQUANT_INTERMEDIATE_BYTES = {"Q8_0": 2, "BF16": 8}
DEFAULT_DEQUANT_INTERMEDIATE = 5


#: Modules of a component that differ only in the index of their block: the name with that
#: index (its first numeric part) as "{}", the index ranges [start, stop) present, and
#: (in_features, out_features) for a layer that has them (what a LoRA adapter wraps).
ModuleGroup = tuple[str, tuple[tuple[int, int], ...], int | None, int | None]


@dataclass(frozen=True)
class Component:
    """One model component as it sits on the device."""

    name: str
    class_name: str
    dtype: str  # what floating tensors are loaded as (GGUF: the compute dtype)
    parameters: int  # parameters and buffers, numel (as component_weights counts them)
    bytes: int
    leaf_bytes: int  # the largest module's own tensors: sequential and leaf group offload
    leaf_name: str
    block_bytes: int  # the largest offload block (an entry of a top-level ModuleList)
    outside_blocks_bytes: int  # what block-level group offload keeps on the device meanwhile
    n_blocks: int
    dequant_bytes: int = 0  # GGUF: scratch to dequantise the largest quantized tensor once
    dequant_tensor: str | None = None
    weights_format: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    modules: tuple[ModuleGroup, ...] = ()  # its module names and layer widths (module_groups)


def module_names(groups: tuple[ModuleGroup, ...]) -> Iterator[tuple[str, int | None, int | None]]:
    """(name, in_features, out_features) of every module of a component's `modules`, as
    `named_modules` lists them."""
    for template, ranges, inputs, outputs in groups:
        for start, stop in ranges:
            for index in range(start, stop):
                yield template.replace("{}", str(index), 1), inputs, outputs


@dataclass(frozen=True)
class PipelineComponents:
    """The components of one pipeline variant, and the order model offload moves them in."""

    label: str
    components: dict[str, Component]
    offload_order: tuple[str, ...]
    transformer_format: str
    family: str = "flux"  # bench.families name: its activation formulas size each phase

    @property
    def bytes(self) -> int:
        return sum(c.bytes for c in self.components.values())


@dataclass(frozen=True)
class GGUFLayout:
    """ggml type of every transformer parameter (diffusers names), and the file's exact total.

    `types` is exact when the file uses diffusers names; for BFL-named files (fused qkv) and for
    `--model` predictions without a file it follows the community recipe
    (`bench.gguf.plan.choose_tensor_type`), which only the per-module split depends on: the
    component total always comes from the file header when there is a file.
    """

    label: str
    quant: str
    types: dict[str, str]
    loaded_bytes: int | None = None  # exact, from the file header
    file_bytes: int | None = None
    parameters: int | None = None

    def stored(
        self, full_name: str, owner: Any, tensor: Any, compute_bytes: int
    ) -> tuple[int, int] | None:
        ggml = self.types.get(full_name)
        if ggml is None:
            return None
        numel = tensor.numel()
        if ggml in TORCH_NATIVE_GGUF_TYPES:
            return numel * compute_bytes, 0
        per_weight = DEQUANT_INTERMEDIATE_BYTES.get(ggml, DEFAULT_DEQUANT_INTERMEDIATE)
        return _packed_bytes(numel, ggml), numel * max(per_weight, 2 + compute_bytes)

    def tensor_format(self, full_name: str) -> str:
        return self.types[full_name]


class TensorLayout(Protocol):
    """How a backend stores a component's tensors, for `measure` (bench/backends/<name>.py).

    `stored` answers for one tensor (its qualified name, the module that owns it, the meta
    tensor, the bytes per element of the compute dtype): (bytes on the device, scratch bytes
    to dequantise it once) when the backend stores it its own way, None when the tensor is
    loaded at the component's dtype like an unquantized one.
    """

    label: str
    loaded_bytes: int | None

    def stored(
        self, full_name: str, owner: Any, tensor: Any, compute_bytes: int
    ) -> tuple[int, int] | None: ...

    def tensor_format(self, full_name: str) -> str:
        """How one stored tensor is kept, in words ("Q4_K", "int8 + fp32 scale")."""
        ...


# ---------------------------------------------------------------------------------------------
# Meta-device models


def _diffusers_meta(class_name: str, config: dict[str, Any]) -> Any:
    import diffusers  # diffusers: heavy, loaded only to size a model
    from accelerate import init_empty_weights  # accelerate: likewise (torch)

    cls = getattr(diffusers, class_name)
    with init_empty_weights():
        return cls.from_config(config)


def _transformers_meta(class_name: str, config: Any) -> Any:
    import transformers  # transformers: heavy, loaded only to size a model
    from accelerate import init_empty_weights  # accelerate: likewise (torch)

    cls = getattr(transformers, class_name)
    with init_empty_weights():
        model = cls(config)
    if hasattr(model, "tie_weights"):  # T5's shared/embed_tokens: one tensor, as when loaded
        model.tie_weights()
    return model


def meta_modules_from_folder(folder: Path) -> tuple[dict[str, Any], str]:
    """Meta-device modules of every model component a diffusers folder names, and its class."""
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise UserInputError(f"{folder}: not a diffusers pipeline folder (no model_index.json)")
    index = json.loads(index_path.read_text())
    modules: dict[str, Any] = {}
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or entry[0] is None:
            continue
        library, class_name = entry
        sub = folder / name
        if not (sub / "config.json").is_file():
            continue  # tokenizers, schedulers: nothing on the device
        if library == "diffusers":
            import diffusers  # diffusers: heavy, loaded only to size a model

            cls = getattr(diffusers, class_name)
            modules[name] = _diffusers_meta(class_name, dict(cls.load_config(sub)))
        elif library == "transformers":
            import transformers  # transformers: heavy, loaded only to size a model

            cls = getattr(transformers, class_name)
            modules[name] = _transformers_meta(class_name, cls.config_class.from_pretrained(sub))
    return modules, index.get("_class_name", "DiffusionPipeline")


def offload_order(pipeline_class: str, names: list[str]) -> tuple[str, ...]:
    """`model_cpu_offload_seq` of the pipeline class (the order model offload moves models)."""
    import diffusers  # diffusers: heavy, loaded only to size a model

    cls = getattr(diffusers, pipeline_class, None)
    seq = getattr(cls, "model_cpu_offload_seq", None) or "->".join(names)
    ordered = [n for n in seq.split("->") if n in names]
    return tuple(ordered + [n for n in names if n not in ordered])


# ---------------------------------------------------------------------------------------------
# GGUF layouts


def file_quant_type_of(quant: str) -> FileQuantType:
    """The converter's FileQuantType, or a pure one for ggml types it cannot make (Q4_0, Q2_K)."""
    try:
        return file_quant_type(quant)
    except ValueError:
        pass
    base = quant.upper().removesuffix("_S")
    try:
        qtype = T[base]
    except KeyError:
        raise ArgumentError("quant", f"{quant!r}: not a ggml type") from None
    if qtype not in GGML_QUANT_SIZES:
        raise ArgumentError("quant", f"{quant!r}: no block size known")
    return FileQuantType(quant.upper(), qtype, qtype, 0)


def recipe_types(
    transformer: Any, quant: str, names: TensorNames, source_dtype: str = "BF16"
) -> dict[str, str]:
    """ggml type of every parameter under the community recipe of the family whose tensor
    names are ``names`` (docs/gguf.md)."""
    ft = file_quant_type_of(quant)
    return {
        name: choose_tensor_type(name, tuple(p.shape), source_dtype, ft, names).name
        for name, p in transformer.named_parameters()
    }


def recipe_layout(
    transformer: Any, quant: str, names: TensorNames, source_dtype: str = "BF16"
) -> GGUFLayout:
    """A GGUF transformer predicted from a quant type: every parameter as the recipe types it."""
    return GGUFLayout(
        label=f"GGUF {quant.upper()} (from type layouts)",
        quant=quant.upper(),
        types=recipe_types(transformer, quant, names, source_dtype),
    )


def file_layout(path: Path, transformer: Any, compute_dtype: str, names: TensorNames) -> GGUFLayout:
    """Exact loaded bytes from the header: packed quantized tensors, F32/F16 cast to compute.
    ``names``' recipe splits the total per module when the file does not use diffusers' names."""
    try:
        info = summarize_gguf(path)
    except GGUFFileError as exc:
        raise UserInputError(str(exc)) from exc
    c = DTYPE_BYTES[compute_dtype]
    # F32/F16 tensors are loaded at the compute dtype; every other type stays packed.
    loaded = sum(
        _elements(nbytes, t) * c if t in TORCH_NATIVE_GGUF_TYPES else nbytes
        for t, nbytes in info.bytes_per_type.items()
    )
    params = dict(transformer.named_parameters())
    if set(info.tensor_types) == set(params):
        types = dict(info.tensor_types)
    else:  # BFL names (fused qkv): per-module split from the recipe, totals from the file
        # general.file_type code -> type name (qtypes' table; the _S mix where codes coincide)
        codes = {file_quant_type(n).file_type: n for n in supported_quant_types()}
        quant = codes.get(int(info.metadata.get("general.file_type") or -1))
        if quant is None:
            quantized = {
                k: v for k, v in info.bytes_per_type.items() if k not in TORCH_NATIVE_GGUF_TYPES
            }
            quant = max(quantized, key=lambda k: quantized[k]) if quantized else "BF16"
        source = "BF16" if "BF16" in info.tensors_per_type else "F16"
        types = recipe_types(transformer, quant, names, source)
    counts = sorted(info.tensors_per_type.items(), key=lambda kv: -info.bytes_per_type[kv[0]])
    mix = "+".join(k for k, _ in counts)
    return GGUFLayout(
        label=f"GGUF {path.name} ({mix})",
        quant=mix,
        types=types,
        loaded_bytes=loaded,
        file_bytes=info.file_bytes,
        parameters=info.parameters,
    )


def _packed_bytes(numel: int, ggml_type: str) -> int:
    block, size = GGML_QUANT_SIZES[T[ggml_type]]
    return numel // block * size


def _elements(packed_bytes: int, ggml_type: str) -> int:
    """Inverse of `_packed_bytes`: how many weights `packed_bytes` of a type hold."""
    block, size = GGML_QUANT_SIZES[T[ggml_type]]
    return packed_bytes // size * block


# ---------------------------------------------------------------------------------------------
# Measuring a meta module


def _fp32_names(module: Any, dtype: str) -> tuple[str, ...]:
    """Module names transformers keeps in float32 at this dtype (T5's `wo` under float16)."""
    names: list[str] = []
    if dtype == "float16":
        names += list(getattr(module, "_keep_in_fp32_modules", None) or [])
    if dtype in ("float16", "bfloat16"):
        names += list(getattr(module, "_keep_in_fp32_modules_strict", None) or [])
    return tuple(names)


def _own_tensors(module: Any) -> Iterator[tuple[str, str, Any, Any]]:
    """(module name, qualified tensor name, tensor, owning module), each tensor object once."""
    seen: set[int] = set()
    for mod_name, mod in module.named_modules():
        for items in (mod.named_parameters(recurse=False), mod.named_buffers(recurse=False)):
            for t_name, tensor in items:
                if tensor is None or id(tensor) in seen:
                    continue
                seen.add(id(tensor))
                full = f"{mod_name}.{t_name}" if mod_name else t_name
                yield mod_name, full, tensor, mod


def _block_roots(module: Any, prefix: str = "") -> list[str]:
    """Name prefixes of the blocks block-level group offload moves one at a time.

    diffusers' `_apply_group_offloading_block_level`: every entry of a top-level ModuleList or
    Sequential is a block; children named in `_group_offload_block_modules` are recursed into;
    everything else is one group that stays on the device while the model runs.
    """
    import torch  # torch: heavy, loaded only to size a model

    roots: list[str] = []
    recurse_into = set(getattr(module, "_group_offload_block_modules", None) or [])
    for name, child in module.named_children():
        if name in recurse_into:
            roots += _block_roots(child, f"{prefix}{name}.")
        elif isinstance(child, torch.nn.ModuleList | torch.nn.Sequential):
            roots += [f"{prefix}{name}.{i}." for i in range(len(child))]
    return roots


def measure(
    name: str,
    module: Any,
    dtype: str,
    layout: TensorLayout | None = None,
) -> Component:
    """Size one meta module as it would be loaded at `dtype` (a quantized layout: `dtype` is
    the compute dtype of the tensors it leaves alone)."""
    c = DTYPE_BYTES[dtype]
    fp32 = _fp32_names(module, dtype)
    roots = _block_roots(module)
    per_module: dict[str, int] = {}
    per_block: dict[str, int] = {}
    total = params = 0
    dequant = 0
    dequant_tensor: str | None = None
    for mod_name, full, tensor, owner in _own_tensors(module):
        numel = tensor.numel()
        stored = layout.stored(full, owner, tensor, c) if layout is not None else None
        if stored is not None:
            nbytes, scratch = stored
            if scratch > dequant:
                dequant, dequant_tensor = scratch, f"{full} ({layout.tensor_format(full)})"
        elif tensor.is_floating_point():
            keep32 = any(part in fp32 for part in full.split("."))
            nbytes = numel * (4 if keep32 else c)
        else:
            nbytes = numel * tensor.element_size()
        total += nbytes
        params += numel
        per_module[mod_name] = per_module.get(mod_name, 0) + nbytes
        root = next((r for r in roots if full.startswith(r)), None)
        if root is not None:
            per_block[root] = per_block.get(root, 0) + nbytes
    if layout is not None and layout.loaded_bytes is not None:
        total = layout.loaded_bytes  # the file header is exact; the split above is the recipe's
    inside = sum(per_block.values())
    return Component(
        name=name,
        class_name=type(module).__name__,
        dtype=dtype,
        parameters=params,
        bytes=total,
        leaf_bytes=max(per_module.values(), default=0),
        leaf_name=max(per_module, key=lambda k: per_module[k], default=""),
        block_bytes=max(per_block.values(), default=0),
        outside_blocks_bytes=max(total - inside, 0),
        n_blocks=len(per_block),
        dequant_bytes=dequant,
        dequant_tensor=dequant_tensor,
        weights_format=layout.label if layout else dtype,
        config=_plain_config(module),
        modules=module_groups(module),
    )


def module_groups(module: Any) -> tuple[ModuleGroup, ...]:
    """The component's modules, grouped by block (`Component.modules`): FLUX's 57 blocks are a
    few dozen groups, so the stored table keeps every module name for the speed-up terms."""
    groups: dict[tuple[str, int | None, int | None], list[int]] = {}
    for name, child in module.named_modules():
        parts = name.split(".")
        numeric = next((i for i, part in enumerate(parts) if part.isdigit()), None)
        index = 0 if numeric is None else int(parts[numeric])
        if numeric is not None:
            parts[numeric] = "{}"
        widths = (getattr(child, "in_features", None), getattr(child, "out_features", None))
        groups.setdefault((".".join(parts), *widths), []).append(index)
    return tuple(
        (template, _ranges(indices), inputs, outputs)
        for (template, inputs, outputs), indices in groups.items()
    )


def _ranges(indices: list[int]) -> tuple[tuple[int, int], ...]:
    """Sorted indices as [start, stop) ranges."""
    out: list[tuple[int, int]] = []
    for index in sorted(indices):
        if out and out[-1][1] == index:
            out[-1] = (out[-1][0], index + 1)
        else:
            out.append((index, index + 1))
    return tuple(out)


def _plain_config(module: Any) -> dict[str, Any]:
    config = getattr(module, "config", None)
    if config is None:
        return {}
    if hasattr(config, "to_dict"):
        return dict(config.to_dict())
    return dict(config)


# ---------------------------------------------------------------------------------------------
# Whole pipelines


def measure_pipeline(
    modules: dict[str, Any],
    pipeline_class: str,
    label: str,
    dtype: str,
    *,
    family: str,
    denoiser: str,
    compute_dtype: str | None = None,
    layouts: dict[str, TensorLayout] | None = None,
) -> PipelineComponents:
    """Size every component of a `family` pipeline (its registry name, kept for the formulas
    that size each phase): those in `layouts` as their backend stores them, at `compute_dtype`
    for what it leaves alone; the rest at `dtype`. The `denoiser`'s layout names the format."""
    layouts = layouts or {}
    out: dict[str, Component] = {}
    for name, module in modules.items():
        if name in layouts:
            out[name] = measure(name, module, compute_dtype or dtype, layouts[name])
        else:
            out[name] = measure(name, module, dtype)
    fmt = layouts[denoiser].label if denoiser in layouts else dtype
    return PipelineComponents(
        label=label,
        components=out,
        offload_order=offload_order(pipeline_class, list(out)),
        transformer_format=fmt,
        family=family,
    )

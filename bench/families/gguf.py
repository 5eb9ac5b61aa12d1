"""GGUF files in a family's community layout, the family named as `bench quantize --family`
names it (None: FLUX, the harness's first family) or found from the checkpoint.

bench/gguf converts, plans and inspects given a family's tensor names; this is the registry's
side of it: which family a name or a checkpoint means, and every registered family's names for
telling a file's naming.
"""

from __future__ import annotations

from pathlib import Path

from bench.errors import UserInputError
from bench.families import FAMILIES, family_for_denoiser, get_family
from bench.families.base import Family
from bench.gguf.convert import QuantizeSummary, convert_checkpoint
from bench.gguf.errors import ConversionError
from bench.gguf.inspect import InspectResult, summarize_gguf
from bench.gguf.plan import KeyNames
from bench.gguf.pool import PoolKind
from bench.gguf.source import Checkpoint


def quantize_checkpoint(
    src: Path,
    out: Path,
    qtype: str,
    key_names: KeyNames = "auto",
    progress: bool = False,
    jobs: int | None = None,
    pool: PoolKind = "process",
    family: str | Family | None = None,
) -> QuantizeSummary:
    """Write ``src`` as a GGUF file ``out`` of quantization type ``qtype`` in the layout of the
    family ``family`` names (bench.gguf.convert.convert_checkpoint says the rest). Raises
    ``ConversionError`` (a ``ValueError``) for bad input, ``UnknownFamily`` for a family that
    is not registered."""
    names = get_family(family).gguf
    return convert_checkpoint(src, out, qtype, names, key_names, progress, jobs, pool)


def inspect_gguf(path: Path) -> InspectResult:
    """A GGUF file's summary (bench.gguf.inspect), its naming told by the first registered
    family that knows it; ``GGUFFileError`` if it is not valid GGUF."""
    return summarize_gguf(path, [family.gguf for family in FAMILIES.values()])


def check_family(family: str) -> str:
    """A registered family name, or UserInputError naming --family and the known ones."""
    if family not in FAMILIES:
        raise UserInputError(f"--family: expected one of {', '.join(FAMILIES)}, got {family!r}")
    return family


def detect_family(src: Path) -> str:
    """The model family of a transformer checkpoint, so `bench quantize` writes that family's
    community layout without being told.

    A diffusers folder says it in config.json (``_class_name``, the family's denoiser class);
    otherwise the tensor names decide: the one family whose original or diffusers naming the
    keys are in. ConversionError when none or several match, naming ``--family``.
    """
    ckpt = Checkpoint(src)
    by_class = family_for_denoiser(str(ckpt.config.get("_class_name")))
    if by_class is not None:
        return by_class.name
    matches = []
    for family in FAMILIES.values():
        names = family.gguf
        keys = [names.strip_prefix(k) for k in ckpt.tensors]
        if names.is_original(keys) or names.is_diffusers(keys):
            matches.append(family.name)
    if len(matches) == 1:
        return matches[0]
    found = f"it matches {', '.join(matches)}" if matches else "no family's names match"
    raise ConversionError(
        f"{src}: cannot tell the model family from its tensor names ({found}); "
        f"pass --family ({', '.join(FAMILIES)})"
    )

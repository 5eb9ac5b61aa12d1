"""One checkpoint to one GGUF file per type: the request checked, the files named, each made.

The library side of `bench quantize` (bench/cli/gguf.py): every bad request is a UserInputError
or a ConversionError naming the option or file, raised before anything is written; each file is
written under a temporary name by the converter, so nothing half-written is left behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import get_args

from bench.errors import UserInputError
from bench.gguf.convert import QuantizeSummary, quantize_checkpoint
from bench.gguf.errors import ConversionError
from bench.gguf.plan import KeyNames
from bench.gguf.qtypes import file_quant_type
from bench.gguf.source import Checkpoint

KEY_NAMES = get_args(KeyNames)


def output_stem(src: Path) -> str:
    """``flux1-dev.safetensors`` -> ``flux1-dev``; a diffusers folder -> its folder name
    (``transformer`` folders take the pipeline folder's name, which says more)."""
    if src.is_dir():
        if src.name == "transformer" and src.parent.name:
            return src.parent.name
        return src.name
    return src.stem


def check_family(family: str) -> str:
    """A registered family name, or UserInputError naming --family and the known ones."""
    from bench.families import FAMILIES

    if family not in FAMILIES:
        raise UserInputError(f"--family: expected one of {', '.join(FAMILIES)}, got {family!r}")
    return family


def check_request(src: Path, types: list[str], out: Path, key_names: str, jobs: int | None) -> None:
    """Every option of a quantize request, in the order `bench quantize` names them."""
    if not types:
        raise UserInputError("--type: expected at least one type")
    for t in types:
        try:
            file_quant_type(t)
        except ValueError as exc:
            raise UserInputError(f"--type: {exc}") from None
    if jobs is not None and jobs < 1:
        raise UserInputError(f"--jobs: expected a positive number of worker processes, got {jobs}")
    if key_names not in KEY_NAMES:
        raise UserInputError(
            f"--key-names: expected one of {', '.join(KEY_NAMES)}, got {key_names!r}"
        )
    if not src.exists():
        raise UserInputError(
            f"{src}: no such file or directory (expected a diffusers folder or .safetensors)"
        )
    if out.exists() and not out.is_dir():
        raise UserInputError(f"{out}: --out must be a folder, found a file")


def detect_family(src: Path) -> str:
    """The model family of a transformer checkpoint (bench.families), so `bench quantize`
    writes that family's community layout without being told.

    A diffusers folder says it in config.json (``_class_name``, the family's denoiser class);
    otherwise the tensor names decide: the one family whose original or diffusers naming the
    keys are in. ConversionError when none or several match, naming ``--family``.
    """
    from bench.families import FAMILIES, family_for_denoiser

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


def quantize_to_folder(
    src: Path,
    types: list[str],
    out: Path,
    *,
    key_names: str = "auto",
    jobs: int | None = None,
    progress: bool = False,
    family: str | None = None,
) -> Iterator[QuantizeSummary]:
    """Write `out/<stem>-<TYPE>.gguf` for each type, yielding each file's summary once written.

    ``family`` picks the tensor names and rules (bench.families; None: `detect_family`). The
    request is checked before the first file. A ValueError of the quantizers (a shape no type
    can take, say) is raised as the ConversionError it is, message unchanged.
    """
    check_request(src, types, out, key_names, jobs)
    family = check_family(family) if family is not None else detect_family(src)
    stem = output_stem(src)
    for t in types:
        try:
            yield quantize_checkpoint(
                src,
                out / f"{stem}-{t}.gguf",
                t,
                key_names=key_names,  # type: ignore[arg-type]
                progress=progress,
                jobs=jobs,
                family=family,
            )
        except ConversionError:
            raise
        except ValueError as exc:
            raise ConversionError(str(exc)) from exc

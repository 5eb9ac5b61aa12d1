"""One checkpoint to one GGUF file per type: the request checked, the files named, each made.

The library side of `bench quantize` (bench/cli/gguf.py): every bad request is a UserInputError
or a ConversionError naming the option or file, raised before anything is written; each file is
written under a temporary name by the converter, so nothing half-written is left behind. The
family's tensor names are an argument: the command looks the family up (named by ``--family``,
or found from the checkpoint by bench/families/gguf.py's ``detect_family``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import get_args

from bench.errors import UserInputError
from bench.gguf.convert import QuantizeSummary, convert_checkpoint
from bench.gguf.errors import ConversionError
from bench.gguf.names import TensorNames
from bench.gguf.plan import KeyNames
from bench.gguf.qtypes import file_quant_type

KEY_NAMES = get_args(KeyNames)


def output_stem(src: Path) -> str:
    """``flux1-dev.safetensors`` -> ``flux1-dev``; a diffusers folder -> its folder name
    (``transformer`` folders take the pipeline folder's name, which says more)."""
    if src.is_dir():
        if src.name == "transformer" and src.parent.name:
            return src.parent.name
        return src.name
    return src.stem


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


def quantize_to_folder(
    src: Path,
    types: list[str],
    out: Path,
    names: TensorNames,
    *,
    key_names: str = "auto",
    jobs: int | None = None,
    progress: bool = False,
) -> Iterator[QuantizeSummary]:
    """Write `out/<stem>-<TYPE>.gguf` for each type in the layout of the family whose tensor
    names are ``names``, yielding each file's summary once written.

    The request is checked before the first file. A ValueError of the quantizers (a shape no
    type can take, say) is raised as the ConversionError it is, message unchanged.
    """
    check_request(src, types, out, key_names, jobs)
    stem = output_stem(src)
    for t in types:
        try:
            yield convert_checkpoint(
                src,
                out / f"{stem}-{t}.gguf",
                t,
                names,
                key_names=key_names,  # type: ignore[arg-type]
                progress=progress,
                jobs=jobs,
            )
        except ConversionError:
            raise
        except ValueError as exc:
            raise ConversionError(str(exc)) from exc

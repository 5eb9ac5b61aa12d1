"""``bench quantize`` and ``bench inspect``: typer shells over bench.gguf.batch and the family
look-ups of bench.families.gguf (which family a checkpoint is, every family's tensor names).

Errors a user can fix (missing source, unknown type, corrupt GGUF) print one line to stderr that
names the file or value and what was expected, and exit with code 2; the converter writes under a
temporary name, so nothing half-written is left behind.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from bench.cli.errors import reports_user_errors
from bench.families import get_family
from bench.families.gguf import check_family, detect_family, inspect_gguf
from bench.gguf.batch import check_request, quantize_to_folder
from bench.gguf.errors import ConversionError, GGUFFileError
from bench.gguf.qtypes import supported_quant_types
from bench.gguf.quants import default_threads


def split_types(values: list[str]) -> list[str]:
    """Accept ``--type Q8_0 --type Q6_K`` as well as ``--type Q8_0,Q6_K`` or ``"Q8_0 Q6_K"``."""
    out: list[str] = []
    for v in values:
        out += [p for p in v.replace(",", " ").split() if p]
    return list(dict.fromkeys(p.upper() for p in out))


@reports_user_errors(ConversionError)
def quantize_command(
    src: Annotated[
        Path,
        typer.Argument(
            help="a transformer checkpoint: a diffusers folder (FluxTransformer2DModel, "
            "SD3Transformer2DModel, QwenImageTransformer2DModel, WanTransformer3DModel) or a "
            ".safetensors file"
        ),
    ],
    type: Annotated[
        list[str],
        typer.Option(
            "--type",
            "-t",
            help=(
                "Output type(s): repeat the option or separate with commas, e.g. "
                f"--type Q8_0,Q4_K_M. Choices: {', '.join(supported_quant_types())}"
            ),
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for <stem>-<TYPE>.gguf")],
    key_names: Annotated[
        str,
        typer.Option(
            help="Tensor names: auto (the family's community names; FLUX: BFL's at width "
            "3072), bfl (the original names) or diffusers"
        ),
    ] = "auto",
    family: Annotated[
        str | None,
        typer.Option(
            help="Model family (flux, sd3, qwen_image, wan) whose community layout to write; "
            "default: read from the folder's config.json or the tensor names",
            show_default=False,
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            help=(
                "Worker processes (default and most: every CPU this process may use; models "
                "under 16 M weights convert in one). The bytes written do not depend on it."
            ),
            show_default=False,
        ),
    ] = None,
) -> None:
    """Quantize a diffusion transformer checkpoint to GGUF files, one per type, in its
    family's community layout (the names and high-precision tensors city96's files use)."""
    check_request(src, split_types(type), out, key_names, jobs)
    cpus = default_threads()
    if jobs is not None and jobs > cpus:
        # Clamped, not refused: the bytes do not depend on it, and a script's --jobs 8 should
        # still run on a 4-CPU machine, as fast as that machine allows.
        typer.echo(
            f"note: --jobs {jobs}: this process may use {cpus} CPUs; converting on at most "
            f"{cpus} worker processes",
            err=True,
        )
    name = check_family(family) if family is not None else detect_family(src)
    made = quantize_to_folder(
        src,
        split_types(type),
        out,
        get_family(name).gguf,
        key_names=key_names,
        jobs=jobs,
        progress=sys.stderr.isatty(),
    )
    for s in made:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(s.tensor_counts.items()))
        print(
            f"{s.out}  {s.file_bytes / 2**30:.3f} GiB  {s.bits_per_weight:.2f} bpw  "
            f"{s.parameters / 1e6:.1f} M weights  [{counts}]  {s.key_names} names  "
            f"{s.seconds:.1f} s on {s.jobs} {'process' if s.jobs == 1 else 'processes'}"
        )


@reports_user_errors(GGUFFileError)
def inspect_command(
    file: Annotated[Path, typer.Argument(help="A .gguf file")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
) -> None:
    """Show a GGUF file's metadata, tensor types, size and bits per weight."""
    r = inspect_gguf(file)
    if json_out:
        print(json.dumps(r.to_json(), indent=2, default=str))
        return
    print(f"{r.path}  ({r.file_bytes:,} bytes, GGUF v{r.version}, {r.key_names} key names)")
    for k, v in r.metadata.items():
        print(f"  {k} = {v}")
    print(
        f"  tensors: {r.tensor_count}, weights: {r.parameters:,}, "
        f"{r.bits_per_weight:.3f} bits/weight"
    )
    for t, n in sorted(r.tensors_per_type.items()):
        print(f"    {t:6s} {n:5d} tensors  {r.bytes_per_type[t]:>14,} bytes")

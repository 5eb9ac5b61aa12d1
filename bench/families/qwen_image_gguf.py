"""Qwen-Image GGUF tensor names: the community files keep diffusers' own names.

Qwen-Image's reference checkpoint (Qwen/Qwen-Image), ComfyUI's split file and the community
GGUF files (city96/Qwen-Image-gguf, QuantStack) all name the transformer's tensors as diffusers'
``QwenImageTransformer2DModel`` does (``transformer_blocks.0.attn.add_q_proj.weight``, separate
q/k/v, no fusions) and declare ``general.architecture = "qwen_image"`` (ComfyUI-GGUF's
IMG_ARCH_LIST). diffusers 0.42's ``from_single_file`` accordingly maps a Qwen-Image checkpoint
with the identity (``SINGLE_FILE_LOADABLE_CLASSES["QwenImageTransformer2DModel"]``). So every
group here is one tensor under its own name, and the original scheme is ``"diffusers"``.

Precision follows the community recipe: only 2-D weights inside ``transformer_blocks`` are
quantized; the embedders (``img_in``, ``txt_in``, ``txt_norm``, ``time_text_embed``) and the
output layers (``norm_out``, ``proj_out``) keep the input precision, 1-D and small tensors F32.
"""

from __future__ import annotations

from collections.abc import Iterable

from bench.gguf.names import Group, TensorNames

BLOCK_PREFIXES = ("transformer_blocks.",)
#: Tensors outside the blocks, which the recipe keeps at the input precision.
KEEP_PRECISION_MARKERS = (
    "img_in.",
    "txt_in.",
    "txt_norm.",
    "time_text_embed.",
    "norm_out.",
    "proj_out.",
)
#: Keys only a Qwen-Image transformer has (the text-stream RMS norm, the image MLP's layout).
_DETECT = ("txt_norm.weight", "img_in.weight")


def is_qwen_image(keys: Iterable[str]) -> bool:
    """True if the (prefix-stripped) keys are a QwenImageTransformer2DModel state dict."""
    keys = set(keys)
    return all(k in keys for k in _DETECT) and any(k.startswith(BLOCK_PREFIXES) for k in keys)


class QwenImageTensorNames(TensorNames):
    """Qwen-Image's names (diffusers' own) and the community recipe's rules."""

    architecture = "qwen_image"
    title = "Qwen-Image"
    original_scheme = "diffusers"
    block_prefixes = BLOCK_PREFIXES
    keep_precision_markers = KEEP_PRECISION_MARKERS

    width_tensors = ("img_in.weight",)
    is_diffusers = staticmethod(is_qwen_image)

    def is_original(self, keys: list[str]) -> bool:
        """There is no other naming: a Qwen-Image key set is never "original" apart from
        diffusers', so the plan copies names through."""
        return False

    def groups(self, keys: list[str]) -> list[Group]:
        """One group per tensor, under its own name."""
        return [Group(k, (k,)) for k in keys]

    def original_name(self, diffusers_key: str) -> str | None:
        return diffusers_key


QWEN_IMAGE_TENSOR_NAMES = QwenImageTensorNames()

"""Text encoders several families share: CLIP-L and OpenCLIP bigG (CLIP text towers: FLUX.1,
SD3.5), T5-XXL (FLUX.1, SD3.5), UMT5-XXL (Wan) and Qwen2.5-VL (Qwen-Image).

For each: its config from a spec's sizes and a tokenizer (the local stand-in's special ids and
vocabulary, as a synthetic build has them; without one, the real tokenizer's ids, for sizing a
published architecture whose spec names its vocabulary), its model on the meta device, and its
working memory while it encodes a prompt (docs/size.md). The local tokenizers themselves are
bench/models/tokenizers.py's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.blocks.meta import on_meta
from bench.sizing.components import DTYPE_BYTES, Component

#: Special-token ids of the real CLIP tokenizer (openai/clip-vit-large-patch14; SD3.5's OpenCLIP
#: bigG shares its vocabulary), for a spec sized without building the local tokenizers.
REAL_CLIP_TOKEN_IDS = {"bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1}
#: ... and of the real T5 tokenizer (google/t5-v1_1-xxl).
REAL_T5_TOKEN_IDS = {"pad_token_id": 0, "eos_token_id": 1}
#: Qwen2.5-VL's vision special-token ids (Qwen/Qwen2.5-VL-7B-Instruct's config.json).
REAL_QWEN25_VL_TOKEN_IDS = {
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
}


#: CLIP's vocabulary (CLIP-L's; OpenCLIP bigG, SD3.5's second encoder, shares it)
CLIP_VOCAB = 49408


def _stack_sizes(hidden: int, intermediate: int, layers: int, heads: int) -> dict[str, int]:
    """The sizes every transformers text stack names alike: width, MLP width, depth, heads."""
    return {
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
    }


def clip_sizes(
    hidden: int, intermediate: int, layers: int, heads: int, projection: int, **extra: Any
) -> dict[str, Any]:
    """A CLIP text tower's sizes as a spec writes them (77 positions), ``extra`` after."""
    sizes = _stack_sizes(hidden, intermediate, layers, heads)
    return {**sizes, "max_position_embeddings": 77, "projection_dim": projection, **extra}


def t5_sizes(d_model: int, d_ff: int, layers: int, heads: int, **extra: Any) -> dict[str, Any]:
    """A T5 v1.1 encoder's sizes as a spec writes them (64 per head, gated GELU)."""
    return {
        "d_model": d_model,
        "d_kv": 64,
        "d_ff": d_ff,
        "num_layers": layers,
        "num_heads": heads,
        "feed_forward_proj": "gated-gelu",
        **extra,
    }


#: T5-XXL's encoder (google/t5-v1_1-xxl: FLUX.1's and SD3.5's text_encoder_2/3 config.json).
T5_XXL = t5_sizes(4096, 10240, 24, 64, vocab_size=32128)


def umt5_sizes(d_model: int, d_ff: int, layers: int, heads: int) -> dict[str, Any]:
    """A UMT5 encoder's sizes as a spec writes them: T5's, with 32 position buckets up to 128
    before the MLP's kind, and its own input table."""
    sizes = t5_sizes(d_model, d_ff, layers, heads)
    mlp = sizes.pop("feed_forward_proj")
    buckets = {"relative_attention_num_buckets": 32, "relative_attention_max_distance": 128}
    return {**sizes, **buckets, "feed_forward_proj": mlp, "tie_word_embeddings": False}


#: google/umt5-xxl's encoder, as Wan-AI/Wan2.1-T2V-*-Diffusers' text_encoder/config.json.
UMT5_XXL = {
    "vocab_size": 256384,
    **umt5_sizes(4096, 10240, 24, 64),
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
}


def qwen25_vl_text_sizes(
    hidden: int,
    intermediate: int,
    layers: int,
    heads: int,
    kv_heads: int,
    positions: int,
    mrope_section: list[int],
) -> dict[str, Any]:
    """Qwen2.5-VL's text model sizes as a spec writes them (multimodal rotary positions)."""
    return {
        **_stack_sizes(hidden, intermediate, layers, heads),
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": positions,
        "rope_scaling": {"type": "mrope", "mrope_section": mrope_section},
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6,
    }


def qwen25_vl_vision_sizes(
    depth: int, hidden: int, intermediate: int, heads: int, out: int, full_attention: list[int]
) -> dict[str, Any]:
    """Qwen2.5-VL's vision tower sizes as a spec writes them."""
    return {
        "depth": depth,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_heads": heads,
        "out_hidden_size": out,
        "fullatt_block_indexes": full_attention,
    }


def _named_vocabulary(config: dict[str, Any], block: str) -> dict[str, Any]:
    """`config` if it names its vocabulary size: a spec sized without its tokenizer must."""
    if config.get("vocab_size") is None:
        raise ValueError(f"{block}: the spec names no vocabulary size: pass the local tokenizer")
    return config


# ---------------------------------------------------------------------------------------------
# CLIP text towers (CLIP-L, OpenCLIP bigG)


def clip_config(sizes: Mapping[str, Any], tokenizer: Any | None = None) -> dict[str, Any]:
    """CLIPTextConfig's arguments: the spec's sizes, the tokenizer's special ids and (unless the
    sizes name one) its vocabulary size."""
    if tokenizer is None:
        return _named_vocabulary({"vocab_size": None, **sizes, **REAL_CLIP_TOKEN_IDS}, "CLIP")
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    return {"vocab_size": len(tokenizer), **sizes, **ids}


def clip_text_model(
    sizes: Mapping[str, Any], tokenizer: Any | None = None, *, projection: bool = False
) -> Any:
    """A CLIP text tower on the meta device (`clip_config`); ``projection``: with the
    projection of its pooled output (CLIPTextModelWithProjection), as SD3.5's two encoders."""
    import transformers  # transformers: heavy, loaded only to build a model

    cls = transformers.CLIPTextModelWithProjection if projection else transformers.CLIPTextModel
    return on_meta(cls, transformers.CLIPTextConfig(**clip_config(sizes, tokenizer)))


# ---------------------------------------------------------------------------------------------
# T5 encoders (T5-XXL, UMT5-XXL)


def t5_config(sizes: Mapping[str, Any], tokenizer: Any | None = None) -> dict[str, Any]:
    """T5Config's arguments, as `clip_config` builds CLIP's."""
    if tokenizer is None:
        return _named_vocabulary({"vocab_size": None, **sizes, **REAL_T5_TOKEN_IDS}, "T5")
    ids = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    return {"vocab_size": len(tokenizer), **sizes, **ids}


def t5_encoder(sizes: Mapping[str, Any], tokenizer: Any | None = None) -> Any:
    """T5's encoder on the meta device (`t5_config`), its input embedding tied to the shared
    table."""
    import transformers  # transformers: heavy, loaded only to build a model

    config = transformers.T5Config(**t5_config(sizes, tokenizer))
    model = on_meta(transformers.T5EncoderModel, config)
    model.tie_weights()  # T5 shares its input embedding table
    return model


def umt5_config(sizes: Mapping[str, Any], tokenizer: Any | None = None) -> dict[str, Any]:
    """UMT5Config's arguments: the spec's sizes, overridden by the tokenizer's vocabulary and
    ids when one is given (UMT5's tokenizer is T5-style: pad 0, eos 1, decoding starts at pad)."""
    config = dict(sizes)
    if tokenizer is not None:
        config.update(
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
        )
    return _named_vocabulary(config, "UMT5")


def umt5_encoder(sizes: Mapping[str, Any], tokenizer: Any | None = None) -> Any:
    """UMT5's encoder on the meta device (`umt5_config`), its input table tied to the shared
    one."""
    import transformers  # transformers: heavy, loaded only to build a model

    config = transformers.UMT5Config(**umt5_config(sizes, tokenizer))
    model = on_meta(transformers.UMT5EncoderModel, config)
    model.tie_weights()  # the encoder's input table is the shared one
    return model


def text_encoder_activations(
    encoder: Component, tokens: int, batch: int, dtype: str
) -> tuple[int, str]:
    """T5: eager attention keeps heads×L² scores (position bias, scores, float32 softmax).

    CLIP-style encoders use SDPA at 77 tokens; their MLP intermediate dominates.
    """
    cfg = encoder.config
    b = DTYPE_BYTES[dtype]
    if "d_ff" in cfg:  # T5
        heads, d_ff, d_model = int(cfg["num_heads"]), int(cfg["d_ff"]), int(cfg["d_model"])
        attention = heads * tokens * tokens * (b + b + 4 + 4)
        mlp = 4 * tokens * d_ff * b
        work = batch * (max(attention, mlp) + 3 * tokens * d_model * b)
        why = (
            f"T5 at {tokens} tokens: eager attention {heads} heads × {tokens}² × (2×{b}+2×4) B "
            "(position bias, scores, float32 softmax) or gated MLP 4×tokens×d_ff, the larger"
        )
        return work, why
    tokens = int(cfg.get("max_position_embeddings", 77))
    hidden = int(cfg.get("hidden_size", 768))
    inter = int(cfg.get("intermediate_size", 4 * hidden))
    work = batch * tokens * (2 * inter + 6 * hidden) * b
    return work, f"{tokens} tokens × (2 MLP intermediates + 6 hidden) × {b} B"


# ---------------------------------------------------------------------------------------------
# Qwen2.5-VL


def qwen25_vl_config(
    text: Mapping[str, Any], vision: Mapping[str, Any], tokenizer: Any | None = None
) -> dict[str, Any]:
    """Qwen2_5_VLConfig's arguments: the text and vision sizes, and the special ids of the
    tokenizer (a Qwen2 tokenizer with the chat and vision tokens) or, without one, the real
    model's (the text sizes must then name the vocabulary)."""
    if tokenizer is None:
        text_config, top = _named_vocabulary(dict(text), "Qwen2.5-VL"), REAL_QWEN25_VL_TOKEN_IDS
    else:
        ids = tokenizer.convert_tokens_to_ids
        text_config = {
            **text,
            "vocab_size": len(tokenizer),
            "bos_token_id": ids("<|endoftext|>"),
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": tokenizer.pad_token_id,
        }
        top = {
            "image_token_id": ids("<|image_pad|>"),
            "video_token_id": ids("<|video_pad|>"),
            "vision_start_token_id": ids("<|vision_start|>"),
            "vision_end_token_id": ids("<|vision_end|>"),
        }
    return {
        "text_config": text_config,
        "vision_config": dict(vision),
        "tie_word_embeddings": False,
        **top,
    }


def qwen25_vl(
    text: Mapping[str, Any], vision: Mapping[str, Any], tokenizer: Any | None = None
) -> Any:
    """Qwen2.5-VL (its vision tower built too, unused by text-to-image) on the meta device
    (`qwen25_vl_config`)."""
    import transformers  # transformers: heavy, loaded only to build a model

    config = transformers.Qwen2_5_VLConfig(**qwen25_vl_config(text, vision, tokenizer))
    return on_meta(transformers.Qwen2_5_VLForConditionalGeneration, config)


def qwen25_vl_activations(
    encoder: Component, tokens: int, batch: int, dtype: str
) -> tuple[int, str]:
    """Qwen2.5-VL's decoder over the templated prompt: the pipeline asks for every layer's
    hidden states (layers + 1 of them stay alive), the gated MLP holds gate, up and their
    product (3 × intermediate), and the LM head computes logits over the whole vocabulary."""
    text = encoder.config.get("text_config", encoder.config)
    hidden, inter = int(text["hidden_size"]), int(text["intermediate_size"])
    layers, vocab = int(text["num_hidden_layers"]), int(text["vocab_size"])
    b = DTYPE_BYTES[dtype]
    per_token = (layers + 1) * hidden + 3 * inter + vocab
    why = (
        f"Qwen2.5-VL at {tokens} tokens: ({layers}+1 hidden states × {hidden} + 3 × {inter} "
        f"MLP + {vocab} logits) × {b} B per token"
    )
    return batch * tokens * per_token * b, why

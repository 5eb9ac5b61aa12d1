"""A local stand-in for Qwen-Image's tokenizer (Qwen2.5-VL's Qwen2 byte-level BPE), no download.

QwenImagePipeline wraps every prompt in a chat template and then drops the template's first
``prompt_template_encode_start_idx`` (34) hidden states: the system message, as the real Qwen2
tokenizer splits it. So a stand-in must not only be a Qwen2Tokenizer (the same pre-tokenizer
regex and byte-level alphabet, the chat special tokens), it must also split that system message
into exactly 34 tokens, or the pipeline would keep part of the template or drop part of the
prompt. Every word of the template and of the shared corpus (bench/models/tokenizers.py) is one
token here, as the template's words are in the real vocabulary; the merges that spell them are
constructed in sorted order, so every build is identical.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from bench.models.tokenizers import _CORPUS

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
#: the chat and vision special tokens of Qwen2.5-VL's tokenizer, in its id order
SPECIAL_TOKENS = (
    ENDOFTEXT,
    IM_START,
    IM_END,
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
#: QwenImagePipeline's prompt_template_encode (diffusers 0.42), the text the vocabulary covers
PROMPT_TEMPLATE = (
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, "
    "quantity, text, spatial relationships of the objects and background:<|im_end|>\n"
    "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
)


def _pieces(text: str) -> list[str]:
    """Qwen2's pre-tokenization of ``text`` (regex split, then the byte-level alphabet)."""
    from tokenizers import Regex, pre_tokenizers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    split = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    return [piece for piece, _ in split.pre_tokenize_str(text)]


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one piece: merge the lowest-ranked adjacent pair until none is left."""
    while len(symbols) > 1:
        pairs = [(ranks.get(p, len(ranks)), i) for i, p in enumerate(pairwise(symbols))]
        rank, i = min(pairs)
        if rank == len(ranks):
            break
        symbols = [*symbols[:i], symbols[i] + symbols[i + 1], *symbols[i + 2 :]]
    return symbols


def _vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte alphabet, then merges that make every template and corpus piece one token.

    A piece is first encoded with the merges made so far, then its parts are merged left to
    right by new merges; new merges rank after all earlier ones, so earlier pieces still encode
    as one token (BPE always takes the lowest-ranked pair that applies).
    """
    from tokenizers import pre_tokenizers

    text = [PROMPT_TEMPLATE.format(""), *_CORPUS, *(line.lower() for line in _CORPUS)]
    words = sorted(
        {piece for line in text for chunk in _without_specials(line) for piece in _pieces(chunk)}
    )
    vocab: dict[str, int] = {}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab.setdefault(symbol, len(vocab))
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        parts = _bpe(list(word), ranks)
        current = parts[0]
        for part in parts[1:]:
            pair = (current, part)
            current += part
            if pair not in ranks:
                ranks[pair] = len(merges)
                merges.append(pair)
            vocab.setdefault(current, len(vocab))
    return vocab, merges


def _without_specials(line: str) -> list[str]:
    chunks = [line]
    for token in SPECIAL_TOKENS:
        chunks = [part for chunk in chunks for part in chunk.split(token)]
    return [c for c in chunks if c]


def build_qwen2_tokenizer(model_max_length: int = 32768) -> Any:
    """A Qwen2Tokenizer with a small byte-level BPE vocabulary and Qwen2.5-VL's special tokens
    (``<|endoftext|>`` as padding, as the real one)."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    vocab, merges = _vocabulary()
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        model_max_length=model_max_length,
    )
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tokenizer

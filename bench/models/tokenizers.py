"""Local stand-ins for the text encoders' tokenizers, built without any download.

FLUX reads prompts through a CLIP byte-level BPE tokenizer and a T5 sentencepiece (Unigram)
tokenizer (SD3.5 adds a second CLIP, Wan's UMT5 is a sentencepiece one too, Qwen-Image's
Qwen2.5-VL a Qwen2 byte-level BPE); a model family's synthetic build takes the ones it needs from
here. Random-weight models do not need their real vocabularies, only tokenizers of the same kind,
with the same special tokens and maximum lengths, so the pipeline code runs unchanged. Each is
constructed from a small fixed corpus in sorted order, so every build is identical.
"""

from __future__ import annotations

from itertools import pairwise

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import CLIPTokenizer, Qwen2Tokenizer, T5Tokenizer
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

CLIP_BOS = "<|startoftext|>"
CLIP_EOS = "<|endoftext|>"

# A fixed corpus in the languages the prompt sets use; the words only shape the vocabulary.
_CORPUS = [
    "a photo of a cat sitting on a windowsill in the afternoon sun",
    "a futuristic city skyline at sunset with neon lights and flying cars",
    "eine futuristische Stadtlandschaft bei Sonnenuntergang mit Neonlichtern",
    "eine futuristische Nahaufnahme eines Transformer-Inference-ASIC-Chips mit komplexer "
    "Schaltungsanordnung, blauem Licht und On-Chip-SRAM-Puffern",
    "portrait of an old fisherman with weathered hands, studio lighting, 85mm",
    "a hand holding a glass of water, macro photography, shallow depth of field",
    "a street sign that reads OPEN 24 HOURS, rainy night, reflections",
    "un marché provençal plein de fruits et de fleurs, peinture à l'huile",
    "un gato durmiendo sobre una manta de lana, luz suave de la mañana",
    "富士山と桜、春の朝、水彩画",
    "a bowl of ramen with steam rising, detailed texture, food photography",
    "watercolor painting of a lighthouse on a cliff during a storm",
    "isometric pixel art of a cozy library with tall bookshelves",
    "close-up of tree bark and moss, fine texture, natural light",
]


def _corpus_words() -> list[str]:
    return sorted({word for line in _CORPUS for word in line.lower().split()})


def build_clip_tokenizer(model_max_length: int = 77) -> CLIPTokenizer:
    """Byte-level BPE with CLIP's end-of-word suffix, lower-casing and special tokens.

    The vocabulary is every byte symbol with and without `</w>`, plus merges that spell the
    corpus words, constructed in sorted order. (Training with `tokenizers` would be simpler but
    its tie-breaking differs from run to run, and a build must be reproducible byte for byte.)
    """
    to_symbols = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    for token in [CLIP_BOS, CLIP_EOS, *alphabet, *(a + "</w>" for a in alphabet)]:
        vocab.setdefault(token, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in _corpus_words():
        symbols = to_symbols.pre_tokenize_str(word)[0][0]
        pieces = [*list(symbols[:-1]), symbols[-1] + "</w>"]
        current = pieces[0]
        for piece in pieces[1:]:
            merged = current + piece
            if merged not in vocab:
                vocab[merged] = len(vocab)
                merges.append((current, piece))
            current = merged
    bpe = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token=CLIP_EOS, end_of_word_suffix="</w>")
    )
    bpe.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    bpe.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), to_symbols])
    bpe.decoder = decoders.ByteLevel()
    special = {"bos_token": CLIP_BOS, "eos_token": CLIP_EOS, "unk_token": CLIP_EOS}
    return CLIPTokenizer(
        tokenizer_object=bpe, **special, pad_token=CLIP_EOS, model_max_length=model_max_length
    )


def build_t5_tokenizer(model_max_length: int = 512) -> T5Tokenizer:
    """Unigram with a metaspace pre-tokenizer and T5's pad/eos/unk ids (0, 1, 2).

    Pieces: the corpus words (preferred) and every character of the corpus, with fixed scores,
    so the vocabulary is the same on every build.
    """
    chars = sorted({c for line in _CORPUS for c in line.lower() if not c.isspace()})
    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces.append(("▁", -2.0))
    pieces += [("▁" + w, -5.0) for w in _corpus_words()]
    pieces += [(c, -10.0) for c in chars]
    unigram = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    unigram.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    unigram.decoder = decoders.Metaspace()
    special = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
    return T5Tokenizer(
        tokenizer_object=unigram, **special, extra_ids=0, model_max_length=model_max_length
    )


# ---------------------------------------------------------------------------------------------
# Qwen2 (Qwen2.5-VL's byte-level BPE: Qwen-Image's text encoder)
#
# QwenImagePipeline wraps every prompt in a chat template and then drops the template's first
# ``prompt_template_encode_start_idx`` (34) hidden states: the system message, as the real Qwen2
# tokenizer splits it. So a stand-in must not only be a Qwen2Tokenizer (the same pre-tokenizer
# regex and byte-level alphabet, the chat special tokens), it must also split that system message
# into exactly 34 tokens, or the pipeline would keep part of the template or drop part of the
# prompt. Every word of the template and of the corpus above is one token here, as the
# template's words are in the real vocabulary; the merges that spell them are constructed in
# sorted order, so every build is identical.

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


def build_qwen2_tokenizer(model_max_length: int = 32768) -> Qwen2Tokenizer:
    """A Qwen2Tokenizer with a small byte-level BPE vocabulary and Qwen2.5-VL's special tokens
    (``<|endoftext|>`` as padding, as the real one)."""
    vocab, merges = _vocabulary()
    special = {"unk_token": None, "eos_token": IM_END, "pad_token": ENDOFTEXT}
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=merges, **special, model_max_length=model_max_length
    )
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tokenizer


#: The local tokenizers by the kind a family names (``Family.tokenizer_kinds``).
BUILDERS = {"clip": build_clip_tokenizer, "t5": build_t5_tokenizer, "qwen2": build_qwen2_tokenizer}

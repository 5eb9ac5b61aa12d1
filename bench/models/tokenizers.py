"""Local stand-ins for the text encoders' tokenizers, built without any download.

FLUX reads prompts through a CLIP byte-level BPE tokenizer and a T5 sentencepiece (Unigram)
tokenizer (SD3.5 adds a second CLIP, Wan's UMT5 is a sentencepiece one too); a model family's
synthetic build takes the ones it needs from here. Random-weight models do not need their real
vocabularies, only tokenizers of the same kind, with the same special tokens and maximum
lengths, so the pipeline code runs unchanged. Each is constructed from a small fixed corpus in
sorted order, so every build is identical.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import CLIPTokenizer, T5Tokenizer

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
    return CLIPTokenizer(
        tokenizer_object=bpe,
        bos_token=CLIP_BOS,
        eos_token=CLIP_EOS,
        unk_token=CLIP_EOS,
        pad_token=CLIP_EOS,
        model_max_length=model_max_length,
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
    return T5Tokenizer(
        tokenizer_object=unigram,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        extra_ids=0,
        model_max_length=model_max_length,
    )

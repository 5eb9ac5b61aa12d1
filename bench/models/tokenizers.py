"""Local stand-ins for FLUX's two tokenizers, built without any download.

FLUX reads prompts through a CLIP byte-level BPE tokenizer and a T5 sentencepiece (Unigram)
tokenizer. Random-weight models do not need their real vocabularies, only tokenizers of the same
kind, with the same special tokens and maximum lengths, so the pipeline code runs unchanged.
Both are trained on a small fixed corpus, which makes them deterministic.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
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


def build_clip_tokenizer(vocab_size: int = 1000, model_max_length: int = 77) -> CLIPTokenizer:
    """Byte-level BPE with CLIP's end-of-word suffix, lower-casing and special tokens."""
    bpe = Tokenizer(models.BPE(unk_token=CLIP_EOS, end_of_word_suffix="</w>"))
    bpe.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[CLIP_BOS, CLIP_EOS],
        end_of_word_suffix="</w>",
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS, trainer)
    return CLIPTokenizer(
        tokenizer_object=bpe,
        bos_token=CLIP_BOS,
        eos_token=CLIP_EOS,
        unk_token=CLIP_EOS,
        pad_token=CLIP_EOS,
        model_max_length=model_max_length,
    )


def build_t5_tokenizer(vocab_size: int = 400, model_max_length: int = 512) -> T5Tokenizer:
    """Unigram with a metaspace pre-tokenizer and T5's pad/eos/unk ids (0, 1, 2)."""
    unigram = Tokenizer(models.Unigram())
    unigram.normalizer = normalizers.NFKC()
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    unigram.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        show_progress=False,
    )
    unigram.train_from_iterator(_CORPUS, trainer)
    return T5Tokenizer(
        tokenizer_object=unigram,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        extra_ids=0,
        model_max_length=model_max_length,
    )

"""The shipped prompt sets: the blog's two prompts verbatim, a diverse set of 64+."""

from __future__ import annotations

from pathlib import Path

import yaml

from bench.cells import derive_seed, expand_images, load_prompt_file
from bench.config import BenchConfig

PROMPTS = Path(__file__).resolve().parents[1] / "configs" / "prompts"

BLOG_ASIC = (
    "Eine futuristische Nahaufnahme eines Transformer-Inference-ASIC-Chips mit komplexer "
    "Schaltungsanordnung, blauem Licht, das von dichten Matrix-Multiplikationseinheiten und ALUs "
    "mit niedriger Präzision ausgeht, umgeben von On-Chip-SRAM-Puffern und "
    "Quantisierungspipelines, in hyperdetailliertem fotorealistischem Stil mit einer kalten, "
    "klinischen Beleuchtung dargestellt."
)


def test_blog_prompts_are_verbatim() -> None:
    prompts = {p.id: p.text for p in load_prompt_file(PROMPTS / "blog.yaml")}
    assert prompts == {
        "blog-city": "Eine futuristische Stadtlandschaft bei Sonnenuntergang mit Neonlichtern",
        "blog-asic": BLOG_ASIC,
    }


def test_diverse_set_covers_categories_and_languages() -> None:
    path = PROMPTS / "diverse-64.yaml"
    prompts = load_prompt_file(path)  # the lead's loader: ids valid and unique
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))["prompts"]
    assert len(prompts) >= 64
    assert all({"id", "text", "category", "language"} <= set(p) for p in raw)
    categories = {p["category"] for p in raw}
    assert {"people", "hands", "text", "objects", "scenes", "styles", "texture"} <= categories
    assert len({p["language"] for p in raw}) >= 5
    assert len({p.text for p in prompts}) == len(prompts)


def test_reordering_prompts_keeps_every_seed() -> None:
    prompts = load_prompt_file(PROMPTS / "diverse-64.yaml")[:10]
    base = {
        "name": "x",
        "variants": [{"name": "full", "kind": "full"}],
        "repeats": 2,
    }
    forward = BenchConfig.model_validate({**base, "prompts": [p.model_dump() for p in prompts]})
    backward = BenchConfig.model_validate(
        {**base, "prompts": [p.model_dump() for p in reversed(prompts)]}
    )
    seeds = {i.key(): i.seed for i in expand_images(forward, list(forward.prompts))}
    reordered = {i.key(): i.seed for i in expand_images(backward, list(backward.prompts))}
    assert seeds == reordered
    assert len(set(seeds.values())) == len(seeds)  # distinct per (prompt, repeat)
    assert seeds[(prompts[0].id, 1)] == derive_seed(42, prompts[0].id, 1)

"""Seeds are paired across variants and independent of prompt order; cell ids are stable."""

from __future__ import annotations

from bench.cells import derive_seed, expand_cells, expand_images
from bench.config import BenchConfig, config_hash


def config(**overrides) -> BenchConfig:
    data = {
        "name": "m",
        "variants": [
            {"name": "full", "kind": "full"},
            {"name": "Q8_0", "kind": "gguf", "quant": "Q8_0"},
        ],
        "offload": ["none", {"mode": "group", "level": "block", "blocks_per_group": 2}],
        "prompts": [{"id": "a", "text": "first"}, {"id": "b", "text": "second"}],
        "repeats": 2,
        **overrides,
    }
    return BenchConfig.model_validate(data)


def test_seeds_do_not_depend_on_prompt_order() -> None:
    forward = config()
    backward = config(prompts=[{"id": "b", "text": "second"}, {"id": "a", "text": "first"}])
    seeds = {(i.prompt_id, i.repeat): i.seed for i in expand_images(forward, forward.prompts)}
    again = {(i.prompt_id, i.repeat): i.seed for i in expand_images(backward, backward.prompts)}
    assert seeds == again
    assert len(set(seeds.values())) == len(seeds)


def test_fixed_strategy_reuses_the_base_seed() -> None:
    blog = config(seed=42, seed_strategy="fixed", repeats=1)
    assert {i.seed for i in expand_images(blog, blog.prompts)} == {42}
    assert derive_seed(42, "a", 1, "fixed") == 43


def test_cells_cross_variants_offloads_and_resolutions() -> None:
    cfg = config(resolutions=[{"height": 64, "width": 64}, {"height": 128, "width": 96}])
    ids = [c.cell_id for c in expand_cells(cfg)]
    assert len(ids) == len(set(ids)) == 2 * 2 * 2
    assert "Q8_0__group-block2__128x96" in ids
    assert [c.cell_id for c in expand_cells(cfg, only=["full"])] == [
        i for i in ids if i.startswith("full__")
    ]


def test_cell_order_offload_puts_every_variant_under_one_mode_first() -> None:
    by_variant = config()
    by_offload = config(cell_order="offload")
    ids = [c.cell_id for c in expand_cells(by_offload)]
    assert sorted(ids) == sorted(c.cell_id for c in expand_cells(by_variant))
    modes = [i.split("__")[1] for i in ids]
    assert modes == sorted(modes, key=modes.index)  # each mode's cells contiguous
    assert len(set(modes[: len(by_offload.variants)])) == 1
    assert config_hash(by_offload) == config_hash(by_variant)


def test_a_variant_can_be_limited_to_some_offload_modes() -> None:
    cfg = config(
        variants=[
            {"name": "full", "kind": "full"},
            {
                "name": "floor",
                "kind": "full",
                "noise_floor": "sdpa-math",
                "offload_modes": ["none"],
            },
        ]
    )
    ids = [c.cell_id for c in expand_cells(cfg)]
    assert ids == ["full__none__512x512", "full__group-block2__512x512", "floor__none__512x512"]

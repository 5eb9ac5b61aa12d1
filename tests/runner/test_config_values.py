"""Config values at the library level: the bounds match what torch and the pipeline accept,
recorded configs stay readable, and the YAML loader refuses only what it should."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench import limits
from bench.cells import expand_cells, expand_images
from bench.config import BenchConfig, check_recorded_keys, validate_config
from bench.errors import ConfigError
from bench.families.flux import FLUX
from bench.yamlfile import load_yaml_file
from tests.runner.sample_config import BASE_CONFIG


def config(**overrides: object) -> BenchConfig:
    return validate_config({**BASE_CONFIG, **overrides}, "c.yaml")


def refused(**overrides: object) -> str:
    with pytest.raises(ConfigError) as exc:
        config(**overrides)
    message = str(exc.value)
    assert message.startswith("c.yaml: ") and "\n" not in message
    return message


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:7", "cuda:127"])
def test_accepted_devices_are_torch_devices(device: str) -> None:
    assert config(device=device).device == device
    if device != "auto":
        parsed = torch.device(device)
        assert parsed.type in ("cpu", "cuda") and (parsed.index or 0) >= 0


@pytest.mark.parametrize(
    "device", ["mps", "gpu", "cuda:", "cuda:01", "cuda:-1", "cuda:128", " cpu"]
)
def test_refused_devices(device: str) -> None:
    assert "device" in refused(device=device)


def test_cuda_128_is_what_torch_would_misread() -> None:
    """torch keeps a device index in 8 bits: the bound is where it starts to wrap."""
    assert torch.device(f"cuda:{limits.MAX_DEVICE_INDEX}").index == limits.MAX_DEVICE_INDEX
    assert torch.device(f"cuda:{limits.MAX_DEVICE_INDEX + 1}").index != limits.MAX_DEVICE_INDEX + 1


def test_seed_bounds_are_the_generators() -> None:
    torch.Generator().manual_seed(limits.MAX_SEED)
    with pytest.raises((RuntimeError, ValueError)):
        torch.Generator().manual_seed(limits.MAX_SEED + 1)
    # A negative seed is accepted by torch, as the same state as a large positive one: it
    # would record a seed that was not the one used.
    a, b = torch.Generator().manual_seed(-1), torch.Generator().manual_seed(limits.MAX_SEED)
    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))
    assert config(seed=limits.MAX_SEED).seed == limits.MAX_SEED
    assert "seed" in refused(seed=-1)
    assert "seed" in refused(model={"source": "synthetic", "seed": -5})


def test_names_keep_their_characters() -> None:
    variants = [BASE_CONFIG["variants"][0], {**BASE_CONFIG["variants"][1], "name": "Q4_K+imat"}]
    assert config(variants=variants).variants[1].name == "Q4_K+imat"
    assert "prompts.0.id" in refused(prompts=[{"id": "a+b", "text": "t"}])


def test_fixed_seeds_stay_in_range() -> None:
    message = refused(seed=limits.MAX_SEED, seed_strategy="fixed", repeats=2)
    assert "seed_strategy fixed" in message
    assert config(seed=limits.MAX_SEED, seed_strategy="fixed", repeats=1)


def test_every_accepted_size_is_one_the_pipeline_keeps() -> None:
    """FluxPipeline turns a side into 2 * (side // (vae_scale_factor * 2)) latent rows, times
    vae_scale_factor pixels: for every size the config accepts, that is the size itself."""
    vae_scale_factor = 8  # FLUX.1's VAE: four levels
    for side in range(limits.MIN_SIDE, 2049):
        try:
            config(height=side)
        except ConfigError:
            assert side % FLUX.side_multiple
            continue
        assert 2 * (side // (vae_scale_factor * 2)) * vae_scale_factor == side


def test_recorded_config_keeps_sizes_already_measured() -> None:
    """A run recorded before the rule (the blog's 680) is still readable and resumable."""
    data = {**BASE_CONFIG, "width": 680}
    with pytest.raises(ConfigError):
        validate_config(data, "c.yaml")
    assert validate_config(data, "c.yaml", recorded=True).width == 680
    check_recorded_keys(data, "manifest.json: config")


def test_recorded_keys_may_be_missing_but_not_wrong() -> None:
    check_recorded_keys({"name": "handmade", "clip_model": None}, "m: config")
    check_recorded_keys({"steps": 20, "future_key": {"anything": 1}}, "m: config")
    for bad, key in (
        ({"steps": "many"}, "config.steps"),
        ({"steps": True}, "config.steps"),
        ({"model": "x"}, "config.model"),
        ({"guidance": float("nan")}, "config.guidance"),
        ({"variants": [{"name": "a"}]}, "config.variants"),
    ):
        with pytest.raises(ConfigError) as exc:
            check_recorded_keys(bad, "m: config")
        assert str(exc.value).startswith(f"m: {key}"), exc.value
    with pytest.raises(ConfigError):
        check_recorded_keys(["not", "an", "object"], "m: config")


def test_run_image_limit() -> None:
    variants = [{"name": f"v{i}", "kind": "full"} for i in range(limits.MAX_VARIANTS)]
    message = refused(variants=variants, repeats=limits.MAX_REPEATS)
    assert "cells" in message and str(limits.MAX_RUN_IMAGES) in message


def test_run_size_is_checked_before_the_image_list_is_built() -> None:
    """expand_images refuses prompts that the config did not know (a prompt file) at once."""
    from bench.config import Prompt

    cfg = config(repeats=limits.MAX_REPEATS)
    many = [Prompt(id=f"p{i}", text="t") for i in range(limits.MAX_IMAGES_PER_CELL // 1000)]
    with pytest.raises(ConfigError, match="images per cell"):
        expand_images(cfg, many)
    assert len(expand_images(cfg, many[:2])) == 2 * limits.MAX_REPEATS
    assert len(expand_cells(cfg)) == cfg.cell_count() == 2


def test_yaml_merge_keys_still_override(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("base: &b {steps: 4, warmup: 0}\nrun:\n  <<: *b\n  steps: 8\n")
    assert load_yaml_file(path, 1 << 10, "config file")["run"] == {"steps": 8, "warmup": 0}


def test_yaml_alias_bomb_stays_small(tmp_path: Path) -> None:
    """Nine levels of nine aliases: shared references, and the config refuses it at once."""
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\nprompts: *a8\nname: t\n")
    data = load_yaml_file(path, 1 << 16, "config file")
    with pytest.raises(ConfigError):
        validate_config(data, str(path))

"""The report names the run's own model family: an SD3.5 or Qwen-Image run's report must not
talk about FLUX.1-dev except to say that the published FLUX.1-dev tables are another model's.

Copies of the shared scored run are edited to stand for other families' runs (the report reads
only the manifest's words about the model; the edit is labelled in each test). The report's
logic is exercised, not the runner: tests/families runs each family's pipelines for real."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.families import get_family
from bench.reporting.build import build_report
from bench.reporting.data import load_run
from bench.reporting.model import run_model
from bench.reporting.overview import facts, published_sections, warnings
from bench.reporting.published import TABLES, PublishedTable, comparable, differences

pytestmark = pytest.mark.slow


def _as_family(family: str, preset: str = "tiny") -> Callable[[dict[str, Any]], None]:
    """Edit: the run's config names another family (and synthetic preset)."""

    def edit(manifest: dict[str, Any]) -> None:
        manifest["config"]["model"].update(family=family, preset=preset)
        manifest["base_model"]["preset"] = preset

    return edit


def _pretrained(family: str, path: str, steps: int, side: tuple[int, int]) -> Callable[..., None]:
    """Edit: a pretrained run of `family` from `path`, at `steps` and height×width `side`."""

    def edit(manifest: dict[str, Any]) -> None:
        manifest["config"]["model"] = {"source": "pretrained", "family": family, "path": path}
        manifest["base_model"] = {"source": "pretrained", "path": path, "synthetic": False}
        manifest["config"]["steps"] = steps
        for cell in manifest["cells"]:
            cell.update(height=side[0], width=side[1])

    return edit


def _synthetic_warning(run_dir: Path) -> str:
    return next(w for w in warnings(load_run(run_dir)) if w.startswith("Synthetic run"))


def test_flux_run_warning_names_flux_dev(scored_run: Path) -> None:
    text = _synthetic_warning(scored_run)
    assert "FLUX.1-shaped" in text and "not the trained FLUX.1-dev" in text


def test_sd3_tiny_run_names_sd35_not_flux(copy_run: Callable[..., Path]) -> None:
    run = load_run(copy_run(manifest_edit=_as_family("sd3")))
    text = next(w for w in warnings(run) if w.startswith("Synthetic run"))
    assert get_family("sd3").title in text and "Stable Diffusion 3.5 Large" in text
    assert "FLUX" not in text
    model_line = dict(facts(run))["model"]
    assert model_line.startswith("SD3.5") and "FLUX" not in model_line


def test_real_architecture_preset_is_named_as_the_real_model(
    copy_run: Callable[..., Path],
) -> None:
    run_dir = copy_run(manifest_edit=_as_family("qwen_image", "qwen-image"))
    model = run_model(load_run(run_dir).manifest)
    assert model.is_real_architecture and model.real_model == "Qwen-Image"
    text = _synthetic_warning(run_dir)
    assert "the shape of Qwen-Image (preset 'qwen-image'" in text and "FLUX" not in text


@pytest.mark.parametrize("table", TABLES, ids=[t.key for t in TABLES])
def test_other_family_is_never_comparable_and_says_why(
    copy_run: Callable[..., Path], table: PublishedTable
) -> None:
    """Even at a published table's exact settings, a pretrained SD3.5 run is another model."""
    path = "stabilityai/stable-diffusion-3.5-large"
    edit = _pretrained("sd3", path, table.steps, (table.height, table.width))
    run = load_run(copy_run(manifest_edit=edit))
    assert not comparable(run, table)
    diff = differences(run, table)
    assert not any("resolution" in d or "steps" in d for d in diff)  # the settings match
    assert diff[0].startswith(f"model SD3.5 ({path!r}), not FLUX.1-dev")
    assert "another model's" in diff[0]


def test_published_notes_of_an_sd3_run(copy_run: Callable[..., Path]) -> None:
    sections = published_sections(load_run(copy_run(manifest_edit=_as_family("sd3"))))
    assert len(sections) == len(TABLES)
    for section in sections:
        assert not section.rows
        assert "SD3.5 with random weights (synthetic preset 'tiny'), not FLUX.1-dev" in section.note
        assert "another model's" in section.note


def test_flux_pretrained_path_without_flux_dev_is_not_comparable(
    copy_run: Callable[..., Path],
) -> None:
    """Same family, other weights (a FLUX.1-schnell folder): not the published model."""
    table = TABLES[0]
    edit = _pretrained(
        "flux", "black-forest-labs/FLUX.1-schnell", table.steps, (table.height, table.width)
    )
    run = load_run(copy_run(manifest_edit=edit))
    assert not comparable(run, table)
    assert differences(run, table)[0] == "model 'black-forest-labs/FLUX.1-schnell', not FLUX.1-dev"


def test_whole_sd3_report_mentions_flux_only_as_another_model(
    copy_run: Callable[..., Path], tmp_path: Path
) -> None:
    out = build_report(copy_run(manifest_edit=_as_family("sd3")), tmp_path / "report")
    apostrophe = "(?:'|&#x27;|&#39;)"  # as written in markdown, as escaped in HTML
    allowed = (
        r"A published table of FLUX\.1-dev exists",
        rf"not FLUX\.1-dev: the published figures are another model{apostrophe}s "
        rf"\(FLUX\.1-dev{apostrophe}s",
    )
    for name in ("report.md", "report.html"):
        text = (out / name).read_text()
        assert "SD3.5" in text and "Stable Diffusion 3.5 Large" in text
        for phrase in allowed:  # once per published table, each naming FLUX as another model
            assert len(re.findall(phrase, text)) == len(TABLES), (name, phrase)
            text = re.sub(phrase, "", text)
        assert "FLUX" not in text, name

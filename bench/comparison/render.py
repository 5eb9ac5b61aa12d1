"""A Comparison as a terminal table, as Markdown (a CI job summary, a PR comment) and as JSON.

All three read the same `Comparison`; none of them decides anything, so they can never disagree
about a verdict.
"""

from __future__ import annotations

import json
import math
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.comparison.stats import (
    IMPROVEMENT_WORDS,
    NOT_COMPARABLE,
    NOT_JUDGED,
    REGRESSION_WORDS,
    TOO_NOISY,
    MemoryVerdict,
    QualityVerdict,
    SampleVerdict,
)
from bench.comparison.verdicts import (
    NEWLY_FAILING,
    NEWLY_WORKING,
    CellComparison,
    Comparison,
    DistributionComparison,
)
from bench.metrics.stats import method_label
from bench.sizing.units import MIB, fmt_bytes


def report_console() -> Console:
    """The terminal as it is, or 160 columns when output goes to a CI log or a file: a narrow
    default would fold every verdict."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def _style(verdict: str) -> str:
    if verdict in REGRESSION_WORDS or verdict == NEWLY_FAILING:
        return "bold red"
    if verdict in IMPROVEMENT_WORDS or verdict == NEWLY_WORKING:
        return "green"
    if verdict == TOO_NOISY:
        return "yellow"
    return ""


def sample_text(v: SampleVerdict | None, unit: str, sep: str = ": ") -> str:
    """`verdict<sep>medians (ratio, p, n)`; the terminal puts the details on a second line."""
    if v is None:
        return "-"
    if v.ratio is None or v.base_median is None or v.cand_median is None:
        return v.verdict
    p = f", p={v.p_value:.2g}" if v.p_value is not None else ""
    band = f", spread ×{v.noise_band:.3g}" if v.verdict == TOO_NOISY and v.noise_band else ""
    return (
        f"{v.verdict} ×{v.ratio:.3f}{sep}{v.base_median:.3g} → {v.cand_median:.3g} {unit} "
        f"(n={v.n_base}/{v.n_cand}{p}{band})"
    )


def memory_text(v: MemoryVerdict | None, sep: str = ": ") -> str:
    """One counter in one phase: `verdict ×ratio<sep>base → cand (counter, n, p, band)`."""
    if v is None:
        return "-"
    if v.base_bytes is None or v.cand_bytes is None:
        return f"{v.verdict} ({v.counter})" if v.counter else v.verdict
    ratio = f" ×{v.ratio:.3f}" if v.ratio is not None else ""
    change = f"{fmt_bytes(v.base_bytes)} → {fmt_bytes(v.cand_bytes)}"
    details = [v.counter or ""]
    if v.phase == "images" and v.n_base is not None:
        details.append(f"median of n={v.n_base}/{v.n_cand}")
    if v.p_value is not None:
        details.append(f"p={v.p_value:.2g}")
    if v.noise_band is not None and v.noise_band > 1.0 and v.verdict != NOT_JUDGED:
        details.append(f"noise ×{v.noise_band:.3g}")
    return f"{v.verdict}{ratio}{sep}{change} ({', '.join(d for d in details if d)})"


def memory_lines(c: CellComparison, sep: str = ": ") -> list[tuple[str, str]]:
    """(text, verdict) per counter and phase: the per-image peaks, then loading and warm-up;
    the cell-level peaks that get no verdict share one line per counter."""
    verdicts = c.memory_counters or ([c.memory] if c.memory is not None else [])
    out = [(memory_text(v, sep), v.verdict) for v in verdicts if v.verdict != NOT_JUDGED]
    shown: dict[str, list[str]] = {}
    for v in verdicts:
        if v.verdict == NOT_JUDGED and v.ratio is not None:
            label = (v.counter or "").rsplit(", ", 1)[0]
            shown.setdefault(label, []).append(f"{v.phase} ×{v.ratio:.3f}")
    out += [
        (f"{label} {', '.join(parts)} (one value per run: {NOT_JUDGED})", NOT_JUDGED)
        for label, parts in shown.items()
    ]
    return out


def quality_text(v: QualityVerdict, sep: str = ": ") -> str:
    if v.diff_mean is None:
        return f"{v.metric} {v.verdict}"
    interval = (
        f" [{v.ci_low:+.3g}, {v.ci_high:+.3g}]"
        if v.ci_low is not None and v.ci_high is not None
        else ""
    )
    p = f", p={v.p_value:.2g}" if v.p_value is not None else ""
    if v.p_adjusted is not None:
        p += f", {v.p_adjusted:.2g} corrected"
    return f"{v.metric} {v.verdict}{sep}Δ{v.diff_mean:+.3g}{interval} (n={v.n_prompts}{p})"


def distribution_text(d: DistributionComparison) -> str:
    """`fid 3.1 → 3.4 (floor 0.43 at n=600; not judged)`, or why the two are not comparable."""
    if d.verdict == NOT_COMPARABLE:
        return f"{d.metric} {NOT_COMPARABLE}: {d.note}"
    if d.base_value is None or d.cand_value is None:
        return f"{d.metric} {d.note or 'no value'}"
    floor = d.cand_floor if d.cand_floor is not None else d.base_floor
    at = f"floor {floor:.3g} at n={d.cand_n}; " if floor is not None else ""
    return f"{d.metric} {d.base_value:.3g} → {d.cand_value:.3g} ({at}{d.verdict})"


def _quality_lines(c: CellComparison, sep: str) -> list[tuple[str, str]]:
    """(text, verdict) of the cell's quality verdicts, then its distribution metrics."""
    out = [(quality_text(q, sep), q.verdict) for q in c.quality]
    return out + [(distribution_text(d), d.verdict) for d in c.distribution]


def quality_rule(comparison: Comparison) -> str:
    """How the quality verdicts were decided, in words, e.g. "95% t/bootstrap-t interval of
    the paired difference over prompts and sign-flip test, benjamini-hochberg over 12 tests"."""
    methods = {
        q.method.split(";")[0] for c in comparison.cells for q in c.quality if q.method != "none"
    }
    interval = " or ".join(sorted(methods)) or method_label()
    corrections = {q.correction for c in comparison.cells for q in c.quality if q.correction}
    tail = f", p corrected by {next(iter(corrections))}" if corrections else ""
    return f"interval of the paired difference ({interval}) and sign-flip test{tail}"


def cell_text(c: CellComparison, sep: str) -> str:
    """The cell id, and a speed-up cell's speed-up in words below it (what was applied)."""
    return c.cell_id if c.speedup is None else f"{c.cell_id}{sep}speed-up {c.speedup}"


def status_text(c: CellComparison) -> str:
    if c.base_status == c.cand_status:
        return c.cand_status
    text = f"{c.base_status} → {c.cand_status}"
    error = c.cand_error if c.cand_status != "ok" else c.base_error
    return f"{text} ({error})" if error else text


def print_comparison(comparison: Comparison, console: Console) -> None:
    """The terminal view: what differs, then one row per cell, then the bottom line."""
    _print_header(comparison, console)
    if comparison.exit_code == 2:
        # Not comparable and not forced: verdicts would mean nothing, so none are shown.
        text, style = _bottom_line(comparison)
        console.print(f"[{style}]{text}[/]", highlight=False)
        return
    table = Table(title="cells", title_justify="left", show_lines=True)
    table.add_column("cell", no_wrap=True)
    for column in ("status", "time (s/image)", "peak memory", "energy", "quality"):
        table.add_column(column)
    nl = "\n"
    for c in comparison.cells:
        table.add_row(
            _styled(cell_text(c, nl), ""),
            _styled(status_text(c), c.status_verdict),
            _styled(sample_text(c.time, "s", nl), c.time.verdict if c.time else ""),
            nl.join(_styled(text, verdict) for text, verdict in memory_lines(c, " ")) or "-",
            _styled(sample_text(c.energy, "J", nl), c.energy.verdict if c.energy else ""),
            nl.join(_styled(text, verdict) for text, verdict in _quality_lines(c, nl)) or "-",
        )
    console.print(table)
    if any(c.quality for c in comparison.cells):
        console.print(f"quality: {quality_rule(comparison)}", markup=False)
    only = (("base", comparison.only_in_base), ("candidate", comparison.only_in_cand))
    for run_label, ids in only:
        if ids:
            console.print(f"only in {run_label}: {', '.join(ids)}", markup=False)
    for c in comparison.cells:
        for run, w in c.warnings:
            console.print(f"[yellow]warning[/] {c.cell_id} ({run}): {w.message}")
    text, style = _bottom_line(comparison)
    console.print(f"[{style}]{text}[/]", highlight=False)


def _styled(text: str, verdict: str) -> str:
    style = _style(verdict)
    escaped = text.replace("[", r"\[")
    return f"[{style}]{escaped}[/]" if style else escaped


def _print_header(comparison: Comparison, console: Console) -> None:
    console.print(
        f"base      {comparison.base.run_id} ({comparison.base.run_dir})\n"
        f"candidate {comparison.cand.run_id} ({comparison.cand.run_dir})"
    )
    for d in comparison.versions:
        console.print(f"  {d.field}: {d.base} → {d.cand}", markup=False)
    for line in unfinished_notes(comparison):
        console.print(f"[yellow]warning[/] {line}")
    if comparison.differences:
        label = "forced despite" if comparison.forced else "NOT COMPARABLE:"
        console.print(
            f"[bold red]{label} {len(comparison.differences)} difference(s)[/]",
        )
        for d in comparison.differences:
            console.print(f"  {d.field}: {d.base!r} ≠ {d.cand!r}", markup=False)


def unfinished_notes(comparison: Comparison) -> list[str]:
    """A run without `finished_at` was killed or is still running: its missing cells show as
    `missing`, which reads as newly failing."""
    return [
        f"{label} run {run.run_id} has not finished (finished_at is null); "
        f"complete it with `bench run --resume`"
        for label, run in (("base", comparison.base), ("candidate", comparison.cand))
        if not run.manifest.get("finished_at")
    ]


def _bottom_line(comparison: Comparison) -> tuple[str, str]:
    """The one-line result and its style."""
    if comparison.exit_code == 2:
        return "not comparable (use --force to compare anyway)", "bold red"
    # The most important news first: the regressions and where they are, then the rest.
    regressions = comparison.regressions
    text = f"{len(regressions)} regression(s)"
    if regressions:
        text += ": " + "; ".join(f"{cell} {aspect}" for cell, aspect in regressions) + "."
    else:
        text += ","
    text += f" {len(comparison.improvements)} improvement(s)"
    noisy = comparison.too_noisy
    if noisy:
        counts: dict[str, int] = {}
        for _cell, aspect in noisy:
            counts[aspect] = counts.get(aspect, 0) + 1
        listed = ", ".join(f"{aspect} in {n} cell(s)" for aspect, n in counts.items())
        text += f", too noisy to judge at these thresholds: {listed}"
    if regressions:
        return text, "bold red"
    return text, "yellow" if noisy else "green"


def to_markdown(comparison: Comparison) -> str:
    """GitHub-flavoured Markdown: fits a job summary ($GITHUB_STEP_SUMMARY) or a PR comment."""
    lines = [
        f"## bench compare: `{comparison.base.run_id}` → `{comparison.cand.run_id}`",
        "",
    ]
    if comparison.versions:
        lines += ["| changed | base | candidate |", "|---|---|---|"]
        lines += [f"| {d.field} | {d.base} | {d.cand} |" for d in comparison.versions]
        lines.append("")
    for line in unfinished_notes(comparison):
        lines += [f"Warning: {line}", ""]
    if comparison.differences:
        head = "Forced despite" if comparison.forced else "**Not comparable**:"
        lines += [f"{head} {len(comparison.differences)} difference(s)", ""]
        lines += ["| field | base | candidate |", "|---|---|---|"]
        lines += [f"| {d.field} | `{d.base!r}` | `{d.cand!r}` |" for d in comparison.differences]
        lines.append("")
    lines += [
        "| cell | status | time (s/image) | peak memory | energy | quality |",
        "|---|---|---|---|---|---|",
    ]
    for c in comparison.cells:
        cells = [
            cell_text(c, "<br>"),
            status_text(c),
            sample_text(c.time, "s"),
            "<br>".join(text for text, _verdict in memory_lines(c)) or "-",
            sample_text(c.energy, "J"),
            "<br>".join(text for text, _verdict in _quality_lines(c, ": ")) or "-",
        ]
        if c.regressions:
            cells[0] = f"❌ {cells[0]}"
        elif c.improvements:
            cells[0] = f"✅ {cells[0]}"
        lines.append("| " + " | ".join(x.replace("|", r"\|") for x in cells) + " |")
    lines.append("")
    for label, ids in (("base", comparison.only_in_base), ("candidate", comparison.only_in_cand)):
        if ids:
            lines.append(f"Only in {label}: {', '.join(f'`{i}`' for i in ids)}")
            lines.append("")
    warnings = [(c.cell_id, run, w) for c in comparison.cells for run, w in c.warnings]
    if warnings:
        lines += ["Stability warnings:", ""]
        lines += [f"- `{cell}` ({run}): {w.message}" for cell, run, w in warnings]
        lines.append("")
    t = comparison.thresholds
    lines.append(
        f"Thresholds: time ×{t.time_factor:g}, memory ×{t.memory_factor:g} and "
        f"+{t.memory_min_bytes / MIB:.0f} MiB (deterministic counters "
        f"+{t.memory_exact_min_bytes / MIB:g} MiB; A/A noise bands "
        + ", ".join(f"{k} ×{v:g}" for k, v in t.memory_bands.items())
        + f"), energy ×{t.energy_factor:g}, alpha {t.alpha:g} "
        f"(Mann-Whitney U), quality: {quality_rule(comparison)} beyond "
        + ", ".join(f"{m} {v:g}" for m, v in sorted(t.quality_margins.items()))
    )
    lines.append("")
    bottom, _style_name = _bottom_line(comparison)
    lines.append(f"**Result: exit {comparison.exit_code}**. {bottom}")
    return "\n".join(lines) + "\n"


def to_json(comparison: Comparison) -> str:
    """Strict JSON: a non-finite number (never expected) becomes null rather than `NaN`."""
    return json.dumps(clean_json(comparison.as_dict()), indent=2, allow_nan=False) + "\n"


def clean_json(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become null, unknown objects their str()."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [clean_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)

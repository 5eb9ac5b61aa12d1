"""Regression checks between runs (`bench compare`) and across library versions (`bench matrix`).

`verdicts.compare_runs(base_dir, cand_dir)` is the library entry point behind `bench.compare`
(`thresholds.thresholds_from_options` validates what people give; `releases.run_matrix` runs one
config per version set); the typer commands are bench/cli/compare.py. Docs: docs/compare.md.

The package itself imports nothing: `bench compare --help` reads its defaults from the light
`defaults` module, and only the modules that compute verdicts load pandas and scipy.
"""
